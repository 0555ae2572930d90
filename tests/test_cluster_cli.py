"""The cluster's command line: refusals and what it shows of secrets (real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import T

CMD = [sys.executable, "-m", "desktop_chat.server_cli"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CMD, "--host", "127.0.0.1", "--port", "0", "--no-announce", "--tls", "off", *args],
        capture_output=True,
        text=True,
        timeout=T(30),
        env=env,
    )


def test_a_backplane_without_postgresql_is_refused_with_one_line(tmp_path: Path) -> None:
    for env_or_flag in ("flag", "env"):
        data_dir = tmp_path / env_or_flag
        if env_or_flag == "flag":
            result = run_cli("--data-dir", str(data_dir), "--backplane", "redis://127.0.0.1:1/0")
        else:
            env = dict(os.environ, DESKTOP_CHAT_BACKPLANE="redis://127.0.0.1:1/0")
            result = run_cli("--data-dir", str(data_dir), env=env)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert "--backplane needs a PostgreSQL --database" in result.stderr
        assert not (data_dir / "chat.sqlite3").exists()  # refused before touching anything
