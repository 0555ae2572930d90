"""The Debian/Ubuntu packages Desktop Chat needs, read from ``packaging/debian-packages.txt``.

That file is the one list (per purpose: run the app, run the tests, build the bundle). This
module reads it for ``dev.py`` (which imports it before any virtual environment exists, so it
uses only the standard library and imports Qt only inside :func:`platform_plugin_problem`),
for the app's hint when Qt cannot load a platform plugin, and for the tests that keep the
README in step with it.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

LIST_FILE = Path(__file__).resolve().parent.parent / "packaging" / "debian-packages.txt"
BASE = "app"  # every purpose adds to this section
# Qt's Linux platform plugins that draw on a desktop, by the names QT_QPA_PLATFORM uses.
DESKTOP_PLUGINS = {"xcb": "libqxcb.so", "wayland": "libqwayland.so"}


def read_sections(text: str) -> dict[str, list[str]]:
    """``{"app": [...], "test": [...], ...}`` from the file's ``[section]`` lines."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip(), [])
        elif current is None or " " in line:
            raise ValueError(f"line {number}: expected [section] or one package name: {raw!r}")
        else:
            current.append(line)
    return sections


def packages(purposes: Iterable[str], path: Path = LIST_FILE) -> list[str]:
    """The packages for these purposes: the ``[app]`` section, then each purpose's own."""
    sections = read_sections(path.read_text(encoding="utf-8"))
    wanted: list[str] = []
    for purpose in [BASE, *purposes]:
        if purpose not in sections:
            raise KeyError(f"no [{purpose}] section in {path} (there are: {', '.join(sections)})")
        wanted += [name for name in sections[purpose] if name not in wanted]
    return wanted


def apt_command(names: Iterable[str]) -> str:
    return "sudo apt-get install --no-install-recommends " + " ".join(names)


def missing(names: list[str]) -> list[str] | None:
    """Which of these packages apt would install, or None where that cannot be told.

    Asks ``apt-get --simulate`` (no root needed) rather than dpkg, so that a package another
    one provides (Ubuntu's ``libglib2.0-0t64`` for ``libglib2.0-0``) counts as there. None
    without apt, or when apt does not know a name (Ubuntu has no ``chromium`` package).
    """
    apt = shutil.which("apt-get")
    if apt is None or not names:
        return None
    try:
        result = subprocess.run(
            [apt, "--simulate", "--no-install-recommends", "install", *names],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, LC_ALL="C"),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    # "Inst NAME (VERSION ...)" is new; "Inst NAME [OLD] (NEW ...)" an upgrade of one that is there.
    lines = [line.split() for line in result.stdout.splitlines() if line.startswith("Inst ")]
    to_install = {words[1] for words in lines if not words[2].startswith("[")}
    return [name for name in names if name in to_install]


def platform_plugin_problem(
    environ: Mapping[str, str] | None = None, plugins: Path | None = None
) -> str | None:
    """Why Qt could not load any platform plugin it would try here (Linux), else None.

    Qt's own message for a plugin whose libraries are missing names one package
    (``libxcb-cursor0``) when several are missing, and then aborts; this loads the plugin the
    way Qt will, before Qt tries, and names everything the app needs instead. Only the
    desktop plugins (xcb, wayland) are checked; ``offscreen`` and the rest are left to Qt.
    """
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return None
    asked = env.get("QT_QPA_PLATFORM")
    if asked:
        names = [name.split(":", 1)[0] for name in asked.split(";") if name]
    else:  # Qt's own default order
        names = ["wayland", "xcb"] if env.get("XDG_SESSION_TYPE") == "wayland" else ["xcb"]
    if plugins is None:
        from PySide6.QtCore import QLibraryInfo

        plugins = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath))
    errors: list[str] = []
    for name in names:
        plugin = plugins / "platforms" / DESKTOP_PLUGINS.get(name, "")
        if name not in DESKTOP_PLUGINS or not plugin.is_file():
            return None  # not ours to judge: Qt reports it
        try:
            ctypes.CDLL(str(plugin), mode=os.RTLD_LAZY | os.RTLD_LOCAL)
        except OSError as exc:
            errors.append(f"Qt cannot load its {name} platform plugin: {exc}")
        else:
            return None
    try:
        hint = apt_command(packages([]))
    except OSError:  # a bundle or a wheel: no packaging/ folder, but the bundle has its libs
        hint = "install the libraries named above (on Debian/Ubuntu: apt-file search NAME)"
    return "".join(f"desktop-chat: {error}\n" for error in errors) + (
        f"desktop-chat: on Debian/Ubuntu, install what the app needs: {hint}\n"
    )
