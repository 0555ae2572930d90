"""The headless command as a user runs it: a real process, real signals."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from desktop_chat.net.protocol.invite import parse_invite, web_url
from tests.helpers import LineClient, T

CMD = [sys.executable, "-m", "desktop_chat.server_cli"]


def _start(data_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *CMD,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--no-announce",
            "--title",
            "CLI chat",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _banner(proc: subprocess.Popen[str]) -> tuple[tuple[str, int], str]:
    """The address the server prints, and its whole start-up banner."""
    assert proc.stdout is not None
    lines = []
    while not (lines and "Ctrl+C" in lines[-1]):
        line = proc.stdout.readline()
        assert line, f"the server stopped: {lines}"
        lines.append(line)
    port = next(int(x.strip().rsplit(":", 1)[1]) for x in lines if x.startswith("  127.0.0.1:"))
    return ("127.0.0.1", port), "".join(lines)


def test_serves_prints_address_and_stops_cleanly_on_sigterm(data_dir: Path) -> None:
    proc = _start(data_dir)
    try:
        address, banner = _banner(proc)
        assert "fingerprint" in banner
        with LineClient(address) as alice, LineClient(address) as bob:
            assert alice.login("alice")["server"] == "CLI chat"
            bob.login("bob")
            alice.send_json(type="say", room="general", text="over the wire")
            assert bob.expect("message")["text"] == "over the wire"
            proc.send_signal(signal.SIGTERM)
            assert bob.expect("closing")["reason"] == "shutdown"
            bob.assert_closed()
        _, err = proc.communicate(timeout=T(10))
        assert proc.returncode == 0
        assert "server stopped" in err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (data_dir / "chat.sqlite3").exists()


def test_bad_flag_gives_one_clear_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [*CMD, "--port", "99999"], capture_output=True, text=True, timeout=T(30)
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "port" in result.stderr
    assert "Traceback" not in result.stderr


def test_taken_port_gives_one_clear_line(data_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                *CMD,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
                "--no-announce",
            ],
            capture_output=True,
            text=True,
            timeout=T(30),
        )
    assert result.returncode == 1
    assert f"port {port} is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_version_and_help() -> None:
    from desktop_chat import __version__

    out = subprocess.run([*CMD, "--version"], capture_output=True, text=True, timeout=T(30))
    assert out.stdout.strip() == f"desktop-chat-server {__version__}"
    helptext = subprocess.run(
        [*CMD, "--help"], capture_output=True, text=True, timeout=T(30)
    ).stdout
    for flag in ("--port", "--data-dir", "--rate-per-sec", "--max-per-address", "--tls"):
        assert flag in helptext


def test_network_check_on_loopback_says_what_to_do(data_dir: Path) -> None:
    result = subprocess.run(
        [*CMD, "--check", "--host", "127.0.0.1", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=T(30),
    )
    assert result.returncode == 0, result.stderr
    assert "port" in result.stdout.lower()


def test_password_from_a_file_or_the_environment_never_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from desktop_chat.server_cli import build_parser, config_from_args

    secret = tmp_path / "password.txt"
    secret.write_text("let me in\nignored second line\n")
    config = config_from_args(build_parser().parse_args(["--password-file", str(secret)]))
    assert config.password == "let me in"
    assert config.allow_plain_passwords is False
    monkeypatch.setenv("DESKTOP_CHAT_PASSWORD", "from the environment")
    config = config_from_args(build_parser().parse_args(["--allow-plain-passwords"]))
    assert config.password == "from the environment"
    assert config.allow_plain_passwords is True
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--password-file", str(tmp_path / "missing")])
    assert exited.value.code == 2
    assert "cannot read the password" in capsys.readouterr().err


def test_prints_the_phone_address_as_a_qr_code_and_the_invitation(data_dir: Path) -> None:
    proc = _start(data_dir)
    try:
        address, banner = _banner(proc)
        link = next(
            line.split(": ", 1)[1].strip()
            for line in banner.splitlines()
            if line.startswith("Desktop app invitation")
        )
        invite = parse_invite(link)
        assert (invite.host, invite.port) == address
        url = web_url(*address, invite.fingerprint)
        assert f"open {url}\n" in banner
        assert invite.fingerprint.upper()[:4] in banner  # the one printed for comparing
        code = [line for line in banner.splitlines() if line.startswith("████")]
        # A QR code in block characters, two module rows a line: the smallest (21 modules and
        # a 4-module border) takes 15 lines.
        assert len(code) >= 15
        with LineClient(address) as alice:  # the invitation points at the running chat
            alice.login("alice")
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=T(10))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_file_flags_take_sizes() -> None:
    from desktop_chat.server_cli import build_parser, config_from_args

    args = build_parser().parse_args(["--max-file-size", "500M", "--files-quota", "1.5GiB"])
    config = config_from_args(args)
    assert config.max_file_size == 500 << 20
    assert config.files_quota == int(1.5 * (1 << 30))
    default = config_from_args(build_parser().parse_args([]))
    assert default.max_file_size == 2 << 30 and default.files_quota is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--max-file-size", "lots"])
