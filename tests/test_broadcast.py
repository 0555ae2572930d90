"""The UDP broadcast fallback: strict packets, a responder and probes on loopback only.

Every malformed, oversized or spoofed packet is dropped and the responder keeps answering.
"""

from __future__ import annotations

import ipaddress
import json
import select
import socket
import time
from collections.abc import Iterator

import pytest

from desktop_chat.net.discovery.advert import Advert, FoundServer
from desktop_chat.net.discovery.broadcast import (
    MAX_PACKET,
    BroadcastProbe,
    BroadcastResponder,
    PacketError,
    encode_answer,
    encode_query,
    new_nonce,
    parse_answer,
    parse_query,
    probe_broadcast,
)
from desktop_chat.net.discovery.mdns import DiscoveryBrowser
from tests.helpers import T
from tests.test_discovery import (  # noqa: F401  (the autouse sniffer applies here too)
    FP,
    LOOP,
    Recorder,
    _nothing_leaves_the_machine,
)


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(T(2.0))
    return sock


# --- broadcast packets ----------------------------------------------------------------------


def test_query_and_answer_round_trip() -> None:
    nonce = new_nonce()
    assert parse_query(encode_query(nonce)) == nonce
    advert = Advert.create("Chat", tls="required", password=True, people=7, fingerprint=FP)
    assert parse_answer(encode_answer(nonce, 5151, advert), nonce) == (5151, advert)
    worst = Advert.create("\U0001f600" * 100, fingerprint=FP, people=9_999_999)
    assert len(encode_answer(nonce, 65535, worst)) <= MAX_PACKET


def _answer_fields(nonce: str, **changes: object) -> bytes:
    fields: dict[str, object] = json.loads(encode_answer(nonce, 5151, Advert.create("Chat")))
    fields.update(changes)
    return json.dumps({k: v for k, v in fields.items() if v is not None}).encode()


NONCE = "ab" * 16

BAD_QUERIES = [
    b"",
    b"\x00\xff" * 10,
    b"hello",
    b"[1,2,3]",
    b"{" * 600,
    b"[" * 1000,
    b"\xff" + encode_query(NONCE),
    encode_query(NONCE) + b" " * (MAX_PACKET + 1),
    b'{"magic":"desktop-chat","v":1,"op":"query","nonce":"' + b"a" * 2000 + b'"}',
    json.dumps({"magic": "other", "v": 1, "op": "query", "nonce": NONCE}).encode(),
    json.dumps({"magic": "desktop-chat", "v": 2, "op": "query", "nonce": NONCE}).encode(),
    json.dumps({"magic": "desktop-chat", "v": True, "op": "query", "nonce": NONCE}).encode(),
    json.dumps({"magic": "desktop-chat", "v": 1.0, "op": "query", "nonce": NONCE}).encode(),
    json.dumps({"magic": "desktop-chat", "v": 1, "op": "answer", "nonce": NONCE}).encode(),
    json.dumps({"magic": "desktop-chat", "v": 1, "op": "query", "nonce": NONCE.upper()}).encode(),
    json.dumps({"magic": "desktop-chat", "v": 1, "op": "query", "nonce": 12}).encode(),
    json.dumps({"magic": "desktop-chat", "v": 1, "op": "query"}).encode(),
    b'{"magic":"desktop-chat","v":1,"op":"query","nonce":"' + NONCE.encode() + b'","v":1}',
    b'{"magic":"desktop-chat","v":NaN,"op":"query","nonce":"' + NONCE.encode() + b'"}',
]


@pytest.mark.parametrize("data", BAD_QUERIES)
def test_bad_queries_are_refused(data: bytes) -> None:
    with pytest.raises(PacketError):
        parse_query(data)


BAD_ANSWERS = [
    _answer_fields("cd" * 16),  # someone else's nonce: unsolicited or spoofed
    _answer_fields(NONCE, port=0),
    _answer_fields(NONCE, port=70000),
    _answer_fields(NONCE, port="5151"),
    _answer_fields(NONCE, port=True),
    _answer_fields(NONCE, tls="sometimes"),
    _answer_fields(NONCE, people=4),
    _answer_fields(NONCE, title="\u202eevil"),
    _answer_fields(NONCE, title=None),
    _answer_fields(NONCE, op="query"),
    encode_query(NONCE),
    _answer_fields(NONCE, title="x" * 900),
]


@pytest.mark.parametrize("data", BAD_ANSWERS)
def test_bad_answers_are_refused(data: bytes) -> None:
    with pytest.raises(PacketError):
        parse_answer(data, NONCE)


# --- broadcast on loopback ------------------------------------------------------------------


@pytest.fixture
def responder() -> Iterator[BroadcastResponder]:
    advert = Advert.create("Broadcast chat", tls="offered", people=2, fingerprint=FP)
    with BroadcastResponder(4242, advert, bind_host="127.0.0.1", port=0) as r:
        yield r


def test_probe_to_loopback_broadcast_finds_the_responder(responder: BroadcastResponder) -> None:
    port = responder.address[1]
    found = probe_broadcast(T(0.3), address="127.255.255.255", port=port)
    assert found == [
        FoundServer(
            name="127.0.0.1:4242",
            title="Broadcast chat",
            addresses=("127.0.0.1",),
            port=4242,
            protocol=1,
            tls="offered",
            password=False,
            people=2,
            fingerprint=FP,
            source="broadcast",
        )
    ]
    assert found[0].join_address == "127.0.0.1:4242"


