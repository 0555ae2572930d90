"""The window during an outage: a real server stopped and started again on the same port and
data folder. While disconnected nobody is shown online, what the person sends is marked as
pending (and delivered exactly once when the chat is back), a button reconnects at once, and
the reason given is the host's, not "connection refused"."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from desktop_chat.net.client.link import HOST_STOPPED
from desktop_chat.net.client.worker import ChatClient, ClientTiming
from desktop_chat.net.server.server import Server
from desktop_chat.ui.chat_model import Kind
from desktop_chat.ui.main_window import MainWindow
from desktop_chat.ui.notifications import SilentSound
from desktop_chat.ui.preferences import MemorySettings
from tests.gui.conftest import FAST, TIMEOUT_MS, WindowAt
from tests.helpers import LineClient


def _texts(window: MainWindow, key: str = "#general") -> list[str]:
    conv = window.session.find(key)
    return [] if conv is None else [e.text for e in conv.model.entries() if not e.pending]


def _pending(window: MainWindow, key: str = "#general") -> list[str]:
    conv = window.session.find(key)
    return [] if conv is None else [e.text for e in conv.model.pending()]


def _stop(qtbot: QtBot, window: MainWindow, server: Server) -> None:
    with qtbot.waitSignal(
        window.client.stateChanged,
        timeout=TIMEOUT_MS,
        check_params_cb=lambda state, _detail: state == "reconnecting",
    ):
        server.close()


def _stored(server: Server, text: str) -> int:
    """How many times ``text`` is in #general's stored history."""
    with LineClient(server.address) as probe:
        probe.login("probe")
        probe.send_json(type="history", room="general", limit=500)
        history = probe.expect("history")
    return sum(1 for m in history["messages"] if m["text"] == text)


def test_a_message_sent_while_disconnected_is_pending_then_delivered_once(
    qtbot: QtBot, make_server: Callable[..., Server], data_dir: Path, window_at: WindowAt
) -> None:
    first = make_server()
    port = first.port
    ann = window_at(first, "Ann")
    ben = window_at(first, "Ben")
    qtbot.waitUntil(lambda: ann.user_list.count() == 2, timeout=TIMEOUT_MS)
    assert not ann.user_list.model.is_away("Ben")

    _stop(qtbot, ann, first)
    # Nobody is known to be online any more: everyone greyed, the header says why.
    assert ann.user_list.model.is_away("Ben")
    assert "NOT CONNECTED" in ann.user_list.header.text()
    assert ann.reconnect_button.isVisibleTo(ann)

    ann.input.setFocus()
    qtbot.keyClicks(ann.input, "typed during the outage")
    qtbot.keyClick(ann.input, Qt.Key.Key_Return)
    assert ann.input.toPlainText() == ""
    assert _pending(ann) == ["typed during the outage"]
    entry = ann.session.find("#general").model.pending()[0]  # type: ignore[union-attr]
    assert entry.own and entry.clock == "sending…"

    second = make_server(port=port)
    qtbot.waitUntil(lambda: "typed during the outage" in _texts(ben), timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: _pending(ann) == [], timeout=TIMEOUT_MS)
    assert _texts(ann).count("typed during the outage") == 1
    assert _texts(ben).count("typed during the outage") == 1
    assert _stored(second, "typed during the outage") == 1
    assert not ann.user_list.model.is_away("Ben")
    assert not ann.banner_bar.isVisibleTo(ann)


def test_a_refused_message_leaves_no_pending_mark(
    qtbot: QtBot, make_server: Callable[..., Server], window_at: WindowAt
) -> None:
    server = make_server(rate_burst=1, rate_per_sec=0.01)
    ann = window_at(server, "Ann")
    for n in range(3):  # over the rate limit: the server refuses with the message's ref
        ann.session.send("#general", f"burst {n}")
    assert len(_pending(ann)) == 3
    qtbot.waitUntil(lambda: _pending(ann) == [], timeout=TIMEOUT_MS)
    assert not any(t.startswith("burst") for t in _texts(ann))
    assert _texts(ann).count("slow down: too many messages") == 3
    assert ann.session.pending_count() == 0


def _seconds(banner: str) -> int:
    digits = banner.rsplit("Reconnecting in ", 1)[1]
    return int(digits[: len(digits) - len(digits.lstrip("0123456789"))])


def test_reconnect_now_skips_the_countdown(
    qtbot: QtBot, make_server: Callable[..., Server], window_at: WindowAt
) -> None:
    assert ClientTiming().reconnect_max <= 10.0  # a LAN host is back within seconds
    slow = ClientTiming(
        connect_timeout=FAST.connect_timeout,
        handshake_timeout=FAST.handshake_timeout,
        reconnect_base=60.0,
        reconnect_max=60.0,
    )
    first = make_server()
    ann = window_at(first, "Ann", timing=slow)
    _stop(qtbot, ann, first)
    qtbot.waitUntil(lambda: "Reconnecting in" in ann.banner.text(), timeout=TIMEOUT_MS)
    # The server said it was closing: the countdown gives that reason, not a socket error.
    assert ann.banner.text().startswith(HOST_STOPPED)
    first_count = _seconds(ann.banner.text())
    assert 30 <= first_count <= 60  # 60 s, times the jitter
    qtbot.waitUntil(lambda: _seconds(ann.banner.text()) < first_count, timeout=TIMEOUT_MS)
    make_server(port=first.port)
    with qtbot.waitSignal(
        ann.client.stateChanged,
        timeout=TIMEOUT_MS,
        check_params_cb=lambda state, _detail: state == "connected",
    ):
        qtbot.mouseClick(ann.reconnect_button, Qt.MouseButton.LeftButton)


