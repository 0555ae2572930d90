"""What one message costs the database: one ``add_message`` + ``commit`` round (the hub's path,
one process) and one ``append_ordered`` (the cluster's path: advisory lock, insert, commit,
unlock), on SQLite and on PostgreSQL, median and p99 over many rounds.

PostgreSQL is a cluster of its own started for the run (Debian's ``postgresql`` package, as the
tests start it), with ``fsync`` on like a real deployment, on a loopback TCP port; or the
database given with ``--database``. Run from the repository root::

    .venv/bin/python bench/bench_storage.py                 # 2000 rounds each
    .venv/bin/python bench/bench_storage.py --rounds 500 --database postgresql://…
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from desktop_chat.net.server.storage_api import ChatStore, NewMessage, open_store  # noqa: E402


def _rounds(label: str, rounds: int, one: Callable[[int], object], per_round: int = 1) -> None:
    for i in range(min(200, rounds)):  # warm up (prepared statements, caches)
        one(i)
    took = []
    for i in range(rounds):
        start = time.perf_counter()
        one(i)
        took.append(time.perf_counter() - start)
    took.sort()
    median = statistics.median(took)
    p99 = took[int(len(took) * 0.99) - 1]
    rate = per_round / median
    print(f"{label:<44} {median * 1e6:9.0f} µs {p99 * 1e6:9.0f} µs {rate:8.0f} msg/s")


def _measure(name: str, store: ChatStore, rounds: int) -> None:
    def add_commit(i: int) -> None:
        store.add_message(sender="Ann", text=f"message {i}", room="general", room_key="general")
        store.commit()

    def grouped(i: int) -> None:  # a round of 10 messages, one commit (the flusher's group)
        for j in range(10):
            store.add_message(sender="Ann", text=f"m {i}.{j}", room="general", room_key="general")
        store.commit()

    def ordered(i: int) -> None:
        row = NewMessage(sender="Ann", text=f"ordered {i}", room="general", room_key="general")
        store.append_ordered([row], lambda msgs: None)

    _rounds(f"{name}: add_message + commit", rounds, add_commit)
    _rounds(f"{name}: 10 x add_message + commit", rounds // 10, grouped, per_round=10)
    _rounds(f"{name}: append_ordered (1 message)", rounds, ordered)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--database", default=None, help="a PostgreSQL URL (default: start one)")
    args = ap.parse_args()
    print(f"{'one round':<44} {'median':>12} {'p99':>12} {'(median)':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(None, Path(tmp))
        try:
            _measure("SQLite", store, args.rounds)
        finally:
            store.close()
    cluster = None
    url = args.database
    if url is None:
        from tests.pg_server import PgCluster, _bin_dir

        bin_dir = _bin_dir()
        if bin_dir is None:
            print("PostgreSQL not found: install Debian's postgresql package")
            return 1
        cluster = PgCluster(bin_dir, fsync=True)
        cluster.start()
        url = cluster.fresh_url()
    try:
        store = open_store(url, Path(tempfile.gettempdir()))
        try:
            _measure("PostgreSQL", store, args.rounds)
        finally:
            store.close()
    finally:
        if cluster is not None:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
