"""TLS facts both ends share: the modes, certificate fingerprints (as people read and pin
them) and the client's TLS settings.

Clients pin the server's fingerprint: SHA-256 over the DER certificate, as
``openssl x509 -fingerprint -sha256`` shows it.
"""

from __future__ import annotations

import hashlib
import ssl

TLS_MODES = ("off", "offered", "required")


def fingerprint_of_der(der: bytes) -> str:
    """SHA-256 of a DER certificate, lowercase hex."""
    return hashlib.sha256(der).hexdigest()


def normalize_fingerprint(text: str) -> str:
    """Accept ``AB:CD…``, ``abcd …`` or grouped forms; return lowercase hex or raise ValueError."""
    cleaned = "".join(ch for ch in text if ch not in ": -\t\n").lower()
    if len(cleaned) != 64 or any(ch not in "0123456789abcdef" for ch in cleaned):
        raise ValueError("a SHA-256 fingerprint has 64 hexadecimal digits")
    return cleaned


def format_fingerprint(hex_digest: str) -> str:
    """``AB:CD:…`` as openssl prints it."""
    up = hex_digest.upper()
    return ":".join(up[i : i + 2] for i in range(0, len(up), 2))


def group_for_reading(hex_digest: str) -> str:
    """Groups of four, four groups a line-ish: easy to read aloud and compare."""
    up = hex_digest.upper()
    return " ".join(up[i : i + 4] for i in range(0, len(up), 4))


def client_context() -> ssl.SSLContext:
    """For clients that pin the fingerprint themselves (self-signed: no CA to check against)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
