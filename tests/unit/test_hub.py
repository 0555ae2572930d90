"""The hub in memory: login, rooms, fan-out order, DMs, resume, overflow and lock discipline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from desktop_chat.net.protocol import admin as pa
from desktop_chat.net.protocol import events as p
from desktop_chat.net.server.hub import Hub, LoginRefused
from desktop_chat.net.server.outbox import Flusher
from desktop_chat.net.server.storage import Storage
from tests.unit.doubles import FakeMember, login


def test_login_sends_welcome_then_users_and_tells_the_room(hub: Hub, flusher: Flusher) -> None:
    ann = login(hub, flusher, "Ann")
    ben = FakeMember(flusher)
    hub.login(ben, p.Hello(name="Ben"))
    welcome, users = ben.take()
    assert isinstance(welcome, p.Welcome)
    assert (welcome.name, welcome.server, welcome.rooms) == ("Ben", "Test chat", ("general",))
    assert users == p.Users(room="general", names=("Ann", "Ben"), topic=None)
    assert ann.take() == [p.Joined(room="general", name="Ben")]
    assert hub.people_count() == 2
    assert hub.online_names() == ["Ann", "Ben"]


@pytest.mark.parametrize(
    ("taken", "name", "code"),
    [
        ("Ann", "ANN", p.NAME_TAKEN),
        ("paypal", "pаypal", p.NAME_TAKEN),  # Cyrillic a: looks the same
        ("Ann", " spaced", p.NAME_INVALID),
    ],
)
def test_refused_names(hub: Hub, flusher: Flusher, taken: str, name: str, code: str) -> None:
    login(hub, flusher, taken)
    with pytest.raises(LoginRefused) as refused:
        hub.login(FakeMember(flusher), p.Hello(name=name))
    assert refused.value.code == code
    assert hub.people_count() == 1


def test_everyone_sees_messages_in_the_same_order_with_rising_ids(
    hub: Hub, flusher: Flusher
) -> None:
    people = [login(hub, flusher, n) for n in ("Ann", "Ben", "Cy")]
    for person in people:
        person.take()  # the joins
    for i, person in enumerate(people * 3):
        hub.say(person, "general", f"m{i}")
    seen = [[(e.id, e.text) for e in m.take() if isinstance(e, p.ChatMessage)] for m in people]
    assert seen[0] == seen[1] == seen[2]
    ids = [i for i, _ in seen[0]]
    assert ids == sorted(ids) and len(set(ids)) == 9
    assert [t for _, t in seen[0]] == [f"m{i}" for i in range(9)]


def test_sender_gets_its_ref_back_and_others_do_not(hub: Hub, flusher: Flusher) -> None:
    ann, ben = login(hub, flusher, "Ann"), login(hub, flusher, "Ben")
    ann.take()
    hub.say(ann, "general", "hello", ref=7)
    (mine,) = ann.take()
    (theirs,) = ben.take()
    assert isinstance(mine, p.ChatMessage) and isinstance(theirs, p.ChatMessage)
    assert mine.ref == 7 and theirs.ref is None and mine.id == theirs.id


def test_saying_in_a_room_you_are_not_in_is_an_error(hub: Hub, flusher: Flusher) -> None:
    ann, ben = login(hub, flusher, "Ann"), login(hub, flusher, "Ben")
    ann.take()
    hub.say(ann, "lunch", "hi", ref=1)
    (error,) = ann.take()
    assert isinstance(error, p.ErrorReply) and error.code == p.NOT_IN_ROOM and error.ref == 1
    assert ben.take() == []


def test_private_messages_reach_only_the_two(hub: Hub, flusher: Flusher) -> None:
    ann, ben, cy = (login(hub, flusher, n) for n in ("Ann", "Ben", "Cy"))
    ann.take(), ben.take()
    hub.dm(ann, "ben", "psst")
    (to_ben,) = ben.take()
    (to_ann,) = ann.take()
    assert isinstance(to_ben, p.ChatMessage) and to_ben == to_ann
    assert (to_ben.from_, to_ben.to, to_ben.text) == ("Ann", "Ben", "psst")
    assert cy.take() == []
    hub.dm(ann, "nobody", "hi")
    (error,) = ann.take()
    assert isinstance(error, p.ErrorReply) and error.code == p.NO_SUCH_USER


def test_join_part_and_room_list(hub: Hub, flusher: Flusher) -> None:
    ann, ben = login(hub, flusher, "Ann"), login(hub, flusher, "Ben")
    ann.take()
    hub.join(ann, p.Join(room="Lunch"))
    assert ann.take() == [p.Users(room="Lunch", names=("Ann",), topic=None)]
    hub.join(ben, p.Join(room="lunch"))  # the first spelling stays
    assert ann.take() == [p.Joined(room="Lunch", name="Ben")]
    assert ben.take()[-1] == p.Users(room="Lunch", names=("Ann", "Ben"), topic=None)
    hub.list_rooms(ann)
    (rooms,) = ann.take()
    assert isinstance(rooms, p.RoomList)
    assert [(r.name, r.users) for r in rooms.rooms] == [("general", 2), ("Lunch", 2)]
    hub.part(ann, "lunch")
    hub.part(ben, "lunch")
    assert ann.rooms == {"general": "general"}
    ann.take()
    hub.list_rooms(ann)
    (rooms,) = ann.take()
    assert isinstance(rooms, p.RoomList)
    assert [r.name for r in rooms.rooms] == ["general"]  # an empty room is dropped


def test_leaving_tells_the_rooms_and_keeps_the_session(
    hub: Hub, flusher: Flusher, storage: Storage
) -> None:
    ann, ben = login(hub, flusher, "Ann"), login(hub, flusher, "Ben")
    ann.take()
    hub.leave(ben, "disconnected")
    assert ann.take() == [p.Left(room="general", name="Ben", reason="disconnected")]
    kept = storage.load_session(ben.session)
    assert kept is not None and kept.rooms == ("general",)
    hub.leave(ann, "quit")
    assert storage.load_session(ann.session) is None  # quitting ends the session


def test_resume_sends_what_was_missed_before_anything_live(hub: Hub, flusher: Flusher) -> None:
    ann, ben = login(hub, flusher, "Ann"), login(hub, flusher, "Ben")
    hub.say(ben, "general", "seen")
    seen = [e for e in ben.take() if isinstance(e, p.ChatMessage)][-1]
    hub.leave(ben, "disconnected")
    hub.say(ann, "general", "missed 1")
    hub.dm(ann, "Ann", "note to self")  # not Ben's: not resent to him
    hub.say(ann, "general", "missed 2")
    back = FakeMember(flusher)
    hub.login(back, p.Hello(name="Ben", resume=p.Resume(session=ben.session, since=seen.id)))
    got = back.take()
    assert isinstance(got[0], p.Welcome) and got[0].resumed is True
    assert isinstance(got[1], p.Users)
    assert [e.text for e in got[2:] if isinstance(e, p.ChatMessage)] == ["missed 1", "missed 2"]


def test_resume_replaces_the_old_connection(hub: Hub, flusher: Flusher) -> None:
    ann, ben = login(hub, flusher, "Ann"), login(hub, flusher, "Ben")
    ann.take()
    again = FakeMember(flusher)
    hub.login(again, p.Hello(name="Ben", resume=p.Resume(session=ben.session, since=0)))
    assert ben.aborted == ["replaced"]
    assert ann.take() == []  # no leave and join for a replaced connection
    hub.say(ann, "general", "hi")
    assert [e for e in again.take() if isinstance(e, p.ChatMessage)][-1].text == "hi"
    assert [e for e in ben.take() if isinstance(e, p.ChatMessage)] == []


def test_a_recipient_that_overflows_is_cut_off_and_others_still_get_it(
    hub: Hub, flusher: Flusher
) -> None:
    ann, ben, cy = (login(hub, flusher, n) for n in ("Ann", "Ben", "Cy"))
    ann.take(), ben.take()
    ben.full = True
    hub.say(ann, "general", "hello")
    assert ben.aborted == ["slow"]
    assert [e.text for e in cy.take() if isinstance(e, p.ChatMessage)] == ["hello"]
    assert [e.text for e in ann.take() if isinstance(e, p.ChatMessage)] == ["hello"]


def test_only_the_ordered_storage_calls_run_under_the_routing_lock(
    hub: Hub, flusher: Flusher, storage: Storage
) -> None:
    """The hub docstring's promise: only add_message and messages_since hold up routing."""
    under_lock: set[str] = set()
    called: set[str] = set()

    def watch(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def watched(*args: Any, **kwargs: Any) -> Any:
            called.add(name)
            if hub._lock.locked():
                under_lock.add(name)
            return method(*args, **kwargs)

        return watched

    for name in dir(storage):
        if not name.startswith("_") and callable(getattr(storage, name)):
            setattr(storage, name, watch(name, getattr(storage, name)))
    ann = login(hub, flusher, "Ann", admin=True)
    ben = login(hub, flusher, "Ben")
    hub.join(ben, p.Join(room="lunch"))
    hub.say(ben, "lunch", "hi")
    hub.dm(ben, "Ann", "psst")
    hub.set_topic(ann, pa.SetTopic(room="quiet", topic="shh"))  # a room nobody is in
    hub.room_settings(ann, pa.RoomSettings(room="other", slow=5))
    hub.part(ben, "lunch")
    hub.leave(ben, "disconnected")
    back = FakeMember(flusher)
    hub.login(back, p.Hello(name="Ben", resume=p.Resume(session=ben.session, since=0)))
    hub.history(back, p.GetHistory(room="general"))
    assert {"room", "ensure_room", "room_settings", "save_session", "set_topic"} <= called
    assert under_lock == {"add_message", "messages_since"}
