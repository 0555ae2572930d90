"""LAN discovery for real: mDNS and the UDP broadcast fallback on loopback, and between two
network namespaces when the machine lets the test create them.

Nothing here may leave the machine: zeroconf is bound to 127.0.0.1, broadcasts go to
127.255.255.255, and (where a raw socket is allowed) a sniffer fails the test if any
mDNS or discovery packet goes out of a real interface.
"""

from __future__ import annotations

import ipaddress
import json
import os
import queue
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ifaddr
import pytest

from desktop_chat.net.discovery.advert import (
    MAX_TITLE_BYTES,
    Advert,
    FoundServer,
    announce_addresses,
    broadcast_targets,
    clean_title,
    rank_addresses,
)
from desktop_chat.net.discovery.mdns import Announcer, DiscoveryBrowser, instance_name
from tests.helpers import T

FP = "0123456789abcdef" * 4
LOOP = ["127.0.0.1"]
ROOT = Path(__file__).resolve().parent.parent


# --- helpers ------------------------------------------------------------------------------


class Recorder:
    """The `on_change` callback: keeps every list it was given; waits for one that fits."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.snapshots: list[list[FoundServer]] = []

    def __call__(self, servers: list[FoundServer]) -> None:
        with self.cond:
            self.snapshots.append(servers)
            self.cond.notify_all()

    def wait_for(
        self, predicate: Callable[[list[FoundServer]], bool], timeout: float = 5.0
    ) -> list[FoundServer]:
        deadline = time.monotonic() + T(timeout)
        with self.cond:
            while True:
                if self.snapshots and predicate(self.snapshots[-1]):
                    return self.snapshots[-1]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    last = self.snapshots[-1] if self.snapshots else None
                    raise AssertionError(f"no matching server list; last one: {last}")
                self.cond.wait(remaining)


def titled(title: str) -> Callable[[list[FoundServer]], list[FoundServer]]:
    return lambda servers: [s for s in servers if s.title == title]


def unique_title() -> str:
    return f"Test chat {secrets.token_hex(3)}"


def adapter(name: str, *ips: tuple[str, int]) -> ifaddr.Adapter:
    return ifaddr.Adapter(name, name, [ifaddr.IP(ip, prefix, name) for ip, prefix in ips])


_PACKET_OUTGOING = 4
_WATCHED_UDP_PORTS = {5353, 5152}


@pytest.fixture(autouse=True)
def _nothing_leaves_the_machine() -> Iterator[None]:
    """Fail if an mDNS/discovery packet goes out of a real (non-loopback) interface.

    Uses a Linux packet socket, so it needs root (CAP_NET_RAW); elsewhere it checks
    nothing and the loopback binding tests below still hold.
    """
    if not hasattr(socket, "AF_PACKET"):
        yield
        return
    try:
        sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0003))
    except PermissionError:
        yield
        return
    sniffer.setblocking(False)
    try:
        yield
        leaks = []
        while True:
            try:
                data, addr = sniffer.recvfrom(65535)
            except BlockingIOError:
                break
            ifname, proto, pkttype = addr[0], addr[1], addr[2]
            if ifname == "lo" or pkttype != _PACKET_OUTGOING:
                continue
            what = _udp_destination(proto, data)
            if what is not None and (
                what[1] in _WATCHED_UDP_PORTS
                or what[0] in ("224.0.0.251", "ff02::fb", "255.255.255.255")
            ):
                leaks.append((ifname, what))
        assert not leaks, f"discovery traffic left the machine: {leaks}"
    finally:
        sniffer.close()


def _udp_destination(proto: int, data: bytes) -> tuple[str, int] | None:
    if proto == 0x0800 and len(data) >= 20 and data[9] == 17:
        ihl = (data[0] & 0x0F) * 4
        dst = str(ipaddress.IPv4Address(data[16:20]))
        return dst, int.from_bytes(data[ihl + 2 : ihl + 4], "big")
    if proto == 0x86DD and len(data) >= 44 and data[6] == 17:
        dst = str(ipaddress.IPv6Address(data[24:40]))
        return dst, int.from_bytes(data[42:44], "big")
    return None


# --- what is announced --------------------------------------------------------------------


def test_txt_record_has_exactly_the_contract_keys() -> None:
    advert = Advert.create(
        "Bob's chat", tls="offered", password=True, people=3, fingerprint=FP.upper()
    )
    assert advert.to_txt() == {
        "protocol": "1",
        "title": "Bob's chat",
        "tls": "offered",
        "password": "yes",
        "people": "3",
        "fp": FP,
    }
    assert Advert.from_txt(advert.to_txt()) == advert
    plain = Advert.create("Open", tls="off").to_txt()
    assert "fp" not in plain
    assert plain["password"] == "no"


def test_fingerprint_with_colons_is_normalised_and_junk_refused() -> None:
    colons = ":".join(FP[i : i + 2].upper() for i in range(0, 64, 2))
    assert Advert.create("x", fingerprint=colons).fingerprint == FP
    with pytest.raises(ValueError, match="fingerprint"):
        Advert.create("x", fingerprint="abc")
    with pytest.raises(ValueError, match="tls"):
        Advert.create("x", tls="maybe")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("protocol", "one"),
        ("protocol", "1234"),
        ("tls", "maybe"),
        ("password", "true"),
        ("people", "-1"),
        ("people", "12345678"),
        ("people", 3),
        ("fp", FP.upper()),
        ("fp", FP[:-2]),
        ("title", ""),
        ("title", " padded "),
        ("title", "evil\u202etxt"),
        ("title", "bell\x07"),
        ("title", "x" * (MAX_TITLE_BYTES + 1)),
        ("title", None),
    ],
)
def test_peer_txt_breaking_the_contract_is_refused(key: str, value: object) -> None:
    txt: dict[str, object] = dict(Advert.create("Fine", fingerprint=FP).to_txt())
    txt[key] = value
    with pytest.raises(ValueError, match=r"\w"):
        Advert.from_txt(txt)


def test_missing_keys_refused_unknown_keys_ignored() -> None:
    txt: dict[str, object] = dict(Advert.create("Fine").to_txt())
    assert Advert.from_txt({**txt, "future": "thing"}).title == "Fine"
    del txt["people"]
    with pytest.raises(ValueError, match="people"):
        Advert.from_txt(txt)


def test_title_is_cleaned_and_capped() -> None:
    assert clean_title("  a\u200bb\x00c  ") == "abc"
    assert clean_title("\u202e") == "Desktop Chat"
    long = clean_title("é" * 300)
    assert len(long.encode("utf-8")) <= MAX_TITLE_BYTES
    assert long == "é" * (MAX_TITLE_BYTES // 2)


def test_instance_name_is_unique_per_host_and_port_and_fits_one_label() -> None:
    a = instance_name("My.chat", "laptop.example.org", 5151)
    assert a == "My·chat (laptop:5151)"
    assert instance_name("My.chat", "laptop", 5152) != a
    assert instance_name("My.chat", "desktop", 5151) != a
    long = instance_name("日本語" * 40, "a-very-long-hostname-indeed-yes", 65535)
    assert len(long.encode("utf-8")) <= 58
    assert long.endswith(":65535)")
    assert "." not in long


def test_wildcard_bind_announces_real_addresses_loopback_only_when_alone() -> None:
    lo = adapter("lo", ("127.0.0.1", 8))
    eth = adapter("eth0", ("192.168.1.5", 24))
    wifi = adapter("wlan0", ("10.0.0.7", 16))
    assert announce_addresses("0.0.0.0", adapters=[lo, eth, wifi]) == ["192.168.1.5", "10.0.0.7"]
    assert announce_addresses("", adapters=[lo]) == ["127.0.0.1"]
    assert announce_addresses("127.0.0.1", adapters=[lo, eth]) == ["127.0.0.1"]
    assert announce_addresses("192.168.1.5", adapters=[lo, eth]) == ["192.168.1.5"]
    assert announce_addresses("0.0.0.0", ["10.0.0.7"], adapters=[lo, eth, wifi]) == ["10.0.0.7"]


def test_broadcast_targets_per_interface() -> None:
    lo = adapter("lo", ("127.0.0.1", 8))
    eth = adapter("eth0", ("192.168.1.5", 24))
    ptp = adapter("tun0", ("10.8.0.2", 32))
    assert broadcast_targets(adapters=[lo, eth, ptp]) == [
        "127.255.255.255",
        "192.168.1.255",
        "255.255.255.255",
    ]
    assert broadcast_targets(LOOP, adapters=[lo, eth]) == ["127.255.255.255"]


def test_join_address_brackets_ipv6() -> None:
    advert = Advert.create("v6")
    server = FoundServer.from_advert("x", advert, ["fd00::5"], 5151, "mdns")
    assert server.join_address == "[fd00::5]:5151"


def test_a_server_that_cannot_be_announced_still_closes_cleanly() -> None:
    with Announcer(5151, "::1", "IPv6 only") as announcer:
        assert announcer.addresses == []
        assert announcer.problems
        assert "cannot announce" in announcer.problems[0]
        assert not announcer.wait_announced(0)
        announcer.update(people=1)


def test_addresses_on_our_subnet_come_first() -> None:
    nets = [ipaddress.IPv4Network("192.168.1.0/24")]
    ranked = rank_addresses(["fd00::5", "10.9.9.9", "192.168.1.7", "10.9.9.9"], nets)
    assert ranked == ("192.168.1.7", "10.9.9.9", "fd00::5")


def test_discovery_modules_do_not_import_qt() -> None:
    code = (
        "import sys, desktop_chat.net.discovery.mdns, desktop_chat.net.discovery.netcheck;"
        "assert not [m for m in sys.modules if m.startswith(('PySide6', 'shiboken6'))]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=T(30))


# --- mDNS on loopback -----------------------------------------------------------------------


def test_mdns_announcement_is_seen_updated_and_withdrawn() -> None:
    title = unique_title()
    recorder = Recorder()
    ours = titled(title)
    with DiscoveryBrowser(recorder, interfaces=LOOP, broadcast_port=None) as browser:
        announcer = Announcer(
            47001,
            "127.0.0.1",
            title,
            tls="required",
            password=True,
            fingerprint=FP,
            people=1,
            broadcast_port=None,
            min_update_interval=0.0,
        )
        with announcer:
            (found,) = ours(recorder.wait_for(lambda s: len(ours(s)) == 1))
            assert found == FoundServer(
                name=announcer.name,
                title=title,
                addresses=("127.0.0.1",),
                port=47001,
                protocol=1,
                tls="required",
                password=True,
                people=1,
                fingerprint=FP,
                source="mdns",
            )
            assert announcer.wait_announced(T(5))
            assert announcer.problems == []
            announcer.update(people=3)
            recorder.wait_for(lambda s: [x.people for x in ours(s)] == [3])
            announcer.update(title=title + " renamed")
            recorder.wait_for(
                lambda s: [x.title for x in s if x.port == 47001] == [title + " renamed"]
            )
        recorder.wait_for(lambda s: not [x for x in s if x.port == 47001])
        assert browser.problems == []


def test_announcer_bound_to_loopback_uses_only_loopback() -> None:
    with Announcer(47002, "127.0.0.1", unique_title(), broadcast_port=None) as announcer:
        assert announcer.addresses == ["127.0.0.1"]
        zc = announcer._zc
        assert zc is not None
        senders = [t.transport.get_extra_info("socket") for t in zc.engine.senders]
        assert senders
        for sock in senders:
            assert sock.getsockname()[0] == "127.0.0.1"
            out_if = sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, 4)
            assert socket.inet_ntoa(out_if) == "127.0.0.1"


def test_found_once_when_seen_by_both_mechanisms() -> None:
    title = unique_title()
    recorder = Recorder()
    ours = titled(title)
    with Announcer(47004, "127.0.0.1", title, broadcast_port=0) as announcer:
        assert announcer.broadcast_address is not None
        browser = DiscoveryBrowser(
            recorder,
            interfaces=LOOP,
            broadcast_port=announcer.broadcast_address[1],
            probe_interval=0.1,
            probe_window=0.05,
        )
        with browser:
            recorder.wait_for(lambda s: [x.source for x in ours(s)] == ["mdns"])
    sources = [[x.source for x in ours(snapshot)] for snapshot in recorder.snapshots]
    assert ["broadcast"] in sources  # the fallback answered before mDNS finished probing
    assert all(len(s) <= 1 for s in sources)


def test_close_is_idempotent_and_unstarted_objects_close_cleanly() -> None:
    announcer = Announcer(47005, "127.0.0.1", unique_title(), broadcast_port=0)
    announcer.close()
    announcer.close()
    browser = DiscoveryBrowser(Recorder(), interfaces=LOOP)
    browser.close()
    browser.close()
    with Announcer(47006, "127.0.0.1", unique_title(), broadcast_port=0) as started:
        started.update(people=2)
    started.close()
    started.update(people=3)  # after close: ignored, no error


# --- two hosts: network namespaces ----------------------------------------------------------

_HOST_SCRIPT = """
import json, sys
from desktop_chat.net.discovery.mdns import Announcer
title, fp, hidden_title = sys.argv[1:4]
a = Announcer(5151, "0.0.0.0", title, tls="offered", fingerprint=fp, people=2)
# A second server bound to loopback on the same machine: nobody else may see it.
hidden = Announcer(5153, "127.0.0.1", hidden_title)
a.start()
hidden.start()
ready = a.wait_announced(10) and hidden.wait_announced(10)
print(json.dumps({"ready": ready, "addresses": a.addresses, "hidden": hidden.addresses,
                  "problems": a.problems + hidden.problems, "name": a.name}), flush=True)
