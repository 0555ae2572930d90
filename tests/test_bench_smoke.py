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

import pytest

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
        if sys.platform == "linux":
            # Arrival times are the kernel's receive stamps, never later than the loop's clock.
            assert run["rate"]["kernel_stamps"]
            assert run["p99_ms"] <= run["p99_user_ms"]
        assert math.isfinite(run["rss_kib"])
        assert run["cpu_us_sat"] > 0
        assert run["fairness"]["with"]["sent"] > 0
        assert run["fairness"]["without"]["received"] == run["fairness"]["without"]["expected"]


@pytest.mark.skipif(sys.platform != "linux", reason="crosscheck.py reads /proc and kernel stamps")
def test_crosscheck_tiny_run_reports_latency_and_cpu() -> None:
    cmd = [sys.executable, str(REPO / "bench" / "crosscheck.py"), "--n", "3", "--senders", "2"]
    cmd += ["--duration", "0.3", "--warmup", "0.1", "--rate", "50", "--no-pin"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    for kind in ("ours", "original"):
        (line,) = [x for x in done.stdout.splitlines() if x.startswith(f"{kind} ")]
        figures = dict(pair.rsplit(" ", 1) for pair in line.split(": ", 1)[1].split(", "))
        assert float(figures["received"]) == 1.0, line
        assert 0 < float(figures["p50_ms"]) <= float(figures["p99_ms"]) < 10_000, line
        assert float(figures["cpu_us_per_delivery"]) >= 0, line


def test_bench_server_workers_tiny_run_on_sqlite_and_two_processes_on_postgres_and_redis(
    tmp_path: Path,
) -> None:
    from tests import pg_server, redis_server

    if pg_server._bin_dir() is None:
        pytest.skip(pg_server.MISSING)
    if redis_server.redis_binary() is None:
        pytest.skip(redis_server.MISSING)
    out = tmp_path / "figures.json"
    cmd = [sys.executable, str(REPO / "bench" / "bench_server.py"), "--workers", "2"]
    cmd += ["--sizes", "4", "--senders", "2", "--duration", "0.2", "--warmup", "0.02"]
    cmd += ["--quiet", "0.05", "--fairness-size", "0", "--json", str(out)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pg+redis x2" in done.stdout

    figures = json.loads(out.read_text())["4"]
    assert set(figures) == {"sqlite x1", "pg+redis x2"}
    for label, (run,) in figures.items():
        assert "error" not in run, run["error"]
        assert run["alive"], label
        assert run["join"]["ready"] == 4
        assert run["deliveries_per_s"] > 0
        # Every message reaches all 4 clients once, whichever process each is on.
        assert run["rate"]["expected"] == 4 * run["rate"]["sent"] > 0
        assert run["rate"]["received"] == run["rate"]["expected"], label
        assert run["cpu_us_sat"] > 0  # the workers' CPU is counted (the supervisor has ~none)
