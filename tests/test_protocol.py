"""The sans-I/O protocol core: framing, decoding hostile JSON, round trips (hypothesis)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.framing import TOO_LONG, LineBuffer


def parse_one(line: bytes) -> object:
    events = p.JsonLinesProtocol("server").receive_data(line + b"\n")
    assert len(events) == 1
    return events[0]


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"\xff\xfe{}", "bad_json"),
        (b"{not json", "bad_json"),
        (b'{"type":"say","room":"g","text":NaN}', "bad_json"),
        (b'{"type":"say","room":"g","text":"x","n":Infinity}', "bad_json"),
        (b'{"type":"say","room":"g","text":"x","n":1e999}', "bad_json"),
        (b'{"type":"say","type":"dm"}', "bad_json"),
        (b'{"type":"say","n":' + b"9" * 5000 + b"}", "bad_json"),
        (b"[" * 30_000 + b"]" * 30_000, "bad_json"),
        (b"[1,2]", "bad_message"),
        (b'"hello"', "bad_message"),
        (b"{}", "bad_message"),
        (b'{"type":7}', "bad_message"),
        (b'{"type":"say","room":"g"}', "bad_message"),
        (b'{"type":"say","room":"g","text":"\\ud800"}', "bad_message"),
        (b'{"type":"say","room":"g","text":"   "}', "bad_message"),
        (b'{"type":"say","room":1,"text":"x"}', "bad_message"),
        (b'{"type":"history","room":"g","with":"bob"}', "bad_message"),
        (b'{"type":"history","room":"g","limit":true}', "bad_message"),
        (b'{"type":"hello"}', "bad_message"),
        (b'{"type":"hello","name":5}', "bad_message"),
        (b'{"type":"fly"}', "unknown_type"),
    ],
)
def test_bad_lines_become_one_error_each(line: bytes, code: str) -> None:
    event = parse_one(line)
    assert isinstance(event, p.ProtocolError)
    assert event.code == code


def test_error_keeps_the_request_ref() -> None:
    event = parse_one(b'{"type":"say","room":"g","ref":"abc"}')
    assert isinstance(event, p.ProtocolError)
    assert event.ref == "abc"


def test_unknown_fields_are_ignored() -> None:
    event = parse_one(b'{"type":"say","room":"g","text":"hi","colour":"red","x":{"y":[1]}}')
    assert event == p.Say(room="g", text="hi")


def test_too_long_line_gives_one_error_and_stream_recovers() -> None:
    proto = p.JsonLinesProtocol("server", max_line=100)
    events = proto.receive_data(b'{"type":"ping","n":1}\n' + b"x" * 50)
    events += proto.receive_data(b"y" * 500)
    events += proto.receive_data(b"z" * 500 + b'\n{"type":"ping","n":2}\n')
    assert [type(e).__name__ for e in events] == ["Ping", "ProtocolError", "Ping"]
    assert isinstance(events[1], p.ProtocolError)
    assert events[1].code == "too_long"


def test_line_of_exactly_the_limit_is_accepted() -> None:
    buf = LineBuffer(max_line=10)
    assert buf.feed(b"0123456789\n") == [b"0123456789"]
    assert buf.feed(b"0123456789a\n") == [TOO_LONG]


def test_unterminated_tail_is_dropped_at_eof() -> None:
    proto = p.JsonLinesProtocol("server")
    assert proto.receive_data(b'{"type":"say","room":"g","text":"half') == []
    proto.receive_eof()
    assert proto.receive_data(b'{"type":"ping"}\n') == [p.Ping()]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=8))
def test_arbitrary_bytes_in_arbitrary_chunks_never_raise(data: bytes, cuts: list[int]) -> None:
    proto = p.JsonLinesProtocol("server", max_line=512)
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    out = []
    for chunk in chunks:
        out.extend(proto.receive_data(chunk))
    # One result per complete line, whatever the chunking.
    assert len(out) == data.count(b"\n")


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=2000), cut=st.integers(0, 2000))
def test_chunking_does_not_change_the_result(data: bytes, cut: int) -> None:
    whole = p.JsonLinesProtocol("server", max_line=256).receive_data(data)
    split = p.JsonLinesProtocol("server", max_line=256)
    cut %= len(data) + 1
    assert split.receive_data(data[:cut]) + split.receive_data(data[cut:]) == whole


# NUL is refused in what a client sends (PostgreSQL cannot store it): see test_cluster_safety.
_text = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\0"), min_size=1, max_size=40
).filter(lambda s: s.strip() != "")
_ref = st.one_of(st.none(), st.integers(-(2**40), 2**40), _text)
_ids = st.integers(0, 2**53)

client_events = st.one_of(
    st.builds(
        p.Hello,
        name=_text,
        password=st.none() | _text,
        client=st.none() | _text,
        resume=st.none() | st.builds(p.Resume, session=_text, since=_ids),
        ref=_ref,
    ),
    st.builds(p.Say, room=_text, text=_text, ref=_ref, me=st.none() | st.just(True)),
    st.builds(p.Dm, to=_text, text=_text, ref=_ref),
    st.builds(p.Join, room=_text, ref=_ref),
    st.builds(p.Part, room=_text, ref=_ref),
    st.builds(p.ListRooms, ref=_ref),
    st.builds(
        p.GetHistory,
        room=_text,
        before=st.none() | _ids,
        limit=st.none() | st.integers(1, 500),
        ref=_ref,
    ),
    st.builds(p.GetHistory, with_=_text, ref=_ref),
    st.builds(p.Typing, room=_text, ref=_ref),
    st.builds(p.Typing, to=_text),
    st.builds(p.Ping, n=_ref),
    st.builds(p.Pong, n=_ref),
    st.builds(p.Quit, reason=st.none() | _text),
)

_message = st.builds(
    p.ChatMessage,
    id=_ids,
    ts=_ids,
    from_=_text,
    text=_text,
    room=_text,
    ref=_ref,
    file=st.none() | st.builds(p.FileInfo, id=_text, name=_text, size=_ids, sha256=_text),
)
server_events = st.one_of(
    st.builds(
        p.Welcome,
        name=_text,
        session=_text,
        server=_text,
        rooms=st.lists(_text, max_size=3).map(tuple),
    ),
    st.builds(p.ErrorReply, code=_text, message=_text, ref=_ref),
    _message,
    st.builds(p.ChatMessage, id=_ids, ts=_ids, from_=_text, text=_text, to=_text),
    st.builds(p.Joined, room=_text, name=_text),
    st.builds(p.Left, room=_text, name=_text, reason=st.sampled_from(sorted(p.LEFT_REASONS))),
    st.builds(p.Users, room=_text, names=st.lists(_text, max_size=5).map(tuple)),
    st.builds(
        p.RoomList,
        rooms=st.lists(
            st.builds(p.RoomInfo, name=_text, users=_ids, topic=st.none() | _text), max_size=3
        ).map(tuple),
    ),
    st.builds(p.HistoryReply, messages=st.lists(_message, max_size=3).map(tuple), room=_text),
    st.builds(p.TypingNotice, name=_text, room=_text),
    st.builds(p.ServerPing, n=_ref),
    st.builds(p.ServerPong, n=_ref),
    st.builds(p.Closing, reason=_text),
)


@settings(max_examples=300, deadline=None)
@given(event=client_events)
def test_client_events_round_trip(event: p.ClientEvent) -> None:
    line = p.encode(event)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert p.JsonLinesProtocol("server").receive_data(line) == [event]


@settings(max_examples=300, deadline=None)
@given(event=server_events)
def test_server_events_round_trip(event: p.ServerEvent) -> None:
    assert p.JsonLinesProtocol("client").receive_data(p.encode(event)) == [event]


def test_encoding_is_compact_utf8_json() -> None:
    line = p.encode(p.Say(room="général", text="héllo"))
    assert json.loads(line) == {"type": "say", "room": "général", "text": "héllo"}
    assert "é".encode() in line
