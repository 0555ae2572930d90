"""The Join screen's live list of the chats found on the network.

:class:`DiscoverySetup` says how to look (which interfaces, which broadcast port, how often);
it is injected, so tests keep every packet on 127.0.0.1. :class:`FoundServersModel` is a table
over :class:`~desktop_chat.net.advert.FoundServer` rows, updated by difference (a host's
``name`` is its key), so a people count changing does not lose the selection.
:class:`FoundServersWidget` shows it, owns the
:class:`~desktop_chat.net.discovery.DiscoveryBrowser` between :meth:`~FoundServersWidget.start`
and :meth:`~FoundServersWidget.stop`, and opens the "Why can't I see anyone?" check.

The browser reports from its own threads; the only thing those threads do here is emit a
signal of a small relay object, delivered queued in the GUI thread (architecture habit 5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import cache

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPointF,
    QRectF,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPalette, QPen, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QStackedWidget,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from desktop_chat.net.discovery.advert import FoundServer
from desktop_chat.net.discovery.broadcast import BROADCAST_PORT
from desktop_chat.net.discovery.mdns import DiscoveryBrowser
from desktop_chat.net.server.server import DEFAULT_PORT
from desktop_chat.ui.netcheck_dialog import NetCheckDialog
from desktop_chat.ui.room_list import draw_lock

OnChange = Callable[[list[FoundServer]], None]

SERVER_ROLE = Qt.ItemDataRole.UserRole + 1
"""The row's :class:`FoundServer` (any column)."""

# Amber and green read on light and dark backgrounds alike.
_LOCK_COLOUR = QColor("#c98a00")
_SHIELD_COLOUR = QColor("#2f9e57")


@dataclass(frozen=True)
class DiscoverySetup:
    """How the Join screen looks for chats; the defaults are the real LAN.

    ``interfaces`` restricts mDNS and the broadcast probes to those IPv4 addresses (tests:
    ``("127.0.0.1",)`` with ``broadcast_address="127.255.255.255"`` and a port of their own).
    ``broadcast_port=None`` turns the broadcast fallback off. ``check_timeout`` is how long
    the network check waits for answers.
    """

    interfaces: tuple[str, ...] | None = None
    broadcast_port: int | None = BROADCAST_PORT
    broadcast_address: str | None = None
    mdns: bool = True
    probe_interval: float = 4.0
    probe_window: float = 1.0
    missed_probes: int = 3
    check_timeout: float = 2.0

    def browser(self, on_change: OnChange) -> DiscoveryBrowser:
        """A new, unstarted browser reporting to ``on_change`` (from its own threads)."""
        return DiscoveryBrowser(
            on_change,
            interfaces=self.interfaces,
            broadcast_port=self.broadcast_port,
            broadcast_address=self.broadcast_address,
            mdns=self.mdns,
            probe_interval=self.probe_interval,
            probe_window=self.probe_window,
            missed_probes=self.missed_probes,
        )


class Column(IntEnum):
    CHAT = 0
    PEOPLE = 1
    SECURITY = 2
    ADDRESS = 3


_HEADERS = {
    Column.CHAT: "Chat",
    Column.PEOPLE: "People",
    Column.SECURITY: "Security",
    Column.ADDRESS: "Address",
}


def people_text(count: int) -> str:
    return "1 person" if count == 1 else f"{count} people"


def encrypted(server: FoundServer) -> bool:
    # The desktop app always asks for TLS, so "offered" means an encrypted connection too.
    return server.tls in ("offered", "required")


def describe(server: FoundServer) -> str:
    """One sentence about a found chat, for tooltips and screen readers."""
    parts = [f"“{server.title}” at {server.join_address}", people_text(server.people)]
    parts.append("password needed" if server.password else "no password")
    parts.append("encrypted" if encrypted(server) else "not encrypted")
    return ", ".join(parts)


def _glyph_icon(draw: Callable[[QPainter, QRectF], None]) -> QIcon:
    """An icon drawn by ``draw`` at the sizes views ask for (no image files to package)."""
    icon = QIcon()
    for size in (16, 24, 32, 48):
        pixmap = QPixmap(size, size)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        draw(painter, QRectF(0, 0, size, size))
        painter.end()
        icon.addPixmap(pixmap)
    return icon


