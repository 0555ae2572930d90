"""Which QThreads and QTimers a test started and left running, and where it started them.

:class:`QtLeakWatch` wraps ``QThread.start`` and ``QTimer.start`` for the length of one test
(the way napari's ``_dangling_qthreads``/``_dangling_qtimers`` fixtures do) and records the
Python stack of every start. :meth:`QtLeakWatch.dangling` then names each thread still
running and each timer still active, with that stack, so a leak says where it began.
"""

from __future__ import annotations

import traceback
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QThread, QTimer

# Frames of this module and of the wrapper itself are not where the leak started.
_STACK_LIMIT = 14


class QtLeakWatch:
    def __init__(self) -> None:
        self._threads: list[tuple[weakref.ref[QThread], str]] = []
        self._timers: list[tuple[weakref.ref[QTimer], str]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Record every QThread.start and QTimer.start until ``monkeypatch`` is undone."""
        monkeypatch.setattr(QThread, "start", self._recording(QThread.start, self._threads))
        monkeypatch.setattr(QTimer, "start", self._recording(QTimer.start, self._timers))

    @staticmethod
    def _recording(
        original: Callable[..., Any], into: list[tuple[weakref.ref[Any], str]]
    ) -> Callable[..., Any]:
        def start(obj: Any, *args: Any, **kwargs: Any) -> Any:
            stack = "".join(traceback.format_stack(limit=_STACK_LIMIT)[:-1])
            # A weak reference: a timer or thread Python frees is deleted with it, not leaked.
            into.append((weakref.ref(obj), stack))
            return original(obj, *args, **kwargs)

        return start

    def dangling(self, wait_ms: int) -> list[str]:
        """One report per QThread still running (after up to ``wait_ms`` each to finish)
        and per QTimer still active, each with the stack that started it."""
        # Widgets closed with deleteLater() at teardown take their timers with them: let them.
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
        reports: list[str] = []
        seen: set[int] = set()
        for ref, stack in self._threads:
            thread = ref()
            if thread is None or id(thread) in seen:
                continue
            seen.add(id(thread))
            try:
                running = thread.isRunning() and not thread.wait(wait_ms)
            except RuntimeError:  # its C++ object is deleted: it cannot be running
                continue
            if running:
                reports.append(
                    f"a QThread ({type(thread).__name__}) still running, started at:\n{stack}"
                )
        for ref, stack in self._timers:
            timer = ref()
            if timer is None or id(timer) in seen:
                continue
            seen.add(id(timer))
            try:
                active = timer.isActive()
                owner = timer.parent()
            except RuntimeError:
                continue
            if active:
                of = f" of {type(owner).__name__}" if owner is not None else ""
                reports.append(f"a QTimer{of} still active, started at:\n{stack}")
        return reports
