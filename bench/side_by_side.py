"""Both load generators against one server at the same time: do they measure the same thing?

Run-to-run noise on a shared machine (other programs taking the server's core) can move a p99
several-fold, so comparing ``loadgen.py`` and ``crosscheck.py`` in separate runs proves little.
Here one server process gets N clients from each generator at once (2N in the room), each
generator sending half of the total rate; each measures the fan-out latency of its own
messages to its own clients. Same server, same moment: a difference is the generators' (or
the fan-out order: the server writes to its recipients in join order, so the generator whose
clients joined second is always served second; runs alternate which one joins first, and
``loadgen_first`` says which did).

    .venv/bin/python bench/side_by_side.py --n 50 --rate 200 --repeat 3   # 100 in the room
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import LoadGenerator
from serverproc import ServerProcess, pin, raise_nofile

HERE = Path(__file__).resolve().parent
Run = dict[str, Any]


def one_run(kind: str, args: argparse.Namespace, workdir: Path, *, ours_first: bool) -> Run:
    """One server, both generators. The server fans out in join order, so whichever joined
    second is served second in every round: runs alternate which generator joins first."""
    senders = max(1, args.senders // 2)
    with (
        ServerProcess(kind, workdir, cpu=0, max_clients=4 * args.n + 10) as srv,
        LoadGenerator(srv.host, srv.port) as gen,
    ):
        cmd = [sys.executable, str(HERE / "crosscheck.py"), "--attach", f"{srv.port}:{srv.pid}"]
        cmd += ["--n", str(args.n), "--senders", str(senders), "--rate", str(args.rate / 2)]
        cmd += ["--duration", str(args.duration), "--warmup", "1.5"]
        if ours_first:
            gen.join(args.n, 30)
        other = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert other.stdout is not None
        for line in other.stdout:  # until crosscheck's clients are all in
            if line.startswith("joined"):
                break
        if not ours_first:
            gen.join(args.n, 30)
        gen.settle(0.3)
        rate = gen.run_rate(
            gen.make_senders(senders), args.rate / 2, args.duration + 1.0, warmup=0.5
        )
        out, _ = other.communicate(timeout=120)
    line = next(x for x in out.splitlines() if x.startswith("attached: "))
    cc = {k: float(v) for k, v in (p.split(" ") for p in line[len("attached: ") :].split(", "))}
    return {
        "loadgen_first": float(ours_first),
        "loadgen_p99": rate.p99_ms,
        "loadgen_p99_own_clock": rate.p99_user_ms,
        "crosscheck_p99": cc["p99_ms"],
        "crosscheck_p99_own_clock": cc["p99_user_ms"],
        "ratio": max(rate.p99_ms, cc["p99_ms"]) / max(1e-9, min(rate.p99_ms, cc["p99_ms"])),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50, help="clients per generator")
    ap.add_argument("--rate", type=float, default=200.0, help="total msg/s, shared")
    ap.add_argument("--senders", type=int, default=10, help="in total, shared")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--servers", default="ours,original")
    args = ap.parse_args(argv)
    raise_nofile()
    pin(0, 1)
    runs: dict[str, list[Run]] = {}
    with tempfile.TemporaryDirectory(prefix="side-by-side-") as tmp:
        for i in range(args.repeat):
            for kind in args.servers.split(","):
                where = Path(tmp) / f"{kind}-{i}-{time.monotonic_ns()}"
                one = one_run(kind, args, where, ours_first=i % 2 == 0)
                runs.setdefault(kind, []).append(one)
                print(f"  {kind} run {i + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in one.items()))
    for kind, rs in runs.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        print(f"{kind:9} median of {len(rs)}: " + ", ".join(f"{k} {v:.2f}" for k, v in med.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