def _draw_shield(painter: QPainter, box: QRectF) -> None:
    """A green shield with a tick: the connection is encrypted."""
    painter.translate(box.topLeft())
    painter.scale(box.width(), box.height())  # draw in a unit square
    shield = QPainterPath(QPointF(0.5, 0.06))
    shield.lineTo(0.86, 0.2)
    shield.cubicTo(0.86, 0.6, 0.72, 0.8, 0.5, 0.95)
    shield.cubicTo(0.28, 0.8, 0.14, 0.6, 0.14, 0.2)
    shield.closeSubpath()
    painter.fillPath(shield, _SHIELD_COLOUR)
    tick = QPainterPath(QPointF(0.32, 0.5))
    tick.lineTo(0.46, 0.64)
    tick.lineTo(0.7, 0.36)
    painter.strokePath(tick, QPen(QColor("#ffffff"), max(1.3 / box.width(), 0.1)))


@cache
def _icon(kind: str) -> QIcon:
    """ "lock", "shield" or "blank" (keeps texts aligned); made on first use, as a QPixmap
    needs the QApplication, then kept."""
    draws: dict[str, Callable[[QPainter, QRectF], None]] = {
        "lock": lambda painter, box: draw_lock(painter, box, _LOCK_COLOUR),
        "shield": _draw_shield,
        "blank": lambda painter, box: None,
    }
    return _glyph_icon(draws[kind])


class FoundServersModel(QAbstractTableModel):
    """The chats found, one row each, in the order the browser gives (by title)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[FoundServer] = []

    # -- reading -----------------------------------------------------------------------

    def servers(self) -> list[FoundServer]:
        return list(self._rows)

    def server(self, row: int) -> FoundServer:
        return self._rows[row]

    def row_of(self, name: str) -> int:
        """The row of the server called ``name``, or -1."""
        for row, server in enumerate(self._rows):
            if server.name == name:
                return row
        return -1

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(Column)

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return (
            Qt.ItemFlag.ItemIsEnabled
            | Qt.ItemFlag.ItemIsSelectable
            | Qt.ItemFlag.ItemNeverHasChildren
        )

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        horizontal = orientation == Qt.Orientation.Horizontal
        if horizontal and role == Qt.ItemDataRole.DisplayRole and 0 <= section < len(Column):
            return _HEADERS[Column(section)]
        return None

    def data(
        self,
        index: QModelIndex | QPersistentModelIndex,
        role: int = Qt.ItemDataRole.DisplayRole,
    ) -> object:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        server = self._rows[index.row()]
        column = Column(index.column())
        if role == SERVER_ROLE:
            return server
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(server, column)
        if role == Qt.ItemDataRole.DecorationRole:
            if column == Column.CHAT:
                return _icon("lock" if server.password else "blank")
            if column == Column.SECURITY:
                return _icon("shield" if encrypted(server) else "blank")
            return None
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(server)
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return describe(server) if column == Column.CHAT else self._text(server, column)
        if role == Qt.ItemDataRole.TextAlignmentRole and column == Column.PEOPLE:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _text(self, server: FoundServer, column: Column) -> str:
        if column == Column.CHAT:
            return server.title
        if column == Column.PEOPLE:
            return str(server.people)
        if column == Column.SECURITY:
            return "Encrypted" if encrypted(server) else "Not encrypted"
        return server.join_address

    def _tooltip(self, server: FoundServer) -> str:
        lines = [server.title, people_text(server.people)]
        lines.append("A password is needed to join." if server.password else "No password.")
        if encrypted(server):
            lines.append("Encrypted connection (TLS).")
            if server.fingerprint:
                lines.append(f"Certificate fingerprint: {server.fingerprint[:16]}…")
        else:
            lines.append("This chat does not offer encryption.")
        lines.append(f"Address: {server.join_address}")
        others = server.addresses[1:]
        if others:
            lines.append(f"Also reachable at: {', '.join(others)}")
        lines.append("Double-click to join.")
        return "\n".join(lines)

    # -- updating ----------------------------------------------------------------------

    def set_servers(self, servers: Sequence[FoundServer]) -> None:
        """Make the rows equal ``servers`` with the fewest row changes (selection-friendly)."""
        new: list[FoundServer] = []
        seen: set[str] = set()
        for server in servers:
            if server.name not in seen:
                seen.add(server.name)
                new.append(server)
        self._rename_moved_sources(new)
        for row in reversed(range(len(self._rows))):
            if self._rows[row].name not in seen:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._rows[row]
                self.endRemoveRows()
        for target, server in enumerate(new):
            # Rows before `target` already match, so a row found later is further down.
            source = self.row_of(server.name)
            if source < 0:
                self.beginInsertRows(QModelIndex(), target, target)
                self._rows.insert(target, server)
                self.endInsertRows()
                continue
            if source != target:
                self.beginMoveRows(QModelIndex(), source, source, QModelIndex(), target)
                self._rows.insert(target, self._rows.pop(source))
                self.endMoveRows()
            if self._rows[target] != server:
                self._replace(target, server)

    def _rename_moved_sources(self, new: list[FoundServer]) -> None:
        """A host heard first by broadcast, then by mDNS, changes its name but not where it
        is: keep its row (and the selection on it) when the join address matches."""
        old_names = {s.name for s in self._rows}
        new_names = {s.name for s in new}
        arrivals = {s.join_address: s for s in new if s.name not in old_names}
        for row, old in enumerate(self._rows):
            if old.name in new_names:
                continue
            twin = arrivals.pop(old.join_address, None)
            if twin is not None:
                self._replace(row, twin)

    def _replace(self, row: int, server: FoundServer) -> None:
        self._rows[row] = server
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(Column) - 1))


class _Relay(QObject):
    """Carries the browser's reports (from its threads) into the GUI thread, queued."""

    changed = Signal(int, object)


