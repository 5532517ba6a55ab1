"""Session settings: a QuickFIX-style config file into frozen, validated dataclasses.

File format (``#`` or ``;`` start a comment)::

    [default]
    ConnectionType=acceptor
    SenderCompID=ISLD
    SocketAcceptPort=5001
    FileStorePath=/var/lib/crossbook/fix

    [session]
    BeginString=FIX.4.4
    TargetCompID=TW44

    [session TW50]                 # a name after "session" is optional, used in errors
    BeginString=FIXT.1.1
    TargetCompID=TW50
    DefaultApplVerID=FIX.5.0

Every key of ``[default]`` applies to every session unless the session sets it.
Errors are ``SettingsError`` naming the file, section, key and what was wrong.
Keys are case-sensitive QuickFIX names; the table in docs/fix.md lists them all.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Callable

BEGIN_STRINGS = ("FIX.4.2", "FIX.4.4", "FIXT.1.1")
_APPL_VER_NAMES = {"FIX.4.2": "4", "FIX.4.4": "6", "FIX.5.0": "7", "FIX.5.0SP1": "8", "FIX.5.0SP2": "9"}
_APPL_VER_DIGITS = {"4", "6", "7", "8", "9"}


class SettingsError(ValueError):
    """A configuration problem; the message names the section and key."""


@dataclass(frozen=True)
class SessionSettings:
    """Everything one FIX session needs. Field names are the snake_case of the file keys."""

    begin_string: str
    sender_comp_id: str
    target_comp_id: str
    connection_type: str = "acceptor"
    default_appl_ver_id: str | None = None  # "7", "8", "9" (FIX.5.0, SP1, SP2) for FIXT.1.1
    session_qualifier: str = ""
    heart_bt_int: int = 30  # initiators send it; acceptors take the initiator's
    reset_on_logon: bool = False
    reset_on_logout: bool = False
    reset_on_disconnect: bool = False
    refresh_on_logon: bool = False
    check_comp_id: bool = True
    check_latency: bool = True
    max_latency: float = 120.0
    logon_timeout: float = 10.0
    logout_timeout: float = 2.0
    use_data_dictionary: bool = True
    validate_fields_out_of_order: bool = True
    validate_fields_have_values: bool = True
    validate_user_defined_fields: bool = True
    persist_messages: bool = True
    millisecond_timestamps: bool = True
    max_message_size: int = 1 << 20
    username: str | None = None
    password: str | None = None
    store: str = "memory"  # "memory" or "file"
    file_store_path: str | None = None
    file_store_sync: bool = False
    socket_accept_host: str = "0.0.0.0"
    socket_accept_port: int | None = None
    socket_connect_host: str | None = None
    socket_connect_port: int | None = None
    reconnect_interval: float = 30.0
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_ca_file: str | None = None
    tls_verify_peer: bool = False

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def is_fixt(self) -> bool:
        return self.begin_string == "FIXT.1.1"

    @property
    def is_initiator(self) -> bool:
        return self.connection_type == "initiator"

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None or (self.is_initiator and self.tls_ca_file is not None)

    def key(self) -> tuple[str, str, str, str]:
        """(BeginString, SenderCompID, TargetCompID, qualifier): unique per engine."""
        return (self.begin_string, self.sender_comp_id, self.target_comp_id, self.session_qualifier)


def _validate(s: SessionSettings) -> None:
    def bad(key: str, why: str) -> SettingsError:
        return SettingsError(f"{key}: {why}")

    if s.begin_string not in BEGIN_STRINGS:
        raise bad("BeginString", f"must be one of {', '.join(BEGIN_STRINGS)}, got {s.begin_string!r}")
    for key, value in (("SenderCompID", s.sender_comp_id), ("TargetCompID", s.target_comp_id)):
        if not isinstance(value, str) or not value or any(c in value for c in "\x01=") or not value.isprintable():
            raise bad(key, f"must be a non-empty printable string without SOH or '=', got {value!r}")
    if s.connection_type not in ("acceptor", "initiator"):
        raise bad("ConnectionType", f"must be acceptor or initiator, got {s.connection_type!r}")
    if s.begin_string == "FIXT.1.1":
        if s.default_appl_ver_id not in _APPL_VER_DIGITS:
            raise bad("DefaultApplVerID", f"FIXT.1.1 sessions need one of FIX.5.0, FIX.5.0SP1, FIX.5.0SP2 "
                      f"(or 7, 8, 9), got {s.default_appl_ver_id!r}")
    elif s.default_appl_ver_id is not None:
        raise bad("DefaultApplVerID", f"only applies to FIXT.1.1 sessions, not {s.begin_string}")
    if not (0 <= s.heart_bt_int <= 3600):
        raise bad("HeartBtInt", f"must be between 0 and 3600 seconds, got {s.heart_bt_int}")
    for key, value in (("MaxLatency", s.max_latency), ("LogonTimeout", s.logon_timeout),
                       ("LogoutTimeout", s.logout_timeout), ("ReconnectInterval", s.reconnect_interval)):
        if not value > 0:
            raise bad(key, f"must be positive, got {value}")
    if s.max_message_size < 64:
        raise bad("MaxMessageSize", f"must be at least 64 bytes, got {s.max_message_size}")
    if (s.username is None) != (s.password is None):
        raise bad("Username" if s.username is None else "Password", "Username and Password go together")
    if s.store not in ("memory", "file"):
        raise bad("MessageStore", f"must be memory or file, got {s.store!r}")
    if s.store == "file" and not s.file_store_path:
        raise bad("FileStorePath", "required when MessageStore=file")
    if s.connection_type == "initiator":
        if not s.socket_connect_host:
            raise bad("SocketConnectHost", "required for an initiator")
        if s.socket_connect_port is None:
            raise bad("SocketConnectPort", "required for an initiator")
        if s.heart_bt_int <= 0:
            raise bad("HeartBtInt", "an initiator needs a positive HeartBtInt")
    for key, port in (("SocketAcceptPort", s.socket_accept_port), ("SocketConnectPort", s.socket_connect_port)):
        if port is not None and not (0 <= port <= 65535):
            raise bad(key, f"must be a TCP port 0-65535, got {port}")
    if (s.tls_cert_file is None) != (s.tls_key_file is None):
        raise bad("SSLCertificateKeyFile" if s.tls_key_file is None else "SSLCertificateFile",
                  "certificate and key files go together")
    for key, path in (("SSLCertificateFile", s.tls_cert_file), ("SSLCertificateKeyFile", s.tls_key_file),
                      ("SSLCAFile", s.tls_ca_file)):
        if path is not None and not os.path.isfile(path):
            raise bad(key, f"file not found: {path}")


def _parse_bool(text: str) -> bool:
    value = text.strip().upper()
    if value in ("Y", "YES", "TRUE", "1"):
        return True
    if value in ("N", "NO", "FALSE", "0"):
        return False
    raise ValueError(f"expected Y or N, got {text!r}")


def _parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None


def _parse_float(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"expected a finite number, got {text!r}")
    return value


def _parse_appl_ver(text: str) -> str:
    text = text.strip()
    if text in _APPL_VER_NAMES:
        return _APPL_VER_NAMES[text]
    if text in _APPL_VER_DIGITS:
        return text
    raise ValueError(f"expected FIX.5.0, FIX.5.0SP1, FIX.5.0SP2 or 7/8/9, got {text!r}")


def _parse_store(text: str) -> str:
    value = text.strip().lower()
    if value not in ("memory", "file"):
        raise ValueError(f"expected memory or file, got {text!r}")
    return value


def _str(text: str) -> str:
    return text.strip()


#: file key -> (dataclass field, parser)
KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "BeginString": ("begin_string", _str),
    "SenderCompID": ("sender_comp_id", _str),
    "TargetCompID": ("target_comp_id", _str),
    "ConnectionType": ("connection_type", lambda t: t.strip().lower()),
    "DefaultApplVerID": ("default_appl_ver_id", _parse_appl_ver),
    "SessionQualifier": ("session_qualifier", _str),
    "HeartBtInt": ("heart_bt_int", _parse_int),
    "ResetOnLogon": ("reset_on_logon", _parse_bool),
    "ResetOnLogout": ("reset_on_logout", _parse_bool),
    "ResetOnDisconnect": ("reset_on_disconnect", _parse_bool),
    "RefreshOnLogon": ("refresh_on_logon", _parse_bool),
    "CheckCompID": ("check_comp_id", _parse_bool),
    "CheckLatency": ("check_latency", _parse_bool),
    "MaxLatency": ("max_latency", _parse_float),
    "LogonTimeout": ("logon_timeout", _parse_float),
    "LogoutTimeout": ("logout_timeout", _parse_float),
    "UseDataDictionary": ("use_data_dictionary", _parse_bool),
    "ValidateFieldsOutOfOrder": ("validate_fields_out_of_order", _parse_bool),
    "ValidateFieldsHaveValues": ("validate_fields_have_values", _parse_bool),
    "ValidateUserDefinedFields": ("validate_user_defined_fields", _parse_bool),
    "PersistMessages": ("persist_messages", _parse_bool),
    "MillisecondsInTimeStamp": ("millisecond_timestamps", _parse_bool),
    "MaxMessageSize": ("max_message_size", _parse_int),
    "Username": ("username", _str),
    "Password": ("password", _str),
    "MessageStore": ("store", _parse_store),
    "FileStorePath": ("file_store_path", _str),
    "FileStoreSync": ("file_store_sync", _parse_bool),
    "SocketAcceptHost": ("socket_accept_host", _str),
    "SocketAcceptPort": ("socket_accept_port", _parse_int),
    "SocketConnectHost": ("socket_connect_host", _str),
    "SocketConnectPort": ("socket_connect_port", _parse_int),
    "ReconnectInterval": ("reconnect_interval", _parse_float),
    "SSLCertificateFile": ("tls_cert_file", _str),
    "SSLCertificateKeyFile": ("tls_key_file", _str),
    "SSLCAFile": ("tls_ca_file", _str),
    "SSLVerifyPeer": ("tls_verify_peer", _parse_bool),
}
_REQUIRED = ("BeginString", "SenderCompID", "TargetCompID")


@dataclass(frozen=True)
class EngineSettings:
    """All sessions of one config file."""

    sessions: tuple[SessionSettings, ...] = field(default_factory=tuple)

    def acceptors(self) -> tuple[SessionSettings, ...]:
        return tuple(s for s in self.sessions if not s.is_initiator)

    def initiators(self) -> tuple[SessionSettings, ...]:
        return tuple(s for s in self.sessions if s.is_initiator)


def parse_settings(text: str, source: str = "<string>") -> EngineSettings:
    """Parse config text; relative file paths stay as written."""
    sections: list[tuple[str, int, dict[str, tuple[str, int]]]] = []
    default: dict[str, tuple[str, int]] = {}
    current: dict[str, tuple[str, int]] | None = None
    current_name = ""
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("["):
            if not stripped.endswith("]"):
                raise SettingsError(f"{source}:{lineno}: malformed section header {stripped!r}")
            name = stripped[1:-1].strip()
            kind = name.split(None, 1)[0].lower() if name else ""
            if kind == "default" and name.lower() == "default":
                if sections:
                    raise SettingsError(f"{source}:{lineno}: [default] must come before the sessions")
                current, current_name = default, "default"
            elif kind == "session":
                current = {}
                current_name = name
                sections.append((name, lineno, current))
            else:
                raise SettingsError(f"{source}:{lineno}: unknown section [{name}] (use [default] or [session ...])")
            continue
        if current is None:
            raise SettingsError(f"{source}:{lineno}: setting outside a section: {stripped!r}")
        key, sep, value = stripped.partition("=")
        key = key.strip()
        if not sep:
            raise SettingsError(f"{source}:{lineno}: [{current_name}] expected Key=Value, got {stripped!r}")
        if key not in KEYS:
            raise SettingsError(f"{source}:{lineno}: [{current_name}] unknown key {key!r}")
        if key in current:
            raise SettingsError(f"{source}:{lineno}: [{current_name}] {key} set twice")
        current[key] = (value.split(" #", 1)[0].strip(), lineno)
    if not sections:
        raise SettingsError(f"{source}: no [session] section")
    result = []
    seen: dict[tuple[str, str, str, str], str] = {}
    for name, lineno, values in sections:
        merged = {**default, **values}
        where = f"{source}: [{name}] (line {lineno})"
        for key in _REQUIRED:
            if key not in merged:
                raise SettingsError(f"{where}: missing required key {key}")
        kwargs: dict[str, Any] = {}
        for key, (value, at) in merged.items():
            attr, parse = KEYS[key]
            try:
                kwargs[attr] = parse(value)
            except ValueError as exc:
                raise SettingsError(f"{source}:{at}: [{name}] {key}: {exc}") from None
        try:
            session = SessionSettings(**kwargs)
        except SettingsError as exc:
            raise SettingsError(f"{where}: {exc}") from None
        if session.key() in seen:
            raise SettingsError(f"{where}: same session as [{seen[session.key()]}]")
        seen[session.key()] = name
        result.append(session)
    return EngineSettings(tuple(result))


def load_settings(path: str) -> EngineSettings:
    """Read and validate a config file; SettingsError names the section and key on problems."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc.strerror}") from None
    return parse_settings(text, source=path)


def replace(settings: SessionSettings, **changes: Any) -> SessionSettings:
    """A copy with some fields changed (validated again)."""
    return dataclasses.replace(settings, **changes)
