"""A test machine that lacks something says what, in one line, before any test runs into it.

The web page's tests need Chromium and a Playwright driver that starts; without them the
failure names the missing piece (and the driver's own words), not a timeout or Playwright's
"Connection closed while reading from the driver" deep in a test. Each case runs one web test
in a pytest of its own, with the piece taken away.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import T

ROOT = Path(__file__).resolve().parent.parent
WEB_TEST = "tests/test_web_client.py::test_page_chats_with_a_json_client"


def run_web_test(**env: str) -> list[str]:
    """The lines of pytest's short summary for one web test run with these variables."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", WEB_TEST],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=T(120.0),
        env=dict(os.environ, COLUMNS="2000", **env),  # the summary line untruncated
    )
    assert result.returncode == 1, result.stdout[-3000:]
    return [line for line in result.stdout.splitlines() if line.startswith("ERROR ")]


def test_without_chromium_the_error_says_how_to_install_it(tmp_path: Path) -> None:
    summary = run_web_test(DESKTOP_CHAT_CHROMIUM=str(tmp_path / "no-chromium"))
    assert len(summary) == 1
    assert "the web client tests need Chromium" in summary[0]
    assert "apt-get install --no-install-recommends chromium" in summary[0]


def test_a_driver_that_cannot_start_is_reported_with_its_own_stderr(tmp_path: Path) -> None:
    # Stands in for Playwright's Node.js on a machine without libatomic: the dynamic loader
    # refuses to start it and says why on stderr, which Playwright does not show.
    node = tmp_path / "node"
    node.write_text(
        "#!/bin/sh\n"
        'echo "$0: error while loading shared libraries: libatomic.so.1: cannot open shared'
        ' object file: No such file or directory" >&2\n'
        "exit 127\n"
    )
    node.chmod(0o755)
    summary = run_web_test(PLAYWRIGHT_NODEJS_PATH=str(node))
    assert len(summary) == 1
    line = summary[0]
    assert "Playwright's driver does not start" in line
    assert f"start: {node}: error while loading shared libraries: libatomic.so.1: " in line
    assert "apt-get install libatomic1" in line
    assert "Connection closed while reading from the driver" in line  # what Playwright said


PG_TEST = "tests/test_postgresql.py::test_a_database_from_a_newer_version_is_refused"


def test_without_postgresql_its_tests_skip_naming_the_package(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", PG_TEST],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=T(120.0),
        env=dict(os.environ, COLUMNS="2000", DESKTOP_CHAT_PG_BIN=str(tmp_path / "no-pg")),
    )
    assert result.returncode == 0, result.stdout[-3000:]
    [skipped] = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert "install Debian's postgresql package" in skipped
