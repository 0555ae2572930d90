"""The network check, run for real but restricted to loopback (nothing leaves the machine)."""

from __future__ import annotations

import socket
import time

from desktop_chat.net.discovery.advert import LocalAddress
from desktop_chat.net.discovery.mdns import Announcer
from desktop_chat.net.discovery.netcheck import (
    CheckReport,
    Step,
    add_advice,
    format_report,
    run_check,
)
from tests.helpers import T
from tests.test_discovery import _nothing_leaves_the_machine  # noqa: F401  (autouse sniffer)

LOOP = ["127.0.0.1"]


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_loopback_check_says_what_works_and_finishes_in_time() -> None:
    port = _free_port(socket.SOCK_STREAM)
    udp = _free_port(socket.SOCK_DGRAM)
    started = time.monotonic()
    report = run_check(port, interfaces=LOOP, timeout=T(1.0), broadcast_port=udp)
    elapsed = time.monotonic() - started
    assert elapsed < T(1.0) + 1.5

    assert [a.address for a in report.addresses] == ["127.0.0.1"]
    assert report.port_state == "free"
    assert [(c.address, c.reachable) for c in report.reachability] == [("127.0.0.1", True)]
    assert report.mdns.ok is True, report.mdns.detail
    assert report.broadcast.ok is True, report.broadcast.detail
    assert "127.255.255.255" in report.broadcast.detail
    assert report.found == ()

    text = format_report(report)
    assert f"Port {port} (TCP): free" in text
    assert "Automatic discovery (mDNS, UDP 5353): works" in text
    assert f"Broadcast fallback (UDP {udp}): works" in text
    assert "Servers that answered: none" in text
    assert f"allow TCP port {port}" in text
    assert "Only loopback was checked" in text


def test_check_sees_a_running_server_and_its_announcement(server: object) -> None:
    host, port = server.address  # type: ignore[attr-defined]
    title = "Checked chat"
    with Announcer(port, host, title, people=4, broadcast_port=0) as announcer:
        assert announcer.wait_announced(T(5))
        assert announcer.broadcast_address is not None
        udp = announcer.broadcast_address[1]
        # mDNS answers to a query are held back for a second after the announcement
        # (RFC 6762 rate limit), so this check gets the default two seconds.
        report = run_check(port, interfaces=LOOP, timeout=T(2.0), broadcast_port=udp)

    assert report.port_state == "in_use"
    assert [(c.address, c.reachable) for c in report.reachability] == [("127.0.0.1", True)]
    assert [(s.title, s.join_address, s.people, s.source) for s in report.found] == [
        (title, f"127.0.0.1:{port}", 4, "mdns")
    ]
    text = format_report(report)
    assert "Connecting to the server here:" in text
    assert f'"{title}" at 127.0.0.1:{port} (this computer): 4 people' in text
    assert "No other server answered" not in text


def test_advice_names_the_likely_causes_in_plain_words() -> None:
    report = CheckReport(
        port=5151,
        broadcast_port=5152,
        addresses=(
            LocalAddress("lo", "127.0.0.1", 8),
            LocalAddress("wlan0", "192.168.1.5", 24),
            LocalAddress("tun0", "10.8.0.2", 24),
        ),
        port_state="denied",
        port_detail="not allowed here (Permission denied)",
        reachability=(),
        mdns=Step(False, "a test announcement was not heard back"),
        broadcast=Step(False, "could not send broadcasts"),
        found=(),
        advice=(),
        seconds=2.0,
    )
    text = format_report(add_advice(report))
    assert "A VPN looks active (tun0)" in text
    assert "several networks (10.8.0.0/24, 192.168.1.0/24)" in text
    assert "choose a port above 1024" in text
    assert "allow UDP port 5353" in text
    assert "allow UDP port 5152" in text
    assert "NOT working: a test announcement was not heard back" in text
    assert "No other server answered" in text
    assert "typing: 192.168.1.5:5151, 10.8.0.2:5151" in text
