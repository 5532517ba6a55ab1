"""Server configuration: TOML in, a typed frozen ``ServerConfig`` out, every problem a
``ConfigError`` naming the key and the reason (``fix.port: must be an integer in 1..65535, got 'x'``).

``DEFAULT_CONFIG`` is what ``crossbook serve`` runs without ``--config`` (and what ``make serve``
uses); docs/config.md documents every key with a complete example.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossbook.core import STPMode
from crossbook.core.risk import RiskLimits
from crossbook.model.instruments import DEFAULT_INSTRUMENTS, FxRates, InstrumentMaster
from crossbook.oms.accounts import AccountSpec, ClientSessionSpec, Directory, FirmSpec
from crossbook.routing.fix_venue import FixVenue
from crossbook.routing.router import RouterConfig, load_routers
from crossbook.venues import BackgroundFlow


class ConfigError(ValueError):
    """A bad configuration value; the message starts with the key."""

    def __init__(self, key: str, reason: str, source: str = "") -> None:
        self.key = key
        self.reason = reason
        prefix = f"{source}: " if source else ""
        super().__init__(f"{prefix}{key}: {reason}")


@dataclass(frozen=True)
class FixConfig:
    host: str = "127.0.0.1"
    port: int = 9878
    comp_id: str = "CROSSBOOK"
    heartbeat_s: int = 30
    check_latency: bool = True
    max_latency_s: int = 120
    reset_on_logon: bool = False


@dataclass(frozen=True)
class HttpConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass(frozen=True)
class StorageConfig:
    dir: str = "./var"
    synchronous: str = "NORMAL"
    #: Where the journal log is applied to SQLite: "process" (a child process) or "thread".
    projection: str = "process"
    projection_interval_s: float = 0.02
    log_segment_bytes: int = 64 << 20

    @property
    def database(self) -> str:
        return str(Path(self.dir) / "crossbook.db")

    @property
    def fix_store_dir(self) -> str:
        return str(Path(self.dir) / "fix")


@dataclass(frozen=True)
class VenueConfig:
    name: str
    kind: str = "in_process"
    latency_us: int = 0
    reject_ratio: float = 0.0
    seed: int = 0
    background: BackgroundFlow | None = None
    #: ``kind = "fix"``: the table for ``FixVenue.from_config`` (defaults filled in: sender_comp_id
    #: = fix.comp_id, store_path = <storage.dir>/fix-venues/<name>); None for in-process venues.
    fix: dict | None = None


@dataclass(frozen=True)
class DropCopyConfig:
    """A drop-copy FIX session on the server's acceptor: ``comp_id`` (the receiver's
    SenderCompID) gets a copy of every ExecutionReport of the firms in ``firms`` (None: all)."""
    comp_id: str
    firms: tuple[str, ...] | None = None
    begin_string: str = "FIX.4.4"


@dataclass(frozen=True)
class ServerConfig:
    fix: FixConfig
    http: HttpConfig
    storage: StorageConfig
    instruments: InstrumentMaster
    fx_rates: FxRates
    directory: Directory
    limits: dict[str, RiskLimits]                 # account -> limits
    restricted: tuple[str, ...]                   # instrument keys restricted for everyone
    restricted_by_account: dict[str, tuple[str, ...]]
    venues: tuple[VenueConfig, ...]
    expiry_check_s: float = 1.0
    source: str = "<default>"
    routers: tuple[RouterConfig, ...] = ()
    drop_copies: tuple[DropCopyConfig, ...] = ()


_TOP_KEYS = {"fix", "http", "storage", "instruments", "fx_rates", "firms", "sessions", "venues", "risk", "oms",
             "routers", "drop_copy"}


def _table(value: Any, key: str, source: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a table, got {type(value).__name__}", source)
    return value


def _check_keys(table: dict, allowed: set[str], where: str, source: str) -> None:
    for k in table:
        if k not in allowed:
            raise ConfigError(f"{where}.{k}" if where else k, f"unknown key (known: {', '.join(sorted(allowed))})", source)


def _str(table: dict, key: str, where: str, source: str, default: str | None = None, *, required: bool = False) -> str:
    if key not in table:
        if required:
            raise ConfigError(f"{where}.{key}", "is required", source)
        return default  # type: ignore[return-value]
    value = table[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}.{key}", f"must be a non-empty string, got {value!r}", source)
    return value


def _int(table: dict, key: str, where: str, source: str, default: int, lo: int, hi: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{where}.{key}", f"must be an integer in {lo}..{hi}, got {value!r}", source)
    return value


def _bool(table: dict, key: str, where: str, source: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}", f"must be true or false, got {value!r}", source)
    return value


def _float(table: dict, key: str, where: str, source: str, default: float, lo: float, hi: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ConfigError(f"{where}.{key}", f"must be a number in {lo}..{hi}, got {value!r}", source)
    return float(value)


_STP = {"none": STPMode.NONE, "cancel_taker": STPMode.CANCEL_TAKER, "cancel_maker": STPMode.CANCEL_MAKER,
        "cancel_both": STPMode.CANCEL_BOTH}


def parse_config(data: dict, source: str = "<string>") -> ServerConfig:
    """Validate a parsed TOML document into a ServerConfig (raises ConfigError)."""
    if not isinstance(data, dict):
        raise ConfigError("(top)", "must be a TOML document", source)
    _check_keys(data, _TOP_KEYS, "", source)

    t = _table(data.get("fix"), "fix", source)
    _check_keys(t, {"host", "port", "comp_id", "heartbeat_s", "check_latency", "max_latency_s", "reset_on_logon"},
                "fix", source)
    fix = FixConfig(host=_str(t, "host", "fix", source, "127.0.0.1"), port=_int(t, "port", "fix", source, 9878, 0, 65535),
                    comp_id=_str(t, "comp_id", "fix", source, "CROSSBOOK"),
                    heartbeat_s=_int(t, "heartbeat_s", "fix", source, 30, 1, 3600),
                    check_latency=_bool(t, "check_latency", "fix", source, True),
                    max_latency_s=_int(t, "max_latency_s", "fix", source, 120, 1, 86400),
                    reset_on_logon=_bool(t, "reset_on_logon", "fix", source, False))

    t = _table(data.get("http"), "http", source)
    _check_keys(t, {"enabled", "host", "port"}, "http", source)
    http = HttpConfig(enabled=_bool(t, "enabled", "http", source, True), host=_str(t, "host", "http", source, "127.0.0.1"),
                      port=_int(t, "port", "http", source, 8080, 0, 65535))

    t = _table(data.get("storage"), "storage", source)
    _check_keys(t, {"dir", "synchronous", "projection", "projection_interval_s", "log_segment_bytes"}, "storage",
                source)
    sync = _str(t, "synchronous", "storage", source, "normal").upper()
    if sync not in ("NORMAL", "FULL"):
        raise ConfigError("storage.synchronous", f"must be normal or full, got {t['synchronous']!r}", source)
    projection = _str(t, "projection", "storage", source, "process")
    if projection not in ("process", "thread"):
        raise ConfigError("storage.projection", f"must be process or thread, got {projection!r}", source)
    storage = StorageConfig(dir=_str(t, "dir", "storage", source, "./var"), synchronous=sync, projection=projection,
                            projection_interval_s=_float(t, "projection_interval_s", "storage", source, 0.02,
                                                         0.001, 60.0),
                            log_segment_bytes=_int(t, "log_segment_bytes", "storage", source, 64 << 20, 4096,
                                                   1 << 40))

    t = _table(data.get("oms"), "oms", source)
    _check_keys(t, {"expiry_check_s"}, "oms", source)
    expiry_check_s = _float(t, "expiry_check_s", "oms", source, 1.0, 0.01, 3600)

    entries = data.get("instruments", DEFAULT_INSTRUMENTS)
    try:
        instruments = InstrumentMaster.from_config(entries)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc).split(":", 1)[0], str(exc).split(":", 1)[-1].strip(), source) from None
    try:
        fx_rates = FxRates.from_config(data.get("fx_rates", {"EURUSD": "1.08"}))
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc).split(":", 1)[0], str(exc).split(":", 1)[-1].strip(), source) from None

    directory = Directory()
    limits: dict[str, RiskLimits] = {}
    restricted_by_account: dict[str, tuple[str, ...]] = {}
    firms = data.get("firms")
    if not isinstance(firms, list) or not firms:
        raise ConfigError("firms", "must list at least one [[firms]] table", source)
    for fi, firm in enumerate(firms):
        where = f"firms[{fi}]"
        firm = _table(firm, where, source)
        _check_keys(firm, {"name", "default_account", "accounts"}, where, source)
        name = _str(firm, "name", where, source, required=True)
        if name in directory.firms:
            raise ConfigError(f"{where}.name", f"firm {name!r} is defined twice", source)
        accounts = firm.get("accounts")
        if not isinstance(accounts, list) or not accounts:
            raise ConfigError(f"{where}.accounts", "must list at least one [[firms.accounts]] table", source)
        names = []
        for ai, acc in enumerate(accounts):
            aw = f"{where}.accounts[{ai}]"
            acc = _table(acc, aw, source)
            _check_keys(acc, {"name", "currency", "stp", "limits", "restricted"}, aw, source)
            aname = _str(acc, "name", aw, source, required=True)
            if aname in directory.accounts:
                raise ConfigError(f"{aw}.name", f"account {aname!r} is defined twice", source)
            ccy = _str(acc, "currency", aw, source, "USD").upper()
            if len(ccy) != 3 or not ccy.isalpha():
                raise ConfigError(f"{aw}.currency", f"must be a 3-letter currency code, got {ccy!r}", source)
            stp = _str(acc, "stp", aw, source, "none")
            if stp not in _STP:
                raise ConfigError(f"{aw}.stp", f"must be one of {', '.join(_STP)}, got {stp!r}", source)
            try:
                limits[aname] = RiskLimits.from_dict(_table(acc.get("limits"), f"{aw}.limits", source), where=f"{aw}.limits")
            except (TypeError, ValueError) as exc:
                text = str(exc)
                raise ConfigError(text.split(":", 1)[0], text.split(":", 1)[-1].strip(), source) from None
            restricted = acc.get("restricted", [])
            if not isinstance(restricted, list) or not all(isinstance(s, str) for s in restricted):
                raise ConfigError(f"{aw}.restricted", "must be a list of instrument keys", source)
            for s in restricted:
                if instruments.by_symbol(s) is None:
                    raise ConfigError(f"{aw}.restricted", f"unknown instrument {s!r}", source)
            restricted_by_account[aname] = tuple(restricted)
            directory.accounts[aname] = AccountSpec(aname, len(directory.accounts), name, fi, ccy, _STP[stp])
            names.append(aname)
        default = _str(firm, "default_account", where, source, names[0])
        if default not in names:
            raise ConfigError(f"{where}.default_account", f"{default!r} is not one of the firm's accounts {names}", source)
        directory.firms[name] = FirmSpec(name, fi, default, tuple(names))

    sessions = data.get("sessions")
    if not isinstance(sessions, list) or not sessions:
        raise ConfigError("sessions", "must list at least one [[sessions]] table", source)
    for si, sess in enumerate(sessions):
        where = f"sessions[{si}]"
        sess = _table(sess, where, source)
        _check_keys(sess, {"comp_id", "firm", "begin_string", "msg_rate_per_sec", "cancel_on_disconnect"}, where,
                    source)
        comp = _str(sess, "comp_id", where, source, required=True)
        if comp in directory.sessions:
            raise ConfigError(f"{where}.comp_id", f"session {comp!r} is defined twice", source)
        if comp == fix.comp_id:
            raise ConfigError(f"{where}.comp_id", f"{comp!r} is the server's own CompID", source)
        firm = _str(sess, "firm", where, source, comp)
        if firm not in directory.firms:
            raise ConfigError(f"{where}.firm", f"unknown firm {firm!r} (firms: {', '.join(directory.firms)})", source)
        begin = _str(sess, "begin_string", where, source, "FIX.4.4")
        if begin not in ("FIX.4.2", "FIX.4.4"):
            raise ConfigError(f"{where}.begin_string", f"must be FIX.4.2 or FIX.4.4, got {begin!r}", source)
        rate = sess.get("msg_rate_per_sec")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or not 1 <= rate <= 1_000_000_000):
            raise ConfigError(f"{where}.msg_rate_per_sec", f"must be an integer in 1..1000000000, got {rate!r}", source)
        directory.sessions[comp] = ClientSessionSpec(comp, begin, firm, si, rate,
                                                     _bool(sess, "cancel_on_disconnect", where, source, False))

    t = _table(data.get("risk"), "risk", source)
    _check_keys(t, {"restricted"}, "risk", source)
    restricted = t.get("restricted", [])
    if not isinstance(restricted, list) or not all(isinstance(s, str) for s in restricted):
        raise ConfigError("risk.restricted", "must be a list of instrument keys", source)
    for s in restricted:
        if instruments.by_symbol(s) is None:
            raise ConfigError("risk.restricted", f"unknown instrument {s!r}", source)

    venues_raw = data.get("venues")
    if not isinstance(venues_raw, list) or not venues_raw:
        raise ConfigError("venues", "must list at least one [[venues]] table", source)
    venues = []
    for vi, v in enumerate(venues_raw):
        where = f"venues[{vi}]"
        v = _table(v, where, source)
        vname = _str(v, "name", where, source, required=True)
        kind = _str(v, "kind", where, source, "in_process")
        if kind == "fix":
            venues.append(_fix_venue(v, vname, where, fix, storage, instruments, source))
            continue
        if kind != "in_process":
            raise ConfigError(f"{where}.kind", f"must be in_process or fix, got {kind!r}", source)
        _check_keys(v, {"name", "kind", "latency_us", "reject_ratio", "seed", "background"}, where, source)
        try:
            background = BackgroundFlow.from_config(v["background"], where=f"{where}.background") if "background" in v else None
        except (TypeError, ValueError) as exc:
            text = str(exc)
            raise ConfigError(text.split(":", 1)[0], text.split(":", 1)[-1].strip(), source) from None
        venues.append(VenueConfig(vname, kind, _int(v, "latency_us", where, source, 0, 0, 10_000_000),
                                  _float(v, "reject_ratio", where, source, 0.0, 0.0, 1.0),
                                  _int(v, "seed", where, source, 0, 0, 2**32 - 1), background))
    names = [v.name for v in venues]
    if len(set(names)) != len(names):
        raise ConfigError("venues", f"a venue name appears twice: {names}", source)
    for inst in instruments:
        for vn in inst.venues:
            if vn not in names:
                raise ConfigError("instruments", f"{inst.key} is listed on venue {vn!r}, which is not configured "
                                  f"(venues: {', '.join(names)})", source)
    try:
        routers = load_routers(data.get("routers"), names, known_instruments=[i.key for i in instruments])
    except ValueError as exc:
        text = str(exc)
        raise ConfigError(text.split(":", 1)[0], text.split(":", 1)[-1].strip(), source) from None
    if routers:
        instruments = _with_routers(entries, instruments, routers, source)
    drop_copies = _drop_copies(data.get("drop_copy"), fix, directory, source)
    return ServerConfig(fix=fix, http=http, storage=storage, instruments=instruments, fx_rates=fx_rates,
                        directory=directory, limits=limits, restricted=tuple(restricted),
                        restricted_by_account=restricted_by_account, venues=tuple(venues),
                        expiry_check_s=expiry_check_s, source=source, routers=routers, drop_copies=drop_copies)


def _fix_venue(v: dict, name: str, where: str, fix: FixConfig, storage: StorageConfig,
               instruments: InstrumentMaster, source: str) -> VenueConfig:
    """A ``kind = "fix"`` venue: FixVenue's own loader checks the table (keys, types, ranges) by
    building one with a memory store, so every error appears at load, naming the key."""
    table = dict(v)
    table.setdefault("sender_comp_id", fix.comp_id)
    table.setdefault("store_path", str(Path(storage.dir) / "fix-venues" / name))
    if not isinstance(table["store_path"], str) or not table["store_path"]:
        raise ConfigError(f"{where}.store_path", f"must be a non-empty string, got {table['store_path']!r}", source)
    if not instruments.on_venue(name):
        raise ConfigError(f"{where}.name", f"no instrument lists venue {name!r}", source)
    try:
        FixVenue.from_config({**table, "store_path": None}, instruments, where=where)
    except (TypeError, ValueError) as exc:
        text = str(exc)
        raise ConfigError(text.split(":", 1)[0], text.split(":", 1)[-1].strip(), source) from None
    return VenueConfig(name, "fix", fix=table)


def _with_routers(entries: list, instruments: InstrumentMaster, routers: tuple[RouterConfig, ...],
                  source: str) -> InstrumentMaster:
    """The master again, with each router's name among the venues of the instruments its venues
    list (so ExDestination may name it) and as the default venue of the instruments it claims.
    The order manager accepts a venue for an instrument only when the instrument lists it; a
    router is a venue, so the instrument lists it."""
    out = []
    for entry, inst in zip(entries, instruments):
        entry = dict(entry)
        entry["venues"] = list(inst.venues) + [r.name for r in routers if set(r.venues) & set(inst.venues)]
        claimed = [r.name for r in routers if inst.key in r.instruments]
        if claimed:
            entry["default_venue"] = claimed[0]
        out.append(entry)
    try:
        master = InstrumentMaster.from_config(out)
    except (TypeError, ValueError) as exc:
        raise ConfigError("routers", str(exc), source) from None
    for r in routers:
        for key in r.instruments:
            if r.name not in master.by_symbol(key).venues:
                raise ConfigError("routers", f"router {r.name} claims {key}, which none of its venues "
                                  f"{list(r.venues)} lists", source)
    return master


def _drop_copies(raw: Any, fix: FixConfig, directory: Directory, source: str) -> tuple[DropCopyConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("drop_copy", "must be a list of [[drop_copy]] tables", source)
    out: list[DropCopyConfig] = []
    for i, t in enumerate(raw):
        where = f"drop_copy[{i}]"
        t = _table(t, where, source)
        _check_keys(t, {"comp_id", "scope", "firms", "begin_string"}, where, source)
        comp = _str(t, "comp_id", where, source, required=True)
        if comp == fix.comp_id:
            raise ConfigError(f"{where}.comp_id", f"{comp!r} is the server's own CompID", source)
        if comp in directory.sessions:
            raise ConfigError(f"{where}.comp_id", f"{comp!r} is already an order-entry session", source)
        if comp in (d.comp_id for d in out):
            raise ConfigError(f"{where}.comp_id", f"drop copy session {comp!r} is defined twice", source)
        begin = _str(t, "begin_string", where, source, "FIX.4.4")
        if begin != "FIX.4.4":
            # CopyMsgIndicator (797), which marks a copy, exists from FIX 4.4 on.
            raise ConfigError(f"{where}.begin_string", f"drop copy sessions are FIX.4.4, got {begin!r}", source)
        scope = _str(t, "scope", where, source, "firms" if "firms" in t else "all")
        if scope == "all":
            if "firms" in t:
                raise ConfigError(f"{where}.firms", 'not allowed with scope = "all"', source)
            firms = None
        elif scope == "firms":
            listed = t.get("firms")
            if not isinstance(listed, list) or not listed or not all(isinstance(f, str) for f in listed):
                raise ConfigError(f"{where}.firms", f"must be a non-empty list of firm names, got {listed!r}", source)
            for f in listed:
                if f not in directory.firms:
                    raise ConfigError(f"{where}.firms", f"unknown firm {f!r} (firms: {', '.join(directory.firms)})",
                                      source)
            firms = tuple(listed)
        else:
            raise ConfigError(f"{where}.scope", f'must be "all" or "firms", got {scope!r}', source)
        out.append(DropCopyConfig(comp, firms, begin))
    return tuple(out)


def load_config(path: str | None = None, overrides: dict | None = None) -> ServerConfig:
    """The config in ``path`` (TOML), or the embedded default when None; ``overrides`` are merged
    on top, table by table (used by tests and ``serve --port``-style flags)."""
    if path is None:
        data = tomllib.loads(DEFAULT_CONFIG)
        source = "<default config>"
    else:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError("(file)", f"cannot read {path}: {exc.strerror}", path) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("(syntax)", str(exc), path) from None
        source = path
    if overrides:
        data = merge(data, overrides)
    return parse_config(data, source)


def merge(base: dict, overrides: dict) -> dict:
    out = dict(base)
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


DEFAULT_CONFIG = """
# The embedded default configuration of `crossbook serve` (docs/config.md explains every key).
[fix]
host = "127.0.0.1"
port = 9878
comp_id = "CROSSBOOK"

