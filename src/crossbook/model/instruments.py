"""The instrument master: what can be traded, where, and how its prices and quantities are counted.

Every layer below the FIX, config and HTTP edges works in integers: prices in ticks of the
instrument's tick size, quantities in units (shares, contracts, base currency, ...). This module is
where the edges convert, exactly, with :class:`decimal.Decimal`: a float never touches a price.

    >>> master = InstrumentMaster.from_config(DEFAULT_INSTRUMENTS)
    >>> es = master.resolve("ESZ6", security_type="FUT")
    >>> es.price_to_ticks("6000.25"), es.ticks_to_price(24001)
    (24001, Decimal('6000.25'))
    >>> es.notional(2, 24001)        # 2 contracts x 6000.25 x 50
    Decimal('600025.00')

See docs/instruments.md for the rules, the configuration keys and the default instruments.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum

from crossbook.core import MAX_PRICE, MAX_QTY

__all__ = [
    "AssetClass",
    "DEFAULT_FX_RATES",
    "DEFAULT_INSTRUMENTS",
    "FxRates",
    "Instrument",
    "InstrumentConfigError",
    "InstrumentMaster",
    "LotSizeError",
    "OffTickError",
    "PriceError",
    "UnknownInstrumentError",
]


class AssetClass(str, Enum):
    EQUITY = "equity"
    FUTURE = "future"
    OPTION = "option"
    FX_SPOT = "fx_spot"
    CRYPTO = "crypto"


# FIX SecurityType (167) written for each asset class, and the values accepted from a client.
# FIX has no crypto value; CRYPTO is our choice (docs/instruments.md). FOR ("foreign exchange
# contract") is what FIX 4.2 clients send for FX, FXSPOT is the 4.4 value.
_DEFAULT_SECURITY_TYPE = {
    AssetClass.EQUITY: "CS",
    AssetClass.FUTURE: "FUT",
    AssetClass.OPTION: "OPT",
    AssetClass.FX_SPOT: "FXSPOT",
    AssetClass.CRYPTO: "CRYPTO",
}
_ACCEPTED_SECURITY_TYPES = {
    AssetClass.EQUITY: frozenset({"CS"}),
    AssetClass.FUTURE: frozenset({"FUT"}),
    AssetClass.OPTION: frozenset({"OPT"}),
    AssetClass.FX_SPOT: frozenset({"FXSPOT", "FOR"}),
    AssetClass.CRYPTO: frozenset({"CRYPTO"}),
}
_DERIVATIVES = frozenset({AssetClass.FUTURE, AssetClass.OPTION})
PUT, CALL = 0, 1

# Enough digits that quotients and products of any price we accept (below MAX_PRICE ticks) are
# exact; traps turn anything inexact or absurd into an exception instead of a rounded result.
_EXACT = decimal.Context(prec=80, traps=[decimal.InvalidOperation, decimal.DivisionByZero,
                                         decimal.Overflow, decimal.Inexact])
_MMY_RE = re.compile(r"^(\d{4})(\d{2})(\d{2}|w[1-5])?$")
_CCY_RE = re.compile(r"^[A-Z]{3}$")


# ------------------------------------------------------------------------------------------------
# Errors (all ValueError: the caller answers them as a reject, they are never a crash)
# ------------------------------------------------------------------------------------------------

class PriceError(ValueError):
    """A price that cannot become ticks of this instrument (not a number, not positive, too big)."""


class OffTickError(PriceError):
    """A price that is not a whole number of ticks."""

    def __init__(self, price: Decimal, tick_size: Decimal, instrument: str):
        self.price = price
        self.tick_size = tick_size
        self.instrument = instrument
        below = (price // tick_size) * tick_size
        super().__init__(
            f"price {price} is not a multiple of the tick size {tick_size} for {instrument} "
            f"(nearest valid prices: {below} and {below + tick_size})")


class LotSizeError(ValueError):
    """A quantity that is not a whole number of lots."""

    def __init__(self, qty: int, lot_size: int, instrument: str):
        self.qty = qty
        self.lot_size = lot_size
        self.instrument = instrument
        super().__init__(f"quantity {qty} is not a multiple of the lot size {lot_size} for {instrument}")


class UnknownInstrumentError(ValueError):
    """FIX instrument fields that name no instrument, or more than one."""


class InstrumentConfigError(ValueError):
    """A bad ``[[instruments]]`` entry; ``key`` is the full config key, e.g. ``instruments[2].tick_size``."""

    def __init__(self, key: str, reason: str):
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")


# ------------------------------------------------------------------------------------------------
# Exact conversions at the edges
# ------------------------------------------------------------------------------------------------

def _to_decimal(value: object, what: str) -> Decimal:
    """A finite Decimal from a Decimal, int or numeric string; never from a float."""
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, bool):
        raise TypeError(f"{what} must be a decimal number, got bool {value!r}")
    elif isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except decimal.InvalidOperation:
            raise ValueError(f"{what} {value!r} is not a decimal number") from None
    elif isinstance(value, float):
        raise TypeError(f"{what} must be a Decimal, str or int, not float {value!r} "
                        f"(a float cannot hold most decimal prices exactly; write it as a string)")
    else:
        raise TypeError(f"{what} must be a Decimal, str or int, got {type(value).__name__}")
    if not d.is_finite():
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return d


def _field_error(field_name: str, kind: type, message: str) -> Exception:
    """An exception naming the Instrument field it is about (from_config turns it into the key)."""
    err = kind(message)
    err.field = field_name
    return err


def _field_decimal(field_name: str, value: object, what: str) -> Decimal:
    try:
        return _to_decimal(value, what)
    except (TypeError, ValueError) as e:
        raise _field_error(field_name, type(e), str(e)) from None


def _plain(d: Decimal) -> str:
    """A Decimal without exponent or trailing zeros: 200, 0.25, 1.5."""
    return f"{d.normalize():f}"


# ------------------------------------------------------------------------------------------------
# Instrument
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Instrument:
    """One tradable instrument and its conversion rules.

    ``symbol`` is the FIX Symbol (55): an option shares it with its underlying (AAPL), the
    derivative fields tell them apart. ``key`` is the unique listing key used everywhere else
    (config, HTTP, the venues' books): the symbol for plain instruments, e.g.
    ``AAPL 20261218 C200`` for an option (derived when not given). ``index`` is 0..N-1 in config
    order, assigned by :class:`InstrumentMaster` (the risk engine keys on it).
    """

    symbol: str
    asset_class: AssetClass
    tick_size: Decimal
    lot_size: int
    multiplier: Decimal
    currency: str
    index: int = 0
    security_type: str = ""                 # FIX 167; default from the asset class (CS, FUT, ...)
    maturity_month_year: str | None = None  # FIX 200, YYYYMM
    expiry: _dt.date | None = None
    strike: Decimal | None = None           # FIX 202
    put_or_call: int | None = None          # FIX 201: 0 put, 1 call
    underlying: str | None = None
    venues: tuple[str, ...] = ()
    default_venue: str = ""
    reference_price: Decimal | None = None  # for price collars and the venues' background flow
    key: str = ""
    reference_ticks: int | None = field(default=None, init=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.symbol, str) or not self.symbol.strip() or self.symbol != self.symbol.strip():
            raise _field_error("symbol", ValueError,
                               f"symbol must be a non-empty string without surrounding spaces, got {self.symbol!r}")
        try:
            set_(self, "asset_class", AssetClass(self.asset_class))
        except ValueError:
            raise _field_error("asset_class", ValueError,
                               f"asset_class must be one of {', '.join(a.value for a in AssetClass)}, "
                             f"got {self.asset_class!r}") from None
        name = self.symbol
        tick = _field_decimal("tick_size", self.tick_size, f"tick_size of {name}")
        if tick <= 0:
            raise _field_error("tick_size", ValueError, f"tick_size of {name} must be > 0, got {tick}")
        set_(self, "tick_size", tick)
        if isinstance(self.lot_size, bool) or not isinstance(self.lot_size, int):
            raise _field_error("lot_size", TypeError,
                               f"lot_size of {name} must be an int, got {type(self.lot_size).__name__}")
        if not 1 <= self.lot_size <= MAX_QTY:
            raise _field_error("lot_size", ValueError,
                               f"lot_size of {name} must be between 1 and {MAX_QTY}, got {self.lot_size}")
        mult = _field_decimal("multiplier", self.multiplier, f"multiplier of {name}")
        if mult <= 0:
            raise _field_error("multiplier", ValueError, f"multiplier of {name} must be > 0, got {mult}")
        set_(self, "multiplier", mult)
        if not isinstance(self.currency, str) or not _CCY_RE.match(self.currency):
            raise _field_error("currency", ValueError,
                               f"currency of {name} must be a 3-letter ISO code like USD, got {self.currency!r}")
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise _field_error("index", ValueError, f"index of {name} must be an int >= 0, got {self.index!r}")
        self._check_derivative_fields(set_)
        if not isinstance(self.security_type, str):
            raise _field_error("security_type", TypeError,
                               f"security_type of {name} must be a string, got {type(self.security_type).__name__}")
        set_(self, "security_type", self.security_type.strip().upper() or _DEFAULT_SECURITY_TYPE[self.asset_class])
        venues = self.venues
        if isinstance(venues, str) or not all(isinstance(v, str) and v.strip() for v in venues):
            raise _field_error("venues", ValueError, f"venues of {name} must be a list of venue names, got {venues!r}")
        venues = tuple(venues)
        if not venues:
            raise _field_error("venues", ValueError, f"{name} must be listed on at least one venue")
        if len(set(venues)) != len(venues):
            raise _field_error("venues", ValueError, f"venues of {name} lists a venue twice: {list(venues)}")
        set_(self, "venues", venues)
        if not self.default_venue:
            set_(self, "default_venue", venues[0])
        elif self.default_venue not in venues:
            raise _field_error("default_venue", ValueError,
                               f"default_venue {self.default_venue!r} of {name} is not one of its venues "
                               f"{list(venues)}")
        if not isinstance(self.key, str) or self.key != self.key.strip():
            raise _field_error("key", ValueError,
                               f"key of {name} must be a string without surrounding spaces, got {self.key!r}")
        if not self.key:
            set_(self, "key", self._derived_key())
        if self.reference_price is not None:
            ref = _field_decimal("reference_price", self.reference_price, f"reference_price of {name}")
            set_(self, "reference_price", ref)
            try:
                set_(self, "reference_ticks", self.price_to_ticks(ref))
            except ValueError as e:
                raise _field_error("reference_price", ValueError, str(e)) from None

    def _check_derivative_fields(self, set_) -> None:
        name = self.symbol
        ac = self.asset_class
        if ac not in _DERIVATIVES:
            for f in ("maturity_month_year", "expiry", "strike", "put_or_call"):
                if getattr(self, f) is not None:
                    raise _field_error(f, ValueError, f"{f} is only for futures and options, but {name} is {ac.value}")
            return
        if self.expiry is not None and (not isinstance(self.expiry, _dt.date) or isinstance(self.expiry, _dt.datetime)):
            raise _field_error("expiry", TypeError, f"expiry of {name} must be a datetime.date, got {self.expiry!r}")
        mmy = self.maturity_month_year
        if mmy is None and self.expiry is not None:
            mmy = f"{self.expiry:%Y%m}"
        if mmy is None:
            raise _field_error("maturity_month_year", ValueError,
                               f"{name} is {ac.value}: it needs maturity_month_year (YYYYMM) or expiry")
        if not isinstance(mmy, str) or not re.fullmatch(r"\d{4}(0[1-9]|1[0-2])", mmy):
            raise _field_error("maturity_month_year", ValueError,
                               f"maturity_month_year of {name} must be YYYYMM, got {mmy!r}")
        if self.expiry is not None and f"{self.expiry:%Y%m}" != mmy:
            raise _field_error("expiry", ValueError,
                               f"expiry {self.expiry} of {name} is not in maturity_month_year {mmy}")
        set_(self, "maturity_month_year", mmy)
        if ac is AssetClass.FUTURE:
            if self.strike is not None or self.put_or_call is not None:
                raise _field_error("strike", ValueError,
                                   f"strike and put_or_call are only for options, but {name} is a future")
            return
        if self.strike is None:
            raise _field_error("strike", ValueError, f"option {name} needs a strike")
        strike = _field_decimal("strike", self.strike, f"strike of {name}")
        if strike <= 0:
            raise _field_error("strike", ValueError, f"strike of {name} must be > 0, got {strike}")
        set_(self, "strike", strike)
        if self.put_or_call not in (PUT, CALL) or isinstance(self.put_or_call, bool):
            raise _field_error("put_or_call", ValueError,
                               f"put_or_call of option {name} must be 0 (put) or 1 (call), got {self.put_or_call!r}")
        if self.underlying is None:
            set_(self, "underlying", name)

    def _derived_key(self) -> str:
        if self.asset_class is AssetClass.OPTION:
            when = f"{self.expiry:%Y%m%d}" if self.expiry is not None else self.maturity_month_year
            return f"{self.symbol} {when} {'C' if self.put_or_call == CALL else 'P'}{_plain(self.strike)}"
        return self.symbol

    # ---- queries --------------------------------------------------------------------------------

    @property
    def is_derivative(self) -> bool:
        return self.asset_class in _DERIVATIVES

    def accepts_security_type(self, security_type: str) -> bool:
        """True when a client's SecurityType (167) value names this instrument's kind."""
        st = security_type.strip().upper()
        return st == self.security_type or st in _ACCEPTED_SECURITY_TYPES[self.asset_class]

    # ---- conversions ----------------------------------------------------------------------------

    def price_to_ticks(self, price: Decimal | str | int) -> int:
        """The price as a whole number of ticks, exactly.

        Raises OffTickError (a ValueError) naming the price and the tick when the price is not on
        the tick grid, PriceError for a non-positive, non-finite or too large price, ValueError for
        text that is not a number and TypeError for a float.
        """
        d = _to_decimal(price, f"price for {self.key}")
        if d <= 0:
            raise PriceError(f"price for {self.key} must be positive, got {d}")
        if d > self.tick_size * MAX_PRICE:
            raise PriceError(f"price {d} for {self.key} is too large (at most {MAX_PRICE} ticks of {self.tick_size})")
        try:
            ticks = _EXACT.divide(d, self.tick_size)
            if ticks != ticks.to_integral_value():
                raise decimal.Inexact
        except (decimal.Inexact, decimal.InvalidOperation):
            raise OffTickError(d, self.tick_size, self.key) from None
        return int(ticks)

    def ticks_to_price(self, ticks: int) -> Decimal:
        """The decimal price of a whole number of ticks (exact, with the tick's decimals)."""
        if isinstance(ticks, bool) or not isinstance(ticks, int):
            raise TypeError(f"ticks must be an int, got {type(ticks).__name__}")
        return _EXACT.multiply(self.tick_size, Decimal(ticks))

    def check_qty(self, qty: int) -> None:
        """Raise unless ``qty`` is a positive whole number of lots (LotSizeError when off-lot)."""
        if isinstance(qty, bool) or not isinstance(qty, int):
            raise TypeError(f"quantity for {self.key} must be an int, got {type(qty).__name__}")
        if qty <= 0:
            raise ValueError(f"quantity for {self.key} must be positive, got {qty}")
        if qty > MAX_QTY:
            raise ValueError(f"quantity {qty} for {self.key} is above the maximum {MAX_QTY}")
        if qty % self.lot_size:
            raise LotSizeError(qty, self.lot_size, self.key)

    def notional(self, qty: int, price_ticks: int) -> Decimal:
        """qty x price x multiplier, in ``self.currency``, exactly."""
        if isinstance(qty, bool) or not isinstance(qty, int):
            raise TypeError(f"qty must be an int, got {type(qty).__name__}")
        price = self.ticks_to_price(price_ticks)
        return _EXACT.multiply(_EXACT.multiply(Decimal(qty), price), self.multiplier)

    @property
    def tick_value(self) -> Decimal:
        """The notional of one tick on one unit (tick_size x multiplier), in ``self.currency``."""
        return _EXACT.multiply(self.tick_size, self.multiplier)


# ------------------------------------------------------------------------------------------------
# Instrument master
# ------------------------------------------------------------------------------------------------

_CONFIG_KEYS = (
    "key", "symbol", "asset_class", "security_type", "tick_size", "lot_size", "multiplier", "currency",
    "maturity_month_year", "expiry", "strike", "put_or_call", "underlying", "venues", "default_venue",
    "reference_price",
)


class InstrumentMaster:
    """All instruments, by listing key, by index and by FIX instrument fields.

    Instruments get their ``index`` here, 0..N-1 in the order given (the master stores copies
    with the index set). Listing keys must be unique, and so must the FIX identity (symbol,
    security type, maturity, strike, put/call).
    """

    def __init__(self, instruments: Iterable[Instrument]):
        self._list: list[Instrument] = []
        self._by_key: dict[str, Instrument] = {}
        self._by_symbol: dict[str, list[Instrument]] = {}
        identities: dict[tuple, str] = {}
        for i, inst in enumerate(instruments):
            if not isinstance(inst, Instrument):
                raise TypeError(f"instrument #{i} must be an Instrument, got {type(inst).__name__}")
            if inst.index != i:
                inst = dataclasses.replace(inst, index=i)
            if inst.key in self._by_key:
                first = self._by_key[inst.key].index
                raise ValueError(f"duplicate instrument key {inst.key!r} (instruments #{first} and #{i})")
            identity = (inst.symbol, inst.asset_class, inst.maturity_month_year, inst.strike, inst.put_or_call)
            if identity in identities:
                raise ValueError(f"instruments {identities[identity]!r} and {inst.key!r} have the same FIX identity "
                                 f"(Symbol, SecurityType, MaturityMonthYear, StrikePrice, PutOrCall)")
            identities[identity] = inst.key
            self._list.append(inst)
            self._by_key[inst.key] = inst
            self._by_symbol.setdefault(inst.symbol, []).append(inst)

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self._list)

    def __len__(self) -> int:
        return len(self._list)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, Instrument):
            return self._by_key.get(key.key) == key
        return key in self._by_key

    def __repr__(self) -> str:
        return f"InstrumentMaster({[i.key for i in self._list]})"

    def by_symbol(self, symbol: str) -> Instrument | None:
        """The instrument with this exact listing key (``AAPL``, ``AAPL 20261218 C200``), or None."""
        return self._by_key.get(symbol)

    def by_index(self, index: int) -> Instrument:
        # Fast path first (every order asks): an exact int (not a bool) in range.
        if type(index) is int and index >= 0:
            try:
                return self._list[index]
            except IndexError:
                pass
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"instrument index must be an int, got {type(index).__name__}")
        if not 0 <= index < len(self._list):
            raise ValueError(f"no instrument with index {index} (the master has {len(self._list)})")
        return self._list[index]

    def on_venue(self, venue: str) -> list[Instrument]:
        """The instruments listed on ``venue``, in index order."""
        return [i for i in self._list if venue in i.venues]

    def venues(self) -> list[str]:
        """Every venue named by some instrument, in order of first appearance."""
        seen: dict[str, None] = {}
        for inst in self._list:
            for v in inst.venues:
                seen.setdefault(v, None)
        return list(seen)

    def resolve(self, symbol: str, security_type: str | None = None, maturity_month_year: str | None = None,
                strike: Decimal | str | int | None = None, put_or_call: int | str | None = None,
                currency: str | None = None) -> Instrument:
        """The instrument named by FIX instrument fields (55, 167, 200, 202, 201, 15).

        Symbol alone names a plain instrument (AAPL the stock, even though AAPL options exist); an
        option needs MaturityMonthYear, StrikePrice and PutOrCall unless its listing key is given
        as the Symbol. Fields that are given must all match. Empty strings count as absent.
        Raises UnknownInstrumentError (a ValueError) saying what did not match.
        """
        if not isinstance(symbol, str) or not symbol.strip():
            raise UnknownInstrumentError("Symbol (55) is missing")
        sym = symbol.strip()
        st = _opt_str(security_type, "SecurityType (167)")
        st = st.upper() if st else None
        mmy = _opt_str(maturity_month_year, "MaturityMonthYear (200)")
        if mmy is not None and not _MMY_RE.match(mmy):
            raise UnknownInstrumentError(f"MaturityMonthYear (200) must be YYYYMM, YYYYMMDD or YYYYMMwN, got {mmy!r}")
        k = _opt_strike(strike)
        pc = _opt_put_or_call(put_or_call)
        ccy = _opt_str(currency, "Currency (15)")
        ccy = ccy.upper() if ccy else None

        given = [f"Symbol={sym}"] + [f"{n}={v}" for n, v in (
            ("SecurityType", st), ("MaturityMonthYear", mmy), ("StrikePrice", k if k is None else _plain(k)),
            ("PutOrCall", pc), ("Currency", ccy)) if v is not None]
        by_key = False
        candidates = self._by_symbol.get(sym)
        if not candidates:
            inst = self._by_key.get(sym)
            if inst is None:
                raise UnknownInstrumentError(f"unknown instrument: {' '.join(given)}")
            candidates, by_key = [inst], True
        matched = [c for c in candidates if _matches(c, st, mmy, k, pc, ccy)]
        if not matched:
            known = ", ".join(c.key for c in candidates)
            raise UnknownInstrumentError(f"no instrument matches {' '.join(given)} (listed for {sym}: {known})")
        derivative_fields = mmy is not None or k is not None or pc is not None
        if len(matched) > 1 and not derivative_fields:
            plain = [c for c in matched if not c.is_derivative]
            if len(plain) == 1:
                return plain[0]
        if len(matched) > 1:
            raise UnknownInstrumentError(
                f"ambiguous instrument {' '.join(given)}: matches {', '.join(c.key for c in matched)}; "
                f"give SecurityType, MaturityMonthYear, StrikePrice and PutOrCall")
        inst = matched[0]
        if inst.asset_class is AssetClass.OPTION and not by_key:
            missing = [n for n, v in (("MaturityMonthYear", mmy), ("StrikePrice", k), ("PutOrCall", pc)) if v is None]
            if missing:
                raise UnknownInstrumentError(f"option {sym} needs {', '.join(missing)} to name the contract "
                                             f"(matching: {inst.key})")
        return inst

    # ---- configuration --------------------------------------------------------------------------

    @classmethod
    def from_config(cls, entries: list[dict], *, where: str = "instruments") -> InstrumentMaster:
        """Build from ``[[instruments]]`` TOML tables (see docs/instruments.md for the keys).

        Errors are InstrumentConfigError naming the key, e.g. ``instruments[2].tick_size: ...``.
        Decimal values (tick_size, multiplier, strike, reference_price) must be strings or ints:
        a TOML float would already have lost exactness.
        """
        if not isinstance(entries, (list, tuple)):
            raise InstrumentConfigError(where, f"must be a list of tables, got {type(entries).__name__}")
        if not entries:
            raise InstrumentConfigError(where, "lists no instrument")
        built = []
        for i, entry in enumerate(entries):
            built.append(_instrument_from_config(entry, i, f"{where}[{i}]"))
        try:
            return cls(built)
        except ValueError as e:
            raise InstrumentConfigError(where, str(e)) from None


