"""Validation and comparison of user and room names (the contract's "Names" rules).

A name is valid when, after Unicode NFC, it has 1 to 32 code points, no control or format
characters (categories Cc and Cf: this covers bidi overrides and zero-width characters), no
surrogates or line/paragraph separators, and no leading or trailing white space. Invalid names
are refused, never trimmed or repaired. Names are compared by ``casefold(NFC(name))``.
"""

from __future__ import annotations

import functools
import json
import threading
import unicodedata
from pathlib import Path

import confusable_homoglyphs

MAX_NAME_LENGTH = 32

# Cc/Cf are the contract's; Cs (lone surrogates, which json.loads lets through) and Zl/Zp
# (line and paragraph separators, which break line-based displays) are refused in addition.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


class InvalidName(ValueError):
    """A name breaks one of the naming rules; ``str(exc)`` says which, for people."""


def normalize_name(name: object) -> str:
    """Return ``name`` in NFC if it is a valid name, else raise :class:`InvalidName`."""
    if not isinstance(name, str):
        raise InvalidName("a name must be text")
    nfc = unicodedata.normalize("NFC", name)
    if not nfc:
        raise InvalidName("a name cannot be empty")
    if len(nfc) > MAX_NAME_LENGTH:
        raise InvalidName(f"a name can have at most {MAX_NAME_LENGTH} characters")
    if nfc[0].isspace() or nfc[-1].isspace():
        raise InvalidName("a name cannot start or end with white space")
    for ch in nfc:
        category = unicodedata.category(ch)
        if category in _FORBIDDEN_CATEGORIES:
            raise InvalidName(
                f"a name cannot contain control or invisible characters (U+{ord(ch):04X})"
            )
    return nfc


def name_key(name: str) -> str:
    """The key under which names are compared: ``casefold(NFC(name))``."""
    return unicodedata.normalize("NFC", name).casefold()


def is_valid_name(name: object) -> bool:
    """True when :func:`normalize_name` accepts ``name``."""
    try:
        normalize_name(name)
    except InvalidName:
        return False
    return True


_MAP_LOCK = threading.Lock()  # built once, even when a hundred logins ask at the same moment


def _confusable_map() -> dict[str, str]:
    with _MAP_LOCK:
        return _build_confusable_map()


@functools.cache
def _build_confusable_map() -> dict[str, str]:
    """Each character that has look-alikes, mapped to one representative of its group.

    Built from the Unicode confusables data (TR39) as shipped by ``confusable-homoglyphs``:
    characters that look alike, directly or through a chain, map to the smallest of their
    group, so ``е`` (Cyrillic) and ``e`` (Latin) share a representative, as do ``l``, ``I``
    and ``1``.
    """
    path = Path(confusable_homoglyphs.__file__).with_name("confusables.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    parent: dict[str, str] = {}

    def find(ch: str) -> str:
        root = ch
        while parent.get(root, root) != root:
            root = parent[root]
        while ch != root:  # path compression
            parent[ch], ch = root, parent[ch]
        return root

    # Look-alikes are grouped transitively (l ~ I ~ 1): union-find over the pairs.
    for char, alikes in data.items():
        for alike in alikes:
            if len(alike["c"]) == 1:
                a, b = find(char), find(alike["c"])
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return {ch: find(ch) for ch in list(parent) + list(data)}


def skeleton(name: str) -> str:
    """The name as it looks: NFD, each character replaced by its look-alike representative,
    NFD again (TR39's skeleton, over single characters). Equal skeletons = look-alike names."""
    table = _confusable_map()
    decomposed = unicodedata.normalize("NFD", name)
    mapped = "".join(table.get(ch, ch) for ch in decomposed)
    return unicodedata.normalize("NFD", mapped)