[http]
host = "127.0.0.1"
port = 8080

[storage]
dir = "./var"

[fx_rates]
EURUSD = "1.08"

[[firms]]
name = "FIRM1"
default_account = "ACC1"
[[firms.accounts]]
name = "ACC1"
stp = "cancel_taker"
limits = { max_order_qty = 100000, max_order_notional = "5000000", collar_pct = "10", daily_credit_limit = "50000000", max_position = 500000, max_open_orders = 1000 }
[[firms.accounts]]
name = "ACC2"
currency = "EUR"
limits = { max_order_qty = 10000, max_order_notional = "1000000", collar_pct = "10", market_orders_allowed = false }

[[firms]]
name = "FIRM2"
default_account = "ACC3"
[[firms.accounts]]
name = "ACC3"
limits = { max_order_qty = 100000, max_order_notional = "5000000", collar_pct = "10", daily_credit_limit = "50000000" }

[[firms]]
name = "FIRM42"
default_account = "ACC42"
[[firms.accounts]]
name = "ACC42"
limits = { max_order_qty = 100000, max_order_notional = "5000000", collar_pct = "10" }

[[sessions]]
comp_id = "FIRM1"
firm = "FIRM1"
begin_string = "FIX.4.4"
msg_rate_per_sec = 5000

[[sessions]]
comp_id = "FIRM2"
firm = "FIRM2"
begin_string = "FIX.4.4"
msg_rate_per_sec = 5000

[[sessions]]
comp_id = "FIRM42"
firm = "FIRM42"
begin_string = "FIX.4.2"
msg_rate_per_sec = 5000

[[venues]]
name = "VENUE-A"
seed = 1
background = { enabled = true, rate = 20.0, seed = 11 }

[[venues]]
name = "VENUE-B"
seed = 2
background = { enabled = true, rate = 20.0, seed = 22 }
"""
