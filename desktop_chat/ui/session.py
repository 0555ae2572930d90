"""The chat as the window sees it: client events turned into conversations, and back.

:class:`ChatSession` listens to a :class:`~desktop_chat.net.client.ChatClient`, keeps one
:class:`~desktop_chat.ui.conversations.Conversation` per room and per direct-message partner,
fetches history when a conversation opens or the user scrolls up, and sends what the user
types. It has no widgets; the main window shows what it holds and reacts to its signals.
"""

from __future__ import annotations

import time
from typing import Protocol

from PySide6.QtCore import QElapsedTimer, QObject, QTimer, Signal

from ..net import protocol as p
from ..net.names import name_key
from .chat_model import ChatModel, Entry, Kind
from .conversations import (
    GENERAL,
    Conversation,
    ConversationListModel,
    dm_key,
    room_key,
)
from .message_text import make_action

FIRST_HISTORY = 50
OLDER_HISTORY = 100
TYPING_SEND_EVERY_S = 3.0
HISTORY_RETRY_S = 10.0  # a history request with no reply by then may be asked again
# During a burst, messages go into the models at most this often (each batch costs one
# layout and one repaint); a message after a quiet moment goes in at once.
FLUSH_EVERY_MS = 80
# A timed flush takes at most this many messages, then lets the event loop breathe (paint,
# input, timers) before the next slice: a burst never freezes the window for long.
FLUSH_SLICE = 100

LEFT_WORDS = {
    "part": "left",
    "quit": "left the chat",
    "disconnected": "lost the connection",
    "timeout": "timed out",
    "kicked": "was removed",
    "slow": "was disconnected (not keeping up)",
}