for line in sys.stdin:
    a.update(people=int(line))
a.close()
hidden.close()
print(json.dumps({"closed": True}), flush=True)
"""

_CLIENT_SCRIPT = """
import json, sys, threading
from desktop_chat.net.discovery.mdns import DiscoveryBrowser
lock = threading.Lock()  # two browsers call back from two threads: one whole line each
def emit(obj):
    with lock:
        sys.stdout.write(json.dumps(obj) + "\\n")
        sys.stdout.flush()
def report(tag):
    return lambda servers: emit({"tag": tag, "servers": [s.__dict__ for s in servers]})
with DiscoveryBrowser(report("mdns"), broadcast_port=None), \\
     DiscoveryBrowser(report("broadcast"), mdns=False, probe_interval=0.2, probe_window=0.1,
                      missed_probes=2):
    emit({"ready": True})
    sys.stdin.read()
"""


class _Process:
    """A script in a namespace that prints JSON lines; `state` keeps the latest of each."""

    def __init__(self, namespace: str, script: str, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, "-c", script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.state: dict[str, Any] = {}
        self.titles_seen: set[str] = set()
        self.reader = threading.Thread(target=self._read, name=f"reader-{namespace}")
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                self.lines.put({"unreadable": line})

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Read lines until the latest state fits (a line with "tag" sets state[tag])."""
        deadline = time.monotonic() + T(10)
        while not predicate(self.state):
            try:
                item = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no such state in time; last: {self.state}") from None
            if "tag" in item:
                self.state[item["tag"]] = item["servers"]
                self.titles_seen.update(server["title"] for server in item["servers"])
            else:
                self.state.update(item)
        return self.state

    def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=T(10))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def two_hosts() -> Iterator[tuple[str, str]]:
    """Two network namespaces joined by a veth pair: 10.213.<n>.1 and .2 on a /24."""
    if not sys.platform.startswith("linux"):
        pytest.skip("network namespaces are Linux only")
    if os.geteuid() != 0:
        pytest.skip("creating network namespaces needs root")
    if shutil.which("ip") is None:
        pytest.skip("the `ip` command (iproute2) is not installed")
    tag = f"dct{os.getpid() % 100000}"
    ns_a, ns_b = f"{tag}a", f"{tag}b"
    subnet = f"10.213.{os.getpid() % 250}"
    created: list[str] = []

    def ip(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)

    try:
        for ns in (ns_a, ns_b):
            result = ip("netns", "add", ns)
            if result.returncode != 0:
                pytest.skip(f"`ip netns add` is not allowed here: {result.stderr.strip()}")
            created.append(ns)
        steps = [
            ("link", "add", f"{tag}va", "type", "veth", "peer", "name", f"{tag}vb"),
            ("link", "set", f"{tag}va", "netns", ns_a),
            ("link", "set", f"{tag}vb", "netns", ns_b),
            ("-n", ns_a, "addr", "add", f"{subnet}.1/24", "dev", f"{tag}va"),
            ("-n", ns_b, "addr", "add", f"{subnet}.2/24", "dev", f"{tag}vb"),
            ("-n", ns_a, "link", "set", "lo", "up"),
            ("-n", ns_b, "link", "set", "lo", "up"),
            ("-n", ns_a, "link", "set", f"{tag}va", "up"),
            ("-n", ns_b, "link", "set", f"{tag}vb", "up"),
        ]
        for step in steps:
            result = ip(*step)
            if result.returncode != 0:
                pytest.skip(f"could not set up a veth pair ({' '.join(step)}): {result.stderr}")
        yield ns_a, ns_b
    finally:
        for ns in created:
            ip("netns", "del", ns)  # takes its end of the veth pair with it


