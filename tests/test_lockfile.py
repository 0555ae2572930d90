"""Release builds install from a pinned, hashed lock file: it must cover what pyproject.toml
asks for, and every entry must be an exact version with hashes (pip's --require-hashes)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match[0]).lower()


def test_the_lock_pins_and_hashes_every_release_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {
        _name(r) for r in project["dependencies"] + project["optional-dependencies"]["package"]
    }
    text = (ROOT / "packaging" / "requirements.lock").read_text()
    entries = re.split(r"\n(?=[A-Za-z])", text)  # the header comment is one entry, skipped
    locked = {}
    for entry in entries:
        if not entry.strip() or entry.startswith("#"):
            continue
        head = entry.split("\n", 1)[0]
        assert re.match(r"^[A-Za-z0-9._-]+==[^ ;\\]+", head), head
        assert "--hash=sha256:" in entry, head
        locked[_name(head)] = head
    assert wanted <= set(locked), wanted - set(locked)
    assert "--require-hashes" in (ROOT / "dev.py").read_text()
