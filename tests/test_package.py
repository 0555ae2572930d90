"""The packaged app: the launcher, the self-test, the icons, the Linux menu entry, the bundle.

Most tests run the launcher from source as a separate process, as the bundle runs it. The last
one builds the real bundles (onedir and onefile) with PyInstaller and runs the built programs'
self-test; it takes a minute or two, so it runs when ``CI=true`` (CI sets it) or
``DESKTOP_CHAT_BUILD_BUNDLE=1``; ``DESKTOP_CHAT_BUILD_BUNDLE=0`` skips it even in CI.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import plistlib
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from desktop_chat import __version__
from desktop_chat.net.server.http import WEB_FILES
from desktop_chat.tools import make_icons
from tests.helpers import T

ROOT = Path(__file__).resolve().parent.parent
ICONS = ROOT / "desktop_chat" / "resources" / "icons"
LINUX = ROOT / "packaging" / "linux"
SOURCES = ROOT / "resources"  # the source assets (see resources/README.md)
DESKTOP_ENTRY = SOURCES / "linux" / "desktop-chat.desktop"
POSIX_ONLY = pytest.mark.skipif(os.name == "nt", reason="a POSIX shell script")


def launcher(
    *args: str, env: dict[str, str] | None = None, wrap: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(wrap or []), sys.executable, "-m", "desktop_chat.launcher", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=T(60.0),
        env=env,
    )


def private_network() -> list[str] | None:
    """A command prefix that runs a program in a network namespace of its own (Linux), or None.

    The start screen looks for chats on the LAN (mDNS, broadcasts) as soon as it opens; in a
    namespace with only loopback that traffic never leaves the process's own sandbox.
    """
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return None
    prefix = ["unshare", "--net"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    if subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode != 0:
        return None
    return [*prefix, "sh", "-c", 'ip link set lo up 2>/dev/null; exec "$@"', "sh"]


def bundle_test_wanted() -> bool:
    asked = os.environ.get("DESKTOP_CHAT_BUILD_BUNDLE")
    return asked == "1" if asked else os.environ.get("CI") == "true"


def python_library_problem() -> str | None:
    """One line if PyInstaller cannot find this Python's shared library, which it bundles.

    Asked before the build, with PyInstaller's own search: after it, the reason would be one
    line in a few thousand of build output. Debian's python3 has the library built in; the
    bundle needs the separate ``libpython3.X`` package.
    """
    from PyInstaller.depend.bindepend import get_python_library_path
    from PyInstaller.exceptions import PythonLibraryNotFoundError

    try:
        get_python_library_path()
    except PythonLibraryNotFoundError as exc:
        said = str(exc.code)
        while said.startswith("ERROR: "):  # PyInstaller prefixes it twice
            said = said.removeprefix("ERROR: ")
        return f"PyInstaller cannot build the bundle with this Python: {said}"
    return None


# -- the launcher and the self-test, from source -------------------------------------------------


def test_self_test_from_source_passes() -> None:
    env = dict(os.environ)
    if sys.platform.startswith("linux"):  # with no display it must choose offscreen itself
        for name in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
            env.pop(name, None)
    result = launcher("--self-test", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"self-test passed: desktop-chat {__version__} on Qt ")
    assert result.stdout.count("\n") == 1
    if sys.platform.startswith("linux"):
        assert "on Qt offscreen" in result.stdout


def test_self_test_that_runs_out_of_time_fails_with_one_line() -> None:
    result = launcher("--self-test", "--timeout", "0.001")
    assert result.returncode == 1
    assert result.stderr.startswith("self-test failed: not finished within 0.001 s (")
    assert result.stderr.count("\n") == 1


def test_version() -> None:
    result = launcher("--version")
    assert (result.returncode, result.stdout) == (0, f"desktop-chat {__version__}\n")


def test_python_dash_m_desktop_chat_is_the_launcher() -> None:
    for args, said in (
        (("--version",), "desktop-chat"),
        (("--server", "--version"), "desktop-chat-server"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "desktop_chat", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=T(60.0),
        )
        assert (result.returncode, result.stdout) == (0, f"{said} {__version__}\n"), result.stderr


def test_server_mode_is_the_headless_server() -> None:
    result = launcher("--server", "--version")
    assert (result.returncode, result.stdout) == (0, f"desktop-chat-server {__version__}\n")


def test_installed_command_is_the_launcher(tmp_path: Path) -> None:
    """pip's ``desktop-chat`` script runs what the bundle runs: --server and --self-test work."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "desktop_chat", source / "desktop_chat", ignore=shutil.ignore_patterns("__pycache__")
    )
    target = tmp_path / "installed"
    pip = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile"),
            *("--target", str(target), str(source)),
        ],
        capture_output=True,
        text=True,
        timeout=T(300.0),
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    script = target / "bin" / "desktop-chat"
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    env["PYTHONPATH"] = str(target)
    for args, expected in (
        (["--server", "--version"], f"desktop-chat-server {__version__}\n"),
        (["--self-test"], "self-test passed: "),
    ):
        run = subprocess.run(
            [sys.executable, str(script), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=T(60.0),
        )
        assert run.returncode == 0, (args, run.stdout, run.stderr)
        assert run.stdout.startswith(expected), (args, run.stdout)


def test_quit_when_shown_opens_the_start_screen_and_exits(tmp_path: Path) -> None:
    wrap = private_network()
    if wrap is None:
        pytest.skip(
            "needs a network namespace of its own (Linux unshare): the start screen "
            "looks for chats on the LAN"
        )
    env = dict(os.environ, DESKTOP_CHAT_QUIT_WHEN_SHOWN="1", XDG_CONFIG_HOME=str(tmp_path))
    result = launcher(env=env, wrap=wrap)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "window-shown\n"


# -- icons -----------------------------------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def ico_sizes(data: bytes) -> list[int]:
    reserved, kind, count = struct.unpack("<HHH", data[:6])
    assert (reserved, kind) == (0, 1)
    sizes = []
    for i in range(count):
        side, _h, _c, _r, _p, _bpp, length, offset = struct.unpack(
            "<BBBBHHII", data[6 + 16 * i : 22 + 16 * i]
        )
        image = data[offset : offset + length]
        assert png_size(image)[0] == (side or 256)
        sizes.append(side or 256)
    return sizes


def icns_types(data: bytes) -> dict[bytes, int]:
    assert data[:4] == b"icns" and struct.unpack(">I", data[4:8])[0] == len(data)
    found, at = {}, 8
    while at < len(data):
        kind, length = data[at : at + 4], struct.unpack(">I", data[at + 4 : at + 8])[0]
        found[kind] = png_size(data[at + 8 : at + length])[0]
        at += length
    assert at == len(data)
    return found


def check_icon_folder(folder: Path) -> None:
    for size in make_icons.PNG_SIZES:
        assert png_size((folder / f"desktop-chat-{size}.png").read_bytes()) == (size, size)
    assert ico_sizes((folder / "desktop-chat.ico").read_bytes()) == list(make_icons.ICO_SIZES)
    assert icns_types((folder / "desktop-chat.icns").read_bytes()) == dict(make_icons.ICNS_TYPES)


def test_committed_icons_are_complete() -> None:
    check_icon_folder(ICONS)


def test_the_package_data_is_built_from_the_source_assets() -> None:
    for source, copy in make_icons.COPIED.items():
        assert source.is_file() and source.is_relative_to(SOURCES), source
        assert copy.read_bytes() == source.read_bytes(), f"run make_icons: {copy} is stale"
    info = plistlib.loads((SOURCES / "macos" / "Info.plist").read_bytes())
    assert info["CFBundleName"] == "Desktop Chat"
    assert "your network" in info["NSLocalNetworkUsageDescription"]
    assert info["NSRequiresAquaSystemAppearance"] is False


def test_make_icons_renders_every_file_from_the_svg(tmp_path: Path) -> None:
    written = make_icons.make_icons(tmp_path)
    assert len(written) == len(make_icons.PNG_SIZES) + 2
    check_icon_folder(tmp_path)


# -- the Linux menu entry --------------------------------------------------------------------------


def read_desktop_entry(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read(path, encoding="utf-8")
    return dict(parser["Desktop Entry"])


def test_desktop_entry_names_the_program_and_icon() -> None:
    entry = read_desktop_entry(DESKTOP_ENTRY)
    assert entry["Type"] == "Application"
    assert (entry["Exec"], entry["Icon"], entry["StartupWMClass"]) == ("desktop-chat",) * 3
    assert entry["Terminal"] == "false"
    assert entry["Categories"].endswith(";")
    validate = shutil.which("desktop-file-validate")
    if validate:
        result = subprocess.run([validate, str(DESKTOP_ENTRY)], capture_output=True)
        assert result.returncode == 0, result.stdout


def fake_program(folder: Path) -> Path:
    folder.mkdir(parents=True)
    shutil.copy2(DESKTOP_ENTRY, folder / "desktop-chat.desktop")
    shutil.copy2(LINUX / "install-desktop-entry.sh", folder / "install-desktop-entry.sh")
    shutil.copy2(ICONS / "desktop-chat-256.png", folder / "desktop-chat.png")
    program = folder / "desktop-chat"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    return program


@POSIX_ONLY
def test_install_desktop_entry_points_the_menu_at_the_program(tmp_path: Path) -> None:
    program = fake_program(tmp_path / "Apps" / "Desktop Chat 100%")
    data = tmp_path / "share"
    result = subprocess.run(
        ["sh", str(program.parent / "install-desktop-entry.sh")],
        env=dict(os.environ, XDG_DATA_HOME=str(data)),
        capture_output=True,
        text=True,
        timeout=T(30.0),
    )
    assert result.returncode == 0, result.stderr
    entry = read_desktop_entry(data / "applications" / "desktop-chat.desktop")
    assert entry["Exec"] == f'"{str(program).replace("%", "%%")}"'
    assert entry["Icon"] == "desktop-chat"
    icon = data / "icons" / "hicolor" / "256x256" / "apps" / "desktop-chat.png"
    assert png_size(icon.read_bytes()) == (256, 256)


@POSIX_ONLY
def test_install_desktop_entry_refuses_a_path_it_cannot_quote(tmp_path: Path) -> None:
    program = fake_program(tmp_path / "price$HOME")
    result = subprocess.run(
        ["sh", str(program.parent / "install-desktop-entry.sh")],
        env=dict(os.environ, XDG_DATA_HOME=str(tmp_path / "share")),
        capture_output=True,
        text=True,
        timeout=T(30.0),
    )
    assert result.returncode == 1
    assert "without" in result.stderr
    assert not (tmp_path / "share" / "applications").exists()


# -- the real bundle -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(
    not bundle_test_wanted(),
    reason="builds the real bundles with PyInstaller (1-2 minutes): set CI=true or "
    "DESKTOP_CHAT_BUILD_BUNDLE=1",
)
def test_built_bundles_run_their_self_test(tmp_path: Path) -> None:
    assert importlib.util.find_spec("PyInstaller"), "python3 dev.py test installs it when asked"
    if problem := python_library_problem():
        pytest.fail(problem, pytrace=False)
    dist, work = tmp_path / "dist", tmp_path / "work"
    started = time.monotonic()
    build = subprocess.run(
        [
            *(sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN"),
            *("--distpath", str(dist), "--workpath", str(work), "build.spec"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    built_in = time.monotonic() - started
    folder = dist / "desktop-chat"
    suffix = ".exe" if os.name == "nt" else ""
    program = folder / f"desktop-chat{suffix}"
    if sys.platform == "darwin":
        program = dist / "Desktop Chat.app" / "Contents" / "MacOS" / "desktop-chat"

    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}  # it must choose
    checks = [
        ([str(program), "--self-test"], "self-test passed: "),
        ([str(program), "--version"], f"desktop-chat {__version__}\n"),
        ([str(folder / f"desktop-chat-server{suffix}"), "--version"], "desktop-chat-server "),
    ]
    onefile = dist / "onefile" / f"desktop-chat{suffix}"
    if sys.platform != "darwin":  # macOS gets the .app only
        assert onefile.stat().st_size <= 80_000_000, "the single file is over 80 MB"
        checks.append(([str(onefile), "--self-test"], "self-test passed: "))
    for command, expected in checks:
        result = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=T(60.0)
        )
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        assert result.stdout.startswith(expected), (command, result.stdout)

    inside = folder / "_internal"
    web = {f for f, _ in WEB_FILES.values()}
    assert web <= {p.name for p in (inside / "desktop_chat" / "web").iterdir()}
    assert not [p for p in folder.rglob("*") if p.is_symlink() and not p.exists()]
    if sys.platform.startswith("linux"):
        plugins = inside / "PySide6" / "Qt" / "plugins"
        names = {p.name for p in plugins.rglob("*.so")}
        assert {"libqoffscreen.so", "libqxcb.so", "libqwayland.so", "libqsvgicon.so"} <= names
        assert "libqgtk3.so" not in names
        assert not list(inside.glob("libgtk-3*")), "the build machine's GTK leaked in"
        assert not list((inside / "PySide6" / "Qt").glob("translations/*"))
        entry = read_desktop_entry(folder / "desktop-chat.desktop")
        assert entry["Icon"] == "desktop-chat"
        assert png_size((folder / "desktop-chat.png").read_bytes()) == (256, 256)
    assert built_in < 600, f"the build took {built_in:.0f} s"
