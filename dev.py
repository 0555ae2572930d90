#!/usr/bin/env python3
"""One entry point for people working on Desktop Chat from a fresh clone.

    python3 dev.py app      set up .venv (first time / when pyproject.toml changed), start the app
    python3 dev.py server   ... and run the headless server (extra arguments are passed on)
    python3 dev.py test     ... with the dev tools, and run everything CI runs: format, lint,
                            types, import boundaries, then the whole test suite (with CI=true
                            or DESKTOP_CHAT_BUILD_BUNDLE=1 it also builds and checks the bundle)
    python3 dev.py package  ... with PyInstaller, and build the executables into dist/
                            (``package --only onedir`` skips the single-file one)
    python3 dev.py deps PURPOSE...
                            print the Debian/Ubuntu packages for app, test and/or bundle
                            (from packaging/debian-packages.txt; ``--except NAME`` leaves
                            one out), for ``apt-get install``

``app`` and ``server`` install only the runtime dependencies; ``test`` adds the ``dev`` extra,
``package`` the ``package`` extra. Needs only Python 3.11+ (on Windows: ``py dev.py test``).
Uses only the standard library.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".desktop-chat-installed"  # {"pyproject": sha256, "extras": [...]}
PACKAGE_STAMP = VENV / ".desktop-chat-locked"  # the lock installed for releases (dev.py package)
COMMANDS = ("app", "server", "test", "package", "setup", "deps")


def say(text: str) -> None:
    print(f"dev.py: {text}", flush=True)


def run(*cmd: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    result = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env)
    if result.returncode != 0:
        sys.exit(result.returncode)


def pip_install(what: str, *args: str) -> None:
    """``pip install`` showing a few short progress lines; pip's own output only if it fails."""
    say(f"installing {what} into .venv (a minute the first time) ...")
    started = time.monotonic()
    command = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar"]
    with subprocess.Popen(
        [*command, "off", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as pip:
        assert pip.stdout is not None
        output: list[str] = []
        collected = 0
        for line in pip.stdout:
            output.append(line)
            if line.startswith("Collecting "):
                collected += 1
                if collected in (1, 10) or collected % 25 == 0:
                    name = re.split(r"[<>=!~\[;( ]", line.split()[1])[0]
                    say(f"  collecting {name} ({collected} so far) ...")
            elif line.startswith("Installing collected packages:"):
                names = line.split(":", 1)[1].split(",")
                say(f"  unpacking {len(names)} packages into .venv ...")
    if pip.returncode != 0:
        sys.stdout.write("".join(output))
        sys.exit(f"dev.py: pip failed (exit status {pip.returncode}); its output is above")
    say(f"  done in {time.monotonic() - started:.0f} s")


def installed() -> tuple[str, set[str]] | None:
    try:
        stamp = json.loads(STAMP.read_text())
        return str(stamp["pyproject"]), set(stamp["extras"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def setup(extras: set[str], purposes: list[str]) -> None:
    """Make .venv hold the package (editable) with these extras; nothing to do if it does.

    When there is something to install, first say which system packages the purposes need
    that are missing (Linux; a second or so, so not on every start).
    """
    if sys.version_info < (3, 11):
        sys.exit("Desktop Chat needs Python 3.11 or newer")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    have = installed() if PY.exists() else None
    if have and have[0] == wanted and extras <= have[1]:
        return
    if have and have[0] == wanted:
        extras = extras | have[1]  # keep what is there; pip adds only the new extra
    if sys.platform.startswith("linux"):
        check_system_packages(purposes)
    if not PY.exists():
        say(f"creating .venv with Python {sys.version.split()[0]} ...")
        try:
            venv.create(VENV, with_pip=True)
        except subprocess.CalledProcessError:
            shutil.rmtree(VENV)  # half made: without pip; the next run starts over
            sys.exit(
                "dev.py: Python could not create .venv (its ensurepip failed); "
                "on Debian/Ubuntu: sudo apt-get install python3-venv"
            )
    if extras:
        pip_install(
            f"Desktop Chat with the {' and '.join(sorted(extras))} extras",
            "-e",
            f".[{','.join(sorted(extras))}]",
        )
    else:
        pip_install("Desktop Chat and what it needs to run", "-e", ".")
    STAMP.write_text(json.dumps({"pyproject": wanted, "extras": sorted(extras)}))


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


def check_system_packages(purposes: list[str]) -> None:
    """On Debian/Ubuntu, say in one line which of the listed system packages are missing."""
    sys.path.insert(0, str(ROOT))
    from desktop_chat import system_packages

    names = system_packages.packages(purposes)
    absent = system_packages.missing(names)
    if absent:
        say(
            f"these system packages seem to be missing ({' and '.join([*purposes] or ['app'])}, "
            f"see README.md): {system_packages.apt_command(absent)}"
        )


def bundle_test_wanted() -> bool:
    """DESKTOP_CHAT_BUILD_BUNDLE=1/0 decides; unset, CI=true builds (as tests/test_package.py)."""
    asked = os.environ.get("DESKTOP_CHAT_BUILD_BUNDLE")
    return asked == "1" if asked else os.environ.get("CI") == "true"


def test(args: list[str]) -> None:
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    run(PY, "-m", "ruff", "format", "--check", ".")
    run(PY, "-m", "ruff", "check", ".")
    run(PY, "-m", "mypy")
    run(BIN / ("lint-imports.exe" if os.name == "nt" else "lint-imports"), env=env)
    run(PY, "-m", "pytest", *args, env=env)


def deps(args: list[str]) -> None:
    """Print the packages for the purposes in args, on one line (``--except NAME`` drops one)."""
    sys.path.insert(0, str(ROOT))
    from desktop_chat import system_packages

    purposes = [
        a for i, a in enumerate(args) if a != "--except" and args[i - 1 : i] != ["--except"]
    ]
    left_out = {args[i + 1] for i, a in enumerate(args[:-1]) if a == "--except"}
    try:
        names = system_packages.packages([p for p in purposes if p != system_packages.BASE])
    except KeyError as exc:
        sys.exit(f"dev.py deps: {exc.args[0]}")
    if not left_out <= set(names):
        sys.exit(f"dev.py deps: --except names a package not in the list: {left_out - set(names)}")
    print(" ".join(name for name in names if name not in left_out))


def main() -> None:
    command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("app", [])
    if command not in COMMANDS:
        sys.exit(__doc__)
    if command == "deps":
        deps(args)
        return
    purposes = {"test": ["test"], "package": ["bundle"]}.get(command, [])
    extras = {"test": {"dev"}}.get(command, set())
    if command == "test" and bundle_test_wanted():  # tests/test_package.py builds the bundle
        purposes, extras = [*purposes, "bundle"], {*extras, "package"}
    setup(extras, purposes)
    if command == "test":
        test(args)
    elif command == "app":
        say("starting the app")
        run(PY, "-m", "desktop_chat.app", *args)
    elif command == "server":
        run(PY, "-m", "desktop_chat.server_cli", *args)
    elif command == "package":
        setup_package()  # releases build from the pinned, hashed lock (PyInstaller included)
        run(PY, "-m", "PyInstaller", "--noconfirm", "build.spec", *(["--", *args] if args else []))


if __name__ == "__main__":
    main()
