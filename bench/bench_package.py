"""The packaged app: bundle sizes, build time, and time from launch to window shown.

    .venv/bin/python bench/bench_package.py              # measure what is in dist/ now
    .venv/bin/python bench/bench_package.py --build      # build both bundles first, timed
    .venv/bin/python bench/bench_package.py --runs 10 --dist /elsewhere/dist

``--build`` runs PyInstaller on build.spec twice from a clean work folder (``--clean``): onedir
only (what CI builds), then onedir and onefile together (what a release builds); the build
times include PyInstaller's dependency analysis. Sizes are the onedir folder (every file,
symlinks not followed) and the onefile program.

Start to window: the bundle's ``desktop-chat`` is launched with no arguments, as a double-click
does, with ``DESKTOP_CHAT_QUIT_WHEN_SHOWN=1``: the app prints ``window-shown`` when its first
window (the start screen) is exposed and then quits. The figure is the time from just before
the process is spawned to that line, so the onefile figure includes unpacking. Each run uses
fresh settings and data folders; the first run of each kind is also shown apart (colder disk
cache). Without a display Qt runs offscreen, which skips the window system's own work.

The start screen looks for chats on the network (mDNS, broadcast probes) as soon as it opens.
On Linux each launch therefore runs in a network namespace of its own (``unshare --net``,
only loopback), so the benchmark sends nothing to the real network; elsewhere, or where
namespaces are not allowed, it refuses unless ``--allow-lan`` is given.

Targets (issue 5): onefile <= 80 MB; start to window <= 2.5 s onefile, <= 1.5 s onedir.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXE_SUFFIX = ".exe" if os.name == "nt" else ""
TARGET_ONEFILE_MB = 80.0
TARGET_START_S = {"onefile": 2.5, "onedir": 1.5}
RUN_TIMEOUT = 30.0


def program(dist: Path, kind: str) -> Path:
    if kind == "onefile":
        return dist / "onefile" / f"desktop-chat{EXE_SUFFIX}"
    if sys.platform == "darwin":
        return dist / "Desktop Chat.app" / "Contents" / "MacOS" / "desktop-chat"
    return dist / "desktop-chat" / f"desktop-chat{EXE_SUFFIX}"


def folder_bytes(folder: Path) -> int:
    total = 0
    for base, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(base, name)
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def build(dist: Path, only: str | None) -> float:
    """Run PyInstaller from a clean work folder; the seconds it took."""
    work = Path(tempfile.mkdtemp(prefix="desktop-chat-build-"))
    command = [
        sys.executable,
        "-m",
        "PyInstaller",
        "--noconfirm",
        "--clean",
        "--log-level",
        "WARN",
        "--distpath",
        str(dist),
        "--workpath",
        str(work),
        str(ROOT / "build.spec"),
    ]
    if only:
        command += ["--", "--only", only]
    started = time.perf_counter()
    try:
        subprocess.run(command, cwd=ROOT, check=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return time.perf_counter() - started


def private_network() -> list[str] | None:
    """A command prefix for a network namespace with only loopback (Linux), or None."""
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return None
    prefix = ["unshare", "--net"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    if subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode != 0:
        return None
    return [*prefix, "sh", "-c", 'ip link set lo up 2>/dev/null; exec "$@"', "sh"]


def start_to_window(exe: Path, wrap: list[str]) -> float:
    """Seconds from spawning ``exe`` to its ``window-shown`` line; it must then exit 0."""
    with tempfile.TemporaryDirectory(prefix="desktop-chat-bench-") as tmp:
        env = dict(os.environ, DESKTOP_CHAT_QUIT_WHEN_SHOWN="1")
        env["DESKTOP_CHAT_DATA_DIR"] = str(Path(tmp, "data"))
        env["XDG_CONFIG_HOME"] = str(Path(tmp, "config"))  # fresh settings: the first start
        if sys.platform.startswith("linux") and not (
            env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")
        ):
            env.setdefault("QT_QPA_PLATFORM", "offscreen")
        started = time.perf_counter()
        proc = subprocess.Popen(
            [*wrap, str(exe)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
        )
        try:
            assert proc.stdout is not None
            shown = None
            for line in proc.stdout:  # ends when the program closes its output
                if line.strip() == "window-shown":
                    shown = time.perf_counter() - started
                    break
            _out, err = proc.communicate(timeout=RUN_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if shown is None or proc.returncode != 0:
        raise RuntimeError(f"{exe} exited {proc.returncode} without showing a window: {err}")
    return shown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", action="store_true", help="build (timed) before measuring")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="where the bundles are")
    parser.add_argument("--runs", type=int, default=5, help="launches per bundle (default 5)")
    parser.add_argument(
        "--allow-lan",
        action="store_true",
        help="without a private network namespace, let the start screen look for chats on "
        "the real network",
    )
    args = parser.parse_args()
    wrap = private_network()
    if wrap is None and not args.allow_lan:
        sys.exit(
            "cannot isolate the start screen's LAN discovery here (Linux unshare --net); "
            "pass --allow-lan to measure on the real network"
        )

    rows: list[tuple[str, str, str]] = []
    if args.build:
        onedir_s = build(args.dist, "onedir")
        rows.append(("build time, onedir only (clean)", f"{onedir_s:.0f} s", ""))
        both_s = build(args.dist, None)
        rows.append(("build time, onedir + onefile (clean)", f"{both_s:.0f} s", ""))

    kinds = [k for k in ("onedir", "onefile") if program(args.dist, k).is_file()]
    if not kinds:
        sys.exit(f"no bundle in {args.dist}: build one (python3 dev.py package) or pass --build")
    onedir_folder = program(args.dist, "onedir").parent
    if "onedir" in kinds:
        if sys.platform == "darwin":
            onedir_folder = args.dist / "Desktop Chat.app"
        mb = folder_bytes(onedir_folder) / 1e6
        rows.append(("size, onedir folder", f"{mb:.1f} MB", ""))
    if "onefile" in kinds:
        mb = program(args.dist, "onefile").stat().st_size / 1e6
        verdict = "ok" if mb <= TARGET_ONEFILE_MB else "OVER"
        rows.append(
            ("size, onefile", f"{mb:.1f} MB", f"target <= {TARGET_ONEFILE_MB:g} MB: {verdict}")
        )

    for kind in kinds:
        exe = program(args.dist, kind)
        times = [start_to_window(exe, wrap or []) for _ in range(max(1, args.runs))]
        first, median = times[0], statistics.median(times)
        target = TARGET_START_S[kind]
        verdict = "ok" if median <= target else "OVER"
        rows.append(
            (
                f"start to window, {kind} (median of {len(times)})",
                f"{median:.2f} s",
                f"first {first:.2f} s, min {min(times):.2f}, max {max(times):.2f}; "
                f"target <= {target:g} s: {verdict}",
            )
        )

    platform = os.environ.get("QT_QPA_PLATFORM") or (
        "offscreen" if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") else ""
    )
    platform = platform or "native"
    print(f"\nDesktop Chat bundles in {args.dist} ({sys.platform}, Qt platform {platform})")
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>9}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
