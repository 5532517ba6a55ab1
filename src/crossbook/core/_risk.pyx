# cython: freethreading_compatible = False
"""Compiled pre-trade risk engine: per-account limits, usage accounting and kill switches.

The semantics (check order, units, usage accounting, replace rules) are described in
docs/risk.md.  Configuration calls keep their inputs as Python objects (for the rejection texts
and the FX recomputation) and write the numbers the checks need into C arrays; the checks read
only those arrays, without the GIL and without creating Python objects.
"""
from collections import namedtuple
from dataclasses import dataclass, fields, replace as _dc_replace
from decimal import Decimal, InvalidOperation
from enum import IntEnum
import math

import numpy as np

from cpython.long cimport PyLong_Check
from libc.math cimport INFINITY, NAN, isfinite, isnan
from libc.stdint cimport INT64_MAX, INT64_MIN, int32_t, int64_t, uint8_t, uintptr_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy


cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object obj, int* overflow) except? -1

# 128-bit products for the collar comparison: |price - ref| x 10,000 overflows int64 for the
# largest tick prices.  gcc and clang provide __int128 on every 64-bit target we build on.
cdef extern from *:
    ctypedef long long i128 "__int128"


# ------------------------------------------------------------------------------------------------
# Public enums and value types
# ------------------------------------------------------------------------------------------------

class RiskCode(IntEnum):
    """Outcome of a pre-trade check; OK (0) passes, every other value names the failed check."""
    OK = 0
    KILL_GLOBAL = 1
    KILL_FIRM = 2
    KILL_ACCOUNT = 3
    MSG_RATE = 4
    RESTRICTED_GLOBAL = 5
    RESTRICTED_ACCOUNT = 6
    MARKET_NOT_ALLOWED = 7
    MAX_ORDER_QTY = 8
    NO_FX_RATE = 9
    NO_REFERENCE_PRICE = 10
    MAX_ORDER_NOTIONAL = 11
    PRICE_COLLAR = 12
    MAX_OPEN_ORDERS = 13
    DAILY_CREDIT = 14
    MAX_POSITION = 15


CHECK_NAMES = {
    RiskCode.OK: "",
    RiskCode.KILL_GLOBAL: "kill switch (global)",
    RiskCode.KILL_FIRM: "kill switch (firm)",
    RiskCode.KILL_ACCOUNT: "kill switch (account)",
    RiskCode.MSG_RATE: "message rate",
    RiskCode.RESTRICTED_GLOBAL: "restricted instrument (global)",
    RiskCode.RESTRICTED_ACCOUNT: "restricted instrument (account)",
    RiskCode.MARKET_NOT_ALLOWED: "market orders not allowed",
    RiskCode.MAX_ORDER_QTY: "max order quantity",
    RiskCode.NO_FX_RATE: "no FX rate",
    RiskCode.NO_REFERENCE_PRICE: "no reference price",
    RiskCode.MAX_ORDER_NOTIONAL: "max order notional",
    RiskCode.PRICE_COLLAR: "price collar",
    RiskCode.MAX_OPEN_ORDERS: "max open orders",
    RiskCode.DAILY_CREDIT: "daily credit limit",
    RiskCode.MAX_POSITION: "max position",
}

_RiskDecisionBase = namedtuple("RiskDecision", "code text")


class RiskDecision(_RiskDecisionBase):
    """A check's outcome with its text: ``code`` (RiskCode) and ``text`` ("" when accepted)."""
    __slots__ = ()

    @property
    def accepted(self) -> bool:
        return self.code == 0


def _optional_int(value, name, minimum):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer or None, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum} or None, got {value}")
    return value


def _optional_amount(value, name):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        raise TypeError(f"{name} must be a number, a decimal string or None, "
                        f"got {type(value).__name__}")
    try:
        amount = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{name} must be a decimal number, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{name} must be a finite amount >= 0 or None, got {value!r}")
    return amount


@dataclass(frozen=True)
class RiskLimits:
    """One account's limits; ``None`` means no limit.

    Notional amounts are in the account's currency (Decimal, int, float or decimal string;
    stored as Decimal).  ``collar_bps``: the largest allowed distance of an order's price from the
    instrument's reference price, in basis points of the reference (500 = 5%).
    ``max_position``: the largest absolute net position per instrument, counting open orders in
    the worst case.
    """
    max_order_qty: int | None = None
    max_order_notional: Decimal | None = None
    collar_bps: int | None = None
    daily_credit_limit: Decimal | None = None
    max_position: int | None = None
    max_open_orders: int | None = None
    market_orders_allowed: bool = True

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "max_order_qty", _optional_int(self.max_order_qty, "max_order_qty", 0))
        set_(self, "collar_bps", _optional_int(self.collar_bps, "collar_bps", 0))
        set_(self, "max_position", _optional_int(self.max_position, "max_position", 0))
        set_(self, "max_open_orders", _optional_int(self.max_open_orders, "max_open_orders", 0))
        set_(self, "max_order_notional",
             _optional_amount(self.max_order_notional, "max_order_notional"))
        set_(self, "daily_credit_limit",
             _optional_amount(self.daily_credit_limit, "daily_credit_limit"))
        if not isinstance(self.market_orders_allowed, bool):
            raise TypeError("market_orders_allowed must be a bool, "
                            f"got {type(self.market_orders_allowed).__name__}")

    def replace(self, **changes) -> "RiskLimits":
        """A copy with some limits changed (run-time changes go through set_limits)."""
        return _dc_replace(self, **changes)

    @classmethod
    def from_dict(cls, entries: dict, where: str = "limits") -> "RiskLimits":
        """From a config table: the field names, plus ``collar_pct`` (percent, Decimal-exact) as
        an alternative to ``collar_bps``.  Errors name the key (``where.key``)."""
        if not isinstance(entries, dict):
            raise TypeError(f"{where} must be a table, got {type(entries).__name__}")
        known = {f.name for f in fields(cls)} | {"collar_pct"}
        kwargs = {}
        for key, value in entries.items():
            if key not in known:
                raise ValueError(f"{where}.{key}: unknown risk limit (known: {', '.join(sorted(known))})")
            if key == "collar_pct":
                if "collar_bps" in entries:
                    raise ValueError(f"{where}.collar_pct: give collar_pct or collar_bps, not both")
                try:
                    pct = _optional_amount(value, "collar_pct")
                except (TypeError, ValueError) as exc:
                    raise type(exc)(f"{where}.{exc}") from None
                bps = pct * 100
                if bps != bps.to_integral_value():
                    raise ValueError(f"{where}.collar_pct: {value} is not a whole number of basis points")
                kwargs["collar_bps"] = int(bps)
            else:
                kwargs[key] = value
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}.{exc}") from None


# ------------------------------------------------------------------------------------------------
# Constants and helpers
# ------------------------------------------------------------------------------------------------

# Same caps as the order book: qty x price stays exact in a double's 53-bit mantissa per factor.
MAX_QTY = 1 << 40
MAX_PRICE = 1 << 53
cdef int64_t C_MAX_QTY = MAX_QTY
cdef int64_t C_MAX_PRICE = MAX_PRICE
# Usage values restored from a snapshot stay far from int64 overflow in position arithmetic.
cdef int64_t C_MAX_USAGE = 1 << 60
# One message in the token bucket's integer units: refill is elapsed_ns x rate, exact.
cdef int64_t MSG = 1_000_000_000
MAX_MSG_RATE = 1_000_000_000
# Notional limits compare with one part per billion of slack: float64 carries ~16 digits, so a
# notional that equals its limit in decimal passes even after the conversions and many summed
# orders, while the slack stays below a cent on limits up to 10 million (docs/risk.md).
NOTIONAL_TOLERANCE = 1e-9
cdef double TOL = 1.0 + NOTIONAL_TOLERANCE

