"""The phone page says why it is not connected (the server stopped the chat, closed the
connection, refused it), and its invitation box ends the sentence before the fingerprint
block instead of leaving a lone "." under it. In Chromium, as tests/test_web_client.py."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.test_web_client import _log_in, browser, make_server, phone  # noqa: F401

if TYPE_CHECKING:
    from playwright.sync_api import Page


def test_the_banner_says_why_the_page_is_not_connected(
    phone: Page,  # noqa: F811
    make_server: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    server = make_server()
    _log_in(phone, server, "pia")
    banner = phone.locator("#banner-text")
    for member in server.hub.members():  # the server drops the connection
        if member.name == "pia":
            member.abort("disconnected")
    expect(banner).to_contain_text("Connection lost: the server closed the connection.")
    expect(phone.locator("#banner")).to_be_hidden()  # back, resumed
    server.close()  # the host stops the chat: `closing`, then nobody answers at that port
    expect(banner).to_contain_text("Connection lost: the server stopped the chat.")
    phone.screenshot(path=str(tmp_path / "stopped.png"))
    expect(banner).to_contain_text("Not connected: the connection was refused. Trying again in")
    phone.screenshot(path=str(tmp_path / "refused.png"))


def test_the_invitation_ends_its_sentence_before_the_fingerprint(
    phone: Page,  # noqa: F811
    make_server: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    server = make_server()
    host, port = server.address
    phone.goto(f"http://{host}:{port}/#fp={server.fingerprint}")
    fingerprint = phone.locator("code.fingerprint")
    expect(fingerprint).to_be_visible()
    # The fingerprint shows as a block: whatever follows it in its line sits alone under it.
    assert fingerprint.evaluate("el => el.nextSibling === null")
    assert "fingerprint is:" in fingerprint.evaluate("el => el.parentElement.textContent")
    phone.screenshot(path=str(tmp_path / "invite.png"))
