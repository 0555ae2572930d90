"""``desktop-chat-server``: run the chat server headless (no window, no Qt).

Prints the addresses people can join, logs to stderr, and shuts down cleanly on Ctrl+C or
SIGTERM (everyone is told, sessions are kept, the database is closed).
"""

from __future__ import annotations

import argparse
import errno
import io
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import segno

from desktop_chat import __version__
from desktop_chat.net.protocol.invite import invite_link, web_url
from desktop_chat.net.server.backplane import BackplaneError
from desktop_chat.net.server.server import DEFAULT_PORT, Server, ServerConfig
from desktop_chat.net.server.storage_api import (
    StorageError,
    describe,
    has_password,
    is_database_url,
)

log = logging.getLogger("desktop_chat")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One clear line and exit status 2, instead of a usage dump.
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, not {value}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"cannot be negative: {value}")
    return value


def _heartbeat(text: str) -> float:
    value = float(text)
    if not 0.3 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"must be between 0.3 and 3600 seconds, not {value}")
    return value


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _size(text: str) -> int:
    """A byte count: ``500000``, ``200M``, ``2G``, ``1.5GiB`` (binary units)."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = t[-1:] if t[-1:] in _UNITS else ""
    try:
        value = float(t[: len(t) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500M, 2G)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, not {text!r}")
    return int(value * _UNITS[unit])


_ENV = {"--database": "DESKTOP_CHAT_DATABASE", "--backplane": "DESKTOP_CHAT_BACKPLANE"}


def _backplane(text: str) -> str:
    """A Redis URL: ``redis://[user:password@]host[:port][/db]``, ``rediss://…`` (TLS) or
    ``unix:///path/to/redis.sock``."""
    try:
        url = urlsplit(text.strip())
        url.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        url = None
    if url is None or url.scheme not in ("redis", "rediss", "unix"):
        raise argparse.ArgumentTypeError(
            f"not a Redis URL: {describe(text)!r} (e.g. redis://127.0.0.1:6379)"
        )
    where = url.path if url.scheme == "unix" else url.hostname
    if not where:
        raise argparse.ArgumentTypeError(f"{describe(text)!r} names no Redis server")
    return text.strip()


def build_parser() -> argparse.ArgumentParser:
    d = ServerConfig()
    ap = _Parser(
        prog="desktop-chat-server", description="Run a Desktop Chat server without a window."
    )
    ap.add_argument("--version", action="version", version=f"desktop-chat-server {__version__}")
    ap.add_argument(
        "--host",
        default=d.host,
        help="address to listen on (default %(default)s: every interface; "
        "127.0.0.1 keeps it to this machine)",
    )
    ap.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help="TCP port for every kind of client (default %(default)s; 0 picks a free one)",
    )
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder for the database (default: the user data folder)",
    )
    ap.add_argument(
        "--database",
        type=_database_url,
        default=None,
        metavar="URL",
        help="keep the chat in this PostgreSQL database (postgresql://user@host/dbname), "
        "which several server processes can share; default: SQLite in the data folder "
        "(environment: DESKTOP_CHAT_DATABASE). A password here shows in ps: put it in "
        "DESKTOP_CHAT_DATABASE, PGPASSWORD or a ~/.pgpass file instead",
    )
    ap.add_argument("--title", default=d.title, help="server title shown to people")
    ap.add_argument(
        "--max-line",
        type=_positive_int,
        default=d.max_line,
        help="longest accepted line in bytes (default %(default)s)",
    )
    ap.add_argument(
        "--rate-burst",
        type=_non_negative,
        default=d.rate_burst,
        help="messages a client may send in a burst (default %(default)s)",
    )
    ap.add_argument(
        "--rate-per-sec",
        type=_non_negative,
        default=d.rate_per_sec,
        help="sustained messages per second per client; 0 turns flood control "
        "off (default %(default)s)",
    )
    ap.add_argument(
        "--max-connections",
        type=_positive_int,
        default=d.max_connections,
        help="connections in total (default %(default)s)",
    )
    ap.add_argument(
        "--max-per-address",
        type=_positive_int,
        default=d.max_per_address,
        help="connections from one IP address (default %(default)s)",
    )
    ap.add_argument(
        "--registration-timeout",
        type=_non_negative,
        default=d.registration_timeout,
        help="seconds a new connection has to give its name (default %(default)s)",
    )
    ap.add_argument(
        "--ping-interval",
        type=_non_negative,
        default=d.ping_interval,
        help="seconds of silence before the server pings (default %(default)s)",
    )
    ap.add_argument(
        "--ping-timeout",
        type=_non_negative,
        default=d.ping_timeout,
        help="seconds to wait for the pong (default %(default)s)",
    )
    ap.add_argument(
        "--outbox-limit",
        type=_positive_int,
        default=d.outbox_limit,
        help="bytes buffered for a client that does not read before it is cut "
        "off (default %(default)s)",
    )
    ap.add_argument(
        "--session-days",
        type=_non_negative,
        default=d.session_ttl_days,
        help="days an unused session can still be resumed (default %(default)s)",
    )
    ap.add_argument(
        "--tls",
        choices=["off", "offered", "required"],
        default=d.tls,
        help="TLS on the shared port: offered (default; encrypted and plain clients), "
        "required (plain connections are refused), or off",
    )
    private = ap.add_mutually_exclusive_group()
    private.add_argument(
        "--password",
        default=None,
        help="make the server private: everyone needs this password (or their account's). "
        "Others on this machine can see it in `ps`: prefer --password-file or the "
        "DESKTOP_CHAT_PASSWORD environment variable",
    )
    private.add_argument(
        "--password-file",
        type=_read_password_file,
        default=None,
        metavar="PATH",
        dest="password_from_file",
        help="read the server password from the first line of this file",
    )
    ap.add_argument(
        "--allow-plain-passwords",
        action="store_true",
        help="accept passwords over unencrypted connections from other machines too "
        "(by default they must use TLS; loopback is always allowed)",
    )
    ap.add_argument(
        "--admin",
        action="append",
        default=[],
        metavar="NAME",
        help="a registered account that may moderate (kick, ban, topics); repeatable",
    )
    ap.add_argument(
        "--max-file-size",
        type=_size,
        default=d.max_file_size,
        metavar="SIZE",
        help="largest file people may share, e.g. 500M (default 2G)",
    )
    ap.add_argument(
        "--files-quota",
        type=_size,
        default=None,
        metavar="SIZE",
        help="room for all shared files; the oldest are removed first when it is full "
        "(default: the smaller of 20G and half the free disk)",
    )
    ap.add_argument(
        "--backplane",
        type=_backplane,
        default=None,
        metavar="URL",
        help="Redis that carries messages and people between server processes, e.g. "
        "redis://127.0.0.1:6379 (default: the DESKTOP_CHAT_BACKPLANE environment variable; "
        "none: one process). A password here shows in ps: give a URL with one in "
        "DESKTOP_CHAT_BACKPLANE instead. See docs/deploy.md",
    )
    ap.add_argument(
        "--heartbeat-ttl",
        type=_heartbeat,
        default=d.heartbeat_ttl,
        metavar="SECONDS",
        help="with a --backplane: a process whose heartbeat is this old counts as dead, and "
        "its users are shown leaving, within this and a third of it (default %(default)s)",
    )
    ap.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="server processes sharing the port (Linux; more than 1 needs a PostgreSQL "
        "--database and a --backplane; default %(default)s)",
    )
    ap.add_argument(
        "--check",
        action="store_true",
        help="do not serve: check this machine's network (interfaces, the port, discovery) "
        "and say what others need to join",
    )
    ap.add_argument(
        "--no-announce",
        action="store_true",
        help="do not announce the server on the local network (mDNS)",
    )
    ap.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="(default %(default)s)",
    )
    return ap


