"""The phone page shows speed and time left for an upload, measured over the last seconds.

The page's clock is Playwright's (``page.clock``): each 64 KiB piece is let through one
simulated second after the previous one, so the page must read 64.0 KB/s and the time left of
the pieces still to go, whatever the real speed of this machine.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.helpers import wait_until
from tests.test_web_client import _log_in, browser, make_server, phone  # noqa: F401
from tests.test_web_files import _small_chunks

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route


def test_an_upload_shows_its_speed_and_time_left(
    phone: Page,  # noqa: F811
    server: Any,
    connect: Any,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    alice = connect("alice")
    _log_in(phone, server, "phone")
    alice.expect("joined")
    phone.clock.install()
    # Time stands still but for run_for(): a shade later than now, paused.
    phone.clock.pause_at(phone.evaluate("Date.now()") + 1000)
    chunk = 64 * 1024
    _small_chunks(phone, chunk)
    held: list[Route] = []
    free = [False]

    def hold_patches(route: Route) -> None:
        if route.request.method == "PATCH" and not free[0]:
            held.append(route)  # let through by the test, one simulated second apart
        else:
            route.continue_()

    phone.route("**/files/uploads/*", hold_patches)
    phone.set_input_files(
        "#file-input",
        files=[{"name": "slow.bin", "mimeType": "", "buffer": os.urandom(16 * chunk)}],
    )
    meta = phone.locator(".msg.upload .file-meta")
    for i in range(4):
        # evaluate() lets Playwright deliver the page's next request to hold_patches
        wait_until(lambda i=i: phone.evaluate("0") == 0 and len(held) > i, 5, "the next piece")
        phone.clock.run_for(1000)
        held[i].continue_()
        expect(meta).to_contain_text(f"{(i + 1) * 100 // 16}% ·")
    # 4 pieces in 4 s (within the 3 s window: 3 pieces in 3 s): 64 KB/s, 12 pieces to go.
    expect(meta).to_have_text(
        re.compile(r"^25% · 256\.0 KB of 1\.0 MB · 64\.0 KB/s, 1[23] s left$")
    )
    phone.screenshot(path=str(tmp_path / "upload-speed.png"))
    free[0] = True  # the rest goes through, and the upload ends as a file card
    phone.clock.resume()
    for route in held[4:]:
        route.continue_()
    # Playwright runs hold_patches only while the test waits on the page: wait there first.
    expect(phone.locator(".msg.upload")).to_have_count(0)
    msg = alice.expect("message")
    assert msg["file"]["name"] == "slow.bin"
