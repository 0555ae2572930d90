"""The network check: "Why can't I see anyone?" answered from this machine, in plain words.

`run_check(port)` tests what one computer can test on its own: its interfaces
and addresses, whether the chat port is free (or which addresses a server on it
answers on), whether mDNS and the broadcast fallback can send and hear their
own packets, and whether any other Desktop Chat server answered. It finishes
within `timeout` plus about half a second whatever the network does (every
step has a deadline; the slow ones run side by side), but it does block the
calling thread: the GUI runs it on a worker thread. `format_report()` turns the
result into text for people, with what to try.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence

from zeroconf import Error as ZeroconfError
from zeroconf import ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

from desktop_chat.net.discovery.advert import (
    FoundServer,
    LocalAddress,
    announce_addresses,
    broadcast_targets,
    local_addresses,
)
from desktop_chat.net.discovery.broadcast import (
    BROADCAST_PORT,
    MAX_PACKET,
    encode_query,
    new_nonce,
    parse_query,
)
from desktop_chat.net.discovery.mdns import DiscoveryBrowser

CHECK_SERVICE_TYPE = "_dc-check._tcp.local."
"""The self-test's own service type, so no Join screen ever lists the probe."""

MDNS_PORT = 5353
_VPN_NAME = re.compile(r"^(tun|tap|wg|utun|ppp|ipsec|vpn|zt|tailscale|nordlynx)", re.IGNORECASE)
_JOIN_SLACK = 3.0


@dataclasses.dataclass(frozen=True)
class Step:
    """One test: `ok` is True/False, or None when it could not be tried."""

    ok: bool | None
    detail: str


@dataclasses.dataclass(frozen=True)
class AddressCheck:
    address: str
    reachable: bool
    detail: str


@dataclasses.dataclass(frozen=True)
class CheckReport:
    port: int
    broadcast_port: int
    addresses: tuple[LocalAddress, ...]
    port_state: str
    """"free", "in_use" (something listens there), "denied" or "error"."""
    port_detail: str
    reachability: tuple[AddressCheck, ...]
    mdns: Step
    broadcast: Step
    found: tuple[FoundServer, ...]
    advice: tuple[str, ...]
    seconds: float

    @property
    def lan_addresses(self) -> list[str]:
        return [a.address for a in self.addresses if not a.is_loopback]


def run_check(
    port: int,
    *,
    interfaces: Sequence[str] | None = None,
    timeout: float = 2.0,
    broadcast_port: int = BROADCAST_PORT,
) -> CheckReport:
    """Test the network from this machine; returns within about `timeout` + 0.5 s.

    `interfaces` restricts every test to those IPv4 addresses (the tests use
    ``["127.0.0.1"]`` so nothing leaves the machine).
    """
    started = time.monotonic()
    deadline = started + timeout
    addresses = _chosen_addresses(interfaces)
    mdns_on = announce_addresses("", interfaces)
    targets = broadcast_targets(interfaces)

    results: dict[str, object] = {}
    workers = [
        _worker(results, "mdns", lambda: _check_mdns(mdns_on, deadline)),
        _worker(results, "broadcast", lambda: _check_broadcast(targets, deadline)),
        _worker(
            results,
            "found",
            lambda: _find_servers(interfaces, targets, broadcast_port, deadline),
        ),
    ]
    port_state, port_detail, reach = _check_port(
        port, interfaces, [a.address for a in addresses], deadline
    )
    for thread in workers:
        thread.join(max(0.0, deadline + _JOIN_SLACK - time.monotonic()))

    mdns = _result_step(results, "mdns")
    bcast = _result_step(results, "broadcast")
    found_obj = results.get("found", ())
    found = tuple(found_obj) if isinstance(found_obj, tuple) else ()
    report = CheckReport(
        port=port,
        broadcast_port=broadcast_port,
        addresses=tuple(addresses),
        port_state=port_state,
        port_detail=port_detail,
        reachability=tuple(reach),
        mdns=mdns,
        broadcast=bcast,
        found=found,
        advice=(),
        seconds=time.monotonic() - started,
    )
    return add_advice(report, restricted=interfaces is not None)


# --- steps --------------------------------------------------------------------------------


def _worker(results: dict[str, object], key: str, fn: Callable[[], object]) -> threading.Thread:
    def run() -> None:
        results[key] = fn()

    thread = threading.Thread(target=run, name=f"netcheck-{key}", daemon=True)
    thread.start()
    return thread


def _result_step(results: dict[str, object], key: str) -> Step:
    value = results.get(key)
    if isinstance(value, Step):
        return value
    return Step(None, "did not finish in time")


def _chosen_addresses(interfaces: Sequence[str] | None) -> list[LocalAddress]:
    everything = local_addresses()
    if interfaces is None:
        return everything
    known = {a.address: a for a in everything}
    return [known.get(a, LocalAddress("?", a, 32)) for a in interfaces]


