"""The numbers under a desktop transfer's progress bar: speed over a sliding window (no absurd
figure right after a resume), "stalled" instead of a stale speed, our short error words."""

from __future__ import annotations

from desktop_chat.ui.transfers import Transfer, short_reason, status_line

MB = 1 << 20


def _transfer() -> Transfer:
    return Transfer("t1", "upload", "up.bin", 500 * MB, "127.0.0.1:1 fp")


def test_speed_after_a_resume_is_the_speed_since_the_resume() -> None:
    t = _transfer()
    t.restart_clock(0.0)
    for i in range(1, 21):  # 10 s at 20 MB/s
        t.note_progress(i * 10 * MB, i * 0.5)
    assert abs(t.speed - 20 * MB) < MB
    # The connection was cut for a minute; the transfer resumes where it was.
    t.restart_clock(70.0)
    assert t.speed == 0.0
    assert status_line(t, 70.2, True) == "200.0 MB of 500.0 MB"  # no speed yet, no nonsense
    for i in range(1, 5):
        t.note_progress(200 * MB + i * 10 * MB, 70.0 + i * 0.5)
    assert abs(t.speed - 20 * MB) < MB, t.speed  # not 642 KB/s from a mean over the gap
    line = status_line(t, 72.0, True)
    assert line.startswith("240.0 MB of 500.0 MB · 20.0 MB/s, ") and line.endswith(" s left")


def test_a_transfer_whose_bytes_stop_says_stalled_or_reconnecting() -> None:
    t = _transfer()
    t.restart_clock(0.0)
    t.note_progress(10 * MB, 1.0)
    t.note_progress(20 * MB, 2.0)
    assert "MB/s" in status_line(t, 2.5, True)
    assert status_line(t, 6.0, True) == "stalled — waiting for the server"
    assert status_line(t, 6.0, False) == "reconnecting…"
    t.note_progress(20 * MB, 7.0)  # a report without new bytes does not count as moving
    assert status_line(t, 7.0, True) == "stalled — waiting for the server"


def test_error_words_are_ours_and_short() -> None:
    raw = "the download broke off (peer closed connection without sending complete message body)"
    assert short_reason(raw) == "the download broke off"
    assert (
        short_reason("the file has expired on the server") == "the file has expired on the server"
    )
