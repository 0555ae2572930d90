"""The server benchmark: our server against a reproduction of the original design, same run.

For each N (clients in room ``general``) and each server, a fresh server process is started,
pinned to one core (the generator takes another), and one load generator (``loadgen.py``)
measures, in order:

1. the join storm: N clients connect at once; seconds until all have ``welcome`` + ``users``;
2. fan-out latency p50/p99 at a fixed total rate (default 200 msg/s from 10 senders), and the
   server's RSS per connection while connected and chatting (RSS now minus RSS with 0 clients);
3. deliveries/s with the senders saturating (each keeps ``--window`` messages in flight), and
   server CPU-µs per delivery;
4. at N = ``--fairness-size`` only: the same fixed-rate run again with one client that says
   hello and then never reads. A server that stops delivering is reported as ``stalled``.

It prints a table (ours, original, ours/original) and checks the issue's targets. Every run is
bounded in time and stops by itself; only the processes started here are stopped.

    .venv/bin/python bench/bench_server.py                      # N = 10, 100, 1000
    .venv/bin/python bench/bench_server.py --sizes 100 --repeat 3 --json out.json
"""

from __future__ import annotations

import argparse
import io
import json
import math
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import Client, LoadGenerator, RateResult, warm_up
from serverproc import ServerProcess, pin, raise_nofile, split_kind

Run = dict[str, Any]


def measure(
    kind: str,
    n: int,
    args: argparse.Namespace,
    workdir: Path,
    *,
    label: str | None = None,
    extra_args: tuple[str, ...] = (),
) -> Run:
    """One server (``extra_args`` for ours: e.g. --database, --workers), one N: every phase;
    returns the figures (and the raw results)."""
    label = label or kind
    run: Run = {"server": label, "n": n}
    data_dir = workdir / f"{label.replace('/', '_')}-{n}-{time.monotonic_ns()}"
    srv = ServerProcess(
        kind,
        data_dir,
        cpu=None if args.no_pin else 0,
        max_clients=max(2 * n + 10, 100),
        original_nodelay=args.original_nodelay,
        profile=args.profile / f"ours-N{n}.pstats" if args.profile and kind == "ours" else None,
        extra_args=extra_args,
    )
    meter = srv.meter()
    other: list[float] = []
    with srv, LoadGenerator(srv.host, srv.port) as gen:
        warm_up(srv.host, srv.port)
        time.sleep(max(args.quiet, 0.2))  # the warm-up client is gone: RSS with 0 clients
        rss0 = srv.rss()
        join = gen.join(n, args.join_timeout)
        run["join"] = asdict(join)
        run["join_s"] = join.seconds if join.seconds is not None else math.inf
        run["join_s_label"] = f"{join.ready}/{n}"
        gen.settle(args.quiet)
        senders = gen.make_senders(min(args.senders, len(gen.live)))
        if not senders:
            run["error"] = f"no client joined: {join}\n{srv.log_tail()}"
            return run
        rate = gen.run_rate(
            senders, args.rate, args.duration, warmup=args.warmup, drain=args.drain, probe=meter
        )
        other.append(meter.other_load())
        run["rate"] = asdict(rate)
        run["rss_kib"] = (srv.rss() - rss0) / 1024 / n
        run["p50_ms"], run["p99_ms"] = rate.p50_ms, rate.p99_ms
        run["p99_user_ms"] = rate.p99_user_ms
        run["p50_ms_label"] = run["p99_ms_label"] = rate.verdict
        run["cpu_us_rate"] = _per_delivery(rate.server_cpu_s, rate.deliveries_per_s * args.duration)
        gen.settle(args.quiet)
        sat = gen.run_saturating(
            senders, args.window, args.duration, warmup=args.warmup, probe=meter
        )
        other.append(meter.other_load())
        run["saturating"] = asdict(sat)
        run["deliveries_per_s"] = sat.deliveries_per_s
        run["cpu_us_sat"] = _per_delivery(sat.server_cpu_s, sat.deliveries)
        run["server_cpu_sat"] = sat.server_cpu_s / sat.seconds
        run["generator_cpu"] = max(rate.generator_cpu, sat.generator_cpu)
        if n == args.fairness_size:
            run |= fairness(gen, senders, args)
        run["other_load"] = max(other)
        run["dropped"] = gen.dropped
        run["alive"] = srv.alive()
    return run