def _check_port(
    port: int, interfaces: Sequence[str] | None, addresses: list[str], deadline: float
) -> tuple[str, str, list[AddressCheck]]:
    """Try to bind the port; then connect to it on every address."""
    hosts = [""] if interfaces is None else list(interfaces)
    listeners: list[socket.socket] = []
    state, detail = "free", "free: a server started here can use it"
    try:
        for host in hosts:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listeners.append(sock)
            if os.name != "nt":  # on Windows SO_REUSEADDR would let us steal a live port
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
                sock.listen(8)
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
                    state, detail = "in_use", "in use: something is already listening on it"
                elif exc.errno in (errno.EACCES, errno.EPERM):
                    state, detail = "denied", f"not allowed here ({exc.strerror})"
                else:
                    state, detail = "error", f"cannot be used: {exc.strerror or exc}"
                break
        if state not in ("free", "in_use"):
            return state, detail, []
        if state == "in_use":
            for sock in listeners:
                sock.close()
            listeners.clear()
        checks = [_connect(address, port, deadline) for address in addresses]
    finally:
        for sock in listeners:
            sock.close()
    return state, detail, checks


def _connect(address: str, port: int, deadline: float) -> AddressCheck:
    wait = max(0.05, min(1.0, deadline - time.monotonic()))
    try:
        with socket.create_connection((address, port), timeout=wait):
            return AddressCheck(address, True, "accepts connections")
    except ConnectionRefusedError:
        return AddressCheck(address, False, "refused (nothing listens on this address)")
    except TimeoutError:
        return AddressCheck(address, False, "no answer (a firewall may be dropping it)")
    except OSError as exc:
        return AddressCheck(address, False, f"failed: {exc.strerror or exc}")