class ClientLike(Protocol):
    """The part of ChatClient the session uses (see /docs: the ChatClient interface)."""

    name: str | None

    def say(self, room: str, text: str) -> None: ...
    def dm(self, to: str, text: str) -> None: ...
    def join(self, room: str) -> None: ...
    def part(self, room: str) -> None: ...
    def list_rooms(self) -> None: ...
    def request_history(
        self,
        *,
        room: str | None = None,
        with_: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> None: ...
    def send_typing(self, *, room: str | None = None, to: str | None = None) -> None: ...


class ChatSession(QObject):
    """Conversations of one connection.

    Signals:
        welcomed(str name, str server): the server welcomed us (also after a resume).
        conversationAdded(str key)
        conversationRemoved(str key)
        conversationChanged(str key): members or name changed.
        focusRequested(str key): the user asked for this conversation (a /join, a DM).
        messagesArrived(str key, object entries): new messages from others (a list of Entry),
            in one conversation; a burst arrives as one list.
        typingChanged(str key)
        roomsListed(object): protocol.RoomList, for the join dialog.
        errorShown(str key, str text): a server error to show in that conversation.
    """

    welcomed = Signal(str, str)
    conversationAdded = Signal(str)
    conversationRemoved = Signal(str)
    conversationChanged = Signal(str)
    focusRequested = Signal(str)
    messagesArrived = Signal(str, object)
    typingChanged = Signal(str)
    roomsListed = Signal(object)
    errorShown = Signal(str, str)

    def __init__(self, client: ClientLike, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.client = client
        self.me: str | None = None
        self.server_title = ""
        self.show_joins = True
        self.conversations = ConversationListModel(self)
        self.current_key = ""  # set by the window: errors go there
        self._want_focus: set[str] = set()
        self._typing_sent: dict[str, float] = {}
        self._history_asked: dict[str, float] = {}
        self._history_limit: dict[str, int] = {}
        # Messages wait here until the event loop is idle, then go into the models in one
        # batch per conversation: a burst costs one insertion and one layout, not one each.
        self._pending: list[p.ChatMessage] = []
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.timeout.connect(self._timed_flush)
        self._since_flush = QElapsedTimer()
        self._since_flush.start()

    # -- wiring ------------------------------------------------------------------------------

    def attach(self, client: QObject) -> None:
        """Connect to a ChatClient's signals."""
        c = client
        c.welcomed.connect(self.on_welcomed)  # type: ignore[attr-defined]
        c.messageReceived.connect(self.on_message)  # type: ignore[attr-defined]
        c.joined.connect(self.on_joined)  # type: ignore[attr-defined]
        c.left.connect(self.on_left)  # type: ignore[attr-defined]
        c.usersChanged.connect(self.on_users)  # type: ignore[attr-defined]
        c.typingReceived.connect(self.on_typing)  # type: ignore[attr-defined]
        c.roomsListed.connect(self.roomsListed)  # type: ignore[attr-defined]
        c.historyReceived.connect(self.on_history)  # type: ignore[attr-defined]
        c.errorReceived.connect(self.on_error)  # type: ignore[attr-defined]

    # -- lookups -----------------------------------------------------------------------------

    def find(self, key: str) -> Conversation | None:
        return self.conversations.find(key)

    def is_me(self, name: str) -> bool:
        return self.me is not None and name_key(name) == name_key(self.me)

    def _ensure(self, kind: str, name: str) -> Conversation:
        key = room_key(name) if kind == "room" else dm_key(name)
        conv = self.find(key)
        if conv is None:
            conv = Conversation(
                kind="room" if kind == "room" else "dm", name=name, model=ChatModel(self.me)
            )
            self.conversations.add(conv)
            self.conversationAdded.emit(key)
        return conv

    def ensure_room(self, room: str) -> Conversation:
        return self._ensure("room", room)

    def ensure_dm(self, name: str) -> Conversation:
        return self._ensure("dm", name)

    # -- client events -----------------------------------------------------------------------

    def on_welcomed(self, w: p.Welcome) -> None:
        self.flush()
        self.me = w.name
        self.server_title = w.server
        for conv in self.conversations.conversations():
            conv.model.set_me(w.name)
        in_rooms = {name_key(r) for r in w.rooms}
        for room in w.rooms:
            self.ensure_room(room).joined = True
        for conv in self.conversations.conversations():
            if conv.kind == "room" and name_key(conv.name) not in in_rooms and conv.joined:
                # A fresh session after a reconnect: go back to the rooms we were in.
                self.client.join(conv.name)
        if not w.rooms:
            self.ensure_room(GENERAL)
        self.welcomed.emit(w.name, w.server)

    def on_users(self, u: p.Users) -> None:
        self.flush()
        conv = self.ensure_room(u.room)
        if conv.name != u.room:
            conv.name = u.room
        conv.members = list(u.names)
        conv.joined = True
        self.conversations.changed(conv.key)
        self.conversationChanged.emit(conv.key)
        if not conv.history_started:
            self._first_history(conv)
        if conv.key in self._want_focus:
            self._want_focus.discard(conv.key)
            self.focusRequested.emit(conv.key)

    def on_joined(self, j: p.Joined) -> None:
        self.flush()
        conv = self.find(room_key(j.room))
        if conv is None:
            return
        if not any(name_key(m) == name_key(j.name) for m in conv.members):
            conv.members.append(j.name)
            conv.members.sort(key=name_key)
        if self.show_joins and not self.is_me(j.name):
            conv.model.add_system(f"{j.name} joined")
        self.conversations.changed(conv.key)
        self.conversationChanged.emit(conv.key)

    def on_left(self, left: p.Left) -> None:
        self.flush()
        key = room_key(left.room)
        conv = self.find(key)
        if conv is None:
            return
        if self.is_me(left.name):
            if left.reason == "part":
                self.conversations.remove(key)
                self.conversationRemoved.emit(key)
            return
        conv.members = [m for m in conv.members if name_key(m) != name_key(left.name)]
        conv.stop_typing(left.name)
        if self.show_joins:
            words = LEFT_WORDS.get(left.reason, "left")
            conv.model.add_system(f"{left.name} {words}")
        self.conversations.changed(key)
        self.conversationChanged.emit(key)
        self.typingChanged.emit(key)

    def on_message(self, m: p.ChatMessage) -> None:
        self._pending.append(m)
        if not self._flush_timer.isActive():
            wait = FLUSH_EVERY_MS - self._since_flush.elapsed()
            self._flush_timer.start(max(0, int(wait)))

    def _timed_flush(self) -> None:
        self.flush(FLUSH_SLICE)
        if self._pending:
            self._flush_timer.start(0)

    def flush(self, limit: int | None = None) -> None:
        """Put waiting messages (all, or the first ``limit``) into their conversations.

        Other events call this first, so everything stays in the order the server sent it.
        """
        self._flush_timer.stop()
        if not self._pending:
            return
        self._since_flush.restart()
        if limit is None or len(self._pending) <= limit:
            pending, self._pending = self._pending, []
        else:
            pending, self._pending = self._pending[:limit], self._pending[limit:]
        batches: dict[str, tuple[Conversation, list[p.ChatMessage]]] = {}
        for m in pending:
            conv = self._conversation_of(m)
            batches.setdefault(conv.key, (conv, []))[1].append(m)
        for key, (conv, messages) in batches.items():
            added = conv.model.add_messages(messages)
            if conv.typing:
                for entry in added:
                    conv.stop_typing(entry.sender)
                self.typingChanged.emit(key)
            theirs = [e for e in added if not e.own]
            if theirs:
                self.messagesArrived.emit(key, theirs)

    def _conversation_of(self, m: p.ChatMessage) -> Conversation:
        if m.room is not None:
            return self.ensure_room(m.room)
        assert m.to is not None
        other = m.to if self.is_me(m.from_) else m.from_
        conv = self.ensure_dm(other)
        if not conv.history_started:
            # The first DM from someone: fetch what came before (it arrives de-duplicated).
            self._first_history(conv)
        return conv

    def on_history(self, h: p.HistoryReply) -> None:
        self.flush()
        if h.room is not None:
            conv = self.find(room_key(h.room))
        elif h.with_ is not None:
            conv = self.find(dm_key(h.with_))
        else:
            conv = None
        if conv is None:
            return
        asked = self._history_limit.pop(conv.key, FIRST_HISTORY)
        self._history_asked.pop(conv.key, None)
        conv.history_pending = False
        added = conv.model.add_messages(h.messages)
        if h.more is False or len(h.messages) < asked or not added:
            conv.history_done = True

    def on_typing(self, t: p.TypingNotice) -> None:
        if self.is_me(t.name):
            return
        conv = self.find(room_key(t.room) if t.room is not None else dm_key(t.name))
        if conv is None:
            return
        conv.note_typing(t.name)
        self.typingChanged.emit(conv.key)

    def on_error(self, e: p.ErrorReply) -> None:
        self.flush()
        self.errorShown.emit(self.current_key, e.message)
        conv = self.find(self.current_key)
        if conv is not None:
            conv.model.add_system(e.message, kind=Kind.ERROR)

    # -- history -----------------------------------------------------------------------------

    def _ask_history(self, conv: Conversation, before: int | None, limit: int) -> None:
        conv.history_pending = True
        conv.history_started = True
        self._history_asked[conv.key] = time.monotonic()
        self._history_limit[conv.key] = limit
        if conv.kind == "room":
            self.client.request_history(room=conv.name, before=before, limit=limit)
        else:
            self.client.request_history(with_=conv.name, before=before, limit=limit)

    def _first_history(self, conv: Conversation) -> None:
        self._ask_history(conv, conv.model.oldest_id(), FIRST_HISTORY)

    def load_older(self, key: str) -> bool:
        """Ask for the page before the oldest message held; False when there is nothing to do."""
        conv = self.find(key)
        if conv is None or conv.history_done or (conv.kind == "room" and not conv.joined):
            return False
        if conv.history_pending:
            asked = self._history_asked.get(key, 0.0)
            if time.monotonic() - asked < HISTORY_RETRY_S:
                return False
        self._ask_history(conv, conv.model.oldest_id(), OLDER_HISTORY)
        return True

    # -- what the user does ------------------------------------------------------------------

    def send(self, key: str, text: str) -> None:
        conv = self.find(key)
        if conv is None:
            return
        self._typing_sent.pop(key, None)
        if conv.kind == "room":
            self.client.say(conv.name, text)
        else:
            self.client.dm(conv.name, text)

    def send_action(self, key: str, action: str) -> None:
        """``/me``: sent as the text ``* name action``, which every client can read."""
        self.send(key, make_action(self.me or "", action))

    def send_dm(self, name: str, text: str) -> str:
        """``/msg``: open (or create) the DM and send; return its key."""
        conv = self.open_dm(name)
        if text.strip():
            self.client.dm(conv.name, text)
        return conv.key

    def open_dm(self, name: str) -> Conversation:
        conv = self.ensure_dm(name)
        if not conv.history_started:
            self._first_history(conv)
        return conv

    def join(self, room: str) -> str:
        """Join (or just show) ``room``; focusRequested follows once the server says so."""
        key = room_key(room)
        conv = self.find(key)
        if conv is not None and conv.joined:
            self.focusRequested.emit(key)
            return key
        self._want_focus.add(key)
        self.client.join(room)
        return key

    def part(self, key: str) -> None:
        """Leave a room (the server confirms with ``left``) or close a DM."""
        conv = self.find(key)
        if conv is None:
            return
        if conv.kind == "room":
            self.client.part(conv.name)
        else:
            self.conversations.remove(key)
            self.conversationRemoved.emit(key)

    def typing(self, key: str, now: float | None = None) -> bool:
        """The user is typing in ``key``: tell the others, at most every 3 s."""
        conv = self.find(key)
        if conv is None:
            return False
        now = time.monotonic() if now is None else now
        last = self._typing_sent.get(key)
        if last is not None and now - last < TYPING_SEND_EVERY_S:
            return False
        self._typing_sent[key] = now
        if conv.kind == "room":
            self.client.send_typing(room=conv.name)
        else:
            self.client.send_typing(to=conv.name)
        return True

    def add_notice(self, key: str, text: str, *, error: bool = False) -> Entry | None:
        conv = self.find(key)
        if conv is None:
            return None
        return conv.model.add_system(text, kind=Kind.ERROR if error else Kind.SYSTEM)
