"""The Redis backplane: what makes several server processes one chat.

One Redis pub/sub channel carries every event between processes as one JSON object each
(``{"t": kind, "proc": sender, ...}``); every process, the sender included, receives them in
the order Redis got them. A subscriber thread reads the channel and hands each event to the
cluster (:mod:`~desktop_chat.net.server.cluster`); it reconnects after an outage, and says so
(``on_up``) *before* reading anything on the new subscription, so the cluster can catch its
members up from the database without a gap.

Each process proves it is alive with a heartbeat key ``<prefix>proc:<id>`` that expires after
``ttl`` seconds and is renewed every ``ttl / 3``; a process killed with SIGKILL stops renewing
it, and the others see its key gone within ``ttl`` (``on_tick`` runs after every beat, where
the cluster looks for dead processes).

redis-py is imported only when a backplane is used: a single-process server never needs it.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from desktop_chat.net.server.storage_api import describe

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

PREFIX = "dc:"
DEFAULT_TTL = 7.5  # seconds without a heartbeat before a process counts as dead
RETRY_EVERY = 0.5  # seconds between reconnection attempts


class BackplaneError(Exception):
    """Redis could not be reached (at start: one clear line for the operator)."""


Event = dict[str, Any]


class Backplane:
    """A connection to Redis for one server process.

    ``on_event(event)`` runs on the subscriber thread for every event (own ones included);
    ``on_up(first)`` after each (re)subscription, before its events; ``on_down()`` once when
    the connection is lost; ``on_tick()`` after each heartbeat.
    """

    def __init__(self, url: str, *, ttl: float = DEFAULT_TTL, prefix: str = PREFIX) -> None:
        self.url = url
        self.ttl = ttl
        self.prefix = prefix
        self.proc = uuid.uuid4().hex[:12]
        self.channel = f"{prefix}events"
        self.on_event: Callable[[Event], None] = lambda _e: None
        self.on_up: Callable[[bool], None] = lambda _first: None
        self.on_down: Callable[[], None] = lambda: None
        self.on_tick: Callable[[], None] = lambda: None
        self.up = threading.Event()  # subscribed now
        self._stop = threading.Event()
        self._lost = threading.Event()  # a publish failed: resubscribe and catch up
        self._redis: redis.Redis | None = None
        self._threads: list[threading.Thread] = []
        self._first = True

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (raises :class:`BackplaneError` if Redis does not answer) and start the
        subscriber and heartbeat threads; returns once subscribed."""
        try:
            import redis  # only here: a server without a backplane never imports it
        except ImportError as exc:  # e.g. the bundled server, made for one process
            raise BackplaneError(
                "Redis support is not installed here (redis-py is missing): install Desktop "
                "Chat with pip (it brings redis) to use --backplane"
            ) from exc
        try:
            client = redis.Redis.from_url(
                self.url, socket_timeout=2.0, socket_connect_timeout=2.0, decode_responses=True
            )
            client.ping()
        except (redis.RedisError, ValueError) as exc:
            raise BackplaneError(
                f"the backplane {describe(self.url)} cannot be reached: {exc}"
            ) from exc
        self._redis = client
        self.beat()
        loops = (
            (self._subscribe_loop, "sub"),
            (self._heartbeat_loop, "beat"),
            (self._tick_loop, "tick"),
        )
        for target, name in loops:
            # Owned, not daemons: stop() joins each (its loops wake at least every second).
            thread = threading.Thread(target=target, name=f"dc-backplane-{name}")
            self._threads.append(thread)
            thread.start()
        self.up.wait(5.0)

    def stop(self) -> None:
        """Stop the threads and withdraw this process's heartbeat (a clean exit)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5.0)
            if thread.is_alive():
                log.error("backplane: thread %s did not stop", thread.name)
        if self._redis is not None:
            try:
                self._redis.delete(self.key("proc", self.proc))
            except self.errors() as exc:
                log.warning("backplane: could not withdraw the heartbeat: %s", exc)
            self._redis.close()

    @property
    def redis(self) -> redis.Redis:
        assert self._redis is not None, "start() first"
        return self._redis

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    @staticmethod
    def errors() -> tuple[type[Exception], ...]:
        import redis

        return (redis.RedisError, OSError)

    # -- publishing and liveness ------------------------------------------------------------

    def publish(self, event: Event) -> bool:
        """Send ``event`` to every process (waits for Redis' reply). False if Redis could not
        take it: the subscription is then renewed and the cluster catches up (``on_up``)."""
        event["proc"] = self.proc
        try:
            self.redis.publish(self.channel, json.dumps(event, separators=(",", ":")))
        except self.errors() as exc:
            log.warning("backplane: publish failed: %s", exc)
            self._lost.set()
            return False
        return True

    def publish_many(self, events: list[Event]) -> bool:
        """Several events in one round trip (a pipeline), in order; False as :meth:`publish`."""
        pipe = self.redis.pipeline(transaction=False)
        for event in events:
            event["proc"] = self.proc
            pipe.publish(self.channel, json.dumps(event, separators=(",", ":")))
        try:
            pipe.execute()
        except self.errors() as exc:
            log.warning("backplane: publish failed: %s", exc)
            self._lost.set()
            return False
        return True

    def beat(self) -> bool:
        """Renew the heartbeat key; False if it had expired (or Redis restarted empty)."""
        prev = self.redis.set(self.key("proc", self.proc), "1", px=int(self.ttl * 1000), get=True)
        return prev is not None

    def alive(self, procs: list[str]) -> set[str]:
        """Which of ``procs`` have a live heartbeat (raises a Redis error if unreachable)."""
        if not procs:
            return set()
        found = self.redis.mget([self.key("proc", p) for p in procs])
        return {p for p, v in zip(procs, found, strict=True) if v is not None}

    # -- threads ----------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        # Only beats: it never waits for the hub's lock (a long catch-up must not get this
        # process taken for dead).
        while not self._stop.wait(self.ttl / 3):
            try:
                renewed = self.beat()
            except self.errors() as exc:
                log.warning("backplane: heartbeat failed: %s", exc)
                self._lost.set()
                continue
            if not renewed and self.up.is_set():
                # Paused or cut off longer than the TTL: the others took us for dead, dropped
                # our users and freed their names. Subscribe again: on_up announces them anew
                # (and catches them up on what the dropped subscription may have missed).
                log.warning("backplane: our heartbeat had expired; announcing our users again")
                self._lost.set()

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            if not self.up.is_set():
                continue
            try:
                self.on_tick()
            except self.errors() as exc:
                log.warning("backplane: looking for dead processes failed: %s", exc)
            except Exception:
                # Never let a bug end this loop: dead processes' users would stay forever.
                log.exception("backplane: looking for dead processes failed")

    def _subscribe_loop(self) -> None:
        while not self._stop.is_set():
            pubsub = self.redis.pubsub()
            try:
                pubsub.subscribe(self.channel)
                # Wait for Redis to confirm: from then on nothing published is missed, so the
                # catch-up in on_up (from the database) leaves no gap.
                while not self._stop.is_set():
                    reply = pubsub.get_message(timeout=1.0)
                    if reply is not None and reply.get("type") == "subscribe":
                        break
                if self._stop.is_set():
                    return
                self._lost.clear()
                self.beat()
                self.on_up(self._first)
                self._first = False
                self.up.set()
                self._read(pubsub)
            except self.errors() as exc:
                if self.up.is_set():
                    log.warning("backplane: connection to Redis lost: %s", exc)
            except Exception:
                # E.g. the database away during the catch-up: nothing is read from this
                # subscription before a catch-up has worked, so subscribe and try again.
                log.exception("backplane: catching up failed; trying again")
            finally:
                pubsub.close()
            if self.up.is_set():
                self.up.clear()
                if not self._stop.is_set():
                    self.on_down()
            self._stop.wait(RETRY_EVERY)

    def _read(self, pubsub: Any) -> None:
        while not self._stop.is_set() and not self._lost.is_set():
            message = pubsub.get_message(timeout=0.1)
            if message is None or message.get("type") != "message":
                continue
            try:
                event = json.loads(message["data"])
            except (TypeError, ValueError):
                log.error("backplane: an event that is not JSON was ignored")
                continue
            if not isinstance(event, dict):
                log.error("backplane: an event that is not an object was ignored")
                continue
            try:
                self.on_event(event)
            except self.errors():
                raise  # Redis went away mid-handler: resubscribe and catch up
            except Exception:
                # One bad event must not end this process's deliveries.
                log.exception("backplane: handling a %r event failed", event.get("t"))
