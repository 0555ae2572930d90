"""What a session needs from the server that accepted it, as an interface.

Sessions (``session.py`` and the protocol modules) depend on this, never on
:class:`~desktop_chat.net.server.server.Server` itself, so there is no import loop and a session
can be driven by anything that provides these.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Protocol

from desktop_chat.net.protocol import events as p

if TYPE_CHECKING:
    from desktop_chat.net.server.connection import Connection
    from desktop_chat.net.server.fanout import Member
    from desktop_chat.net.server.files import FileStore
    from desktop_chat.net.server.hub import Hub
    from desktop_chat.net.server.server import ServerConfig


class ServerContext(Protocol):
    config: ServerConfig
    hub: Hub
    files: FileStore
    tls_context: ssl.SSLContext | None

    @property
    def port(self) -> int: ...

    def authenticate(self, member: Member, hello: p.Hello) -> bool:
        """Check bans and passwords; True for an admin. Raises LoginRefused."""
        ...

    def needs_password(self, name: str) -> bool:
        """Would logging in as ``name`` need a password?"""
        ...

    def plain_password_refusal(self, member: Member) -> str | None:
        """Why ``member`` may not send a password on its connection (unencrypted, not from
        loopback), or None when it may."""
        ...

    def is_registered(self, name: str) -> bool:
        """Is ``name`` a registered account (which only its password may use)?"""
        ...

    def is_own_host(self, host: str, local_host: str) -> bool:
        """Is ``host`` (an HTTP ``Host`` value, port optional) a name or address of ours?"""
        ...

    def join_addresses(self) -> list[str]:
        """What people can type to join: ``host:port`` for each usable address."""
        ...

    def forget(self, connection: Connection) -> None:
        """The connection's thread is ending: stop counting it."""
        ...
