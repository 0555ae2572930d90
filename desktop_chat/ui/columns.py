"""The main window's three columns on small screens: the side panels give way, the conversation
keeps room to read.

:func:`column_widths` decides, for a window width, how wide the sidebar and the people list are:
at their preferred widths when there is room; else both shrink, the people list first; and when
even their smallest widths would leave the conversation under :data:`CHAT_MIN` pixels, the
people list is folded away (View ▸ People list brings it back, the header still counts people).
:class:`ColumnFitter` applies that to the splitter each time the window is resized.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QSplitter, QWidget

CHAT_MIN = 420  # the conversation column is never narrower while a side panel can give way
SIDE_WIDTH, SIDE_MIN = 240, 170
PEOPLE_WIDTH, PEOPLE_MIN = 220, 140


def column_widths(total: int, people_wanted: bool = True) -> tuple[int, int, int]:
    """``(sidebar, chat, people)`` for a window ``total`` pixels wide; people 0 = folded."""
    if not people_wanted:
        side = max(SIDE_MIN, min(SIDE_WIDTH, total - CHAT_MIN))
        return side, max(0, total - side), 0
    spare = total - CHAT_MIN
    if spare >= SIDE_WIDTH + PEOPLE_WIDTH:
        return SIDE_WIDTH, total - SIDE_WIDTH - PEOPLE_WIDTH, PEOPLE_WIDTH
    if spare >= SIDE_MIN + PEOPLE_MIN:
        # Share what is left: the people list gives way first, then the sidebar.
        people = max(PEOPLE_MIN, min(PEOPLE_WIDTH, spare - SIDE_WIDTH))
        side = min(SIDE_WIDTH, spare - people)
        return side, total - side - people, people
    return column_widths(total, people_wanted=False)


class ColumnFitter(QObject):
    """Keeps ``splitter``'s three columns fitted to ``window``'s width (see the module).

    ``people_visible`` is the person's choice (View ▸ People list); the list is also folded
    while the window is too narrow for it.

    Signals: none.
    """

    def __init__(
        self, window: QWidget, splitter: QSplitter, sidebar: QWidget, people: QWidget
    ) -> None:
        super().__init__(window)
        self.window = window
        self.splitter = splitter
        self.people = people
        self.people_visible = True
        self.folded = False  # folded for lack of room (not by choice)
        sidebar.setMinimumWidth(SIDE_MIN)
        people.setMinimumWidth(PEOPLE_MIN)
        window.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.window and event.type() in (QEvent.Type.Resize, QEvent.Type.Show):
            self.fit()
        return False

    def set_people_visible(self, visible: bool) -> None:
        self.people_visible = visible
        self.fit()

    def fit(self) -> None:
        handle = self.splitter.handleWidth()
        total = self.window.width() - 2 * handle
        side, chat, people = column_widths(total, self.people_visible)
        if not people:
            chat += handle  # one handle fewer between the columns left
        self.folded = self.people_visible and people == 0
        self.people.setVisible(people > 0)
        current = self.splitter.sizes()
        arranged = len(current) == 3 and current[0] >= SIDE_MIN and current[2] >= PEOPLE_MIN
        if people and arranged and current[1] >= CHAT_MIN:
            return  # room enough as the person arranged it: leave their dragging alone
        self.splitter.setSizes([side, chat, people])
