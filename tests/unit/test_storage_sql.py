"""The shared message SQL's translation to psycopg's parameters (:func:`pyformat`), and that
every query the back ends share translates (no ``%``, literal or cast to trip over)."""

from __future__ import annotations

import pytest

from desktop_chat.net.server import storage_sql, storage_sql_tables
from desktop_chat.net.server.storage_sql import pyformat


def test_named_parameters_become_pyformat() -> None:
    sql = "SELECT 1 FROM messages WHERE id > :since AND room_key = ANY(:rooms) LIMIT :limit"
    assert pyformat(sql) == (
        "SELECT 1 FROM messages WHERE id > %(since)s AND room_key = ANY(%(rooms)s) LIMIT %(limit)s"
    )


def test_a_parameter_repeated_and_next_to_punctuation() -> None:
    sql = "(dm_from = :key AND x = :key_2) OR (dm_to=:key)"
    assert pyformat(sql) == "(dm_from = %(key)s AND x = %(key_2)s) OR (dm_to=%(key)s)"


def test_text_without_parameters_is_unchanged() -> None:
    sql = "SELECT MAX(id) FROM messages WHERE ts >= 0"
    assert pyformat(sql) == sql


def test_question_marks_become_percent_s() -> None:
    sql = storage_sql.insert_message(with_id=False)
    out = pyformat(f"{sql} {storage_sql.NEW_ONLY} RETURNING id")
    assert out.count("%s") == 16 and "?" not in out
    assert out.startswith("INSERT INTO messages (ts, sender, room_key,")
    assert storage_sql.insert_message(with_id=True).count("?") == 17


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 WHERE text LIKE :pattern || 50%",  # psycopg would read % as a placeholder
        "SELECT 1 WHERE text = ':not_a_parameter'",  # a literal: its colon is text
        "SELECT id::text FROM messages",  # a cast, not a parameter
        "SELECT 1 WHERE id = :id OR ts = ?",  # psycopg takes one kind of parameter a statement
    ],
)
def test_sql_the_substitution_could_get_wrong_is_refused(sql: str) -> None:
    with pytest.raises(ValueError, match="not translatable"):
        pyformat(sql)


def test_every_shared_query_translates() -> None:
    shared = [
        storage_sql.BY_REF,
        storage_sql.SESSION_REFS,
        storage_sql.DM_READABLE,
        storage_sql.DM_HISTORY,
        storage_sql.NAME_USED.format(distinct="IS DISTINCT FROM"),
        storage_sql.LAST_ID,
        storage_sql_tables.SAVE_SESSION,
    ]
    for sql in shared:
        out = pyformat(sql)
        assert ":" not in out and "%(" in out, sql
