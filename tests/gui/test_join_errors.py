"""What the start screen says when joining goes wrong: what actually happened, under the field
concerned."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pytestqt.qtbot import QtBot

from desktop_chat.app import AppController
from desktop_chat.ui.start_dialog import StartDialog
from tests.gui.conftest import TIMEOUT_MS


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"a web page")

    def log_message(self, format: str, *args: object) -> None:
        return  # quiet tests


@pytest.fixture
def web_server() -> Iterator[int]:
    """A plain HTTP server on 127.0.0.1 (some other program on the port typed); its port."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=httpd.serve_forever, name="web-server")
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _join(qtbot: QtBot, controller: AppController, address: str) -> StartDialog:
    dialog = controller.show_start()
    qtbot.addWidget(dialog)
    dialog.set_mode("join")
    dialog.name_edit.setText("Ann")
    dialog.address_combo.setEditText(address)
    dialog.submit()
    qtbot.waitUntil(lambda: bool(dialog.error_text("address")), timeout=TIMEOUT_MS)
    return dialog


def test_an_unknown_host_name_says_no_such_computer(
    qtbot: QtBot, controller: AppController
) -> None:
    dialog = _join(qtbot, controller, "no-such-host.invalid:5151")
    text = dialog.error_text("address")
    assert text.startswith("No computer called “no-such-host.invalid” was found")
    assert "Nobody answered" not in text


def test_a_web_server_on_the_port_is_named_as_such(
    qtbot: QtBot, controller: AppController, web_server: int
) -> None:
    dialog = _join(qtbot, controller, f"127.0.0.1:{web_server}")
    text = dialog.error_text("address")
    assert text.startswith(f"127.0.0.1:{web_server} is a web server, not a Desktop Chat")
    assert "encryption" not in text