def _system_lines(window: MainWindow) -> list[str]:
    conv = window.session.find("#general")
    assert conv is not None
    return [e.text for e in conv.model.entries() if e.kind == Kind.SYSTEM]


def test_a_drop_and_a_quick_return_show_no_lines(
    qtbot: QtBot, make_server: Callable[..., Server], window_at: WindowAt
) -> None:
    server = make_server()
    ann = window_at(server, "Ann")
    ann.session.reconnect_grace_s = 60.0
    bob = LineClient(server.address)
    bob.login("Bob")
    qtbot.waitUntil(lambda: ann.user_list.count() == 2, timeout=TIMEOUT_MS)
    before = _system_lines(ann)

    bob.close()  # a Wi-Fi blip: no quit
    qtbot.waitUntil(lambda: ann.user_list.model.is_away("Bob"), timeout=TIMEOUT_MS)
    assert ann.user_list.count() == 2  # still listed, greyed
    with LineClient(server.address) as back:
        back.login("Bob", resume={"session": bob.welcome_session, "since": 0})
        qtbot.waitUntil(lambda: not ann.user_list.model.is_away("Bob"), timeout=TIMEOUT_MS)
        assert _system_lines(ann) == before  # neither "lost the connection" nor "joined"
        back.send_json(type="quit")
        qtbot.waitUntil(lambda: ann.user_list.count() == 1, timeout=TIMEOUT_MS)
    assert _system_lines(ann) == [*before, "Bob left the chat"]  # a quit is a line at once


def test_a_drop_that_lasts_past_the_grace_period_shows_one_line(
    qtbot: QtBot, make_server: Callable[..., Server], window_at: WindowAt
) -> None:
    server = make_server()
    ann = window_at(server, "Ann")
    ann.session.reconnect_grace_s = 0.3
    bob = LineClient(server.address)
    bob.login("Bob")
    qtbot.waitUntil(lambda: ann.user_list.count() == 2, timeout=TIMEOUT_MS)
    before = _system_lines(ann)
    bob.close()
    qtbot.waitUntil(lambda: ann.user_list.count() == 1, timeout=TIMEOUT_MS)
    assert _system_lines(ann) == [*before, "Bob lost the connection"]
    assert not ann.session.find("#general").away  # type: ignore[union-attr]


class _Relay:
    """A TCP relay on 127.0.0.1 between the window and the server (TLS passes through
    untouched). ``cut_next_reply()``: the next bytes from the server are not delivered and
    that connection is cut, as when a Wi-Fi link dies just after a message went out."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut = threading.Event()
        self.cuts = 0
        self.connections = 0
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._accepting = threading.Thread(target=self._accept, name="relay-accept")
        self._accepting.start()

    def cut_next_reply(self) -> None:
        self.cut.set()

    def _accept(self) -> None:
        while True:
            try:
                inner, _ = self.listener.accept()
            except OSError:
                return
            outer = socket.create_connection(self.target)
            self._socks += [inner, outer]
            self.connections += 1
            for src, dst, from_server in ((inner, outer, False), (outer, inner, True)):
                thread = threading.Thread(
                    target=self._pump, args=(src, dst, from_server), name="relay-pump"
                )
                self._threads.append(thread)
                thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if from_server and data and self.cut.is_set():
                self.cut.clear()
                self.cuts += 1
                data = b""  # the reply is lost with the link
            if not data:
                for sock in (src, dst):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept() (close alone does not)
        except OSError:
            pass
        self.listener.close()
        self._accepting.join()
        for sock in self._socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in self._threads:
            thread.join()


def test_a_message_whose_echo_was_lost_is_resent_with_the_same_ref(
    qtbot: QtBot, make_server: Callable[..., Server]
) -> None:
    server = make_server()
    relay = _Relay(server.address)
    client = ChatClient(timing=FAST)
    window = MainWindow(client, None, MemorySettings(), sound=SilentSound())
    qtbot.addWidget(window)
    welcomes: list[object] = []
    settled: list[object] = []
    echoes: list[object] = []
    client.welcomed.connect(welcomes.append)
    client.sendSettled.connect(settled.append)
    client.messageReceived.connect(lambda m: echoes.append((len(welcomes), m.ref)))
    try:
        window.show()
        client.connect_to("127.0.0.1", relay.port, "Ann", fingerprint=server.fingerprint)
        qtbot.waitUntil(lambda: window.current_key == "#general", timeout=TIMEOUT_MS)
        conv = window.session.find("#general")
        assert conv is not None
        qtbot.waitUntil(lambda: not conv.history_pending, timeout=TIMEOUT_MS)
        relay.cut_next_reply()
        window.session.send("#general", "sent as the link died")
        ref = conv.model.pending()[0].ref
        qtbot.waitUntil(lambda: relay.cuts == 1, timeout=TIMEOUT_MS)

        def settled_by_its_echo() -> None:  # says what is missing if it never happens
            assert settled == [ref], (settled, len(welcomes), relay.connections, echoes)

        # The window reconnects through the relay, resumes, and sends it again, same ref:
        # the server's echo of that ref settles it.
        qtbot.waitUntil(settled_by_its_echo, timeout=TIMEOUT_MS)
        assert len(welcomes) == 2 and relay.connections == 2
        assert (2, ref) in echoes  # echoed on the second connection, with our ref
        assert conv.model.pending() == []
        assert "sent as the link died" in _texts(window)
        assert _stored(server, "sent as the link died") >= 1
    finally:
        window.close()
        relay.close()
