"""``crossbook venue --config FILE``: one venue simulator as its own process behind a FIX acceptor.

The TOML file (every key in docs/venue-process.md)::

    [venue]
    name = "VENUE-A"            # the venue's name; instruments list it in their `venues`
    comp_id = "VENUE-A"         # our SenderCompID (default: name)
    host = "127.0.0.1"
    port = 9901                 # 0 = any free port (printed at start)
    storage = "var/venue-a"     # directory of the FIX session stores (sequence numbers, resend)
    seed = 0                    # reject-ratio draws
    [[sessions]]
    comp_id = "CROSSBOOK"       # a client's SenderCompID (our TargetCompID); FIX.4.4
    [background]                # BackgroundFlow keys; absent = empty books
    rate = 20
    [faults]
    latency_us = 0
    reject_ratio = 0.0
    disconnect_after_messages = 0
    disconnect_repeat = false
    [market_data]
    max_depth = 10
    conflate_ms = 0
    [[instruments]]             # absent = the default instrument set (DEFAULT_INSTRUMENTS)

Signals: SIGINT / SIGTERM stop cleanly (sessions logged out, stores closed); SIGUSR1 drops every
session's connection without a Logout (a simulated network failure; clients reconnect).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tomllib
from dataclasses import dataclass, field

from crossbook.fix.settings import SessionSettings, SettingsError
from crossbook.model.instruments import DEFAULT_INSTRUMENTS, InstrumentMaster
from crossbook.venues.fixserver import SystemNsClock, VenueFixServer
from crossbook.venues.simulator import BackgroundFlow, InProcessVenue

__all__ = ["VenueConfig", "SessionConfig", "load_venue_config", "parse_venue_config", "build_server",
           "add_arguments", "run"]

log = logging.getLogger("crossbook.venue")

_VENUE_KEYS = ("name", "comp_id", "host", "port", "storage", "seed", "tick_s", "log_level")
_SESSION_KEYS = ("comp_id", "username", "password", "reset_on_logon", "reason_codes", "validate")
_FAULT_KEYS = ("latency_us", "reject_ratio", "disconnect_after_messages", "disconnect_repeat")
_MD_KEYS = ("max_depth", "conflate_ms")
_TOP_KEYS = ("venue", "sessions", "background", "faults", "market_data", "instruments")


class VenueConfigError(ValueError):
    """A bad venue config; the message starts with the full key."""


@dataclass(frozen=True)
class SessionConfig:
    comp_id: str
    username: str | None = None
    password: str | None = None
    reset_on_logon: bool = False
    reason_codes: bool = False
    validate: bool = True


@dataclass(frozen=True)
class VenueConfig:
    name: str
    comp_id: str
    host: str
    port: int
    storage: str | None
    seed: int
    tick_s: float
    log_level: str
    sessions: tuple[SessionConfig, ...]
    background: BackgroundFlow | None
    latency_us: int
    reject_ratio: float
    disconnect_after_messages: int
    disconnect_repeat: bool
    md_max_depth: int
    md_conflate_ms: int
    instruments: InstrumentMaster = field(repr=False)

    def session_settings(self) -> list[SessionSettings]:
        """Acceptor settings for every client session (FIX.4.4, file stores under ``storage``)."""
        out = []
        for s in self.sessions:
            out.append(SessionSettings(
                begin_string="FIX.4.4", sender_comp_id=self.comp_id, target_comp_id=s.comp_id,
                connection_type="acceptor", reset_on_logon=s.reset_on_logon, username=s.username,
                password=s.password, store="file" if self.storage else "memory", file_store_path=self.storage,
                socket_accept_host=self.host, socket_accept_port=self.port,
                # Our tags 5100/5102 travel between crossbook peers; other clients may ignore them.
                validate_user_defined_fields=False, use_data_dictionary=s.validate))
        return out


def _err(key: str, why: str) -> VenueConfigError:
    return VenueConfigError(f"{key}: {why}")


def _table(doc: dict, key: str) -> dict:
    t = doc.get(key, {})
    if not isinstance(t, dict):
        raise _err(key, f"must be a table, got {type(t).__name__}")
    return t


def _unknown(t: dict, known: tuple, where: str) -> None:
    for k in t:
        if k not in known:
            raise _err(f"{where}.{k}" if where else k, f"unknown key (known: {', '.join(known)})")


def _int(t: dict, key: str, where: str, default: int, low: int, high: int) -> int:
    v = t.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise _err(f"{where}.{key}", f"must be an integer from {low} to {high}, got {v!r}")
    return v


def _str(t: dict, key: str, where: str, default: str | None) -> str | None:
    v = t.get(key, default)
    if v is not None and (not isinstance(v, str) or not v.strip()):
        raise _err(f"{where}.{key}", f"must be a non-empty string, got {v!r}")
    return v


def _bool(t: dict, key: str, where: str, default: bool) -> bool:
    v = t.get(key, default)
    if not isinstance(v, bool):
        raise _err(f"{where}.{key}", f"must be true or false, got {v!r}")
    return v


def parse_venue_config(doc: dict) -> VenueConfig:
    """Validate a parsed TOML document (a relative ``venue.storage`` is taken from the working
    directory, as the server's ``storage.dir``)."""
    _unknown(doc, _TOP_KEYS, "")
    v = _table(doc, "venue")
    _unknown(v, _VENUE_KEYS, "venue")
    name = _str(v, "name", "venue", None)
    if name is None:
        raise _err("venue.name", "required (the name instruments list in their `venues`)")
    comp_id = _str(v, "comp_id", "venue", name)
    host = _str(v, "host", "venue", "127.0.0.1")
    port = _int(v, "port", "venue", -1, -1, 65535)
    if port < 0:
        raise _err("venue.port", "required (0 = any free port)")
    # Relative to the working directory, like the server's storage.dir.
    storage = _str(v, "storage", "venue", None)
    seed = _int(v, "seed", "venue", 0, 0, 2**63 - 1)
    tick_s = v.get("tick_s", 0.05)
    if isinstance(tick_s, bool) or not isinstance(tick_s, (int, float)) or not 0 < tick_s <= 60:
        raise _err("venue.tick_s", f"must be seconds in (0, 60], got {tick_s!r}")
    log_level = _str(v, "log_level", "venue", "info").lower()
    if log_level not in ("debug", "info", "warning", "error"):
        raise _err("venue.log_level", f"must be debug, info, warning or error, got {log_level!r}")

    sessions_raw = doc.get("sessions")
    if not isinstance(sessions_raw, list) or not sessions_raw:
        raise _err("sessions", "at least one [[sessions]] table is required (the client CompIDs)")
    sessions = []
    for i, s in enumerate(sessions_raw):
        where = f"sessions[{i}]"
        if not isinstance(s, dict):
            raise _err(where, "must be a table")
        _unknown(s, _SESSION_KEYS, where)
        cid = _str(s, "comp_id", where, None)
        if cid is None:
            raise _err(f"{where}.comp_id", "required (the client's SenderCompID)")
        if any(x.comp_id == cid for x in sessions):
            raise _err(f"{where}.comp_id", f"duplicate session {cid!r}")
        sessions.append(SessionConfig(cid, _str(s, "username", where, None), _str(s, "password", where, None),
                                      _bool(s, "reset_on_logon", where, False), _bool(s, "reason_codes", where, False),
                                      _bool(s, "validate", where, True)))

    background = None
    if "background" in doc:
        try:
            background = BackgroundFlow.from_config(doc["background"], where="background")
        except (TypeError, ValueError) as e:
            raise VenueConfigError(str(e)) from None

    f = _table(doc, "faults")
    _unknown(f, _FAULT_KEYS, "faults")
    latency_us = _int(f, "latency_us", "faults", 0, 0, 60_000_000)
    rr = f.get("reject_ratio", 0.0)
    if isinstance(rr, bool) or not isinstance(rr, (int, float)) or not 0 <= rr <= 1:
        raise _err("faults.reject_ratio", f"must be a number from 0 to 1, got {rr!r}")
    after = _int(f, "disconnect_after_messages", "faults", 0, 0, 2**31)
    repeat = _bool(f, "disconnect_repeat", "faults", False)

    md = _table(doc, "market_data")
    _unknown(md, _MD_KEYS, "market_data")
    depth = _int(md, "max_depth", "market_data", 10, 1, 1000)
    conflate_ms = _int(md, "conflate_ms", "market_data", 0, 0, 60_000)

    entries = doc.get("instruments", DEFAULT_INSTRUMENTS)
    try:
        master = InstrumentMaster.from_config(entries)
    except ValueError as e:
        raise VenueConfigError(str(e)) from None
    if not master.on_venue(name):
        raise _err("instruments", f"no instrument lists the venue {name!r} in its `venues`")
    if background is not None:
        for inst in master.on_venue(name):
            if inst.reference_price is None:
                raise _err("instruments", f"{inst.key} needs a reference_price: background flow is centred on it")
    return VenueConfig(name, comp_id, host, port, storage, seed, float(tick_s), log_level, tuple(sessions),
                       background, latency_us, float(rr), after, repeat, depth, conflate_ms, master)


def load_venue_config(path: str) -> VenueConfig:
    """Read and validate a venue TOML file; errors are VenueConfigError naming file and key."""
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as e:
        raise VenueConfigError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise VenueConfigError(f"{path}: not valid TOML: {e}") from None
    try:
        return parse_venue_config(doc)
    except VenueConfigError as e:
        raise VenueConfigError(f"{path}: {e}") from None


def build_server(cfg: VenueConfig, *, port: int | None = None) -> VenueFixServer:
    """The InProcessVenue and its FIX acceptor, as the config says (not started)."""
    venue = InProcessVenue(cfg.name, cfg.instruments, SystemNsClock(), background=cfg.background,
                           latency_ns=cfg.latency_us * 1000, reject_ratio=cfg.reject_ratio, seed=cfg.seed,
                           tick_s=cfg.tick_s)
    try:
        settings = cfg.session_settings()
    except SettingsError as e:
        raise VenueConfigError(f"sessions: {e}") from None
    return VenueFixServer(venue, cfg.instruments, settings, host=cfg.host, port=cfg.port if port is None else port,
                          md_max_depth=cfg.md_max_depth, md_conflate_s=cfg.md_conflate_ms / 1000,
                          disconnect_after=cfg.disconnect_after_messages, disconnect_repeat=cfg.disconnect_repeat,
                          reason_code_sessions={s.comp_id for s in cfg.sessions if s.reason_codes})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="venue TOML file (docs/venue-process.md)")
    parser.add_argument("--port", type=int, default=None, help="override venue.port (0 = any free port)")


