"""The soak's 60-second version: 200 mixed clients chatting, dropping and resuming while the
server is SIGKILLed and restarted twice; nothing lost, nothing twice, nothing out of order."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import T

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_soak_one_minute(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "soak.py"),
            "--seconds",
            "60",
            "--data-dir",
            str(tmp_path / "data"),
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=T(360),
    )
    assert out.exists(), result.stderr[-3000:]
    report = json.loads(out.read_text())
    summary = {k: report[k] for k in ("sent", "acknowledged", "lost", "duplicated", "out_of_order")}
    assert report["clients"] == 200 and report["server_kills"] == 2, report
    assert report["acknowledged"] > 500, summary
    assert (report["lost"], report["duplicated"], report["out_of_order"]) == (0, 0, 0), summary
    assert report["readers_without_end"] == 0, summary
    # Nothing a client did not say was stored: a late WebSocket handshake never became a user.
    assert report["foreign_stored"] == 0, report.get("foreign_examples")
    assert result.returncode == 0, result.stdout[-3000:]