def test_responder_drops_garbage_and_keeps_answering(responder: BroadcastResponder) -> None:
    target = ("127.0.0.1", responder.address[1])
    with udp_socket() as client:
        for data in BAD_QUERIES:
            client.sendto(data, target)
        client.sendto(b"x" * 9000, target)  # far over the cap: truncated, then dropped
        nonce = new_nonce()
        client.sendto(encode_query(nonce), target)
        # Packets are handled in order: had any garbage been answered, that answer
        # would arrive first.
        data, sender = client.recvfrom(MAX_PACKET + 1)
    assert sender == target
    assert parse_answer(data, nonce)[0] == 4242
    assert responder.dropped == len(BAD_QUERIES) + 1
    assert responder.answered == 1


def test_responder_rate_limits_a_flood(responder: BroadcastResponder) -> None:
    target = ("127.0.0.1", responder.address[1])
    answers = 0
    with udp_socket() as client:
        for _ in range(30):
            client.sendto(encode_query(new_nonce()), target)
        client.settimeout(0.05)
        deadline = time.monotonic() + T(3.0)
        while responder.answered + responder.dropped < 30 and time.monotonic() < deadline:
            try:
                client.recvfrom(MAX_PACKET + 1)
                answers += 1
            except TimeoutError:
                continue
    assert responder.answered + responder.dropped == 30
    assert responder.answered <= 10  # 5 per second per sender; the flood may span a second


def test_probe_drops_spoofed_and_malformed_answers() -> None:
    with udp_socket() as fake_server, udp_socket() as spoofer:
        port = fake_server.getsockname()[1]
        with BroadcastProbe(["127.0.0.1"], port) as probe:
            assert probe.send() == 1
            query, client = fake_server.recvfrom(MAX_PACKET + 1)
            nonce = parse_query(query)
            for bad in BAD_ANSWERS:
                fake_server.sendto(bad.replace(NONCE.encode(), nonce.encode()), client)
            fake_server.sendto(b"\x00" * 3000, client)
            fake_server.sendto(b"[" * 1000, client)
            good = encode_answer(nonce, 6000, Advert.create("Real", people=1))
            spoofer.sendto(good, client)  # right nonce, wrong source port
            fake_server.sendto(good, client)
            deadline = time.monotonic() + T(2.0)
            while not probe.found and time.monotonic() < deadline:
                readable, _, _ = select.select([probe], [], [], 0.1)
                if readable:
                    probe.read_one()
            assert [(s.title, s.port, s.people) for s in probe.found] == [("Real", 6000, 1)]
            # BAD_ANSWERS[0] carries another nonce and survives the replace: all dropped.
            assert probe.dropped == len(BAD_ANSWERS) + 3


def test_broadcast_only_server_appears_updates_and_disappears() -> None:
    advert = Advert.create("Only broadcast", people=1)
    recorder = Recorder()
    responder = BroadcastResponder(4343, advert, bind_host="127.0.0.1", port=0)
    responder.start()
    try:
        browser = DiscoveryBrowser(
            recorder,
            interfaces=LOOP,
            mdns=False,
            broadcast_port=responder.address[1],
            probe_interval=0.1,
            probe_window=0.05,
            missed_probes=2,
        )
        with browser:
            (found,) = recorder.wait_for(lambda s: len(s) == 1)
            assert (found.title, found.port, found.source) == ("Only broadcast", 4343, "broadcast")
            responder.update(Advert.create("Only broadcast", people=5))
            recorder.wait_for(lambda s: len(s) == 1 and s[0].people == 5)
            responder.close()
            recorder.wait_for(lambda s: s == [])
    finally:
        responder.close()


def test_no_answer_is_larger_than_its_query(responder: BroadcastResponder) -> None:
    """A short query (as a spoofer would send, to amplify) is not answered; ours are padded."""
    target = ("127.0.0.1", responder.address[1])
    short_nonce, nonce = new_nonce(), new_nonce()
    short = json.dumps(
        {"magic": "desktop-chat", "v": 1, "op": "query", "nonce": short_nonce},
        separators=(",", ":"),
    ).encode()
    query = encode_query(nonce)
    assert len(query) == MAX_PACKET
    with udp_socket() as client:
        client.sendto(short, target)
        client.sendto(query, target)
        data, _ = client.recvfrom(MAX_PACKET + 1)  # in order: the short one got nothing
    assert parse_answer(data, nonce)[0] == 4242
    assert len(data) <= len(query)
    assert (responder.answered, responder.dropped) == (1, 1)


def test_a_wildcard_responder_answers_only_its_own_subnets() -> None:
    advert = Advert.create("Broadcast chat", tls="offered", people=0, fingerprint=FP)
    with BroadcastResponder(4242, advert, bind_host="0.0.0.0", port=0) as r:
        nets = r.allowed_networks
    assert any(ipaddress.IPv4Address("127.0.0.1") in n for n in nets)
    assert not any(ipaddress.IPv4Address("203.0.113.7") in n for n in nets)  # TEST-NET-3
