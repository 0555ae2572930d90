"""Storage on each back end (a real SQLite file in a tmp folder, a real PostgreSQL database):
messages, history pages, sessions, rooms, accounts, the ordered append."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from desktop_chat.net.protocol.events import ChatMessage
from desktop_chat.net.server.storage import Identity, Storage
from desktop_chat.net.server.storage_api import ChatStore, NewMessage, StorageError, open_store

pytestmark = pytest.mark.backends


def _committed_ids(storage: object) -> list[int]:
    """The message ids another connection (another process) sees: the committed ones."""
    if isinstance(storage, Storage):
        with closing(sqlite3.connect(storage.path)) as other:
            return [r[0] for r in other.execute("SELECT id FROM messages ORDER BY id")]
    import psycopg

    with psycopg.connect(storage.url) as conn:  # type: ignore[attr-defined]
        return [r[0] for r in conn.execute("SELECT id FROM messages ORDER BY id")]


def test_ids_rise_and_history_pages_back(storage: ChatStore) -> None:
    ids = [
        storage.add_message(sender="Ann", text=f"m{i}", room="Lunch", room_key="lunch").id
        for i in range(5)
    ]
    storage.add_message(sender="Ann", text="elsewhere", room="general", room_key="general")
    assert ids == sorted(ids) and len(set(ids)) == 5
    newest, more = storage.room_history("lunch", before=None, limit=3)
    assert [m.text for m in newest] == ["m2", "m3", "m4"] and more
    older, more = storage.room_history("lunch", before=newest[0].id, limit=3)
    assert [m.text for m in older] == ["m0", "m1"] and not more


ANN = Identity("ann", "s-ann")
BEN = Identity("ben", "s-ben")
CY = Identity("cy", "s-cy")


def _dm(storage: ChatStore, sender: Identity, to: Identity, text: str) -> None:
    storage.add_message(
        sender=sender.key.title(),
        text=text,
        dm_from=sender.key,
        dm_to=to.key,
        to_name=to.key.title(),
        by=sender,
        to=to,
    )


def test_dm_history_is_the_conversation_both_ways(storage: ChatStore) -> None:
    _dm(storage, ANN, BEN, "hi")
    _dm(storage, BEN, ANN, "hey")
    _dm(storage, CY, ANN, "other")
    msgs, more = storage.dm_history(BEN, "ann", before=None, limit=10)
    assert [(m.from_, m.to, m.text) for m in msgs] == [("Ann", "Ben", "hi"), ("Ben", "Ann", "hey")]
    assert not more


def test_dm_history_is_only_for_the_sessions_that_took_part(storage: ChatStore) -> None:
    _dm(storage, ANN, BEN, "for ben's session")
    later_ben = Identity("ben", "s-someone-else")
    assert storage.dm_history(later_ben, "ann", before=None, limit=10)[0] == []


def test_messages_since_covers_the_rooms_and_own_dms_in_order(storage: ChatStore) -> None:
    first = storage.add_message(sender="Ann", text="old", room="general", room_key="general")
    storage.add_message(sender="Ann", text="a", room="general", room_key="general")
    _dm(storage, ANN, BEN, "b")
    storage.add_message(sender="Ann", text="not his", room="Lunch", room_key="lunch")
    _dm(storage, BEN, CY, "c")
    got = storage.messages_since(first.id, ["general"], BEN)
    assert [m.text for m in got] == ["a", "b", "c"]


def test_committed_messages_survive_a_reopen(tmp_path: Path, database: str | None) -> None:
    store = open_store(database, tmp_path)
    try:
        msg = store.add_message(sender="Ann", text="keep me", room="general", room_key="general")
        assert _committed_ids(store) == []  # in the open transaction: the round's
        store.commit()
        # Another connection (another process, after a crash) sees it once committed.
        assert _committed_ids(store) == [msg.id]
    finally:
        store.close()
    again = open_store(database, tmp_path)
    try:
        assert [m.id for m in again.room_history("general", before=None, limit=5)[0]] == [msg.id]
        later = again.add_message(sender="Ann", text="next", room="general", room_key="general")
        assert later.id > msg.id
    finally:
        again.close()


def test_sessions_are_saved_loaded_deleted_and_expired(storage: ChatStore) -> None:
    storage.save_session("tok", "Ann", "ann", ["general", "Lunch"])
    kept = storage.load_session("tok")
    assert kept is not None and (kept.name, kept.rooms) == ("Ann", ("general", "Lunch"))
    assert storage.expire_sessions(3600) == 0
    assert storage.expire_sessions(-10) == 1  # everything is older than "10 s in the future"
    assert storage.load_session("tok") is None
    storage.save_session("tok2", "Ben", "ben", [])
    storage.delete_session("tok2")
    assert storage.load_session("tok2") is None


def test_rooms_keep_their_first_spelling_topic_and_settings(storage: ChatStore) -> None:
    assert storage.room("lunch") is None
    assert storage.ensure_room("lunch", "Lunch") == "Lunch"
    assert storage.ensure_room("lunch", "LUNCH") == "Lunch"
    storage.set_topic("lunch", "Fridays")
    storage.set_room_settings("lunch", pw_hash="h", slow=5)
    assert storage.room("lunch") == ("Lunch", "Fridays")
    assert storage.room_settings("lunch") == ("h", 5)
    assert storage.room_settings("nowhere") == (None, 0)


def test_accounts_roles_and_bans(storage: ChatStore) -> None:
    storage.save_account("zoe", "Zoe", "hash")
    assert storage.account("zoe") == ("Zoe", "hash", "user")
    assert storage.set_role("zoe", "admin") and not storage.set_role("nobody", "admin")
    assert storage.account("zoe") == ("Zoe", "hash", "admin")
    assert storage.account_names() == ["Zoe"]
    storage.add_ban("address", "10.0.0.7", "Host")
    assert storage.is_banned("address", "10.0.0.7") and not storage.is_banned("name", "10.0.0.7")
    assert storage.remove_ban("address", "10.0.0.7")
    assert not storage.remove_ban("address", "10.0.0.7")


def test_append_ordered_commits_then_calls_back_in_id_order(storage: ChatStore) -> None:
    first = storage.add_message(sender="Ann", text="grouped", room="general", room_key="general")
    seen: list[list[int]] = []

    def published(msgs: list[ChatMessage]) -> None:
        # Called inside the critical section, after the commit: another connection sees them.
        ids = _committed_ids(storage)
        seen.append(ids)
        assert [m.id for m in msgs] == ids[-2:]

    rows = [
        NewMessage(sender="Ann", text="one", room="general", room_key="general", ref=1, by=ANN),
        NewMessage(sender="Ann", text="two", room="general", room_key="general", me=True),
    ]
    stored = storage.append_ordered(rows, published)
    assert [m.text for m in stored] == ["one", "two"] and stored[1].me
    assert first.id < stored[0].id < stored[1].id and seen == [[first.id, *[m.id for m in stored]]]
    assert storage.message_for_ref(ANN.session, 1) == replace(stored[0], ref=1)


def test_append_ordered_stores_nothing_of_a_batch_that_fails(storage: ChatStore) -> None:
    called: list[object] = []
    bad = NewMessage(sender="Ann", text=None, room="general", room_key="general")  # type: ignore[arg-type]
    good = NewMessage(sender="Ann", text="fine", room="general", room_key="general")
    with pytest.raises(StorageError):
        storage.append_ordered([good, bad], called.append)
    assert called == [] and storage.room_history("general", before=None, limit=5) == ([], False)
    # The next batch goes through (no transaction left open).
    [ok] = storage.append_ordered([good], called.append)
    assert [m.text for m in storage.room_history("general", before=None, limit=5)[0]] == ["fine"]
    assert called == [[ok]]


def test_database_errors_are_storage_errors(storage: ChatStore) -> None:
    storage.close()
    with pytest.raises(StorageError):
        storage.room("general")
    assert not issubclass(StorageError, sqlite3.Error)  # the same class whichever back end


def _stored_count(storage: ChatStore, text: str) -> int:
    storage.commit()
    found, _more = storage.room_history("general", before=None, limit=50)
    return sum(1 for m in found if m.text == text)


def test_a_ref_is_stored_once_and_a_repeat_gets_the_original(storage: ChatStore) -> None:
    """The database's unique index decides (several processes may each have checked
    message_for_ref and found nothing): the repeat stores nothing and gets the original."""
    first = storage.add_message(
        sender="Ann", text="once", room="general", room_key="general", by=ANN, ref="r"
    )
    again = storage.add_message(
        sender="Ann", text="once", room="general", room_key="general", by=ANN, ref="r"
    )
    assert first.ref is None and again == replace(first, ref="r")
    other = storage.add_message(  # another session may use the same ref
        sender="Ben", text="once", room="general", room_key="general", by=BEN, ref="r"
    )
    assert other.ref is None and other.id > first.id
    rows = [
        NewMessage(sender="Ann", text="once", room="general", room_key="general", by=ANN, ref="r"),
        NewMessage(sender="Ann", text="new", room="general", room_key="general", by=ANN, ref="n"),
    ]
    called: list[list[ChatMessage]] = []
    [repeat, new] = storage.append_ordered(rows, called.append)
    assert repeat == replace(first, ref="r") and new.ref is None and new.id > other.id
    assert called == [[repeat, new]]
    assert _stored_count(storage, "once") == 2 and _stored_count(storage, "new") == 1