def _check_mdns(addresses: list[str], deadline: float) -> Step:
    """Announce a test service from one zeroconf instance and hear it on another."""
    wanted = f"check-{secrets.token_hex(4)}.{CHECK_SERVICE_TYPE}"
    heard = threading.Event()

    def on_service(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Added and name == wanted:
            heard.set()

    try:
        sender = Zeroconf(interfaces=list(addresses))
    except OSError as exc:
        return Step(False, f"could not open the mDNS port (UDP {MDNS_PORT}): {exc.strerror}")
    try:
        try:
            listener = Zeroconf(interfaces=list(addresses))
        except OSError as exc:
            return Step(False, f"could not open the mDNS port (UDP {MDNS_PORT}): {exc.strerror}")
        browser = ServiceBrowser(listener, CHECK_SERVICE_TYPE, handlers=[on_service])
        try:
            info = ServiceInfo(
                CHECK_SERVICE_TYPE,
                wanted,
                port=9,
                properties={"check": "1"},
                server=f"{wanted.split('.')[0]}.local.",
                parsed_addresses=list(addresses),
                host_ttl=10,
                other_ttl=10,
            )
            try:
                # A random name cannot clash, so no probing: the answer comes at once.
                sender.register_service(info, cooperating_responders=True)
            except ZeroconfError as exc:
                return Step(False, f"could not send mDNS: {exc!r}")
            ok = heard.wait(max(0.0, deadline - time.monotonic()))
        finally:
            browser.cancel()
            listener.close()
    finally:
        sender.close()
    where = ", ".join(addresses)
    if ok:
        return Step(True, f"works: this computer sent and heard a test announcement ({where})")
    return Step(False, f"a test announcement on {where} was not heard back")


def _check_broadcast(targets: list[str], deadline: float) -> Step:
    """Send a query to each broadcast address and listen for our own packets."""
    if not targets:
        return Step(None, "no broadcast address on these interfaces")
    nonces = {new_nonce(): target for target in targets}
    heard: set[str] = set()
    errors: list[str] = []
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        try:
            rx.bind(("", 0))
            tx.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        except OSError as exc:
            return Step(False, f"could not open a UDP socket: {exc.strerror}")
        rx.settimeout(0.05)
        rx_port = rx.getsockname()[1]
        for nonce, target in nonces.items():
            try:
                tx.sendto(encode_query(nonce), (target, rx_port))
            except OSError as exc:
                errors.append(f"{target}: {exc.strerror or exc}")
        while len(heard) < len(nonces) - len(errors) and time.monotonic() < deadline:
            try:
                data = rx.recv(MAX_PACKET + 1)
            except OSError:
                continue  # a timeout, or a Windows ICMP report: listen until the deadline
            echoed = _query_nonce(data)
            if echoed in nonces:
                heard.add(nonces[echoed])
    if heard:
        detail = f"works: this computer sent and heard broadcasts on {', '.join(sorted(heard))}"
        # 255.255.255.255 needs a default route; directed broadcasts are what matter.
        missing = sorted(set(targets) - heard - {"255.255.255.255"})
        if missing:
            detail += f"; not on {', '.join(missing)}"
        return Step(True, detail)
    if errors:
        return Step(False, "could not send broadcasts: " + "; ".join(errors))
    return Step(False, f"broadcasts to {', '.join(targets)} were not heard back")


def _query_nonce(data: bytes) -> str | None:
    try:
        return parse_query(data)
    except ValueError:
        return None


def _find_servers(
    interfaces: Sequence[str] | None, targets: list[str], broadcast_port: int, deadline: float
) -> tuple[FoundServer, ...]:
    window = max(0.05, deadline - time.monotonic())
    browser = DiscoveryBrowser(
        lambda servers: None,
        interfaces=interfaces,
        broadcast_port=broadcast_port,
        broadcast_address=targets,
        probe_interval=window,
        probe_window=window,
    )
    with browser:
        # Both mechanisms report into the browser's list; nothing to do but wait.
        threading.Event().wait(max(0.0, deadline - time.monotonic()))
        servers = browser.servers
    return tuple(servers)


# --- words --------------------------------------------------------------------------------


def add_advice(report: CheckReport, *, restricted: bool = False) -> CheckReport:
    """The report with its "What to try" lines; `restricted`: only some interfaces were checked."""
    advice: list[str] = []
    lan = report.lan_addresses
    port = report.port
    if not lan and restricted:
        advice.append("Only loopback was checked: nobody else can reach these addresses.")
    elif not lan:
        advice.append(
            "This computer has no network address besides itself (loopback): connect it "
            "to the Wi-Fi or a cable, then check again."
        )
    vpns = sorted({a.interface for a in report.addresses if _VPN_NAME.match(a.interface)})
    if vpns:
        advice.append(
            f"A VPN looks active ({', '.join(vpns)}): it can hide the local network. "
            "Try again with the VPN off."
        )
    nets = {str(a.network) for a in report.addresses if not a.is_loopback}
    if len(nets) > 1:
        advice.append(
            f"This computer is on several networks ({', '.join(sorted(nets))}): the others "
            "must be on the same network as the address they type."
        )
    if report.port_state == "denied":
        advice.append(f"Port {port} is not allowed here; choose a port above 1024.")
    elif report.port_state == "error":
        advice.append(f"Port {port} cannot be used ({report.port_detail}); choose another port.")
    if report.mdns.ok is False:
        advice.append(
            f"Automatic discovery (mDNS) does not work here: allow UDP port {MDNS_PORT} in the "
            "firewall, or check that no other program holds it exclusively."
        )
    if report.broadcast.ok is False:
        advice.append(
            f"The broadcast fallback does not work here: allow UDP port {report.broadcast_port} "
            "in the firewall."
        )
    if not report.found:
        advice.append(
            "No other server answered. If one is running, the network may block discovery "
            "(guest Wi-Fi and 'client isolation' do), or it is on another network: type the "
            "address shown on the host to join directly."
        )
    advice.append(
        f"If others cannot connect to a server here, allow TCP port {port} (and UDP ports "
        f"{MDNS_PORT} and {report.broadcast_port} for discovery) in this computer's firewall, "
        "for private networks."
    )
    if lan:
        joins = ", ".join(f"{address}:{port}" for address in lan)
        advice.append(f"Others on your network can join a server here by typing: {joins}")
    return dataclasses.replace(report, advice=tuple(advice))


def _yes_no(step: Step) -> str:
    if step.ok is None:
        return f"not tested ({step.detail})"
    return step.detail if step.ok else f"NOT working: {step.detail}"


def format_report(report: CheckReport) -> str:
    """The report as plain text, for the "Why can't I see anyone?" view and --check."""
    local = {a.address for a in report.addresses}
    lines = [f"Network check for port {report.port} ({report.seconds:.1f} s)", ""]
    lines.append("Network addresses of this computer:")
    if not report.addresses:
        lines.append("  none")
    for a in report.addresses:
        note = " (this computer only)" if a.is_loopback else ""
        lines.append(f"  {a.interface}: {a.address}/{a.prefix}{note}")
    lines.append("")
    lines.append(f"Port {report.port} (TCP): {report.port_detail}")
    if report.reachability:
        who = "the server" if report.port_state == "in_use" else "a test listener"
        lines.append(f"  Connecting to {who} here:")
        for check in report.reachability:
            lines.append(f"    {check.address}: {check.detail}")
    lines.append("")
    lines.append(f"Automatic discovery (mDNS, UDP {MDNS_PORT}): {_yes_no(report.mdns)}")
    lines.append(f"Broadcast fallback (UDP {report.broadcast_port}): {_yes_no(report.broadcast)}")
    lines.append("")
    if report.found:
        lines.append("Servers that answered:")
        for server in report.found:
            here = " (this computer)" if server.address in local else ""
            lock = ", password" if server.password else ""
            lines.append(
                f'  "{server.title}" at {server.join_address}{here}: {server.people} '
                f"people, TLS {server.tls}{lock} (found by {server.source})"
            )
    else:
        lines.append("Servers that answered: none")
    lines.append("")
    lines.append("What to try:")
    lines.extend(f"  - {line}" for line in report.advice)
    return "\n".join(lines)
