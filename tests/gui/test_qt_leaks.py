"""The QThread/QTimer leak check finds what a test leaves running and says where it started."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QThread, QTimer
from pytestqt.qtbot import QtBot

from tests.gui.qt_leaks import QtLeakWatch


class _Stuck(QThread):
    """A thread that runs until told to stop (a worker someone forgot to close)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def run(self) -> None:
        self.release.wait()


def test_a_running_qthread_and_an_active_qtimer_are_reported_with_their_start(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch = QtLeakWatch()
    watch.install(monkeypatch)
    thread = _Stuck()
    timer = QTimer()
    try:
        thread.start()  # the thread's start line
        timer.start(60_000)  # the timer's start line
        reports = watch.dangling(wait_ms=10)
        assert len(reports) == 2
        thread_report, timer_report = reports
        assert thread_report.startswith("a QThread (_Stuck) still running")
        assert "test_qt_leaks.py" in thread_report and "thread.start()" in thread_report
        assert timer_report.startswith("a QTimer still active")
        assert "timer.start(60_000)" in timer_report
    finally:
        thread.release.set()
        assert thread.wait(5000)
        timer.stop()
    assert watch.dangling(wait_ms=10) == []


def test_stopped_and_deleted_ones_are_not_leaks(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch = QtLeakWatch()
    watch.install(monkeypatch)
    single = QTimer()
    single.setSingleShot(True)
    with qtbot.waitSignal(single.timeout):
        single.start(1)
    thread = _Stuck()
    thread.start()
    thread.release.set()
    assert thread.wait(5000)
    owned = QTimer(single)
    owned.start(60_000)
    single.deleteLater()  # takes its child timer with it
    assert watch.dangling(wait_ms=10) == []


# What the inner run below leaves behind, to be stopped here.
LEAKED: list[_Stuck] = []
KEPT: list[QTimer] = []


def test_the_fixture_fails_a_test_that_leaks(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("from tests.gui.conftest import _no_dangling_qt  # noqa: F401\n")
    pytester.makepyfile(
        test_leaky="""
        from PySide6.QtCore import QTimer
        from tests.gui import test_qt_leaks as outer

        def test_forgets_its_thread_and_timer(qtbot):
            thread = outer._Stuck()
            outer.LEAKED.append(thread)
            thread.start()
            timer = QTimer()
            outer.KEPT.append(timer)
            timer.start(60_000)
        """
    )
    try:
        result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    finally:
        for thread in LEAKED:
            thread.release.set()
            assert thread.wait(5000)
        for timer in KEPT:
            timer.stop()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test left Qt work running:*",
            "*a QThread (_Stuck) still running, started at:*",
            "*test_leaky.py*",
            "*thread.start()*",
            "*a QTimer still active, started at:*",
            "*timer.start(60_000)*",
        ]
    )
