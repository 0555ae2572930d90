"""LAN discovery: announce a server (mDNS + broadcast answers) and browse for servers.

`Announcer` publishes a DNS-SD service `_desktop-chat._tcp.local.` with the TXT
keys of the contract (protocol.md, Discovery) through `zeroconf`, and by
default also runs a `BroadcastResponder` for networks that filter multicast.
`DiscoveryBrowser` keeps a live list of `FoundServer`s from both mechanisms and
calls `on_change` from a background thread whenever that list changes (the Qt
side marshals it to the GUI thread).

Nothing here blocks for long: registration (probing for a unique name takes
about 1.2 s, as RFC 6762 asks) and TXT updates run on zeroconf's own event-loop
thread; `update()` only records the wish and coalesces bursts (one join per
second would otherwise mean three multicast packets per join).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType

from zeroconf import (
    DNSQuestionType,
    IPVersion,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf import Error as ZeroconfError

from desktop_chat.net.discovery.advert import (
    SERVICE_TYPE,
    Advert,
    FoundServer,
    announce_addresses,
    broadcast_targets,
    browse_addresses,
    decode_txt,
    instance_name,
    networks_for,
    rank_addresses,
    server_hostname,
)
from desktop_chat.net.discovery.broadcast import BROADCAST_PORT, BroadcastProbe, BroadcastResponder

__all__ = [
    "BROADCAST_PORT",
    "SERVICE_TYPE",
    "Announcer",
    "DiscoveryBrowser",
    "FoundServer",
    "instance_name",
]

log = logging.getLogger(__name__)

RECORD_TTL = 120
"""TTL of every record we publish: a host that vanishes without a goodbye drops out in 2 min."""

_CLOSE_TIMEOUT = 5.0
_RESOLVE_TIMEOUT_MS = 1500


class Announcer:
    """Announces one chat server on the LAN until `close()`.

    `start()` returns at once; `wait_announced(timeout)` waits for the mDNS
    registration. Failures (no multicast, port 5152 taken) are logged and kept
    in `problems` in plain words: a server keeps serving without an announcement.
    `broadcast_port=None` turns the UDP fallback off; 0 picks a free port (tests).
    The instance name is fixed at start; `update(title=...)` changes the TXT title.
    """

    def __init__(
        self,
        port: int,
        bind_host: str,
        title: str,
        *,
        tls: str = "off",
        password: bool = False,
        fingerprint: str | None = None,
        people: int = 0,
        interfaces: Sequence[str] | None = None,
        broadcast_port: int | None = BROADCAST_PORT,
        min_update_interval: float = 1.0,
    ) -> None:
        self.port = port
        self._advert = Advert.create(
            title, tls=tls, password=password, people=people, fingerprint=fingerprint
        )
        self.problems: list[str] = []
        try:
            self.addresses = announce_addresses(bind_host, interfaces)
        except ValueError as exc:
            # e.g. a server bound to an IPv6-only address: it serves, unannounced.
            self.addresses = []
            self.problems.append(f"cannot announce this server: {exc}")
        hostname = socket.gethostname()
        self._wanted_name = f"{instance_name(title, hostname, port)}.{SERVICE_TYPE}"
        self._server = server_hostname(hostname, port)
        self._min_interval = min_update_interval
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        self._announced = threading.Event()
        self._responder: BroadcastResponder | None = None
        self._responding = False
        if broadcast_port is not None and self.addresses:
            self._responder = BroadcastResponder(
                port, self._advert, bind_host=bind_host, port=broadcast_port, interfaces=interfaces
            )
        self._zc: Zeroconf | None = None
        # Touched only on zeroconf's event-loop thread:
        self._info: ServiceInfo | None = None
        self._published: Advert | None = None
        self._last_publish = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._registered = False
        self._stopping = False

    # -- public API --

    @property
    def advert(self) -> Advert:
        with self._lock:
            return self._advert

    @property
    def name(self) -> str:
        """The instance name as registered (zeroconf appends "-2" on a conflict)."""
        info = self._info
        full = info.name if info is not None and self._announced.is_set() else self._wanted_name
        return full[: -len(SERVICE_TYPE) - 1]

    @property
    def broadcast_address(self) -> tuple[str, int] | None:
        """The broadcast responder's UDP address, or None when it is not running."""
        if self._responder is None or not self._responding:
            return None
        return self._responder.address

    def start(self) -> None:
        with self._lock:
            if self._started or self._closed:
                raise RuntimeError("Announcer already started or closed")
            self._started = True
        if not self.addresses:
            return
        if self._responder is not None:
            try:
                self._responder.start()
                self._responding = True
            except OSError as exc:
                self._problem(f"broadcast discovery could not use its UDP port: {exc}")
        try:
            zc = Zeroconf(interfaces=list(self.addresses))
        except OSError as exc:
            self._problem(f"mDNS announcement could not start: {exc}")
            return
        self._zc = zc
        assert zc.loop is not None
        asyncio.run_coroutine_threadsafe(self._async_register(), zc.loop)

    def wait_announced(self, timeout: float) -> bool:
        """True once the mDNS registration and its announcements are done."""
        return self._announced.wait(timeout)

    def update(self, *, people: int | None = None, title: str | None = None) -> None:
        """Announce new facts; cheap and non-blocking, bursts are coalesced."""
        with self._lock:
            if self._closed:
                return
            advert = self._advert
            self._advert = Advert.create(
                advert.title if title is None else title,
                tls=advert.tls,
                password=advert.password,
                people=advert.people if people is None else people,
                fingerprint=advert.fingerprint,
            )
            new = self._advert
        if self._responder is not None:
            self._responder.update(new)
        zc = self._zc
        if zc is not None and zc.loop is not None:
            # The loop may be shutting down under a concurrent close().
            try:
                zc.loop.call_soon_threadsafe(self._sync)
            except RuntimeError:
                log.debug("announcement update after close")

    def close(self) -> None:
        """Withdraw the announcement (goodbye packets), close sockets, join threads; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._responder is not None:
            self._responder.close()
        zc = self._zc
        if zc is None:
            return
        assert zc.loop is not None
        stopped = asyncio.run_coroutine_threadsafe(self._async_stop(), zc.loop)
        try:
            stopped.result(_CLOSE_TIMEOUT)
        except concurrent.futures.TimeoutError:
            log.warning("mDNS announcement did not stop in %.0f s", _CLOSE_TIMEOUT)
        try:
            # Goodbye packets (TTL 0) for what is still registered.
            zc.unregister_all_services()
        except ZeroconfError as exc:
            log.warning("mDNS goodbye failed: %r", exc)
        zc.close()

    def __enter__(self) -> Announcer:
        if not self._started:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals --

    def _problem(self, text: str) -> None:
        log.warning("%s", text)
        with self._lock:
            self.problems.append(text)

    def _make_info(self, advert: Advert, name: str) -> ServiceInfo:
        return ServiceInfo(
            SERVICE_TYPE,
            name,
            port=self.port,
            properties=dict(advert.to_txt()),
            server=self._server,
            host_ttl=RECORD_TTL,
            other_ttl=RECORD_TTL,
            parsed_addresses=list(self.addresses),
        )

    async def _async_register(self) -> None:
        zc = self._zc
        assert zc is not None
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        advert = self.advert
        info = self._make_info(advert, self._wanted_name)
        self._info = info
        try:
            broadcasts = await zc.async_register_service(info, allow_name_change=True)
            self._registered = True
            self._published = advert
            self._last_publish = time.monotonic()
            await broadcasts
        except (ZeroconfError, OSError) as exc:
            self._problem(f"mDNS announcement failed: {exc!r}")
            return
        finally:
            if task is not None:
                self._tasks.discard(task)
        self._announced.set()
        self._sync()

    def _on_timer(self) -> None:
        self._timer = None
        self._sync()

    def _sync(self) -> None:
        """Publish the latest advert if it changed, at most once per min_update_interval."""
        if not self._registered or self._stopping or self._zc is None or self._info is None:
            return
        advert = self.advert
        if advert == self._published:
            return
        wait = self._last_publish + self._min_interval - time.monotonic()
        if wait > 0:
            loop = self._zc.loop
            assert loop is not None
            if self._timer is None:
                self._timer = loop.call_later(wait, self._on_timer)
            return
        info = self._make_info(advert, self._info.name)
        self._info = info
        self._published = advert
        self._last_publish = time.monotonic()
        task = asyncio.ensure_future(self._async_publish(info))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _async_publish(self, info: ServiceInfo) -> None:
        zc = self._zc
        assert zc is not None
        try:
            broadcasts = await zc.async_update_service(info)
            await broadcasts
        except (ZeroconfError, OSError) as exc:
            log.warning("mDNS update failed: %r", exc)

    async def _async_stop(self) -> None:
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class DiscoveryBrowser:
    """Keeps a live list of the servers on the LAN and reports every change.

    mDNS (a zeroconf ServiceBrowser) and, unless `broadcast_port` is None,
    broadcast probes every `probe_interval` seconds. A server found both ways is
    listed once (its mDNS entry). mDNS entries go when the server withdraws its
    announcement; broadcast-only ones after `missed_probes` probes without an answer.

    `on_change(servers)` runs on a background thread (zeroconf's browser thread
    or the probe thread), never two at a time, and never after `close()` returns.
    It must not call `close()`.
    """

    def __init__(
        self,
        on_change: Callable[[list[FoundServer]], None],
        *,
        interfaces: Sequence[str] | None = None,
        broadcast_port: int | None = BROADCAST_PORT,
        broadcast_address: str | Sequence[str] | None = None,
        mdns: bool = True,
        probe_interval: float = 4.0,
        probe_window: float = 1.0,
        missed_probes: int = 3,
    ) -> None:
        self._on_change = on_change
        self._interfaces = browse_addresses(interfaces)
        self._networks = networks_for(self._interfaces)
        self._mdns = mdns
        self._broadcast_port = broadcast_port
        if broadcast_address is None:
            self._targets = broadcast_targets(interfaces)
        elif isinstance(broadcast_address, str):
            self._targets = [broadcast_address]
        else:
            self._targets = list(broadcast_address)
        self._probe_interval = probe_interval
        self._probe_window = min(probe_window, probe_interval)
        self._missed_probes = missed_probes
        self._lock = threading.Lock()
        self._notify_lock = threading.Lock()
        self._stop = threading.Event()
        self._started = False
        self._closed = False
        self._from_mdns: dict[str, FoundServer] = {}
        self._from_broadcast: dict[tuple[str, int], tuple[FoundServer, int]] = {}
        self._last: tuple[FoundServer, ...] = ()
        self._zc: Zeroconf | None = None
        self._browser: ServiceBrowser | None = None
        self._thread: threading.Thread | None = None
        self.problems: list[str] = []

    @property
    def servers(self) -> list[FoundServer]:
        with self._lock:
            return list(self._merged())

    def start(self) -> None:
        with self._lock:
            if self._started or self._closed:
                raise RuntimeError("DiscoveryBrowser already started or closed")
            self._started = True
        if self._mdns:
            try:
                self._zc = Zeroconf(interfaces=list(self._interfaces))
                # QM (multicast) questions: a unicast answer to a QU question can land in
                # another process's socket when several share port 5353 on one machine
                # (a client browsing on the computer that hosts the server).
                self._browser = ServiceBrowser(
                    self._zc,
                    SERVICE_TYPE,
                    handlers=[self._on_service],
                    question_type=DNSQuestionType.QM,
                )
            except OSError as exc:
                self._problem(f"mDNS browsing could not start: {exc}")
        if self._broadcast_port is not None:
            self._thread = threading.Thread(
                target=self._probe_loop, name="discovery-probes", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Stop browsing and probing and join every thread; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        if self._browser is not None:
            self._browser.cancel()
        if self._zc is not None:
            self._zc.close()
        if self._thread is not None:
            self._thread.join()
        # Wait out a notification already in progress, so none runs after close().
        with self._notify_lock:
            pass

    def __enter__(self) -> DiscoveryBrowser:
        if not self._started:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- mDNS (runs on zeroconf's ServiceBrowser thread) --

    def _on_service(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            with self._lock:
                gone = self._from_mdns.pop(name, None)
                if gone is not None:
                    # The host said goodbye: its broadcast answer is stale too, so it must not
                    # linger in the list until enough probes miss it.
                    for address in gone.addresses:
                        self._from_broadcast.pop((address, gone.port), None)
            self._notify()
            return
        found = self._resolve(zeroconf, service_type, name)
        if found is None:
            return
        with self._lock:
            self._from_mdns[name] = found
        self._notify()

    def _resolve(self, zc: Zeroconf, service_type: str, name: str) -> FoundServer | None:
        info = ServiceInfo(service_type, name)
        try:
            if not info.load_from_cache(zc) and not info.request(zc, _RESOLVE_TIMEOUT_MS):
                log.debug("could not resolve %s", name)
                return None
        except ZeroconfError as exc:
            log.debug("could not resolve %s: %r", name, exc)
            return None
        try:
            txt = decode_txt(info.properties)
            advert = Advert.from_txt(txt)
        except ValueError as exc:
            log.debug("ignoring %s: bad TXT (%s)", name, exc)
            return None
        addresses = info.parsed_addresses(IPVersion.V4Only) + [
            a for a in info.parsed_addresses(IPVersion.V6Only) if not _is_link_local(a)
        ]
        if not addresses or not info.port:
            return None
        instance = name[: -len(service_type) - 1] if name.endswith(service_type) else name
        ranked = rank_addresses(addresses, self._networks)
        return FoundServer.from_advert(instance, advert, ranked, info.port, "mdns")

    # -- broadcast (runs on the probe thread) --

    def _probe_loop(self) -> None:
        assert self._broadcast_port is not None
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                probe = BroadcastProbe(self._targets, self._broadcast_port)
            except OSError as exc:
                self._problem(f"broadcast probes could not start: {exc}")
                return
            with probe:
                probe.send()
                answers = probe.collect(started + self._probe_window, self._stop, self._answered)
            if self._stop.is_set():
                return
            self._count_misses({(s.address, s.port) for s in answers})
            self._notify()
            self._stop.wait(max(0.0, started + self._probe_interval - time.monotonic()))

    def _answered(self, server: FoundServer) -> None:
        with self._lock:
            self._from_broadcast[(server.address, server.port)] = (server, 0)
        self._notify()

    def _count_misses(self, seen: set[tuple[str, int]]) -> None:
        with self._lock:
            for key, (old, missed) in list(self._from_broadcast.items()):
                if key in seen:
                    continue
                if missed + 1 >= self._missed_probes:
                    del self._from_broadcast[key]
                else:
                    self._from_broadcast[key] = (old, missed + 1)

    # -- the merged list --

    def _merged(self) -> tuple[FoundServer, ...]:
        servers = list(self._from_mdns.values())
        for (address, port), (server, _missed) in self._from_broadcast.items():
            if not any(s.port == port and address in s.addresses for s in self._from_mdns.values()):
                servers.append(server)
        servers.sort(key=lambda s: (s.title.casefold(), s.join_address, s.name))
        return tuple(servers)

    def _notify(self) -> None:
        with self._notify_lock:
            with self._lock:
                if self._closed:
                    return
                snapshot = self._merged()
                if snapshot == self._last:
                    return
                self._last = snapshot
            try:
                self._on_change(list(snapshot))
            except Exception:  # a bug in the callback must not kill discovery
                log.exception("discovery on_change callback failed")

    def _problem(self, text: str) -> None:
        log.warning("%s", text)
        with self._lock:
            self.problems.append(text)


def _is_link_local(address: str) -> bool:
    return ipaddress.ip_address(address).is_link_local
