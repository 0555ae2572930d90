"""The host's and admins' tools in the main window, and what the server says about rooms.

:class:`Moderation` wires the window's parts to the moderation requests (the people list's
Kick, Ban and Make admin; the room settings dialog from the header or the room list) and shows
what comes back: room topics in the header (``users`` carries them, ``topic`` changes them) and
as a line when one changes, ``notice`` events as quiet lines, a promotion's ``ok``. Errors
(``forbidden``, ``no_such_user``…) reach the conversation through the chat session like every
server error. The controls show only when the latest ``welcome`` says ``admin``: ordinary
people never see them, and the server checks every request anyway.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import QDialog

from desktop_chat.net.protocol import admin as pa
from desktop_chat.net.protocol import events as p
from desktop_chat.ui.admin_dialogs import RemoveDialog, RoomSettingsDialog
from desktop_chat.ui.conversations import room_key

if TYPE_CHECKING:
    from desktop_chat.ui.main_window import MainWindow

_refs = itertools.count(1)


class Moderation(QObject):
    """Admin controls and room topics for one :class:`MainWindow`.

    Signals:
        adminChanged(bool admin): a welcome said whether we may moderate.
        dialogOpened(object dialog): a kick, ban or room settings dialog is on screen.
    """

    adminChanged = Signal(bool)
    dialogOpened = Signal(object)

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.client = window.client
        self.admin = False
        self.dialog: QDialog | None = None  # the one open now
        self._topics: dict[str, str] = {}  # room key -> topic
        self._promotions: dict[str, str] = {}  # ref -> name
        c = self.client
        c.welcomed.connect(self._on_welcome)
        c.usersChanged.connect(self._on_users)
        c.topicChanged.connect(self._on_topic)
        c.noticeReceived.connect(self._on_notice)
        c.requestDone.connect(self._on_done)
        window.user_list.kickRequested.connect(self.ask_kick)
        window.user_list.banRequested.connect(self.ask_ban)
        window.user_list.promoteRequested.connect(self.promote)
        window.room_list.roomSettingsRequested.connect(self.open_room_settings)
        window.header.settingsRequested.connect(
            lambda: self.open_room_settings(self.window.current_key)
        )

    # -- what the server says ----------------------------------------------------------------

    def topic(self, key: str) -> str:
        """The topic of the room with this conversation key ("" when none)."""
        return self._topics.get(key, "")

    @Slot(object)
    def _on_welcome(self, welcome: p.Welcome) -> None:
        admin = bool(welcome.admin)
        self.admin = admin
        w = self.window
        w.user_list.set_admin(admin)
        w.room_list.set_admin(admin)
        w.header.set_admin(admin)
        self.adminChanged.emit(admin)

    @Slot(object)
    def _on_users(self, users: p.Users) -> None:
        key = room_key(users.room)
        if users.topic:
            self._topics[key] = users.topic
        else:
            self._topics.pop(key, None)
        self.window.refresh_header(key)

    @Slot(object)
    def _on_topic(self, event: pa.TopicChanged) -> None:
        key = room_key(event.room)
        if event.topic:
            self._topics[key] = event.topic
            line = f"{event.by} set the topic: {event.topic}"
        else:
            self._topics.pop(key, None)
            line = f"{event.by} cleared the topic"
        self._line(key, line)
        self.window.refresh_header(key)

    @Slot(object)
    def _on_notice(self, notice: pa.Notice) -> None:
        key = room_key(notice.room) if notice.room is not None else self.window.current_key
        self._line(key, notice.text)

    @Slot(object)
    def _on_done(self, ok: pa.Ok) -> None:
        if ok.what == pa.Promote.TYPE and isinstance(ok.ref, str):
            name = self._promotions.pop(ok.ref, None)
            if name is not None:
                self._line(
                    self.window.current_key,
                    f"{name} is an admin now: they can kick, ban and change rooms.",
                )

    def _line(self, key: str, text: str) -> None:
        """A quiet system line, after everything the session still has queued."""
        session = self.window.session
        session.flush()
        if session.find(key) is None:
            key = self.window.current_key
        session.add_notice(key, text)

    # -- what an admin does ------------------------------------------------------------------

    def _ref(self, kind: str) -> str:
        return f"{kind}-{next(_refs)}"

    def _open(self, dialog: QDialog) -> QDialog:
        if self.dialog is not None:
            self.dialog.close()
        self.dialog = dialog
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        dialog.finished.connect(lambda _result, d=dialog: self._closed(d))
        dialog.open()
        self.dialogOpened.emit(dialog)
        return dialog

    def _closed(self, dialog: QDialog) -> None:
        if self.dialog is dialog:
            self.dialog = None

    @Slot(str)
    def ask_kick(self, name: str) -> QDialog:
        return self._ask_remove(name, ban=False)

    @Slot(str)
    def ask_ban(self, name: str) -> QDialog:
        return self._ask_remove(name, ban=True)

    def _ask_remove(self, name: str, *, ban: bool) -> QDialog:
        dialog = RemoveDialog(name, ban=ban, parent=self.window)
        dialog.accepted.connect(
            lambda: self.client.send_request(dialog.request(self._ref(dialog.objectName())))
        )
        return self._open(dialog)

    @Slot(str)
    def promote(self, name: str) -> None:
        ref = self._ref("promote")
        self._promotions[ref] = name
        self.client.send_request(pa.Promote(name=name, ref=ref))

    @Slot(str)
    def open_room_settings(self, key: str) -> QDialog | None:
        conv = self.window.session.find(key)
        if conv is None or conv.is_private:
            return None
        dialog = RoomSettingsDialog(conv.name, self.topic(key), self.window)

        def send() -> None:
            for request in dialog.requests(self._ref("room")):
                self.client.send_request(request)

        dialog.accepted.connect(send)
        return self._open(dialog)
