"""What a server advertises on the LAN, what a client found, and on which addresses.

Shared by the mDNS announcer/browser (`discovery`), the UDP broadcast fallback
(`broadcast`) and the network check (`netcheck`). Everything here is pure: no
sockets, no threads. `Advert` is the one place that turns the discovery facts
into the TXT strings of the contract and back, so both mechanisms validate
what they receive with the same strict rules.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import socket
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import ifaddr

SERVICE_TYPE = "_desktop-chat._tcp.local."
"""DNS-SD service type of a Desktop Chat server (protocol.md, Discovery)."""

PROTOCOL_VERSION = 1
TLS_MODES = ("off", "offered", "required")
DEFAULT_TITLE = "Desktop Chat"

MAX_TITLE_BYTES = 200
"""Titles are cut to this many UTF-8 bytes: fits one TXT string (255) and a 1 KiB packet."""

MAX_PEOPLE = 9_999_999
_FINGERPRINT_RE = re.compile(r"[0-9a-f]{64}")
_PROTOCOL_RE = re.compile(r"[0-9]{1,3}")
_PEOPLE_RE = re.compile(r"[0-9]{1,7}")

Source = Literal["mdns", "broadcast"]


def clean_title(title: str) -> str:
    """The server title as announced: NFC, no control/format characters, at most 200 bytes."""
    text = unicodedata.normalize("NFC", title)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf"))
    text = truncate_utf8(text.strip(), MAX_TITLE_BYTES).strip()
    return text or DEFAULT_TITLE


def truncate_utf8(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` UTF-8 bytes without splitting a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


def normalize_fingerprint(fingerprint: str) -> str:
    """Lowercase hex without colons (as the contract's `fp`); ValueError if not SHA-256."""
    value = fingerprint.replace(":", "").strip().lower()
    if not _FINGERPRINT_RE.fullmatch(value):
        raise ValueError(f"not a SHA-256 fingerprint: {fingerprint!r}")
    return value


@dataclass(frozen=True)
class Advert:
    """The facts a server announces about itself (the TXT keys of the contract)."""

    title: str
    tls: str = "off"
    password: bool = False
    people: int = 0
    fingerprint: str | None = None
    protocol: int = PROTOCOL_VERSION

    @classmethod
    def create(
        cls,
        title: str,
        *,
        tls: str = "off",
        password: bool = False,
        people: int = 0,
        fingerprint: str | None = None,
    ) -> Advert:
        """Build our own advert, cleaning the title; ValueError for a bad tls/fingerprint."""
        if tls not in TLS_MODES:
            raise ValueError(f"tls must be one of {TLS_MODES}, not {tls!r}")
        fp = normalize_fingerprint(fingerprint) if fingerprint else None
        return cls(
            title=clean_title(title),
            tls=tls,
            password=bool(password),
            people=min(max(int(people), 0), MAX_PEOPLE),
            fingerprint=fp,
        )

    def to_txt(self) -> dict[str, str]:
        """The TXT record: keys and values exactly as protocol.md says."""
        txt = {
            "protocol": str(self.protocol),
            "title": self.title,
            "tls": self.tls,
            "password": "yes" if self.password else "no",
            "people": str(self.people),
        }
        if self.fingerprint:
            txt["fp"] = self.fingerprint
        return txt

    @classmethod
    def from_txt(cls, txt: Mapping[str, object]) -> Advert:
        """Parse a peer's TXT values strictly; ValueError on anything off-contract.

        Unknown keys are ignored (forward compatibility); every known key must be
        a string of the documented form. `fp` is optional.
        """
        protocol = _txt_str(txt, "protocol")
        if not _PROTOCOL_RE.fullmatch(protocol):
            raise ValueError("bad protocol")
        title = _txt_str(txt, "title")
        if not title or len(title.encode("utf-8")) > MAX_TITLE_BYTES or title != title.strip():
            raise ValueError("bad title")
        if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in title):
            raise ValueError("control characters in title")
        tls = _txt_str(txt, "tls")
        if tls not in TLS_MODES:
            raise ValueError("bad tls")
        password = _txt_str(txt, "password")
        if password not in ("yes", "no"):
            raise ValueError("bad password")
        people = _txt_str(txt, "people")
        if not _PEOPLE_RE.fullmatch(people):
            raise ValueError("bad people")
        fingerprint: str | None = None
        if "fp" in txt:
            fingerprint = _txt_str(txt, "fp")
            if not _FINGERPRINT_RE.fullmatch(fingerprint):
                raise ValueError("bad fp")
        return cls(
            title=title,
            tls=tls,
            password=password == "yes",
            people=int(people),
            fingerprint=fingerprint,
            protocol=int(protocol),
        )


