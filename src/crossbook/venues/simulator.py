"""In-process venue simulator: an exchange made of crossbook.core OrderBooks behind the Venue interface.

:class:`InProcessVenue` keeps one :class:`crossbook.core.OrderBook` per listed instrument and
answers the OMS like an exchange: acks, fills at its own (maker) prices, cancels with reasons,
replaces, rejects. Background liquidity (:class:`BackgroundFlow`) comes from the seeded Numba flow
generator of :mod:`crossbook.core.kernels`, applied in chunks with ``OrderBook.process()`` by a
periodic asyncio task, so that the books are two-sided and move. Fault knobs: added latency on
every event, a seeded reject ratio, and ``set_up(False)`` to simulate a disconnect.

Every answer is a :class:`crossbook.routing.venue.VenueEvent` queued in one FIFO (the shared
:class:`crossbook.routing.outbox.EventOutbox`) and handed to the sink from a loop callback
(``call_soon``, or ``call_later`` when a latency is set), never from inside the call that caused it.
docs/venues.md describes the behaviour in full.
"""
from __future__ import annotations

import asyncio
import logging
import math
import random
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from crossbook.core import (
    COMMAND_DTYPE,
    OP_CANCEL,
    OP_SUBMIT,
    REASON_TEXT,
    OrderBook,
    Reason,
    Side,
    Status,
    TimeInForce,
)
from crossbook.core.kernels import FlowMix, OrderFlowGenerator
from crossbook.model.instruments import Instrument, InstrumentMaster
from crossbook.routing.outbox import EventOutbox
from crossbook.routing.venue import VenueEvent, VenueEventKind, VenueOrder, VenueReason
from crossbook.model.ids import base36

__all__ = ["BACKGROUND_ID_BASE", "BACKGROUND_OWNER", "BackgroundFlow", "InProcessVenue"]

log = logging.getLogger(__name__)

#: Book order ids at or above this belong to background liquidity; OMS orders count up from 1.
BACKGROUND_ID_BASE = 1 << 48
_LADDER_IDS = 1 << 40        # the start-of-day ladder takes [BASE, BASE + 2**40), the generator the rest
#: Owner of every background order: far from any account index, so the OMS's self-trade
#: prevention never mistakes background liquidity for its own orders.
BACKGROUND_OWNER = -(1 << 62)

_NEW, _REJECTED, _TRADE, _CANCELED = (
    VenueEventKind.NEW, VenueEventKind.REJECTED, VenueEventKind.TRADE, VenueEventKind.CANCELED)
_RESTING, _PARTIAL, _FILLED, _CANCELLED, _REJECTED_ST = (
    int(Status.RESTING), int(Status.PARTIALLY_FILLED), int(Status.FILLED), int(Status.CANCELLED), int(Status.REJECTED))
# Cancels that end a pending stop without triggering it.
_NOT_A_TRIGGER = frozenset({int(Reason.USER_CANCEL), int(Reason.END_OF_DAY), int(Reason.EXPIRED)})
_STOP_PENDING = int(Status.STOP_PENDING)
_GTD = int(TimeInForce.GTD)
_REASONS = {int(r): r for r in Reason}
_REASON_TEXT_OF_CODE = {code: REASON_TEXT[r] for code, r in _REASONS.items()}
# The hot path builds VenueEvents positionally; this is the field order it relies on.
if tuple(VenueEvent.__dataclass_fields__)[:14] != (
        "kind", "venue", "venue_cl_ord_id", "venue_order_id", "last_qty", "last_px", "leaves_qty", "cum_qty",
        "reason", "reason_code", "exec_id", "ts", "orig_venue_cl_ord_id", "ord_status"):
    raise ImportError(f"crossbook.routing.venue.VenueEvent fields changed: {tuple(VenueEvent.__dataclass_fields__)}")


