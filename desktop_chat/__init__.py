"""Desktop Chat: a LAN group chat that hosts with one click or joins one on the network."""

__version__ = "0.2.0"