def _txt_str(txt: Mapping[str, object], key: str) -> str:
    value = txt.get(key)
    if type(value) is not str:
        raise ValueError(f"missing or non-string {key!r}")
    return value


@dataclass(frozen=True)
class FoundServer:
    """A server seen on the LAN.

    `name` identifies it while it stays up (the mDNS instance name, or
    ``"<address>:<port>"`` for a broadcast answer); `addresses` are best first
    (same subnet as this machine, then IPv4, then IPv6).
    """

    name: str
    title: str
    addresses: tuple[str, ...]
    port: int
    protocol: int
    tls: str
    password: bool
    people: int
    fingerprint: str | None
    source: Source

    @property
    def address(self) -> str:
        """The address to connect to first."""
        return self.addresses[0]

    @property
    def join_address(self) -> str:
        """What a person would type to join: ``host:port`` (IPv6 in brackets)."""
        host = self.address
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{self.port}"

    @classmethod
    def from_advert(
        cls, name: str, advert: Advert, addresses: Iterable[str], port: int, source: Source
    ) -> FoundServer:
        return cls(
            name=name,
            title=advert.title,
            addresses=tuple(addresses),
            port=port,
            protocol=advert.protocol,
            tls=advert.tls,
            password=advert.password,
            people=advert.people,
            fingerprint=advert.fingerprint,
            source=source,
        )


# --- DNS-SD names ----------------------------------------------------------------------------

_MAX_INSTANCE_BYTES = 58  # 63 minus room for zeroconf's "-NN" on a name conflict


def instance_name(title: str, hostname: str, port: int) -> str:
    """A DNS-SD instance name unique per host and port: ``"<title> (<host>:<port>)"``.

    Dots become middle dots (zeroconf writes each dot as a label break); the
    title is shortened so the whole name stays within one 63-byte DNS label.
    """
    host = hostname.split(".")[0].strip() or "host"
    host = truncate_utf8(clean_title(host), 24).strip()
    suffix = f" ({host}:{port})"
    room = _MAX_INSTANCE_BYTES - len(suffix.encode("utf-8"))
    head = truncate_utf8(clean_title(title).replace(".", "·"), room).strip()
    return f"{head}{suffix}"


def server_hostname(hostname: str, port: int) -> str:
    # A name of our own, not the machine's "<host>.local.": claiming that one with
    # a subset of its addresses would look like a conflict to avahi/Bonjour.
    label = re.sub(r"[^a-z0-9-]+", "-", hostname.split(".")[0].lower()).strip("-")[:24]
    return f"dc-{label or 'host'}-{port}-{secrets.token_hex(3)}.local."


def decode_txt(properties: Mapping[bytes, bytes | None]) -> dict[str, str | None]:
    """zeroconf's raw TXT properties as text; ValueError if not UTF-8."""
    txt: dict[str, str | None] = {}
    for key, value in properties.items():
        try:
            name = key.decode("utf-8")
            txt[name] = None if value is None else value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"TXT is not UTF-8: {exc}") from exc
    return txt


# --- addresses ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalAddress:
    """One IPv4 address of this machine, with its interface and prefix length."""

    interface: str
    address: str
    prefix: int

    @property
    def is_loopback(self) -> bool:
        return ipaddress.IPv4Address(self.address).is_loopback

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self.address}/{self.prefix}", strict=False)

    @property
    def broadcast(self) -> str | None:
        """The directed broadcast address, or None for /31 and /32 links."""
        if self.prefix >= 31:
            return None
        return str(self.network.broadcast_address)


def local_addresses(adapters: Iterable[ifaddr.Adapter] | None = None) -> list[LocalAddress]:
    """Every IPv4 address of this machine (ifaddr), in adapter order."""
    if adapters is None:
        adapters = ifaddr.get_adapters()
    found: list[LocalAddress] = []
    for adapter in adapters:
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and ip.is_IPv4:
                found.append(LocalAddress(adapter.nice_name, ip.ip, ip.network_prefix))
    return found


