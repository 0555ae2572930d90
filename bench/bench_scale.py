"""Past one process: ``bench_server.py --workers 1,2``.

The same phases as the server benchmark (join storm, fixed-rate p50/p99, saturating
deliveries/s; see bench_server.py) for:

- 1 process on SQLite (the default, nothing installed),
- for each count in ``--workers``: that many processes (``--workers N``) on PostgreSQL + Redis,

with PostgreSQL and Redis started here on loopback ports by the tests' own start code
(``tests/pg_server.py``, ``tests/redis_server.py``; no pytest involved): a fresh database and
an empty Redis for every run. ``--no-backplane`` runs PostgreSQL without Redis (one process
only: several need the backplane). Nothing is pinned (N workers need N cores); the
"other programs' CPU" row then includes PostgreSQL's and Redis' CPU.

    .venv/bin/python bench/bench_server.py --workers 1,2 --sizes 1000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench_server import ROWS, Run, _fmt, _jsonable, _late, measure, median, ratio
from serverproc import REPO, raise_nofile

Config = tuple[str, bool, bool, int]  # label, PostgreSQL?, Redis?, processes


def configs(counts: list[int], backplane: bool) -> tuple[list[Config], list[str]]:
    """What to run for these process counts; and what is left out, and why."""
    chosen: list[Config] = [("sqlite x1", False, False, 1)]
    skipped: list[str] = []
    for count in counts:
        if backplane:
            chosen.append((f"pg+redis x{count}", True, True, count))
        elif count == 1:
            chosen.append(("pg x1", True, False, 1))
        else:
            skipped.append(f"{count} processes: several processes need --backplane (Redis)")
    return chosen, skipped


def run_scale(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(REPO))  # the tests' start code for PostgreSQL and Redis
    from tests.pg_server import PgCluster, _bin_dir
    from tests.redis_server import RedisServer, redis_binary

    counts = sorted({int(c) for c in args.workers.split(",") if c.strip()})
    sizes = [int(s) for s in (args.sizes or "1000").split(",") if s.strip()]
    chosen, skipped = configs(counts, not args.no_backplane)
    args.no_pin = True  # workers spread over cores; pinning would stack them on one
    nofile = raise_nofile()
    if nofile and nofile < 2 * max(sizes) + 100:
        print(f"warning: open-file limit {nofile} is low for N={max(sizes)}", file=sys.stderr)
    for line in skipped:
        print(f"left out: {line}")
    results: dict[int, dict[str, list[Run]]] = {}
    started = time.monotonic()
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        pg = redis = None
        if any(c[1] for c in chosen):
            bin_dir = _bin_dir()
            if bin_dir is None:
                raise SystemExit("PostgreSQL not found: install Debian's postgresql package")
            pg = PgCluster(bin_dir)
            stack.callback(pg.stop)
            pg.start()
        if any(c[2] for c in chosen):
            binary = redis_binary()
            if binary is None:
                raise SystemExit("redis-server not found: install Debian's redis-server package")
            redis = stack.enter_context(RedisServer(binary))
        for n in sizes:
            results[n] = {c[0]: [] for c in chosen}
            for i in range(args.repeat):
                for label, use_pg, use_redis, count in chosen:
                    extra: list[str] = []
                    if use_pg:
                        assert pg is not None
                        extra += ["--database", pg.fresh_url()]
                    if use_redis:
                        assert redis is not None
                        redis.flushall()
                        extra += ["--backplane", redis.url]
                    if count > 1:
                        extra += ["--workers", str(count)]
                    t0 = time.monotonic()
                    try:
                        run = measure(
                            "ours", n, args, Path(tmp), label=label, extra_args=tuple(extra)
                        )
                    except (RuntimeError, OSError) as exc:
                        run = {"server": label, "n": n, "error": str(exc)}
                    results[n][label].append(run)
                    print(f"  N={n} {label} run {i + 1}: {time.monotonic() - t0:.1f} s", flush=True)
    print("\n".join(report(results, [c[0] for c in chosen])))
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(_jsonable(results), indent=1))
    return 0


def report(results: dict[int, dict[str, list[Run]]], labels: list[str]) -> list[str]:
    lines: list[str] = []
    for n, by_label in results.items():
        lines.append("")
        lines.append(f"N = {n} clients in one room")
        lines.append(f"{'figure':38} " + " ".join(f"{label:>13}" for label in labels))
        for key, text, fmt in ROWS:
            cells = [
                _fmt(median(by_label[label], key), fmt, _late(by_label[label], key))
                for label in labels
            ]
            lines.append(f"{text:38} " + " ".join(f"{c:>13}" for c in cells))
        for label in labels:
            for r in by_label[label]:
                if "error" in r:
                    lines.append(f"  {label}: {r['error']}")
                elif r.get("dropped") or not r.get("alive", True):
                    lines.append(f"  {label}: {r['dropped']} clients dropped; alive={r['alive']}")
        lines.extend(_scaling(by_label, labels))
    return lines


def _scaling(by_label: dict[str, list[Run]], labels: list[str]) -> list[str]:
    """Each multi-process run against one process on the same back ends (the issue's target:
    2 processes >= 1.5x one process's deliveries/s, with p99 no worse)."""
    one = next((label for label in labels if label.startswith("pg+redis x1")), None)
    if one is None:
        return []
    out = []
    rate1, p99_1 = median(by_label[one], "deliveries_per_s"), median(by_label[one], "p99_ms")
    for label in labels:
        if not label.startswith("pg+redis x") or label == one:
            continue
        rate, p99 = median(by_label[label], "deliveries_per_s"), median(by_label[label], "p99_ms")
        speedup = ratio(rate, rate1)
        out.append(f"{label} / {one}: deliveries/s x{speedup}, p99 x{ratio(p99, p99_1)}")
        if label == "pg+redis x2":
            ok = (
                rate is not None
                and rate1 is not None
                and p99 is not None
                and p99_1 is not None
                and rate >= 1.5 * rate1
                and p99 <= p99_1
            )
            verdict = "PASS" if ok else "FAIL"
            out.append(f"  [{verdict}] 2 processes >= 1.5x one's deliveries/s, p99 no worse")
    return out
