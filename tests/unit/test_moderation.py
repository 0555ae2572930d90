"""Moderation in memory: who may moderate, kick, ban, topics, room passwords, slow mode."""

from __future__ import annotations

import pytest

from desktop_chat.net.protocol import admin as pa
from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.names import skeleton
from desktop_chat.net.server.hub import Hub, LoginRefused
from desktop_chat.net.server.outbox import Flusher
from desktop_chat.net.server.storage import Storage
from tests.unit.doubles import FakeClock, FakeMember, login


def _errors(member: FakeMember) -> list[str]:
    return [e.code for e in member.take() if isinstance(e, p.ErrorReply)]


@pytest.mark.parametrize(
    "request_",
    [
        pa.Kick(name="Ben"),
        pa.Ban(name="Ben"),
        pa.SetTopic(room="general", topic="mine now"),
        pa.RoomSettings(room="general", slow=60),
        pa.Promote(name="Ben"),
    ],
)
def test_ordinary_users_cannot_moderate(
    hub: Hub, flusher: Flusher, storage: Storage, request_: p.ClientEvent
) -> None:
    ann, ben = login(hub, flusher, "Ann"), login(hub, flusher, "Ben")
    handler = {
        pa.Kick: hub.kick,
        pa.Ban: hub.ban,
        pa.SetTopic: hub.set_topic,
        pa.RoomSettings: hub.room_settings,
        pa.Promote: hub.promote,
    }[type(request_)]
    handler(ann, request_)  # type: ignore[operator]
    assert _errors(ann) == [pa.FORBIDDEN]
    assert ben.aborted == [] and ben.take() == []
    assert not storage.is_banned("name", "ben")
    assert storage.room("general") == ("general", None)


def test_an_admin_kicks_someone(hub: Hub, flusher: Flusher) -> None:
    host = login(hub, flusher, "Host", admin=True)
    ben = login(hub, flusher, "Ben")
    hub.kick(host, pa.Kick(name="ben", reason="spam", ref=3))
    (why,) = ben.take()
    assert isinstance(why, p.ErrorReply) and why.code == pa.KICKED
    assert why.message == "Host removed you: spam"
    assert ben.aborted == ["kicked"] and ben.end_session
    assert host.take()[-1] == pa.Ok(what="kick", ref=3)
    hub.kick(host, pa.Kick(name="nobody"))
    assert _errors(host) == [p.NO_SUCH_USER]


def test_a_ban_is_stored_and_removes_whoever_matches(
    hub: Hub, flusher: Flusher, storage: Storage
) -> None:
    host = login(hub, flusher, "Host", admin=True)
    ben = login(hub, flusher, "Ben")
    hub.ban(host, pa.Ban(name="BEN"))
    assert storage.is_banned("name", "ben")
    assert ben.aborted == ["kicked"]
    hub.unban(host, pa.Unban(name="Ben"))
    assert not storage.is_banned("name", "ben")
    host.take()
    hub.unban(host, pa.Unban(name="Ben"))
    assert _errors(host) == [p.NO_SUCH_USER]


def test_a_topic_is_told_to_the_room_and_kept(hub: Hub, flusher: Flusher, storage: Storage) -> None:
    host = login(hub, flusher, "Host", admin=True)
    ben = login(hub, flusher, "Ben")
    hub.set_topic(host, pa.SetTopic(room="General", topic="Friday lunch"))
    assert ben.take() == [pa.TopicChanged(room="general", topic="Friday lunch", by="Host")]
    assert storage.room("general") == ("general", "Friday lunch")
    late = FakeMember(flusher)
    hub.login(late, p.Hello(name="Cy"))
    users = p.Users(
        room="general", names=("Ben", "Cy", "Host"), topic="Friday lunch", admins=("Host",)
    )
    assert users in late.got


def test_a_topic_for_an_invalid_room_name_is_an_error_not_a_crash(
    hub: Hub, flusher: Flusher
) -> None:
    host = login(hub, flusher, "Host", admin=True)
    hub.set_topic(host, pa.SetTopic(room=" bad", topic="x", ref=9))
    (error,) = host.take()
    assert isinstance(error, p.ErrorReply) and error.code == p.NAME_INVALID and error.ref == 9


def test_slow_mode_counts_on_the_clock_and_spares_admins(
    hub: Hub, flusher: Flusher, clock: FakeClock
) -> None:
    host = login(hub, flusher, "Host", admin=True)
    ben = login(hub, flusher, "Ben")
    hub.room_settings(host, pa.RoomSettings(room="general", slow=10))
    ben.take()
    hub.say(ben, "general", "one")
    hub.say(ben, "general", "two")
    got = ben.take()
    assert [e.text for e in got if isinstance(e, p.ChatMessage)] == ["one"]
    errors = [e for e in got if isinstance(e, p.ErrorReply)]
    assert [(e.code, e.message) for e in errors] == [(p.RATE_LIMITED, "slow mode: wait 10 s")]
    clock.advance(9.5)
    hub.say(ben, "general", "still too soon")
    assert _errors(ben) == [p.RATE_LIMITED]
    clock.advance(0.5)
    hub.say(ben, "general", "three")
    assert [e.text for e in ben.take() if isinstance(e, p.ChatMessage)] == ["three"]
    hub.say(host, "general", "a")
    hub.say(host, "general", "b")
    assert [e.text for e in host.take() if isinstance(e, p.ChatMessage)][-2:] == ["a", "b"]


def test_a_room_password_keeps_others_out(hub: Hub, flusher: Flusher) -> None:
    host = login(hub, flusher, "Host", admin=True)
    ben = login(hub, flusher, "Ben")
    hub.room_settings(host, pa.RoomSettings(room="Vault", password="open sesame"))
    hub.join(ben, p.Join(room="vault", ref=1))
    assert _errors(ben) == [p.AUTH_FAILED]
    assert "vault" not in ben.rooms
    hub.join(ben, p.Join(room="vault", password="open sesame"))
    assert ben.rooms.get("vault") == "Vault"


def test_registering_reserves_the_name_and_its_look_alikes(
    hub: Hub, flusher: Flusher, storage: Storage
) -> None:
    zoe = login(hub, flusher, "Zoe")
    hub.register(zoe, pa.Register(password="short"))
    assert _errors(zoe) == [p.BAD_MESSAGE]
    hub.register(zoe, pa.Register(password="a long enough password", ref=2))
    assert zoe.take() == [pa.Ok(what="register", ref=2)]
    assert storage.account("zoe") is not None
    hub.leave(zoe, "quit")
    with pytest.raises(LoginRefused) as refused:
        hub.login(FakeMember(flusher), p.Hello(name="Z\u043ee"))  # Cyrillic o
    assert refused.value.code == p.NAME_TAKEN
    assert skeleton("Zoe") == skeleton("Z\u043ee")
