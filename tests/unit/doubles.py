"""Doubles for the server core's unit tests: a fake clock and a recording hub member."""

from __future__ import annotations

from desktop_chat.net.protocol import events as p
from desktop_chat.net.server.fanout import Outgoing
from desktop_chat.net.server.hub import Hub
from desktop_chat.net.server.outbox import OVERFLOW, QUEUED, Flusher, Outbox

Event = p.ServerEvent | p.ClientEvent


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeMember:
    """A hub Member that records everything it is given instead of writing to a socket."""

    def __init__(self, flusher: Flusher, address: str = "127.0.0.1") -> None:
        self.name = ""
        self.key = ""
        self.session = ""
        self.rooms: dict[str, str] = {}
        self.is_admin = False
        self.is_owner = False
        self.secure = False  # not TLS; loopback passwords are allowed by default
        self.address = (address, 40000)
        self.last_said: dict[str, float] = {}
        self.end_session = False
        # A real outbox that is never written: moderation waits on it before cutting someone off.
        self.outbox = Outbox(lambda data: len(data), -1, flusher, 1 << 20)
        self.got: list[Event] = []
        self.aborted: list[str] = []
        self.full = False  # deliver() says OVERFLOW, as a client that stopped reading would

    def deliver(self, out: Outgoing, *, force: bool = False, urgent: bool = True) -> int:
        if self.full and not force:
            return OVERFLOW
        self.got.append(out.event)
        return QUEUED

    def send_event(self, event: p.ServerEvent) -> None:
        self.got.append(event)

    def abort(self, reason: str) -> None:
        self.aborted.append(reason)

    def take(self) -> list[Event]:
        """What arrived since the last take."""
        got, self.got = self.got, []
        return got


def login(
    hub: Hub, flusher: Flusher, name: str, *, admin: bool = False, **hello: object
) -> FakeMember:
    """A fake member logged in to ``hub`` as ``name``; what login sent is taken already."""
    m = FakeMember(flusher)
    hub.login(m, p.Hello(name=name, **hello), admin=admin)  # type: ignore[arg-type]
    m.take()
    return m
