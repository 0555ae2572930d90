"""Where the desktop client remembers the certificates it trusts: one fingerprint per host
and port, like SSH's ``known_hosts``.

:class:`PinStore` is what :class:`~desktop_chat.net.client.ChatClient` needs; the app's
``Settings`` keeps pins in QSettings, and :class:`MemoryPins` keeps them for one client only
(tests, tools). Host names are compared without case; the host is kept as the person typed it
(``mypc.local`` and ``192.168.1.5`` are different entries, as in SSH).
"""

from __future__ import annotations

from typing import Protocol


def pin_key(host: str, port: int) -> str:
    """``host:port`` (``[v6]:port``), host in lower case: one entry per address typed."""
    host = host.strip().lower()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class PinStore(Protocol):
    def pinned_fingerprint(self, host: str, port: int) -> str | None:
        """The fingerprint trusted for this address (lowercase hex), or None."""
        ...

    def pin_fingerprint(self, host: str, port: int, fingerprint: str) -> None:
        """Trust ``fingerprint`` for this address from now on (replacing any other)."""
        ...


class MemoryPins:
    """Pins that live as long as this object."""

    def __init__(self) -> None:
        self._pins: dict[str, str] = {}

    def pinned_fingerprint(self, host: str, port: int) -> str | None:
        return self._pins.get(pin_key(host, port))

    def pin_fingerprint(self, host: str, port: int, fingerprint: str) -> None:
        self._pins[pin_key(host, port)] = fingerprint
