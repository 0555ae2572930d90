"""Run ``desktop-chat-server`` with every thread under cProfile, counting CPU time, not waiting.

``bench_server.py --profile FILE`` starts our server through this wrapper. Each thread gets its
own ``cProfile.Profile`` on the thread's CPU clock (``time.thread_time``), so a thread blocked
in ``recv``, ``poll`` or on a lock costs nothing and the table shows where the CPU went; when
the server has shut down (SIGTERM: it joins all its threads), the profiles are merged and saved
with ``pstats`` to FILE. Profiling roughly doubles the cost of each Python call, so figures from
a profiled run are not benchmark figures: use it to see the shares, not the totals.

    python bench/profile_server.py OUT.pstats --host 127.0.0.1 --port 5151 --data-dir DIR ...
    python -c "import pstats; pstats.Stats('OUT.pstats').sort_stats('tottime').print_stats(30)"
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def install() -> list[cProfile.Profile]:
    """Make every thread started from now on (and this one) profile itself on its CPU clock."""
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    original_run: Callable[[threading.Thread], Any] = threading.Thread.run

    def run(self: threading.Thread) -> None:
        prof = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append(prof)
        prof.enable()
        try:
            original_run(self)
        finally:
            prof.disable()

    threading.Thread.run = run  # type: ignore[method-assign]
    main = cProfile.Profile(time.thread_time)
    profiles.append(main)
    main.enable()
    return profiles


def save(profiles: list[cProfile.Profile], path: Path) -> None:
    profiles[0].disable()  # the main thread's
    stats: pstats.Stats | None = None
    for prof in profiles:
        try:
            one = pstats.Stats(prof)
        except TypeError:  # a thread that never ran any Python code
            continue
        if stats is None:
            stats = one
        else:
            stats.add(one)
    if stats is not None:
        stats.dump_stats(path)


def main() -> int:
    out = Path(sys.argv[1])
    profiles = install()
    from desktop_chat import server_cli  # after install(): its threads are profiled too

    try:
        status = server_cli.main(sys.argv[2:])
    finally:
        save(profiles, out)
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
