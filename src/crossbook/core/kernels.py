"""Numba kernels: synthetic order flow and analytics over fill arrays.

Two families live here, both array-in / array-out with the whole loop jitted
(``@njit(cache=True)``):

* **Order flow.** :class:`OrderFlowGenerator` produces a seeded, reproducible stream of
  :data:`crossbook.core.COMMAND_DTYPE` commands (passive adds, aggressive crossing limits, market
  orders, cancels and replaces of live orders) around a randomly walking mid, with Poisson arrival
  times. The same seed and parameters always give the same stream, and a generator asked for
  ``n`` then ``m`` commands gives exactly the stream of one ``n + m`` request, so a venue simulator
  can produce background liquidity chunk by chunk. :func:`generate_order_flow` is the one-call form.
* **Analytics** over :data:`crossbook.core.FILL_DTYPE` arrays: :func:`vwap`, :func:`ohlcv_bars`
  (time buckets or fixed fill counts) and :func:`traded_volume_by_owner`.

The random numbers come from a splitmix64 generator whose whole state is one ``uint64`` kept by the
Python object, not from Numba's global ``np.random`` state: that is what makes streams resumable and
independent of anything else seeding NumPy or Numba in the same process.

See ``docs/kernels.md`` for the model, every parameter and examples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numba import njit

__all__ = [
    "BAR_DTYPE",
    "FlowChunk",
    "FlowMix",
    "OrderFlowGenerator",
    "generate_order_flow",
    "ohlcv_bars",
    "traded_volume_by_owner",
    "vwap",
]

# FIX values of the enums the generator writes (crossbook.core's IntEnums carry the same numbers;
# tests/core/test_kernels.py checks they agree). Plain ints so the jitted code can fold them.
_OP_SUBMIT, _OP_CANCEL, _OP_REPLACE = 1, 2, 3
_BUY, _SELL = 1, 2
_MARKET, _LIMIT = 1, 2
_DAY = 0

# Event kinds, in the order of FlowMix's fields; the kernel draws one per command.
_KIND_PASSIVE, _KIND_AGGRESSIVE, _KIND_MARKET, _KIND_CANCEL, _KIND_REPLACE = 0, 1, 2, 3, 4

# Slots of the float parameter vector handed to the flow kernel.
_P_HALF_SPREAD, _P_DEPTH, _P_AGGR_DEPTH, _P_VOL, _P_MEAN_GAP_NS, _P_MEAN_LOTS, _P_AGGR_LOTS = range(7)
# Slots of the mutable int64 state vector: the mid is a float and lives in its own array.
_S_NEXT_ID, _S_CLOCK_NS, _S_LIVE = range(3)


def _command_dtype() -> np.dtype:
    # Imported late: crossbook.core's __init__ may itself import this module.
    from crossbook.core import COMMAND_DTYPE

    return np.dtype(COMMAND_DTYPE)


# --------------------------------------------------------------------------------------------
# Random numbers (splitmix64: 64-bit state, passes BigCrush, trivially resumable)
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def _splitmix64_next(state):
    z = state[0] + np.uint64(0x9E3779B97F4A7C15)
    state[0] = z
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def _uniform(state):
    """Uniform double in [0, 1) from the top 53 bits."""
    return np.float64(_splitmix64_next(state) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def _below(state, n):
    """Uniform integer in [0, n) for n >= 1 (the modulo bias is below 2**-40 for our n)."""
    return np.int64(_splitmix64_next(state) % np.uint64(n))


@njit(cache=True)
def _standard_normal(state):
    # Box-Muller with one output per call: simpler to resume than caching the spare variate.
    u1 = 1.0 - _uniform(state)  # (0, 1]: log() stays finite
    u2 = _uniform(state)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@njit(cache=True)
def _geometric(state, mean):
    """Integer >= 0 with the given mean (geometric distribution); 0 when mean <= 0."""
    if mean <= 0.0:
        return np.int64(0)
    p = 1.0 / (1.0 + mean)
    u = 1.0 - _uniform(state)
    return np.int64(math.floor(math.log(u) / math.log1p(-p)))


# --------------------------------------------------------------------------------------------
# Order flow
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def _generate_flow_into(
    n, cum_mix, fparams, lot_size, n_owners, cancel_window, rng, mid, state,
    live_id, live_side, live_price, live_qty,
    op, order_id, side, price, qty, ord_type, tif, owner, timestamps,
):
    """Write ``n`` commands into the column arrays, advancing rng/mid/state and the live pool.

    The live pool holds, in arrival order, the newest passive orders the generator submitted and
    has not cancelled; cancels and replaces pick uniformly among the newest ``cancel_window`` of
    them. It does not know about fills (the generator has no book), so a cancel can target an order
    that has already traded away, as a late cancel does on a venue.
    """
    half_spread = fparams[_P_HALF_SPREAD]
    depth = fparams[_P_DEPTH]
    aggr_depth = fparams[_P_AGGR_DEPTH]
    vol = fparams[_P_VOL]
    mean_gap_ns = fparams[_P_MEAN_GAP_NS]
    mean_lots = fparams[_P_MEAN_LOTS]
    aggr_lots = fparams[_P_AGGR_LOTS]
    n_live = state[_S_LIVE]
    for i in range(n):
        # Poisson arrivals: exponential gaps; the mid diffuses with the elapsed time.
        gap = -math.log(1.0 - _uniform(rng)) * mean_gap_ns
        state[_S_CLOCK_NS] += np.int64(gap)
        timestamps[i] = state[_S_CLOCK_NS]
        mid[0] += vol * math.sqrt(gap * 1e-9) * _standard_normal(rng)
        if mid[0] < 1.0 + half_spread:
            mid[0] = 1.0 + half_spread  # prices are positive ticks: reflect the walk at the floor

        u = _uniform(rng)
        kind = _KIND_REPLACE
        for k in range(cum_mix.shape[0]):
            if u < cum_mix[k]:
                kind = k
                break
        if (kind == _KIND_CANCEL or kind == _KIND_REPLACE) and n_live == 0:
            kind = _KIND_PASSIVE  # nothing live to act on yet: the stream starts by adding
        is_buy = _uniform(rng) < 0.5
        s = _BUY if is_buy else _SELL
        bid_edge = math.floor(mid[0] - half_spread)  # best passive bid price around this mid
        ask_edge = math.ceil(mid[0] + half_spread)

        if kind == _KIND_PASSIVE or kind == _KIND_AGGRESSIVE or kind == _KIND_MARKET:
            oid = state[_S_NEXT_ID]
            state[_S_NEXT_ID] += 1
            op[i] = _OP_SUBMIT
            order_id[i] = oid
            side[i] = s
            tif[i] = _DAY
            owner[i] = 1 + _below(rng, n_owners)
            if kind == _KIND_PASSIVE:
                off = _geometric(rng, depth)
                px = bid_edge - off if is_buy else ask_edge + off
                ord_type[i] = _LIMIT
                price[i] = max(np.int64(1), np.int64(px))
                qty[i] = lot_size * (1 + _geometric(rng, mean_lots - 1.0))
                if n_live == live_id.shape[0]:
                    # Only the newest `window` orders can be cancelled: forget the older half.
                    keep = min(n_live, cancel_window)
                    for m in range(keep):
                        live_id[m] = live_id[n_live - keep + m]
                        live_side[m] = live_side[n_live - keep + m]
                        live_price[m] = live_price[n_live - keep + m]
                        live_qty[m] = live_qty[n_live - keep + m]
                    n_live = keep
                live_id[n_live] = oid
                live_side[n_live] = s
                live_price[n_live] = price[i]
                live_qty[n_live] = qty[i]
                n_live += 1
            elif kind == _KIND_AGGRESSIVE:
                # Priced through the far touch: a buy reaches into the asks, a sell into the bids.
                off = _geometric(rng, aggr_depth)
                px = ask_edge + off if is_buy else bid_edge - off
                ord_type[i] = _LIMIT
                price[i] = max(np.int64(1), np.int64(px))
                qty[i] = lot_size * (1 + _geometric(rng, aggr_lots - 1.0))
            else:
                ord_type[i] = _MARKET
                price[i] = 0
                qty[i] = lot_size * (1 + _geometric(rng, aggr_lots - 1.0))
        else:
            # Cancels and replaces hit recent orders (as on real venues, where most cancels
            # follow their order within seconds): uniform among the newest `window` live ones.
            window = min(n_live, cancel_window)
            j = n_live - 1 - _below(rng, window)
            op[i] = _OP_CANCEL if kind == _KIND_CANCEL else _OP_REPLACE
            order_id[i] = live_id[j]
            side[i] = live_side[j]
            ord_type[i] = _LIMIT
            tif[i] = _DAY
            owner[i] = 0
            if kind == _KIND_CANCEL:
                price[i] = live_price[j]
                qty[i] = 0
                # Shift the newer entries down: keeps the pool in arrival order at a cost bounded
                # by the window.
                for m in range(j, n_live - 1):
                    live_id[m] = live_id[m + 1]
                    live_side[m] = live_side[m + 1]
                    live_price[m] = live_price[m + 1]
                    live_qty[m] = live_qty[m + 1]
                n_live -= 1
            else:
                # Half the replaces cut the size in place (priority kept), half move the price
                # by a few ticks away from or toward the touch (priority lost).
                new_qty = live_qty[j]
                new_px = live_price[j]
                if _uniform(rng) < 0.5 and new_qty > lot_size:
                    new_qty -= lot_size * (1 + _below(rng, new_qty // lot_size - 1))
                else:
                    step = 1 + _geometric(rng, 1.0)
                    if _uniform(rng) < 0.5:
                        step = -step
                    new_px = max(np.int64(1), new_px + step)
                price[i] = new_px
                qty[i] = new_qty
                live_price[j] = new_px
                live_qty[j] = new_qty
    state[_S_LIVE] = n_live


@dataclass(frozen=True)
class FlowMix:
    """Relative frequencies of the event kinds in a generated stream (normalised to sum 1).

    passive: limit orders priced at or behind the touch implied by the mid (they usually rest);
    aggressive: limit orders priced through the far touch (they usually trade, any rest remains);
    market: market orders; cancel: cancels of a live passive order; replace: cancel/replace of a
    live passive order (size cut in place or a price move).
    """

    passive: float = 0.60
    cancel: float = 0.25
    aggressive: float = 0.10
    market: float = 0.05
    replace: float = 0.0

    def __post_init__(self):
        for name in ("passive", "cancel", "aggressive", "market", "replace"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"FlowMix.{name} must be a finite number >= 0, got {value!r}")
        if self.passive + self.cancel + self.aggressive + self.market + self.replace <= 0:
            raise ValueError("FlowMix needs at least one kind with a positive weight")

    @classmethod
    def passive_only(cls) -> "FlowMix":
        """Only resting adds: use it to build up a book before a mixed stream."""
        return cls(passive=1.0, cancel=0.0, aggressive=0.0, market=0.0, replace=0.0)

    def cumulative(self) -> np.ndarray:
        """Cumulative probabilities in kernel order (passive, aggressive, market, cancel, replace)."""
        w = np.array([self.passive, self.aggressive, self.market, self.cancel, self.replace], dtype=np.float64)
        c = np.cumsum(w / w.sum())
        c[-1] = 1.0  # no rounding gap at the top
        return c


class FlowChunk(NamedTuple):
    """A generated slice of order flow: commands and their arrival times (ns, non-decreasing)."""

    commands: np.ndarray
    timestamps: np.ndarray


class OrderFlowGenerator:
    """A resumable, seeded source of synthetic order flow for one instrument.

    Every quantity is in the core's units: prices in integer ticks, sizes in integer units.

    Parameters:
        seed: any int >= 0; the whole stream is a function of the seed and the parameters.
        mid: starting mid price in ticks.
        half_spread: passive orders rest at least this many ticks from the mid (rounded outward).
        depth_ticks: mean extra distance, in ticks, of a passive order behind its touch (geometric).
        aggressive_ticks: mean distance, in ticks, an aggressive limit reaches through the far touch.
        volatility: standard deviation of the mid's random walk, in ticks per sqrt(second).
        rate: mean arrivals per second (Poisson), which sets the timestamps.
        lot_size: every size is a multiple of it.
        mean_lots: mean size of passive orders in lots (geometric, at least one lot).
        aggressive_lots: mean size of aggressive limits and market orders in lots. With the
            default mix, the defaults (passive 3 lots, aggressive 14 lots reaching 6 ticks through)
            keep a book built from 10k passive adds near 10k resting orders over 200k commands.
        cancel_window: cancels and replaces pick uniformly among the newest ``cancel_window`` live
            passive orders (most cancels on real venues follow their order closely, and a stream
            whose cancels hit arbitrarily old, long-filled orders cancels almost nothing).
        n_owners: owners are drawn uniformly from 1..n_owners (for self-trade prevention and
            per-owner analytics); cancels and replaces carry owner 0.
        first_order_id: the id of the first submitted order; ids then count up by one.
        start_time_ns: the clock before the first arrival.
        mix: the default :class:`FlowMix`.
    """

    def __init__(
        self,
        seed: int,
        *,
        mid: int = 100_000,
        half_spread: float = 0.5,
        depth_ticks: float = 6.0,
        aggressive_ticks: float = 6.0,
        volatility: float = 3.0,
        rate: float = 10_000.0,
        lot_size: int = 100,
        mean_lots: float = 3.0,
        aggressive_lots: float = 14.0,
        n_owners: int = 8,
        cancel_window: int = 1000,
        first_order_id: int = 1,
        start_time_ns: int = 0,
        mix: FlowMix | None = None,
    ):
        seed = _check_int("seed", seed, minimum=0)
        mid = _check_int("mid", mid, minimum=1)
        self.lot_size = _check_int("lot_size", lot_size, minimum=1)
        self.n_owners = _check_int("n_owners", n_owners, minimum=1)
        self.cancel_window = _check_int("cancel_window", cancel_window, minimum=1)
        first_order_id = _check_int("first_order_id", first_order_id, minimum=1)
        start_time_ns = _check_int("start_time_ns", start_time_ns, minimum=0)
        floats = {
            "half_spread": half_spread, "depth_ticks": depth_ticks, "aggressive_ticks": aggressive_ticks,
            "volatility": volatility, "rate": rate, "mean_lots": mean_lots, "aggressive_lots": aggressive_lots,
        }
        for name, value in floats.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        for name in ("half_spread", "depth_ticks", "aggressive_ticks", "volatility"):
            if floats[name] < 0:
                raise ValueError(f"{name} must be >= 0, got {floats[name]!r}")
        for name in ("rate", "mean_lots", "aggressive_lots"):
            if floats[name] <= 0 or (name != "rate" and floats[name] < 1):
                raise ValueError(f"{name} must be {'> 0' if name == 'rate' else '>= 1'}, got {floats[name]!r}")
        if mix is not None and not isinstance(mix, FlowMix):
            raise TypeError(f"mix must be a FlowMix, got {type(mix).__name__}")
        self.mix = mix or FlowMix()
        self._fparams = np.zeros(7, dtype=np.float64)
        self._fparams[_P_HALF_SPREAD] = half_spread
        self._fparams[_P_DEPTH] = depth_ticks
        self._fparams[_P_AGGR_DEPTH] = aggressive_ticks
        self._fparams[_P_VOL] = volatility
        self._fparams[_P_MEAN_GAP_NS] = 1e9 / rate
        self._fparams[_P_MEAN_LOTS] = mean_lots
        self._fparams[_P_AGGR_LOTS] = aggressive_lots
        # Seed mixing: consecutive seeds give unrelated streams because every draw goes through
        # the splitmix64 finaliser.
        self._rng = np.array([seed], dtype=np.uint64)
        self._mid = np.array([float(mid)], dtype=np.float64)
        self._state = np.array([first_order_id, start_time_ns, 0], dtype=np.int64)
        # The live pool: the newest passive orders (id, side, price, qty) in arrival order; twice
        # the window so that forgetting the old half happens once per `cancel_window` adds.
        self._live = tuple(np.zeros(2 * self.cancel_window, dtype=np.int64) for _ in range(4))

    @property
    def mid(self) -> float:
        """Current mid (ticks) of the random walk."""
        return float(self._mid[0])

    @property
    def clock_ns(self) -> int:
        """Timestamp of the last generated arrival (or the start time)."""
        return int(self._state[_S_CLOCK_NS])

    @property
    def next_order_id(self) -> int:
        return int(self._state[_S_NEXT_ID])

    @property
    def live_count(self) -> int:
        """Passive orders submitted and not cancelled by this generator (fills are not known to it)."""
        return int(self._state[_S_LIVE])

    def generate(self, n: int, *, mix: FlowMix | None = None) -> FlowChunk:
        """The next ``n`` commands of the stream and their arrival times.

        ``mix`` overrides the generator's mix for this chunk only (e.g. ``FlowMix.passive_only()``
        to build a book first); the stream stays deterministic for a given sequence of calls.
        """
        n = _check_int("n", n, minimum=0)
        if mix is not None and not isinstance(mix, FlowMix):
            raise TypeError(f"mix must be a FlowMix, got {type(mix).__name__}")
        cum_mix = (mix or self.mix).cumulative()
        commands = np.zeros(n, dtype=_command_dtype())
        timestamps = np.empty(n, dtype=np.int64)
        _generate_flow_into(
            n, cum_mix, self._fparams, np.int64(self.lot_size), np.int64(self.n_owners), np.int64(self.cancel_window),
            self._rng, self._mid, self._state, *self._live,
            commands["op"], commands["order_id"], commands["side"], commands["price"], commands["qty"],
            commands["ord_type"], commands["tif"], commands["owner"], timestamps,
        )
        return FlowChunk(commands, timestamps)


def generate_order_flow(n: int, seed: int, **params) -> np.ndarray:
    """``n`` commands (COMMAND_DTYPE) of seeded synthetic flow; ``params`` as for
    :class:`OrderFlowGenerator` (``mid``, ``mix``, ``lot_size``, ...). Use the class to get the
    timestamps or to continue the stream."""
    return OrderFlowGenerator(seed, **params).generate(n).commands


def _check_int(name: str, value, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


# --------------------------------------------------------------------------------------------
# Analytics over fills
# --------------------------------------------------------------------------------------------

BAR_DTYPE = np.dtype(
    [
        ("start", "i8"),    # bar start time (ns) for time bars; index of the first fill for count bars
        ("open", "i8"),
        ("high", "i8"),
        ("low", "i8"),
        ("close", "i8"),
        ("volume", "i8"),
        ("trades", "i8"),   # number of fills in the bar
        ("vwap", "f8"),
    ]
)


def _fill_columns(fills, *names):
    if not isinstance(fills, np.ndarray) or fills.dtype.names is None:
        raise TypeError(f"fills must be a structured numpy array (FILL_DTYPE), got {type(fills).__name__}")
    if fills.ndim != 1:
        raise ValueError(f"fills must be one-dimensional, got shape {fills.shape}")
    missing = [n for n in names if n not in fills.dtype.names]
    if missing:
        raise TypeError(f"fills lacks field(s) {', '.join(missing)}; expected FILL_DTYPE")
    return [np.ascontiguousarray(fills[n], dtype=np.int64) for n in names]


@njit(cache=True)
def _vwap(price, qty):
    notional = 0.0
    volume = 0
    for i in range(price.shape[0]):
        notional += np.float64(price[i]) * np.float64(qty[i])
        volume += qty[i]
    if volume == 0:
        return np.nan
    return notional / np.float64(volume)


def vwap(fills: np.ndarray) -> float:
    """Volume-weighted average price (ticks, float) of a FILL_DTYPE array; NaN when it is empty."""
    price, qty = _fill_columns(fills, "price", "qty")
    return float(_vwap(price, qty))


@njit(cache=True)
def _bar_keys_by_time(times, bar_ns, origin_ns):
    keys = np.empty(times.shape[0], dtype=np.int64)
    for i in range(times.shape[0]):
        keys[i] = origin_ns + ((times[i] - origin_ns) // bar_ns) * bar_ns
    return keys


@njit(cache=True)
def _bar_keys_by_count(n, fills_per_bar):
    keys = np.empty(n, dtype=np.int64)
    for i in range(n):
        keys[i] = (i // fills_per_bar) * fills_per_bar
    return keys


@njit(cache=True)
def _ohlcv_from_keys(keys, price, qty, start, open_, high, low, close, volume, trades, vwap_out):
    """Aggregate consecutive runs of equal keys into bars; returns the number of bars written."""
    n_bars = 0
    notional = 0.0
    for i in range(keys.shape[0]):
        if i == 0 or keys[i] != keys[i - 1]:
            if n_bars > 0:
                vwap_out[n_bars - 1] = notional / np.float64(volume[n_bars - 1]) if volume[n_bars - 1] > 0 else np.nan
            start[n_bars] = keys[i]
            open_[n_bars] = price[i]
            high[n_bars] = price[i]
            low[n_bars] = price[i]
            volume[n_bars] = 0
            trades[n_bars] = 0
            notional = 0.0
            n_bars += 1
        b = n_bars - 1
        if price[i] > high[b]:
            high[b] = price[i]
        if price[i] < low[b]:
            low[b] = price[i]
        close[b] = price[i]
        volume[b] += qty[i]
        trades[b] += 1
        notional += np.float64(price[i]) * np.float64(qty[i])
    if n_bars > 0:
        vwap_out[n_bars - 1] = notional / np.float64(volume[n_bars - 1]) if volume[n_bars - 1] > 0 else np.nan
    return n_bars


def ohlcv_bars(
    fills: np.ndarray,
    *,
    timestamps: np.ndarray | None = None,
    bar_ns: int | None = None,
    fills_per_bar: int | None = None,
    origin_ns: int = 0,
) -> np.ndarray:
    """Open/high/low/close/volume bars (BAR_DTYPE) from a FILL_DTYPE array in execution order.

    Two bar clocks, pick exactly one:

    * **time bars**: ``timestamps`` (the arrival time of each command, ns, indexed by the fills'
      ``cmd_index``, e.g. ``FlowChunk.timestamps``) and ``bar_ns``. A fill's time is the time of
      the command that caused it; bars start at ``origin_ns + k * bar_ns``. Only buckets that hold
      a fill produce a bar (no empty bars); ``start`` is the bucket's start time.
    * **count bars**, when there is no time: ``fills_per_bar``; every bar holds that many fills
      (the last one may hold fewer) and ``start`` is the index of its first fill.
    """
    price, qty, cmd_index = _fill_columns(fills, "price", "qty", "cmd_index")
    if timestamps is not None:
        if fills_per_bar is not None:
            raise ValueError("give either timestamps with bar_ns or fills_per_bar, not both")
        if bar_ns is None:
            raise ValueError("time bars need bar_ns (bar length in ns) with timestamps")
        bar_ns = _check_int("bar_ns", bar_ns, minimum=1)
        origin_ns = _check_int("origin_ns", origin_ns, minimum=np.iinfo(np.int64).min)
        timestamps = np.asarray(timestamps)
        if timestamps.ndim != 1 or not np.issubdtype(timestamps.dtype, np.integer):
            raise TypeError("timestamps must be a one-dimensional integer array (ns per command)")
        if cmd_index.size and (cmd_index.min() < 0 or cmd_index.max() >= timestamps.shape[0]):
            raise ValueError(
                f"fills reference cmd_index outside the {timestamps.shape[0]} timestamps given"
            )
        times = timestamps.astype(np.int64, copy=False)[cmd_index]
        if times.size > 1 and np.any(np.diff(times) < 0):
            raise ValueError("fill times must not decrease (fills in execution order, timestamps non-decreasing)")
        keys = _bar_keys_by_time(times, np.int64(bar_ns), np.int64(origin_ns))
    elif fills_per_bar is not None:
        if bar_ns is not None:
            raise ValueError("bar_ns needs timestamps; for count bars give only fills_per_bar")
        fills_per_bar = _check_int("fills_per_bar", fills_per_bar, minimum=1)
        keys = _bar_keys_by_count(price.shape[0], np.int64(fills_per_bar))
    else:
        raise ValueError("give timestamps with bar_ns (time bars) or fills_per_bar (count bars)")
    out = np.zeros(price.shape[0], dtype=BAR_DTYPE)
    n_bars = _ohlcv_from_keys(
        keys, price, qty, out["start"], out["open"], out["high"], out["low"], out["close"],
        out["volume"], out["trades"], out["vwap"],
    )
    return out[:n_bars].copy()


@njit(cache=True)
def _owner_volume_dense(maker, taker, qty, owner_of_order, volume):
    """Add each fill's qty to its maker's and its taker's owner; returns the first fill index
    whose order id has no owner, or -1."""
    n_ids = owner_of_order.shape[0]
    for i in range(qty.shape[0]):
        m = maker[i]
        t = taker[i]
        if m < 0 or m >= n_ids or t < 0 or t >= n_ids:
            return i
        om = owner_of_order[m]
        ot = owner_of_order[t]
        if om < 0 or ot < 0:
            return i
        volume[om] += qty[i]
        volume[ot] += qty[i]
    return -1


@njit(cache=True)
def _owner_volume_sorted(maker, taker, qty, sorted_ids, sorted_owners, volume):
    """As _owner_volume_dense with the id -> owner map given as sorted ids and their owners."""
    n_ids = sorted_ids.shape[0]
    for i in range(qty.shape[0]):
        jm = np.searchsorted(sorted_ids, maker[i])
        jt = np.searchsorted(sorted_ids, taker[i])
        if jm >= n_ids or sorted_ids[jm] != maker[i] or jt >= n_ids or sorted_ids[jt] != taker[i]:
            return i
        volume[sorted_owners[jm]] += qty[i]
        volume[sorted_owners[jt]] += qty[i]
    return -1


def traded_volume_by_owner(fills: np.ndarray, owners: np.ndarray) -> np.ndarray:
    """Quantity traded per owner: ``result[o]`` sums the fills in which an order of owner ``o``
    was the maker or the taker (a self-trade counts for both sides).

    ``owners`` maps order ids to owners, either as

    * a one-dimensional integer array indexed by order id (``owners[order_id] = owner``; -1 marks
      an id with no owner), or
    * the COMMAND_DTYPE array that produced the fills: each submit command (op 1) gives its
      ``order_id`` the command's ``owner`` (the first submit wins, as the book rejects reused ids).

    Returns an int64 array of length ``max owner + 1``. A fill whose maker or taker id has no owner
    raises ValueError naming the id.
    """
    maker, taker, qty = _fill_columns(fills, "maker_id", "taker_id", "qty")
    if not isinstance(owners, np.ndarray):
        raise TypeError(f"owners must be a numpy array, got {type(owners).__name__}")
    if owners.dtype.names is not None:
        if "order_id" not in owners.dtype.names or "owner" not in owners.dtype.names or "op" not in owners.dtype.names:
            raise TypeError("owners as a structured array must be COMMAND_DTYPE (op, order_id, owner)")
        submits = owners[owners["op"] == _OP_SUBMIT]
        ids, first = np.unique(submits["order_id"].astype(np.int64), return_index=True)
        owner_of = submits["owner"].astype(np.int64)[first]
        if owner_of.size and owner_of.min() < 0:
            raise ValueError("owners must be >= 0")
        volume = np.zeros(int(owner_of.max()) + 1 if owner_of.size else 0, dtype=np.int64)
        bad = _owner_volume_sorted(maker, taker, qty, ids, owner_of, volume)
    else:
        if owners.ndim != 1 or not np.issubdtype(owners.dtype, np.integer):
            raise TypeError("owners must be a 1-D integer array indexed by order id, or COMMAND_DTYPE")
        owner_of = owners.astype(np.int64, copy=False)
        volume = np.zeros(int(owner_of.max()) + 1 if owner_of.size else 0, dtype=np.int64)
        bad = _owner_volume_dense(maker, taker, qty, np.ascontiguousarray(owner_of), volume)
    if bad >= 0:
        raise ValueError(
            f"fill {bad} (maker {int(maker[bad])}, taker {int(taker[bad])}) references an order id with no owner"
        )
    return volume
