"""The conversation model and its delegate, fed protocol events directly (no network)."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from datetime import date

import pytest
from PySide6.QtCore import QModelIndex, QPoint, QPointF, QRect, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter
from PySide6.QtWidgets import QStyle, QStyleOptionViewItem
from pytestqt.qtbot import QtBot

from desktop_chat.net.client.worker import ChatClient
from desktop_chat.net.protocol.events import ChatMessage, Left, Users, Welcome
from desktop_chat.net.server.server import Server
from desktop_chat.ui.chat_delegate import TEXT_X, ChatDelegate, day_label, initial_of
from desktop_chat.ui.chat_model import GROUP_WINDOW_MS, ChatModel, Kind, Role
from desktop_chat.ui.chat_view import WINDOW_ROWS, ChatView
from desktop_chat.ui.main_window import MainWindow
from desktop_chat.ui.notifications import SilentSound
from desktop_chat.ui.preferences import MemorySettings
from desktop_chat.ui.session import FLUSH_SLICE, ChatSession
from desktop_chat.ui.theme import DARK, LIGHT, name_hash
from tests.gui.conftest import FAST, TIMEOUT_MS, ClientFactory
from tests.helpers import T


def _recent_noon_ms() -> int:
    """Noon (local time) of today, or of yesterday before noon: recent, and far enough from
    midnight that the minutes the tests add never cross a day (they did, run at 00:30)."""
    now = time.localtime()
    noon = time.mktime((now.tm_year, now.tm_mon, now.tm_mday, 12, 0, 0, 0, 0, -1))
    return int((noon if noon < time.time() else noon - 86_400) * 1000)


BASE_TS = _recent_noon_ms()
HOSTILE = '<b>x</b> <img src="http://evil.example/p.png" onerror=alert(1)> &amp; <script>'


def msg(
    i: int,
    sender: str = "bob",
    text: str | None = None,
    *,
    ts: int | None = None,
    room: str | None = "general",
    to: str | None = None,
) -> ChatMessage:
    return ChatMessage(
        id=i,
        ts=BASE_TS + i * 1000 if ts is None else ts,
        from_=sender,
        text=f"message {i}" if text is None else text,
        room=None if to else room,
        to=to,
    )


def texts(model: ChatModel) -> list[str]:
    return [model.index(r).data() for r in range(model.rowCount())]


@pytest.fixture
def model() -> ChatModel:
    return ChatModel(me="Alice")


@pytest.fixture
def view(qtbot: QtBot) -> ChatView:
    v = ChatView()
    qtbot.addWidget(v)
    v.resize(600, 400)
    v.show()
    return v


# -- ordering, de-duplication, grouping -------------------------------------------------------


def test_messages_are_kept_in_id_order_and_each_once(model: ChatModel) -> None:
    model.add_messages([msg(5), msg(2), msg(9)])
    model.add_message(msg(7))
    assert model.add_message(msg(5)) is None  # a resumed duplicate
    model.add_messages([msg(1), msg(9), msg(3)])
    ids = [model.index(r).data(Role.MESSAGE_ID) for r in range(model.rowCount())]
    assert ids == [1, 2, 3, 5, 7, 9]
    assert model.oldest_id() == 1
    assert model.newest_id() == 9


def test_history_is_prepended_in_one_insertion(qtbot: QtBot, model: ChatModel) -> None:
    model.add_messages([msg(i) for i in range(100, 110)])
    with qtbot.waitSignal(model.rowsInserted) as blocker:
        model.add_messages([msg(i) for i in range(50, 100)])
    _parent, first, last = blocker.args
    assert (first, last) == (0, 49)
    assert model.rowCount() == 60


def test_live_messages_are_appended(qtbot: QtBot, model: ChatModel) -> None:
    model.add_message(msg(1))
    with qtbot.waitSignal(model.rowsInserted) as blocker:
        model.add_message(msg(2))
    assert blocker.args[1:] == [1, 1]


def test_consecutive_messages_from_one_sender_are_grouped(model: ChatModel) -> None:
    model.add_messages([msg(1, "bob"), msg(2, "bob"), msg(3, "carol"), msg(4, "bob")])
    grouped = [model.index(r).data(Role.GROUPED) for r in range(4)]
    assert grouped == [False, True, False, False]


def test_a_long_pause_starts_a_new_group(model: ChatModel) -> None:
    model.add_message(msg(1, "bob", ts=BASE_TS))
    model.add_message(msg(2, "bob", ts=BASE_TS + GROUP_WINDOW_MS + 1))
    assert model.index(1).data(Role.GROUPED) is False


def test_a_system_line_breaks_a_group(model: ChatModel) -> None:
    model.add_message(msg(1, "bob", ts=BASE_TS))
    model.add_system("carol joined", ts=BASE_TS + 10)
    model.add_message(msg(2, "bob", ts=BASE_TS + 20))
    assert [model.index(r).data(Role.KIND) for r in range(3)] == [
        Kind.MESSAGE,
        Kind.SYSTEM,
        Kind.MESSAGE,
    ]
    assert model.index(2).data(Role.GROUPED) is False


def test_an_older_message_inserted_before_a_group_regroups_it(
    qtbot: QtBot, model: ChatModel
) -> None:
    model.add_message(msg(5, "bob"))
    assert model.index(0).data(Role.GROUPED) is False
    with qtbot.waitSignal(model.dataChanged):
        model.add_message(msg(4, "bob"))
    assert model.index(1).data(Role.GROUPED) is True


def test_system_lines_stay_after_the_message_they_followed(model: ChatModel) -> None:
    model.add_message(msg(10))
    model.add_system("dave joined")
    model.add_message(msg(11))
    model.add_messages([msg(3), msg(4)])  # history arrives later
    assert texts(model) == ["message 3", "message 4", "message 10", "dave joined", "message 11"]
    assert model.index(3).data(Role.MESSAGE_ID) is None


def test_a_new_day_gets_a_divider(model: ChatModel) -> None:
    day = 86_400_000
    model.add_message(msg(1, ts=BASE_TS - 2 * day))
    model.add_message(msg(2, ts=BASE_TS - 2 * day + 60_000))
    model.add_message(msg(3, ts=BASE_TS))
    breaks = [model.entry(r).day_break for r in range(3)]
    assert breaks == [True, False, True]


# -- mentions, actions, links, plain text -----------------------------------------------------


def test_mentions_of_me_are_flagged_in_any_case(model: ChatModel) -> None:
    model.add_messages(
        [
            msg(1, "bob", "@alice lunch?"),
            msg(2, "bob", "ask @ALICE, she knows"),
            msg(3, "bob", "@alicex is someone else"),
            msg(4, "bob", "mail alice@example.com"),
            msg(5, "Alice", "I am @Alice"),  # my own message is no mention
        ]
    )
    assert [model.index(r).data(Role.MENTION) for r in range(5)] == [
        True,
        True,
        False,
        False,
        False,
    ]
    span = model.entry(1).mention_spans[0]
    assert model.entry(1).text[span.start : span.end] == "@ALICE"


def test_learning_my_name_later_marks_mentions(model: ChatModel) -> None:
    anonymous = ChatModel(me=None)
    anonymous.add_message(msg(1, "bob", "hi @Zoë"))
    assert anonymous.index(0).data(Role.MENTION) is False
    anonymous.set_me("zoë")
    assert anonymous.index(0).data(Role.MENTION) is True


def test_me_actions_are_recognised(model: ChatModel) -> None:
    model.add_messages([msg(1, "bob", "* bob waves"), msg(2, "bob", "* not an action")])
    assert model.index(0).data(Role.KIND) == Kind.ACTION
    assert model.index(1).data(Role.KIND) == Kind.MESSAGE


def test_links_are_found_without_trailing_punctuation(model: ChatModel) -> None:
    model.add_message(msg(1, text="see https://example.com/a_(b)?q=1, and www.example.org."))
    assert model.index(0).data(Role.LINKS) == [
        "https://example.com/a_(b)?q=1",
        "http://www.example.org",
    ]


def test_display_text_is_exactly_what_was_sent(model: ChatModel) -> None:
    model.add_message(msg(1, text=HOSTILE))
    index = model.index(0)
    assert index.data(Qt.ItemDataRole.DisplayRole) == HOSTILE
    assert "bob" in index.data(Qt.ItemDataRole.AccessibleTextRole)
    assert index.data(Qt.ItemDataRole.ToolTipRole)  # the full date and time


def test_the_delegate_lays_out_markup_as_literal_text(qtbot: QtBot, model: ChatModel) -> None:
    model.add_message(msg(1, text=HOSTILE))
    delegate = ChatDelegate(None, LIGHT)
    font = QFont()
    fonts = delegate.fonts(font)
    layout, height = delegate.text_layout(model.entry(0), 2000, fonts)
    assert layout.text() == HOSTILE
    assert layout.lineCount() == 1
    # Laid out as the literal characters: as wide as the raw string, not as "x" plus an image.
    literal = QFontMetricsF(fonts.body).horizontalAdvance(HOSTILE)
    assert layout.lineAt(0).naturalTextWidth() == pytest.approx(literal, rel=0.02)
    assert height > 0
    # Only the link is formatted: no bold, no image, from the markup.
    formats = layout.formats()
    assert len(formats) == 1
    assert HOSTILE[formats[0].start :].startswith("http://evil.example")


def test_the_delegate_paints_every_kind_of_row(qtbot: QtBot, model: ChatModel) -> None:
    model.add_messages(
        [
            msg(1, "bob", HOSTILE),
            msg(2, "bob", "and @alice see https://example.com"),
            msg(3, "carol", "* carol waves"),
            msg(4, "carol", "line one\nline two"),
        ]
    )
    model.add_system("dave joined")
    model.add_system("nobody called zed is online", kind=Kind.ERROR)
    for theme in (LIGHT, DARK):
        delegate = ChatDelegate(None, theme)
        image = QImage(600, 2000, QImage.Format.Format_ARGB32)
        image.fill(QColor(theme.surface))
        painter = QPainter(image)
        y = 0
        for row in range(model.rowCount()):
            option = QStyleOptionViewItem()
            option.font = QFont()
            option.rect = QRect(0, y, 600, 0)
            hint = delegate.sizeHint(option, model.index(row))
            assert hint.height() > 0
            option.rect = QRect(0, y, 600, hint.height())
            option.state = QStyle.StateFlag.State_Enabled | (
                QStyle.StateFlag.State_MouseOver if row == 3 else QStyle.StateFlag.State_None
            )
            delegate.paint(painter, option, model.index(row))
            y += hint.height()
        painter.end()
        # Something was drawn in the text column of the first row.
        background = QColor(theme.surface).rgb()
        assert any(
            image.pixel(x, yy) != background for x in range(TEXT_X, 400) for yy in range(10, 60)
        )


def test_row_heights_are_cached_per_width(model: ChatModel) -> None:
    model.add_message(msg(1, text="word " * 200))
    delegate = ChatDelegate(None, LIGHT)
    fonts = delegate.fonts(QFont())
    entry = model.entry(0)
    wide = delegate.row_height(entry, 2000, fonts)
    assert entry.cache_width == 2000
    narrow = delegate.row_height(entry, 300, fonts)
    assert narrow > wide
    entry.cache_height = 12345  # a cached value is returned as is for the same width
    assert delegate.row_height(entry, 300, fonts) == 12345


@pytest.mark.parametrize(
    "text",
    ["short", "a bit longer message with words", "<b>x</b>", "x" * 150, "déjà vu — ünïcödé"],
)
def test_measured_one_line_heights_match_the_full_layout(
    qtbot: QtBot, model: ChatModel, text: str
) -> None:
    delegate = ChatDelegate(None, LIGHT)
    fonts = delegate.fonts(QFont())
    entry = model.add_message(msg(len(model.entries()) + 1, text=text))
    model.add_system(text)
    system = model.entries()[-1]
    assert entry is not None
    for row in (entry, system):
        for width in (200, 500, 2000):
            fast = ChatDelegate._one_line(row, width, fonts)
            _, full = delegate.text_layout(row, width, fonts)
            if fast is not None:
                assert fast == pytest.approx(full, abs=0.01)


def test_clicking_a_link_reports_it(qtbot: QtBot, view: ChatView, model: ChatModel) -> None:
    view.open_links = False
    text = "docs at https://example.com/x here"
    model.add_message(msg(1, text=text))
    view.set_chat_model(model)
    qtbot.waitUntil(lambda: view.visualRect(model.index(0)).height() > 0)
    rect = view.visualRect(model.index(0))
    entry = model.entry(0)
    fonts = view.delegate.fonts(view.font())
    layout, _ = view.delegate.text_layout(entry, view.delegate.body_width(rect.width()), fonts)
    start = text.index("https")
    x = layout.lineAt(0).cursorToX(start + 5)[0]
    origin = view.delegate.body_origin(entry, rect, fonts)
    pos = (origin + QPointF(x, layout.lineAt(0).height() / 2)).toPoint()
    assert view.link_at(pos) == "https://example.com/x"
    assert view.link_at(QPoint(int(origin.x()) + 2, pos.y())) is None  # on "docs"
    with qtbot.waitSignal(view.linkActivated) as blocker:
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert blocker.args == ["https://example.com/x"]


# -- the window of shown rows -----------------------------------------------------------------


def test_rows_far_above_are_dropped_and_revealed_again(model: ChatModel) -> None:
    model.add_messages([msg(i) for i in range(1, 1001)])
    assert model.trim_older(100) == 900
    assert model.rowCount() == 100
    assert model.hidden_older == 900
    assert model.index(0).data(Role.MESSAGE_ID) == 901
    assert model.reveal_older(200) == 200
    assert model.index(0).data(Role.MESSAGE_ID) == 701
    # New history lands among the hidden rows without showing up.
    model.add_messages([msg(i) for i in range(-50, 0)])
    assert model.rowCount() == 300
    assert model.total == 1050


def test_appending_while_at_the_bottom_pushes_the_oldest_rows_out_in_one_step(
    qtbot: QtBot, model: ChatModel
) -> None:
    model.keep_rows = 100
    model.add_messages([msg(i) for i in range(1, 51)])
    assert model.rowCount() == 50
    removed: list[tuple[int, int]] = []
    inserted: list[tuple[int, int]] = []
    model.rowsRemoved.connect(lambda _p, first, last: removed.append((first, last)))
    model.rowsInserted.connect(lambda _p, first, last: inserted.append((first, last)))
    model.add_messages([msg(i) for i in range(51, 131)])
    assert removed == [(0, 29)] and inserted == [(20, 99)]  # one of each, no second layout
    assert model.rowCount() == 100 and model.hidden_older == 30
    removed.clear()
    inserted.clear()
    # A batch longer than the window: only its newest rows are shown (one insertion).
    model.add_messages([msg(i) for i in range(131, 631)])
    assert removed == [(0, 99)] and inserted == [(0, 99)]
    assert [model.index(r).data(Role.MESSAGE_ID) for r in (0, 99)] == [531, 630]
    assert [e.msg_id for e in model.entries()] == list(range(1, 631))
    assert all(e.grouped for e in model.entries()[1:])  # layout facts of hidden rows too
    model.keep_rows = None  # scrolled up: nothing moves any more
    model.add_message(msg(631))
    assert model.rowCount() == 101


def test_the_view_paints_its_own_background(qtbot: QtBot, view: ChatView) -> None:
    m = ChatModel(me="alice")
    m.add_message(msg(1))
    view.set_chat_model(m)
    for theme in (DARK, LIGHT):
        view.set_theme(theme)
        image = view.viewport().grab().toImage()
        corner = image.pixelColor(image.width() - 3, image.height() - 3)
        assert corner.name() == QColor(theme.surface).name()


def test_the_view_shows_a_bounded_window_of_a_large_conversation(
    qtbot: QtBot, view: ChatView
) -> None:
    big = ChatModel(me="alice")
    big.add_messages([msg(i, f"user{i % 7}") for i in range(1, 20_001)])
    view.set_chat_model(big)
    assert big.rowCount() == WINDOW_ROWS
    bar = view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() == bar.maximum())
    big.add_message(msg(30_000, "zed"))
    qtbot.waitUntil(lambda: big.rowCount() == WINDOW_ROWS)
    qtbot.waitUntil(lambda: bar.value() == bar.maximum())
    last = big.index(big.rowCount() - 1)
    assert last.data(Role.MESSAGE_ID) == 30_000


def test_scrolling_to_the_top_reveals_held_rows_then_asks_for_more(
    qtbot: QtBot, view: ChatView
) -> None:
    big = ChatModel(me="alice")
    big.add_messages([msg(i, f"user{i % 3}") for i in range(1, WINDOW_ROWS + 101)])
    view.set_chat_model(big)
    assert big.hidden_older == 100
    bar = view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0)
    top_entry = big.entry(0)
    bar.setValue(0)
    qtbot.waitUntil(lambda: big.hidden_older == 0)
    # The view did not jump: the row that was at the top is still at the top.
    qtbot.waitUntil(lambda: view.indexAt(QPoint(5, 5)).row() == 100)
    assert big.entry(100) is top_entry
    with qtbot.waitSignal(view.olderWanted):
        bar.setValue(0)


def test_new_messages_while_scrolled_up_offer_a_jump(qtbot: QtBot, view: ChatView) -> None:
    m = ChatModel(me="alice")
    m.add_messages([msg(i) for i in range(1, 200)])
    view.set_chat_model(m)
    bar = view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0)
    bar.setValue(bar.maximum() // 2)
    m.add_message(msg(500))
    qtbot.waitUntil(view.jump_button.isVisible)
    assert "1 new message" in view.jump_button.text()
    assert not view.is_at_bottom()
    qtbot.mouseClick(view.jump_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bar.value() == bar.maximum())
    assert not view.jump_button.isVisible()


def test_copying_selected_messages(qtbot: QtBot, view: ChatView, model: ChatModel) -> None:
    model.add_messages([msg(1, "bob", "first"), msg(2, "carol", "second")])
    view.set_chat_model(model)
    view.selectAll()
    assert view.selected_text().splitlines()[1].endswith("carol: second")


# -- the session: protocol events in, conversations out ------------------------------------------


def test_the_session_batches_a_burst_and_keeps_the_servers_order(qtbot: QtBot) -> None:
    client = ChatClient()  # never connected: requests only queue up
    try:
        session = ChatSession(client)
        session.on_welcomed(Welcome(name="Alice", session="s", server="Test", rooms=("general",)))
        session.on_users(Users(room="general", names=("Alice", "bob")))
        with qtbot.waitSignal(session.messagesArrived) as arrived:
            for i in range(1, 51):
                session.on_message(msg(i, "bob"))
        key, entries = arrived.args
        assert key == "#general" and len(entries) == 50  # one batch
        session.on_message(msg(51, "bob", "last words"))
        session.on_left(Left(room="general", name="bob", reason="quit"))  # flushes first
        texts = [e.text for e in session.find("#general").model.entries()]
        assert texts[-2:] == ["last words", "bob left the chat"]
        assert session.find("#general").members == ["Alice"]
        session.on_message(msg(52, "carol", "psst", room=None, to="Alice"))
        session.flush()
        dm = session.find("@carol")
        assert dm is not None and dm.is_private and dm.model.entry(0).text == "psst"
    finally:
        client.close()


def test_a_burst_is_handled_in_slices_in_the_servers_order(qtbot: QtBot) -> None:
    client = ChatClient()  # never connected: requests only queue up
    try:
        session = ChatSession(client)
        session.on_welcomed(Welcome(name="Alice", session="s", server="Test", rooms=("general",)))
        session.on_users(Users(room="general", names=("Alice", "bob", "carol")))
        model = session.find("#general").model
        batches: list[int] = []
        session.messagesArrived.connect(lambda _key, entries: batches.append(len(entries)))
        burst = [msg(i, "bob") for i in range(1, 1001)]
        session.on_events([*burst[:500], Left(room="general", name="carol", reason="quit")])
        session.on_events(burst[500:])
        assert model.total == 0  # nothing is handled in the caller's turn
        qtbot.waitUntil(lambda: session.queued == 0, timeout=TIMEOUT_MS)
        assert sum(batches) == 1000 and max(batches) <= FLUSH_SLICE and len(batches) >= 4
        texts = [e.text for e in model.entries()]
        assert texts[499:502] == ["message 500", "carol left the chat", "message 501"]
        assert session.find("#general").members == ["Alice", "bob"]
    finally:
        client.close()


def test_a_burst_of_1000_messages_reaches_the_window_in_order_and_once(
    qtbot: QtBot, make_server: Callable[..., Server], make_client: ClientFactory
) -> None:
    server = make_server(rate_per_sec=0)  # no flood control: this is a flood
    client = ChatClient(timing=FAST)
    window = MainWindow(client, None, MemorySettings(), sound=SilentSound())
    qtbot.addWidget(window)
    try:
        window.resize(900, 600)
        window.show()
        client.connect_to("127.0.0.1", server.port, "Viewer", fingerprint=server.fingerprint)
        qtbot.waitUntil(lambda: window.current_key == "#general", timeout=TIMEOUT_MS)
        conv = window.session.find("#general")
        writer = make_client()
        writer.connect_to("127.0.0.1", server.port, "Writer", fingerprint=server.fingerprint)
        qtbot.waitUntil(lambda: "Writer" in conv.members, timeout=TIMEOUT_MS)
        handed_over: list[int] = []  # messages per eventsReceived
        client.eventsReceived.connect(
            lambda events: handed_over.append(sum(isinstance(e, ChatMessage) for e in events))
        )
        for i in range(1000):  # queued at once: the worker sends them in one go
            writer.say("general", f"burst {i}")

        def from_writer() -> list[str]:
            return [e.text for e in conv.model.entries() if e.sender == "Writer"]

        qtbot.waitUntil(lambda: len(from_writer()) >= 1000, timeout=int(T(20) * 1000))
        assert from_writer() == [f"burst {i}" for i in range(1000)]
        # Each message crossed into this thread once, most of them many to a queued call (a
        # run here: 1,000 messages in 65-130 lists).
        assert sum(handed_over) == 1000 and len(handed_over) < 500
        ids = [e.msg_id for e in conv.model.entries() if e.msg_id is not None]
        assert ids == sorted(set(ids))  # in id order, each exactly once
        # The view kept to the newest rows while at the bottom, and shows the last message.
        view = window.chat_view
        assert view.chat_model() is conv.model and view.is_at_bottom()
        assert conv.model.rowCount() <= WINDOW_ROWS
        last = conv.model.index(conv.model.rowCount() - 1)
        assert last.data() == "burst 999"
        bar = view.verticalScrollBar()
        qtbot.waitUntil(lambda: bar.value() == bar.maximum())
    finally:
        window.close()


# -- small helpers ----------------------------------------------------------------------------


def test_name_colours_are_stable_and_case_blind() -> None:
    assert name_hash("Alice") == name_hash("ALICE") == name_hash("alice")
    assert LIGHT.name_color("Bob") == LIGHT.name_color("bob")
    assert LIGHT.name_color("Bob") != DARK.name_color("Bob")
    # CRC-32 of the casefolded name: the same in every process (unlike hash()).
    assert name_hash("Zoë") == zlib.crc32("zoë".encode())


def test_day_labels() -> None:
    today = date(2024, 5, 17)
    assert day_label(today, today) == "Today"
    assert day_label(date(2024, 5, 16), today) == "Yesterday"
    assert day_label(date(2024, 5, 13), today) == "Monday"
    assert day_label(date(2024, 1, 2), today) == "Tuesday, 2 January"
    assert day_label(date(2023, 1, 2), today) == "2 January 2023"


def test_initials() -> None:
    assert initial_of("bob") == "B"
    assert initial_of("_zed") == "Z"
    assert initial_of("!!") == "!"


def test_model_rejects_bad_indexes(model: ChatModel) -> None:
    assert model.data(QModelIndex()) is None
    assert model.rowCount(model.index(0)) == 0
