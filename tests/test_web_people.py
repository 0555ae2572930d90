"""Who comes and goes, as the web page shows it (Chromium): a dropped connection greys the
person at once and says so in the room only after a grace period; a reload within it shows the
others nothing; join and leave lines carry their time and are still there after a reload.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.helpers import LineClient, T
from tests.test_web_client import PHONE, _log_in, _texts, browser, make_server, phone  # noqa: F401

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture
def second(browser: Browser) -> Iterator[Page]:  # noqa: F811
    """Another person's phone: its own context (its own storage)."""
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, locale="en-GB")
    context.set_default_timeout(T(5) * 1000)
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield page
        assert errors == [], f"the page's script failed: {errors}"
    finally:
        context.close()


def _lines(page: Page) -> Any:
    return page.locator("#messages .log:visible .event .event-text")


def _people(page: Page) -> Any:
    return page.locator("#people-list li .person-name")


def test_a_reload_shows_the_others_no_leave_or_join_line(
    phone: Page,  # noqa: F811
    second: Page,
    server: Any,
) -> None:
    from playwright.sync_api import expect

    _log_in(phone, server, "ann")
    _log_in(second, server, "bob")
    expect(_lines(phone)).to_have_text(["bob joined"])
    second.get_by_role("textbox", name="Message", exact=True).fill("first")
    second.get_by_role("textbox", name="Message", exact=True).press("Enter")
    expect(_texts(phone, "first")).to_have_count(1)

    second.reload()
    expect(second.locator("#banner")).to_be_hidden()
    expect(second.get_by_role("heading", name="# general", exact=True)).to_be_visible()
    box = second.get_by_role("textbox", name="Message", exact=True)
    box.fill("back after the reload")
    box.press("Enter")
    expect(_texts(phone, "back after the reload")).to_have_count(1)

    expect(_lines(phone)).to_have_text(["bob joined"])  # nothing about the reload
    expect(phone.locator("#people-list li.away")).to_have_count(0)
    expect(phone.locator("#conv-sub")).to_have_text("2 people")


def test_a_drop_greys_at_once_and_is_told_once_after_the_grace(
    phone: Page,  # noqa: F811
    make_server: Any,  # noqa: F811
    connect: Any,
) -> None:
    from playwright.sync_api import expect

    grace_ms = int(T(1.5) * 1000)
    phone.context.add_init_script(
        f'localStorage.setItem("desktop-chat:away-grace-ms", "{grace_ms}")'
    )
    srv = make_server()
    _log_in(phone, srv, "ann")
    bob = connect("bob", srv=srv)
    expect(_lines(phone)).to_have_text(["bob joined"])
    phone.get_by_role("button", name="People in this room").click()
    expect(_people(phone)).to_have_text(["ann (you)", "bob"])

    bob.close()  # the connection drops: `left` with reason disconnected
    away = phone.locator("#people-list li.away")
    expect(away.locator(".person-name")).to_have_text("bob")
    expect(away.locator(".person-note")).to_have_text("reconnecting…")
    assert _lines(phone).all_inner_texts() == ["bob joined"]  # not yet: within the grace

    expect(_lines(phone)).to_have_text(["bob joined", "bob lost their connection"])
    expect(_people(phone)).to_have_text(["ann (you)"])

    # Others' comings and goings are told at once; the drop is still told only once.
    with LineClient(srv.address) as carol:
        carol.login("carol")
        expect(_lines(phone)).to_have_text(
            ["bob joined", "bob lost their connection", "carol joined"]
        )
        carol.send_json(type="part", room="general")
        expect(_lines(phone)).to_have_text(
            ["bob joined", "bob lost their connection", "carol joined", "carol left"]
        )


def test_join_and_leave_lines_have_a_time_and_survive_a_reload(
    phone: Page,  # noqa: F811
    server: Any,
    connect: Any,
) -> None:
    from playwright.sync_api import expect

    _log_in(phone, server, "ann")
    bob = connect("bob")
    expect(_lines(phone)).to_have_text(["bob joined"])
    bob.send_json(type="say", room="general", text="hello, then gone")
    bob.send_json(type="part", room="general")
    expect(_lines(phone)).to_have_text(["bob joined", "bob left"])
    times = phone.locator("#messages .log:visible .event time.event-time")
    expect(times).to_have_count(2)
    assert all(t.get_attribute("datetime") for t in times.all())
    assert all(":" in t for t in times.all_inner_texts())  # a clock time, e.g. 14:05

    phone.reload()
    expect(_texts(phone, "hello, then gone")).to_have_count(1)
    expect(_lines(phone)).to_have_text(["bob joined", "bob left"])
    # In their place by time: the message came between the two lines.
    order = phone.locator("#messages .log:visible > li:is(.msg, .event)")
    expect(order).to_have_count(3)
    kinds = order.evaluate_all("items => items.map((li) => li.className.split(' ')[0])")
    assert kinds == ["event", "msg", "event"]