class FoundServersWidget(QWidget):
    """ "Chats on your network": the live list, a status line, and the network-check button.

    Nothing is looked for until :meth:`start`; :meth:`stop` closes the browser (its threads
    joined) and empties the list. Clicking a row (or pressing Enter on it) chooses it; the
    dialog around fills in the address. Double-clicking asks to join at once.

    Signals:
        serverChosen(object): a :class:`FoundServer` clicked or activated.
        joinRequested(object): a :class:`FoundServer` double-clicked.
        countChanged(int): how many chats are listed, after every change.
    """

    serverChosen = Signal(object)
    joinRequested = Signal(object)
    countChanged = Signal(int)

    def __init__(
        self,
        setup: DiscoverySetup | None = None,
        parent: QWidget | None = None,
        *,
        quiet_after: float = 6.0,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("foundServers")
        self.setup = setup if setup is not None else DiscoverySetup()
        self.model = FoundServersModel(self)
        self._browser: DiscoveryBrowser | None = None
        self._generation = 0
        self._problems: list[str] = []
        self._check_port = DEFAULT_PORT
        self._check_dialog: NetCheckDialog | None = None
        self._relay = _Relay(self)
        self._relay.changed.connect(self._on_browser_change, Qt.ConnectionType.QueuedConnection)
        # After a while with nothing found, the status line stops saying "Looking…".
        self._quiet_timer = QTimer(self)
        self._quiet_timer.setSingleShot(True)
        self._quiet_timer.setInterval(int(quiet_after * 1000))
        self._quiet_timer.timeout.connect(self._refresh_status)
        self._build()
        self._refresh_status()

    def _build(self) -> None:
        self.setStyleSheet(
            """
            QLabel#foundTitle { font-weight: 700; }
            QLabel#foundPlaceholder { color: palette(placeholder-text); }
            QPushButton#netcheckButton {
                border: none; padding: 0; color: palette(link); text-decoration: underline;
                background: transparent;
            }
            """
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 6, 0, 4)
        layout.setSpacing(4)

        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        self.title_label = QLabel("Chats on your network")
        self.title_label.setObjectName("foundTitle")
        self.check_button = QPushButton("Why can't I see anyone?")
        self.check_button.setObjectName("netcheckButton")
        self.check_button.setAccessibleName("Why can't I see anyone? Check the network")
        self.check_button.setToolTip("Check this computer's network and say what blocks discovery")
        self.check_button.setAutoDefault(False)
        self.check_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.check_button.clicked.connect(self.open_check)
        header.addWidget(self.title_label)
        header.addStretch(1)
        header.addWidget(self.check_button)
        layout.addLayout(header)

        self.view = QTreeView()
        self.view.setObjectName("foundView")
        self.view.setAccessibleName("Chats on your network")
        self.view.setModel(self.model)
        self.view.setRootIsDecorated(False)
        self.view.setItemsExpandable(False)
        self.view.setUniformRowHeights(True)
        self.view.setAlternatingRowColors(True)
        self.view.setAllColumnsShowFocus(True)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setTextElideMode(Qt.TextElideMode.ElideRight)
        head = self.view.header()
        head.setStretchLastSection(False)
        head.setSectionResizeMode(Column.CHAT, QHeaderView.ResizeMode.Stretch)
        for column in (Column.PEOPLE, Column.SECURITY, Column.ADDRESS):
            head.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.view.clicked.connect(self._chosen)
        # Enter emits activated and then reaches the dialog's default button: choose + join.
        self.view.activated.connect(self._chosen)
        self.view.doubleClicked.connect(self._double_clicked)

        self.placeholder = QLabel()
        self.placeholder.setObjectName("foundPlaceholder")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setMargin(12)
        # Framed on the list's background: the same place, empty for now.
        self.placeholder.setFrameShape(QFrame.Shape.StyledPanel)
        self.placeholder.setBackgroundRole(QPalette.ColorRole.Base)
        self.placeholder.setAutoFillBackground(True)

        self.stack = QStackedWidget()
        self.stack.addWidget(self.placeholder)
        self.stack.addWidget(self.view)
        self.stack.setMinimumHeight(110)
        layout.addWidget(self.stack, 1)

    # -- discovery ---------------------------------------------------------------------

    def start(self) -> None:
        """Start looking (no-op while looking); reports arrive in the GUI thread."""
        if self._browser is not None:
            return
        self._generation += 1
        generation, relay = self._generation, self._relay

        def on_change(servers: list[FoundServer]) -> None:
            relay.changed.emit(generation, servers)  # browser thread: no widget work here

        try:
            browser = self.setup.browser(on_change)
            browser.start()
        except (OSError, ValueError) as exc:
            self._problems = [f"Automatic discovery cannot start here: {exc}"]
            self._refresh_status()
            return
        self._browser = browser
        self._problems = list(browser.problems)
        self._quiet_timer.start()
        self._refresh_status()

    def stop(self) -> None:
        """Stop looking: the browser is closed and its threads joined; the list empties."""
        browser, self._browser = self._browser, None
        self._generation += 1  # reports still queued from that browser are dropped
        self._quiet_timer.stop()
        if browser is not None:
            browser.close()
        self._set_servers([])
        if self._check_dialog is not None:
            self._check_dialog.close()  # its check finishes on its own; nothing blocks here

    def is_browsing(self) -> bool:
        return self._browser is not None

    def problems(self) -> list[str]:
        """Why discovery does not fully work here (empty when it does), in plain words."""
        return list(self._problems)

    def servers(self) -> list[FoundServer]:
        return self.model.servers()

    @Slot(int, object)
    def _on_browser_change(self, generation: int, servers: list[FoundServer]) -> None:
        if generation != self._generation:
            return
        if self._browser is not None:
            self._problems = list(self._browser.problems)
        self._set_servers(servers)

    def _set_servers(self, servers: Sequence[FoundServer]) -> None:
        before = self.model.rowCount()
        self.model.set_servers(servers)
        count = self.model.rowCount()
        self._refresh_status()
        if count != before:
            self.countChanged.emit(count)

    def _refresh_status(self) -> None:
        count = self.model.rowCount()
        if count:
            self.stack.setCurrentWidget(self.view)
            return
        if self._problems:
            text = (
                "Automatic discovery does not work here. Type the address of the chat "
                "below, or click “Why can't I see anyone?”."
            )
        elif self._browser is None:
            text = "Not looking for chats on the network."
        elif self._quiet_timer.isActive():
            text = "Looking for chats on your network…"
        else:
            text = (
                "No chats found yet. A chat appears here as soon as someone starts one; "
                "you can also type its address below."
            )
        self.placeholder.setText(text)
        self.placeholder.setToolTip("\n".join(self._problems))
        self.stack.setCurrentWidget(self.placeholder)

    # -- choosing ----------------------------------------------------------------------

    def selected(self) -> FoundServer | None:
        index = self.view.currentIndex()
        if not index.isValid() or not self.view.selectionModel().isSelected(index):
            return None
        return self.model.server(index.row())

    def select(self, name: str) -> bool:
        """Make the server called ``name`` the current row; False if it is not listed."""
        row = self.model.row_of(name)
        if row < 0:
            return False
        self.view.setCurrentIndex(self.model.index(row, 0))
        return True

    @Slot(QModelIndex)
    def _chosen(self, index: QModelIndex) -> None:
        if index.isValid():
            self.serverChosen.emit(self.model.server(index.row()))

    @Slot(QModelIndex)
    def _double_clicked(self, index: QModelIndex) -> None:
        if index.isValid():
            self.joinRequested.emit(self.model.server(index.row()))

    # -- the network check -------------------------------------------------------------

    def set_check_port(self, port: int) -> None:
        """The port the network check tests (the one this computer would host on)."""
        self._check_port = port

    def check_dialog(self) -> NetCheckDialog | None:
        return self._check_dialog

    @Slot()
    def open_check(self) -> NetCheckDialog:
        """Show "Why can't I see anyone?"; it checks the network each time it opens."""
        dialog = self._check_dialog
        if dialog is None:
            setup = self.setup
            dialog = NetCheckDialog(
                self._check_port,
                interfaces=setup.interfaces,
                broadcast_port=setup.broadcast_port or BROADCAST_PORT,
                timeout=setup.check_timeout,
                parent=self,
            )
            self._check_dialog = dialog
        dialog.set_port(self._check_port)
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()
        return dialog
