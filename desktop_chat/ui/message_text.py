"""What is inside a message's text: links, @mentions and ``/me`` actions (no Qt).

Message text is always shown as plain text; these functions only find character ranges that
the delegate underlines (links) or highlights (mentions of me). Nothing here interprets markup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from desktop_chat.net.protocol.names import name_key

# Scheme links and bare www. links; stops at white space and at characters that usually
# surround a link in prose rather than belong to it.
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
_TRAILING = ".,;:!?'\"»”’"
_PAIRS = {")": "(", "]": "[", "}": "{"}

ACTION_PREFIX = "* "


@dataclass(frozen=True, slots=True)
class Span:
    """A ``[start, end)`` range of the text; ``url`` is set for links."""

    start: int
    end: int
    url: str = ""


def find_links(text: str) -> tuple[Span, ...]:
    """Every http(s):// or www. link in ``text``, trailing punctuation left out."""
    if "://" not in text and "ww." not in text.lower():
        return ()  # the common case, without running the expression
    spans: list[Span] = []
    for match in _URL.finditer(text):
        start, end = match.span()
        while end > start:
            last = text[end - 1]
            if last in _TRAILING:
                end -= 1
            elif last in _PAIRS and text.count(_PAIRS[last], start, end) < text.count(
                last, start, end
            ):
                end -= 1  # an unbalanced closing bracket belongs to the prose
            else:
                break
        raw = text[start:end]
        if len(raw) <= len("www.") or raw.casefold() in ("http://", "https://"):
            continue
        url = raw if "://" in raw else "http://" + raw
        spans.append(Span(start, end, url))
    return tuple(spans)


def _is_name_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_-"


def find_mentions(text: str, name: str | None) -> tuple[Span, ...]:
    """Ranges of ``@name`` in ``text`` (any case), not followed by more name characters."""
    if not name or "@" not in text:
        return ()
    key = name_key(name)
    n = len(name)
    spans: list[Span] = []
    at = text.find("@")
    while at != -1:
        candidate = text[at + 1 : at + 1 + n]
        after = text[at + 1 + n : at + 2 + n]
        if name_key(candidate) == key and not (after and _is_name_char(after)):
            spans.append(Span(at, at + 1 + n))
            at = text.find("@", at + 1 + n)
        else:
            at = text.find("@", at + 1)
    return tuple(spans)


def action_text(sender: str, text: str) -> str | None:
    """For a ``/me`` message (sent as ``"* sender action"``), the action; else None."""
    prefix = ACTION_PREFIX + sender + " "
    if text.startswith(prefix) and len(text) > len(prefix):
        return text[len(prefix) :]
    return None


def make_action(sender: str, action: str) -> str:
    """The text a ``/me`` command sends, readable by every client (plain-text mode too)."""
    return f"{ACTION_PREFIX}{sender} {action}"
