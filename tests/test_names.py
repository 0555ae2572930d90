"""The contract's name rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from desktop_chat.net.protocol.names import InvalidName, name_key, normalize_name


@pytest.mark.parametrize(
    "bad",
    [
        "",
        " alice",
        "alice ",
        "\talice",
        "a" * 33,
        "al\u202eice",
        "al\u200bice",
        "al\x00ice",
        "al\nice",
        "\ufeffalice",
        "a\u2028b",
        "\ud800",
        5,
        None,
    ],
)
def test_invalid_names_are_refused_not_repaired(bad: object) -> None:
    with pytest.raises(InvalidName):
        normalize_name(bad)


@pytest.mark.parametrize("good", ["alice", "Zoë", "a" * 32, "李小龍", "bob the builder", "🙂"])
def test_valid_names(good: str) -> None:
    assert normalize_name(good) == good


def test_length_counts_code_points_after_nfc() -> None:
    decomposed = "e\u0301" * 32  # 64 code points, 32 after NFC
    assert normalize_name(decomposed) == "\u00e9" * 32


def test_comparison_is_casefold_of_nfc() -> None:
    assert name_key("Alice") == name_key("ALICE") == name_key("alice")
    assert name_key("Stra\u00dfe") == name_key("STRASSE")
    assert name_key("e\u0301") == name_key("\u00e9")


@given(st.text(max_size=40))
def test_normalize_either_accepts_or_raises_invalid_name(text: str) -> None:
    try:
        out = normalize_name(text)
    except InvalidName:
        return
    assert 1 <= len(out) <= 32
    assert out == out.strip()
