"""The chat as the window sees it: client events turned into conversations, and back.

:class:`ChatSession` listens to a :class:`~desktop_chat.net.client.ChatClient`, keeps one
:class:`~desktop_chat.ui.conversations.Conversation` per room and per direct-message partner,
fetches history when a conversation opens or the user scrolls up, and sends what the user
types. It has no widgets; the main window shows what it holds and reacts to its signals.

Staying responsive during a flood: the client hands over events in batches
(``eventsReceived``). They wait in one queue, in the server's order, and are handled in
slices: at most :data:`FLUSH_SLICE` messages and about :data:`SLICE_MS` of work per event-loop
turn, the rest a little later, so painting, typing and timers never wait long. Consecutive
messages of a slice go into their conversation's model as one insertion (one layout, one
repaint), and the window hears one ``messagesArrived`` per conversation per slice.

Joins and leaves go through :class:`~desktop_chat.ui.presence.Presence`, which keeps a dropped
connection from writing a line unless the person stays away (reconnect noise).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable
from typing import Protocol

from PySide6.QtCore import QElapsedTimer, QObject, QTimer, Signal

from desktop_chat.net.protocol import events as p
from desktop_chat.net.protocol.names import name_key
from desktop_chat.ui.chat_model import ChatModel, Entry, Kind
from desktop_chat.ui.conversations import (
    GENERAL,
    Conversation,
    ConversationListModel,
    dm_key,
    room_key,
)
from desktop_chat.ui.message_text import action_text, make_action
from desktop_chat.ui.presence import Presence

FIRST_HISTORY = 50
OLDER_HISTORY = 100
TYPING_SEND_EVERY_S = 3.0
HISTORY_RETRY_S = 10.0  # a history request with no reply by then may be asked again
# During a burst, messages go into the models at most this often (each batch costs one
# layout and one repaint); a message after a quiet moment goes in at once.
FLUSH_EVERY_MS = 80
# One slice handles at most this many messages and no other event after SLICE_MS,
# then lets the event loop breathe (layout, paint, input, timers) before the next slice: a
# burst never freezes the window for long. A message costs ~15 µs here, plus its share of
# one layout and one repaint per slice, which cost about the same for 1 row or 300.
FLUSH_SLICE = 300
SLICE_MS = 8
# The next slice waits this long: long enough for the view's layout and repaint of the last
# one (a zero-delay timer ran the next slice before them, two slices and two layouts in one
# turn), short enough to catch up with a backlog quickly.
NEXT_SLICE_MS = 10


class ClientLike(Protocol):
    """The part of ChatClient the session uses (see /docs: the ChatClient interface)."""

    name: str | None

    def say(self, room: str, text: str) -> object: ...
    def dm(self, to: str, text: str) -> object: ...
    def join(self, room: str, password: str | None = None) -> None: ...
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

    Events come in through :meth:`on_events` (queued, handled in slices) or one by one through
    the ``on_*`` methods, which first handle everything queued so the order stays the
    server's, then the event, at once.
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
        self._pending: dict[object, str] = {}  # ref of a message sent -> its conversation
        # Refs of requests whose errors a dialog shows: never a line in the conversation.
        self.quiet_refs: set[object] = set()
        # Events wait here, in the server's order, for the next slice (see the module
        # docstring): a burst costs one insertion and one layout per slice, not one each.
        self._queue: deque[p.ServerEvent] = deque()
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.timeout.connect(self._timed_flush)
        self._since_flush = QElapsedTimer()
        self._since_flush.start()
        self.presence = Presence(self)

    # -- wiring ------------------------------------------------------------------------------

    def attach(self, client: QObject) -> None:
        """Listen to a ChatClient: its batches of protocol events (one signal per batch)."""
        client.eventsReceived.connect(self.on_events)  # type: ignore[attr-defined]
        client.sendSettled.connect(self.on_settled)  # type: ignore[attr-defined]

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

    def on_events(self, events: Iterable[p.ServerEvent]) -> None:
        """A batch from the client. Events other than messages that wait behind nothing are
        handled at once (a welcome, a users list, a join: whoever hears the client's own
        signal for it next finds it handled); the rest waits in order for the next slice,
        at most FLUSH_EVERY_MS after messages last went in."""
        queue = self._queue
        idle = not queue
        queue.extend(events)
        if idle:
            deadline = time.perf_counter() + SLICE_MS / 1000
            while queue and not isinstance(queue[0], p.ChatMessage):
                self._apply(queue.popleft())
                if time.perf_counter() >= deadline:
                    break
        if queue and not self._flush_timer.isActive():
            wait = FLUSH_EVERY_MS - self._since_flush.elapsed()
            self._flush_timer.start(max(0, int(wait)))

    def on_welcomed(self, w: p.Welcome) -> None:
        self.flush()
        self._welcomed(w)

    def on_users(self, u: p.Users) -> None:
        self.flush()
        self._users(u)

    def on_joined(self, j: p.Joined) -> None:
        self.flush()
        self._joined(j)

    def on_left(self, left: p.Left) -> None:
        self.flush()
        self._left(left)

    def on_history(self, h: p.HistoryReply) -> None:
        self.flush()
        self._history(h)

    def on_typing(self, t: p.TypingNotice) -> None:
        self.flush()
        self._typing(t)

    def on_error(self, e: p.ErrorReply) -> None:
        self.flush()
        self._error(e)

    def on_settled(self, ref: object) -> None:
        """A message we sent was delivered: its echo (queued before this) replaces the
        pending entry; if the echo's id was shown already, the pending entry just goes."""
        self.flush()
        key = self._pending.pop(ref, None)
        conv = self.find(key) if key is not None else None
        if conv is not None:
            conv.model.settle(ref)

    def pending_count(self) -> int:
        """Messages sent and not yet delivered, in every conversation."""
        return len(self._pending)

    def on_message(self, m: p.ChatMessage) -> None:
        """One message: queued like a batch of one (see :meth:`on_events`)."""
        self.on_events((m,))

    def _apply(self, event: p.ServerEvent) -> None:
        """Handle one event that is not a message (everything before it is handled)."""
        if isinstance(event, p.Users):
            self._users(event)
        elif isinstance(event, p.Joined):
            self._joined(event)
        elif isinstance(event, p.Left):
            self._left(event)
        elif isinstance(event, p.TypingNotice):
            self._typing(event)
        elif isinstance(event, p.HistoryReply):
            self._history(event)
        elif isinstance(event, p.Welcome):
            self._welcomed(event)
        elif isinstance(event, p.ErrorReply):
            self._error(event)
        elif isinstance(event, p.RoomList):
            self.roomsListed.emit(event)

    def _welcomed(self, w: p.Welcome) -> None:
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

    def _users(self, u: p.Users) -> None:
        conv = self.ensure_room(u.room)
        if conv.name != u.room:
            conv.name = u.room
        self.presence.listed(conv, u.names)
        conv.joined = True
        self.conversations.changed(conv.key)
        self.conversationChanged.emit(conv.key)
        if not conv.history_started:
            self._first_history(conv)
        if conv.key in self._want_focus:
            self._want_focus.discard(conv.key)
            self.focusRequested.emit(conv.key)

    def _joined(self, j: p.Joined) -> None:
        conv = self.find(room_key(j.room))
        if conv is None:
            return
        news = self.presence.joined(conv, j.name)
        if self.show_joins and not self.is_me(j.name) and news:
            conv.model.add_system(f"{j.name} joined")
        self.conversations.changed(conv.key)
        self.conversationChanged.emit(conv.key)

    def _left(self, left: p.Left) -> None:
        key = room_key(left.room)
        conv = self.find(key)
        if conv is None:
            return
        if self.is_me(left.name):
            if left.reason == "part":
                self.conversations.remove(key)
                self.conversationRemoved.emit(key)
            return
        self.presence.left(conv, left.name, left.reason)
        self.conversations.changed(key)
        self.conversationChanged.emit(key)
        self.typingChanged.emit(key)

    @property
    def reconnect_grace_s(self) -> float:
        """How long a dropped person stays greyed before "lost the connection" is written."""
        return self.presence.grace_s

    @reconnect_grace_s.setter
    def reconnect_grace_s(self, seconds: float) -> None:
        self.presence.grace_s = seconds

    def close(self) -> None:
        """Stop the timers (the window is closing)."""
        self.presence.stop()
        self._flush_timer.stop()

    def _timed_flush(self) -> None:
        """One slice; the next one after the window has shown this one."""
        self._handle_queued(FLUSH_SLICE, SLICE_MS)
        if self._queue:
            self._flush_timer.start(NEXT_SLICE_MS)

    def flush(self) -> None:
        """Handle everything queued, now (direct ``on_*`` calls do this first)."""
        self._flush_timer.stop()
        self._handle_queued(None, None)

    @property
    def queued(self) -> int:
        """Events received and not handled yet."""
        return len(self._queue)

    def _handle_queued(self, limit: int | None, budget_ms: float | None) -> None:
        """Handle queued events in order: up to ``limit`` messages in all, and no event
        other than a message once ``budget_ms`` have passed (None: no limit). Consecutive
        messages go in together (inserting a message costs little next to the layout and
        repaint that follow a slice, whatever its size)."""
        queue = self._queue
        budget = math.inf if budget_ms is None else budget_ms / 1000
        deadline = time.perf_counter() + budget
        left = -1 if limit is None else limit  # messages this slice may still take
        run: list[p.ChatMessage] = []
        while queue:
            event = queue[0]
            if isinstance(event, p.ChatMessage):
                if left == 0:
                    break
                left -= 1
                run.append(event)
                queue.popleft()
                continue
            if run:
                self._insert(run)
                run = []
            if time.perf_counter() >= deadline:
                return
            queue.popleft()
            self._apply(event)
        if run:
            self._insert(run)

    def _insert(self, messages: list[p.ChatMessage]) -> None:
        """Put messages into their conversations: one insertion per conversation."""
        self._since_flush.restart()
        batches: dict[str, tuple[Conversation, list[p.ChatMessage]]] = {}
        room: str | None = None
        batch: list[p.ChatMessage] = []
        for m in messages:
            if m.room is None or m.room != room:  # a burst is mostly one room: look up less
                conv = self._conversation_of(m)
                room = m.room
                batch = batches.setdefault(conv.key, (conv, []))[1]
            batch.append(m)
        for key, (conv, batch) in batches.items():
            added = conv.model.add_messages(batch)
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

    def _history(self, h: p.HistoryReply) -> None:
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

    def _typing(self, t: p.TypingNotice) -> None:
        if self.is_me(t.name):
            return
        conv = self.find(room_key(t.room) if t.room is not None else dm_key(t.name))
        if conv is None:
            return
        conv.note_typing(t.name)
        self.typingChanged.emit(conv.key)

    def _error(self, e: p.ErrorReply) -> None:
        if e.ref is not None and e.ref in self.quiet_refs:
            return
        key = self.current_key
        if e.ref is not None and e.ref in self._pending:
            # A message we sent was refused: its pending entry goes, the reason shows there.
            key = self._pending.pop(e.ref)
            sent_in = self.find(key)
            if sent_in is not None:
                sent_in.model.settle(e.ref)
        self.errorShown.emit(key, e.message)
        conv = self.find(key)
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
        self._send_to(conv, text)

    def _send_to(self, conv: Conversation, text: str) -> None:
        """Send, and show the message as pending until the server echoes it."""
        if conv.kind == "room":
            ref = self.client.say(conv.name, text)
        else:
            ref = self.client.dm(conv.name, text)
        if ref is None:
            return
        self._pending[ref] = conv.key
        action = action_text(self.me or "", text) is not None
        conv.model.add_pending(text, ref, action=action)

    def send_action(self, key: str, action: str) -> None:
        """``/me``: sent as the text ``* name action``, which every client can read."""
        self.send(key, make_action(self.me or "", action))

    def send_dm(self, name: str, text: str) -> str:
        """``/msg``: open (or create) the DM and send; return its key."""
        conv = self.open_dm(name)
        if text.strip():
            self._send_to(conv, text)
        return conv.key

    def open_dm(self, name: str) -> Conversation:
        conv = self.ensure_dm(name)
        if not conv.history_started:
            self._first_history(conv)
        return conv

    def join(self, room: str, password: str | None = None) -> str:
        """Join (or just show) ``room``; focusRequested follows once the server says so."""
        key = room_key(room)
        conv = self.find(key)
        if conv is not None and conv.joined:
            self.focusRequested.emit(key)
            return key
        self._want_focus.add(key)
        self.client.join(room, password)
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
