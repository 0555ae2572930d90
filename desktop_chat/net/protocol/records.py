"""The machinery under the protocol's events: JSON field kinds, strict decoding.

Each event is a frozen dataclass whose fields declare their JSON kind (``_req("str")``,
``_opt("ref")``...); :class:`_Record` reads and writes them. :func:`decode_json_object` turns one
line into a JSON object, surviving everything ``json.loads`` lets through (NaN, huge numbers,
deep nesting, duplicate keys, invalid UTF-8). Nothing here knows any message type.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Final, TypeAlias

Ref: TypeAlias = str | int

BAD_JSON: Final = "bad_json"
BAD_MESSAGE: Final = "bad_message"

_SURROGATE = re.compile("[\ud800-\udfff]")


class Invalid(Exception):
    """A message broke the protocol; ``code`` is the contract's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------------------------------------
# Field kinds: each dataclass field says how it is read from and written to JSON.


def _req(kind: str, key: str | None = None) -> Any:
    return field(metadata={"kind": kind, "key": key})


def _opt(kind: str, key: str | None = None, default: Any = None) -> Any:
    return field(default=default, metadata={"kind": kind, "key": key})


def _check_str(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise Invalid(BAD_MESSAGE, f"field {key!r} must be a string")
    if _SURROGATE.search(value):
        raise Invalid(BAD_MESSAGE, f"field {key!r} contains an unpaired surrogate")
    return value


def _check_int(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(BAD_MESSAGE, f"field {key!r} must be an integer")
    return value


def _check_text(value: object, key: str) -> str:
    text = _check_str(value, key)
    if not text.strip():
        raise Invalid(BAD_MESSAGE, f"field {key!r} cannot be empty")
    return text


def _check_ref(value: object, key: str) -> Ref:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Invalid(BAD_MESSAGE, f"field {key!r} must be a string or an integer")
    if isinstance(value, str):
        return _check_str(value, key)
    return value


def _check_strlist(value: object, key: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise Invalid(BAD_MESSAGE, f"field {key!r} must be a list of strings")
    return tuple(_check_str(v, key) for v in value)


def _check_object(value: object, key: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(BAD_MESSAGE, f"field {key!r} must be an object")
    return value


# Each class's fields as (attribute, JSON key, kind, required), worked out once: reading them
# from dataclasses.fields() on every message cost more than the JSON parse itself.
_Plan: TypeAlias = tuple[tuple[str, str, str, bool], ...]
_PLANS: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is None:
        plan = tuple(
            (
                f.name,
                f.metadata.get("key") or f.name,
                f.metadata["kind"],
                f.default is MISSING and f.default_factory is MISSING,
            )
            for f in fields(cls)
        )
        _PLANS[cls] = plan
    return plan


# Values written to JSON as they are (anything else goes through _to_json).
_PLAIN: Final = frozenset({str, int, bool})


@dataclass(frozen=True, slots=True)
class _Record:
    """Base of every JSON object we read or write; fields declare their kind."""

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Any:
        kwargs: dict[str, Any] = {}
        for name, key, kind, required in _plan(cls):
            value = obj.get(key)
            if value is None:
                if required:
                    raise Invalid(BAD_MESSAGE, f"missing field {key!r}")
                continue
            kwargs[name] = READERS[kind](value, key)
        record = cls(**kwargs)
        record.validate()
        return record

    def validate(self) -> None:
        """Cross-field checks; raise :class:`Invalid`."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        type_name = getattr(self, "TYPE", None)
        if type_name is not None:
            out["type"] = type_name
        for name, key, _kind, _required in _plan(type(self)):
            value = getattr(self, name)
            if value is None:
                continue
            out[key] = value if type(value) in _PLAIN else _to_json(value)
        return out


def _to_json(value: object) -> Any:
    if isinstance(value, _Record):
        return value.to_dict()
    if isinstance(value, tuple):
        if value and isinstance(value[0], str):
            return list(value)  # names: no per-element recursion (a users list is long)
        return [_to_json(v) for v in value]
    return value


def _nested(cls: type[_Record]) -> Any:
    def read(value: object, key: str) -> Any:
        return cls.from_dict(_check_object(value, key))

    return read


def _nested_list(cls: type[_Record]) -> Any:
    def read(value: object, key: str) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise Invalid(BAD_MESSAGE, f"field {key!r} must be a list")
        return tuple(cls.from_dict(_check_object(v, key)) for v in value)

    return read


def _check_bool(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(BAD_MESSAGE, f"field {key!r} must be true or false")
    return value


READERS: dict[str, Any] = {
    "str": _check_str,
    "int": _check_int,
    "bool": _check_bool,
    "text": _check_text,
    "ref": _check_ref,
    "strlist": _check_strlist,
}


# ---------------------------------------------------------------------------------------------
# JSON decoding that survives everything json.loads lets through


def _reject_constant(name: str) -> Any:
    raise Invalid(BAD_JSON, f"{name} is not valid JSON")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise Invalid(BAD_JSON, "duplicate key in object")
    return obj


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise Invalid(BAD_JSON, "number out of range")
    return value


def decode_json_object(line: bytes | str) -> dict[str, Any]:
    """Decode one line into a JSON object, or raise :class:`Invalid` (bad_json/bad_message)."""
    try:
        text = line.decode("utf-8") if isinstance(line, bytes | bytearray) else line
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            object_pairs_hook=_reject_duplicates,
            parse_float=_parse_float,
        )
    except Invalid:
        raise
    except UnicodeDecodeError as exc:
        raise Invalid(BAD_JSON, "the line is not valid UTF-8") from exc
    except RecursionError as exc:
        raise Invalid(BAD_JSON, "the JSON is nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, and int() over the digit limit
        raise Invalid(BAD_JSON, f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise Invalid(BAD_MESSAGE, "each line must be a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class ClientEvent(_Record):
    """A message a client sends. Every request may carry a ``ref``, echoed in its errors."""

    TYPE: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class ServerEvent(_Record):
    TYPE: ClassVar[str] = ""
