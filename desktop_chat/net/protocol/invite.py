"""Invitations: an address that carries the chat's certificate fingerprint, and the short code
people compare when they join a chat they found on the network.

Two forms (see docs/protocol.md, "Invitations"):

    desktop-chat://HOST:PORT/?fp=<64 hex>    for the desktop app (``--join``, the Join box)
    http://HOST:PORT/#fp=<64 hex>            for phones: the web page on the same port; the
                                             fingerprint rides in the fragment, which browsers
                                             never send to the server

Joining by invitation never asks the trust question: the fingerprint came from the host, not
from the network. A chat found on the network announces a fingerprint too, but anyone can
announce anything, so that one is only ever *compared*: :func:`comparison_code` turns a
fingerprint into four groups of four digits that the hosting window shows and the joining
window asks about.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from desktop_chat.net.protocol.tls import normalize_fingerprint

SCHEME = "desktop-chat"
CODE_GROUPS = 4
CODE_DIGITS = 4  # per group: 16 decimal digits, about 53 bits of the fingerprint


@dataclass(frozen=True, slots=True)
class Invite:
    host: str
    port: int
    fingerprint: str  # lowercase hex


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def invite_link(host: str, port: int, fingerprint: str) -> str:
    """The link the desktop app accepts (``--join``, the Join box)."""
    return f"{SCHEME}://{_netloc(host, port)}/?fp={normalize_fingerprint(fingerprint)}"


def web_url(host: str, port: int, fingerprint: str | None = None) -> str:
    """The web page's address; with the fingerprint in the fragment when given."""
    base = f"http://{_netloc(host, port)}/"
    return f"{base}#fp={normalize_fingerprint(fingerprint)}" if fingerprint else base


def looks_like_invite(text: str) -> bool:
    return "://" in text.strip()


def parse_invite(text: str) -> Invite:
    """Either form above (``https`` too); ValueError says what is wrong, for people."""
    text = text.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"this invitation is damaged ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme == SCHEME:
        found = parse_qs(parts.query).get("fp", [])
    elif scheme in ("http", "https"):
        found = parse_qs(parts.fragment).get("fp", [])
    else:
        raise ValueError(f"“{parts.scheme}:” is not a Desktop Chat invitation")
    host = parts.hostname
    if not host:
        raise ValueError("this invitation has no address in it")
    if port is None:
        raise ValueError("this invitation has no port number in it")
    if not found:
        raise ValueError("this invitation has no fingerprint in it (fp=…)")
    try:
        fingerprint = normalize_fingerprint(found[0])
    except ValueError:
        raise ValueError("the fingerprint in this invitation is damaged") from None
    return Invite(host, port, fingerprint)


def comparison_code(fingerprint: str) -> str:
    """``1234 5678 9012 3456``: the first 64 bits of the fingerprint as decimal digits, easy
    to read aloud and compare with the hosting window (forging a certificate with the same
    code takes on the order of 2**53 tries)."""
    digits = CODE_GROUPS * CODE_DIGITS
    number = int(normalize_fingerprint(fingerprint)[:16], 16) % 10**digits
    text = f"{number:0{digits}d}"
    return " ".join(text[i : i + CODE_DIGITS] for i in range(0, digits, CODE_DIGITS))
