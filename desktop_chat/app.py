"""The desktop app's entry point (``desktop-chat``): start screen, then the chat window.

:class:`AppController` walks the person from the start screen to a running chat: for "Host"
it starts a :class:`~desktop_chat.net.server.Server` on this computer and connects to it like
everyone else; for "Join" it connects to the address typed. Whatever goes wrong before the
welcome (a taken port, a taken name, nobody answering) goes back to the start screen, under
the field concerned. On quit the client is closed, then the server, and every thread joined.
"""

from __future__ import annotations

import argparse
import errno
import getpass
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from PySide6.QtCore import QObject, QTimer, Slot
from PySide6.QtWidgets import QApplication, QWidget

from desktop_chat import __version__
from desktop_chat.kept_sessions import KeptSessions, server_key
from desktop_chat.net.client.transport import NO_TLS, NOT_A_CHAT, UNKNOWN_HOST
from desktop_chat.net.client.worker import ChatClient, ClientTiming
from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.invite import looks_like_invite, parse_invite
from desktop_chat.net.protocol.names import InvalidName, name_key, normalize_name
from desktop_chat.net.protocol.tls import group_for_reading, normalize_fingerprint
from desktop_chat.net.server.server import DEFAULT_PORT, Server, ServerConfig
from desktop_chat.settings import HostedSession, Settings
from desktop_chat.system_packages import platform_plugin_problem
from desktop_chat.ui.certificates import CertificatePrompter
from desktop_chat.ui.emoji import install_emoji_fallback
from desktop_chat.ui.found_servers import DiscoverySetup
from desktop_chat.ui.icons import app_icon
from desktop_chat.ui.main_window import MainWindow
from desktop_chat.ui.start_dialog import Field, StartChoice, StartDialog, parse_address
from desktop_chat.ui.theme import apply_theme, resolve_theme

ORGANIZATION = "Desktop Chat"
APPLICATION = "desktop-chat"


def port_error_message(port: int, exc: OSError) -> str:
    """Why a port cannot be used, for people."""
    if exc.errno == errno.EADDRINUSE:
        return f"Port {port} is already in use on this computer. Choose another port."
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"This computer does not allow using port {port}. Choose one above 1024."
    return f"Cannot listen on port {port}: {exc.strerror or exc}."


def failure_field(code: str, mode: str = "join") -> Field:
    """Which start-screen field a connectionFailed code concerns."""
    if code in (p.NAME_TAKEN, p.NAME_INVALID, p.BANNED):
        return "name"
    if code == p.AUTH_FAILED and mode == "join":
        return "password"
    if code == "certificate_mismatch" and mode == "join":
        return "fingerprint"
    if code in ("refused", "unreachable", "timeout", NO_TLS, UNKNOWN_HOST, NOT_A_CHAT):
        return "address" if mode == "join" else "port"
    return "general"


def failure_message(code: str, message: str, choice: StartChoice) -> str:
    if code == p.NAME_TAKEN:
        return f"That name is taken: someone called “{choice.name}” is already in this chat."
    if code == p.NAME_INVALID:
        return f"The server does not accept that name: {message}"
    if code in ("refused", "unreachable", "timeout"):
        if choice.mode == "host":
            return f"The chat started but did not answer on port {choice.port}: {message}"
        return (
            f"Nobody answered at {choice.address}. Check the address and that the chat is running."
        )
    if code == p.AUTH_FAILED:
        return f"The chat did not accept that password ({message})."
    if code == p.SERVER_FULL:
        return f"The chat at {choice.address} is full or shutting down. Try again later."
    return message


