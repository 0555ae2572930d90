"""RecentRefs: which refs of a live session need the database to decide."""

from __future__ import annotations

from desktop_chat.net.server.refs import RecentRefs, ref_key


def test_a_new_ref_of_a_known_session_needs_no_query() -> None:
    refs = RecentRefs()
    refs.start("s", [ref_key("1")])
    assert refs.may_be_used("s", "1")  # used: the database has the original
    assert not refs.may_be_used("s", "2")  # certainly new
    refs.add("s", "2")
    assert refs.may_be_used("s", "2")


def test_a_session_resumed_from_another_process_asks_the_database_for_a_while() -> None:
    # The process it came from may still be storing a message it queued there.
    refs = RecentRefs()
    refs.start("s", [ref_key("1")], doubt_for=60.0)
    assert refs.may_be_used("s", "2")
    refs.start("t", [ref_key("1")], doubt_for=0.0)
    assert not refs.may_be_used("t", "2")
