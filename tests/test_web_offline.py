"""The web page without a connection, in Chromium: messages typed offline, the installable page
and its service worker, and a server at its connection cap ("the chat is full").

Fixtures and helpers come from :mod:`tests.test_web_client` (Debian's chromium, never
``playwright install``).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from tests.helpers import LineClient, T
from tests.test_web_client import _log_in, _texts, browser, make_server, phone  # noqa: F401

if TYPE_CHECKING:
    from playwright.sync_api import Page

SHELL = {
    "/",
    "/app.js",
    "/state.js",
    "/connection.js",
    "/messages.js",
    "/panels.js",
    "/presence.js",
    "/outbox.js",
    "/alerts.js",
    "/uploads.js",
    "/filecards.js",
    "/invite.js",
    "/style.css",
    "/files.css",
    "/icon.svg",
    "/icon-192.png",
    "/icon-512.png",
    "/manifest.webmanifest",
}


def _worker_ready(page: Page) -> None:
    """Wait until the service worker controls the page (it claims it on activation)."""
    controlled = page.evaluate(
        """() => navigator.serviceWorker.controller !== null || new Promise((resolve) =>
            navigator.serviceWorker.addEventListener("controllerchange", () => resolve(true)))"""
    )
    assert controlled


def _history(srv: Any, room: str = "general") -> list[str]:
    with LineClient(srv.address) as reader:
        reader.login("reader")
        reader.send_json(type="history", room=room, limit=100)
        return [m["text"] for m in reader.expect("history")["messages"]]


def test_a_message_typed_offline_is_sent_once_when_the_server_is_back(
    phone: Page,  # noqa: F811
    make_server: Any,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    srv = make_server()
    port = srv.port
    _log_in(phone, srv, "phone")
    box = phone.get_by_role("textbox", name="Message", exact=True)
    box.fill("before")
    box.press("Enter")
    expect(_texts(phone, "before")).to_have_count(1)
    expect(phone.locator(".msg.pending")).to_have_count(0)

    srv.close()
    expect(phone.locator("#banner")).to_be_visible()
    box.fill("typed while the server was down")
    box.press("Enter")
    pending = phone.locator(".msg.pending")
    expect(pending).to_have_count(1)
    expect(pending.locator(".text")).to_have_text("typed while the server was down")
    expect(pending.locator(".stamp")).to_have_text("Not sent yet")
    expect(box).to_have_value("")  # taken, not left in the box with a toast

    # The same port and data: the page resumes its session and sends the message, once.
    back = make_server(port=port)
    phone.evaluate("window.dispatchEvent(new Event('online'))")  # as a phone back on Wi-Fi
    expect(phone.locator("#banner")).to_be_hidden(timeout=T(20) * 1000)
    expect(phone.locator(".msg.pending")).to_have_count(0)
    expect(_texts(phone, "typed while the server was down")).to_have_count(1)
    assert _history(back).count("typed while the server was down") == 1

    # Another drop and resume: nothing already confirmed is sent again.
    for member in back.hub.members():
        if member.name == "phone":
            member.abort("disconnected")
    expect(phone.locator("#banner")).to_be_visible()
    expect(phone.locator("#banner")).to_be_hidden(timeout=T(20) * 1000)
    box.fill("after the second drop")
    box.press("Enter")
    expect(_texts(phone, "after the second drop")).to_have_count(1)
    history = _history(back)
    assert history.count("typed while the server was down") == 1
    assert history.count("before") == 1
    expect(_texts(phone, "typed while the server was down")).to_have_count(1)


def test_the_page_is_installable_and_opens_without_the_server(
    phone: Page,  # noqa: F811
    make_server: Any,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    srv = make_server()
    _log_in(phone, srv, "phone")
    _worker_ready(phone)
    cdp = phone.context.new_cdp_session(phone)
    errors = cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
    # Playwright's contexts are incognito-like, which no page can change.
    assert [e["errorId"] for e in errors if e["errorId"] != "in-incognito"] == []
    manifest = cdp.send("Page.getAppManifest")
    assert manifest["errors"] == []
    cdp.detach()
    host, port = srv.address
    scope = phone.evaluate("navigator.serviceWorker.getRegistration().then((r) => r.scope)")
    assert scope == f"http://{host}:{port}/"  # the whole page, from /sw.js at the root

    # The worker keeps the shell and nothing else: no messages, no socket, no probes.
    kept = phone.evaluate(
        """async () => {
            const cache = await caches.open("desktop-chat-shell");
            return (await cache.keys()).map((r) => new URL(r.url).pathname + new URL(r.url).search);
        }"""
    )
    assert set(kept) == SHELL

    # Without the server the page still opens (from the worker) and says it is not connected.
    srv.close()
    phone.reload()
    expect(phone.locator("#chat")).to_be_visible()
    expect(phone.locator("#banner-text")).to_contain_text("Not connected")
    expect(phone.get_by_role("heading", name="# general", exact=True)).to_be_visible()


def _wait_until(condition: Any, timeout: float = 5.0) -> None:
    """Poll ``condition`` (no event to wait for: a count on the server) until it holds."""
    done = threading.Event()
    deadline = time.monotonic() + T(timeout)
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        done.wait(0.02)


def test_a_full_server_is_explained(
    phone: Page,  # noqa: F811
    make_server: Any,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    cap = 8  # the page itself loads over several connections at once
    srv = make_server(max_connections=cap)
    host, port = srv.address
    phone.goto(f"http://{host}:{port}/")
    _worker_ready(phone)  # the worker has fetched the shell too
    _wait_until(lambda: srv.connection_count() == 0)  # every page request has ended
    inside = [LineClient(srv.address) for _ in range(cap)]
    try:
        for n, client in enumerate(inside):
            client.login(f"user{n}")
        phone.get_by_label("Your name").fill("phone")
        phone.get_by_role("button", name="Join the chat").click()
        expect(phone.locator("#login-error")).to_have_text(
            "The chat is full right now. Try again in a moment."
        )
    finally:
        for client in inside:
            client.close()
    # Room again: the same button works.
    _wait_until(lambda: srv.connection_count() == 0)
    phone.get_by_role("button", name="Join the chat").click()
    expect(phone.get_by_role("heading", name="# general", exact=True)).to_be_visible()


def test_a_queue_over_the_rate_limit_is_delivered_whole_and_in_order(
    phone: Page,  # noqa: F811
    make_server: Any,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    srv = make_server(rate_burst=2, rate_per_sec=2)
    _log_in(phone, srv, "phone")
    phone.context.set_offline(True)
    for member in srv.hub.members():
        if member.name == "phone":
            member.abort("disconnected")
    expect(phone.locator("#banner")).to_be_visible()
    box = phone.get_by_role("textbox", name="Message", exact=True)
    typed = [f"queued {n}" for n in range(1, 7)]
    for text in typed:
        box.fill(text)
        box.press("Enter")
    expect(phone.locator(".msg.pending.queued")).to_have_count(6)

    # Back: the queue goes at once, the server refuses what is over its limit, the page sends
    # that again a little later; in the end each arrives once, in the order typed.
    phone.context.set_offline(False)
    expect(phone.locator(".msg.pending")).to_have_count(0, timeout=T(30) * 1000)
    expect(phone.locator("#toast")).to_be_hidden()
    shown = phone.locator("#messages .log:visible .msg .text").all_inner_texts()
    assert shown == typed
    assert _history(srv) == typed


def test_a_queued_message_survives_a_reload_while_offline(
    phone: Page,  # noqa: F811
    make_server: Any,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    srv = make_server()
    _log_in(phone, srv, "phone")
    _worker_ready(phone)
    phone.context.set_offline(True)
    for member in srv.hub.members():
        if member.name == "phone":
            member.abort("disconnected")
    box = phone.get_by_role("textbox", name="Message", exact=True)
    box.fill("written in a tunnel")
    box.press("Enter")
    expect(phone.locator(".msg.pending.queued")).to_have_count(1)

    phone.reload()  # offline: the page comes from the service worker, the queue from storage
    expect(phone.locator("#banner-text")).to_contain_text("Not connected")
    expect(phone.locator(".msg.pending.queued .text")).to_have_text("written in a tunnel")

    phone.context.set_offline(False)
    phone.evaluate("window.dispatchEvent(new Event('online'))")
    expect(phone.locator(".msg.pending")).to_have_count(0, timeout=T(20) * 1000)
    expect(_texts(phone, "written in a tunnel")).to_have_count(1)
    assert _history(srv).count("written in a tunnel") == 1
