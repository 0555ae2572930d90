"""Validation and comparison of user and room names (the contract's "Names" rules).

A name is valid when, after Unicode NFC, it has 1 to 32 code points, no control or format
characters (categories Cc and Cf: this covers bidi overrides and zero-width characters), no
surrogates or line/paragraph separators, and no leading or trailing white space. Invalid names
are refused, never trimmed or repaired. Names are compared by ``casefold(NFC(name))``.
"""

from __future__ import annotations

import unicodedata

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
