"""The desktop app's main window: rooms on the left, the conversation, people on the right.

The window shows what its :class:`~desktop_chat.ui.session.ChatSession` holds and turns what
the user does (typing, commands, clicks, shortcuts) into session calls. Unread counts and
notifications for conversations nobody is looking at are decided here (see notifications.py).
Closing the window closes the client and, when this app hosts the chat, the server.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QMainWindow,
    QSplitter,
)

from desktop_chat.ui.about import AboutDialog
from desktop_chat.ui.account import AccountDialog, AccountMode
from desktop_chat.ui.chat_model import Entry
from desktop_chat.ui.columns import ColumnFitter
from desktop_chat.ui.command_runner import HELP_TEXT, run_command
from desktop_chat.ui.conversations import Conversation, typing_text
from desktop_chat.ui.countdown import Countdown
from desktop_chat.ui.emoji import install_emoji_fallback
from desktop_chat.ui.file_sharing import FileSharing
from desktop_chat.ui.header import ChatStatusBar
from desktop_chat.ui.host_control import HostControl
from desktop_chat.ui.icons import app_icon
from desktop_chat.ui.join_dialog import JoinRoomDialog
from desktop_chat.ui.moderation import Moderation
from desktop_chat.ui.notifications import Notifier, Sound
from desktop_chat.ui.panes import ConversationPane, Sidebar
from desktop_chat.ui.preferences import MemorySettings, UiSettings, notify_prefs, store_notify_prefs
from desktop_chat.ui.session import ChatSession
from desktop_chat.ui.settings_dialog import SettingsDialog, SettingsValues
from desktop_chat.ui.theme import Theme, apply_theme, resolve_theme
from desktop_chat.ui.user_list import UserList

TYPING_REFRESH_MS = 1000


class MainWindow(QMainWindow):
    """The chat window for one connection (and, when hosting, its server).

    Signals:
        notified(str conversation, str title, str text): a notification was given for a
            message nobody was looking at (conversation is ``#room`` or ``@name``).
        conversationShown(str key): the shown conversation changed.
        closing(): the window is closing; the client is still open (its state is final).
    """

    notified = Signal(str, str, str)
    conversationShown = Signal(str)
    closing = Signal()

    def __init__(
        self,
        client: Any,
        server: Any | None = None,
        settings: UiSettings | None = None,
        *,
        sound: Sound | None = None,
    ) -> None:
        super().__init__()
        self.setObjectName("mainWindow")
        self.client = client
        self.server = server
        self.settings: UiSettings = settings if settings is not None else MemorySettings()
        self._closed = False
        self.leaving = False  # the user left the chat: the session ended, not kept
        self._welcomed_once = False
        self._drafts: dict[str, str] = {}
        self.current_key = ""
        self.theme: Theme = resolve_theme(self.settings.theme)

        self.session = ChatSession(client, self)
        self.session.show_joins = self.settings.show_joins
        self.notifier = Notifier(self, notify_prefs(self.settings), sound, app_icon())
        self.notifier.notified.connect(self.notified)

        app = QApplication.instance()
        if isinstance(app, QApplication):
            install_emoji_fallback(app)  # before any text is laid out
        self.setWindowIcon(app_icon())
        self.setWindowTitle("Desktop Chat")
        self.resize(1100, 720)
        self.setMinimumSize(640, 420)
        self._build()
        self._build_actions()
        self._connect()
        self.moderation = Moderation(self)
        self.host_control = HostControl(self)
        self.files = FileSharing(self)
        self._apply_theme()
        self._apply_font_size()
        geometry = self.settings.window_geometry
        if not geometry.isEmpty():
            self.restoreGeometry(geometry)
        self._typing_timer = QTimer(self)
        self._typing_timer.setInterval(TYPING_REFRESH_MS)
        self._typing_timer.timeout.connect(self._refresh_typing)

    # -- construction ----------------------------------------------------------------------------

    def _build(self) -> None:
        t = self.theme
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setObjectName("mainSplitter")
        splitter.setHandleWidth(1)
        splitter.setChildrenCollapsible(False)
        hosting = None
        if self.server is not None:
            hosting = (self.server.title, self.server.join_addresses(), self.server.fingerprint)
        self.sidebar = Sidebar(self.session.conversations, t, hosting)
        self.server_title = self.sidebar.server_title
        self.me_label = self.sidebar.me_label
        self.room_list = self.sidebar.room_list
        self.hosting_card = self.sidebar.hosting_card
        pane = ConversationPane(t)
        self.header = pane.header
        self.banner = pane.banner
        self.banner_bar = pane.banner_bar
        self.reconnect_button = pane.reconnect_button
        self.chat_view = pane.chat_view
        self.composer = pane.composer
        self.input = pane.input
        self.typing_label = pane.typing_label
        self.user_list = UserList(theme=t)
        for i, widget in enumerate((self.sidebar, pane, self.user_list)):
            splitter.addWidget(widget)
            splitter.setStretchFactor(i, 1 if widget is pane else 0)
        splitter.setSizes([240, 640, 220])
        self.setCentralWidget(splitter)
        self.splitter = splitter
        self.columns = ColumnFitter(self, splitter, self.sidebar, self.user_list)
        self.status = ChatStatusBar(theme=t)
        self.setStatusBar(self.status)

    def _action(self, menu: Any, text: str, slot: Any, *keys: Any) -> QAction:
        action = QAction(text, self)
        if keys:
            action.setShortcuts([QKeySequence(k) for k in keys])
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_actions(self) -> None:
        bar = self.menuBar()
        chat = self.chat_menu = bar.addMenu("&Chat")
        self._action(chat, "&Join or create a room…", self.open_join_dialog, "Ctrl+J")
        self._action(chat, "&Leave this conversation", self.leave_current, "Ctrl+W")
        chat.addSeparator()
        self._action(chat, "&Settings…", self.open_settings, QKeySequence.StandardKey.Preferences)
        chat.addSeparator()
        self._action(chat, "L&eave the chat", lambda: self.leave_chat())
        self.quit_action = self._action(chat, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        view = bar.addMenu("&View")
        self._action(view, "&Next conversation", lambda: self.cycle(1), "Ctrl+Tab", "Ctrl+PgDown")
        self._action(
            view,
            "&Previous conversation",
            lambda: self.cycle(-1),
            "Ctrl+Shift+Tab",
            "Ctrl+Backtab",
            "Ctrl+PgUp",
        )
        self._action(view, "&Write a message", self.focus_input, "Ctrl+L", "Ctrl+K")
        self._action(view, "Jump to &newest", self.chat_view.scroll_to_newest, "Ctrl+End")
        view.addSeparator()
        people = self._action(view, "&People list", self.columns.set_people_visible)
        people.setCheckable(True)
        people.setChecked(True)
        self.people_action = people
        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Commands", self.show_help, "F1")
        self._action(help_menu, "&About Desktop Chat", self.open_about)
        for n in range(1, 10):
            shortcut = QShortcut(QKeySequence(f"Alt+{n}"), self)
            shortcut.activated.connect(lambda n=n: self.goto_index(n - 1))

    def _connect(self) -> None:
        c = self.client
        self.session.attach(c)
        c.stateChanged.connect(self._on_state)
        c.latencyChanged.connect(self.status.set_latency)
        c.connectionFailed.connect(self._on_failed)
        s = self.session
        s.welcomed.connect(self._on_welcomed)
        s.conversationAdded.connect(self._on_added)
        s.conversationRemoved.connect(self._on_removed)
        s.conversationChanged.connect(self._on_changed)
        s.focusRequested.connect(self.show_conversation)
        s.messagesArrived.connect(self._on_messages)
        s.typingChanged.connect(self._on_typing)
        self.reconnect_button.clicked.connect(self.client.retry_now)
        self.countdown = Countdown(self.banner, self)
        c.reconnectIn.connect(self.countdown.start)
        self.room_list.conversationSelected.connect(self.show_conversation)
        self.room_list.addRoomRequested.connect(self.open_join_dialog)
        self.user_list.dmRequested.connect(self.open_dm)
        self.chat_view.olderWanted.connect(lambda: self.session.load_older(self.current_key))
        self.input.submitted.connect(self.submit)
        self.input.typingActivity.connect(lambda: self.session.typing(self.current_key))
        hints = QGuiApplication.styleHints()
        hints.colorSchemeChanged.connect(self._on_system_scheme)

    # -- showing conversations ------------------------------------------------------------------

    def current(self) -> Conversation | None:
        return self.session.find(self.current_key)

    def show_conversation(self, key: str) -> None:
        conv = self.session.find(key)
        if conv is None:
            return
        if self.current_key and self.current_key != key:
            self._drafts[self.current_key] = self.input.toPlainText()
        changed = key != self.current_key
        self.current_key = key
        self.session.current_key = key
        self.chat_view.set_chat_model(conv.model)
        self.room_list.select(key)
        self._mark_read(conv)
        self._show_people(conv)
        self.refresh_header(key)
        if changed:
            self.input._set_text(self._drafts.pop(key, ""))
        if conv.is_private:
            self.input.setPlaceholderText(f"Private message to {conv.name}")
        else:
            self.input.setPlaceholderText(f"Message {conv.title}")
        self._refresh_typing()
        self._update_title()
        if changed:
            self.conversationShown.emit(key)

    def _show_people(self, conv: Conversation) -> None:
        if conv.is_private:
            names = [conv.name] + ([self.session.me] if self.session.me else [])
            self.user_list.set_people(names, self.session.me, "In this conversation")
        else:
            self.user_list.set_people(conv.members, self.session.me, away=frozenset(conv.away))

    def cycle(self, step: int) -> None:
        convs = self.session.conversations.conversations()
        if not convs:
            return
        keys = [c.key for c in convs]
        i = keys.index(self.current_key) if self.current_key in keys else 0
        self.show_conversation(keys[(i + step) % len(keys)])

    def goto_index(self, n: int) -> None:
        convs = self.session.conversations.conversations()
        if 0 <= n < len(convs):
            self.show_conversation(convs[n].key)

    def focus_input(self) -> None:
        self.activateWindow()
        self.input.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def open_dm(self, name: str) -> None:
        if self.session.is_me(name):
            return
        conv = self.session.open_dm(name)
        self.show_conversation(conv.key)
        self.focus_input()

    def leave_current(self) -> None:
        if self.current_key:
            self.session.part(self.current_key)

    def _update_title(self) -> None:
        conv = self.current()
        total = sum(c.unread for c in self.session.conversations.conversations())
        prefix = f"({total}) " if total else ""
        where = conv.title if conv is not None else ""
        server = self.session.server_title or "Desktop Chat"
        self.setWindowTitle(f"{prefix}{where} — {server}" if where else f"{prefix}{server}")

    # -- unread and notifications -----------------------------------------------------------------

    def is_visible_to_user(self, key: str) -> bool:
        return (
            key == self.current_key
            and self.isVisible()
            and self.isActiveWindow()
            and not self.isMinimized()
        )

    def _mark_read(self, conv: Conversation) -> None:
        if conv.unread or conv.mentions:
            conv.unread = conv.mentions = 0
            self.session.conversations.changed(conv.key)
            self._update_title()

    def _on_messages(self, key: str, entries: list[Entry]) -> None:
        conv = self.session.find(key)
        if conv is None or self.is_visible_to_user(key):
            return
        mentions = [e for e in entries if e.mention]
        important = bool(mentions) or conv.is_private
        counted = entries if self.notifier.prefs.badge or conv.is_private else mentions
        if counted:
            conv.unread += len(counted)
            conv.mentions += len(mentions)
            self.session.conversations.changed(key)
            self._update_title()
        entry = mentions[-1] if mentions else entries[-1]
        where = "(private)" if conv.is_private else f"in #{conv.name}"
        title = f"{entry.sender} {where}"
        if entry.mention and not conv.is_private:
            title = f"{entry.sender} mentioned you in #{conv.name}"
        self.notifier.notify(key, title, entry.text, important=important)

    def changeEvent(self, e: QEvent) -> None:
        super().changeEvent(e)
        if e.type() == QEvent.Type.ActivationChange and self.isActiveWindow():
            conv = self.current()
            if conv is not None:
                self._mark_read(conv)

    # -- session events ---------------------------------------------------------------------------

    def _on_welcomed(self, name: str, server: str) -> None:
        self.server_title.setText(server)
        self.me_label.setText(f"Signed in as {name}")
        self._update_status_server()
        if self.hosting_card is not None:
            self.hosting_card.set_title(server)
        if not self.current_key:
            convs = self.session.conversations.conversations()
            if convs:
                self.show_conversation(convs[0].key)
        else:
            self.show_conversation(self.current_key)
        self._update_title()
        if not self._welcomed_once:
            # Ready to type at once; later welcomes (resumes) leave the focus where it is.
            self._welcomed_once = True
            self.input.setFocus(Qt.FocusReason.OtherFocusReason)

    def _on_added(self, key: str) -> None:
        if not self.current_key:
            self.show_conversation(key)
        else:
            self.room_list.select(self.current_key)

    def _on_removed(self, key: str) -> None:
        self._drafts.pop(key, None)
        if key == self.current_key:
            self.current_key = ""
            convs = self.session.conversations.conversations()
            if convs:
                self.show_conversation(convs[0].key)
            else:
                self.chat_view.set_chat_model(None)
                self.header.show_conversation(None, None)
        else:
            self.room_list.select(self.current_key)

    def _update_status_server(self) -> None:
        title = self.session.server_title
        if self.server is not None:
            n = self.server.people_count()
            self.status.set_server(f"You are hosting · {n} online")
        elif title and title not in self.status.state_label.text():
            self.status.set_server(title)
        else:
            self.status.set_server("")

    def _on_changed(self, key: str) -> None:
        if self.server is not None:
            self._update_status_server()
        if key == self.current_key:
            conv = self.current()
            if conv is not None:
                self._show_people(conv)
                self.refresh_header(key)

    def refresh_header(self, key: str) -> None:
        """Show the header of ``key`` again if it is the shown conversation (topic changes)."""
        conv = self.current()
        if key == self.current_key and conv is not None:
            self.header.show_conversation(conv, self.session.me, self.moderation.topic(key))

    def _on_typing(self, key: str) -> None:
        if key == self.current_key:
            self._refresh_typing()

    def _refresh_typing(self) -> None:
        conv = self.current()
        names = conv.typing_names() if conv is not None else []
        self.typing_label.setText(typing_text(names) or " ")
        any_typing = any(c.typing for c in self.session.conversations.conversations())
        if any_typing and not self._typing_timer.isActive():
            self._typing_timer.start()
        elif not any_typing:
            self._typing_timer.stop()

    def _on_state(self, state: str, detail: str) -> None:
        self.countdown.stop()  # a new state: reconnectIn starts the next countdown
        self.status.set_state(state, detail)
        self._update_status_server()
        # Until we are connected (again), nobody's presence is known: grey the list.
        self.user_list.set_unknown(state != "connected")
        if state in ("reconnecting", "disconnected"):
            self.banner.setText(detail or "Disconnected from the server")
            self.banner_bar.setStyleSheet(
                f"#connectionBar {{ background: {self.theme.mention_row}; }}"
                f" #connectionBanner {{ color: {self.theme.text}; }}"
            )
            self.banner.show()
            self.banner_bar.show()
            self.reconnect_button.setVisible(state == "reconnecting")
        else:
            self.banner.hide()
            self.banner_bar.hide()

    def _on_failed(self, code: str, message: str) -> None:
        self.status.set_state("disconnected", message)

    def show_stopped(self, detail: str) -> None:
        """Disconnected for good (the client is closed): say why, and nobody shows online."""
        self._on_state("disconnected", detail)

    # -- what the user types ---------------------------------------------------------------------

    def submit(self, text: str) -> None:
        """Handle one submitted line: a message, or a command (see command_runner.py)."""
        run_command(self, text)

    def show_help(self) -> None:
        if self.current_key:
            self.session.add_notice(self.current_key, HELP_TEXT)
            self.chat_view.scroll_to_newest()

    # -- dialogs ---------------------------------------------------------------------------------

    def open_join_dialog(self) -> JoinRoomDialog:
        joined = [c.name for c in self.session.conversations.conversations() if c.kind == "room"]
        dialog = JoinRoomDialog(joined, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        self.session.roomsListed.connect(dialog.set_rooms)
        dialog.accepted.connect(lambda: self.session.join(dialog.room()))
        self.client.list_rooms()
        dialog.open()
        return dialog

    def open_settings(self) -> SettingsDialog:
        s = self.settings
        values = SettingsValues(
            name=s.last_name or self.session.me or "",
            theme=s.theme,
            font_size=s.font_size,
            show_joins=s.show_joins,
            notify=notify_prefs(s),
        )
        connected = self.client.state == "connected" and self.session.me is not None
        dialog = SettingsDialog(
            values, self, account_on=self.session.server_title if connected else None
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        dialog.accepted.connect(lambda: self.apply_settings(dialog.values()))
        dialog.themePreviewed.connect(self.preview_theme)
        dialog.rejected.connect(lambda: self.preview_theme(self.settings.theme))
        dialog.accountRequested.connect(lambda mode: self.open_account(mode, dialog))
        dialog.open()
        return dialog

    def open_account(self, mode: AccountMode, parent: Any = None) -> AccountDialog:
        """Register the name in use on this chat, or change its password (a name joined
        without any password has no account: changing becomes registering)."""
        unregistered = mode == "change" and not getattr(self.client, "has_password", True)
        dialog = AccountDialog(
            self.client,
            "register" if unregistered else mode,
            self.session.me or "",
            self.session.server_title,
            parent or self,
            not_registered=unregistered,
        )
        # The dialog shows its own errors: none of them goes into the conversation.
        self.session.quiet_refs.add(dialog.ref)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        dialog.succeeded.connect(lambda text: self.session.add_notice(self.current_key, text))
        dialog.open()
        return dialog

    def apply_settings(self, values: SettingsValues) -> None:
        s = self.settings
        s.last_name = values.name
        s.theme = values.theme
        s.font_size = values.font_size
        s.show_joins = values.show_joins
        store_notify_prefs(s, values.notify)
        self.notifier.prefs = values.notify
        self.session.show_joins = values.show_joins
        self.theme = resolve_theme(values.theme)
        self._apply_theme()
        self._apply_font_size()

    def preview_theme(self, choice: str) -> None:
        """Show ``choice`` at once, without saving it (the Settings dialog's theme box)."""
        theme = resolve_theme(choice)
        if theme != self.theme:
            self.theme = theme
            self._apply_theme()

    def open_about(self) -> AboutDialog:
        dialog = AboutDialog(self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        dialog.open()
        return dialog

    # -- look ------------------------------------------------------------------------------------

    def _on_system_scheme(self, _scheme: object = None) -> None:
        if self.settings.theme == "system":
            self.theme = resolve_theme("system")
            self._apply_theme()

    def _apply_theme(self) -> None:
        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, self.theme)
        for widget in (self.chat_view, self.room_list, self.user_list, self.header, self.status):
            widget.set_theme(self.theme)
        if self.hosting_card is not None:
            self.hosting_card.set_icon_colour(self.theme.muted)
        if self.banner.isVisible():
            counting = self.countdown.timer.isActive()
            self._on_state(self.status.state, self.banner.text())
            if counting:
                self.countdown.timer.start()

    def _apply_font_size(self) -> None:
        size = self.settings.font_size
        font = QApplication.font()
        if size > 0:
            font.setPointSize(size)
        self.chat_view.setFont(font)
        self.input.setFont(font)
        self.chat_view.relayout()

    # -- closing ---------------------------------------------------------------------------------

    def closeEvent(self, e: QCloseEvent) -> None:
        if not self._closed and not self.host_control.may_close():
            e.ignore()  # the host is asked first; close_now() follows a yes
            return
        self.shutdown()
        super().closeEvent(e)

    def leave_chat(self, reason: str | None = None) -> None:
        """End the session (the others read "left the chat") and close."""
        self.leaving = True
        self.client.quit(reason)
        self.close()

    def close_now(self) -> None:
        """Close without asking (the host agreed to stop the chat)."""
        self.shutdown()
        self.close()

    def shutdown(self) -> None:
        """Close the client (and the server when hosting); idempotent."""
        if self._closed:
            return
        self._closed = True
        self.closing.emit()
        self.settings.window_geometry = self.saveGeometry()
        self._typing_timer.stop()
        self.countdown.stop()
        self.notifier.close()
        QGuiApplication.styleHints().colorSchemeChanged.disconnect(self._on_system_scheme)
        self.session.close()
        self.files.close()
        # Quitting the app keeps the session (the next start resumes it: same rooms, same
        # DMs); leave_chat() ends it. The host's server tells everyone it is closing.
        self.client.close()
        if self.server is not None:
            self.server.close()