class AppController(QObject):
    """From the start screen to the chat window, and the clean shutdown afterwards."""

    def __init__(
        self,
        settings: Settings,
        *,
        data_dir: Path | None = None,
        announce: bool = True,
        bind_host: str = "0.0.0.0",
        timing: ClientTiming | None = None,
        discovery: DiscoverySetup | None = None,
        kept: KeptSessions | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.kept = kept if kept is not None else KeptSessions()  # sessions on joined chats
        self.discovery = discovery  # the Join page's LAN discovery; None: off (tests)
        self.data_dir = data_dir
        self.announce = announce
        self.bind_host = bind_host  # everyone on the network can join; tests use loopback
        self.timing = timing
        self.dialog: StartDialog | None = None
        self.server: Server | None = None
        self.client: ChatClient | None = None
        self.window: MainWindow | None = None
        self._pending_window: MainWindow | None = None
        self.choice: StartChoice | None = None
        self.prompter: CertificatePrompter | None = None

    # -- the start screen ------------------------------------------------------------------

    def show_start(self) -> StartDialog:
        if self.dialog is None:
            self.dialog = StartDialog(self.settings, discovery=self.discovery)
            self.dialog.submitted.connect(self.start)
            self.dialog.cancelled.connect(self._drop_connection)
            self.dialog.rejected.connect(self._start_rejected)
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()
        return self.dialog

    def show_failure(self, field: Field, message: str) -> None:
        """Back to the start screen, with ``message`` under ``field``."""
        dialog = self.show_start()
        if self.choice is not None:
            dialog.set_mode(self.choice.mode)
            dialog.set_name(self.choice.name)
            if self.choice.mode == "join":
                dialog.set_address(self.choice.address)
                if self.choice.fingerprint is not None:
                    dialog.set_fingerprint(group_for_reading(self.choice.fingerprint))
        dialog.show_error(field, message)

    @Slot()
    def _start_rejected(self) -> None:
        if self.window is None:
            self.shutdown()
            QApplication.quit()

    # -- starting ----------------------------------------------------------------------

    @Slot(object)
    def start(self, choice: StartChoice) -> bool:
        """Host or join; False when it failed at once (the reason is on the start screen)."""
        self.choice = choice
        if choice.mode == "host":
            try:
                self.start_server(choice)
            except OSError as exc:
                self.show_failure("port", port_error_message(choice.port, exc))
                return False
        self.connect_client(choice)
        return True

    def start_server(self, choice: StartChoice) -> Server:
        """Start hosting on ``choice.port``; OSError when the port cannot be used."""
        self.choice = choice
        config = ServerConfig(
            host=self.bind_host, port=choice.port, data_dir=self.data_dir, announce=self.announce
        )
        if choice.title:
            config.title = choice.title
        server = Server(config)
        try:
            server.start()
        except OSError:
            server.close()
            raise
        self.server = server
        return server

    def connect_client(self, choice: StartChoice) -> ChatClient:
        """Connect to the chat (our own server when hosting); the window shows on welcome.

        The window is made (hidden) before connecting, so it hears everything the client
        says from the first state change and the welcome on.
        """
        self.choice = choice
        host, port, owner, fingerprint = choice.host, choice.port, None, choice.fingerprint
        resume: tuple[str, int] | None = None
        dms: tuple[str, ...] = ()
        if self.server is not None:
            # Our own server: the host's rights come with its token, and its certificate is
            # known, so the host is never asked to compare a fingerprint with itself.
            host, port, owner = "127.0.0.1", self.server.port, self.server.owner_token
            fingerprint = self.server.fingerprint
            # Hosting again (same data folder, so same certificate): resume our own session,
            # as any client does after a restart: same rooms, same DMs.
            kept = self.settings.hosted_session(fingerprint) if fingerprint else None
            if kept is not None and name_key(kept.name) == name_key(choice.name):
                resume, dms = (kept.session, kept.since), kept.dms
        else:
            # Joining: the session this app had there, if we still trust that certificate.
            pinned = fingerprint or self.settings.pinned_fingerprint(host, port)
            kept = self.kept.get(server_key(host, port, pinned)) if pinned else None
            if kept is not None and name_key(kept.name) == name_key(choice.name):
                resume, dms = (kept.session, kept.since), kept.dms
        client = ChatClient(timing=self.timing, pins=self.settings)
        self.client = client
        window = MainWindow(client, server=self.server, settings=self.settings)
        self._pending_window = window
        window.closing.connect(lambda: self._keep_session(client, window))
        client.welcomed.connect(lambda _w: self._keep_session(client, window))
        for name in dms:
            window.session.open_dm(name)
        self.prompter = CertificatePrompter(client, self._dialog_parent)
        client.welcomed.connect(self._welcomed)
        client.connectionFailed.connect(self._connection_failed)
        client.connect_to(
            host,
            port,
            choice.name,
            choice.password,
            owner=owner,
            fingerprint=fingerprint,
            resume=resume,
        )
        return client

    def _keep_session(self, client: ChatClient, window: MainWindow) -> None:
        """Remember the window's session (on each welcome and when it closes), to resume it
        on the next start; forget it when the user left the chat."""
        server = self.server
        if client.session is None or client.name is None:
            return
        convs = window.session.conversations.conversations()
        dms = tuple(c.name for c in convs if c.kind == "dm")
        kept = HostedSession(client.name, client.session, client.last_id, dms)
        if server is not None:
            if server.fingerprint is not None:
                self.settings.store_hosted_session(server.fingerprint, kept)
            return
        if client.address is None or not client.fingerprint:
            return  # no certificate to tie the token to: nothing kept
        key = server_key(client.address[0], client.address[1], client.fingerprint)
        if window.leaving:
            self.kept.forget(key)
        else:
            self.kept.put(key, kept)

    def _dialog_parent(self) -> QWidget | None:
        """The window a question belongs to: the chat window once shown, else the start
        screen."""
        if self.window is not None:
            return self.window
        return self.dialog

    @Slot(str, str)
    def _connection_failed(self, code: str, message: str) -> None:
        assert self.choice is not None
        self._drop_connection()
        field = failure_field(code, self.choice.mode)
        self.show_failure(field, failure_message(code, message, self.choice))

    @Slot(object)
    def _welcomed(self, _welcome: p.Welcome) -> None:
        client, window = self.client, self._pending_window
        if client is None or window is None:
            return
        client.welcomed.disconnect(self._welcomed)
        client.connectionFailed.disconnect(self._connection_failed)
        self._pending_window = None
        assert self.choice is not None
        if self.choice.mode == "join":
            self.settings.add_recent_server(self.choice.address)
        self.settings.sync()
        self.window = window
        window.show()
        if self.dialog is not None:
            self.dialog.set_busy(False)
            self.dialog.hide()

    @Slot()
    def _drop_connection(self) -> None:
        """Give up on the connection being made (or made): client, server, unshown window."""
        client, self.client = self.client, None
        server, self.server = self.server, None
        prompter, self.prompter = self.prompter, None
        if prompter is not None:
            prompter.dismiss()
        window, self._pending_window = self._pending_window, None
        if window is not None:
            # Never shown: keep the size and place saved from the last real window.
            saved = self.settings.window_geometry
            window.shutdown()
            self.settings.window_geometry = saved
            window.deleteLater()
        if client is not None:
            client.close()
            client.deleteLater()
        if server is not None:
            server.close()

    def shutdown(self) -> None:
        """Close the window, the client, then the server; every thread is joined on return.

        Idempotent. (Closing the window closes the client and server too; doing it here
        as well covers a window that never opened.)
        """
        window, self.window = self.window, None
        if window is not None:
            window.shutdown()  # the app is quitting: nobody is asked any more
            window.close()
            window.deleteLater()
        self._drop_connection()
        if self.dialog is not None:
            self.dialog.hide()  # ends its LAN discovery (threads joined)
        self.settings.sync()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="desktop-chat", description="Chat with the people on your network."
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--host-chat", action="store_true", help="host a chat on this computer at once"
    )
    mode.add_argument(
        "--join",
        metavar="HOST[:PORT]|INVITE",
        help="join the chat at this address, or by the invitation link the host's "
        "“Invite people…” gives (desktop-chat://…): no fingerprint to compare then",
    )
    parser.add_argument(
        "--fingerprint",
        metavar="FP",
        help="with --join: the host's certificate fingerprint (as its window shows it); "
        "checked instead of asking you to compare it",
    )
    parser.add_argument("--name", help="your name in the chat")
    parser.add_argument(
        "--port", type=int, default=None, help=f"port to host on (default {DEFAULT_PORT})"
    )
    parser.add_argument("--title", default="", help="title of the hosted chat")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="where a hosted chat keeps data"
    )
    parser.add_argument(
        "--no-announce", action="store_true", help="do not announce a hosted chat on the network"
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


def _default_name(settings: Settings) -> str:
    for candidate in (settings.last_name, getpass.getuser()):
        try:
            return normalize_name(candidate)
        except InvalidName:
            continue
    return ""


def _set_up_application(argv: Sequence[str]) -> QApplication:
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication([sys.argv[0], *argv])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("Desktop Chat")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName(APPLICATION)
    icon = app_icon()
    if not icon.isNull():
        app.setWindowIcon(icon)
    install_emoji_fallback(app)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Run the desktop app; the exit status (2: could not start as the flags asked)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help or a usage error: argparse has said why
        return exc.code if isinstance(exc.code, int) else 2
    if args.version:
        sys.stdout.write(f"desktop-chat {__version__}\n")
        return 0
    if args.port is not None and not 1 <= args.port <= 65535:
        sys.stderr.write("desktop-chat: --port must be between 1 and 65535\n")
        return 2
    join_target: tuple[str, int] | None = None
    invited: str | None = None
    if args.join is not None:
        try:
            if looks_like_invite(args.join):
                invite = parse_invite(args.join)
                join_target, invited = (invite.host, invite.port), invite.fingerprint
            else:
                join_target = parse_address(args.join)
        except ValueError as exc:
            sys.stderr.write(f"desktop-chat: --join: {exc}\n")
            return 2
    fingerprint: str | None = invited
    if args.fingerprint is not None:
        if join_target is None:
            sys.stderr.write("desktop-chat: --fingerprint goes with --join\n")
            return 2
        try:
            fingerprint = normalize_fingerprint(args.fingerprint)
        except ValueError as exc:
            sys.stderr.write(f"desktop-chat: --fingerprint: {exc}\n")
            return 2
        if invited is not None and fingerprint != invited:
            sys.stderr.write("desktop-chat: --fingerprint is not the invitation's\n")
            return 2

    # Qt aborts with a misleading hint when its platform plugin's libraries are missing.
    if QApplication.instance() is None and (problem := platform_plugin_problem()):
        sys.stderr.write(problem)
        return 1
    app = _set_up_application(args_list)
    settings = Settings()
    controller = AppController(
        settings,
        data_dir=args.data_dir,
        announce=not args.no_announce,
        discovery=DiscoverySetup(),
    )
    signals = _Signals(app, controller)
    name = args.name if args.name is not None else _default_name(settings)
    if args.host_chat:
        port = args.port if args.port is not None else (settings.host_port or DEFAULT_PORT)
        choice = StartChoice("host", name, "127.0.0.1", port, args.title)
        if _name_is_usable(controller, choice):
            try:
                controller.start_server(choice)
            except OSError as exc:
                sys.stderr.write(f"desktop-chat: {port_error_message(port, exc)}\n")
                signals.restore()
                return 2
            controller.connect_client(choice)
    elif join_target is not None:
        choice = StartChoice("join", name, *join_target, fingerprint=fingerprint)
        if _name_is_usable(controller, choice):
            controller.connect_client(choice)
    else:
        controller.show_start()
    apply_theme(app, resolve_theme(settings.theme))
    return _run(app, controller, signals)


def _name_is_usable(controller: AppController, choice: StartChoice) -> bool:
    """True if the name from the flags is valid; else the start screen says why."""
    try:
        normalize_name(choice.name)
    except InvalidName as exc:
        controller.choice = choice
        controller.show_failure("name", f"Choose a name: {exc}.")
        return False
    return True


class _Signals:
    """SIGTERM (logout, shutdown) and SIGINT (Ctrl+C) quit the app without asking: nobody is
    there to answer. Installed before the server starts, so that a signal never finds the
    default handler, which would end the process without telling anyone."""

    def __init__(self, app: QApplication, controller: AppController) -> None:
        self.app = app
        self.controller = controller
        self.received = False
        self.previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        # QApplication.quit() would first ask every window to close, and the host's window
        # would open "Stop the chat and quit?" and wait for an answer nobody gives. exit()
        # asks no window; _run() then shuts down (the server tells everyone it is closing).
        # Nothing else here: the handler may run in the middle of any startup step.
        self.received = True
        self.app.exit(0)

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _run(app: QApplication, controller: AppController, signals: _Signals | None = None) -> int:
    signals = signals or _Signals(app, controller)
    # Python only runs signal handlers between bytecodes; a timer lets a signal be handled
    # at once instead of waiting for the next GUI event.
    ticker = QTimer()
    ticker.timeout.connect(lambda: None)
    ticker.start(250)
    try:
        # A signal before the loop ran: its exit() came too early to count.
        status = 0 if signals.received else app.exec()
    finally:
        ticker.stop()
        signals.restore()
        controller.shutdown()
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