def is_wildcard(bind_host: str) -> bool:
    return bind_host in ("", "0.0.0.0", "::", "*")


def ipv4_of(host: str) -> str:
    """The IPv4 address of a bind host ("127.0.0.1", "localhost"); ValueError if it has none."""
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ValueError(f"{host!r} is not an IPv4 address or a known host name") from exc
    return str(infos[0][4][0])


def announce_addresses(
    bind_host: str,
    interfaces: Iterable[str] | None = None,
    adapters: Iterable[ifaddr.Adapter] | None = None,
) -> list[str]:
    """The IPv4 addresses a server bound to `bind_host` should announce.

    An explicit `interfaces` list wins. A specific bind announces that address only.
    A wildcard bind announces the machine's real addresses, loopback only when
    there is nothing else (a server on a laptop with no network still shows up
    to a client on the same machine).
    """
    if interfaces is not None:
        return [str(ipaddress.IPv4Address(a)) for a in interfaces]
    if not is_wildcard(bind_host):
        return [ipv4_of(bind_host)]
    everything = local_addresses(adapters)
    real = [a.address for a in everything if not a.is_loopback and not _is_unusable(a.address)]
    return _unique(real) if real else ["127.0.0.1"]


def browse_addresses(
    interfaces: Iterable[str] | None = None,
    adapters: Iterable[ifaddr.Adapter] | None = None,
) -> list[str]:
    """The IPv4 addresses a client browses on: all of them, loopback included."""
    if interfaces is not None:
        return [str(ipaddress.IPv4Address(a)) for a in interfaces]
    found = [a.address for a in local_addresses(adapters) if not _is_unusable(a.address)]
    return _unique(found) if found else ["127.0.0.1"]


def broadcast_targets(
    interfaces: Iterable[str] | None = None,
    adapters: Iterable[ifaddr.Adapter] | None = None,
) -> list[str]:
    """Where a broadcast probe goes: each interface's directed broadcast address.

    With no explicit interfaces the limited broadcast 255.255.255.255 is added,
    because some access points only pass that one. Loopback gets 127.255.255.255.
    """
    known = {a.address: a for a in local_addresses(adapters)}
    chosen = list(interfaces) if interfaces is not None else list(known)
    targets: list[str] = []
    for address in chosen:
        ip = ipaddress.IPv4Address(address)
        if ip.is_loopback:
            targets.append("127.255.255.255")
        elif address in known:
            bcast = known[address].broadcast
            if bcast:
                targets.append(bcast)
    if interfaces is None:
        targets.append("255.255.255.255")
    return _unique(targets)


def networks_for(
    addresses: Iterable[str], adapters: Iterable[ifaddr.Adapter] | None = None
) -> list[ipaddress.IPv4Network]:
    """The subnets the given local addresses sit on (a /32 when the prefix is unknown)."""
    known = {a.address: a for a in local_addresses(adapters)}
    nets: list[ipaddress.IPv4Network] = []
    for address in addresses:
        ip = ipaddress.IPv4Address(address)
        if ip.is_loopback:
            nets.append(ipaddress.IPv4Network("127.0.0.0/8"))
        elif address in known:
            nets.append(known[address].network)
        else:
            nets.append(ipaddress.IPv4Network(f"{address}/32"))
    return nets


def rank_addresses(
    addresses: Iterable[str], local_networks: Iterable[ipaddress.IPv4Network]
) -> tuple[str, ...]:
    """Best address to dial first: on one of our subnets, then other IPv4, then IPv6."""
    nets = list(local_networks)

    def key(address: str) -> tuple[int, int]:
        ip = ipaddress.ip_address(address)
        if ip.version == 4:
            on_link = any(ip in net for net in nets)
            return (0 if on_link else 1, 1 if ip.is_loopback else 0)
        return (2, 0)

    return tuple(sorted(_unique(addresses), key=key))


def _is_unusable(address: str) -> bool:
    ip = ipaddress.IPv4Address(address)
    return ip.is_unspecified or ip.is_multicast


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
