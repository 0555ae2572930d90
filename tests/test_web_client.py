"""The web client: its files over HTTP, and the page itself in a real browser.

The browser is Debian's ``chromium`` (``apt-get install chromium``; CI installs it in
``.ci/run``) driven by Playwright for Python. Playwright's own browser downloads are never used
(``playwright install`` is not needed): the executable is given explicitly. Without chromium
these tests fail, saying so, rather than skip: a web client nobody ran is not tested.

Set ``DESKTOP_CHAT_CHROMIUM`` to use another Chromium or Chrome binary, and
``DESKTOP_CHAT_WEB_SCREENSHOT=docs/screenshots/web.png`` to refresh the screenshot in the docs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from desktop_chat.net.server.http import CSP, WEB_FILES
from tests.helpers import LineClient, T

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def make_server(make_server: Any) -> Any:
    """Servers for browser tests wait a whole second before taking a silent connection for a
    terminal user: Chromium opens connections ahead of need, and a busy machine may pause."""

    def make(**overrides: Any) -> Any:
        overrides.setdefault("sniff_timeout", T(1.0))
        return make_server(**overrides)

    return make


# ---- the files, over plain HTTP ------------------------------------------------------------


def _http(server: Any, request: bytes) -> tuple[bytes, dict[str, str], bytes]:
    with LineClient(server.address) as c:
        c.send(request)
        raw = c.assert_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def test_web_files_are_served_with_their_type_and_a_strict_policy(server: Any) -> None:
    for path, (_, ctype) in WEB_FILES.items():
        status, headers, body = _http(server, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert status == b"HTTP/1.1 200 OK", path
        assert headers["content-type"] == ctype
        assert headers["content-security-policy"] == CSP
        assert headers["cache-control"] == "no-cache"
        assert headers["x-content-type-options"] == "nosniff"
        assert int(headers["content-length"]) == len(body) > 0
    # The page talks to its own server only: connect-src 'self' (its ws: origin included).
    assert "connect-src 'self';" in CSP and "ws:" not in CSP
    _, _, page = _http(server, b"GET /?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"<title>Test chat</title>" in page
    assert b"{{" not in page


def test_a_hostile_server_title_stays_text(make_server: Any) -> None:
    srv = make_server(title="<script>alert(1)</script> {{port}}")
    _, _, page = _http(srv, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"<title>&lt;script&gt;alert(1)&lt;/script&gt; {{port}}</title>" in page


def test_head_and_paths_outside_the_allow_list(server: Any) -> None:
    status, headers, body = _http(server, b"HEAD /app.js HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == b"HTTP/1.1 200 OK"
    assert int(headers["content-length"]) > 1000
    assert body == b""
    for path in (
        "/../pyproject.toml",
        "/%2e%2e/http.py",
        "/web/app.js",
        "/desktop_chat/web/app.js",
        "/__init__.py",
        "//app.js",
        "/app.js/",
        "/APP.JS",
        "/index.html%00.js",
    ):
        status, headers, _ = _http(server, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert status == b"HTTP/1.1 404 Not Found", path
        assert headers["content-security-policy"] == CSP
    status, _, _ = _http(server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 405")
    # /files is served now (tests/test_files.py), to this server's own Host only.
    status, _, _ = _http(server, b"GET /files/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 403")


# ---- the page, in chromium ------------------------------------------------------------------


def _chromium() -> str:
    wanted = os.environ.get("DESKTOP_CHAT_CHROMIUM")
    found = wanted or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found or not Path(found).exists():
        pytest.fail(
            "the web client tests need Chromium: on Debian/Ubuntu "
            "`apt-get install --no-install-recommends chromium` (CI does it in .ci/run), or set "
            "DESKTOP_CHAT_CHROMIUM to a Chromium/Chrome executable. "
            "Do not run `playwright install`."
        )
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install -e '.[dev]' (never `playwright install`)")
    executable = _chromium()
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, timeout=T(30) * 1000
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    """A fresh phone-sized page (its own storage) that fails the test on any alert()."""
    from playwright.sync_api import expect

    context = browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="en-GB"
    )
    context.set_default_timeout(T(5) * 1000)
    expect.set_options(timeout=T(5) * 1000)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "console",
        lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    try:
        yield page
        assert dialogs == [], f"the page ran a dialog: {dialogs}"
        assert errors == [], f"the page's script failed: {errors}"
    finally:
        context.close()


def _log_in(page: Page, server: Any, name: str) -> None:
    from playwright.sync_api import expect

    host, port = server.address
    response = page.goto(f"http://{host}:{port}/")
    assert response is not None
    assert response.headers["content-security-policy"] == CSP
    page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Join the chat").click()
    expect(page.get_by_role("heading", name="# general", exact=True)).to_be_visible()


def _texts(page: Page, text: str) -> Any:
    return page.locator("#messages .msg:visible .text").filter(has_text=text)


def test_page_chats_with_a_json_client(
    phone: Page, make_server: Any, connect: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    server = make_server(ping_interval=T(0.5))  # the page must answer the server's pings
    alice = connect("alice", srv=server)
    with phone.expect_websocket() as opened:
        _log_in(phone, server, "phone")
    ws = opened.value
    assert alice.expect("joined")["name"] == "phone"
    expect(phone.locator("#conv-sub")).to_have_text("2 people")

    box = phone.get_by_role("textbox", name="Message", exact=True)
    box.fill("hello from the phone")
    box.press("Enter")
    said = alice.expect("message")
    assert (said["from"], said["room"], said["text"]) == (
        "phone",
        "general",
        "hello from the phone",
    )
    expect(box).to_have_value("")

    alice.send_json(type="say", room="general", text="hi phone")
    alice.send_json(type="say", room="general", text=HOSTILE)
    expect(_texts(phone, "hi phone")).to_have_count(1)
    hostile = _texts(phone, "onerror")
    expect(hostile).to_have_text(HOSTILE)  # shown literally, as text
    expect(phone.locator("#messages img")).to_have_count(0)

    # Join lines, an action, and the typing indicator.
    bob = connect("bob", srv=server)
    expect(phone.locator(".event:visible .event-text").last).to_have_text("bob joined")
    bob.send_json(type="say", room="general", text="evening all! who's bringing snacks?")
    bob.send_json(type="say", room="general", text="waves", me=True)
    expect(_texts(phone, "waves")).to_have_text("bob waves")
    alice.send_json(type="say", room="general", text="@phone are you bringing the crisps?")
    expect(phone.locator(".msg.mention mark.mention")).to_have_text("@phone")
    alice.send_json(type="typing", room="general")
    expect(phone.locator("#typing")).to_have_text("alice is typing…")
    _screenshot(phone, tmp_path)

    # A private conversation: tap alice in the people list.
    phone.get_by_role("button", name="People in this room").click()
    phone.get_by_role("button", name="Message alice privately").click()
    expect(phone.get_by_role("heading", name="alice", exact=True)).to_be_visible()
    box.fill("just for you")
    box.press("Enter")
    dm = alice.expect("message", where=lambda m: m.get("to") == "alice")
    assert (dm["from"], dm["text"]) == ("phone", "just for you")
    expect(_texts(phone, "just for you")).to_have_count(1)

    # After half a second of quiet the server pings; the page answers with the same n.
    pong = ws.wait_for_event("framesent", predicate=lambda payload: '"pong"' in str(payload))
    assert '"n"' in str(pong)


def test_page_resumes_after_losing_its_connection(phone: Page, server: Any, connect: Any) -> None:
    from playwright.sync_api import expect

    alice = connect("alice")
    _log_in(phone, server, "phone")
    alice.expect("joined")
    alice.send_json(type="say", room="general", text="before the drop")
    expect(_texts(phone, "before the drop")).to_have_count(1)

    # Offline in the browser, then the server drops the connection: the page cannot come back
    # until we say so, so the next message can only reach it through resume.
    phone.context.set_offline(True)
    for member in server.hub.members():
        if member.name == "phone":
            member.abort("disconnected")
    expect(phone.locator("#banner")).to_contain_text("Reconnecting")
    alice.send_json(type="say", room="general", text="while you were away")
    alice.expect("message", where=lambda m: m["text"] == "while you were away")
    phone.context.set_offline(False)

    expect(_texts(phone, "while you were away")).to_have_count(1)
    expect(phone.locator("#banner")).to_be_hidden()
    expect(_texts(phone, "before the drop")).to_have_count(1)  # nothing twice

    alice.send_json(type="say", room="general", text="and live again")
    expect(_texts(phone, "and live again")).to_have_count(1)

    # A reload comes back as the same session (no name prompt) and shows the history.
    phone.reload()
    expect(_texts(phone, "and live again")).to_have_count(1)
    expect(_texts(phone, "before the drop")).to_have_count(1)
    expect(phone.locator("#login")).to_be_hidden()


def _screenshot(page: Page, tmp_path: Path) -> None:
    """Pictures of the conversation on a phone and on a desktop (1280x800), light and dark;
    the phone's are kept in the docs when asked.

    Each must fit its width: nothing may scroll sideways.
    """
    target = Path(os.environ.get("DESKTOP_CHAT_WEB_SCREENSHOT") or tmp_path / "web.png")
    wide = tmp_path / "web-wide.png"
    for size, base in ((PHONE, target), (DESKTOP, wide)):
        page.set_viewport_size(size)
        for scheme, path in (("light", base), ("dark", base.with_stem(base.stem + "-dark"))):
            page.emulate_media(color_scheme=scheme)
            assert page.evaluate("document.documentElement.scrollWidth") <= size["width"]
            page.screenshot(path=str(path))
    page.set_viewport_size(PHONE)
    page.emulate_media(color_scheme="light")


def test_page_explains_where_passwords_may_go(phone: Page, make_server: Any) -> None:
    """Over http:// from elsewhere, a password is refused: the page gives the https link and
    the fingerprint to compare."""
    from playwright.sync_api import expect

    server = make_server(trust_loopback=False, password="let me in")
    host, port = server.address
    phone.goto(f"http://{host}:{port}/")
    phone.get_by_label("Your name").fill("phone")
    phone.get_by_role("button", name="Join the chat").click()  # told before typing one
    error = phone.locator("#login-error")
    expect(error).to_contain_text(f"https://{host}:{port}/")
    expect(error).to_contain_text(server.certificate.fingerprint_colons)
    link = error.get_by_role("link", name="Open the secure page")
    expect(link).to_have_attribute("href", f"https://{host}:{port}/")
