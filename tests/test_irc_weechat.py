"""A real IRC client, WeeChat (Debian's ``weechat-headless``), joins and chats with a JSON user.

WeeChat runs as a process of ours with its own home folder; what it shows is read from its
logger's files, and what it says comes from its commands run after connecting.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import T, wait_until

WEECHAT = shutil.which("weechat-headless")


@pytest.fixture
def weechat(tmp_path: Path) -> Iterator[Any]:
    if WEECHAT is None:
        pytest.fail(
            "the IRC tests need WeeChat: `apt-get install weechat-headless` "
            "(.ci/run installs it from packaging/debian-packages.txt)"
        )
    started: list[subprocess.Popen[bytes]] = []
    home = tmp_path / "weechat"
    home.mkdir()

    def start(port: int, nick: str, *commands: str) -> Path:
        run = "; ".join(
            [
                f"/server add local 127.0.0.1/{port} -notls",
                f"/set irc.server.local.nicks {nick}",
                "/set irc.server.local.autojoin #general",
                "/set irc.server.local.autoreconnect off",
                "/set logger.file.flush_delay 0",
                *commands,
                "/connect local",
            ]
        )
        proc = subprocess.Popen(
            [WEECHAT, "--dir", str(home), "--run", run],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(proc)
        return home / "logs"

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(T(5))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _log(logs: Path, name: str) -> str:
    path = logs / name
    return path.read_text(errors="replace") if path.exists() else ""


def test_weechat_joins_general_and_chats_with_a_window_user(
    weechat: Any, server: Any, connect: Any
) -> None:
    ann = connect("Ann Lee")
    logs = weechat(
        server.address[1],
        "weebot",
        # Run once connected (one command: WeeChat splits its --run list at semicolons).
        '/set irc.server.local.command "/msg -server local #general,Ann`20`Lee hello from weechat"',
    )
    assert ann.expect("joined")["name"] == "weebot"
    said = ann.expect("message")
    assert (said["from"], said["text"], said["room"]) == ("weebot", "hello from weechat", "general")
    dm = ann.expect("message")
    assert (dm["from"], dm["to"], dm["text"]) == ("weebot", "Ann Lee", "hello from weechat")
    ann.send_json(type="say", room="general", text="hi WeeChat, ünïcode too")
    channel_log = "irc.local.#general.weechatlog"
    wait_until(lambda: "hi WeeChat, ünïcode too" in _log(logs, channel_log), what="the message")
    line = next(x for x in _log(logs, channel_log).splitlines() if "ünïcode" in x)
    assert "Ann`20`Lee" in line
    assert "Channel #general: 2 nicks" in _log(logs, channel_log)
