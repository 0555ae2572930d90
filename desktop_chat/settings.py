"""The desktop app's remembered choices, over ``QSettings``.

One typed place for every key, so the start screen and the main window never spell a key or a
default twice. QSettings hands back strings from INI files and native types elsewhere, so every
getter converts. Tests pass their own ``QSettings`` (an INI file in a temporary folder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from PySide6.QtCore import QByteArray, QSettings

from desktop_chat.net.client.pins import pin_key

MAX_RECENT_SERVERS = 8
THEMES = ("system", "light", "dark")


def _as_bool(value: object, default: bool) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value.lower() in ("true", "1", "yes"):
            return True
        if value.lower() in ("false", "0", "no"):
            return False
    if isinstance(value, int):
        return value != 0
    return default


def _as_int(value: object, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return default
    return default


def _as_str(value: object, default: str = "") -> str:
    return value if isinstance(value, str) else default


@dataclass(frozen=True, slots=True)
class HostedSession:
    """What the hosting window needs to resume its own session when it hosts again: the
    server keeps sessions across restarts, the window keeps the token (and the DMs open)."""

    name: str
    session: str
    since: int = 0
    dms: tuple[str, ...] = ()


class Settings:
    """Typed access to the app's ``QSettings``; every setter writes through at once."""

    def __init__(self, qsettings: QSettings | None = None) -> None:
        # QSettings() without arguments uses the organisation and application names that
        # app.py sets on the QApplication.
        self.qsettings = qsettings if qsettings is not None else QSettings()

    def sync(self) -> None:
        self.qsettings.sync()

    # -- generic access (for options a widget adds without a typed property) -------------

    def value(self, key: str, default: object = None) -> object:
        return self.qsettings.value(key, default)

    def set_value(self, key: str, value: object) -> None:
        self.qsettings.setValue(key, value)

    def bool_value(self, key: str, default: bool) -> bool:
        return _as_bool(self.qsettings.value(key, default), default)

    # -- the start screen ------------------------------------------------------------------

    @property
    def last_name(self) -> str:
        return _as_str(self.qsettings.value("start/lastName", ""))

    @last_name.setter
    def last_name(self, name: str) -> None:
        self.qsettings.setValue("start/lastName", name)

    @property
    def last_mode(self) -> str:
        """``"host"`` or ``"join"``: the choice the start screen opens on."""
        mode = _as_str(self.qsettings.value("start/lastMode", "join"))
        return mode if mode in ("host", "join") else "join"

    @last_mode.setter
    def last_mode(self, mode: str) -> None:
        self.qsettings.setValue("start/lastMode", mode)

    @property
    def host_port(self) -> int | None:
        """The port last used to host, None when never set."""
        port = _as_int(self.qsettings.value("host/port", 0), 0)
        return port if 0 < port < 65536 else None

    @host_port.setter
    def host_port(self, port: int) -> None:
        self.qsettings.setValue("host/port", int(port))

    @property
    def host_title(self) -> str:
        return _as_str(self.qsettings.value("host/title", ""))

    @host_title.setter
    def host_title(self, title: str) -> None:
        self.qsettings.setValue("host/title", title)

    @property
    def recent_servers(self) -> list[str]:
        """Addresses joined lately (``host:port``), the most recent first."""
        value = self.qsettings.value("join/recentServers", [])
        if isinstance(value, str):  # INI files store a one-element list as a plain string
            value = [value] if value else []
        if not isinstance(value, list):
            return []
        return [v for v in value if isinstance(v, str) and v][:MAX_RECENT_SERVERS]

    def add_recent_server(self, address: str) -> None:
        """Put ``address`` first (case-insensitive duplicates removed), keep the newest few."""
        rest = [a for a in self.recent_servers if a.casefold() != address.casefold()]
        self.qsettings.setValue("join/recentServers", [address, *rest][:MAX_RECENT_SERVERS])

    def clear_recent_servers(self) -> None:
        self.qsettings.remove("join/recentServers")

    # -- trusted certificates (a PinStore for ChatClient) ----------------------------------

    def pinned_fingerprint(self, host: str, port: int) -> str | None:
        """The certificate fingerprint trusted for ``host:port`` (lowercase hex), or None."""
        value = _as_str(self.qsettings.value(f"trust/{pin_key(host, port)}", ""))
        return value or None

    def pin_fingerprint(self, host: str, port: int, fingerprint: str) -> None:
        self.qsettings.setValue(f"trust/{pin_key(host, port)}", fingerprint)
        self.qsettings.sync()  # a trust decision is not something to lose in a crash

    # -- the hosting window's own session ------------------------------------------------------

    def hosted_session(self, fingerprint: str) -> HostedSession | None:
        """The session this app had on the chat it hosts with this certificate, or None."""
        raw = _as_str(self.qsettings.value(f"hosted/{fingerprint}", ""))
        try:
            data = json.loads(raw) if raw else None
            if not isinstance(data, dict):
                return None
            dms = data.get("dms", [])
            return HostedSession(
                name=str(data["name"]),
                session=str(data["session"]),
                since=int(data.get("since", 0)),
                dms=tuple(str(d) for d in dms) if isinstance(dms, list) else (),
            )
        except (ValueError, KeyError, TypeError):
            return None  # written by something else: start a fresh session

    def store_hosted_session(self, fingerprint: str, hosted: HostedSession) -> None:
        data = {
            "name": hosted.name,
            "session": hosted.session,
            "since": hosted.since,
            "dms": list(hosted.dms),
        }
        self.qsettings.setValue(f"hosted/{fingerprint}", json.dumps(data))
        self.qsettings.sync()  # the app may be killed with the machine: keep it now

    # -- the main window -------------------------------------------------------------------

    @property
    def theme(self) -> str:
        """``"system"``, ``"light"`` or ``"dark"``."""
        theme = _as_str(self.qsettings.value("ui/theme", "system"))
        return theme if theme in THEMES else "system"

    @theme.setter
    def theme(self, theme: str) -> None:
        self.qsettings.setValue("ui/theme", theme if theme in THEMES else "system")

    @property
    def notifications(self) -> bool:
        """Show a desktop notification for a mention or a direct message."""
        return self.bool_value("ui/notifications", True)

    @notifications.setter
    def notifications(self, on: bool) -> None:
        self.qsettings.setValue("ui/notifications", bool(on))

    @property
    def sound(self) -> bool:
        return self.bool_value("ui/sound", False)

    @sound.setter
    def sound(self, on: bool) -> None:
        self.qsettings.setValue("ui/sound", bool(on))

    @property
    def show_joins(self) -> bool:
        """Show "joined"/"left" lines in the chat."""
        return self.bool_value("ui/showJoins", True)

    @show_joins.setter
    def show_joins(self, on: bool) -> None:
        self.qsettings.setValue("ui/showJoins", bool(on))

    @property
    def font_size(self) -> int:
        """Chat text size in points; 0 means the system default."""
        return max(0, min(48, _as_int(self.qsettings.value("ui/fontSize", 0), 0)))

    @font_size.setter
    def font_size(self, points: int) -> None:
        self.qsettings.setValue("ui/fontSize", int(points))

    @property
    def window_geometry(self) -> QByteArray:
        value = self.qsettings.value("window/geometry", QByteArray())
        return value if isinstance(value, QByteArray) else QByteArray()

    @window_geometry.setter
    def window_geometry(self, data: QByteArray) -> None:
        self.qsettings.setValue("window/geometry", data)

    @property
    def window_state(self) -> QByteArray:
        value = self.qsettings.value("window/state", QByteArray())
        return value if isinstance(value, QByteArray) else QByteArray()

    @window_state.setter
    def window_state(self, data: QByteArray) -> None:
        self.qsettings.setValue("window/state", data)