def _database_url(text: str) -> str:
    if not is_database_url(text):
        raise argparse.ArgumentTypeError(
            f"not a database URL: {describe(text)!r} (give postgresql://user@host/dbname)"
        )
    return text


def _read_password_file(path: str) -> str:
    """The first line of ``path`` (without its line ending): the server password."""
    try:
        with open(path, encoding="utf-8") as fh:
            line = fh.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise argparse.ArgumentTypeError(f"cannot read the password from {path}: {exc}") from exc
    if not line:
        raise argparse.ArgumentTypeError(f"{path} has no password on its first line")
    return line


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        database=args.database or os.environ.get("DESKTOP_CHAT_DATABASE") or None,
        title=args.title,
        max_line=args.max_line,
        rate_burst=args.rate_burst,
        rate_per_sec=args.rate_per_sec,
        max_connections=args.max_connections,
        max_per_address=args.max_per_address,
        registration_timeout=args.registration_timeout,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        outbox_limit=args.outbox_limit,
        session_ttl_days=args.session_days,
        announce=not args.no_announce,
        tls=args.tls,
        password=args.password_from_file
        or args.password
        or os.environ.get("DESKTOP_CHAT_PASSWORD")
        or None,
        allow_plain_passwords=args.allow_plain_passwords,
        admins=tuple(args.admin),
        max_file_size=args.max_file_size,
        files_quota=args.files_quota,
        backplane=args.backplane,
        heartbeat_ttl=args.heartbeat_ttl,
    )


