"""The conversation model: every message of one room or DM, shown through a window of rows.

``QListView`` lays out every row it is given each time rows are inserted, asking the delegate
for each row's size (about 6 µs a row from Python): 100,000 rows would stall the GUI for most
of a second on every new message. So the model keeps all entries in a Python list, sorted by
message id and de-duplicated, but shows only a window at the end of it: the view reveals older
rows as the user scrolls up (:meth:`ChatModel.reveal_older`) and drops rows far above the
screen while the user is reading the newest ones (:meth:`ChatModel.trim_older`). Only when the
whole list is shown and the user scrolls to the top does the view ask the server for history.

While the user is at the bottom the view also sets :attr:`ChatModel.keep_rows`: new messages
appended at the end then push the oldest shown rows out in the same step (hidden first, then
inserted), so a batch costs the view one layout of at most ``keep_rows`` rows however large it
is, instead of a layout of every row inserted followed by another after trimming.

A message the user sent that the server has not echoed yet is a *pending* entry (greyed, "sending…"
instead of a time), kept after every received entry; its echo (a message with the same ``ref``)
replaces it, and :meth:`ChatModel.settle` drops one the server refused or had delivered already.

Entries carry the layout facts the delegate needs (grouped with the previous message, first of a
day, mentions me, link ranges) and a height cache keyed by width.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt

from desktop_chat.net.protocol.events import ChatMessage, FileInfo
from desktop_chat.net.protocol.names import name_key
from desktop_chat.ui.message_text import Span, action_text, find_links, find_mentions
from desktop_chat.ui.programs import PROGRAM_NOTE, is_program

# Consecutive messages from one sender within this time share one header.
GROUP_WINDOW_MS = 5 * 60 * 1000
# Pending entries sort after every message id the server can give.
PENDING_ORDER = 2**62
SENDING = "sending…"


class Kind(IntEnum):
    MESSAGE = 0
    ACTION = 1  # /me
    SYSTEM = 2  # joins, leaves, notices
    ERROR = 3  # an error reply from the server, shown where it happened


class Role(IntEnum):
    ENTRY = Qt.ItemDataRole.UserRole + 1
    SENDER = Qt.ItemDataRole.UserRole + 2
    TIMESTAMP = Qt.ItemDataRole.UserRole + 3
    KIND = Qt.ItemDataRole.UserRole + 4
    MENTION = Qt.ItemDataRole.UserRole + 5
    GROUPED = Qt.ItemDataRole.UserRole + 6
    MESSAGE_ID = Qt.ItemDataRole.UserRole + 7
    LINKS = Qt.ItemDataRole.UserRole + 8


@dataclass(slots=True, eq=False)
class Entry:
    """One row: a message or a system line. Layout fields are maintained by the model."""

    kind: Kind
    text: str  # exactly as received: the body, or the system line
    sender: str = ""
    ts: int = 0  # Unix milliseconds
    msg_id: int | None = None  # messages only
    order_id: int = 0  # the message id, or for a system line the id of the message before it
    seq: int = 0  # orders system lines that follow the same message
    own: bool = False
    mention_spans: tuple[Span, ...] = ()
    links: tuple[Span, ...] = ()
    day: int = 0  # local calendar day (ordinal)
    grouped: bool = False
    day_break: bool = False
    cache_width: int = -1
    cache_height: int = 0
    clock: str = ""  # local HH:MM, filled in when first painted
    ref: object = None  # own messages sent from here: the say/dm ref
    pending: bool = False  # sent, not echoed yet
    file: FileInfo | None = None  # a shared file: the row is its card
    thumb: Any = None  # a picture's QImage preview, decoded at bounded size, once fetched
    thumb_asked: bool = False  # its preview was asked for (when first painted)
    thumb_failed: bool = False  # no preview can be made (too large, a bomb): the icon shows
    thumb_note: str = ""  # why not ("too large to preview"), said on the card
    file_note: str = ""  # what became of saving it here ("saving… 40 %", "saved as x.pdf")

    @property
    def mention(self) -> bool:
        return bool(self.mention_spans)

    @property
    def local_time(self) -> datetime:
        return datetime.fromtimestamp(self.ts / 1000)


class _DayCache:
    """Local calendar day of a timestamp; remembers the last day's bounds (messages cluster)."""

    __slots__ = ("day", "hi", "lo")

    def __init__(self) -> None:
        self.lo = self.hi = 0
        self.day = 0

    def __call__(self, ts_ms: int) -> int:
        if self.lo <= ts_ms < self.hi:
            return self.day
        moment = datetime.fromtimestamp(ts_ms / 1000)
        midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        self.lo = int(midnight.timestamp() * 1000)
        # The next midnight is within 23-25 hours (daylight saving); keep the bound exact.
        self.hi = self.lo + 22 * 3600 * 1000
        self.day = moment.toordinal()
        return self.day