async def _serve(cfg: VenueConfig, port: int | None) -> int:
    server = build_server(cfg, port=port)
    await server.start()
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: log.warning(
        "SIGUSR1: dropped %d session(s)", server.drop_all_sessions()))
    # As `crossbook serve` does (crossbook.app.gcpolicy): the venue keeps its orders in memory,
    # and CPython's default policy re-scans them in generation-1/2 collections of 0.4-3.6 ms that
    # land in the tail of every order behind them. This is the process's entry point, so it may
    # reach the application layer's policy.
    from crossbook.app.gcpolicy import YoungOnlyGC
    gc_policy = YoungOnlyGC()
    gc_policy.install()
    comp_ids = ", ".join(s.comp_id for s in cfg.sessions)
    print(f"crossbook venue {cfg.name}: FIX.4.4 listening on {cfg.host}:{server.port} as {cfg.comp_id}; "
          f"client CompIDs: {comp_ids}; instruments: {', '.join(i.key for i in cfg.instruments.on_venue(cfg.name))}; "
          f"pid {os.getpid()}", flush=True)
    try:
        await done.wait()
    finally:
        await server.stop()
        gc_policy.uninstall()
        print(f"crossbook venue {cfg.name}: stopped", flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_venue_config(args.config)
    except VenueConfigError as e:
        print(f"crossbook venue: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=getattr(logging, cfg.log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from crossbook.fix.transport import install_uvloop
    install_uvloop()
    try:
        return asyncio.run(_serve(cfg, args.port))
    except OSError as e:
        print(f"crossbook venue: cannot listen on {cfg.host}:{args.port if args.port is not None else cfg.port}: "
              f"{e.strerror}", file=sys.stderr)
        return 1
