"""What the start screen collects: the person's choice, and addresses as people type them.

Qt-free, so the address rules are easy to test and reuse (``--join HOST[:PORT]``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal

from desktop_chat.net.server.server import DEFAULT_PORT

Mode = Literal["host", "join"]
Field = Literal["name", "port", "address", "password", "fingerprint", "general"]

# Letters, digits, "-" and "_" in dot-separated labels of at most 63 (253 in all).
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_][A-Za-z0-9_-]{0,62}(?:\.[A-Za-z0-9_-]{1,63})*\.?$"
)


@dataclass(frozen=True, slots=True)
class StartChoice:
    """What the person chose: host (with ``port`` and ``title``) or join ``host:port``
    (with ``password`` when the chat asks for one; it is never saved; and ``fingerprint``,
    lowercase hex, when the host's certificate fingerprint was given ahead)."""

    mode: Mode
    name: str
    host: str
    port: int
    title: str = ""
    password: str | None = field(default=None, repr=False)
    fingerprint: str | None = None

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address; ValueError says why."""
    text = text.strip()
    if not text:
        raise ValueError("Type the address of the computer that hosts the chat.")
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError("An IPv6 address in brackets needs its closing ].")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError("Write the port after the address, like [fe80::1]:5151.")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    port = default_port
    if port_text or text.endswith(":"):
        if not port_text.isascii() or not port_text.isdigit():
            raise ValueError(f"“{port_text}” is not a port number (1–65535).")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError("A port number is between 1 and 65535.")
    if not host:
        raise ValueError("The address is missing before the port.")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if ":" in host or not _HOSTNAME.match(host):
            raise ValueError(
                f"“{host}” is not an address. Use one like 192.168.1.5:5151 or mypc.local."
            ) from None
    return host, port
