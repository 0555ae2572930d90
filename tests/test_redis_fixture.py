"""The Redis fixture itself: a real redis-server, a clean one per test, restartable."""

from __future__ import annotations

import redis

from tests.redis_server import RedisServer


def test_each_test_gets_a_redis_without_earlier_keys(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping() is True
        assert client.dbsize() == 0
        client.set("left-behind", "1")  # the next test must not see it
    finally:
        client.close()


def test_a_restart_keeps_the_port_and_forgets_every_key(
    redis_url: str, redis_service: RedisServer
) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.dbsize() == 0  # the key the test before left is gone
        client.set("k", "v")
        old_pid, port = redis_service.pid, redis_service.port
        redis_service.restart()
        assert redis_service.pid != old_pid
        assert redis_service.port == port
        assert client.get("k") is None  # no persistence: a restart is an empty Redis
        assert client.ping() is True  # the same URL reaches the new process
    finally:
        client.close()
