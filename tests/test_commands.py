"""The slash-command grammar shared by the app and plain-text mode (sans-I/O, no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from desktop_chat.net.protocol.commands import (
    Ban,
    Command,
    CommandError,
    Help,
    Join,
    Kick,
    Me,
    Msg,
    Part,
    Quit,
    Rooms,
    Say,
    Topic,
    Who,
    parse,
    quote_name,
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("hello", Say("hello")),
        ("  indented", Say("  indented")),
        ("//shrug", Say("/shrug")),
        ("/help", Help()),
        ("/HELP", Help()),
        ("/who", Who()),
        ("/names", Who()),
        ("/rooms", Rooms()),
        ("/list", Rooms()),
        ("/join games", Join("games")),
        ("/j games", Join("games")),
        ("/join games secret pass", Join("games", "secret pass")),
        ('/join "board games" pw', Join("board games", "pw")),
        ("/joinpw s3cret Games", Join("Games", "s3cret")),
        ("/joinpw s3cret board games", Join("board games", "s3cret")),
        ("/part", Part(None)),
        ("/part lunch room", Part("lunch room")),
        ('/part "lunch room"', Part("lunch room")),
        ("/msg ann secret plan", Msg("ann", "secret plan")),
        ('/msg "Ann Lee" hi there', Msg("Ann Lee", "hi there")),
        ("/dm ann", Msg("ann", "")),
        ("/me waves", Me("waves")),
        ("/me\nwaves twice", Me("waves twice")),
        ("/quit", Quit(None)),
        ("/quit gone fishing", Quit("gone fishing")),
        ("/exit", Quit(None)),
        ("/kick bob", Kick("bob", None)),
        ('/kick "Bob Ray" spamming links', Kick("Bob Ray", "spamming links")),
        ("/ban bob", Ban("bob")),
        ("/ban Bob Ray", Ban("Bob Ray")),
        ("/topic Friday lunch", Topic("Friday lunch")),
        ("/topic", Topic("")),
    ],
)
def test_parses(line: str, expected: Command) -> None:
    assert parse(line) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/bogus", "Unknown command /bogus. Type /help for the list."),
        ("/", "Unknown command /. Type /help for the list."),
        ("/join", "Usage: /join <room> [password]"),
        ("/joinpw onlypass", "Usage: /joinpw <password> <room>"),
        ("/msg", "Usage: /msg <name> <text>"),
        ("/me   ", "Usage: /me <action>"),
        ("/kick", "Usage: /kick <name> [reason]"),
        ("/ban", "Usage: /ban <name>"),
        ('/msg "" hi', "Usage: /msg <name> <text>"),
    ],
)
def test_bad_lines_are_errors_with_a_message(line: str, message: str) -> None:
    assert parse(line) == CommandError(message)


@pytest.mark.parametrize("line", ["", "   ", "\t", "\n"])
def test_blank_lines_are_nothing(line: str) -> None:
    assert parse(line) is None


def test_each_command_has_its_kind() -> None:
    assert parse("/msg a b") is not None
    kinds = {cmd.kind for cmd in (parse("hi"), parse("/ban x"), parse("/nope")) if cmd}
    assert kinds == {"say", "ban", "error"}


def test_an_unclosed_quote_is_part_of_the_name() -> None:
    assert parse('/msg "Ann hi') == Msg('"Ann', "hi")


@given(st.text())
def test_never_raises(line: str) -> None:
    result = parse(line)
    assert result is None or isinstance(result.kind, str)
    assert (result is None) == (not line.strip())


@given(st.text(min_size=1))
def test_slash_lines_are_commands_or_errors_and_others_are_said(line: str) -> None:
    result = parse(line)
    if line.strip() and not line.startswith("/"):
        assert result == Say(line)


names = st.text(min_size=1).filter(lambda s: s.strip() == s)
texts = st.text(min_size=1).filter(lambda s: not s[0].isspace() and s.strip())


@given(names, texts)
def test_quoted_names_round_trip_in_msg(name: str, text: str) -> None:
    assert parse(f"/msg {quote_name(name)} {text}") == Msg(name, text)


@given(names, texts)
def test_quoted_names_round_trip_in_kick_and_join(name: str, text: str) -> None:
    assert parse(f"/kick {quote_name(name)} {text}") == Kick(name, text.strip())
    assert parse(f"/join {quote_name(name)} {text}") == Join(name, text.strip())
    assert parse(f"/join {quote_name(name)}") == Join(name)


@given(names)
def test_single_name_commands_round_trip(name: str) -> None:
    assert parse(f"/ban {quote_name(name)}") == Ban(name)
    assert parse(f"/part {quote_name(name)}") == Part(name)


def test_quote_name_leaves_simple_names_alone() -> None:
    assert quote_name("ann") == "ann"
    assert quote_name("Ann Lee") == '"Ann Lee"'
    assert quote_name('say "hi"') == '"say \\"hi\\""'
