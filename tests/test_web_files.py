"""Sharing files from the web page, in Chromium: tus uploads written in the page's own script
(picked, cancelled, resumed after a reload), cards with thumbnails shown from blob: URLs under
the strict CSP, downloads with progress saved under a safe name, and the invitation's
fingerprint on the name form.

Every upload and download is real HTTP to a real server on 127.0.0.1; the other side is a JSON
client (:class:`tests.helpers.LineClient`) and the standard library's tus client
(:mod:`tests.tus_client`). Fixtures come from :mod:`tests.test_web_client` (Debian's
chromium, never ``playwright install``). ``DESKTOP_CHAT_WEB_FILES_SCREENSHOT=
docs/screenshots/web-files.png`` refreshes the picture in the README.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desktop_chat.net.protocol.invite import comparison_code
from desktop_chat.net.server.http import CSP
from tests import test_web_client as web
from tests.helpers import T, wait_until
from tests.tus_client import FilesClient

# The browser fixtures of the page's tests (Debian's chromium), shared.
browser, phone, make_server = web.browser, web.phone, web.make_server
PHONE, DESKTOP, _log_in = web.PHONE, web.DESKTOP, web._log_in

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route


def real_png(width: int, height: int, rgb: tuple[int, int, int] = (80, 130, 220)) -> bytes:
    """A PNG that browsers can decode: one colour, a lighter band in the middle."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    light = tuple(min(255, c + 90) for c in rgb)
    rows = b"".join(
        b"\x00" + bytes(light if height // 3 <= y < 2 * height // 3 else rgb) * width
        for y in range(height)
    )
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _files(srv: Any, client: Any) -> FilesClient:
    return FilesClient(srv.address, client.welcome_session)


def _card(page: Page, name: str) -> Any:
    return page.locator("#messages .filecard:not(.uploading):visible").filter(
        has=page.locator(".file-name", has_text=name)
    )


def _starts(prefix: str) -> Any:
    return re.compile("^" + re.escape(prefix))


def _uploads_dir(data_dir: Path) -> Path:
    return data_dir / "files" / "uploads"


def _small_chunks(page: Page, size: int) -> None:
    page.evaluate(f"localStorage.setItem('desktop-chat:upload-chunk-bytes', '{size}')")


# ---- uploads from the page ------------------------------------------------------------------


def test_page_uploads_a_picked_file_intact(phone: Page, server: Any, connect: Any) -> None:
    from playwright.sync_api import expect

    alice = connect("alice")
    _log_in(phone, server, "phone")
    alice.expect("joined")
    _small_chunks(phone, 256 * 1024)  # several PATCHes, each answered with the new offset
    data = os.urandom(1_100_000)
    phone.set_input_files(
        "#file-input",
        files=[
            {"name": "notes ünïcode.bin", "mimeType": "application/octet-stream", "buffer": data}
        ],
    )
    msg = alice.expect("message", timeout=20)
    f = msg["file"]
    assert (msg["from"], msg["room"], msg["text"]) == ("phone", "general", "")
    assert f["name"] == "notes ünïcode.bin" and f["size"] == len(data)
    assert f["sha256"] == hashlib.sha256(data).hexdigest()
    got = _files(server, alice).request("GET", f"/files/{f['id']}")
    assert got.status == 200 and hashlib.sha256(got.body).hexdigest() == f["sha256"]
    # The page's own card replaces its upload row; nothing is left waiting.
    card = _card(phone, "notes ünïcode.bin")
    expect(card).to_have_count(1)
    expect(card.locator(".file-meta")).to_have_text("1.0 MB")
    expect(phone.locator(".msg.upload")).to_have_count(0)
    assert phone.evaluate("localStorage.getItem('desktop-chat:uploads')") is None


def test_dropped_pasted_and_photographed_files_are_sent(
    phone: Page, server: Any, connect: Any
) -> None:
    """Dropped on the conversation (a desktop browser), pasted into the message box (in a
    private conversation), and taken with the camera button."""
    from playwright.sync_api import expect

    alice = connect("alice")
    _log_in(phone, server, "phone")
    alice.expect("joined")
    make = "([name, text]) => { const d = new DataTransfer(); "
    make += "d.items.add(new File([text], name, {type: 'text/plain'})); return d; }"
    dropped = phone.evaluate_handle(make, ["dropped.txt", "dropped on the page"])
    phone.dispatch_event("#conversation", "dragenter", {"dataTransfer": dropped})
    expect(phone.locator("#drop-hint")).to_be_visible()
    phone.dispatch_event("#conversation", "drop", {"dataTransfer": dropped})
    expect(phone.locator("#drop-hint")).to_be_hidden()
    msg = alice.expect("message")
    assert msg["room"] == "general" and msg["file"]["name"] == "dropped.txt"
    assert msg["file"]["sha256"] == hashlib.sha256(b"dropped on the page").hexdigest()

    phone.get_by_role("button", name="People in this room").click()
    phone.get_by_role("button", name="Message alice privately").click()
    expect(phone.get_by_role("heading", name="alice", exact=True)).to_be_visible()
    phone.evaluate(
        "async () => { const png = await (await fetch('icon-192.png')).blob(); "
        "const d = new DataTransfer(); d.items.add(new File([png], 'image.png', "
        "{type: 'image/png'})); document.getElementById('text').dispatchEvent("
        "new ClipboardEvent('paste', {clipboardData: d, bubbles: true, cancelable: true})); }"
    )
    dm = alice.expect("message", where=lambda m: m.get("to") == "alice")
    assert dm["from"] == "phone" and dm["file"]["mime"] == "image/png"
    expect(_card(phone, "image.png").locator("img")).to_have_attribute("src", _starts("blob:"))

    camera = phone.locator("#camera-input")
    assert camera.get_attribute("accept") == "image/*"
    assert camera.get_attribute("capture") == "environment"
    photo = real_png(40, 30)
    with phone.expect_file_chooser() as chooser:
        phone.get_by_role("button", name="Take a photo").click()
    chooser.value.set_files(files=[{"name": "photo.png", "mimeType": "image/png", "buffer": photo}])
    shot = alice.expect("message", where=lambda m: m.get("to") == "alice")
    assert shot["file"]["sha256"] == hashlib.sha256(photo).hexdigest()
    assert (shot["file"]["width"], shot["file"]["height"]) == (40, 30)


def test_a_refused_upload_says_why_until_dismissed(
    phone: Page, make_server: Any, connect: Any
) -> None:
    from playwright.sync_api import expect

    srv = make_server(max_file_size=1000)
    connect("alice", srv=srv)
    _log_in(phone, srv, "phone")
    phone.set_input_files(
        "#file-input", files=[{"name": "huge.bin", "mimeType": "", "buffer": b"x" * 1001}]
    )
    row = phone.locator(".msg.upload")
    expect(row.locator(".file-meta")).to_have_text(
        "This file is too large for this chat (the limit is 1000 B)."
    )
    assert phone.evaluate("localStorage.getItem('desktop-chat:uploads')") is None
    row.get_by_role("button", name="Dismiss huge.bin").click()
    expect(row).to_have_count(0)


def test_cancelling_an_upload_removes_it_on_the_server(
    phone: Page, server: Any, connect: Any, data_dir: Path
) -> None:
    from playwright.sync_api import expect

    alice = connect("alice")
    _log_in(phone, server, "phone")
    alice.expect("joined")
    _small_chunks(phone, 64 * 1024)
    patches: list[str] = []

    def refuse_patches(route: Route) -> None:
        if route.request.method == "PATCH":
            patches.append(route.request.headers["upload-offset"])
            route.abort()  # the network fails: the page waits and tries again
        else:
            route.continue_()

    phone.route("**/files/uploads/*", refuse_patches)
    phone.set_input_files(
        "#file-input", files=[{"name": "big.bin", "mimeType": "", "buffer": os.urandom(300_000)}]
    )
    row = phone.locator(".msg.upload")
    expect(row.locator(".file-meta")).to_contain_text("Trying again")
    assert len(list(_uploads_dir(data_dir).iterdir())) == 1
    with phone.expect_response(lambda r: r.request.method == "DELETE") as deleted:
        row.get_by_role("button", name="Cancel sending big.bin").click()
    assert deleted.value.status == 204
    expect(row).to_have_count(0)
    wait_until(lambda: list(_uploads_dir(data_dir).iterdir()) == [])  # DELETE reached it
    assert patches and set(patches) == {"0"}
    assert phone.evaluate("localStorage.getItem('desktop-chat:uploads')") is None
    # Nothing was shared: alice's next message is the one sent after.
    alice.send_json(type="say", room="general", text="after the cancel")
    assert alice.expect("message")["text"] == "after the cancel"


def test_an_interrupted_upload_goes_on_after_a_reload(
    phone: Page, server: Any, connect: Any
) -> None:
    from playwright.sync_api import expect

    alice = connect("alice")
    _log_in(phone, server, "phone")
    alice.expect("joined")
    chunk = 64 * 1024
    _small_chunks(phone, chunk)
    data = os.urandom(9 * chunk + 1234)
    passed: list[int] = []

    def cut_after_three(route: Route) -> None:
        if route.request.method == "PATCH" and len(passed) >= 3:
            route.abort()  # the cable is pulled after three chunks
            return
        if route.request.method == "PATCH":
            passed.append(int(route.request.headers["upload-offset"]))
        route.continue_()

    phone.route("**/files/uploads/*", cut_after_three)
    phone.set_input_files(
        "#file-input", files=[{"name": "half.bin", "mimeType": "", "buffer": data}]
    )
    expect(phone.locator(".msg.upload .file-meta")).to_contain_text("Trying again")
    assert passed == [0, chunk, 2 * chunk]
    phone.unroute("**/files/uploads/*")

    offsets: list[str] = []
    phone.on(
        "request",
        lambda r: offsets.append(r.all_headers()["upload-offset"]) if r.method == "PATCH" else None,
    )
    phone.reload()
    msg = alice.expect("message", timeout=20)
    assert msg["file"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert msg["file"]["size"] == len(data)
    expect(_card(phone, "half.bin")).to_have_count(1)  # (Playwright's events are read here)
    expect(phone.locator(".msg.upload")).to_have_count(0)
    # It went on from the server's offset (HEAD), not from the start.
    assert offsets[0] == str(3 * chunk)


def test_an_upload_waits_out_a_lost_network_and_goes_on(
    phone: Page, server: Any, connect: Any
) -> None:
    """The phone goes offline mid-upload (asleep, out of range, a cable pulled): the page
    waits, and when the network is back it asks the server's offset and finishes."""
    from playwright.sync_api import expect

    alice = connect("alice")
    _log_in(phone, server, "phone")
    alice.expect("joined")
    chunk = 64 * 1024
    _small_chunks(phone, chunk)
    data = os.urandom(12 * chunk)
    offsets: list[int] = []

    def unplug_at_the_fourth(route: Route) -> None:
        if route.request.method == "PATCH":
            offsets.append(int(route.request.headers["upload-offset"]))
            if len(offsets) == 4:
                phone.context.set_offline(True)
                route.abort("internetdisconnected")
                return
        route.continue_()

    phone.route("**/files/uploads/*", unplug_at_the_fourth)
    phone.set_input_files(
        "#file-input", files=[{"name": "away.bin", "mimeType": "", "buffer": data}]
    )
    row = phone.locator(".msg.upload")
    expect(row.locator(".file-meta")).to_contain_text("Connection lost at 25%")
    phone.context.set_offline(False)  # the page hears "online" and tries at once
    expect(_card(phone, "away.bin")).to_have_count(1)
    msg = alice.expect("message")
    assert msg["file"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert offsets[4] == 3 * chunk  # from the server's offset, nothing sent twice after it
    assert sorted(set(offsets)) == [i * chunk for i in range(12)]


def test_an_upload_whose_last_answer_is_lost_is_not_called_failed(
    phone: Page, server: Any, connect: Any
) -> None:
    """The last PATCH reaches the server, its answer never reaches the page: HEAD then finds
    no upload (it became a file), and the file's message says it went through."""
    from playwright.sync_api import expect

    alice = connect("alice")
    _log_in(phone, server, "phone")
    alice.expect("joined")
    chunk = 64 * 1024
    _small_chunks(phone, chunk)
    data = os.urandom(2 * chunk)

    def lose_the_last_answer(route: Route) -> None:
        if route.request.method == "PATCH" and route.request.headers["upload-offset"] == str(chunk):
            route.fetch()  # the server gets it all...
            route.abort()  # ...and the page hears nothing back
            return
        route.continue_()

    phone.route("**/files/uploads/*", lose_the_last_answer)
    with phone.expect_response(lambda r: r.request.method == "HEAD") as asked:
        phone.set_input_files(
            "#file-input", files=[{"name": "last.bin", "mimeType": "", "buffer": data}]
        )
    assert asked.value.status == 404
    expect(_card(phone, "last.bin")).to_have_count(1)
    expect(phone.locator(".msg.upload")).to_have_count(0)
    assert alice.expect("message")["file"]["sha256"] == hashlib.sha256(data).hexdigest()


# ---- cards, thumbnails and downloads --------------------------------------------------------


def test_an_image_from_a_json_client_gets_a_thumbnail_from_a_blob_url(
    phone: Page, server: Any, connect: Any
) -> None:
    from playwright.sync_api import expect

    alice = connect("alice")
    _log_in(phone, server, "phone")
    alice.expect("joined")
    image = real_png(320, 200)
    _files(server, alice).upload(image, filename="cat.png", room="general")
    card = _card(phone, "cat.png")
    img = card.locator("img")
    expect(img).to_have_attribute("src", _starts("blob:"))
    expect(img).to_have_attribute("alt", "cat.png")
    wait_until(lambda: img.evaluate("i => i.complete && i.naturalWidth") == 320)
    expect(card.locator(".file-icon")).to_have_text("PNG")
    url = img.get_attribute("src")
    assert url is not None
    # (fetch() of a blob: URL is not allowed by connect-src 'self'; an image is.)
    fetch = (
        "u => new Promise(done => { const i = new Image(); "
        "i.onload = () => done(true); i.onerror = () => done(false); i.src = u; })"
    )
    assert phone.evaluate(fetch, url) is True
    # The card leaves the page (the room is left): its blob URL is given back.
    card.evaluate("c => c.closest('li').remove()")
    wait_until(lambda: phone.evaluate(fetch, url) is False)


def test_download_from_the_page_is_saved_intact_under_a_safe_name(
    phone: Page, server: Any, connect: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    alice = connect("alice")
    _log_in(phone, server, "phone")
    alice.expect("joined")
    data = os.urandom(3_000_000)
    _files(server, alice).upload(data, filename="CON.txt", room="general")
    card = _card(phone, "CON.txt")
    expect(card.locator(".file-meta")).to_have_text("2.9 MB")
    with phone.expect_download() as started:
        card.get_by_role("button", name="Download CON.txt").click()
    download = started.value
    assert download.suggested_filename == "_CON.txt"  # a reserved name on Windows
    saved = tmp_path / "saved"
    download.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    expect(card.locator(".file-meta")).to_contain_text("saved")


def test_a_download_cut_off_half_way_goes_on_from_where_it_stopped(
    phone: Page, server: Any, connect: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    alice = connect("alice")
    _log_in(phone, server, "phone")
    alice.expect("joined")
    data = os.urandom(400_000)
    _files(server, alice).upload(data, filename="cut.bin", room="general")
    asked: list[str | None] = []

    def cut_the_first(route: Route) -> None:
        asked.append(route.request.headers.get("range"))
        if len(asked) == 1:  # the connection breaks after 150 000 bytes
            route.fulfill(status=200, body=data[:150_000], content_type="application/octet-stream")
        else:
            route.continue_()

    card = _card(phone, "cut.bin")
    expect(card).to_have_count(1)
    phone.route("**/files/*", cut_the_first)
    with phone.expect_download() as started:
        card.get_by_role("button", name="Download cut.bin").click()
    saved = tmp_path / "cut.bin"
    started.value.save_as(saved)
    assert saved.read_bytes() == data
    assert asked == [None, "bytes=150000-"]


def test_an_svg_with_script_is_a_file_and_never_runs(
    phone: Page, server: Any, connect: Any, tmp_path: Path
) -> None:
    """The phone fixture fails the test on any dialog: the script must never run."""
    from playwright.sync_api import expect

    alice = connect("alice")
    _log_in(phone, server, "phone")
    alice.expect("joined")
    svg = (
        b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)" width="10" height="10">'
        b"<script>alert(2)</script><rect width='10' height='10'/></svg>"
    )
    _files(server, alice).upload(svg, filename="pic.svg", room="general")
    card = _card(phone, "pic.svg")
    expect(card.locator(".file-icon")).to_have_text("SVG")
    expect(card.locator("img")).to_have_count(0)  # never shown as an image
    with phone.expect_download() as started:
        card.get_by_role("button", name="Download pic.svg").click()
    saved = tmp_path / "pic.svg"
    started.value.save_as(saved)
    assert saved.read_bytes() == svg
    f = alice.expect("message")["file"]
    got = _files(server, alice).request("GET", f"/files/{f['id']}")
    assert got.headers["content-disposition"].startswith("attachment;")
    assert "sandbox" in got.headers["content-security-policy"]


def test_a_file_the_server_no_longer_has_says_so(
    phone: Page, server: Any, connect: Any, data_dir: Path
) -> None:
    from playwright.sync_api import expect

    alice = connect("alice")
    _log_in(phone, server, "phone")
    alice.expect("joined")
    _files(server, alice).upload(os.urandom(5000), filename="old.zip", room="general")
    card = _card(phone, "old.zip")
    expect(card).to_have_count(1)
    for blob in (data_dir / "files" / "blobs").iterdir():
        blob.unlink()  # gone from the disk: the server answers 410
    card.get_by_role("button", name="Download old.zip").click()
    expect(card.locator(".file-meta")).to_have_text("Expired: the server no longer keeps this file")
    expect(card.get_by_role("button", name="Download old.zip")).to_have_count(0)


def test_a_file_removed_to_make_room_shows_as_expired_in_history(
    phone: Page, make_server: Any, connect: Any
) -> None:
    from playwright.sync_api import expect

    srv = make_server(files_quota=8000)
    alice = connect("alice", srv=srv)
    _log_in(phone, srv, "phone")
    alice.expect("joined")
    _files(srv, alice).upload(
        real_png(20, 20) + os.urandom(4000), filename="first.png", room="general"
    )
    expect(_card(phone, "first.png").locator("img")).to_have_attribute("src", _starts("blob:"))
    _files(srv, alice).upload(os.urandom(5000), filename="second.bin", room="general")
    expect(_card(phone, "second.bin")).to_have_count(1)
    phone.reload()  # history now says the first one expired
    first = _card(phone, "first.png")
    expect(first.locator(".file-meta")).to_have_text(
        "Expired: the server no longer keeps this file"
    )
    expect(first.locator("img")).to_have_count(0)
    expect(first.get_by_role("button")).to_have_count(0)


def test_the_policy_allows_blob_images_and_nothing_wider() -> None:
    assert CSP == (
        "default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; "
        "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


# ---- the invitation -------------------------------------------------------------------------


def test_an_http_invitation_says_it_is_not_encrypted(phone: Page, server: Any) -> None:
    from playwright.sync_api import expect

    host, port = server.address
    fp = server.certificate.fingerprint
    phone.goto(f"http://{host}:{port}/#fp={fp}")
    box = phone.locator("#invite")
    expect(box).to_be_visible()
    expect(box).to_contain_text("This connection is not encrypted")
    expect(box).to_contain_text(comparison_code(fp))
    expect(box).to_contain_text(server.certificate.fingerprint_colons)
    link = box.get_by_role("link", name="Open the secure page")
    expect(link).to_have_attribute("href", f"https://{host}:{port}/#fp={fp}")


def test_an_https_invitation_shows_the_fingerprint_to_compare(
    browser: Any, server: Any, connect: Any
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport=PHONE, ignore_https_errors=True)
    context.set_default_timeout(T(5) * 1000)
    try:
        page = context.new_page()
        host, port = server.address
        fp = server.certificate.fingerprint
        page.goto(f"https://{host}:{port}/#fp={fp.upper()}")
        box = page.locator("#invite")
        expect(box).to_be_visible()
        expect(box).to_contain_text("You were invited to the chat whose comparison code is")
        expect(box).to_contain_text(comparison_code(fp))
        expect(box).to_contain_text(server.certificate.fingerprint_colons)
        expect(box).not_to_contain_text("not encrypted")
        # Kept with this browser: a later visit without the fragment still shows it.
        page.goto(f"https://{host}:{port}/")
        page.get_by_label("Your name").fill("phone")
        page.get_by_role("button", name="Join the chat").click()
        expect(page.locator("#security-note")).to_have_text(
            f"Encrypted connection (https). Invitation code {comparison_code(fp)}."
        )
        page.get_by_role("button", name="Rooms and people").click()
        expect(page.locator("#security-note")).to_be_visible()
    finally:
        context.close()


def test_a_damaged_invitation_is_not_shown_as_a_fingerprint(phone: Page, server: Any) -> None:
    from playwright.sync_api import expect

    host, port = server.address
    phone.goto(f"http://{host}:{port}/#fp=12ab")
    expect(phone.locator("#invite")).to_contain_text("damaged")
    expect(phone.locator("#invite .fingerprint")).to_have_count(0)


# ---- the picture in the README ----------------------------------------------------------------


def test_screenshots_of_cards_and_an_upload_in_progress(
    phone: Page, server: Any, connect: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    alice = connect("alice")
    _log_in(phone, server, "phone")
    alice.expect("joined")
    alice.send_json(type="say", room="general", text="photos from saturday, and the minutes")
    _files(server, alice).upload(real_png(640, 400), filename="beach.png", room="general")
    _files(server, alice).upload(os.urandom(2_400_000), filename="minutes.pdf", room="general")
    expect(_card(phone, "beach.png").locator("img")).to_have_attribute("src", _starts("blob:"))
    expect(_card(phone, "minutes.pdf")).to_have_count(1)

    # An upload of mine, held after two of its eight chunks.
    chunk = 256 * 1024
    _small_chunks(phone, chunk)
    held: list[Route] = []

    def hold_the_third(route: Route) -> None:
        if route.request.method == "PATCH" and route.request.headers["upload-offset"] == str(
            2 * chunk
        ):
            held.append(route)  # neither continued nor aborted: it stays in flight
            return
        route.continue_()

    phone.route("**/files/uploads/*", hold_the_third)
    third = f"{2 * chunk}"
    with phone.expect_request(
        lambda r: r.method == "PATCH" and r.all_headers()["upload-offset"] == third
    ):
        phone.set_input_files(
            "#file-input",
            files=[
                {
                    "name": "holiday video.mp4",
                    "mimeType": "video/mp4",
                    "buffer": os.urandom(8 * chunk),
                }
            ],
        )
    row = phone.locator(".msg.upload")
    expect(row.locator(".file-meta")).to_contain_text("25% · 512.0 KB of 2.0 MB")
    target = Path(os.environ.get("DESKTOP_CHAT_WEB_FILES_SCREENSHOT") or tmp_path / "files.png")
    for size, base in ((PHONE, target), (DESKTOP, target.with_stem(target.stem + "-wide"))):
        phone.set_viewport_size(size)
        phone.evaluate("document.getElementById('messages').scrollTop = 1e9")
        for scheme, path in (("light", base), ("dark", base.with_stem(base.stem + "-dark"))):
            phone.emulate_media(color_scheme=scheme)
            assert phone.evaluate("document.documentElement.scrollWidth") <= size["width"]
            phone.screenshot(path=str(path))
    row.get_by_role("button", name="Cancel sending holiday video.mp4").click()
    expect(row).to_have_count(0)