def raise_file_limit() -> None:
    """Each connection is a file descriptor: allow as many as the system lets us."""
    try:
        import resource
    except ImportError:
        return  # Windows has no such limit on sockets
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            log.debug("could not raise the open-file limit")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    in_argv = {"--database": args.database, "--backplane": args.backplane}  # shown by ps
    if args.backplane is None and os.environ.get("DESKTOP_CHAT_BACKPLANE"):
        try:
            args.backplane = _backplane(os.environ["DESKTOP_CHAT_BACKPLANE"])
        except argparse.ArgumentTypeError as exc:
            print(f"desktop-chat-server: DESKTOP_CHAT_BACKPLANE: {exc}", file=sys.stderr)
            return 2
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    raise_file_limit()
    # Many threads share one GIL: a thread woken by the network must not wait the default
    # 5 ms for a busy one to let go (measured: it is most of the fan-out latency).
    sys.setswitchinterval(0.0005)
    config = config_from_args(args)
    if config.backplane and not is_database_url(config.database or ""):
        # Each process would keep its own SQLite file: ids collide, messages go missing.
        print(
            "desktop-chat-server: --backplane needs a PostgreSQL --database that every process "
            "shares (see docs/deploy.md)",
            file=sys.stderr,
        )
        return 2
    for flag, url in in_argv.items():
        if url is not None and has_password(url):
            log.warning(
                "the password in %s shows in ps to every user of this machine: give it in %s "
                "(or, for PostgreSQL, PGPASSWORD or ~/.pgpass) instead",
                flag,
                _ENV[flag],
            )
    if args.check:
        from desktop_chat.net.discovery.netcheck import format_report, run_check

        # A specific --host keeps the check (mDNS and broadcasts too) to that address.
        wildcard = config.host in ("0.0.0.0", "::", "")
        interfaces = None if wildcard else [config.host]
        print(format_report(run_check(config.port, interfaces=interfaces)))
        return 0
    if args.workers > 1:
        return run_workers(config, args.workers)
    return serve(config)


def run_workers(config: ServerConfig, count: int) -> int:
    """``--workers N``: prepare the data folder once, hold the port, supervise N workers."""
    from desktop_chat.net.server import workers

    problem = workers.refusal(config, count)
    if problem is not None:
        print(f"desktop-chat-server: {problem}", file=sys.stderr)
        return 2
    try:
        held = workers.hold_port(config.host, config.port)
    except OSError as exc:
        return _cannot_start(config, exc)
    try:
        try:
            shared = workers.prepare(replace(config, port=held.getsockname()[1]))
        except StorageError as exc:  # as for one process (see serve)
            print(f"desktop-chat-server: database: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            where = config.data_dir or "the data folder"
            print(f"desktop-chat-server: cannot prepare {where}: {exc}", file=sys.stderr)
            return 1

        def serve_worker(index: int, restarted: bool) -> int:
            held.close()  # the parent's; this worker binds its own
            # Worker 0 tells how to join, once (not again each time it is restarted).
            banner = index == 0 and not restarted
            return serve(workers.for_worker(shared, index), banner=banner)

        supervisor = workers.Supervisor(count, serve_worker)
        log.info("%d workers on port %d", count, shared.port)
        return supervisor.run()
    finally:
        held.close()


def _cannot_start(config: ServerConfig, exc: OSError) -> int:
    if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
        print(
            f"desktop-chat-server: port {config.port} is already in use on "
            f"{config.host}; choose another with --port",
            file=sys.stderr,
        )
    else:
        print(f"desktop-chat-server: cannot start: {exc.strerror or exc}", file=sys.stderr)
    return 1


def serve(config: ServerConfig, *, banner: bool = True) -> int:
    """Run one server until SIGINT/SIGTERM; ``banner``: print how to join."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Before the start (which may wait seconds for PostgreSQL): a signal during it still
    # ends in a clean stop. A worker comes here with them blocked (workers.py): now they may.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if hasattr(signal, "pthread_sigmask"):  # not on Windows
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    server = Server(config)
    try:
        server.start()
    except StorageError as exc:
        # A bad URL (from the environment), PostgreSQL unreachable or refusing us.
        print(f"desktop-chat-server: database: {exc}", file=sys.stderr)
        return 2
    except BackplaneError as exc:
        print(f"desktop-chat-server: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        return _cannot_start(config, exc)
    try:
        if config.worker is not None:
            log.info(
                "worker %d (pid %d) listening on port %d", config.worker, os.getpid(), server.port
            )
        if banner:
            print_banner(server, config)
        while not stop.wait(0.5):
            pass
    finally:
        server.close()
    return 0


def print_banner(server: Server, config: ServerConfig) -> None:
    print(f"Desktop Chat server {__version__} \u2014 {config.title}")
    print("People can join at:")
    for address in server.join_addresses():
        print(f"  {address}")
    if server.certificate is not None:
        print(f"TLS {config.tls}; certificate fingerprint (SHA-256), for people to compare:")
        print(f"  {server.certificate.fingerprint_for_reading}")
        print_invite(server.join_addresses()[0], server.port, server.certificate.fingerprint)
    print(
        f"(from a terminal: nc {server.join_addresses()[0].rsplit(':', 1)[0]} "
        f"{server.port}) \u2014 Ctrl+C stops the server",
        flush=True,
    )


def print_invite(join_address: str, port: int, fingerprint: str) -> None:
    """The phones' address with the fingerprint in it, as text and as a QR code to scan,
    and the desktop app's invitation link."""
    host = join_address.rsplit(":", 1)[0].strip("[]")
    url = web_url(host, port, fingerprint)
    print(f"Phones: scan the code, or open {url}")
    out = io.StringIO()
    segno.make(url, error="m").terminal(out=out, compact=True)
    code = out.getvalue()
    try:
        code.encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        code = ""  # a console that cannot show block characters: the address will do
    if code:
        print(code, end="")
    print(f"Desktop app invitation (paste it in Join): {invite_link(host, port, fingerprint)}")


if __name__ == "__main__":
    sys.exit(main())
