"""The web page in Chromium: joining a room with a password, mentions of me highlighted, and
notifications while the page is not looked at (only in a secure context; elsewhere the drawer
says so quietly).
"""

from __future__ import annotations

import re
import socket
from typing import TYPE_CHECKING, Any

from tests.helpers import T
from tests.test_web_client import (  # noqa: F401  (fixtures)
    CHROMIUM_ARGS,
    _chromium,
    _log_in,
    _texts,
    browser,
    make_server,
    phone,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


def test_a_room_with_a_password_is_joined_from_the_page(
    phone: Page,  # noqa: F811
    server: Any,
    connect: Any,
) -> None:
    from playwright.sync_api import expect

    host = connect("host", owner=server.owner_token)
    host.send_json(type="join", room="secret")
    host.expect("users", skip=("typing", "ping", "joined", "left"))
    host.send_json(type="room_settings", room="secret", password="hunter22")
    assert host.expect("ok", skip=("notice", "users", "joined"))["what"] == "room_settings"

    _log_in(phone, server, "phone")
    phone.get_by_role("button", name="Rooms and people").click()
    phone.get_by_label("Join or create a room").fill("secret")
    phone.get_by_label("Join or create a room").press("Enter")

    dialog = phone.get_by_role("dialog", name="Join # secret")
    expect(dialog).to_be_visible()
    field = dialog.get_by_label("Room password")
    field.fill("wrong guess")
    field.press("Enter")
    expect(dialog.locator(".form-error")).to_have_text("That password is not right.")
    expect(field).to_have_attribute("aria-invalid", "true")
    field.fill("hunter22")
    dialog.get_by_role("button", name="Join").click()

    expect(dialog).to_be_hidden()
    expect(phone.get_by_role("heading", name="# secret", exact=True)).to_be_visible()
    joined = host.expect(
        "joined",
        skip=("typing", "ping", "notice", "users", "joined"),
        where=lambda m: m["room"] == "secret",
    )
    assert (joined["room"], joined["name"]) == ("secret", "phone")
    box = phone.get_by_role("textbox", name="Message", exact=True)
    box.fill("in at last")
    box.press("Enter")
    said = host.expect("message", where=lambda m: m.get("room") == "secret")
    assert said["text"] == "in at last"


def _look_away(page: Page) -> Any:
    """Minimise the browser window for real (Playwright otherwise keeps every page focused)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Emulation.setFocusEmulationEnabled", {"enabled": False})
    window = cdp.send("Browser.getWindowForTarget")["windowId"]
    cdp.send(
        "Browser.setWindowBounds", {"windowId": window, "bounds": {"windowState": "minimized"}}
    )
    assert page.evaluate("document.hasFocus()") is False
    return cdp, window


def _eventually(page: Page, get: Any, ok: Any) -> Any:
    """Ask ``get()`` until ``ok`` holds for its answer (as qtbot.waitUntil): the page raises no
    event when the browser has shown a notification."""
    deadline = T(5) * 1000
    waited = 0
    while not ok(got := get()):
        assert waited < deadline, f"not in time; last answer: {got}"
        page.wait_for_timeout(50)
        waited += 50
    return got


def _notifications(page: Page) -> list[list[str]]:
    shown: list[list[str]] = page.evaluate(
        """async () => {
            const reg = await navigator.serviceWorker.ready;
            return (await reg.getNotifications()).map((n) => [n.title, n.body, n.tag]);
        }"""
    )
    return shown


def test_mentions_are_marked_and_notify_while_the_page_is_not_looked_at(
    phone: Page,  # noqa: F811
    server: Any,
    connect: Any,
) -> None:
    from playwright.sync_api import expect

    host, port = server.address
    phone.context.grant_permissions(["notifications"], origin=f"http://{host}:{port}")
    alice = connect("alice")
    _log_in(phone, server, "phone")
    phone.evaluate("navigator.serviceWorker.ready.then(() => true)")
    phone.get_by_role("button", name="Rooms and people").click()
    expect(phone.get_by_role("button", name="Notifications: on")).to_have_attribute(
        "aria-pressed", "true"
    )
    phone.get_by_role("button", name="Close").click()

    # While the page is looked at: a mention is marked, nothing pops up.
    alice.send_json(type="say", room="general", text="morning @Phone!")
    alice.send_json(type="say", room="general", text="@phonebook is not you")
    expect(_texts(phone, "@phonebook")).to_have_count(1)
    mention = phone.locator(".msg.mention")
    expect(mention).to_have_count(1)
    expect(mention.locator("mark.mention")).to_have_text("@Phone")
    expect(phone.locator("mark.mention")).to_have_count(1)
    assert _notifications(phone) == []
    expect(phone).to_have_title("Test chat")

    cdp, window = _look_away(phone)
    alice.send_json(type="say", room="general", text="chatter nobody needs to see")
    alice.send_json(type="say", room="general", text="@phone are you there?")
    expect(_texts(phone, "are you there")).to_have_count(1)
    expect(phone).to_have_title("(2) Test chat")
    wanted = ["alice mentioned you in # general", "@phone are you there?", "#general"]
    shown = _eventually(phone, lambda: _notifications(phone), lambda got: wanted in got)
    # One per conversation (the same tag): the mention replaced the room's first message.
    assert shown == [wanted]

    # Back to the page: read.
    cdp.send("Browser.setWindowBounds", {"windowId": window, "bounds": {"windowState": "normal"}})
    phone.bring_to_front()
    phone.evaluate("window.dispatchEvent(new FocusEvent('focus'))")
    expect(phone).to_have_title("Test chat")
    cdp.detach()


def test_without_a_secure_context_the_drawer_says_notifications_cannot_work(
    browser: Browser,  # noqa: F811
    make_server: Any,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    srv = make_server()
    port = srv.port
    # This computer's .local name (one the server answers /ws for) is an ordinary, not secure,
    # http:// origin, as http://<LAN address> is; the resolver maps it to loopback, so no
    # packet leaves the machine.
    local_name = f"{socket.gethostname().split('.')[0].lower()}.local"
    rules = f"--host-resolver-rules=MAP {local_name} 127.0.0.1"
    chromium = browser.browser_type.launch(
        executable_path=_chromium(), args=[*CHROMIUM_ARGS, rules], timeout=T(30) * 1000
    )
    try:
        page = chromium.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(T(5) * 1000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"http://{local_name}:{port}/")
        assert page.evaluate("window.isSecureContext") is False
        page.get_by_label("Your name").fill("laptop")
        page.get_by_role("button", name="Join the chat").click()
        expect(page.get_by_role("heading", name="# general", exact=True)).to_be_visible()
        expect(page.locator("#notify-note")).to_have_text(
            re.compile(r"Notifications need a secure connection \(https://\)")
        )
        expect(page.locator("#notify-button")).to_be_hidden()
        assert errors == []
    finally:
        chromium.close()