@pytest.mark.slow
def test_discovery_between_two_network_namespaces(two_hosts: tuple[str, str]) -> None:
    """Two "LAN hosts": a clashing name is renamed, a server is found both ways (updated,
    then withdrawn), and a server bound to loopback is never seen from the other host."""
    ns_a, ns_b = two_hosts
    title = unique_title()
    hidden = unique_title()
    processes: list[_Process] = []
    try:
        host = _Process(ns_a, _HOST_SCRIPT, title, FP, hidden)
        processes.append(host)
        started = host.wait_for(lambda st: "ready" in st)
        assert started["ready"] is True
        assert started["problems"] == []
        assert started["name"] == instance_name(title, socket.gethostname(), 5151)
        (address,) = started["addresses"]
        assert not address.startswith("127.")  # a real address, not loopback
        assert started["hidden"] == ["127.0.0.1"]

        # Same title, same hostname (namespaces share it), same port: zeroconf's probe
        # hears the first one defend the name, and the second one renames itself.
        twin = _Process(ns_b, _HOST_SCRIPT, title, FP, hidden)
        processes.append(twin)
        twin_started = twin.wait_for(lambda st: "ready" in st)
        assert twin_started["ready"] is True
        assert twin_started["name"] == started["name"] + "-2"
        twin.close()

        client = _Process(ns_b, _CLIENT_SCRIPT)
        processes.append(client)

        def listed(people: int) -> Callable[[dict[str, Any]], bool]:
            def match(servers: list[dict[str, Any]]) -> bool:
                return [
                    (
                        s["title"],
                        s["people"],
                        s["addresses"][0],
                        s["port"],
                        s["tls"],
                        s["fingerprint"],
                    )
                    for s in servers
                ] == [(title, people, address, 5151, "offered", FP)]

            return lambda st: match(st.get("mdns", [])) and match(st.get("broadcast", []))

        client.wait_for(listed(2))
        host.send("5\n")
        client.wait_for(listed(5))
        host.close()
        client.wait_for(lambda st: st["mdns"] == [] and st["broadcast"] == [])
        assert client.titles_seen == {title}
    finally:
        for process in processes:
            process.close()


def test_server_announces_itself_and_its_people(make_server: Any, data_dir: Path) -> None:
    """The real Server, bound to loopback, announcing: found with its fingerprint and people."""
    from tests.helpers import LineClient

    title = unique_title()
    recorder = Recorder()
    ours = titled(title)
    with DiscoveryBrowser(recorder, interfaces=LOOP, broadcast_port=None):
        srv = make_server(announce=True, title=title, broadcast_port=0)
        (found,) = ours(recorder.wait_for(lambda s: len(ours(s)) == 1))
        assert (found.port, found.tls, found.fingerprint) == (srv.port, "offered", srv.fingerprint)
        assert found.people == 0
        with LineClient(srv.address) as alice:
            alice.login("alice")
            recorder.wait_for(lambda s: [x.people for x in ours(s)] == [1])
        srv.close()
        recorder.wait_for(lambda s: not ours(s))