@dataclass(frozen=True)
class BackgroundFlow:
    """Background liquidity of a venue: one seeded flow generator per listed instrument.

    ``rate`` is commands per second per instrument (adds, cancels, aggressive and market orders in
    the proportions of ``mix``). Order sizes are multiples of ``size_lots`` instrument lots. Prices
    walk around the instrument's reference price (``volatility`` ticks per sqrt(second)). At start
    (and after end of day) each book gets a ladder of ``ladder_levels`` quotes per side one tick
    apart around the mid, so it is two-sided at once. When more than ``max_resting`` background
    orders rest in a book, the ones farthest from the flow's mid are cancelled down to three
    quarters of it. At most ``max_per_tick`` commands are applied per book per timer tick.
    """

    enabled: bool = True
    rate: float = 20.0
    seed: int = 0
    size_lots: int = 10
    ladder_levels: int = 5
    max_resting: int = 400
    max_per_tick: int = 500
    half_spread: float = 0.5
    depth_ticks: float = 4.0
    aggressive_ticks: float = 3.0
    volatility: float = 2.0
    mean_lots: float = 3.0
    aggressive_lots: float = 8.0
    mix: FlowMix = field(default_factory=FlowMix)

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise TypeError(f"background.enabled must be true or false, got {self.enabled!r}")
        for name in ("seed", "size_lots", "ladder_levels", "max_resting", "max_per_tick"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"background.{name} must be an integer, got {v!r}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"background.seed must be in [0, 2**32), got {self.seed}")
        for name, low in (("size_lots", 1), ("ladder_levels", 0), ("max_resting", 1), ("max_per_tick", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"background.{name} must be >= {low}, got {getattr(self, name)}")
        for name in ("rate", "half_spread", "depth_ticks", "aggressive_ticks", "volatility", "mean_lots",
                     "aggressive_lots"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"background.{name} must be a finite number, got {v!r}")
        if self.rate <= 0:
            raise ValueError(f"background.rate must be > 0 (orders per second), got {self.rate}")
        for name in ("half_spread", "depth_ticks", "aggressive_ticks", "volatility"):
            if getattr(self, name) < 0:
                raise ValueError(f"background.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("mean_lots", "aggressive_lots"):
            if getattr(self, name) < 1:
                raise ValueError(f"background.{name} must be >= 1, got {getattr(self, name)}")
        if not isinstance(self.mix, FlowMix):
            raise TypeError(f"background.mix must be a FlowMix, got {type(self.mix).__name__}")

    _KEYS = ("enabled", "rate", "seed", "size_lots", "ladder_levels", "max_resting", "max_per_tick", "half_spread",
             "depth_ticks", "aggressive_ticks", "volatility", "mean_lots", "aggressive_lots", "mix")

    @classmethod
    def from_config(cls, table: object, *, where: str = "background") -> BackgroundFlow:
        """From a TOML table (keys as the fields; ``mix`` a table of passive/cancel/aggressive/
        market/replace weights). Errors are ValueError naming the key, e.g. ``venues[0].background.rate``."""
        if table is None:
            return cls()
        if not isinstance(table, dict):
            raise ValueError(f"{where}: must be a table, got {type(table).__name__}")
        for k in table:
            if k not in cls._KEYS:
                raise ValueError(f"{where}.{k}: unknown key (known: {', '.join(cls._KEYS)})")
        values = dict(table)
        if "mix" in values:
            mix = values["mix"]
            if not isinstance(mix, dict):
                raise ValueError(f"{where}.mix: must be a table of weights, got {type(mix).__name__}")
            try:
                values["mix"] = FlowMix(**mix)
            except TypeError as e:
                raise ValueError(f"{where}.mix: {e}") from None
            except ValueError as e:
                raise ValueError(f"{where}.mix: {e}") from None
        try:
            return cls(**values)
        except (TypeError, ValueError) as e:
            text = str(e)
            if text.startswith("background."):
                key, _, rest = text.removeprefix("background.").partition(" ")
                raise ValueError(f"{where}.{key}: {rest}") from None
            raise ValueError(f"{where}: {text}") from None


class _Order:
    """The venue's record of one OMS order."""

    __slots__ = ("oid", "cl_ord_id", "cl_ids", "venue_order_id", "book", "qty", "cum", "leaves", "status", "done",
                 "owner", "gtd")

    def __init__(self, oid, cl_ord_id, venue_order_id, book, qty, owner, gtd):
        self.oid = oid
        self.cl_ord_id = cl_ord_id          # latest id of the FIX chain
        # Every id of the chain (all resolve to this order) once it has two or more; None while
        # cl_ord_id is the only one (most orders): no list per order for the collector to meet.
        self.cl_ids: list[str] | None = None
        self.venue_order_id = venue_order_id
        self.book = book
        self.qty = qty
        self.cum = 0
        self.leaves = qty
        self.status = _RESTING
        self.done = False
        self.owner = owner
        self.gtd = gtd


class _Book:
    """One instrument's book with the venue's bookkeeping around it."""

    __slots__ = ("instrument", "book", "oms_live", "stops", "gen", "bg_due", "ladder_next", "unit", "bg_commands",
                 "changes")

    def __init__(self, instrument: Instrument):
        self.instrument = instrument
        self.book = OrderBook()
        self.oms_live: dict[int, _Order] = {}   # live OMS orders (resting or pending stop)
        self.stops: set[int] = set()            # OMS stop orders not triggered yet
        self.gen: OrderFlowGenerator | None = None
        self.bg_due = 0.0                       # background commands owed (fractional)
        self.ladder_next = BACKGROUND_ID_BASE
        self.unit = instrument.lot_size
        self.bg_commands = 0                    # background commands applied so far
        self.changes = 0                        # book_version(): bumped by every call that may change it


class InProcessVenue:
    """A venue simulator in the OMS's process (implements crossbook.routing.venue.Venue).

    ``instruments``: the master; the venue lists those whose ``venues`` name it. ``clock``: an
    object with ``now_ns()`` (event timestamps, GTD expiry). ``loop``: the asyncio loop events are
    delivered on (default: the running loop when first needed). ``background``: background
    liquidity, or None for empty books. ``latency_ns``: added delay of every event. ``reject_ratio``:
    the share of new orders rejected at random (``random.Random(seed)``, so reproducible).
    ``tick_s``: period of the housekeeping task (background flow, GTD expiry).
    ``max_done_orders``: finished orders remembered for status and late cancels (oldest forgotten).
    """

    def __init__(self, name: str, instruments: InstrumentMaster, clock, loop: asyncio.AbstractEventLoop | None = None,
                 *, background: BackgroundFlow | None = None, latency_ns: int = 0, reject_ratio: float = 0.0,
                 seed: int = 0, tick_s: float = 0.05, max_done_orders: int = 1_000_000):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"venue name must be a non-empty string, got {name!r}")
        if not isinstance(instruments, InstrumentMaster):
            raise TypeError(f"instruments must be an InstrumentMaster, got {type(instruments).__name__}")
        if not callable(getattr(clock, "now_ns", None)):
            raise TypeError("clock must have a now_ns() method returning UTC epoch nanoseconds")
        if background is not None and not isinstance(background, BackgroundFlow):
            raise TypeError(f"background must be a BackgroundFlow or None, got {type(background).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        if isinstance(tick_s, bool) or not isinstance(tick_s, (int, float)) or not 0 < tick_s <= 60:
            raise ValueError(f"tick_s must be a number of seconds in (0, 60], got {tick_s!r}")
        if isinstance(max_done_orders, bool) or not isinstance(max_done_orders, int) or max_done_orders < 0:
            raise ValueError(f"max_done_orders must be an int >= 0, got {max_done_orders!r}")
        self.name = name
        self._master = instruments
        self._clock = clock
        self._loop = loop
        self._tick_s = float(tick_s)
        self._max_done = max_done_orders
        self.latency_ns = latency_ns
        self.reject_ratio = reject_ratio
        self._rng = random.Random(seed)
        self._books: dict[str, _Book] = {inst.key: _Book(inst) for inst in instruments.on_venue(name)}
        self._background = background
        self._bg_on = background is not None and background.enabled
        self._seeded = False
        if background is not None:
            for bk in self._books.values():
                self._make_generator(bk, background)

        # Ids: unique per venue and across restarts of the process (the prefix carries the start time),
        # because the OMS keeps exec ids to recognise a TRADE it has already applied.
        self._prefix = f"{name}-{base36(int(clock.now_ns()) // 1000)}-"
        self._next_oid = 1
        self._next_exec = 1
        self._orders: dict[int, _Order] = {}
        self._by_cl: dict[str, _Order] = {}
        self._done: deque[_Order] = deque()
        self._gtd_live = 0

        self._outbox = EventOutbox(name, label="venue", loop=loop)
        self._held: list[VenueEvent] = []
        self._up = True
        self._started = False
        self._task: asyncio.Task | None = None
        self._book_listeners: list[Callable[[frozenset[str]], None]] = []
        self._dirty: set[str] = set()
        self._md_handle: asyncio.Handle | None = None

    # ============================================================================================
    # Knobs
    # ============================================================================================

    @property
    def latency_ns(self) -> int:
        """Added delay (ns) between the venue producing an event and the sink receiving it."""
        return self._latency_ns

    @latency_ns.setter
    def latency_ns(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"latency_ns must be an int >= 0, got {value!r}")
        self._latency_ns = value
        self._latency_s = value / 1e9

    @property
    def reject_ratio(self) -> float:
        """Share of new orders rejected at random (seeded), 0.0 to 1.0."""
        return self._reject_ratio

    @reject_ratio.setter
    def reject_ratio(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"reject_ratio must be a number from 0 to 1, got {value!r}")
        self._reject_ratio = float(value)

    @property
    def background_enabled(self) -> bool:
        return self._bg_on

    def set_background(self, enabled: bool) -> None:
        """Switch background flow on or off at run time (needs a BackgroundFlow at construction).
        Switched on for the first time in a started venue, it seeds the ladders as start() does."""
        if enabled and self._background is None:
            raise ValueError(f"venue {self.name} has no background flow configured")
        self._bg_on = bool(enabled)
        if self._started:
            self._seed_once()

    def _seed_once(self) -> None:
        if self._bg_on and not self._seeded:
            self._seeded = True
            for bk in self._books.values():
                self._seed_ladder(bk, bk.instrument.reference_ticks)

    def set_up(self, up: bool, *, drop_held_events: bool = False) -> None:
        """Simulate a disconnect (``False``) and a reconnect (``True``).

        While down, ``is_up`` is False; new orders, cancels and replaces are answered at once with
        REJECTED / CANCEL_REJECTED / REPLACE_REJECTED "venue down" (what a connector does when its
        session is gone). The books keep trading: events about existing orders (fills from
        background flow, expiries, status answers) are held and delivered in order on reconnect,
        or discarded when ``drop_held_events`` is True, which leaves the OMS to find out with
        ``order_status`` (issue 5 reconciliation).
        """
        up = bool(up)
        if up == self._up:
            return
        self._up = up
        if up:
            held, self._held = self._held, []
            if not drop_held_events and held:
                self._push(held)

    # ============================================================================================
    # Venue protocol
    # ============================================================================================

    def lists(self, instrument: Instrument) -> bool:
        return isinstance(instrument, Instrument) and instrument.key in self._books

    def set_event_sink(self, sink: Callable[[VenueEvent], None]) -> None:
        self._outbox.set_sink(sink)

    @property
    def is_up(self) -> bool:
        return self._started and self._up

    async def start(self) -> None:
        """Open for trading: seed the background ladders (first start) and start housekeeping."""
        if self._started:
            return
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = self._outbox.loop = loop
        self._started = True
        self._seed_once()
        self._task = self._loop.create_task(self._housekeeping(), name=f"venue {self.name} housekeeping")

    async def stop(self) -> None:
        """Close: stop housekeeping; resting orders stay in the books, events already queued are
        still delivered, new requests are rejected "venue down"."""
        self._started = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    def new_order(self, order: VenueOrder) -> None:
        if not isinstance(order, VenueOrder):
            raise TypeError(f"new_order takes a VenueOrder, got {type(order).__name__}")
        cl = order.venue_cl_ord_id
        if not isinstance(cl, str) or not cl:
            raise ValueError(f"venue_cl_ord_id must be a non-empty string, got {cl!r}")
        now = self._clock.now_ns()
        if not (self._started and self._up):  # is_up, inlined
            return self._push([self._reject_event(cl, VenueReason.VENUE_DOWN, self._down_text(), now)])
        bk = self._books.get(order.instrument.key) if isinstance(order.instrument, Instrument) else None
        if bk is None:
            key = getattr(order.instrument, "key", order.instrument)
            text = f"{key} is not listed on {self.name}"
            return self._push([self._reject_event(cl, VenueReason.NOT_LISTED, text, now)])
        if cl in self._by_cl:
            return self._push([self._reject_event(cl, Reason.DUPLICATE_ID, f"duplicate venue_cl_ord_id {cl}", now)])
        if self._reject_ratio and self._rng.random() < self._reject_ratio:
            return self._push([self._reject_event(cl, VenueReason.SIMULATED_REJECT,
                                                  f"simulated reject (reject ratio {self._reject_ratio:g})", now)])
        qty, lot = order.qty, bk.unit
        if isinstance(qty, int) and qty > 0 and qty % lot:
            return self._push([self._reject_event(
                cl, VenueReason.INVALID_LOT,
                f"quantity {qty} is not a multiple of the lot size {lot} for {bk.instrument.key}", now)])
        oid = self._next_oid
        r = bk.book.submit(oid, order.side, order.price, qty, order.ord_type, order.tif, order.display_qty,
                           order.stop_price, order.owner, order.stp, order.post_only, order.expire_time)
        bk.changes += 1
        self._next_oid = oid + 1
        status = int(r.status)
        if status == _REJECTED_ST:
            return self._push([self._reject_event(cl, int(r.reason_code), r.reason, now)])
        venue_order_id = f"{self._prefix}{oid}"
        o = _Order(oid, cl, venue_order_id, bk, qty, order.owner, order.tif == _GTD)
        self._orders[oid] = o
        self._by_cl[cl] = o
        bk.oms_live[oid] = o
        if o.gtd:
            self._gtd_live += 1
        # Positional (VenueEvent's field order, checked at import): kind, venue, ids, last qty/px,
        # leaves_qty, cum_qty, reason, reason_code, exec_id, ts, orig_venue_cl_ord_id, ord_status.
        events = [VenueEvent(_NEW, self.name, cl, venue_order_id, 0, 0, qty, 0, "", 0, "", now, "", _RESTING)]
        if status == _STOP_PENDING:
            bk.stops.add(oid)
        fills, cancels = r.fills, r.cancels
        if fills or cancels or bk.stops:  # a resting order that touched nothing: nothing to apply
            self._apply(bk, fills, cancels, now, events)
        self._push(events)
        if self._book_listeners:
            self._touched(bk)

    def restore_order(self, order: VenueOrder, cum_qty: int = 0) -> None:
        """Re-enter an order the OMS still holds open after its process restarted (an in-process
        venue's books start empty). ``order.qty`` is the order's total and ``cum_qty`` what it had
        filled; the remainder rests with the time priority of now and may trade at once.

        Answered with a STATUS event (the order's new ``venue_order_id``, ``cum_qty``,
        ``leaves_qty``), then any trades, whose ``cum_qty`` continue from ``cum_qty``. When the order
        cannot be restored (venue down, not listed, refused by the book) the answer is CANCELED
        with the reason, since the client already holds it as live. No reject-ratio draw. A
        ``venue_cl_ord_id`` the venue already knows, or ``cum_qty`` outside [0, qty), is a caller
        bug: ValueError.
        """
        if not isinstance(order, VenueOrder):
            raise TypeError(f"restore_order takes a VenueOrder, got {type(order).__name__}")
        cl, qty = order.venue_cl_ord_id, order.qty
        if not isinstance(cl, str) or not cl:
            raise ValueError(f"venue_cl_ord_id must be a non-empty string, got {cl!r}")
        if cl in self._by_cl:
            raise ValueError(f"venue_cl_ord_id {cl} is already known to {self.name}: nothing to restore")
        if (isinstance(cum_qty, bool) or not isinstance(cum_qty, int) or not isinstance(qty, int)
                or not 0 <= cum_qty < qty):
            raise ValueError(f"cum_qty must be an int in [0, qty={qty!r}), got {cum_qty!r}")
        now = self._clock.now_ns()

        def gone(code, text):
            self._push([VenueEvent(_CANCELED, self.name, cl, "", cum_qty=cum_qty, reason=f"not restored: {text}",
                                   reason_code=int(code), ts=now, ord_status=_CANCELLED)])

        if not self.is_up:
            return gone(VenueReason.VENUE_DOWN, self._down_text())
        bk = self._books.get(order.instrument.key) if isinstance(order.instrument, Instrument) else None
        if bk is None:
            key = getattr(order.instrument, "key", order.instrument)
            return gone(VenueReason.NOT_LISTED, f"{key} is not listed on {self.name}")
        leaves = qty - cum_qty
        display = order.display_qty if order.display_qty < leaves else 0  # an iceberg's last slice shows in full
        oid = self._next_oid
        r = bk.book.submit(oid, order.side, order.price, leaves, order.ord_type, order.tif, display,
                           order.stop_price, order.owner, order.stp, order.post_only, order.expire_time)
        bk.changes += 1
        self._next_oid = oid + 1
        status = int(r.status)
        if status == _REJECTED_ST:
            return gone(int(r.reason_code), r.reason)
        o = _Order(oid, cl, f"{self._prefix}{oid}", bk, qty, order.owner, order.tif == TimeInForce.GTD)
        o.cum, o.leaves = cum_qty, leaves
        o.status = _PARTIAL if cum_qty else _RESTING
        self._orders[oid] = o
        self._by_cl[cl] = o
        bk.oms_live[oid] = o
        if o.gtd:
            self._gtd_live += 1
        if status == int(Status.STOP_PENDING):
            bk.stops.add(oid)
        events = [VenueEvent(VenueEventKind.STATUS, self.name, cl, o.venue_order_id, leaves_qty=leaves, cum_qty=cum_qty,
                             ts=now, ord_status=o.status)]
        self._apply(bk, r.fills, r.cancels, now, events)
        self._push(events)
        if self._book_listeners:
            self._touched(bk)

    def cancel_order(self, venue_cl_ord_id: str, cancel_cl_ord_id: str) -> None:
        now = self._clock.now_ns()
        kind = VenueEventKind.CANCEL_REJECTED
        o = self._by_cl.get(venue_cl_ord_id)
        if not self.is_up:
            return self._push([self._request_reject(kind, cancel_cl_ord_id, venue_cl_ord_id, o, VenueReason.VENUE_DOWN,
                                                    self._down_text(), now)])
        if not isinstance(cancel_cl_ord_id, str) or not cancel_cl_ord_id:
            raise ValueError(f"cancel_cl_ord_id must be a non-empty string, got {cancel_cl_ord_id!r}")
        if o is None:
            return self._push([self._request_reject(kind, cancel_cl_ord_id, venue_cl_ord_id, None, Reason.UNKNOWN_ORDER,
                                                    f"unknown order {venue_cl_ord_id}", now)])
        if cancel_cl_ord_id in self._by_cl:
            return self._push([self._request_reject(kind, cancel_cl_ord_id, venue_cl_ord_id, o, Reason.DUPLICATE_ID,
                                                    f"duplicate venue_cl_ord_id {cancel_cl_ord_id}", now)])
        if o.done:
            return self._push([self._request_reject(kind, cancel_cl_ord_id, venue_cl_ord_id, o, Reason.TOO_LATE,
                                                    "too late to cancel: order already "
                                                    + ("filled" if o.status == _FILLED else "done"), now)])
        bk = o.book
        bk.book.cancel(o.oid)
        bk.changes += 1
        bk.stops.discard(o.oid)
        if self._book_listeners:
            self._touched(bk)
        orig = o.cl_ord_id
        self._chain(o, cancel_cl_ord_id)
        self._finish(o, _CANCELLED)
        self._push([VenueEvent(_CANCELED, self.name, cancel_cl_ord_id, o.venue_order_id, cum_qty=o.cum,
                               reason=REASON_TEXT[Reason.USER_CANCEL], reason_code=int(Reason.USER_CANCEL), ts=now,
                               orig_venue_cl_ord_id=orig, ord_status=_CANCELLED)])

    def replace_order(self, venue_cl_ord_id: str, new_venue_cl_ord_id: str, qty: int, price: int) -> None:
        now = self._clock.now_ns()
        kind = VenueEventKind.REPLACE_REJECTED
        new = new_venue_cl_ord_id
        o = self._by_cl.get(venue_cl_ord_id)
        if not self.is_up:
            return self._push([self._request_reject(kind, new, venue_cl_ord_id, o, VenueReason.VENUE_DOWN,
                                                    self._down_text(), now)])
        if not isinstance(new, str) or not new:
            raise ValueError(f"new_venue_cl_ord_id must be a non-empty string, got {new!r}")
        if o is None:
            return self._push([self._request_reject(kind, new, venue_cl_ord_id, None, Reason.UNKNOWN_ORDER,
                                                    f"unknown order {venue_cl_ord_id}", now)])
        if new in self._by_cl:
            return self._push([self._request_reject(kind, new, venue_cl_ord_id, o, Reason.DUPLICATE_ID,
                                                    f"duplicate venue_cl_ord_id {new}", now)])
        if o.done:
            return self._push([self._request_reject(kind, new, venue_cl_ord_id, o, Reason.TOO_LATE,
                                                    "too late to replace: order already "
                                                    + ("filled" if o.status == _FILLED else "done"), now)])
        bk = o.book
        if isinstance(qty, int) and qty > 0 and qty % bk.unit:
            return self._push([self._request_reject(
                kind, new, venue_cl_ord_id, o, VenueReason.INVALID_LOT,
                f"quantity {qty} is not a multiple of the lot size {bk.unit} for {bk.instrument.key}", now)])
        r = bk.book.replace(o.oid, qty, price)
        bk.changes += 1
        status = int(r.status)
        if status == _REJECTED_ST:
            return self._push([self._request_reject(kind, new, venue_cl_ord_id, o, int(r.reason_code), r.reason, now)])
        orig = o.cl_ord_id
        self._chain(o, new)
        o.qty = qty
        cancels = r.cancels
        if qty <= o.cum:
            # Replaced down to (or below) the filled quantity: the order is done as FILLED, the
            # REPLACED event says so (FIX: ExecType Replaced, OrdStatus Filled).
            o.qty = o.cum
            self._finish(o, _FILLED)
            cancels = [c for c in cancels if not (c.order_id == o.oid and c.reason == Reason.REPLACED_TO_FILLED)]
        else:
            o.leaves = qty - o.cum
        events = [VenueEvent(VenueEventKind.REPLACED, self.name, new, o.venue_order_id, leaves_qty=o.leaves,
                             cum_qty=o.cum, ts=now, orig_venue_cl_ord_id=orig, ord_status=o.status)]
        self._apply(bk, r.fills, cancels, now, events)
        self._push(events)
        if self._book_listeners:
            self._touched(bk)

    def order_status(self, venue_cl_ord_id: str) -> None:
        now = self._clock.now_ns()
        o = self._by_cl.get(venue_cl_ord_id)
        if o is None:
            ev = VenueEvent(VenueEventKind.STATUS, self.name, venue_cl_ord_id, "",
                            reason=f"unknown order {venue_cl_ord_id}",
                            reason_code=int(Reason.UNKNOWN_ORDER), ts=now, ord_status=_REJECTED_ST)
        else:
            ev = VenueEvent(VenueEventKind.STATUS, self.name, o.cl_ord_id, o.venue_order_id, leaves_qty=o.leaves,
                            cum_qty=o.cum, ts=now, ord_status=o.status,
                            orig_venue_cl_ord_id=venue_cl_ord_id if venue_cl_ord_id != o.cl_ord_id else "")
        self._emit([ev])

    def top_of_book(self, instrument: Instrument) -> tuple[int, int, int, int] | None:
        bk = self._books.get(instrument.key) if isinstance(instrument, Instrument) else None
        if bk is None:
            return None
        bid = bk.book.best_bid() or (0, 0)
        ask = bk.book.best_ask() or (0, 0)
        return (bid[0], bid[1], ask[0], ask[1])

    def depth(self, instrument: Instrument, levels: int = 10):
        bk = self._books.get(instrument.key) if isinstance(instrument, Instrument) else None
        if bk is None:
            return ([], [])
        return (bk.book.depth(Side.BUY, levels), bk.book.depth(Side.SELL, levels))

    def book_version(self, instrument: Instrument) -> int:
        """A counter of the instrument's book that changes whenever its depth, top of book or
        last price may have changed (orders, cancels, replaces, fills, expiry, end of day,
        background flow): equal values mean the book reads the same, so a reader (the router)
        may keep what it read. -1 for an instrument the venue does not list. The book that
        :meth:`order_book` exposes for inspection must not be changed directly (not counted)."""
        bk = self._books.get(instrument.key) if isinstance(instrument, Instrument) else None
        return -1 if bk is None else bk.changes

    def add_book_listener(self, listener: Callable[[frozenset[str]], None]) -> None:
        """Be told which books changed: ``listener(keys)`` is called from a loop callback, at most
        once per loop iteration, with the listing keys of the books touched since the last call
        (orders, cancels, fills, background flow). It is the hook for market data publishing (FIX
        W/X in ``crossbook venue``) and event-driven routing; read the books with top_of_book/depth."""
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {type(listener).__name__}")
        self._book_listeners.append(listener)

    def remove_book_listener(self, listener: Callable[[frozenset[str]], None]) -> None:
        self._book_listeners.remove(listener)

    # ============================================================================================
    # Beyond the protocol: sessions, inspection, background
    # ============================================================================================

    def end_of_day(self) -> int:
        """Cancel every DAY order (OMS and background) in every book; CANCELED events (reason
        END_OF_DAY) for the OMS's. With background flow on, each book then gets a fresh ladder
        around the flow's current mid (the next session opens two-sided). Returns the number of
        OMS orders cancelled."""
        now = self._clock.now_ns()
        n = 0
        events: list[VenueEvent] = []
        for bk in self._books.values():
            cancels = bk.book.end_of_day()
            bk.changes += 1
            if self._book_listeners:
                self._touched(bk)
            n += self._apply(bk, (), cancels, now, events)
            if self._bg_on and self._started and bk.gen is not None:
                self._seed_ladder(bk, max(1, round(bk.gen.mid)))
        self._emit(events)
        return n

    def expire(self, now: int) -> int:
        """Cancel every GTD order whose expire_time <= ``now`` (ns); CANCELED events (reason
        EXPIRED). The housekeeping task calls it on its own with the clock's time. Returns the
        number of OMS orders expired."""
        if isinstance(now, bool) or not isinstance(now, int):
            raise TypeError(f"now must be an int (UTC epoch ns), got {type(now).__name__}")
        ts = self._clock.now_ns()
        n = 0
        events: list[VenueEvent] = []
        for bk in self._books.values():
            cancels = bk.book.expire(now)
            bk.changes += 1
            if cancels:
                if self._book_listeners:
                    self._touched(bk)
                n += self._apply(bk, (), cancels, ts, events)
        self._emit(events)
        return n

    def cancel_all(self, owner: int | None = None) -> int:
        """Cancel every live OMS order (of ``owner`` when given), e.g. for a kill switch; CANCELED
        events with reason USER_CANCEL. Returns how many were cancelled."""
        now = self._clock.now_ns()
        events: list[VenueEvent] = []
        for bk in self._books.values():
            for o in [o for o in bk.oms_live.values() if owner is None or o.owner == owner]:
                bk.book.cancel(o.oid)
                bk.changes += 1
                bk.stops.discard(o.oid)
                if self._book_listeners:
                    self._touched(bk)
                self._finish(o, _CANCELLED)
                events.append(VenueEvent(_CANCELED, self.name, o.cl_ord_id, o.venue_order_id, cum_qty=o.cum,
                                         reason=REASON_TEXT[Reason.USER_CANCEL], reason_code=int(Reason.USER_CANCEL),
                                         ts=now, ord_status=_CANCELLED))
        self._emit(events)
        return len(events)

    def last_price(self, instrument: Instrument) -> int:
        """Price (ticks) of the last trade in the instrument's book, 0 before the first."""
        bk = self._books.get(instrument.key) if isinstance(instrument, Instrument) else None
        return 0 if bk is None else bk.book.last_price

    def order_book(self, instrument: Instrument) -> OrderBook:
        """The core book of a listed instrument (for inspection; do not submit to it directly)."""
        bk = self._books.get(instrument.key) if isinstance(instrument, Instrument) else None
        if bk is None:
            raise ValueError(f"{getattr(instrument, 'key', instrument)!r} is not listed on {self.name}")
        return bk.book

    def background_resting(self, instrument: Instrument) -> int:
        """Background orders live in the instrument's book."""
        bk = self._books[instrument.key]
        return len(bk.book) - len(bk.oms_live)

    def background_commands(self, instrument: Instrument) -> int:
        """Background flow commands applied to the instrument's book so far (ladders not counted)."""
        return self._books[instrument.key].bg_commands

    def background_step(self, instrument: Instrument, n: int) -> None:
        """Apply the next ``n`` background commands to one book now (what the timer does a chunk at
        a time); deterministic for a given seed and sequence of calls."""
        if self._background is None:
            raise ValueError(f"venue {self.name} has no background flow configured")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an int >= 0, got {n!r}")
        bk = self._books.get(instrument.key) if isinstance(instrument, Instrument) else None
        if bk is None:
            raise ValueError(f"{getattr(instrument, 'key', instrument)!r} is not listed on {self.name}")
        self._background_batch(bk, n)

    # ============================================================================================
    # Internals: applying book outcomes
    # ============================================================================================

    def _apply(self, bk: _Book, fills, cancels, now: int, events: list) -> int:
        """Turn the book's fills and ended orders into events for OMS orders; returns the number
        of OMS orders the cancels ended. Background ids are skipped."""
        orders = self._orders
        name = self.name
        if bk.stops:
            not_triggered = {c[0] for c in cancels if int(c[2]) in _NOT_A_TRIGGER}
            for oid in [s for s in bk.stops if s in not_triggered or not bk.book.is_pending_stop(s)]:
                bk.stops.discard(oid)
                if oid not in not_triggered:
                    o = orders[oid]
                    events.append(VenueEvent(VenueEventKind.STOP_TRIGGERED, name, o.cl_ord_id, o.venue_order_id,
                                             leaves_qty=o.leaves, cum_qty=o.cum, ts=now, ord_status=o.status))
        for maker, taker, price, qty in fills:
            for oid in (maker, taker):
                if oid >= BACKGROUND_ID_BASE:
                    continue
                o = orders.get(oid)
                if o is None:
                    continue
                o.cum += qty
                o.leaves -= qty
                if o.leaves <= 0:
                    self._finish(o, _FILLED)
                else:
                    o.status = _PARTIAL
                exec_id = f"{self._prefix}E{self._next_exec}"
                self._next_exec += 1
                events.append(VenueEvent(_TRADE, name, o.cl_ord_id, o.venue_order_id, qty, price, o.leaves, o.cum,
                                         "", 0, exec_id, now, "", o.status))
        ended = 0
        for oid, _qty, reason in cancels:
            if oid >= BACKGROUND_ID_BASE:
                continue
            o = orders.get(oid)
            if o is None or o.done:
                continue
            code = int(reason)
            self._finish(o, _CANCELLED)
            ended += 1
            # Positional, as the trades above (every IOC remainder comes this way).
            events.append(VenueEvent(_CANCELED, name, o.cl_ord_id, o.venue_order_id, 0, 0, 0, o.cum,
                                     _REASON_TEXT_OF_CODE[code], code, "", now, "", _CANCELLED))
        return ended

    def _finish(self, o: _Order, status: int) -> None:
        o.status = status
        o.leaves = 0
        o.done = True
        o.book.oms_live.pop(o.oid, None)
        if o.gtd:
            self._gtd_live -= 1
        done = self._done
        done.append(o)
        if len(done) > self._max_done:
            old = done.popleft()
            self._orders.pop(old.oid, None)
            for cl in old.cl_ids or (old.cl_ord_id,):
                if self._by_cl.get(cl) is old:
                    del self._by_cl[cl]

    def _chain(self, o: _Order, new_cl: str) -> None:
        if o.cl_ids is None:
            o.cl_ids = [o.cl_ord_id, new_cl]
        else:
            o.cl_ids.append(new_cl)
        o.cl_ord_id = new_cl
        self._by_cl[new_cl] = o

    def _reject_event(self, cl: str, code: int, text: str, now: int) -> VenueEvent:
        return VenueEvent(_REJECTED, self.name, cl, "", reason=text, reason_code=int(code), ts=now,
                          ord_status=_REJECTED_ST)

    def _request_reject(self, kind, cl: str, orig: str, o: _Order | None, code: int, text: str, now: int) -> VenueEvent:
        if o is None:
            return VenueEvent(kind, self.name, cl, "", reason=text, reason_code=int(code), ts=now,
                              orig_venue_cl_ord_id=orig, ord_status=_REJECTED_ST)
        return VenueEvent(kind, self.name, cl, o.venue_order_id, leaves_qty=o.leaves, cum_qty=o.cum, reason=text,
                          reason_code=int(code), ts=now, orig_venue_cl_ord_id=orig, ord_status=o.status)

    def _down_text(self) -> str:
        return f"venue down: {self.name} " + ("is disconnected" if self._started else "is not started")

    # ============================================================================================
    # Internals: event delivery (one FIFO, never re-entrant)
    # ============================================================================================

    def _touched(self, bk: _Book) -> None:
        self._dirty.add(bk.instrument.key)
        if self._md_handle is None:
            loop = self._loop or asyncio.get_running_loop()
            self._md_handle = loop.call_soon(self._notify_books)

    def _notify_books(self) -> None:
        self._md_handle = None
        keys, self._dirty = frozenset(self._dirty), set()
        for listener in list(self._book_listeners):
            try:
                listener(keys)
            except Exception:
                log.exception("venue %s: book listener raised", self.name)

    def _emit(self, events: list) -> None:
        """Queue events about existing orders: held while the venue is down."""
        if not events:
            return
        if self._up:
            self._push(events)
        else:
            self._held.extend(events)

    def _push(self, events: list) -> None:
        if self._loop is None:
            # Resolved here, not at delivery: a venue used outside a loop fails at the call.
            self._loop = self._outbox.bind_loop()
        self._outbox.extend(events, self._latency_s)

    # ============================================================================================
    # Internals: background liquidity and housekeeping
    # ============================================================================================

    def _make_generator(self, bk: _Book, flow: BackgroundFlow) -> None:
        inst = bk.instrument
        if inst.reference_ticks is None:
            raise ValueError(f"background flow on {self.name} needs a reference_price for {inst.key} "
                             f"(the price its liquidity is centred on)")
        # One stream per (seed, venue, instrument): venues and instruments get unrelated flows.
        seed = (flow.seed << 32) | zlib.crc32(f"{self.name}\0{inst.key}".encode())
        bk.unit = inst.lot_size
        bk.gen = OrderFlowGenerator(
            seed, mid=inst.reference_ticks, half_spread=flow.half_spread, depth_ticks=flow.depth_ticks,
            aggressive_ticks=flow.aggressive_ticks, volatility=flow.volatility, rate=flow.rate,
            lot_size=inst.lot_size * flow.size_lots, mean_lots=flow.mean_lots, aggressive_lots=flow.aggressive_lots,
            first_order_id=BACKGROUND_ID_BASE + _LADDER_IDS, mix=flow.mix)

    def _seed_ladder(self, bk: _Book, mid: int) -> None:
        """Quotes on both sides, one tick apart from the touch (mid - 1 / mid + 1) outwards, so the
        book is two-sided from the first second."""
        levels = self._background.ladder_levels
        if not levels:
            return
        unit = bk.instrument.lot_size * self._background.size_lots
        cmds = np.zeros(2 * levels, dtype=COMMAND_DTYPE)
        for k in range(levels):
            for j, (side, px) in enumerate(((Side.BUY, mid - 1 - k), (Side.SELL, mid + 1 + k))):
                c = cmds[2 * k + j]
                c["op"] = OP_SUBMIT
                c["order_id"] = bk.ladder_next
                c["side"] = side
                c["price"] = max(1, px)
                c["qty"] = unit * (2 + k)
                c["ord_type"] = 2  # LIMIT
                c["tif"] = 0       # DAY
                c["owner"] = BACKGROUND_OWNER
                bk.ladder_next += 1
        self._process_background(bk, cmds)

    def _background_batch(self, bk: _Book, n: int) -> None:
        if n <= 0 or bk.gen is None:
            return
        cmds = bk.gen.generate(n).commands
        cmds["owner"][cmds["op"] == OP_SUBMIT] = BACKGROUND_OWNER
        bk.bg_commands += n
        self._process_background(bk, cmds)
        if len(bk.book) - len(bk.oms_live) > self._background.max_resting:
            self._trim(bk)

    def _process_background(self, bk: _Book, cmds: np.ndarray) -> None:
        had_oms = bool(bk.oms_live)
        fills, ended = bk.book.process(cmds)
        bk.changes += 1
        if self._book_listeners:
            self._touched(bk)
        if not had_oms:
            return  # nothing of the OMS's can have traded, triggered or ended
        now = self._clock.now_ns()
        mine_f = (fills["maker_id"] < BACKGROUND_ID_BASE) | (fills["taker_id"] < BACKGROUND_ID_BASE)
        mine_e = ended["order_id"] < BACKGROUND_ID_BASE
        if not (mine_f.any() or mine_e.any() or bk.stops):
            return
        f = fills[mine_f]
        e = ended[mine_e]
        events: list[VenueEvent] = []
        self._apply(bk, zip(f["maker_id"].tolist(), f["taker_id"].tolist(), f["price"].tolist(), f["qty"].tolist()),
                    list(zip(e["order_id"].tolist(), e["qty"].tolist(), e["reason"].tolist())), now, events)
        self._emit(events)

    def _trim(self, bk: _Book) -> None:
        """Cancel the background orders farthest from the flow's mid down to 3/4 of max_resting:
        keeps the book bounded and centred where the flow trades."""
        book = bk.book
        ids = [i for i in book.live_order_ids() if i >= BACKGROUND_ID_BASE]
        excess = len(ids) - (3 * self._background.max_resting) // 4
        if excess <= 0:
            return
        mid = bk.gen.mid
        ranked = sorted(ids, key=lambda i: (-abs(book.order(i).price - mid), i))
        cmds = np.zeros(excess, dtype=COMMAND_DTYPE)
        cmds["op"] = OP_CANCEL
        cmds["order_id"] = ranked[:excess]
        book.process(cmds)
        bk.changes += 1
        if self._book_listeners:
            self._touched(bk)

    async def _housekeeping(self) -> None:
        loop = self._loop
        last = loop.time()
        while True:
            await asyncio.sleep(self._tick_s)
            try:
                now_t = loop.time()
                dt, last = now_t - last, now_t
                if self._bg_on:
                    flow = self._background
                    for bk in self._books.values():
                        # Owed commands accumulate with time; a stalled loop does not cause a burst.
                        bk.bg_due = min(bk.bg_due + flow.rate * dt, float(flow.max_per_tick))
                        n = int(bk.bg_due)
                        if n:
                            bk.bg_due -= n
                            self._background_batch(bk, n)
                            # One book per loop turn: an order arriving meanwhile waits for one
                            # book's chunk at most, not for all of them.
                            await asyncio.sleep(0)
                if self._gtd_live:
                    self.expire(self._clock.now_ns())
            except Exception:
                log.exception("venue %s: housekeeping step failed", self.name)

