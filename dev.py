#!/usr/bin/env python3
"""One entry point for people working on Desktop Chat from a fresh clone.

    python3 dev.py app      set up .venv (first time / when pyproject.toml changed), start the app
    python3 dev.py server   ... and run the headless server (extra arguments are passed on)
    python3 dev.py test     ... and run everything CI runs: format, lint, types, import
                            boundaries, then the whole test suite (with CI=true or
                            DESKTOP_CHAT_BUILD_BUNDLE=1 it also builds and checks the bundle)
    python3 dev.py package  ... and build the executables with PyInstaller into dist/
                            (``package --only onedir`` skips the single-file one)

Needs only Python 3.11+ (on Windows: ``py dev.py test``). Uses only the standard library.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".desktop-chat-installed"
PACKAGE_STAMP = VENV / ".desktop-chat-package-installed"


def run(*cmd: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    result = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env)
    if result.returncode != 0:
        sys.exit(result.returncode)


def setup() -> None:
    if sys.version_info < (3, 11):
        sys.exit("Desktop Chat needs Python 3.11 or newer")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted and PY.exists():
        return
    if not PY.exists():
        print("+ creating .venv", flush=True)
        venv.create(VENV, with_pip=True)
    run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PY, "-m", "pip", "install", "--quiet", "-e", ".[dev]")
    STAMP.write_text(wanted)


def setup_package() -> None:
    """Install the locked release dependencies (PyInstaller too) into .venv, again only when
    pyproject.toml or the lock changed."""
    lock = ROOT / "packaging" / "requirements.lock"  # pinned and hashed: what releases ship
    wanted = STAMP.read_text() + hashlib.sha256(lock.read_bytes()).hexdigest()
    if PACKAGE_STAMP.exists() and PACKAGE_STAMP.read_text() == wanted:
        return
    run(PY, "-m", "pip", "install", "--quiet", "--require-hashes", "-r", lock)
    run(PY, "-m", "pip", "install", "--quiet", "--no-deps", "-e", ".")
    PACKAGE_STAMP.write_text(wanted)


def bundle_test_wanted() -> bool:
    """DESKTOP_CHAT_BUILD_BUNDLE=1/0 decides; unset, CI=true builds (as tests/test_package.py)."""
    asked = os.environ.get("DESKTOP_CHAT_BUILD_BUNDLE")
    return asked == "1" if asked else os.environ.get("CI") == "true"


def test(args: list[str]) -> None:
    if bundle_test_wanted():  # tests/test_package.py builds the real bundle then
        setup_package()
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    run(PY, "-m", "ruff", "format", "--check", ".")
    run(PY, "-m", "ruff", "check", ".")
    run(PY, "-m", "mypy")
    run(BIN / ("lint-imports.exe" if os.name == "nt" else "lint-imports"), env=env)
    run(PY, "-m", "pytest", *args, env=env)


def main() -> None:
    command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("app", [])
    if command not in ("app", "server", "test", "package", "setup"):
        sys.exit(__doc__)
    setup()
    if command == "test":
        test(args)
    elif command == "app":
        run(PY, "-m", "desktop_chat.app", *args)
    elif command == "server":
        run(PY, "-m", "desktop_chat.server_cli", *args)
    elif command == "package":
        setup_package()
        run(PY, "-m", "PyInstaller", "--noconfirm", "build.spec", *(["--", *args] if args else []))


if __name__ == "__main__":
    main()