def fairness(gen: LoadGenerator, senders: list[Client], args: argparse.Namespace) -> Run:
    """The fixed-rate run twice, without and then with a client that never reads. Long texts,
    so that its buffers (several MB on loopback) fill within the run."""

    def fair_run() -> RateResult:
        return gen.run_rate(
            senders,
            args.rate,
            args.fairness_duration,
            warmup=args.warmup,
            drain=3.0,
            text_size=args.fairness_text,
        )

    gen.settle(args.quiet)
    free = fair_run()
    gen.add_stuck_client()
    gen.settle(args.quiet)
    stuck = fair_run()
    return {
        "fairness": {"without": asdict(free), "with": asdict(stuck)},
        "p99_free_ms": free.p99_ms,
        "p99_free_ms_label": free.verdict,
        "p99_stuck_ms": stuck.p99_ms,
        "p99_stuck_ms_label": stuck.verdict,
        "delivered_stuck": stuck.received / stuck.expected if stuck.expected else 0.0,
    }


def _per_delivery(cpu_s: float, deliveries: float) -> float:
    return cpu_s / deliveries * 1e6 if deliveries > 0 else math.nan


# ---- reporting -------------------------------------------------------------------------------

ROWS: list[tuple[str, str, Callable[[float], str]]] = [
    ("join_s", "join storm: all welcome+users, s", lambda v: f"{v:.3f}"),
    ("deliveries_per_s", "deliveries/s, saturating", lambda v: f"{v / 1000:.1f} k"),
    ("p50_ms", "p50 fan-out ms at fixed rate", lambda v: f"{v:.2f}"),
    ("p99_ms", "p99 fan-out ms at fixed rate", lambda v: f"{v:.2f}"),
    ("p99_user_ms", "  same, timed by the generator's loop", lambda v: f"{v:.2f}"),
    ("rss_kib", "RSS per connection, KiB", lambda v: f"{v:.1f}"),
    ("cpu_us_sat", "server CPU µs/delivery, saturating", lambda v: f"{v:.2f}"),
    ("cpu_us_rate", "server CPU µs/delivery, fixed rate", lambda v: f"{v:.2f}"),
    ("server_cpu_sat", "server CPU while saturating (cores)", lambda v: f"{v:.2f}"),
    ("generator_cpu", "generator CPU, busiest phase (cores)", lambda v: f"{v:.2f}"),
    ("other_load", "other programs' CPU meanwhile (cores)", lambda v: f"{v:.2f}"),
]


def _fmt(v: float | None, fmt: Callable[[float], str], late: str = "stalled") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if math.isinf(v):
        return late
    return fmt(v)


def _late(runs: list[Run], key: str) -> str:
    """How to show an infinite figure: ``behind`` / ``stalled`` for a latency (deliveries were
    still arriving / had stopped), ``ready/N`` for a join storm that did not finish."""
    labels = sorted({str(r[key + "_label"]) for r in runs if key + "_label" in r} - {"ok"})
    return "/".join(labels) if len(labels) == 1 else "stalled"


def median(runs: list[Run], key: str) -> float | None:
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else None


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return "-"
    return f"{a / b:.2f}"