cdef list _CODE_BY_VALUE = [None] * 16
for _c in RiskCode:
    _CODE_BY_VALUE[int(_c)] = _c

_SCOPES = ("global", "firm", "account")


cdef inline int64_t _as_i64(object value, str name) except? -1:
    """int64 from a Python integer, with a TypeError/ValueError naming the argument."""
    cdef int overflow = 0
    cdef long long r
    if not PyLong_Check(value):
        if isinstance(value, float) or not hasattr(value, "__index__"):
            raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
        value = value.__index__()
    r = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow:
        raise ValueError(f"{name} out of int64 range: {value!r}")
    return r


def _decimal(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str, float)):
        raise TypeError(f"{name} must be a number or decimal string, got {type(value).__name__}")
    try:
        d = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{name} must be a decimal number, got {value!r}") from None
    if not d.is_finite() or d <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return d


def _currency(value, name):
    if not isinstance(value, str) or not value or not value.isalnum():
        raise ValueError(f"{name} must be a currency code like 'USD', got {value!r}")
    return value.upper()


def _money(amount, ccy):
    return f"{amount:,.2f} {ccy}"


cdef inline double _limit_double(object amount):
    return INFINITY if amount is None else float(amount)


# ------------------------------------------------------------------------------------------------
# The engine
# ------------------------------------------------------------------------------------------------

