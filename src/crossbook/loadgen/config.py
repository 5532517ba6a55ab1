"""What a load run does: sessions, rate, duration, order mix, symbols, sizes, limits.

``LoadConfig`` is frozen and validated at construction (a ``ValueError`` naming the field).
``sessions_from_server_config`` and ``symbols_from_instruments`` read the same TOML that
``crossbook serve --config`` reads (or its embedded default), so the generator's CompIDs,
accounts, tick sizes and reference prices match the server's.
"""
from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from decimal import Decimal

LOOPBACK_NAMES = {"localhost"}


@dataclass(frozen=True)
class SessionSpec:
    """One FIX session: our CompID (the server's TargetCompID), its FIX version and account."""

    comp_id: str
    begin_string: str = "FIX.4.4"
    account: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.comp_id, str) or not self.comp_id or "\x01" in self.comp_id:
            raise ValueError(f"session comp_id must be a non-empty string, got {self.comp_id!r}")
        if self.begin_string not in ("FIX.4.2", "FIX.4.4"):
            raise ValueError(f"session {self.comp_id}: begin_string must be FIX.4.2 or FIX.4.4, got {self.begin_string!r}")


@dataclass(frozen=True)
class SymbolSpec:
    """An instrument as the generator prices it: tick size, reference price in ticks, lot size."""

    symbol: str
    tick_size: Decimal
    reference_ticks: int
    lot_size: int = 1

    def __post_init__(self) -> None:
        if not self.symbol or "\x01" in self.symbol:
            raise ValueError(f"symbol must be a non-empty string, got {self.symbol!r}")
        if not isinstance(self.tick_size, Decimal) or self.tick_size <= 0:
            raise ValueError(f"{self.symbol}: tick_size must be a positive Decimal, got {self.tick_size!r}")
        if isinstance(self.reference_ticks, bool) or not isinstance(self.reference_ticks, int) or self.reference_ticks <= 0:
            raise ValueError(f"{self.symbol}: reference price must be a positive number of ticks, got {self.reference_ticks!r}")
        if isinstance(self.lot_size, bool) or not isinstance(self.lot_size, int) or self.lot_size <= 0:
            raise ValueError(f"{self.symbol}: lot_size must be a positive integer, got {self.lot_size!r}")

    def price_text(self, ticks: int) -> bytes:
        """Price of ``ticks`` ticks as FIX decimal text, in the tick size's precision."""
        value = self.tick_size * ticks
        exponent = self.tick_size.as_tuple().exponent
        places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        return f"{value:.{places}f}".encode()


@dataclass(frozen=True)
class OrderMix:
    """Shares of each action; normalised, at least one positive.

    * passive: a DAY limit order priced ``passive_ticks`` away from the reference, on its side
      of the book (it rests);
    * marketable: an IOC limit order priced ``aggressive_ticks`` through the reference (it
      trades against what rests, the venue's background liquidity or other sessions' passive
      orders, and any remainder is cancelled);
    * cancel / replace: of one of the session's own resting passive orders.
    """

    passive: float = 0.45
    marketable: float = 0.30
    cancel: float = 0.15
    replace: float = 0.10

    def __post_init__(self) -> None:
        for name in ("passive", "marketable", "cancel", "replace"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"mix.{name} must be a non-negative number, got {value!r}")
        if self.passive + self.marketable + self.cancel + self.replace <= 0:
            raise ValueError("mix: at least one share must be positive")

    @classmethod
    def parse(cls, text: str) -> "OrderMix":
        """``passive=45,marketable=30,cancel=15,replace=10`` (missing names count 0)."""
        values = {"passive": 0.0, "marketable": 0.0, "cancel": 0.0, "replace": 0.0}
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, raw = part.partition("=")
            name = name.strip().lower()
            if not sep or name not in values:
                raise ValueError(f"mix: expected name=share with names {', '.join(values)}, got {part!r}")
            try:
                values[name] = float(raw)
            except ValueError:
                raise ValueError(f"mix.{name}: {raw.strip()!r} is not a number") from None
        return cls(**values)

    def cumulative(self) -> tuple[float, float, float]:
        total = self.passive + self.marketable + self.cancel + self.replace
        a = self.passive / total
        b = a + self.marketable / total
        c = b + self.cancel / total
        return a, b, c


