"""Smoke test of the server benchmark: the whole machinery at a tiny size, against both servers.

It runs ``bench/bench_server.py`` as the user would (a subprocess, so its core pinning and file
limits stay out of the test process) with 3 clients for a fraction of a second per phase, and
checks that every figure is produced and sane. It asserts no timing: this is not a benchmark.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_bench_server_tiny_run_produces_sane_figures(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    cmd = [sys.executable, str(REPO / "bench" / "bench_server.py")]
    cmd += ["--sizes", "3", "--senders", "2", "--duration", "0.1", "--warmup", "0.02"]
    cmd += ["--quiet", "0.05", "--fairness-size", "3", "--fairness-duration", "0.1"]
    cmd += ["--fairness-text", "200", "--no-pin", "--json", str(out)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    assert "ours/orig" in done.stdout
    assert "Targets" in done.stdout

    figures = json.loads(out.read_text())["3"]
    for kind in ("ours", "original"):
        (run,) = figures[kind]
        assert "error" not in run, run["error"]
        assert run["alive"], kind
        assert run["join"]["ready"] == 3
        assert 0 < run["join_s"] < 30
        assert run["deliveries_per_s"] > 0
        # 2 senders, 3 receivers each: every message is delivered 3 times.
        assert run["rate"]["expected"] == 3 * run["rate"]["sent"] > 0
        assert run["rate"]["received"] == run["rate"]["expected"]
        assert 0 < run["p50_ms"] <= run["p99_ms"] < 10_000
        assert math.isfinite(run["rss_kib"])
        assert run["cpu_us_sat"] > 0
        assert run["fairness"]["with"]["sent"] > 0
        assert run["fairness"]["without"]["received"] == run["fairness"]["without"]["expected"]