cdef class RiskEngine:
    """Pre-trade risk checks and usage for accounts, instruments and sessions kept by index.

    Indices are the OMS's: account index (config order), ``Instrument.index``, session index.
    Arrays grow when a larger index is configured; the constructor sizes are hints.  Not
    thread-safe (one writer, the OMS event loop); while :meth:`check_batch` runs without the GIL
    other calls raise RuntimeError.
    """

    def __cinit__(self, int max_accounts=16, int max_instruments=16, int max_sessions=16,
                  int max_firms=4):
        self.accounts = NULL
        self.instruments = NULL
        self.holdings = NULL
        self.sessions = NULL
        self.firm_killed = NULL
        self.account_cap = self.instrument_cap = self.session_cap = self.firm_cap = 0
        self.account_names = {}
        self.account_currency = {}
        self.instrument_meta = {}
        self.session_names = {}
        self.firm_names = {}
        self.fx_rates = {}
        self.limits_obj = {}
        for name, value in (("max_accounts", max_accounts), ("max_instruments", max_instruments),
                            ("max_sessions", max_sessions), ("max_firms", max_firms)):
            if value < 1 or value > (1 << 20):
                raise ValueError(f"{name} must be in 1..{1 << 20}, got {value}")
        self._grow(max_accounts, max_instruments, max_sessions, max_firms)

    def __dealloc__(self):
        free(self.accounts)
        free(self.instruments)
        free(self.holdings)
        free(self.sessions)
        free(self.firm_killed)

    cdef int _grow(self, int32_t accounts, int32_t instruments, int32_t sessions,
                   int32_t firms) except -1:
        """Enlarge the arrays to hold at least these counts (doubling, zero-filled)."""
        cdef int32_t na = self.account_cap, ni = self.instrument_cap
        cdef int32_t ns = self.session_cap, nf = self.firm_cap
        cdef int32_t a, i
        cdef AccountRisk* acc
        cdef InstrumentRisk* ins
        cdef Holding* hold
        cdef Bucket* ses
        cdef uint8_t* fk
        while na < accounts:
            na = na * 2 if na else 16
        while ni < instruments:
            ni = ni * 2 if ni else 16
        while ns < sessions:
            ns = ns * 2 if ns else 16
        while nf < firms:
            nf = nf * 2 if nf else 4
        if (<int64_t>na) * ni > (1 << 28):
            raise MemoryError(f"risk engine too large: {na} accounts x {ni} instruments")
        if na != self.account_cap or ni != self.instrument_cap:
            acc = <AccountRisk*> calloc(na, sizeof(AccountRisk))
            hold = <Holding*> calloc(<size_t>na * ni, sizeof(Holding))
            if acc == NULL or hold == NULL:
                free(acc)
                free(hold)
                raise MemoryError()
            for a in range(na):
                for i in range(ni):
                    hold[<int64_t>a * ni + i].factor = NAN
            if self.account_cap:
                memcpy(acc, self.accounts, self.account_cap * sizeof(AccountRisk))
                for a in range(self.account_cap):
                    memcpy(&hold[<int64_t>a * ni], &self.holdings[<int64_t>a * self.instrument_cap],
                           self.instrument_cap * sizeof(Holding))
            free(self.accounts)
            free(self.holdings)
            self.accounts = acc
            self.holdings = hold
        if ni != self.instrument_cap:
            ins = <InstrumentRisk*> calloc(ni, sizeof(InstrumentRisk))
            if ins == NULL:
                raise MemoryError()
            if self.instrument_cap:
                memcpy(ins, self.instruments, self.instrument_cap * sizeof(InstrumentRisk))
            free(self.instruments)
            self.instruments = ins
        if ns != self.session_cap:
            ses = <Bucket*> calloc(ns, sizeof(Bucket))
            if ses == NULL:
                raise MemoryError()
            for i in range(self.session_cap, ns):
                ses[i].rate = -1
            if self.session_cap:
                memcpy(ses, self.sessions, self.session_cap * sizeof(Bucket))
            free(self.sessions)
            self.sessions = ses
        if nf != self.firm_cap:
            fk = <uint8_t*> calloc(nf, sizeof(uint8_t))
            if fk == NULL:
                raise MemoryError()
            if self.firm_cap:
                memcpy(fk, self.firm_killed, self.firm_cap)
            free(self.firm_killed)
            self.firm_killed = fk
        self.account_cap, self.instrument_cap = na, ni
        self.session_cap, self.firm_cap = ns, nf
        return 0

    cdef int _not_busy(self) except -1:
        if self.busy:
            raise RuntimeError("RiskEngine is running check_batch; call again when it returns")
        return 0

    # ---- configuration ----------------------------------------------------------------------

    def set_instrument(self, index, *, tick_size, multiplier=1, currency="USD", symbol=None,
                       reference_price_ticks=0):
        """Configure instrument ``index``: price tick size and contract multiplier (Decimal,
        int or decimal string), its currency, a display symbol and an optional configured
        reference price in ticks (0 = none until :meth:`set_reference_price`)."""
        self._not_busy()
        cdef int64_t i = _as_i64(index, "index")
        cdef int64_t ref = _as_i64(reference_price_ticks, "reference_price_ticks")
        if i < 0 or i >= (1 << 20):
            raise ValueError(f"instrument index must be in 0..{(1 << 20) - 1}, got {i}")
        if ref < 0 or ref > C_MAX_PRICE:
            raise ValueError(f"reference_price_ticks must be in 0..{MAX_PRICE}, got {ref}")
        tick = _decimal(tick_size, "tick_size")
        mult = _decimal(multiplier, "multiplier")
        ccy = _currency(currency, "currency")
        self._grow(0, <int32_t>i + 1, 0, 0)
        self.instrument_meta[i] = (str(symbol) if symbol is not None else f"#{i}", tick,
                                   tick * mult, ccy)
        self.instruments[i].configured = 1
        if ref:
            self.instruments[i].reference = ref
        self._recompute_factors()

    def add_instrument(self, instrument):
        """Configure from an instrument master entry (duck-typed: ``index``, ``symbol``,
        ``tick_size``, ``multiplier``, ``currency``, ``reference_price`` (Decimal or None) and
        ``price_to_ticks``)."""
        ref = 0
        if getattr(instrument, "reference_price", None) is not None:
            ref = instrument.price_to_ticks(instrument.reference_price)
        self.set_instrument(instrument.index, tick_size=instrument.tick_size,
                            multiplier=instrument.multiplier, currency=instrument.currency,
                            symbol=instrument.symbol, reference_price_ticks=ref)

    def set_account(self, index, limits, *, firm=0, currency="USD", name=None):
        """Configure account ``index`` (limits, owning firm index, account currency, display
        name).  Calling it again changes the configuration and keeps the usage."""
        self._not_busy()
        cdef int64_t a = _as_i64(index, "index")
        cdef int64_t f = _as_i64(firm, "firm")
        if a < 0 or a >= (1 << 20):
            raise ValueError(f"account index must be in 0..{(1 << 20) - 1}, got {a}")
        if f < 0 or f >= (1 << 20):
            raise ValueError(f"firm index must be in 0..{(1 << 20) - 1}, got {f}")
        if not isinstance(limits, RiskLimits):
            raise TypeError(f"limits must be a RiskLimits, got {type(limits).__name__}")
        ccy = _currency(currency, "currency")
        self._grow(<int32_t>a + 1, 0, 0, <int32_t>f + 1)
        self.account_names[a] = str(name) if name is not None else f"#{a}"
        self.account_currency[a] = ccy
        self.accounts[a].firm = <int32_t>f
        self.accounts[a].configured = 1
        self._apply_limits(a, limits)
        self._recompute_factors()

    def set_limits(self, account, limits):
        """Change an account's limits at run time (usage is kept; only new checks see them)."""
        self._not_busy()
        cdef int64_t a = self._account_index(account)
        if not isinstance(limits, RiskLimits):
            raise TypeError(f"limits must be a RiskLimits, got {type(limits).__name__}")
        self._apply_limits(a, limits)

    def _apply_limits(self, int64_t a, limits):
        cdef AccountRisk* acc = &self.accounts[a]
        acc.max_order_qty = INT64_MAX if limits.max_order_qty is None else limits.max_order_qty
        acc.max_order_notional = _limit_double(limits.max_order_notional)
        acc.collar_bps = -1 if limits.collar_bps is None else limits.collar_bps
        acc.daily_credit = _limit_double(limits.daily_credit_limit)
        acc.max_position = INT64_MAX if limits.max_position is None else limits.max_position
        acc.max_open_orders = INT64_MAX if limits.max_open_orders is None else limits.max_open_orders
        acc.market_allowed = 1 if limits.market_orders_allowed else 0
        acc.needs_notional = 1 if (isfinite(acc.max_order_notional)
                                   or isfinite(acc.daily_credit)) else 0
        self.limits_obj[a] = limits

    def set_fx_rate(self, from_ccy, to_ccy, rate):
        """``rate`` units of ``to_ccy`` per unit of ``from_ccy`` (e.g. EUR, USD, "1.08").  The
        inverse direction is implied.  Recomputes every notional factor."""
        self._not_busy()
        f = _currency(from_ccy, "from_ccy")
        t = _currency(to_ccy, "to_ccy")
        if f == t:
            raise ValueError(f"FX rate from {f} to itself")
        self.fx_rates[(f, t)] = _decimal(rate, "rate")
        self.fx_rates.pop((t, f), None)
        self._recompute_factors()

    def set_session(self, index, msg_rate_per_sec, burst=None, *, name=None):
        """Throttle session ``index``: a token bucket refilled at ``msg_rate_per_sec`` messages
        per second holding at most ``burst`` (default: one second's worth).  ``None`` rate =
        unlimited.  The bucket starts full."""
        self._not_busy()
        cdef int64_t s = _as_i64(index, "index")
        cdef int64_t r, b
        if s < 0 or s >= (1 << 20):
            raise ValueError(f"session index must be in 0..{(1 << 20) - 1}, got {s}")
        self._grow(0, 0, <int32_t>s + 1, 0)
        self.session_names[s] = str(name) if name is not None else f"#{s}"
        self.sessions[s].configured = 1
        if msg_rate_per_sec is None:
            self.sessions[s].rate = -1
            self.sessions[s].started = 0
            return
        r = _as_i64(msg_rate_per_sec, "msg_rate_per_sec")
        b = r if burst is None else _as_i64(burst, "burst")
        if r < 1 or r > MAX_MSG_RATE:
            raise ValueError(f"msg_rate_per_sec must be in 1..{MAX_MSG_RATE} or None, got {r}")
        if b < 1 or b > MAX_MSG_RATE:
            raise ValueError(f"burst must be in 1..{MAX_MSG_RATE}, got {b}")
        self.sessions[s].rate = r
        self.sessions[s].capacity = b * MSG
        self.sessions[s].tokens = b * MSG
        self.sessions[s].started = 0

    def set_firm_name(self, index, name):
        """Display name of a firm index (for kill-switch texts)."""
        cdef int64_t f = _as_i64(index, "index")
        if f < 0 or f >= (1 << 20):
            raise ValueError(f"firm index must be in 0..{(1 << 20) - 1}, got {f}")
        self.firm_names[f] = str(name)

    cdef void _recompute_factors(self):
        # factor = tick_size x multiplier x FX(instrument ccy -> account ccy), rounded to a
        # double once, from exact Decimals.
        cdef int64_t a, i
        cdef double factor
        for a, accy in self.account_currency.items():
            for i, meta in self.instrument_meta.items():
                rate = self._fx(meta[3], accy)
                factor = NAN if rate is None else float(meta[2] * rate)
                self.holdings[a * self.instrument_cap + i].factor = factor

    def _fx(self, from_ccy, to_ccy):
        if from_ccy == to_ccy:
            return Decimal(1)
        rate = self.fx_rates.get((from_ccy, to_ccy))
        if rate is not None:
            return rate
        rate = self.fx_rates.get((to_ccy, from_ccy))
        if rate is not None:
            return Decimal(1) / rate
        return None

    def missing_fx_rates(self):
        """[(account currency, instrument currency)] pairs that have no FX rate: orders of those
        instruments are rejected NO_FX_RATE for accounts with notional limits."""
        missing = set()
        for accy in self.account_currency.values():
            for meta in self.instrument_meta.values():
                if self._fx(meta[3], accy) is None:
                    missing.add((accy, meta[3]))
        return sorted(missing)

    # ---- run-time controls ------------------------------------------------------------------

    def set_reference_price(self, instrument, price_ticks):
        """The collar's and market orders' reference price (last trade or configured), ticks."""
        cdef int64_t i = self._instrument_index(instrument)
        cdef int64_t p = _as_i64(price_ticks, "price_ticks")
        if p < 0 or p > C_MAX_PRICE:
            raise ValueError(f"price_ticks must be in 0..{MAX_PRICE} (0 clears), got {p}")
        self._not_busy()
        self.instruments[i].reference = p

    def reference_price(self, instrument):
        """Current reference price in ticks (0 = none)."""
        return self.instruments[self._instrument_index(instrument)].reference

    def set_restricted(self, instrument, restricted=True, account=None):
        """Restrict (or release) an instrument for every account, or for one account."""
        self._not_busy()
        cdef int64_t i = self._instrument_index(instrument)
        cdef int64_t a
        cdef uint8_t flag = 1 if restricted else 0
        if account is None:
            self.instruments[i].restricted = flag
        else:
            a = self._account_index(account)
            self._holding(<int32_t>a, <int32_t>i).restricted = flag

    def kill(self, scope, index=None, on=True):
        """Turn a kill switch on or off: ``scope`` 'global' (index ignored), 'firm' (firm index)
        or 'account' (account index).  While on, every new order and replace of the accounts
        it covers is rejected; the OMS cancels their open orders (see killed_accounts())."""
        self._not_busy()
        cdef int64_t k
        if scope not in _SCOPES:
            raise ValueError(f"kill scope must be one of {', '.join(_SCOPES)}, got {scope!r}")
        if scope == "global":
            self.global_killed = bool(on)
            return
        if index is None:
            raise ValueError(f"kill scope {scope!r} needs an index")
        if scope == "account":
            self.accounts[self._account_index(index)].killed = 1 if on else 0
            return
        k = _as_i64(index, "index")
        if k < 0 or k >= (1 << 20):
            raise ValueError(f"firm index must be in 0..{(1 << 20) - 1}, got {k}")
        self._grow(0, 0, 0, <int32_t>k + 1)
        self.firm_killed[k] = 1 if on else 0

    def killed_accounts(self):
        """Sorted indices of the configured accounts a kill switch blocks (any scope)."""
        out = []
        cdef int64_t a
        for a in sorted(self.account_currency):
            if (self.global_killed or self.accounts[a].killed
                    or self.firm_killed[self.accounts[a].firm]):
                out.append(a)
        return out

    def kill_state(self):
        """{'global': bool, 'firms': [...], 'accounts': [...]}: the switches that are on."""
        return {
            "global": bool(self.global_killed),
            "firms": [f for f in range(self.firm_cap) if self.firm_killed[f]],
            "accounts": [a for a in sorted(self.account_currency) if self.accounts[a].killed],
        }

    def new_day(self):
        """Start a new trading day: every account's filled notional goes back to 0.  Open
        orders, open usage and positions carry over."""
        self._not_busy()
        cdef int32_t a
        for a in range(self.account_cap):
            self.accounts[a].filled_notional = 0.0

    def market_price(self, instrument):
        """The price (ticks) a market order is valued at: the reference price, 0 if none.  The
        OMS keeps it with the order as its risk price for on_open / on_fill / on_close."""
        return self.instruments[self._instrument_index(instrument)].reference

    # ---- index validation -------------------------------------------------------------------

    cdef int64_t _account_index(self, object account) except -1:
        cdef int64_t a = _as_i64(account, "account")
        if a < 0 or a >= self.account_cap or not self.accounts[a].configured:
            raise ValueError(f"unknown account {a}")
        return a

    cdef int64_t _instrument_index(self, object instrument) except -1:
        cdef int64_t i = _as_i64(instrument, "instrument")
        if i < 0 or i >= self.instrument_cap or not self.instruments[i].configured:
            raise ValueError(f"unknown instrument {i}")
        return i

    cdef str _row_error(self, int64_t account, int64_t instrument, int64_t session, int64_t side,
                        int64_t ord_type, int64_t qty, int64_t price):
        if account < 0 or account >= self.account_cap or not self.accounts[account].configured:
            return f"unknown account {account}"
        if (instrument < 0 or instrument >= self.instrument_cap
                or not self.instruments[instrument].configured):
            return f"unknown instrument {instrument}"
        if session < -1 or session >= self.session_cap or (
                session >= 0 and not self.sessions[session].configured):
            return f"unknown session {session} (configure it with set_session, or pass -1)"
        if side != RK_BUY and side != RK_SELL:
            return f"side must be 1 (buy) or 2 (sell), got {side}"
        if ord_type < RK_MARKET or ord_type > RK_STOP_LIMIT:
            return f"ord_type must be 1..4 (market, limit, stop, stop-limit), got {ord_type}"
        if qty < 1 or qty > C_MAX_QTY:
            return f"qty must be in 1..{MAX_QTY}, got {qty}"
        if ord_type != RK_MARKET and (price < 1 or price > C_MAX_PRICE):
            return f"price_ticks must be in 1..{MAX_PRICE} for a priced order, got {price}"
        if price < 0 or price > C_MAX_PRICE:
            return f"price_ticks must be in 0..{MAX_PRICE}, got {price}"
        return None

    # ---- queries ----------------------------------------------------------------------------

    cdef inline Holding* _holding(self, int32_t account, int32_t instrument) noexcept nogil:
        return &self.holdings[<int64_t>account * self.instrument_cap + instrument]

    cdef double _notional(self, const Holding* h, int64_t qty, int64_t price) noexcept nogil:
        # Evaluation order (qty x price) x factor is part of the contract: the pure-Python
        # reference computes the same doubles bit for bit.  No FX rate: counts as 0 in usage.
        if isnan(h.factor):
            return 0.0
        return (<double>qty * <double>price) * h.factor

    cdef int64_t _risk_price(self, int32_t instrument, int ord_type, int64_t price) noexcept nogil:
        if ord_type == RK_MARKET:
            return self.instruments[instrument].reference
        return price

    # ---- checks -----------------------------------------------------------------------------

    cdef bint _take_token(self, int32_t session, int64_t now_ns) noexcept nogil:
        cdef Bucket* b
        cdef int64_t elapsed
        if session < 0:
            return True
        b = &self.sessions[session]
        if b.rate < 0:
            return True
        if not b.started:
            b.started = 1
            b.last_ns = now_ns
        elif now_ns > b.last_ns:
            elapsed = now_ns - b.last_ns
            # elapsed x rate only when it cannot overflow: beyond capacity / rate the bucket is
            # full anyway.
            if elapsed >= b.capacity // b.rate:
                b.tokens = b.capacity
            else:
                b.tokens += elapsed * b.rate
                if b.tokens > b.capacity:
                    b.tokens = b.capacity
            b.last_ns = now_ns
        # a clock that steps back refills nothing and keeps the later timestamp
        if b.tokens >= MSG:
            b.tokens -= MSG
            return True
        return False

    cdef int _check_gates(self, int32_t account, int32_t instrument, int32_t session,
                          int ord_type, int64_t now_ns) noexcept nogil:
        # The token is taken first: every checked message counts against the session's rate,
        # whatever the outcome.  Kill switches still win over the rate in the reported code.
        cdef bint rate_ok = self._take_token(session, now_ns)
        cdef AccountRisk* acc = &self.accounts[account]
        if self.global_killed:
            return RC_KILL_GLOBAL
        if self.firm_killed[acc.firm]:
            return RC_KILL_FIRM
        if acc.killed:
            return RC_KILL_ACCOUNT
        if not rate_ok:
            return RC_MSG_RATE
        if self.instruments[instrument].restricted:
            return RC_RESTRICTED_GLOBAL
        if self._holding(account, instrument).restricted:
            return RC_RESTRICTED_ACCOUNT
        if (ord_type == RK_MARKET or ord_type == RK_STOP) and not acc.market_allowed:
            return RC_MARKET_NOT_ALLOWED
        return RC_OK

    cdef int _check_order(self, int32_t account, int32_t instrument, int ord_type, int64_t qty,
                          int64_t price, double* notional) noexcept nogil:
        # Order-level checks; *notional receives the order's notional at its risk price (the
        # reference for a market order), computed only when a notional limit needs it.
        cdef AccountRisk* acc = &self.accounts[account]
        cdef Holding* h = self._holding(account, instrument)
        cdef int64_t ref = self.instruments[instrument].reference
        cdef int64_t px, dev
        notional[0] = 0.0
        if qty > acc.max_order_qty:
            return RC_MAX_ORDER_QTY
        if acc.needs_notional:
            if isnan(h.factor):
                return RC_NO_FX_RATE
            px = ref if ord_type == RK_MARKET else price
            if px == 0:
                return RC_NO_REFERENCE_PRICE
            notional[0] = (<double>qty * <double>px) * h.factor
            if notional[0] > acc.max_order_notional * TOL:
                return RC_MAX_ORDER_NOTIONAL
        if acc.collar_bps >= 0 and ord_type != RK_MARKET:
            if ref == 0:
                return RC_NO_REFERENCE_PRICE
            dev = price - ref if price > ref else ref - price
            if (<i128>dev) * 10000 > (<i128>ref) * acc.collar_bps:
                return RC_PRICE_COLLAR
        return RC_OK

    cdef int _check_new(self, int32_t account, int32_t instrument, int32_t session, int side,
                        int ord_type, int64_t qty, int64_t price, int64_t now_ns) noexcept nogil:
        cdef double n
        cdef AccountRisk* acc
        cdef Holding* h
        cdef int code = self._check_gates(account, instrument, session, ord_type, now_ns)
        if code != RC_OK:
            return code
        code = self._check_order(account, instrument, ord_type, qty, price, &n)
        if code != RC_OK:
            return code
        acc = &self.accounts[account]
        if acc.open_orders >= acc.max_open_orders:
            return RC_MAX_OPEN_ORDERS
        if (acc.open_notional + acc.filled_notional) + n > acc.daily_credit * TOL:
            return RC_DAILY_CREDIT
        h = self._holding(account, instrument)
        if side == RK_BUY:
            if h.position + h.open_buy + qty > acc.max_position:
                return RC_MAX_POSITION
        elif h.open_sell + qty - h.position > acc.max_position:
            return RC_MAX_POSITION
        return RC_OK

    cdef int _check_replace(self, int32_t account, int32_t instrument, int32_t session, int side,
                            int ord_type, int64_t new_qty, int64_t new_price, int64_t old_leaves,
                            int64_t old_price, int64_t cum_qty, int64_t now_ns) noexcept nogil:
        # The changed order is checked like a new one, with the old order's open usage released;
        # a change that does not increase a usage is never rejected by that usage's check (so a
        # replace down always passes them, even above a lowered limit).
        cdef double n, old_n, new_n
        cdef int64_t new_leaves, after
        cdef AccountRisk* acc
        cdef Holding* h
        cdef int code = self._check_gates(account, instrument, session, ord_type, now_ns)
        if code != RC_OK:
            return code
        code = self._check_order(account, instrument, ord_type, new_qty, new_price, &n)
        if code != RC_OK:
            return code
        acc = &self.accounts[account]
        h = self._holding(account, instrument)
        new_leaves = new_qty - cum_qty
        if new_leaves < 0:
            new_leaves = 0
        if isfinite(acc.daily_credit):
            old_n = self._notional(h, old_leaves, old_price)
            new_n = self._notional(h, new_leaves,
                                   self._risk_price(instrument, ord_type, new_price))
            if new_n > old_n and ((acc.open_notional - old_n) + new_n) + acc.filled_notional \
                    > acc.daily_credit * TOL:
                return RC_DAILY_CREDIT
        if new_leaves > old_leaves:
            if side == RK_BUY:
                after = h.position + h.open_buy - old_leaves + new_leaves
            else:
                after = h.open_sell - old_leaves + new_leaves - h.position
            if after > acc.max_position:
                return RC_MAX_POSITION
        return RC_OK

    def check_new(self, account, instrument, session, side, ord_type, qty, price_ticks, now_ns):
        """Check a new order; returns RiskCode.OK or the first failed check's code.

        ``session`` is the session index (-1: no message-rate throttle), ``side`` and
        ``ord_type`` the crossbook.core Side / OrdType values, ``price_ticks`` the limit price
        (stop price for STOP, limit price for STOP_LIMIT; ignored for MARKET), ``now_ns`` the
        injected clock for the message rate.  Usage does not change: call on_open when the
        order is accepted.  Invalid arguments raise TypeError/ValueError.
        """
        cdef int64_t a = _as_i64(account, "account")
        cdef int64_t i = _as_i64(instrument, "instrument")
        cdef int64_t s = _as_i64(session, "session")
        cdef int64_t sd = _as_i64(side, "side")
        cdef int64_t ot = _as_i64(ord_type, "ord_type")
        cdef int64_t q = _as_i64(qty, "qty")
        cdef int64_t p = _as_i64(price_ticks, "price_ticks")
        cdef int64_t now = _as_i64(now_ns, "now_ns")
        if (a < 0 or a >= self.account_cap or not self.accounts[a].configured
                or i < 0 or i >= self.instrument_cap or not self.instruments[i].configured
                or s < -1 or s >= self.session_cap or (sd != RK_BUY and sd != RK_SELL)
                or ot < RK_MARKET or ot > RK_STOP_LIMIT or q < 1 or q > C_MAX_QTY
                or p < 0 or p > C_MAX_PRICE or (p == 0 and ot != RK_MARKET)
                or (s >= 0 and not self.sessions[s].configured)):
            raise ValueError(self._row_error(a, i, s, sd, ot, q, p))
        self._not_busy()
        return _CODE_BY_VALUE[self._check_new(<int32_t>a, <int32_t>i, <int32_t>s, <int>sd,
                                              <int>ot, q, p, now)]

    def check_replace(self, account, instrument, session, side, ord_type, new_qty,
                      new_price_ticks, old_leaves, old_price_ticks, cum_qty, now_ns):
        """Check a cancel/replace: ``new_qty`` is the new total order quantity (FIX semantics),
        ``new_price_ticks`` the new price; ``old_leaves`` / ``old_price_ticks`` the open
        quantity and risk price the order holds now, ``cum_qty`` what it has filled.  No open
        order check (the count does not change).  Call on_replace when the venue confirms."""
        cdef int64_t a = _as_i64(account, "account")
        cdef int64_t i = _as_i64(instrument, "instrument")
        cdef int64_t s = _as_i64(session, "session")
        cdef int64_t sd = _as_i64(side, "side")
        cdef int64_t ot = _as_i64(ord_type, "ord_type")
        cdef int64_t q = _as_i64(new_qty, "new_qty")
        cdef int64_t p = _as_i64(new_price_ticks, "new_price_ticks")
        cdef int64_t ol = _as_i64(old_leaves, "old_leaves")
        cdef int64_t op = _as_i64(old_price_ticks, "old_price_ticks")
        cdef int64_t cq = _as_i64(cum_qty, "cum_qty")
        cdef int64_t now = _as_i64(now_ns, "now_ns")
        err = self._row_error(a, i, s, sd, ot, q, p)
        if err is not None:
            raise ValueError(err)
        if ol < 0 or ol > C_MAX_QTY:
            raise ValueError(f"old_leaves must be in 0..{MAX_QTY}, got {ol}")
        if op < 0 or op > C_MAX_PRICE:
            raise ValueError(f"old_price_ticks must be in 0..{MAX_PRICE}, got {op}")
        if cq < 0 or cq > C_MAX_QTY:
            raise ValueError(f"cum_qty must be in 0..{MAX_QTY}, got {cq}")
        self._not_busy()
        return _CODE_BY_VALUE[self._check_replace(<int32_t>a, <int32_t>i, <int32_t>s, <int>sd,
                                                  <int>ot, q, p, ol, op, cq, now)]

    def decide_new(self, account, instrument, session, side, ord_type, qty, price_ticks, now_ns):
        """check_new plus the rejection text: a RiskDecision(code, text)."""
        code = self.check_new(account, instrument, session, side, ord_type, qty, price_ticks,
                              now_ns)
        if code == 0:
            return RiskDecision(code, "")
        return RiskDecision(code, self.explain(code, account, instrument, side, ord_type, qty,
                                               price_ticks, session))

    def decide_replace(self, account, instrument, session, side, ord_type, new_qty,
                       new_price_ticks, old_leaves, old_price_ticks, cum_qty, now_ns):
        """check_replace plus the rejection text: a RiskDecision(code, text)."""
        code = self.check_replace(account, instrument, session, side, ord_type, new_qty,
                                  new_price_ticks, old_leaves, old_price_ticks, cum_qty, now_ns)
        if code == 0:
            return RiskDecision(code, "")
        return RiskDecision(code, self.explain(code, account, instrument, side, ord_type, new_qty,
                                               new_price_ticks, session,
                                               replace=(old_leaves, old_price_ticks, cum_qty)))

    def check_batch(self, account, instrument, session, side, ord_type, qty, price_ticks, now_ns,
                    *, open_accepted=False):
        """Check many new orders in one call with the GIL released; returns a uint8 array of
        RiskCode values, row for row what check_new would return called in the same order.

        Every argument is a 1-D integer array of one length (``now_ns`` may be a scalar).
        With ``open_accepted`` each accepted row also goes through on_open at its risk price,
        so later rows see its usage.  A bad row raises ValueError naming it; nothing is checked
        then.
        """
        cols = []
        n = None
        for name, value in (("account", account), ("instrument", instrument),
                            ("session", session), ("side", side), ("ord_type", ord_type),
                            ("qty", qty), ("price_ticks", price_ticks), ("now_ns", now_ns)):
            arr = np.asarray(value)
            if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "b" and arr.size == 0):
                raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
            if name == "now_ns" and arr.ndim == 0:
                arr = np.full(0 if n is None else n, int(arr), dtype=np.int64)
            if arr.ndim != 1:
                raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
            if n is None:
                n = arr.shape[0]
            elif arr.shape[0] != n:
                raise ValueError(f"{name} has length {arr.shape[0]}, expected {n}")
            if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
                raise ValueError(f"{name} has values outside int64")
            cols.append(np.ascontiguousarray(arr, dtype=np.int64))
        self._not_busy()
        out = np.zeros(n, dtype=np.uint8)
        cdef const int64_t* ca = <const int64_t*> <uintptr_t> cols[0].ctypes.data
        cdef const int64_t* ci = <const int64_t*> <uintptr_t> cols[1].ctypes.data
        cdef const int64_t* cs = <const int64_t*> <uintptr_t> cols[2].ctypes.data
        cdef const int64_t* csd = <const int64_t*> <uintptr_t> cols[3].ctypes.data
        cdef const int64_t* cot = <const int64_t*> <uintptr_t> cols[4].ctypes.data
        cdef const int64_t* cq = <const int64_t*> <uintptr_t> cols[5].ctypes.data
        cdef const int64_t* cp = <const int64_t*> <uintptr_t> cols[6].ctypes.data
        cdef const int64_t* cn = <const int64_t*> <uintptr_t> cols[7].ctypes.data
        cdef uint8_t* codes = <uint8_t*> <uintptr_t> out.ctypes.data
        cdef Py_ssize_t k, nn = n
        cdef Py_ssize_t bad = -1
        cdef bint apply = bool(open_accepted)
        cdef int code
        cdef int64_t s
        # validate every row first so that a bad batch changes nothing (not even tokens)
        with nogil:
            for k in range(nn):
                s = cs[k]
                if (ca[k] < 0 or ca[k] >= self.account_cap or not self.accounts[ca[k]].configured
                        or ci[k] < 0 or ci[k] >= self.instrument_cap
                        or not self.instruments[ci[k]].configured
                        or s < -1 or s >= self.session_cap
                        or (s >= 0 and not self.sessions[s].configured)
                        or (csd[k] != RK_BUY and csd[k] != RK_SELL)
                        or cot[k] < RK_MARKET or cot[k] > RK_STOP_LIMIT
                        or cq[k] < 1 or cq[k] > C_MAX_QTY or cp[k] < 0 or cp[k] > C_MAX_PRICE
                        or (cp[k] == 0 and cot[k] != RK_MARKET)):
                    bad = k
                    break
        if bad >= 0:
            raise ValueError(f"row {bad}: " + self._row_error(
                ca[bad], ci[bad], cs[bad], csd[bad], cot[bad], cq[bad], cp[bad]))
        self.busy = True
        try:
            with nogil:
                for k in range(nn):
                    code = self._check_new(<int32_t>ca[k], <int32_t>ci[k], <int32_t>cs[k],
                                           <int>csd[k], <int>cot[k], cq[k], cp[k], cn[k])
                    codes[k] = <uint8_t>code
                    if apply and code == RC_OK:
                        self._open(<int32_t>ca[k], <int32_t>ci[k], <int>csd[k], cq[k],
                                   self._risk_price(<int32_t>ci[k], <int>cot[k], cp[k]))
        finally:
            self.busy = False
        return out

    # ---- usage commands ---------------------------------------------------------------------

    cdef void _open(self, int32_t account, int32_t instrument, int side, int64_t qty,
                    int64_t price) noexcept nogil:
        cdef AccountRisk* acc = &self.accounts[account]
        cdef Holding* h = self._holding(account, instrument)
        acc.open_orders += 1
        acc.open_notional += self._notional(h, qty, price)
        if side == RK_BUY:
            h.open_buy += qty
        else:
            h.open_sell += qty

    cdef void _fill(self, int32_t account, int32_t instrument, int side, int64_t qty,
                    int64_t price, int64_t fill_price) noexcept nogil:
        cdef AccountRisk* acc = &self.accounts[account]
        cdef Holding* h = self._holding(account, instrument)
        acc.open_notional -= self._notional(h, qty, price)
        if acc.open_notional < 0.0:
            acc.open_notional = 0.0
        acc.filled_notional += self._notional(h, qty, fill_price)
        if side == RK_BUY:
            h.open_buy -= qty
            h.position += qty
        else:
            h.open_sell -= qty
            h.position -= qty

    cdef void _close(self, int32_t account, int32_t instrument, int side, int64_t leaves,
                     int64_t price) noexcept nogil:
        cdef AccountRisk* acc = &self.accounts[account]
        cdef Holding* h = self._holding(account, instrument)
        acc.open_orders -= 1
        # with nothing open the open notional is exactly 0: drop the float residue of the sums
        if acc.open_orders == 0:
            acc.open_notional = 0.0
        else:
            acc.open_notional -= self._notional(h, leaves, price)
            if acc.open_notional < 0.0:
                acc.open_notional = 0.0
        if side == RK_BUY:
            h.open_buy -= leaves
        else:
            h.open_sell -= leaves

    cdef void _reprice(self, int32_t account, int32_t instrument, int side, int64_t old_leaves,
                       int64_t old_price, int64_t new_leaves, int64_t new_price) noexcept nogil:
        cdef AccountRisk* acc = &self.accounts[account]
        cdef Holding* h = self._holding(account, instrument)
        acc.open_notional = (acc.open_notional - self._notional(h, old_leaves, old_price)) \
            + self._notional(h, new_leaves, new_price)
        if acc.open_notional < 0.0:
            acc.open_notional = 0.0
        if side == RK_BUY:
            h.open_buy += new_leaves - old_leaves
        else:
            h.open_sell += new_leaves - old_leaves

    cdef tuple _usage_args(self, object account, object instrument, object side, object qty,
                           object price, str qty_name, str price_name, int64_t min_qty):
        cdef int64_t a = self._account_index(account)
        cdef int64_t i = self._instrument_index(instrument)
        cdef int64_t sd = _as_i64(side, "side")
        cdef int64_t q = _as_i64(qty, qty_name)
        cdef int64_t p = _as_i64(price, price_name)
        if sd != RK_BUY and sd != RK_SELL:
            raise ValueError(f"side must be 1 (buy) or 2 (sell), got {sd}")
        if q < min_qty or q > C_MAX_QTY:
            raise ValueError(f"{qty_name} must be in {min_qty}..{MAX_QTY}, got {q}")
        if p < 0 or p > C_MAX_PRICE:
            raise ValueError(f"{price_name} must be in 0..{MAX_PRICE}, got {p}")
        self._not_busy()
        return a, i, sd, q, p

    def on_open(self, account, instrument, side, qty, price_ticks):
        """An order was accepted: it holds ``qty`` open at its risk price ``price_ticks`` (the
        limit / stop price, or market_price() for a market order)."""
        a, i, sd, q, p = self._usage_args(account, instrument, side, qty, price_ticks, "qty",
                                          "price_ticks", 1)
        self._open(a, i, sd, q, p)

    def on_fill(self, account, instrument, side, qty, price_ticks, fill_price_ticks=None):
        """``qty`` of an open order filled: its open usage at ``price_ticks`` (the order's risk
        price, as given to on_open) is released, the filled notional grows by qty x
        ``fill_price_ticks`` (default: price_ticks) and the position moves.  The order stays
        counted as open until on_close."""
        a, i, sd, q, p = self._usage_args(account, instrument, side, qty, price_ticks, "qty",
                                          "price_ticks", 1)
        fp = p if fill_price_ticks is None else _as_i64(fill_price_ticks, "fill_price_ticks")
        if fp < 0 or fp > C_MAX_PRICE:
            raise ValueError(f"fill_price_ticks must be in 0..{MAX_PRICE}, got {fp}")
        self._require_open(a, i, sd, q, "fill")
        self._fill(a, i, sd, q, p, fp)

    def on_close(self, account, instrument, side, leaves_qty, price_ticks):
        """An order left the book for any reason (filled, cancelled, rejected, expired,
        replaced away): called once per on_open, with its remaining open quantity (0 when
        filled) and its risk price.  Releases the remainder and the open-order count."""
        a, i, sd, q, p = self._usage_args(account, instrument, side, leaves_qty, price_ticks,
                                          "leaves_qty", "price_ticks", 0)
        if self.accounts[<int64_t>a].open_orders < 1:
            raise ValueError(f"on_close for account {a} which has no open orders")
        self._require_open(a, i, sd, q, "close")
        self._close(a, i, sd, q, p)

    def on_replace(self, account, instrument, side, old_leaves, old_price_ticks, new_leaves,
                   new_price_ticks):
        """A replace was confirmed: the order now holds ``new_leaves`` open at
        ``new_price_ticks`` instead of ``old_leaves`` at ``old_price_ticks``.  The open-order
        count is unchanged (a replace to the filled quantity ends the order: call on_close with
        0 after this, or instead of it with the old leaves)."""
        a, i, sd, ol, op = self._usage_args(account, instrument, side, old_leaves,
                                            old_price_ticks, "old_leaves", "old_price_ticks", 0)
        nl = _as_i64(new_leaves, "new_leaves")
        np_ = _as_i64(new_price_ticks, "new_price_ticks")
        if nl < 0 or nl > C_MAX_QTY:
            raise ValueError(f"new_leaves must be in 0..{MAX_QTY}, got {nl}")
        if np_ < 0 or np_ > C_MAX_PRICE:
            raise ValueError(f"new_price_ticks must be in 0..{MAX_PRICE}, got {np_}")
        self._require_open(a, i, sd, ol, "replace")
        self._reprice(a, i, sd, ol, op, nl, np_)

    def _require_open(self, int64_t a, int64_t i, int64_t side, int64_t qty, what):
        cdef Holding* h = self._holding(<int32_t>a, <int32_t>i)
        cdef int64_t open_qty = h.open_buy if side == RK_BUY else h.open_sell
        if qty > open_qty:
            raise ValueError(
                f"{what} of {qty} exceeds the open {'buy' if side == RK_BUY else 'sell'} "
                f"quantity {open_qty} of account {a} in instrument {i}")

    # ---- usage snapshot ---------------------------------------------------------------------

    def usage(self, account):
        """One account's usage, as plain data the OMS persists: open_orders, open_notional,
        filled_notional (account currency, floats) and positions {instrument index:
        {position, open_buy, open_sell}} for instruments with any of them non-zero."""
        cdef int64_t a = self._account_index(account)
        cdef AccountRisk* acc = &self.accounts[a]
        cdef Holding* h
        positions = {}
        for i in sorted(self.instrument_meta):
            h = self._holding(<int32_t>a, <int32_t>i)
            if h.position or h.open_buy or h.open_sell:
                positions[i] = {"position": h.position, "open_buy": h.open_buy,
                                "open_sell": h.open_sell}
        return {"open_orders": acc.open_orders, "open_notional": acc.open_notional,
                "filled_notional": acc.filled_notional, "positions": positions}

    def restore_usage(self, account, usage):
        """Set one account's usage from a usage() dict (keys may be strings, as after JSON).
        Instruments not listed get zero usage.  Validates everything before changing anything."""
        self._not_busy()
        cdef int64_t a = self._account_index(account)
        cdef AccountRisk* acc
        cdef Holding* h
        if not isinstance(usage, dict):
            raise TypeError(f"usage must be a dict, got {type(usage).__name__}")
        for key in ("open_orders", "open_notional", "filled_notional", "positions"):
            if key not in usage:
                raise ValueError(f"usage of account {a} is missing {key!r}")
        oo = _as_i64(usage["open_orders"], "open_orders")
        if oo < 0 or oo > C_MAX_USAGE:
            raise ValueError(f"open_orders must be in 0..{C_MAX_USAGE}, got {oo}")
        amounts = []
        for key in ("open_notional", "filled_notional"):
            v = usage[key]
            if isinstance(v, bool) or not isinstance(v, (int, float, Decimal, str)):
                raise TypeError(f"{key} must be a number, got {type(v).__name__}")
            try:
                fv = float(v)
            except ValueError:
                raise ValueError(f"{key} must be a number, got {v!r}") from None
            if not math.isfinite(fv) or fv < 0:
                raise ValueError(f"{key} must be a finite amount >= 0, got {v!r}")
            amounts.append(fv)
        if not isinstance(usage["positions"], dict):
            raise TypeError("positions must be a dict {instrument: {position, open_buy, open_sell}}")
        rows = []
        for key, entry in usage["positions"].items():
            try:
                inst = int(key)
            except (TypeError, ValueError):
                raise ValueError(f"positions key must be an instrument index, got {key!r}") from None
            inst = self._instrument_index(inst)
            if not isinstance(entry, dict):
                raise TypeError(f"positions[{key!r}] must be a dict")
            vals = []
            for field, lo in (("position", -C_MAX_USAGE), ("open_buy", 0), ("open_sell", 0)):
                v = _as_i64(entry.get(field, 0), f"positions[{key!r}].{field}")
                if v < lo or v > C_MAX_USAGE:
                    raise ValueError(f"positions[{key!r}].{field} must be in {lo}..{C_MAX_USAGE}, got {v}")
                vals.append(v)
            rows.append((inst, vals))
        acc = &self.accounts[a]
        acc.open_orders = oo
        acc.open_notional = amounts[0]
        acc.filled_notional = amounts[1]
        for i in self.instrument_meta:
            h = self._holding(<int32_t>a, <int32_t>i)
            h.position = h.open_buy = h.open_sell = 0
        for inst, vals in rows:
            h = self._holding(<int32_t>a, <int32_t>inst)
            h.position, h.open_buy, h.open_sell = vals

    def snapshot(self):
        """{account index: usage(account)} for every configured account."""
        return {a: self.usage(a) for a in sorted(self.account_currency)}

    def restore(self, snapshot):
        """Restore every account listed in a snapshot() (keys may be strings)."""
        if not isinstance(snapshot, dict):
            raise TypeError(f"snapshot must be a dict, got {type(snapshot).__name__}")
        for key, usage in snapshot.items():
            try:
                a = int(key)
            except (TypeError, ValueError):
                raise ValueError(f"snapshot key must be an account index, got {key!r}") from None
            self.restore_usage(a, usage)

    # ---- queries for the OMS / HTTP API ------------------------------------------------------

    def limits(self, account):
        """The RiskLimits an account runs with."""
        return self.limits_obj[self._account_index(account)]

    def account_firm(self, account):
        return self.accounts[self._account_index(account)].firm

    # ---- rejection texts --------------------------------------------------------------------

    def explain(self, code, account, instrument, side, ord_type, qty, price_ticks, session=-1,
                *, replace=None):
        """The Text of a rejection: names the check and its numbers (limit, requested, current
        usage).  Call it right after the check that returned ``code``, with the same order
        fields; for a replace pass ``replace=(old_leaves, old_price_ticks, cum_qty)``."""
        code = RiskCode(code)
        cdef int64_t a = self._account_index(account)
        cdef int64_t i = self._instrument_index(instrument)
        cdef int64_t q = _as_i64(qty, "qty")
        cdef int64_t p = _as_i64(price_ticks, "price_ticks")
        cdef int64_t ot = _as_i64(ord_type, "ord_type")
        cdef int64_t sd = _as_i64(side, "side")
        cdef AccountRisk* acc = &self.accounts[a]
        cdef Holding* h = self._holding(<int32_t>a, <int32_t>i)
        cdef int64_t ref = self.instruments[i].reference
        cdef int64_t s
        cdef Bucket* b
        if code == RiskCode.OK:
            return ""
        acct = f"account {self.account_names[a]}"
        symbol, tick, _, iccy = self.instrument_meta[i]
        ccy = self.account_currency[a]
        limits = self.limits_obj[a]
        where = f"({acct}, {symbol})"
        px = ref if ot == RK_MARKET else p

        if code == RiskCode.KILL_GLOBAL:
            return f"risk: kill switch on (global): new orders blocked ({acct})"
        if code == RiskCode.KILL_FIRM:
            firm = self.firm_names.get(acc.firm, f"#{acc.firm}")
            return f"risk: kill switch on for firm {firm}: new orders blocked ({acct})"
        if code == RiskCode.KILL_ACCOUNT:
            return f"risk: kill switch on for {acct}: new orders blocked"
        if code == RiskCode.MSG_RATE:
            s = _as_i64(session, "session")
            if s < 0 or s >= self.session_cap or not self.sessions[s].configured:
                return f"risk: message rate exceeded ({acct})"
            b = &self.sessions[s]
            return (f"risk: message rate exceeded: session {self.session_names[s]} is over "
                    f"{b.rate:,} messages/s (burst {b.capacity // MSG:,}) ({acct})")
        if code == RiskCode.RESTRICTED_GLOBAL:
            return f"risk: restricted instrument: {symbol} is restricted for all accounts ({acct})"
        if code == RiskCode.RESTRICTED_ACCOUNT:
            return f"risk: restricted instrument: {symbol} is restricted for {acct}"
        if code == RiskCode.MARKET_NOT_ALLOWED:
            kind = "stop (market) orders" if ot == RK_STOP else "market orders"
            return f"risk: market orders not allowed: {kind} are not allowed for {acct}"
        if code == RiskCode.MAX_ORDER_QTY:
            return (f"risk: max order quantity exceeded: {q:,} > limit {limits.max_order_qty:,} "
                    f"{where}")
        if code == RiskCode.NO_FX_RATE:
            return (f"risk: no FX rate from {iccy} to {ccy} to value {symbol} for the notional "
                    f"limits of {acct}")
        if code == RiskCode.NO_REFERENCE_PRICE:
            need = "a market order" if ot == RK_MARKET else "the price collar"
            return f"risk: no reference price for {symbol}, needed to check {need} ({acct})"
        if code == RiskCode.MAX_ORDER_NOTIONAL:
            n = self._notional(h, q, px)
            return (f"risk: max order notional exceeded: {_money(n, ccy)} > limit "
                    f"{_money(limits.max_order_notional, ccy)} {where}")
        if code == RiskCode.PRICE_COLLAR:
            dev = abs(p - ref)
            pct = (Decimal(dev) * 100 / Decimal(ref)).quantize(Decimal("0.01"))
            lim = (Decimal(limits.collar_bps) / 100).quantize(Decimal("0.01"))
            return (f"risk: price collar breached: price {tick * p} is {pct}% from reference "
                    f"{tick * ref} > limit {lim}% ({limits.collar_bps} bps) {where}")
        if code == RiskCode.MAX_OPEN_ORDERS:
            return (f"risk: max open orders exceeded: {acc.open_orders + 1:,} > limit "
                    f"{limits.max_open_orders:,} ({acc.open_orders:,} open) ({acct})")
        if code == RiskCode.DAILY_CREDIT:
            if replace is not None:
                ol, op, cq = replace
                old_n = self._notional(h, ol, op)
                new_n = self._notional(h, max(q - cq, 0), px)
                total = ((acc.open_notional - old_n) + new_n) + acc.filled_notional
                parts = (f"open {_money(acc.open_notional, ccy)} - replaced "
                         f"{_money(old_n, ccy)} + filled {_money(acc.filled_notional, ccy)} + "
                         f"order {_money(new_n, ccy)}")
            else:
                n = self._notional(h, q, px)
                total = (acc.open_notional + acc.filled_notional) + n
                parts = (f"open {_money(acc.open_notional, ccy)} + filled "
                         f"{_money(acc.filled_notional, ccy)} + order {_money(n, ccy)}")
            return (f"risk: daily credit limit exceeded: {_money(total, ccy)} > limit "
                    f"{_money(limits.daily_credit_limit, ccy)} ({parts}) ({acct})")
        if code == RiskCode.MAX_POSITION:
            ol = 0
            add = q
            if replace is not None:
                ol = replace[0]
                add = max(q - replace[2], 0)
            if sd == RK_BUY:
                worst = h.position + h.open_buy - ol + add
                return (f"risk: max position exceeded: worst-case long {worst:,} > limit "
                        f"{limits.max_position:,} (position {h.position:,}, open buys "
                        f"{h.open_buy - ol:,}, order {add:,}) {where}")
            worst = h.open_sell - ol + add - h.position
            return (f"risk: max position exceeded: worst-case short {worst:,} > limit "
                    f"{limits.max_position:,} (position {h.position:,}, open sells "
                    f"{h.open_sell - ol:,}, order {add:,}) {where}")
        raise AssertionError(code)