def report(results: dict[int, dict[str, list[Run]]], args: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    for n, by_kind in results.items():
        lines.append("")
        lines.append(f"N = {n} clients in one room ({len(by_kind.get('ours', []))} run(s) each)")
        # ours@TREE kinds (our server from another checkout) get a column and a ratio each.
        extra = [k for k in by_kind if k not in ("ours", "original")]
        heads = ["ours", "original", "ours/orig"]
        for k in extra:
            tag = (Path(k.partition("@")[2]).name if "@" in k else k.split("-")[-1])[:8]
            heads += [f"@{tag}", f"ours/@{tag}"[:10]]
        lines.append(f"{'figure':38} " + " ".join(f"{h:>10}" for h in heads))
        for key, label, fmt in ROWS:
            cells = []
            ours = median(by_kind.get("ours", []), key)
            for kind in ("ours", "original", *extra):
                runs = by_kind.get(kind, [])
                cells.append(_fmt(median(runs, key), fmt, _late(runs, key)))
                if kind != "ours":
                    cells.append(ratio(ours, median(runs, key)))
            lines.append(f"{label:38} " + " ".join(f"{c:>10}" for c in cells))
        for kind, runs in by_kind.items():
            for r in runs:
                if "error" in r:
                    lines.append(f"  {kind}: {r['error']}")
                elif r.get("dropped") or not r.get("alive", True):
                    lines.append(f"  {kind}: {r['dropped']} clients dropped; alive={r['alive']}")
    fair = results.get(args.fairness_size, {})
    if fair:
        lines.append("")
        lines.append(
            f"Fairness: N = {args.fairness_size}, {args.rate:g} msg/s of {args.fairness_text}-byte"
            " texts, one client that never reads"
        )
        lines.append(f"{'figure':38} {'ours':>10} {'original':>10}")
        for key, label in (
            ("p99_free_ms", "p99 ms without the stuck client"),
            ("p99_stuck_ms", "p99 ms with the stuck client"),
            ("delivered_stuck", "share delivered with it"),
        ):
            ours = median(fair.get("ours", []), key)
            orig = median(fair.get("original", []), key)
            fmt = (lambda v: f"{v:.2f}") if key != "delivered_stuck" else (lambda v: f"{v:.1%}")
            cells = [
                _fmt(v, fmt, _late(fair.get(kind, []), key))
                for kind, v in (("ours", ours), ("original", orig))
            ]
            lines.append(f"{label:38} {cells[0]:>10} {cells[1]:>10}")
    lines.append("")
    lines.extend(targets(results, args))
    busy = max(
        (r.get("other_load", 0.0) for k in results.values() for v in k.values() for r in v),
        default=0.0,
    )
    if busy > 0.15:
        lines.append("")
        lines.append(
            f"WARNING: other programs used up to {busy:.2f} cores during measured phases; "
            "these figures are disturbed (rerun on a quiet machine, or use --repeat 3)."
        )
    return lines


def targets(results: dict[int, dict[str, list[Run]]], args: argparse.Namespace) -> list[str]:
    """The issue's targets, each PASS / FAIL / not measured."""
    out = ["Targets (from the issue):"]

    def check(label: str, ok: bool | None) -> None:
        out.append(f"  [{'PASS' if ok else 'FAIL' if ok is not None else 'n/a '}] {label}")

    at100 = results.get(100, {})
    ours_rate = median(at100.get("ours", []), "deliveries_per_s")
    orig_rate = median(at100.get("original", []), "deliveries_per_s")
    ours_p99 = median(at100.get("ours", []), "p99_ms")
    orig_p99 = median(at100.get("original", []), "p99_ms")
    faster: bool | None = None
    if (
        ours_rate is not None
        and orig_rate is not None
        and ours_p99 is not None
        and orig_p99 is not None
    ):
        faster = ours_rate >= orig_rate and ours_p99 < orig_p99
    check("N=100: deliveries/s >= original's in this run, with a lower p99", faster)
    low = None if ours_p99 is None else ours_p99 <= 5.0
    check(f"N=100: p99 <= 5 ms at {args.rate:g} msg/s", low)
    big = results.get(1000, {}).get("ours", [])
    label = "N=1000 connected and chatting with RSS <= 64 KiB per connection"
    if big:
        rss = median(big, "rss_kib")
        joined = all(r.get("join", {}).get("ready") == 1000 and not r.get("dropped") for r in big)
        verdicts = sorted({str(r.get("p99_ms_label", "error")) for r in big})
        chatting = "stalled" not in verdicts and "error" not in verdicts
        detail = f" (RSS {rss:.1f} KiB, delivery {'/'.join(verdicts)})" if rss is not None else ""
        check(label + detail, bool(joined and chatting and rss is not None and rss <= 64.0))
    else:
        check(label, None)
    fair = results.get(args.fairness_size, {}).get("ours", [])
    label = "fairness: our p99 does not move with a client that never reads"
    before = median(fair, "p99_free_ms")
    after = median(fair, "p99_stuck_ms")
    if before is None or after is None:
        check(label, None)
    elif math.isinf(before):
        check(label + " (not judged: behind even without it)", None)
    else:
        check(label, after <= 1.5 * before + 1.0)
    out.append("  ('does not move' = p99 with the stuck client <= 1.5 x without + 1 ms)")
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return "stalled"
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--sizes", default=None, help="comma-separated N (default 10,100,1000; 1000 with --workers)"
    )
    p.add_argument("--servers", default="ours,original", help="which servers (%(default)s)")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per phase")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each")
    p.add_argument("--rate", type=float, default=200.0, help="total msg/s of the fixed-rate runs")
    p.add_argument("--senders", type=int, default=10)
    p.add_argument("--window", type=int, default=16, help="messages in flight per sender")
    p.add_argument("--fairness-size", type=int, default=100, help="N of the fairness run (0: none)")
    p.add_argument("--fairness-duration", type=float, default=10.0)
    p.add_argument("--fairness-text", type=int, default=4096, help="text bytes in that run")
    p.add_argument("--join-timeout", type=float, default=30.0)
    p.add_argument("--drain", type=float, default=10.0, help="max wait for late deliveries, s")
    p.add_argument("--quiet", type=float, default=0.3, help="silence that ends a settle, s")
    p.add_argument("--repeat", type=int, default=1, help="runs per server and N (medians shown)")
    p.add_argument("--original-nodelay", action="store_true", help="give the original TCP_NODELAY")
    p.add_argument("--no-pin", action="store_true", help="do not pin server and generator")
    p.add_argument("--json", type=Path, help="also write every figure to this file")
    p.add_argument(
        "--workers",
        help="comma-separated process counts, e.g. 1,2: instead of ours against the original, "
        "1 process on SQLite and each count on PostgreSQL + Redis (started here on loopback; "
        "see bench_scale.py)",
    )
    p.add_argument(
        "--no-backplane",
        action="store_true",
        help="with --workers: PostgreSQL without Redis (one process only)",
    )
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run our server under a CPU profiler (slower!); stats and top functions in DIR",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.workers:
        from bench_scale import run_scale

        return run_scale(args)
    sizes = [int(s) for s in (args.sizes or "10,100,1000").split(",") if s.strip()]
    kinds = [k for k in args.servers.split(",") if k]
    for kind in kinds:
        try:
            split_kind(kind)
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
    nofile = raise_nofile()
    if nofile and nofile < 2 * max(sizes) + 100:
        print(f"warning: open-file limit {nofile} is low for N={max(sizes)}", file=sys.stderr)
    pinned = not args.no_pin and pin(0, 1)
    print(f"generator pinned to core 1, servers to core 0: {pinned}", flush=True)
    results: dict[int, dict[str, list[Run]]] = {}
    started = time.monotonic()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        for n in sizes:
            results[n] = {k: [] for k in kinds}
            for i in range(args.repeat):
                for kind in kinds:
                    t0 = time.monotonic()
                    try:
                        run = measure(kind, n, args, Path(tmp))
                    except (RuntimeError, OSError) as exc:
                        run = {"server": kind, "n": n, "error": str(exc)}
                    results[n][kind].append(run)
                    took = time.monotonic() - t0
                    print(f"  N={n} {kind} run {i + 1}: {took:.1f} s", flush=True)
    lines = report(results, args)
    print("\n".join(lines))
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(_jsonable(results), indent=1))
    if args.profile:
        print_profiles(args.profile, sizes)
    return 0


def print_profiles(folder: Path, sizes: list[int]) -> None:
    """The top of each profile by own CPU time (profiled figures above are inflated)."""
    for n in sizes:
        path = folder / f"ours-N{n}.pstats"
        if not path.exists():
            continue
        text = io.StringIO()
        stats = pstats.Stats(str(path), stream=text)
        stats.strip_dirs().sort_stats("tottime").print_stats(25)
        (folder / f"ours-N{n}.txt").write_text(text.getvalue())
        print(f"\nProfile of our server, N={n} (CPU time per thread, all phases): {path}")
        print(text.getvalue().split("\n\n", 1)[-1].rstrip())


if __name__ == "__main__":
    sys.exit(main())
