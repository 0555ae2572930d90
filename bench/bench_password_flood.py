"""A bystander's round trip while 29 connections guess a room password as fast as they can.

Each room-password check is argon2id (~44 ms of a core, on purpose). The server runs every
argon2 computation in a bounded pool (one per core, a short queue, ``rate_limited`` beyond)
behind the login throttle, so guessing cannot starve the chat. Run from the repository root:

    .venv/bin/python bench/bench_password_flood.py

It prints the bystander's median ping round trip before and during the flood, the worst one,
and how many guesses were answered. The guessers connect from 127.0.1.x (loopback on Linux),
one address each, as 29 machines on a LAN would.
"""

from __future__ import annotations

import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from desktop_chat.net.server.server import Server, ServerConfig
from tests.helpers import LineClient

GUESSERS = 29
PINGS = 30


class FromClient(LineClient):
    def __init__(self, address: tuple[str, int], source: str) -> None:
        self.sock = socket.create_connection(address, timeout=30, source_address=(source, 0))
        self.buf = b""
        self.timeout = 30.0


def round_trip(client: LineClient, n: int) -> float:
    start = time.perf_counter()
    client.send_json(type="ping", n=n)
    client.expect("pong", where=lambda m: m["n"] == n)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        config = ServerConfig(host="127.0.0.1", port=0, data_dir=Path(folder), rate_per_sec=0)
        with Server(config) as server:
            host = LineClient(server.address)
            host.login("host", owner=server.owner_token)
            host.send_json(type="room_settings", room="vault", password="the right one")
            host.expect("ok", skip=("users", "joined", "notice"))
            guessers = [FromClient(server.address, f"127.0.1.{i + 1}") for i in range(GUESSERS)]
            for i, guesser in enumerate(guessers):
                guesser.login(f"guesser{i}")
            bystander = LineClient(server.address)
            bystander.login("bystander")
            calm = [round_trip(bystander, n) for n in range(PINGS)]
            stop = threading.Event()
            answered = [0] * GUESSERS

            def guess(i: int) -> None:
                n = 0
                while not stop.is_set():
                    guessers[i].send_json(type="join", room="vault", password=f"guess {n}")
                    guessers[i].expect("error")
                    n += 1
                    answered[i] += 1

            threads = [threading.Thread(target=guess, args=(i,)) for i in range(GUESSERS)]
            for thread in threads:
                thread.start()
            time.sleep(0.5)  # let the flood build up
            busy = [round_trip(bystander, 1000 + n) for n in range(PINGS)]
            stop.set()
            for thread in threads:
                thread.join()
            print(
                f"bystander round trip: calm median {statistics.median(calm) * 1000:.2f} ms; "
                f"under the flood median {statistics.median(busy) * 1000:.2f} ms, "
                f"worst {max(busy) * 1000:.1f} ms; guesses answered {sum(answered)}; "
                f"argon2 checks at once, at most {server.guard.pool.peak}"
            )
            for client in (*guessers, bystander, host):
                client.close()


if __name__ == "__main__":
    main()
