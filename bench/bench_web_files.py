"""The web page with a big file: upload from the page (tus, in its own script), then download
it in a second page (fetch → blob → saved), both in Debian's chromium on 127.0.0.1; the saved
file's SHA-256 is checked against the source.

    .venv/bin/python bench/bench_web_files.py --mib 1024

Prints the seconds and MiB/s of each side. The server runs in this process (one thread per
connection, as always); chromium is headless. Needs about three times the file's size on disk
(the source, the server's copy, the saved download) and, for the download, its size in memory
(the page holds the file as a blob before saving it).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's package
from desktop_chat.net.server.server import Server, ServerConfig

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="file size in MiB")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        source = tmp / "big.bin"
        with source.open("wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(1 << 20))
        want = sha256_of(source)
        config = ServerConfig(
            host="127.0.0.1", port=0, data_dir=tmp / "data", title="bench", sniff_timeout=1.0
        )
        with Server(config) as server, sync_playwright() as pw:
            host, port = server.address
            browser = pw.chromium.launch(executable_path=args.chromium, args=ARGS)
            pages = []
            for name in ("sender", "receiver"):
                page = browser.new_context(accept_downloads=True).new_page()
                page.set_default_timeout(3_600_000)
                page.goto(f"http://{host}:{port}/")
                page.get_by_label("Your name").fill(name)
                page.get_by_role("button", name="Join the chat").click()
                expect(page.get_by_role("heading", name="# general", exact=True)).to_be_visible()
                pages.append(page)
            sender, receiver = pages
            card = receiver.locator(".filecard:not(.uploading)", has_text="big.bin")

            start = time.perf_counter()
            sender.set_input_files("#file-input", str(source))
            expect(card).to_be_visible(timeout=3_600_000)
            up = time.perf_counter() - start

            start = time.perf_counter()
            with receiver.expect_download(timeout=3_600_000) as started:
                card.get_by_role("button", name="Download big.bin").click()
            saved = tmp / "saved.bin"
            started.value.save_as(saved)
            down = time.perf_counter() - start
            browser.close()
        ok = sha256_of(saved) == want
        print(f"upload   {args.mib} MiB in {up:6.1f} s  {args.mib / up:7.1f} MiB/s")
        print(f"download {args.mib} MiB in {down:6.1f} s  {args.mib / down:7.1f} MiB/s")
        print(f"sha256 of the saved file {'matches' if ok else 'DIFFERS'}")


if __name__ == "__main__":
    main()