def _opt_str(value: object, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise UnknownInstrumentError(f"{what} must be text, got {type(value).__name__}")
    value = value.strip()
    return value or None


def _opt_strike(value: object) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return _to_decimal(value, "StrikePrice (202)")
    except (TypeError, ValueError) as e:
        raise UnknownInstrumentError(str(e)) from None


def _opt_put_or_call(value: object) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and value.strip() in ("0", "1"):
        return int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and value in (PUT, CALL):
        return value
    raise UnknownInstrumentError(f"PutOrCall (201) must be 0 (put) or 1 (call), got {value!r}")


def _matches(inst: Instrument, st, mmy, strike, pc, ccy) -> bool:
    if st is not None and not inst.accepts_security_type(st):
        return False
    if mmy is not None:
        if inst.maturity_month_year is None or mmy[:6] != inst.maturity_month_year:
            return False
        if len(mmy) == 8 and (inst.expiry is None or mmy != f"{inst.expiry:%Y%m%d}"):
            return False
    if strike is not None and inst.strike != strike:
        return False
    if pc is not None and inst.put_or_call != pc:
        return False
    if ccy is not None and inst.currency != ccy:
        return False
    return True


def _instrument_from_config(entry: object, i: int, where: str) -> Instrument:
    if not isinstance(entry, Mapping):
        raise InstrumentConfigError(where, f"must be a table, got {type(entry).__name__}")
    for k in entry:
        if k not in _CONFIG_KEYS:
            raise InstrumentConfigError(f"{where}.{k}", f"unknown key (known: {', '.join(_CONFIG_KEYS)})")
    for k in ("symbol", "asset_class", "tick_size", "venues"):
        if k not in entry:
            raise InstrumentConfigError(f"{where}.{k}", "missing (required)")

    def text(k, default=None):
        v = entry.get(k, default)
        if v is not None and (not isinstance(v, str) or not v.strip()):
            raise InstrumentConfigError(f"{where}.{k}", f"must be a non-empty string, got {v!r}")
        return v.strip() if isinstance(v, str) else v

    def dec(k, default=None):
        v = entry.get(k, default)
        if v is None:
            return None
        if isinstance(v, float):
            raise InstrumentConfigError(f"{where}.{k}", f"write decimals as strings (\"{v!r}\"), got the float {v!r}: "
                                                        f"a float cannot hold most decimal values exactly")
        try:
            return _to_decimal(v, "value")
        except (TypeError, ValueError) as e:
            raise InstrumentConfigError(f"{where}.{k}", str(e)) from None

    symbol = text("symbol")
    asset = text("asset_class")
    try:
        asset_class = AssetClass(asset.lower())
    except ValueError:
        raise InstrumentConfigError(f"{where}.asset_class", f"must be one of {', '.join(a.value for a in AssetClass)}, "
                                                                f"got {asset!r}") from None
    lot = entry.get("lot_size", 1)
    if isinstance(lot, bool) or not isinstance(lot, int) or not 1 <= lot <= MAX_QTY:
        raise InstrumentConfigError(f"{where}.lot_size", f"must be an integer from 1 to {MAX_QTY}, got {lot!r}")
    venues = entry["venues"]
    if isinstance(venues, str) or not isinstance(venues, (list, tuple)) or not venues \
            or not all(isinstance(v, str) and v.strip() for v in venues):
        raise InstrumentConfigError(f"{where}.venues", f"must be a non-empty list of venue names, got {venues!r}")
    expiry = entry.get("expiry")
    if isinstance(expiry, str):
        try:
            expiry = _dt.date.fromisoformat(expiry.strip())
        except ValueError:
            raise InstrumentConfigError(f"{where}.expiry", f"must be a date YYYY-MM-DD, got {expiry!r}") from None
    elif expiry is not None and (isinstance(expiry, _dt.datetime) or not isinstance(expiry, _dt.date)):
        raise InstrumentConfigError(f"{where}.expiry", f"must be a date YYYY-MM-DD, got {expiry!r}")
    mmy = entry.get("maturity_month_year")
    if isinstance(mmy, int) and not isinstance(mmy, bool):
        mmy = str(mmy)  # TOML users write 202612 unquoted
    if mmy is not None and (not isinstance(mmy, str) or not re.fullmatch(r"\d{4}(0[1-9]|1[0-2])", mmy.strip())):
        raise InstrumentConfigError(f"{where}.maturity_month_year", f"must be YYYYMM, got {mmy!r}")
    pc = entry.get("put_or_call")
    if pc is not None:
        pc_map = {"call": CALL, "c": CALL, "1": CALL, "put": PUT, "p": PUT, "0": PUT}
        if isinstance(pc, str) and pc.strip().lower() in pc_map:
            pc = pc_map[pc.strip().lower()]
        elif isinstance(pc, bool) or pc not in (PUT, CALL):
            raise InstrumentConfigError(f"{where}.put_or_call", f"must be call or put (or 1 / 0), got {pc!r}")
    ccy = text("currency", "USD")
    values = dict(
        symbol=symbol, asset_class=asset_class, tick_size=dec("tick_size"), lot_size=lot,
        multiplier=dec("multiplier", 1), currency=ccy.upper(), index=i,
        security_type=text("security_type") or "", maturity_month_year=mmy.strip() if mmy else None,
        expiry=expiry, strike=dec("strike"), put_or_call=pc, underlying=text("underlying"),
        venues=tuple(v.strip() for v in venues), default_venue=text("default_venue") or "",
        reference_price=dec("reference_price"), key=text("key") or "",
    )
    try:
        return Instrument(**values)
    except (TypeError, ValueError) as e:
        raise InstrumentConfigError(f"{where}.{getattr(e, 'field', 'symbol')}", str(e)) from None


# ------------------------------------------------------------------------------------------------
# FX rates
# ------------------------------------------------------------------------------------------------

_PAIR_RE = re.compile(r"^([A-Z]{3})[/\-]?([A-Z]{3})$")


class FxRates:
    """Configured FX rates for converting notionals to an account's currency.

    A rate ``EURUSD = 1.08`` means 1 EUR = 1.08 USD. Conversion uses the direct pair, else the
    inverse pair, else a cross through one common currency. Direct conversions are exact;
    inverses and crosses divide, rounded to 28 significant digits (far below a cent on any
    notional the risk limits deal with).
    """

    def __init__(self, rates: Mapping[str, Decimal | str | int] | None = None):
        self._rates: dict[tuple[str, str], Decimal] = {}
        for pair, rate in (rates or {}).items():
            base, quote = _parse_pair(pair, "FX pair")
            self.set_rate(base, quote, rate)

    @classmethod
    def from_config(cls, table: object, *, where: str = "fx_rates") -> FxRates:
        """From a TOML table ``{"EURUSD" = "1.08", ...}``; errors name the key (``fx_rates.EURUSD``)."""
        if table is None:
            return cls()
        if not isinstance(table, Mapping):
            raise ValueError(f"{where}: must be a table of PAIR = \"rate\", got {type(table).__name__}")
        out = cls()
        for pair, rate in table.items():
            key = f"{where}.{pair}"
            try:
                base, quote = _parse_pair(pair, "FX pair")
            except ValueError as e:
                raise InstrumentConfigError(key, str(e)) from None
            if isinstance(rate, float):
                raise InstrumentConfigError(key, f"write the rate as a string (\"{rate!r}\"), got the float {rate!r}")
            try:
                out.set_rate(base, quote, rate)
            except (TypeError, ValueError) as e:
                raise InstrumentConfigError(key, str(e)) from None
        return out

    def set_rate(self, base: str, quote: str, rate: Decimal | str | int) -> None:
        """1 ``base`` = ``rate`` ``quote`` (replaces an earlier rate of the pair or its inverse)."""
        base, quote = _ccy(base), _ccy(quote)
        if base == quote:
            raise ValueError(f"FX pair {base}{quote} has the same currency twice")
        r = _to_decimal(rate, f"FX rate {base}{quote}")
        if r <= 0:
            raise ValueError(f"FX rate {base}{quote} must be > 0, got {r}")
        self._rates.pop((quote, base), None)
        self._rates[(base, quote)] = r

    def pairs(self) -> dict[str, Decimal]:
        return {f"{b}{q}": r for (b, q), r in self._rates.items()}

    def rate(self, from_ccy: str, to_ccy: str) -> Decimal:
        """Units of ``to_ccy`` per unit of ``from_ccy``; ValueError when no rate leads there."""
        f, t = _ccy(from_ccy), _ccy(to_ccy)
        if f == t:
            return Decimal(1)
        direct = self._direct(f, t)
        if direct is not None:
            return direct
        currencies = {c for pair in self._rates for c in pair}
        for via in sorted(currencies):
            a, b = self._direct(f, via), self._direct(via, t)
            if a is not None and b is not None:
                return a * b
        raise ValueError(f"no FX rate to convert {f} to {t} (configured: {', '.join(self.pairs()) or 'none'})")

    def convert(self, amount: Decimal | str | int, from_ccy: str, to_ccy: str) -> Decimal:
        """``amount`` of ``from_ccy`` expressed in ``to_ccy``."""
        a = _to_decimal(amount, "amount")
        f, t = _ccy(from_ccy), _ccy(to_ccy)
        if f == t:
            return a
        if (f, t) in self._rates:
            return _EXACT.multiply(a, self._rates[(f, t)])
        return a * self.rate(f, t)

    def _direct(self, f: str, t: str) -> Decimal | None:
        r = self._rates.get((f, t))
        if r is not None:
            return r
        inv = self._rates.get((t, f))
        return None if inv is None else Decimal(1) / inv


def _ccy(code: object) -> str:
    if not isinstance(code, str) or not _CCY_RE.match(code.strip().upper()):
        raise ValueError(f"currency must be a 3-letter ISO code like USD, got {code!r}")
    return code.strip().upper()


def _parse_pair(pair: object, what: str) -> tuple[str, str]:
    m = _PAIR_RE.match(pair.strip().upper()) if isinstance(pair, str) else None
    if not m:
        raise ValueError(f"{what} must be two 3-letter currency codes like EURUSD or EUR/USD, got {pair!r}")
    return m.group(1), m.group(2)


# ------------------------------------------------------------------------------------------------
# Defaults (the embedded `make serve` configuration)
# ------------------------------------------------------------------------------------------------

_BOTH = ["VENUE-A", "VENUE-B"]

#: The default ``[[instruments]]`` tables, as the LEAD's default config embeds them.
DEFAULT_INSTRUMENTS: list[dict] = [
    {"symbol": "AAPL", "asset_class": "equity", "tick_size": "0.01", "lot_size": 1, "currency": "USD",
     "venues": list(_BOTH), "reference_price": "230.00"},
    {"symbol": "MSFT", "asset_class": "equity", "tick_size": "0.01", "lot_size": 1, "currency": "USD",
     "venues": list(_BOTH), "reference_price": "420.00"},
    {"symbol": "ESZ6", "asset_class": "future", "tick_size": "0.25", "lot_size": 1, "multiplier": "50",
     "currency": "USD", "maturity_month_year": "202612", "expiry": "2026-12-18", "underlying": "ES",
     "venues": list(_BOTH), "reference_price": "6000.00"},
    {"symbol": "AAPL", "asset_class": "option", "tick_size": "0.01", "lot_size": 1, "multiplier": "100",
     "currency": "USD", "maturity_month_year": "202612", "expiry": "2026-12-18", "strike": "200",
     "put_or_call": "call", "underlying": "AAPL", "venues": list(_BOTH), "reference_price": "32.50"},
    # FX spot: quantity in EUR (base currency) units, price in USD per EUR, lots of 1,000 EUR.
    {"symbol": "EUR/USD", "asset_class": "fx_spot", "tick_size": "0.00001", "lot_size": 1000, "currency": "USD",
     "venues": list(_BOTH), "reference_price": "1.08000"},
    # Crypto: one quantity unit is 0.001 BTC (multiplier 0.001), so integer quantities can express
    # fractions of a coin; OrderQty=500 buys 0.5 BTC. Price is USD per whole BTC.
    {"symbol": "BTC-USD", "asset_class": "crypto", "tick_size": "0.01", "lot_size": 1, "multiplier": "0.001",
     "currency": "USD", "venues": list(_BOTH), "reference_price": "90000.00"},
]

#: Default FX rates (1 base = rate quote): enough for EUR accounts next to the USD instruments.
DEFAULT_FX_RATES: dict[str, str] = {"EURUSD": "1.08000"}