def _positive(name: str, value, *, allow_none: bool = False, integer: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive {'integer' if integer else 'number'}, got {value!r}")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class LoadConfig:
    """One load run. ``rate`` is orders+cancels+replaces per second over all sessions."""

    sessions: tuple[SessionSpec, ...]
    symbols: tuple[SymbolSpec, ...]
    host: str = "127.0.0.1"
    port: int = 9878
    target_comp_id: str = "CROSSBOOK"
    rate: float = 1000.0
    duration_s: float | None = 10.0
    count: int | None = None
    mix: OrderMix = field(default_factory=OrderMix)
    lots: tuple[int, int] = (1, 10)
    passive_ticks: tuple[int, int] = (5, 30)
    aggressive_ticks: int = 20
    seed: int = 1
    arrival: str = "uniform"
    timeout_s: float = 5.0
    drain_s: float = 5.0
    max_resting: int = 200
    batch_us: float = 0.0
    #: Wait for slots by polling the event loop instead of a timerfd (the only way where there
    #: is no timerfd; otherwise for comparison: polling keeps one core busy, docs/loadgen.md).
    poll: bool = False
    #: ExDestination (100) on every NewOrderSingle: a venue or router name of the server ("" = none,
    #: the instrument's default venue). Routed runs: ``ex_destination="SOR"`` with the bundled config.
    ex_destination: str = ""
    heartbeat_s: int = 30
    logon_timeout_s: float = 10.0
    cleanup: bool = True
    allow_remote: bool = False

    def __post_init__(self) -> None:
        if not self.sessions:
            raise ValueError("sessions: at least one session is needed")
        if len({s.comp_id for s in self.sessions}) != len(self.sessions):
            raise ValueError(f"sessions: a CompID appears twice: {[s.comp_id for s in self.sessions]}")
        if not self.symbols:
            raise ValueError("symbols: at least one symbol is needed")
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"host must be a host name or address, got {self.host!r}")
        if not self.allow_remote and not is_loopback(self.host):
            raise ValueError(f"host {self.host!r} is not a loopback address: load tests go to 127.0.0.1 only "
                             "(pass allow_remote / --allow-remote to override)")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ValueError(f"port must be an integer in 1..65535, got {self.port!r}")
        if not self.target_comp_id:
            raise ValueError("target_comp_id must not be empty")
        _positive("rate", self.rate)
        _positive("duration_s", self.duration_s, allow_none=True)
        _positive("count", self.count, allow_none=True, integer=True)
        if self.duration_s is None and self.count is None:
            raise ValueError("a run needs a duration_s, a count, or both (it must end by itself)")
        lo, hi = self.lots
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
            raise ValueError(f"lots must be two integers 1 <= min <= max, got {self.lots!r}")
        lo, hi = self.passive_ticks
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
            raise ValueError(f"passive_ticks must be two integers 1 <= min <= max, got {self.passive_ticks!r}")
        _positive("aggressive_ticks", self.aggressive_ticks, integer=True)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.arrival not in ("uniform", "poisson"):
            raise ValueError(f"arrival must be 'uniform' or 'poisson', got {self.arrival!r}")
        _positive("timeout_s", self.timeout_s)
        if isinstance(self.drain_s, bool) or not isinstance(self.drain_s, (int, float)) or self.drain_s < 0:
            raise ValueError(f"drain_s must be a number >= 0, got {self.drain_s!r}")
        _positive("max_resting", self.max_resting, integer=True)
        if isinstance(self.batch_us, bool) or not isinstance(self.batch_us, (int, float)) \
                or not 0 <= self.batch_us <= 100_000:
            raise ValueError(f"batch_us must be a number in 0..100000, got {self.batch_us!r}")
        if not isinstance(self.ex_destination, str) or len(self.ex_destination) > 64 \
                or any(not " " < ch <= "~" for ch in self.ex_destination):
            raise ValueError(f"ex_destination must be a venue or router name (printable ASCII, no spaces, at most "
                             f"64 characters) or empty, got {self.ex_destination!r}")
        if not isinstance(self.poll, bool):
            raise ValueError(f"poll must be True or False, got {self.poll!r}")
        _positive("heartbeat_s", self.heartbeat_s, integer=True)
        _positive("logon_timeout_s", self.logon_timeout_s)
        for s in self.symbols:
            if s.reference_ticks - self.passive_ticks[1] <= 0 or s.reference_ticks - self.aggressive_ticks <= 0:
                raise ValueError(f"{s.symbol}: reference price {s.reference_ticks} ticks is too low for "
                                 f"passive_ticks {self.passive_ticks} / aggressive_ticks {self.aggressive_ticks}")

    @property
    def planned(self) -> int | None:
        """Messages the schedule holds when it is bounded by count (else None: by duration)."""
        if self.count is not None and self.duration_s is not None:
            return min(self.count, int(self.rate * self.duration_s))
        return self.count


def sessions_from_server_config(server_config, names: list[str] | None = None) -> tuple[SessionSpec, ...]:
    """The client sessions of a ``crossbook.app.config.ServerConfig`` (all, or those named)."""
    d = server_config.directory
    chosen = list(d.sessions) if not names else names
    out = []
    for name in chosen:
        spec = d.sessions.get(name)
        if spec is None:
            raise ValueError(f"session {name!r} is not in the server config (sessions: {', '.join(d.sessions)})")
        out.append(SessionSpec(spec.comp_id, spec.begin_string, d.firms[spec.firm].default_account))
    return tuple(out)


def symbols_from_instruments(master, names: list[str]) -> tuple[SymbolSpec, ...]:
    """``SymbolSpec``s for the named instruments of an ``InstrumentMaster`` (plain ones by symbol)."""
    out = []
    for name in names:
        try:
            inst = master.resolve(name)
        except ValueError as exc:
            raise ValueError(f"symbol {name!r}: {exc}") from None
        if inst.reference_price is None:
            raise ValueError(f"symbol {name!r}: the instrument has no reference_price to price orders around")
        out.append(SymbolSpec(name, inst.tick_size, inst.price_to_ticks(inst.reference_price), inst.lot_size))
    return tuple(out)