def file_label(info: FileInfo) -> str:
    """A file message as one line of text (copying, searching; the row itself is a card)."""
    size = float(info.size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            break
        size /= 1024
    shown = f"{info.size} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
    tail = " — expired: the server no longer has it" if info.expired else ""
    return f"📎 {info.name} ({shown}){tail}"


def file_accessible_text(info: FileInfo) -> str:
    """What a screen reader says for a file's card: its buttons are painted, so the keys are
    part of the text."""
    size = file_label(info).rpartition(" (")[2].partition(")")[0]
    name = "".join(ch if ch.isprintable() else " " for ch in info.name)
    if info.expired:
        return f"file {name}, {size}, expired: the server no longer has it"
    if is_program(info.name):
        keys = f"A {PROGRAM_NOTE}. Enter saves it to Downloads"
    else:
        keys = "Enter saves it to Downloads; Left and Right choose Save or Open"
    if info.mime in ("image/png", "image/jpeg", "image/gif", "image/webp"):
        keys += ", or View to see the picture"
    return f"file {name}, {size}. {keys}"


def _sort_key(entry: Entry) -> tuple[int, int]:
    return (entry.order_id, entry.seq)


class ChatModel(QAbstractListModel):
    """Messages of one conversation, oldest first; rows are a window at the end of them.

    Signals: the standard model signals only (rowsInserted, rowsRemoved, dataChanged...).
    """

    def __init__(self, me: str | None = None, parent: Any = None) -> None:
        super().__init__(parent)
        self._all: list[Entry] = []
        self._start = 0  # index in _all of row 0
        self._ids: set[int] = set()
        self._seq = 0
        self._day_of = _DayCache()
        self._sender_keys: dict[str, str] = {}
        self.me = me
        # At most this many rows stay shown when entries are appended at the end (None: no
        # limit); set by the view while the user reads the newest messages.
        self.keep_rows: int | None = None

    # -- Qt model interface ------------------------------------------------------------------

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._all) - self._start

    def data(
        self,
        index: QModelIndex | QPersistentModelIndex,
        role: int = Qt.ItemDataRole.DisplayRole,
    ) -> Any:
        row = index.row()
        if not index.isValid() or row < 0 or row >= len(self._all) - self._start:
            return None
        entry = self._all[self._start + row]
        if role == Role.ENTRY:
            return entry
        if role == Qt.ItemDataRole.DisplayRole:
            return entry.text
        if role == Role.SENDER:
            return entry.sender
        if role == Role.TIMESTAMP:
            return entry.ts
        if role == Role.KIND:
            return int(entry.kind)
        if role == Role.MENTION:
            return entry.mention
        if role == Role.GROUPED:
            return entry.grouped
        if role == Role.MESSAGE_ID:
            return entry.msg_id
        if role == Role.LINKS:
            return [span.url for span in entry.links]
        if role == Qt.ItemDataRole.ToolTipRole:
            return entry.local_time.strftime("%A %d %B %Y, %H:%M:%S")
        if role == Qt.ItemDataRole.AccessibleTextRole:
            when = SENDING if entry.pending else entry.local_time.strftime("%H:%M")
            if entry.kind in (Kind.SYSTEM, Kind.ERROR):
                return f"{entry.text}, {when}"
            if entry.file is not None:
                return f"{entry.sender}, {when}: {file_accessible_text(entry.file)}"
            return f"{entry.sender}, {when}: {entry.text}"
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    # -- reading -----------------------------------------------------------------------------

    @property
    def total(self) -> int:
        """Every entry held, shown or not."""
        return len(self._all)

    @property
    def hidden_older(self) -> int:
        """Entries older than row 0 that are held but not shown."""
        return self._start

    def oldest_id(self) -> int | None:
        for entry in self._all:
            if entry.msg_id is not None:
                return entry.msg_id
        return None

    def newest_id(self) -> int | None:
        for entry in reversed(self._all):
            if entry.msg_id is not None:
                return entry.msg_id
        return None

    def entry(self, row: int) -> Entry:
        return self._all[self._start + row]

    def entries(self) -> Sequence[Entry]:
        """All held entries, oldest first (read-only use)."""
        return self._all

    def has_message(self, msg_id: int) -> bool:
        return msg_id in self._ids

    def pending(self) -> list[Entry]:
        """Sent and not echoed yet, oldest first."""
        return [e for e in self._all if e.pending]

    # -- adding ------------------------------------------------------------------------------

    def set_me(self, me: str | None) -> None:
        """Set my name: recomputes which held messages mention me (rare: rename or welcome)."""
        if me == self.me:
            return
        self.me = me
        key = name_key(me) if me else None
        for entry in self._all:
            if entry.kind in (Kind.MESSAGE, Kind.ACTION):
                entry.own = key is not None and name_key(entry.sender) == key
                entry.mention_spans = () if entry.own else find_mentions(entry.text, me)
        if self.rowCount():
            self.dataChanged.emit(self.index(0), self.index(self.rowCount() - 1))

    def _sender_key(self, name: str) -> str:
        key = self._sender_keys.get(name)
        if key is None:
            key = self._sender_keys[name] = name_key(name)
        return key

    def _make_entry(self, msg: ChatMessage) -> Entry:
        action = action_text(msg.from_, msg.text)
        kind = Kind.ACTION if action is not None or msg.me else Kind.MESSAGE
        own = self.me is not None and self._sender_key(msg.from_) == self._sender_key(self.me)
        return Entry(
            kind=kind,
            text=file_label(msg.file) if msg.file is not None else msg.text,
            file=msg.file,
            sender=msg.from_,
            ts=msg.ts,
            msg_id=msg.id,
            order_id=msg.id,
            own=own,
            mention_spans=() if own else find_mentions(msg.text, self.me),
            links=find_links(msg.text),
            day=self._day_of(msg.ts),
        )

    def add_messages(self, messages: Iterable[ChatMessage]) -> list[Entry]:
        """Add messages not held yet (by id), in id order; return the entries added."""
        fresh: list[Entry] = []
        for msg in messages:
            if msg.ref is not None:
                self.settle(msg.ref)  # the echo takes the pending entry's place
            if msg.id in self._ids:
                continue
            self._ids.add(msg.id)
            fresh.append(self._make_entry(msg))
        if fresh:
            fresh.sort(key=_sort_key)
            self._insert_sorted(fresh)
        return fresh

    def add_message(self, msg: ChatMessage) -> Entry | None:
        added = self.add_messages((msg,))
        return added[0] if added else None

    def add_pending(self, text: str, ref: object, *, action: bool = False) -> Entry:
        """Show a message just sent, marked "sending…" until :meth:`settle` or its echo."""
        self._seq += 1
        now = int(time.time() * 1000)
        sender = self.me or ""
        entry = Entry(
            kind=Kind.ACTION if action else Kind.MESSAGE,
            text=text,
            sender=sender,
            ts=now,
            order_id=PENDING_ORDER,
            seq=self._seq,
            own=True,
            links=find_links(text),
            day=self._day_of(now),
            clock=SENDING,
            ref=ref,
            pending=True,
        )
        self._insert_sorted([entry])
        return entry

    def settle(self, ref: object) -> bool:
        """Drop the pending entry with ``ref`` (delivered or refused); False if none."""
        for i in range(len(self._all) - 1, -1, -1):
            entry = self._all[i]
            if not entry.pending:
                return False  # pending entries are all at the end
            if entry.ref == ref:
                self._remove_at(i)
                return True
        return False

    def _remove_at(self, i: int) -> None:
        if i < self._start:
            del self._all[i]
            self._start -= 1
        else:
            row = i - self._start
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._all[i]
            self.endRemoveRows()
        if i < len(self._all) and self._refresh_layout_facts(i) and i >= self._start:
            idx = self.index(i - self._start)
            self.dataChanged.emit(idx, idx)

    def _newest_order(self) -> int:
        for entry in reversed(self._all):
            if not entry.pending:
                return entry.order_id
        return 0

    def add_system(self, text: str, *, kind: Kind = Kind.SYSTEM, ts: int | None = None) -> Entry:
        """Append a system line (join, leave, notice, error) after the newest message."""
        self._seq += 1
        now = int(time.time() * 1000) if ts is None else ts
        entry = Entry(
            kind=kind,
            text=text,
            ts=now,
            order_id=self._newest_order(),
            seq=self._seq,
            links=find_links(text),
            day=self._day_of(now),
        )
        self._insert_sorted([entry])
        return entry

    def _insert_sorted(self, fresh: list[Entry]) -> None:
        """Insert entries (sorted among themselves) into place, as few row batches as possible."""
        all_ = self._all
        if not all_ or _sort_key(all_[-1]) < _sort_key(fresh[0]):
            self._append(fresh)  # the live case: everything is newer
            return
        runs: list[tuple[int, list[Entry]]] = []
        for entry in fresh:
            pos = bisect.bisect_right(all_, _sort_key(entry), key=_sort_key)
            if runs and runs[-1][0] == pos:
                runs[-1][1].append(entry)
            else:
                runs.append((pos, [entry]))
        # Back to front, so the positions found above stay valid.
        for pos, run in reversed(runs):
            self._insert_run(pos, run)

    def _append(self, run: list[Entry]) -> None:
        """Append newer entries; with ``keep_rows``, hide the oldest shown rows first and show
        only the newest ``keep_rows`` entries of a run longer than that."""
        keep = self.keep_rows
        if keep is not None:
            shown = len(self._all) - self._start
            drop = min(shown, shown + len(run) - keep)
            if drop > 0:
                self.trim_older(shown - drop)
            beyond = len(run) - keep
            if beyond > 0:  # every shown row is hidden now: the first ones land hidden too
                pos = len(self._all)
                self._all.extend(run[:beyond])
                self._start += beyond
                for i in range(pos, pos + beyond):
                    self._refresh_layout_facts(i)
                run = run[beyond:]
        if run:
            self._insert_run(len(self._all), run)

    def _insert_run(self, pos: int, run: list[Entry]) -> None:
        all_ = self._all
        if pos < self._start:
            # Lands among the hidden older entries: no rows appear, the window's offset moves.
            all_[pos:pos] = run
            self._start += len(run)
            for i in range(pos, pos + len(run)):
                self._refresh_layout_facts(i)
        else:
            first_row = pos - self._start
            self.beginInsertRows(QModelIndex(), first_row, first_row + len(run) - 1)
            all_[pos:pos] = run
            for i in range(pos, pos + len(run)):
                self._refresh_layout_facts(i)
            self.endInsertRows()
        follower = pos + len(run)
        if follower < len(all_) and self._refresh_layout_facts(follower):
            row = follower - self._start
            if row >= 0:
                idx = self.index(row)
                self.dataChanged.emit(idx, idx)

    def _refresh_layout_facts(self, i: int) -> bool:
        entry = self._all[i]
        prev = self._all[i - 1] if i > 0 else None
        day_break = prev is None or prev.day != entry.day
        grouped = (
            prev is not None
            and not day_break
            and entry.kind == Kind.MESSAGE
            and prev.kind == Kind.MESSAGE
            and not entry.pending  # its header says "sending…"
            and not prev.pending
            and prev.sender == entry.sender
            and 0 <= entry.ts - prev.ts < GROUP_WINDOW_MS
        )
        if grouped == entry.grouped and day_break == entry.day_break:
            return False
        entry.grouped = grouped
        entry.day_break = day_break
        entry.cache_width = -1
        return True

    # -- the window --------------------------------------------------------------------------

    def reveal_older(self, count: int) -> int:
        """Show up to ``count`` more held entries above row 0; return how many."""
        count = min(count, self._start)
        if count <= 0:
            return 0
        self.beginInsertRows(QModelIndex(), 0, count - 1)
        self._start -= count
        self.endInsertRows()
        return count

    def trim_older(self, keep: int) -> int:
        """Stop showing all but the newest ``keep`` rows (they stay held); return how many."""
        drop = self.rowCount() - keep
        if drop <= 0:
            return 0
        self.beginRemoveRows(QModelIndex(), 0, drop - 1)
        self._start += drop
        self.endRemoveRows()
        return drop

    def invalidate_sizes(self) -> None:
        """Forget cached heights (font or theme change)."""
        for entry in self._all:
            entry.cache_width = -1
