"""The order manager: the single writer of order state, on the event loop.

Commands come from the FIX gateway (new, cancel, replace, status, mass cancel, mass status) and
from operators (kill switch, end of day); events come from venues through one sink. Every change
goes through the lifecycle table (crossbook.oms.lifecycle), updates the risk engine's usage, and
lands in the current *batch*: changed order rows, new executions, ClOrdIDs, risk usage and the
outputs (ExecutionReports, OrderCancelRejects, MassCancelReports) to send. One loop iteration's
batch is handed to the journal (persistence: group commit on a writer thread); the outputs go
out and subscribers hear about the changes only once the journal says the batch is durable.
Nothing here blocks: no I/O, no locks.
"""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import MISSING, dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterable, Protocol

from crossbook.core import OrdType, Reason, Side, Status, TimeInForce
from crossbook.model.enums import (
    ORD_STATUS_OF, CancelCause, CxlRejReason, CxlRejResponseTo, ExecType, OrderState, OrdRejReason, OrdStatus,
)
from crossbook.model.events import OrderEvent
from crossbook.model.instruments import Instrument, InstrumentMaster
from crossbook.model.orders import (
    EXECUTION_FIELDS, ORDER_FIELDS, CancelOrder, Execution, NewOrder, Order, ReplaceOrder,
)
from crossbook.oms.accounts import Directory
from crossbook.oms.lifecycle import Trigger, transition
from crossbook.oms.reports import CancelReject, ExecReport, MassCancelReport, Output
from crossbook.routing.fix_venue import RECONCILED, FixVenue
from crossbook.routing.venue import Venue, VenueEvent, VenueEventKind, VenueOrder

log = logging.getLogger("crossbook.oms")

NONE = "NONE"

# Core cancel reasons -> why the OMS says the order ended, and whether it counts as an expiry.
_CAUSE_OF_REASON = {
    int(Reason.IOC_REMAINDER): CancelCause.IOC_REMAINDER,
    int(Reason.MARKET_REMAINDER): CancelCause.MARKET_REMAINDER,
    int(Reason.FOK_UNFILLABLE): CancelCause.FOK,
    int(Reason.STP_TAKER): CancelCause.SELF_TRADE,
    int(Reason.STP_MAKER): CancelCause.SELF_TRADE,
    int(Reason.USER_CANCEL): CancelCause.CLIENT,
    int(Reason.END_OF_DAY): CancelCause.END_OF_DAY,
    int(Reason.EXPIRED): CancelCause.EXPIRED,
}
_EXPIRY_CAUSES = (CancelCause.END_OF_DAY, CancelCause.EXPIRED)
# A venue's OrdStatus (crossbook.core.Status) of an order that is no longer live there.
_VENUE_DONE = (int(Status.FILLED), int(Status.CANCELLED), int(Status.REJECTED))

# The hot path builds executions positionally (docs/oms.md, "The hot path"); this is the field
# order it relies on.
_EXECUTION_ARGS = ("exec_id", "order_id", "seq", "cl_ord_id", "orig_cl_ord_id", "exec_type", "ord_status", "symbol",
                   "side", "qty", "price", "last_qty", "last_px", "cum_qty", "leaves_qty", "cum_value", "venue",
                   "text", "reason", "ord_rej_reason", "ts", "account", "session")
if EXECUTION_FIELDS != _EXECUTION_ARGS:
    raise ImportError(f"crossbook.model.orders.Execution fields changed: {EXECUTION_FIELDS}; update the manager")


def _row_class(name: str, params: str, values: dict[str, str]) -> type:
    """A class whose instances' ``__dict__`` is the row ``{key: expression, ...}`` of ``values``
    (expressions of ``params``): ``__init__`` stores the attributes in key order, so CPython
    (3.11, PEP 412) shares ONE key table among all those dicts and a row costs an array of
    values, not a hash table built entry by entry. ``Row(...).__dict__`` is an ordinary dict with
    the keys in that order (JSON, equality, mutation as usual); against the dict display it
    replaced (one presized ``{...}``): an execution row (23 keys) 0.63 -> 0.35 us, an order row
    (36 keys, beyond the 30 a key table is shared for: still a plain instance dict) 1.2 -> 0.72
    us (timeit). They run for every execution and every changed order at flush."""
    body = "".join(f"        self.{k} = {v}\n" for k, v in values.items())
    source = f"class {name}:\n    def __init__(self, {params}):\n{body}"
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<crossbook.oms.manager.{name}>", "exec"), namespace)
    return namespace[name]


# The stored rows, keys in field order as Order.to_row() / Execution.to_row() make them (enum
# values as their values, the ClOrdID chain copied): the journal's dict rows, each the
# ``__dict__`` of a throwaway instance (_row_class). The order's row ends with the manager's
# risk_price (``rp``).
_OrderRow = _row_class("_OrderRow", "o, rp", {
    **{f: ("o.state._value_" if f == "state" else "list(o.cl_ord_ids)" if f == "cl_ord_ids" else f"o.{f}")
       for f in ORDER_FIELDS}, "risk_price": "rp"})
_ExecutionRow = _row_class("_ExecutionRow", "v", {
    f: (f"v[{i}]._value_" if f in ("exec_type", "ord_status") else f"v[{i}]") for i, f in enumerate(EXECUTION_FIELDS)})
# What a new order is made of; every other field of Order takes its default.
_PENDING_ORDER_ARGS = ("order_id", "seq", "session", "begin_string", "firm", "account", "symbol", "instrument_index",
                       "side", "ord_type", "tif", "qty", "price", "stop_px", "display_qty", "post_only", "expire_time",
                       "cl_ord_id")


def _pending_order_builder() -> Callable[..., Order]:
    """``build(*_PENDING_ORDER_ARGS, now)``: a new order, equal to ``Order(...)`` given those
    fields, ``leaves_qty=qty``, ``created_ns=updated_ns=now``, ``cl_ord_ids=[cl_ord_id]`` and
    every other field's default (state PENDING_NEW). Compiled at import from Order's fields: it
    stores each slot in field order on ``object.__new__(Order)``, defaults as constants, which
    costs 0.42 us against 0.73 us for the dataclass ``__init__`` with its 36 parameters (timeit,
    once per order). ImportError when Order gains a field this cannot default (no default, or a
    default_factory other than the ClOrdID chain's), so the two cannot drift apart silently."""
    fields = Order.__dataclass_fields__
    given = {name: name for name in _PENDING_ORDER_ARGS}
    given.update(leaves_qty="qty", created_ns="now", updated_ns="now", cl_ord_ids="[cl_ord_id]")
    namespace: dict[str, Any] = {"_new_object": object.__new__, "Order": Order}
    body = []
    for name in ORDER_FIELDS:
        expr = given.pop(name, None)
        if expr is None:
            default = fields[name].default
            if default is MISSING:
                raise ImportError(f"crossbook.model.orders.Order.{name} has no plain default; update the manager")
            if type(default) in (str, int, bool):
                expr = repr(default)
            else:
                namespace[f"_default_{name}"] = default
                expr = f"_default_{name}"
        body.append(f"    order.{name} = {expr}\n")
    if given:
        raise ImportError(f"crossbook.model.orders.Order has no field(s) {sorted(given)}; update the manager")
    source = (f"def build({', '.join(_PENDING_ORDER_ARGS)}, now):\n    order = _new_object(Order)\n"
              + "".join(body) + "    return order\n")
    exec(compile(source, "<crossbook.oms.manager._pending_order>", "exec"), namespace)
    return namespace["build"]


_pending_order = _pending_order_builder()
# Executions and ExecReports are NamedTuples built from value tuples in field order with
# tuple.__new__ (no argument parsing); these are the orders it relies on.
_new_tuple = tuple.__new__
_EXEC_REPORT_ARGS = ("session", "execution", "ord_rej_reason", "mass_status_req_id", "tot_num_reports",
                     "last_rpt_requested", "status_request", "order_qty", "ord_type", "stop_px", "tif", "poss_resend")
if ExecReport._fields != _EXEC_REPORT_ARGS:
    raise ImportError(f"crossbook.oms.reports.ExecReport fields changed: {ExecReport._fields}; update the manager")
_SIDES = {int(s): s for s in Side}
_MARKET, _STOP = int(OrdType.MARKET), int(OrdType.STOP)
_VENUE_NEW, _VENUE_TRADE = int(VenueEventKind.NEW), int(VenueEventKind.TRADE)
_ORD_TYPES = {int(t): t for t in OrdType}
_TIFS = {int(t): t for t in TimeInForce}
# Enum members the hot path names, as module globals: ``OrderState.PENDING_NEW`` goes through the
# enum metaclass (~55 ns a load on 3.11), a global costs a dict lookup (~15 ns).
_PENDING_NEW_STATE = OrderState.PENDING_NEW
_EX_PENDING_NEW, _EX_NEW = ExecType.PENDING_NEW, ExecType.NEW
_ACCEPTED = Trigger.ACCEPTED
# The fill and cancel paths' members (every marketable order ends through one of them).
_VENUE_CANCELED = int(VenueEventKind.CANCELED)
_S_PENDING_CANCEL, _S_PENDING_REPLACE, _S_FILLED = (
    OrderState.PENDING_CANCEL, OrderState.PENDING_REPLACE, OrderState.FILLED)
# ``state in _TERMINAL`` is OrderState.is_terminal without the property call (one str hash).
_TERMINAL = frozenset(s for s in OrderState if s.is_terminal)
_FILL, _PARTIAL_FILL, _CANCELED_TRIGGER, _EXPIRED_TRIGGER = (
    Trigger.FILL, Trigger.PARTIAL_FILL, Trigger.CANCELED, Trigger.EXPIRED)
_EX_TRADE, _EX_CANCELED, _EX_EXPIRED = ExecType.TRADE, ExecType.CANCELED, ExecType.EXPIRED
_CAUSE_VENUE, _CAUSE_CLIENT = CancelCause.VENUE, CancelCause.CLIENT
_REPLACED_TO_FILLED = int(Reason.REPLACED_TO_FILLED)
# A cancel the OMS asked for (pending_kind) -> the cause its CANCELED event stands for.
_CAUSE_OF_PENDING_KIND = {"cancel": CancelCause.CLIENT, "mass_cancel": CancelCause.MASS_CANCEL,
                          "kill_switch": CancelCause.KILL_SWITCH, "disconnect": CancelCause.DISCONNECT}
_CAUSE_TEXT = {
    CancelCause.IOC_REMAINDER: "IOC remainder canceled",
    CancelCause.MARKET_REMAINDER: "market order remainder canceled: no more liquidity",
    CancelCause.FOK: "FOK order could not be filled in full",
    CancelCause.SELF_TRADE: "canceled by self-trade prevention",
    CancelCause.EXPIRED: "GTD order expired",
    CancelCause.END_OF_DAY: "DAY order expired at end of day",
    CancelCause.KILL_SWITCH: "canceled by kill switch",
    CancelCause.MASS_CANCEL: "canceled by mass cancel",
    CancelCause.CLIENT: "",
    CancelCause.VENUE: "canceled by venue",
    CancelCause.RESTART: "canceled: server restarted while the cancel was pending",
    CancelCause.DISCONNECT: "canceled on disconnect",
}


@dataclass(slots=True, init=False)
class Batch:
    """One group of changes that becomes durable at once, and what to send after. While the batch
    is open, ``orders`` maps order_id -> the changed Order; flush() turns them into rows.
    ``Batch()`` starts empty; every field can also be given by keyword."""

    orders: dict[str, dict[str, Any]] = field(default_factory=dict)     # order_id -> row (after flush)
    executions: list[dict[str, Any]] = field(default_factory=list)
    cl_ord_ids: list[tuple[str, str, str]] = field(default_factory=list)  # (session, clordid, order_id)
    risk_usage: dict[int, dict[str, Any]] = field(default_factory=dict)   # account index -> usage
    meta: dict[str, str] = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)
    events: list[tuple[Execution, dict[str, Any]]] = field(default_factory=list)
    # Venue requests that may leave only once this batch is durable (write-ahead, see
    # OrderManager._send_when_durable): (bound venue method, args), sent first by _on_durable.
    # None (not an empty list) in the usual batch: nothing to allocate per batch.
    venue_sends: list[tuple[Callable[..., None], tuple]] | None = None

    def __init__(self, orders: dict | None = None, executions: list | None = None, cl_ord_ids: list | None = None,
                 risk_usage: dict | None = None, meta: dict | None = None, outputs: list | None = None,
                 events: list | None = None, venue_sends: list | None = None) -> None:
        # Written out rather than generated: the dataclass __init__ calls each default_factory
        # (seven calls, ~0.8 us); literals cost half. One Batch per flush, so per order at low rates.
        self.orders = {} if orders is None else orders
        self.executions = [] if executions is None else executions
        self.cl_ord_ids = [] if cl_ord_ids is None else cl_ord_ids
        self.risk_usage = {} if risk_usage is None else risk_usage
        self.meta = {} if meta is None else meta
        self.outputs = [] if outputs is None else outputs
        self.events = [] if events is None else events
        self.venue_sends = venue_sends

    def empty(self) -> bool:
        return not (self.orders or self.executions or self.outputs or self.meta or self.cl_ord_ids
                    or self.venue_sends)


class Journal(Protocol):
    """Where batches become durable (crossbook.persistence.SqliteJournal, or MemoryJournal)."""

    def submit(self, batch: Batch, on_durable: Callable[[Batch], None]) -> None: ...


class MemoryJournal:
    """No durability: batches are 'durable' on the next loop iteration (tests, embedders)."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def submit(self, batch: Batch, on_durable: Callable[[Batch], None]) -> None:
        self.batches.append(batch)
        asyncio.get_running_loop().call_soon(on_durable, batch)


class Clock(Protocol):
    def now_ns(self) -> int: ...


def outlives_oms(venue: Any) -> bool:
    """True when orders sent to ``venue`` stay live after this process dies: a venue in its own
    process reached over FIX (FixVenue), or a router (an object with a ``venues`` list) that can
    send children to one. Such a venue gets write-ahead: the batch holding an order, its venue
    ClOrdID and the id counters is durable before the order (or a replace's new id) is sent.
    In-process venues' books die with the process: nothing there can outlive what was journaled."""
    if isinstance(venue, FixVenue):
        return True
    children = getattr(venue, "venues", None)
    return isinstance(children, (list, tuple)) and any(isinstance(v, FixVenue) for v in children)


class OrderManager:
    """Order state, lifecycle and ClOrdID chains for every client order. See module docstring."""

    def __init__(self, *, instruments: InstrumentMaster, venues: dict[str, Venue], risk: Any,
                 directory: Directory, clock: Clock, journal: Journal | None = None) -> None:
        self.instruments = instruments
        self.venues = venues
        self.risk = risk
        self.directory = directory
        self.clock = clock
        self.journal: Journal = journal if journal is not None else MemoryJournal()
        self.orders: dict[str, Order] = {}
        self._open: dict[str, Order] = {}                     # order_id -> open order
        self._by_cl_ord_id: dict[tuple[str, str], str] = {}   # (session, ClOrdID) -> order_id
        # venue -> {venue ClOrdID -> order}: one small map per venue rather than (venue, id) tuple
        # keys, so the hot path builds no key tuple (each one a tracked object the collector meets).
        self._by_venue_id: dict[str, dict[str, Order]] = {}
        self._risk_price: dict[str, int] = {}                 # order_id -> price its risk usage is held at
        self._absorb_ack: set[tuple[str, str]] = set()        # resubmitted after restart: ack is silent
        self._held_at_venue: set[str] = set()                 # restored orders a remote venue still holds
        # venue -> ExecIDs of its trades already counted: one set per venue, so a trade adds a
        # string, not a (venue, ExecID) tuple built and kept for every fill.
        self._seen_venue_exec: dict[str, set[str]] = {}
        self._write_ahead: dict[str, tuple[Venue, bool]] = {}  # venue name -> (venue, outlives_oms(venue))
        self._killed: frozenset[int] = frozenset()           # account indices a kill switch blocks
        self._sent_exec_seq: dict[str, int] = {}             # session -> highest stored ExecID seq sent
        self._marks_moved = False                            # _sent_exec_seq changed since the last flush
        self._json_keys: dict[str, str] = {}                 # session -> its JSON string (for the marks)
        self._unsent: list[dict[str, Any]] = []              # stored executions to send again after a restart
        self._order_seq = 0
        self._exec_seq = 0
        self._stored_order_seq = 0    # the counters' values last put in a batch (meta)
        self._stored_exec_seq = 0
        self._report_seq = 0
        self._batch = Batch()
        self._flush_scheduled = False
        self._flush_hop: asyncio.Handle | None = None   # the first of the two hops, while pending
        self._loop: asyncio.AbstractEventLoop | None = None  # see _running_loop
        self._outputs_sink: Callable[[Output], None] | None = None
        self._outputs_stored: Callable[[], None] | None = None
        self._delivery_hooks: tuple[Callable[[], None], Callable[[], None]] | None = None
        self._subscribers: list[Callable[[OrderEvent], None]] = []
        self.in_flight = 0
        for venue in venues.values():
            venue.set_event_sink(self.on_venue_event)

    # ------------------------------------------------------------------ wiring
    def set_output_sink(self, sink: Callable[[Output], None], stored: Callable[[], None] | None = None) -> None:
        """Where durable outputs go (the FIX gateway).

        ``stored`` is called after each journal batch's outputs were handed to ``sink`` and
        before the journal is told they were sent: it must make them recoverable (the gateway
        writes its sessions' FIX stores), since a restarted server sends again only the reports
        not marked sent. Without it, ``sink`` must have stored each output when it returns."""
        self._outputs_sink = sink
        self._outputs_stored = stored

    def set_delivery_hooks(self, before: Callable[[], None], after: Callable[[], None]) -> None:
        """Call ``before()`` first thing when a durable batch is delivered (its venue requests,
        outputs and subscriber events) and ``after()`` last, also when delivery failed. The server
        passes its FIX acceptor's ``hold_output`` / ``release_output``: each session's reports of
        the batch are then written in the callback that made them durable, once per session,
        instead of a loop iteration later behind whatever else that iteration runs."""
        if not callable(before) or not callable(after):
            raise TypeError("set_delivery_hooks() takes two callables")
        self._delivery_hooks = (before, after)

    def note_meta(self, key: str, value: str) -> None:
        """Journal ``key`` = ``value`` (meta) in the current batch: committed together with every
        change made since the last flush, read back by the journal's ``open()``.

        When a venue request waits for the current batch (write-ahead, :meth:`_send_when_durable`)
        the batch is flushed now: the gateway notes its inbound MsgSeqNum mark after each message
        it handled, so the batch holds everything that message did, and the request leaves inside
        the read callback instead of a loop hop later (the client's reports with it)."""
        batch = self._batch
        batch.meta[key] = value
        if batch.venue_sends is not None:
            try:
                self.flush()
            except RuntimeError:
                # The journal has failed (it logged why): nothing is acknowledged or sent to a
                # venue from now on. That must not cost the client its connection, which it
                # would when this raised into the FIX session's read callback.
                log.error("journal refused a batch: its venue requests and reports are not sent")

    def subscribe(self, callback: Callable[[OrderEvent], None]) -> Callable[[], None]:
        """Call ``callback`` with every order event once it is durable; returns an unsubscribe."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    # ------------------------------------------------------------------ queries
    def order(self, order_id: str) -> Order | None:
        return self.orders.get(order_id)

    def find(self, session: str, cl_ord_id: str) -> Order | None:
        oid = self._by_cl_ord_id.get((session, cl_ord_id))
        return self.orders.get(oid) if oid else None

    def open_orders(self) -> list[Order]:
        return sorted(self._open.values(), key=lambda o: o.seq)

    # ------------------------------------------------------------------ new orders
    def reject_new(self, session: str, begin_string: str, cl_ord_id: str, reason: OrdRejReason, text: str, *,
                   account: str = "", symbol: str = "", side: int = 0, qty: int = 0, ord_type: int = 0,
                   price: int = 0, tif: int = 0, instrument_index: int = -1) -> None:
        """A NewOrderSingle refused before it became an order (bad instrument, tick, lot, account):
        recorded as a rejected order, answered with an ExecutionReport Rejected."""
        if self._duplicate(session, cl_ord_id):
            self._reject_duplicate(session, begin_string, cl_ord_id, account, symbol, side)
            return
        order = self._make_order(session, begin_string, cl_ord_id, account, symbol, instrument_index, side,
                                 ord_type, tif, qty, price)
        self._reject_order(order, reason, text)

    def new_order(self, cmd: NewOrder) -> Order | None:
        """A validated NewOrderSingle: duplicate check, venue choice, risk, then to the venue."""
        (session, begin_string, cl_ord_id, _firm, account, instrument_index, side, ord_type, tif, qty, price,
         stop_px, display_qty, post_only, expire_time, ex_destination) = cmd
        inst = self.instruments.by_index(instrument_index)
        cl_key = (session, cl_ord_id)   # one tuple for the check and the index entry
        if cl_key in self._by_cl_ord_id:
            self._reject_duplicate(session, begin_string, cl_ord_id, account, inst.key, side)
            return None
        directory = self.directory
        sess = directory.sessions.get(session)
        order = self._make_order(session, begin_string, cl_ord_id, account, inst.key, inst.index, side, ord_type,
                                 tif, qty, price, stop_px, display_qty, post_only, expire_time, sess, cl_key)
        venue_name = ex_destination or inst.default_venue
        venue = self.venues.get(venue_name)
        if venue is None or venue_name not in inst.venues:
            known = ", ".join(v for v in inst.venues if v in self.venues)
            self._reject_order(order, OrdRejReason.OTHER,
                               f"ExDestination {venue_name!r} does not list {inst.key} (venues: {known})")
            return order
        order.venue = venue_name
        if not venue.is_up:
            self._reject_order(order, OrdRejReason.EXCHANGE_CLOSED, f"venue {venue_name} is down")
            return order
        acc = directory.accounts[account]
        acc_index = acc.index
        if sess is None:
            sess = directory.sessions[session]  # KeyError naming the session, as before
        sess_index = sess.index
        market = ord_type == _MARKET
        risk_price = stop_px if ord_type == _STOP else price
        risk = self.risk
        code = risk.check_new(acc_index, instrument_index, sess_index, side, ord_type, qty,
                              0 if market else risk_price, order.created_ns)
        if code != 0:
            text = risk.explain(code, acc_index, instrument_index, side, ord_type, qty, 0 if market else risk_price,
                                sess_index)
            self._reject_order(order, OrdRejReason.ORDER_EXCEEDS_LIMIT, text, reason_name=f"risk:{code.name}")
            return order
        if market:
            risk_price = risk.market_price(instrument_index)
        risk.on_open(acc_index, instrument_index, side, qty, risk_price)
        order_id = order.order_id
        self._risk_price[order_id] = risk_price
        self._batch.risk_usage[acc_index] = None  # type: ignore[assignment]  # filled at flush
        self._open[order_id] = order
        self._execution(order, _EX_PENDING_NEW)
        # self._send_to_venue(order, inst, venue, acc) written out with the command's values (the
        # order's first venue ClOrdID, its whole quantity): once per order, no reads back from it.
        order.venue_seq = 1
        vid = order.venue_cl_ord_id = f"{order_id}.1"
        ids = self._by_venue_id.get(venue_name)
        if ids is None:
            ids = self._by_venue_id[venue_name] = {}
        ids[vid] = order
        venue_order = VenueOrder(vid, inst, _SIDES[side], _ORD_TYPES[ord_type], _TIFS[tif], qty, price, stop_px,
                                 display_qty, post_only, expire_time, acc_index + 1, acc.stp)
        known = self._write_ahead.get(venue_name)
        if known is None or known[0] is not venue:
            known = self._write_ahead[venue_name] = (venue, outlives_oms(venue))
        if known[1]:
            self._send_when_durable(venue.new_order, (venue_order,))
        else:
            venue.new_order(venue_order)
            if not self._flush_scheduled:
                self._schedule_flush()
        return order

    def _send_to_venue(self, order: Order, inst: Instrument, venue: Venue, acc: Any = None) -> None:
        """Send ``order``'s leaves to ``venue`` under its next venue ClOrdID (a resubmit after a
        restart; a new order's first send is written out in :meth:`new_order`)."""
        seq = order.venue_seq = order.venue_seq + 1
        vid = order.venue_cl_ord_id = f"{order.order_id}.{seq}"
        self._venue_ids(order.venue)[vid] = order
        if acc is None:
            acc = self.directory.accounts[order.account]
        # Positional, in VenueOrder's field order (venue_cl_ord_id ... expire_time, owner, stp).
        venue_order = VenueOrder(vid, inst, _SIDES[order.side], _ORD_TYPES[order.ord_type], _TIFS[order.tif],
                                 order.leaves_qty, order.price, order.stop_px, order.display_qty, order.post_only,
                                 order.expire_time, acc.index + 1, acc.stp)
        self._batch.orders[order.order_id] = order  # type: ignore[assignment]  # _dirty; the flush: below, or the write-ahead's
        if self._needs_write_ahead(order.venue, venue):
            self._send_when_durable(venue.new_order, (venue_order,))
            return
        venue.new_order(venue_order)
        if not self._flush_scheduled:
            self._schedule_flush()

    def _venue_ids(self, venue: str) -> dict[str, Order]:
        """The venue ClOrdID -> order map of ``venue`` (made on first use)."""
        ids = self._by_venue_id.get(venue)
        if ids is None:
            ids = self._by_venue_id[venue] = {}
        return ids

    def _needs_write_ahead(self, name: str, venue: Venue) -> bool:
        """:func:`outlives_oms` of the venue configured as ``name``, memoised per venue object."""
        known = self._write_ahead.get(name)
        if known is None or known[0] is not venue:
            known = self._write_ahead[name] = (venue, outlives_oms(venue))
        return known[1]

    def _send_when_durable(self, call: Callable[..., None], args: tuple) -> None:
        """Write-ahead for a venue whose orders outlive this process (:func:`outlives_oms`):
        ``call(*args)`` is held in the current batch (which holds the order's row with its new
        venue ClOrdID; the id counters join it at flush) and made only once that batch is
        durable, first thing in _on_durable. Otherwise a kill between the send and the commit
        would leave a live order at the venue that the restarted OMS does not know and would
        enter again under the same ids.

        The batch is not flushed at once: the gateway's inbound MsgSeqNum mark for the message
        that caused the send (noted after the manager returns) must ride in it, so a restart
        never asks the client to resend a request that is already durable (a resent
        OrderCancelReplaceRequest would meet its own ClOrdID: a duplicate). :meth:`note_meta`
        flushes it when the mark arrives; a loop hop later at the latest (a send not caused by
        a client message)."""
        batch = self._batch
        if batch.venue_sends is None:
            batch.venue_sends = [(call, args)]
            self._running_loop().call_soon(self._flush_venue_sends)
        else:
            batch.venue_sends.append((call, args))

    def _flush_venue_sends(self) -> None:
        # The batch may have gone with an earlier flush already (then there is nothing to hurry).
        if self._batch.venue_sends is not None:
            self.flush()

    @staticmethod
    def _risk_price_of(order: Order) -> int:
        """The price an order's risk usage is held at: its stop price for a stop, else its limit."""
        if order.ord_type == OrdType.STOP:
            return order.stop_px
        return order.price

    def _make_order(self, session: str, begin_string: str, cl_ord_id: str, account: str, symbol: str,
                    instrument_index: int, side: int, ord_type: int, tif: int, qty: int, price: int,
                    stop_px: int = 0, display_qty: int = 0, post_only: bool = False, expire_time: int = 0,
                    sess: Any = None, cl_key: tuple[str, str] | None = None) -> Order:
        """A new PENDING_NEW order, indexed and dirty. ``sess``: the session's directory entry
        when the caller has it (else looked up; an unknown session gives an empty firm);
        ``cl_key``: ``(session, cl_ord_id)`` when the caller made it."""
        seq = self._order_seq = self._order_seq + 1
        now = self.clock.now_ns()
        if sess is None:
            sess = self.directory.sessions.get(session)
        firm = sess.firm if sess is not None else ""
        order_id = f"O{seq}"
        order = _pending_order(order_id, seq, session, begin_string, firm, account, symbol, instrument_index, side,
                               ord_type, tif, qty, price, stop_px, display_qty, post_only, expire_time, cl_ord_id, now)
        self.orders[order_id] = order
        # The ClOrdID is stored with the order's row (its cl_ord_ids), from which a restart
        # rebuilds this index.
        self._by_cl_ord_id[cl_key or (session, cl_ord_id)] = order_id
        self._batch.orders[order_id] = order  # type: ignore[assignment]  # _dirty, inlined
        if not self._flush_scheduled:
            self._schedule_flush()
        return order

    def _remember_cl_ord_id(self, order: Order, cl_ord_id: str) -> None:
        self._by_cl_ord_id[(order.session, cl_ord_id)] = order.order_id
        order.cl_ord_ids.append(cl_ord_id)
        # Stored with the order's row (its cl_ord_ids), from which a restart rebuilds the index.
        self._dirty(order)

    def _duplicate(self, session: str, cl_ord_id: str) -> bool:
        return (session, cl_ord_id) in self._by_cl_ord_id

    def _reject_duplicate(self, session: str, begin_string: str, cl_ord_id: str, account: str, symbol: str,
                          side: int) -> None:
        # Not an order of ours: answered with OrderID NONE and not stored (the ClOrdID belongs to
        # the earlier order, whose chain must not be disturbed).
        self._exec_seq += 1
        now = self.clock.now_ns()
        ex = Execution(exec_id=f"X{self._exec_seq}", order_id=NONE, seq=self._exec_seq, cl_ord_id=cl_ord_id,
                       orig_cl_ord_id="", exec_type=ExecType.REJECTED, ord_status=OrdStatus.REJECTED, symbol=symbol,
                       side=side, qty=0, price=0, last_qty=0, last_px=0, cum_qty=0, leaves_qty=0, cum_value=0,
                       venue="", text=f"duplicate ClOrdID {cl_ord_id!r} on this session", reason="duplicate",
                       ord_rej_reason=OrdRejReason.DUPLICATE_ORDER.value, ts=now, account=account,
                       session=session)
        self._emit(ExecReport(session, ex, OrdRejReason.DUPLICATE_ORDER))

    def _reject_order(self, order: Order, reason: OrdRejReason, text: str, reason_name: str = "") -> None:
        transition(order, Trigger.REJECTED)
        order.leaves_qty = 0
        order.text = text
        self._open.pop(order.order_id, None)
        self._execution(order, ExecType.REJECTED, text=text, reason=reason_name or reason.name.lower(),
                        ord_rej_reason=reason)

    # ------------------------------------------------------------------ cancel / replace
    def find_amend_target(self, session: str, orig_cl_ord_id: str, order_id: str) -> Order | None:
        """The order a cancel, replace or status request names: the one whose ClOrdID chain on
        ``session`` holds ``orig_cl_ord_id``, else the order ``order_id`` (OrderID, 37) when it
        belongs to ``session``; None when neither matches. Only looks: it answers nobody."""
        order = self.find(session, orig_cl_ord_id)
        if order is None and order_id and order_id != NONE:
            candidate = self.orders.get(order_id)
            if candidate is not None and candidate.session == session:
                order = candidate
        return order

    def reject_cancel_replace(self, session: str, order: Order | None, cl_ord_id: str, orig_cl_ord_id: str,
                              to: CxlRejResponseTo, reason: CxlRejReason, text: str) -> None:
        """Answer a cancel (``to`` = CANCEL) or cancel/replace (REPLACE) request on ``session`` with
        an OrderCancelReject: ``order`` is the order it named (None when unknown: OrdStatus
        Rejected, OrderID NONE), ``reason`` / ``text`` say why. The order itself is not changed."""
        self._emit(CancelReject(
            session=session, order_id=order.order_id if order else NONE, cl_ord_id=cl_ord_id,
            orig_cl_ord_id=orig_cl_ord_id, ord_status=order.ord_status if order else OrdStatus.REJECTED,
            response_to=to, reason=reason, text=text, account=order.account if order else ""))

    def _check_amendable(self, session: str, cl_ord_id: str, orig_cl_ord_id: str, order_id: str,
                         to: CxlRejResponseTo) -> Order | None:
        """The order a cancel/replace is about, or None after answering with OrderCancelReject."""
        order = self.find_amend_target(session, orig_cl_ord_id, order_id)
        if order is None:
            self.reject_cancel_replace(session, None, cl_ord_id, orig_cl_ord_id, to, CxlRejReason.UNKNOWN_ORDER,
                                       f"unknown order: OrigClOrdID {orig_cl_ord_id!r}")
            return None
        if self._duplicate(session, cl_ord_id):
            self.reject_cancel_replace(session, order, cl_ord_id, orig_cl_ord_id, to, CxlRejReason.DUPLICATE_CL_ORD_ID,
                                       f"duplicate ClOrdID {cl_ord_id!r} on this session")
            return None
        if order.state.is_terminal:
            self.reject_cancel_replace(session, order, cl_ord_id, orig_cl_ord_id, to, CxlRejReason.TOO_LATE_TO_CANCEL,
                                       f"too late: order {order.order_id} is {order.state.value}")
            return None
        if order.state.is_pending:
            self.reject_cancel_replace(session, order, cl_ord_id, orig_cl_ord_id, to, CxlRejReason.ALREADY_PENDING,
                                       f"order {order.order_id} already has a {order.pending_kind} pending "
                                       f"(ClOrdID {order.pending_cl_ord_id})")
            return None
        if order.state is OrderState.PENDING_NEW:
            self.reject_cancel_replace(session, order, cl_ord_id, orig_cl_ord_id, to, CxlRejReason.BROKER_OPTION,
                                       f"order {order.order_id} is not yet acknowledged by the venue")
            return None
        if order.cl_ord_id != orig_cl_ord_id and (order_id == "" or orig_cl_ord_id in order.cl_ord_ids):
            # An older ClOrdID of the chain: FIX wants the latest one.
            self.reject_cancel_replace(session, order, cl_ord_id, orig_cl_ord_id, to, CxlRejReason.OTHER
                                       if to is CxlRejResponseTo.REPLACE else CxlRejReason.BROKER_OPTION,
                                       f"OrigClOrdID {orig_cl_ord_id!r} was replaced: "
                                       f"the order's ClOrdID is {order.cl_ord_id!r}")
            return None
        return order

    def cancel_order(self, cmd: CancelOrder) -> None:
        order = self._check_amendable(cmd.session, cmd.cl_ord_id, cmd.orig_cl_ord_id, cmd.order_id,
                                      CxlRejResponseTo.CANCEL)
        if order is None:
            return
        self._remember_cl_ord_id(order, cmd.cl_ord_id)
        self._request_cancel(order, cmd.cl_ord_id, "cancel", report=True)

    def _request_cancel(self, order: Order, cl_ord_id: str, kind: str, report: bool) -> None:
        transition(order, Trigger.CANCEL_REQUESTED)
        order.pending_cl_ord_id = cl_ord_id
        order.pending_kind = kind
        if report:
            self._execution(order, ExecType.PENDING_CANCEL, cl_ord_id=cl_ord_id, orig_cl_ord_id=order.cl_ord_id)
        else:
            self._dirty(order)
        venue = self.venues[order.venue]
        venue.cancel_order(order.venue_cl_ord_id, f"{order.venue_cl_ord_id}.c")

    def replace_order(self, cmd: ReplaceOrder) -> None:
        order = self._check_amendable(cmd.session, cmd.cl_ord_id, cmd.orig_cl_ord_id, cmd.order_id,
                                      CxlRejResponseTo.REPLACE)
        if order is None:
            return
        to = CxlRejResponseTo.REPLACE
        if cmd.side and cmd.side != order.side:
            self.reject_cancel_replace(cmd.session, order, cmd.cl_ord_id, cmd.orig_cl_ord_id, to,
                                       CxlRejReason.BROKER_OPTION,
                                       "Side cannot be changed by a replace")
            return
        inst = self.instruments.by_index(order.instrument_index)
        new_price = cmd.price if order.ord_type in (OrdType.LIMIT, OrdType.STOP_LIMIT) else order.price
        if cmd.qty <= order.cum_qty:
            self.reject_cancel_replace(cmd.session, order, cmd.cl_ord_id, cmd.orig_cl_ord_id, to,
                                       CxlRejReason.BROKER_OPTION,
                                       f"OrderQty {cmd.qty} is not above the filled quantity {order.cum_qty}")
            return
        acc = self.directory.accounts[order.account]
        sess = self.directory.sessions[cmd.session]
        old_price = self._risk_price[order.order_id]
        new_risk_price = new_price if order.ord_type != OrdType.STOP else order.stop_px
        if order.ord_type == OrdType.MARKET:
            new_risk_price = old_price
        code = self.risk.check_replace(acc.index, inst.index, sess.index, order.side, order.ord_type, cmd.qty,
                                       new_risk_price if order.ord_type != OrdType.MARKET else 0,
                                       order.leaves_qty, old_price, order.cum_qty, self.clock.now_ns())
        if code != 0:
            text = self.risk.explain(code, acc.index, inst.index, order.side, order.ord_type, cmd.qty,
                                     new_risk_price if order.ord_type != OrdType.MARKET else 0, sess.index,
                                     replace=(order.leaves_qty, old_price, order.cum_qty))
            self.reject_cancel_replace(cmd.session, order, cmd.cl_ord_id, cmd.orig_cl_ord_id, to,
                                       CxlRejReason.BROKER_OPTION, text)
            return
        self._remember_cl_ord_id(order, cmd.cl_ord_id)
        transition(order, Trigger.REPLACE_REQUESTED)
        order.pending_cl_ord_id = cmd.cl_ord_id
        order.pending_kind = "replace"
        order.pending_qty = cmd.qty
        order.pending_price = new_price
        self._execution(order, ExecType.PENDING_REPLACE, cl_ord_id=cmd.cl_ord_id, orig_cl_ord_id=order.cl_ord_id)
        order.venue_seq += 1
        new_vid = f"{order.order_id}.{order.venue_seq}"
        self._venue_ids(order.venue)[new_vid] = order
        venue = self.venues[order.venue]
        if self._needs_write_ahead(order.venue, venue):
            # The new venue ClOrdID (venue_seq in the order's row) is durable before the replace
            # leaves: after a kill, the restart asks for the order and sends the same id again.
            self._send_when_durable(venue.replace_order, (order.venue_cl_ord_id, new_vid, cmd.qty, new_price))
        else:
            venue.replace_order(order.venue_cl_ord_id, new_vid, cmd.qty, new_price)

    # ------------------------------------------------------------------ mass operations
    def mass_cancel(self, session: str, cl_ord_id: str, request_type: str, *, symbol: str = "",
                    security_type: str = "", account: str = "") -> None:
        """OrderMassCancelRequest: 1 = by instrument, 5 = by SecurityType, 7 = all of the session."""
        self._report_seq += 1
        report_id = f"M{self._report_seq}-{self.clock.now_ns()}"
        if request_type not in ("1", "5", "7"):
            self._emit(MassCancelReport(session, cl_ord_id, report_id, request_type, "0", 0, reject_reason=1,
                                        text=f"MassCancelRequestType {request_type!r} not supported (1, 5, 7)"))
            return
        matches = []
        for order in self.open_orders():
            if order.session != session or (account and order.account != account):
                continue
            if order.state not in (OrderState.NEW, OrderState.PARTIALLY_FILLED):
                continue
            inst = self.instruments.by_index(order.instrument_index)
            if request_type == "1" and symbol not in (inst.symbol, inst.key):
                continue
            if request_type == "5" and security_type != inst.security_type:
                continue
            matches.append(order)
        self._emit(MassCancelReport(session, cl_ord_id, report_id, request_type, request_type, len(matches),
                                    symbol=symbol, security_type=security_type))
        for order in matches:
            self._request_cancel(order, order.cl_ord_id, "mass_cancel", report=False)

    def order_status(self, session: str, cl_ord_id: str, order_id: str = "") -> None:
        """OrderStatusRequest: an ExecutionReport (ExecType I) with the order's current state."""
        order = self.find_amend_target(session, cl_ord_id, order_id)
        if order is None:
            self._status_unknown(session, cl_ord_id, f"unknown order: ClOrdID {cl_ord_id!r}")
            return
        self._emit(self._status_report(order))

    def mass_status(self, session: str, req_id: str, req_type: str, *, symbol: str = "", account: str = "") -> None:
        """OrderMassStatusRequest: one status report per open order of the session (7 all, 1 by
        instrument, 8 by account), the last with LastRptRequested=Y."""
        orders = [o for o in self.open_orders() if o.session == session
                  and (not account or o.account == account)
                  and (req_type != "1" or symbol in (o.symbol, self.instruments.by_index(o.instrument_index).symbol))]
        if not orders:
            self._status_unknown(session, "", "no open orders", mass_status_req_id=req_id)
            return
        for i, order in enumerate(orders):
            base = self._status_report(order)
            self._emit(ExecReport(session, base.execution, mass_status_req_id=req_id, tot_num_reports=len(orders),
                                  last_rpt_requested=i == len(orders) - 1, status_request=True,
                                  order_qty=order.qty, ord_type=order.ord_type, stop_px=order.stop_px, tif=order.tif))

    def _status_report(self, order: Order) -> ExecReport:
        self._report_seq += 1
        ex = self._make_execution(order, ExecType.ORDER_STATUS, exec_id=f"S{self._report_seq}-{order.order_id}")
        return ExecReport(order.session, ex, status_request=True, order_qty=order.qty, ord_type=order.ord_type,
                          stop_px=order.stop_px, tif=order.tif)

    def _status_unknown(self, session: str, cl_ord_id: str, text: str, mass_status_req_id: str = "") -> None:
        self._report_seq += 1
        ex = Execution(exec_id=f"S{self._report_seq}-{NONE}", order_id=NONE, seq=0, cl_ord_id=cl_ord_id,
                       orig_cl_ord_id="", exec_type=ExecType.ORDER_STATUS, ord_status=OrdStatus.REJECTED, symbol="",
                       side=0, qty=0, price=0, last_qty=0, last_px=0, cum_qty=0, leaves_qty=0, cum_value=0,
                       venue="", text=text, reason="unknown", ord_rej_reason=-1, ts=self.clock.now_ns(),
                       account="", session=session)
        self._emit(ExecReport(session, ex, status_request=True, mass_status_req_id=mass_status_req_id,
                              tot_num_reports=0 if mass_status_req_id else -1,
                              last_rpt_requested=bool(mass_status_req_id)))

    def kill(self, scope: str, name: str | None = None, on: bool = True) -> int:
        """Turn a kill switch on/off (scope global/firm/account, by name). When on, cancels the open
        orders it covers (unsolicited Canceled reports). Returns how many cancels were sent."""
        index = None
        if scope == "firm":
            index = self.directory.firms[name].index  # KeyError -> caller names it
        elif scope == "account":
            index = self.directory.accounts[name].index
        self.risk.kill(scope, index, on)
        killed = self._killed = frozenset(self.risk.killed_accounts())
        # A kill switch must survive a restart: it is stored with the next batch.
        self._batch.meta["kill_state"] = json.dumps(self.risk.kill_state())
        self._schedule_flush()
        if not on:
            return 0
        count = 0
        for order in self.open_orders():
            if self.directory.accounts[order.account].index in killed:
                if order.state in (OrderState.NEW, OrderState.PARTIALLY_FILLED):
                    order.text = _CAUSE_TEXT[CancelCause.KILL_SWITCH]
                    self._request_cancel(order, order.cl_ord_id, "kill_switch", report=False)
                    count += 1
        self._schedule_flush()
        return count

    def cancel_session_orders(self, session: str) -> int:
        """Cancel every open order of ``session`` (cancel-on-disconnect): unsolicited Canceled
        reports, stored for the session's next logon. Orders with a request in flight or not yet
        acknowledged are left to finish. Returns how many cancels were sent."""
        count = 0
        for order in self.open_orders():
            if order.session == session and order.state in (OrderState.NEW, OrderState.PARTIALLY_FILLED):
                order.text = _CAUSE_TEXT[CancelCause.DISCONNECT]
                self._request_cancel(order, order.cl_ord_id, "disconnect", report=False)
                count += 1
        self._schedule_flush()
        return count

    def end_of_day(self) -> int:
        """End of the trading day: venues expire DAY orders (unsolicited Expired reports) and the
        daily credit usage starts again. Returns the number of venues told."""
        for venue in self.venues.values():
            end_of_day = getattr(venue, "end_of_day", None)  # not in the Venue protocol: remote venues run their own
            if end_of_day is not None:
                end_of_day()
        self.risk.new_day()
        for acc in self.directory.accounts.values():
            self._touch_risk(acc.index)
        self._schedule_flush()
        return len(self.venues)

    def expire(self) -> None:
        """Let venues expire GTD orders whose time has come (called periodically)."""
        now = self.clock.now_ns()
        for venue in self.venues.values():
            expire = getattr(venue, "expire", None)
            if expire is not None:
                expire(now)

    # ------------------------------------------------------------------ venue events
    def on_venue_event(self, ev: VenueEvent) -> None:
        """The single handler of every venue event."""
        ids = self._by_venue_id.get(ev.venue)
        order = None
        if ids is not None:
            order = ids.get(ev.venue_cl_ord_id)
            if order is None and ev.orig_venue_cl_ord_id:
                order = ids.get(ev.orig_venue_cl_ord_id)
        if order is None:
            log.warning("venue %s event %s for unknown order %s", ev.venue, ev.kind.name, ev.venue_cl_ord_id)
            return
        kind = ev.kind
        if kind == _VENUE_NEW:
            self._on_ack(order, ev)
        elif kind == _VENUE_TRADE:
            self._on_trade(order, ev)
        elif kind == _VENUE_CANCELED:
            self._on_canceled(order, ev)
        elif kind == VenueEventKind.REPLACED:
            self._on_replaced(order, ev)
        elif kind == VenueEventKind.REJECTED:
            self._on_rejected(order, ev)
        elif kind in (VenueEventKind.CANCEL_REJECTED, VenueEventKind.REPLACE_REJECTED):
            self._on_amend_rejected(order, ev)
        elif kind == VenueEventKind.STATUS:
            self._on_status(order, ev)
        elif kind.name == "STOP_TRIGGERED":
            if not order.state.is_terminal and order.begin_string != "FIX.4.2":
                self._execution(order, ExecType.TRIGGERED, text="stop triggered")
        if not self._flush_scheduled:
            self._schedule_flush()

    def _on_ack(self, order: Order, ev: VenueEvent) -> None:
        order.venue_order_id = ev.venue_order_id or order.venue_order_id
        if self._absorb_ack:
            key = (ev.venue, ev.venue_cl_ord_id)
            if key in self._absorb_ack:
                self._absorb_ack.discard(key)
                self._dirty(order)
                return
        if order.state is not _PENDING_NEW_STATE:
            self._dirty(order)  # ack after a fill already moved it on: nothing new to tell
            return
        transition(order, _ACCEPTED)
        self._execution(order, _EX_NEW)
        if self._killed and self.directory.accounts[order.account].index in self._killed:
            # The kill switch went on while this order was on its way: it must not stay open.
            order.text = _CAUSE_TEXT[CancelCause.KILL_SWITCH]
            self._request_cancel(order, order.cl_ord_id, "kill_switch", report=False)

    def _on_status(self, order: Order, ev: VenueEvent) -> None:
        """The venue's reconciliation of an order held at it after a restart (:meth:`hold_at_venue`):
        its corrective events (fills, a cancel, a reject) came first; this STATUS closes it. If the
        venue still has the order live, what was in flight at the restart is finished now: a
        pending cancel or replace it never answered is sent again (its answer then comes as
        usual); an order never acknowledged is acknowledged (New). (A venue that never got an
        order says so before: REJECTED, answered as Rejected.)"""
        if ev.reason != RECONCILED or order.order_id not in self._held_at_venue:
            return
        self._held_at_venue.discard(order.order_id)
        if (order.state.is_terminal or ev.ord_status in _VENUE_DONE
                or ev.reason_code == int(Reason.UNKNOWN_ORDER)):
            return
        venue = self.venues[order.venue]
        if order.state is OrderState.PENDING_CANCEL:
            # The venue knows the order and answered no cancel (an answer would have come before
            # this STATUS, by resend): the request never reached it. Same id as the first time.
            venue.cancel_order(order.venue_cl_ord_id, f"{order.venue_cl_ord_id}.c")
        elif order.state is OrderState.PENDING_REPLACE:
            new_vid = f"{order.order_id}.{order.venue_seq}"   # the id the lost replace carried
            self._venue_ids(order.venue)[new_vid] = order
            venue.replace_order(order.venue_cl_ord_id, new_vid, order.pending_qty, order.pending_price)
        elif order.state is OrderState.PENDING_NEW:
            # Live at the venue, whose acknowledgement the previous process received but did not
            # store: acknowledged now (New).
            self._on_ack(order, ev)

    def _on_rejected(self, order: Order, ev: VenueEvent) -> None:
        if order.state.is_terminal:
            return
        self._close_risk(order)
        text = f"venue {ev.venue} rejected: {ev.reason}" if ev.reason else f"venue {ev.venue} rejected the order"
        if order.state is OrderState.PENDING_NEW:
            self._reject_order(order, OrdRejReason.BROKER_OPTION, text, reason_name="venue")
        else:  # a resubmission after restart was refused: the order ends
            order.text = text
            self._end(order, Trigger.CANCELED, ExecType.CANCELED, CancelCause.VENUE, text)

    def _on_trade(self, order: Order, ev: VenueEvent) -> None:
        exec_id = ev.exec_id
        if exec_id:
            seen = self._seen_venue_exec.get(ev.venue)
            if seen is None:
                seen = self._seen_venue_exec[ev.venue] = set()
            if exec_id in seen:
                return
            seen.add(exec_id)
        qty, px = ev.last_qty, ev.last_px
        state = order.state
        if state in _TERMINAL or qty <= 0:
            log.error("trade of %s on %s order %s ignored", qty, order.state.value, order.order_id)
            return
        qty = min(qty, order.leaves_qty)
        order.venue_order_id = ev.venue_order_id or order.venue_order_id
        account_index = self.directory.accounts[order.account].index
        risk = self.risk
        risk.on_fill(account_index, order.instrument_index, order.side, qty, self._risk_price[order.order_id], px)
        risk.set_reference_price(order.instrument_index, px)
        self._touch_risk(account_index)
        order.cum_qty += qty
        order.cum_value += qty * px
        leaves = order.leaves_qty = order.qty - order.cum_qty
        pending = state is _S_PENDING_CANCEL or state is _S_PENDING_REPLACE  # state.is_pending
        transition(order, _FILL if leaves == 0 else _PARTIAL_FILL)
        if leaves == 0:
            self._close_risk(order)
        # Execution.venue is the client's LastMkt (30): a router names the child venue that filled.
        self._execution(order, _EX_TRADE, last_qty=qty, last_px=px, venue=ev.last_mkt)
        if pending and order.state is _S_FILLED:
            # The pending cancel/replace can no longer happen: answer it now.
            to = CxlRejResponseTo.REPLACE if order.pending_kind == "replace" else CxlRejResponseTo.CANCEL
            if order.pending_kind in ("cancel", "replace"):
                self.reject_cancel_replace(order.session, order, order.pending_cl_ord_id, order.cl_ord_id, to,
                                           CxlRejReason.TOO_LATE_TO_CANCEL,
                                           f"too late: order {order.order_id} is filled")
            self._clear_pending(order)

    def _on_canceled(self, order: Order, ev: VenueEvent) -> None:
        # Every IOC remainder ends here: enum members come from module globals (see _ACCEPTED).
        state = order.state
        if state in _TERMINAL:
            return
        code = int(ev.reason_code)
        cause = _CAUSE_OF_REASON.get(code, _CAUSE_VENUE)
        if state is _S_PENDING_REPLACE and code == _REPLACED_TO_FILLED:
            # Replaced down to what is already filled: the replace is done and the order with it.
            self._apply_replace(order, ev)
            return
        if state is _S_PENDING_CANCEL and order.pending_kind in _CAUSE_OF_PENDING_KIND:
            if cause is _CAUSE_CLIENT or cause is _CAUSE_VENUE:
                cause = _CAUSE_OF_PENDING_KIND[order.pending_kind]
        elif cause is _CAUSE_CLIENT:
            cause = _CAUSE_VENUE  # a "user cancel" nobody here asked for: the venue's own doing
        was_replace = state is _S_PENDING_REPLACE
        text = _CAUSE_TEXT[cause] or ""
        if cause is _CAUSE_VENUE and ev.reason:
            text = f"canceled by venue {ev.venue}: {ev.reason}"
        self._close_risk(order)
        if cause in _EXPIRY_CAUSES:
            self._end(order, _EXPIRED_TRIGGER, _EX_EXPIRED, cause, text)
        else:
            self._end(order, _CANCELED_TRIGGER, _EX_CANCELED, cause, text)
        if was_replace:
            self.reject_cancel_replace(order.session, order, order.pending_cl_ord_id, order.cl_ord_id,
                                       CxlRejResponseTo.REPLACE,
                                       CxlRejReason.TOO_LATE_TO_CANCEL,
                                       f"too late: order {order.order_id} was canceled")
        self._clear_pending(order)

    def _end(self, order: Order, trigger: Trigger, exec_type: ExecType, cause: CancelCause, text: str) -> None:
        client_cancel = order.state is _S_PENDING_CANCEL and order.pending_kind == "cancel"
        transition(order, trigger)
        order.leaves_qty = 0
        self._open.pop(order.order_id, None)
        if client_cancel:
            orig = order.cl_ord_id
            order.orig_cl_ord_id = orig
            order.cl_ord_id = order.pending_cl_ord_id
            self._execution(order, exec_type, cl_ord_id=order.cl_ord_id, orig_cl_ord_id=orig, text=text,
                            reason=cause._value_)
        else:
            order.text = text
            self._execution(order, exec_type, text=text, reason=cause._value_)

    def _on_replaced(self, order: Order, ev: VenueEvent) -> None:
        if order.state is not OrderState.PENDING_REPLACE:
            log.error("REPLACED for order %s in state %s", order.order_id, order.state.value)
            return
        self._apply_replace(order, ev)

    def _apply_replace(self, order: Order, ev: VenueEvent) -> None:
        acc = self.directory.accounts[order.account]
        old_leaves = order.leaves_qty
        old_price = self._risk_price[order.order_id]
        new_qty, new_price = order.pending_qty, order.pending_price
        new_leaves = max(new_qty - order.cum_qty, 0)
        new_risk_price = old_price if order.ord_type in (OrdType.MARKET, OrdType.STOP) else new_price
        self.risk.on_replace(acc.index, order.instrument_index, order.side, old_leaves, old_price, new_leaves,
                             new_risk_price)
        self._risk_price[order.order_id] = new_risk_price
        self._touch_risk(acc.index)
        orig = order.cl_ord_id
        order.orig_cl_ord_id = orig
        order.cl_ord_id = order.pending_cl_ord_id
        order.qty = max(new_qty, order.cum_qty)
        order.price = new_price
        order.leaves_qty = new_leaves
        order.venue_cl_ord_id = ev.venue_cl_ord_id if ev.kind == VenueEventKind.REPLACED else order.venue_cl_ord_id
        self._venue_ids(order.venue)[order.venue_cl_ord_id] = order  # its later events come under this id
        order.venue_order_id = ev.venue_order_id or order.venue_order_id
        self._clear_pending(order)
        transition(order, Trigger.REPLACED)
        if order.state.is_terminal:
            self._close_risk(order)
            self._open.pop(order.order_id, None)
        self._execution(order, ExecType.REPLACED, cl_ord_id=order.cl_ord_id, orig_cl_ord_id=orig)

    def _on_amend_rejected(self, order: Order, ev: VenueEvent) -> None:
        if not order.state.is_pending:
            return
        is_replace = order.state is OrderState.PENDING_REPLACE
        kind = order.pending_kind
        cl, orig = order.pending_cl_ord_id, order.cl_ord_id
        transition(order, Trigger.REPLACE_REJECTED if is_replace else Trigger.CANCEL_REJECTED)
        self._clear_pending(order)
        self._dirty(order)
        if kind not in ("cancel", "replace"):
            return  # an internal cancel (mass cancel / kill switch) the venue could not do: nothing to answer
        reason = CxlRejReason.UNKNOWN_ORDER if ev.reason_code == int(Reason.UNKNOWN_ORDER) else (
            CxlRejReason.TOO_LATE_TO_CANCEL if ev.reason_code == int(Reason.TOO_LATE) else CxlRejReason.BROKER_OPTION)
        self.reject_cancel_replace(order.session, order, cl, orig,
                                   CxlRejResponseTo.REPLACE if is_replace else CxlRejResponseTo.CANCEL, reason,
                                   f"venue {ev.venue} refused the {'replace' if is_replace else 'cancel'}: {ev.reason}")

    def _clear_pending(self, order: Order) -> None:
        order.pending_cl_ord_id = ""
        order.pending_kind = ""
        order.pending_qty = 0
        order.pending_price = 0

    def _close_risk(self, order: Order) -> None:
        price = self._risk_price.pop(order.order_id, None)
        if price is None:
            return
        account_index = self.directory.accounts[order.account].index
        self.risk.on_close(account_index, order.instrument_index, order.side, order.leaves_qty, price)
        self._touch_risk(account_index)

    # ------------------------------------------------------------------ executions and batching
    def _execution_args(self, order: Order, exec_type: ExecType, exec_id: str, cl_ord_id: str | None,
                        orig_cl_ord_id: str | None, last_qty: int, last_px: int, text: str, reason: str,
                        ord_rej_reason: int, seq: int, venue: str = "") -> tuple:
        """An Execution's values in field order (_EXECUTION_ARGS). ``venue``: where a fill happened
        when that is not the order's venue (a router's child venue), else the order's venue."""
        return (exec_id, order.order_id, seq, order.cl_ord_id if cl_ord_id is None else cl_ord_id,
                order.orig_cl_ord_id if orig_cl_ord_id is None else orig_cl_ord_id, exec_type, order.ord_status,
                order.symbol, order.side, order.qty, order.price, last_qty, last_px, order.cum_qty, order.leaves_qty,
                order.cum_value, venue or order.venue, text or order.text, reason, ord_rej_reason, self.clock.now_ns(),
                order.account, order.session)

    def _make_execution(self, order: Order, exec_type: ExecType, *, exec_id: str = "", cl_ord_id: str | None = None,
                        orig_cl_ord_id: str | None = None, last_qty: int = 0, last_px: int = 0, text: str = "",
                        reason: str = "", ord_rej_reason: int = -1, seq: int = 0) -> Execution:
        return Execution(*self._execution_args(order, exec_type, exec_id, cl_ord_id, orig_cl_ord_id, last_qty,
                                               last_px, text, reason, ord_rej_reason, seq))

    def _execution(self, order: Order, exec_type: ExecType, *, cl_ord_id: str | None = None,
                   orig_cl_ord_id: str | None = None, last_qty: int = 0, last_px: int = 0, text: str = "",
                   reason: str = "", ord_rej_reason: OrdRejReason | None = None, venue: str = "") -> Execution:
        # The hot path (twice per order): one value tuple makes the Execution, its stored row and
        # (with the order's fields) the ExecReport; the counter goes into the batch at flush.
        seq = self._exec_seq = self._exec_seq + 1
        ts = self.clock.now_ns()
        ord_status = ORD_STATUS_OF[order.state]
        args = (f"X{seq}", order.order_id, seq, order.cl_ord_id if cl_ord_id is None else cl_ord_id,
                order.orig_cl_ord_id if orig_cl_ord_id is None else orig_cl_ord_id, exec_type, ord_status,
                order.symbol, order.side, order.qty, order.price, last_qty, last_px, order.cum_qty, order.leaves_qty,
                order.cum_value, venue or order.venue, text or order.text, reason,
                ord_rej_reason._value_ if ord_rej_reason is not None else -1, ts, order.account, order.session)
        ex = _new_tuple(Execution, args)
        order.updated_ns = ts
        row = _ExecutionRow(args).__dict__  # == ex.to_row(), without reading the fields back
        batch = self._batch
        batch.orders[order.order_id] = order  # type: ignore[assignment]  # the row is taken at flush
        batch.executions.append(row)
        if self._subscribers:  # a snapshot per event only when someone listens
            batch.events.append((ex, self._row(order)))
        batch.outputs.append(_new_tuple(ExecReport, (order.session, ex, ord_rej_reason, "", -1, False, False,
                                                     order.qty, order.ord_type, order.stop_px, order.tif, False)))
        if not self._flush_scheduled:
            self._schedule_flush()
        return ex

    def _dirty(self, order: Order) -> None:
        # The row is taken at flush: an order changed several times in one batch is serialised once.
        self._batch.orders[order.order_id] = order  # type: ignore[assignment]
        if not self._flush_scheduled:
            self._schedule_flush()

    def _row(self, order: Order) -> dict[str, Any]:
        """The order's stored row (== Order.to_row() plus risk_price), a snapshot."""
        return _OrderRow(order, self._risk_price.get(order.order_id, 0)).__dict__

    def _touch_risk(self, account_index: int) -> None:
        self._batch.risk_usage[account_index] = None  # type: ignore[assignment]  # filled at flush
        self._schedule_flush()

    def _emit(self, output: Output) -> None:
        self._batch.outputs.append(output)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            # Two hops: callbacks already queued for this round run first, above all an in-process
            # venue's answers to the orders just sent, so an order's PendingNew and the venue's
            # ack share one commit instead of two in series (at 1,000 orders/s: 23 % less CPU).
            # flush_soon() saves the first hop when the caller knows those answers are queued.
            loop = self._loop
            if loop is None or not loop.is_running():
                loop = self._running_loop()
            self._flush_hop = loop.call_soon(self._flush_second_hop)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, as ``asyncio.get_running_loop()`` (RuntimeError outside one).

        That call makes a getpid() system call each time (CPython's fork check): ~0.25 us hot,
        more on a cold VM, and scheduling a flush needs the loop twice per batch. So the loop it
        returned is kept while it runs (the manager lives on one loop); a stopped one (a test's
        next ``asyncio.run``) is asked for again."""
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def _flush_second_hop(self) -> None:
        self._flush_hop = None
        self._running_loop().call_soon(self.flush)

    def flush_soon(self) -> None:
        """Flush one loop hop from now instead of two, when a flush is scheduled and its first
        hop has not run. For a caller whose callback is ending, when every callback it caused is
        already queued (the FIX acceptor at the end of a read: the in-process venues' answers to
        the orders it entered): the batch still holds those answers, and the reports leave one
        loop iteration earlier (under load, that is one read of orders earlier)."""
        hop = self._flush_hop
        if hop is not None:
            hop.cancel()
            self._flush_hop = None
            self._running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Hand the current batch to the journal (called once per loop iteration with changes).

        The journal may call back ``_on_durable`` inside ``submit`` (a same-thread write) or
        later on the loop: the batch is complete and a fresh one is current before submit."""
        self._flush_scheduled = False
        hop = self._flush_hop
        if hop is not None:  # flushed early (note_meta, stop): the scheduled hops have nothing to do
            hop.cancel()
            self._flush_hop = None
        batch = self._batch
        # The id counters ride with the batch holding the ids they gave out.
        if self._order_seq != self._stored_order_seq:
            self._stored_order_seq = self._order_seq
            batch.meta["order_seq"] = str(self._order_seq)
        if self._exec_seq != self._stored_exec_seq:
            self._stored_exec_seq = self._exec_seq
            batch.meta["exec_seq"] = str(self._exec_seq)
        if self._marks_moved:
            # Which stored reports went out (see _on_durable): rides with this batch, no commit
            # of its own. Same text as json.dumps, with each session's JSON string made once.
            self._marks_moved = False
            keys = self._json_keys
            batch.meta["sent_exec_seq"] = "{" + ", ".join([
                f"{keys.get(k) or keys.setdefault(k, json.dumps(k))}: {v}"
                for k, v in self._sent_exec_seq.items()]) + "}"
        if batch.empty() and not batch.risk_usage:
            return
        self._batch = Batch()
        # Each changed order's row (== self._row(order)), the method call inlined: once per order per flush.
        # Replaced in place (same keys, so iterating while assigning is safe): no second dict.
        risk_price = self._risk_price.get
        orders = batch.orders
        for oid, order in orders.items():
            orders[oid] = _OrderRow(order, risk_price(oid, 0)).__dict__  # type: ignore[assignment]
        for index in list(batch.risk_usage):
            batch.risk_usage[index] = self.risk.usage(index)
        self.in_flight += 1
        try:
            self.journal.submit(batch, self._on_durable)
        except BaseException:  # a failed journal refuses the batch: nothing of it is in flight
            self.in_flight -= 1
            raise

    def _on_durable(self, batch: Batch) -> None:
        self.in_flight -= 1
        hooks = self._delivery_hooks
        if hooks is None:
            self._deliver(batch)
            return
        hooks[0]()
        try:
            self._deliver(batch)
        finally:
            hooks[1]()

    def _deliver(self, batch: Batch) -> None:
        """A durable batch's venue requests, outputs and subscriber events, in that order."""
        if batch.venue_sends is not None:
            # Write-ahead requests first: the venue's answer is what the client waits for.
            for call, args in batch.venue_sends:
                try:
                    call(*args)
                except Exception:  # a venue's bug must not stop this batch's reports
                    log.exception("venue request %s%r failed", getattr(call, "__qualname__", call), args)
        sink = self._outputs_sink
        if sink is not None:
            sent = self._sent_exec_seq
            moved = False
            for output in batch.outputs:
                try:
                    sink(output)
                except Exception:  # one broken session must not stop the others' reports
                    log.exception("sending %s failed", type(output).__name__)
                    continue
                if type(output) is ExecReport:
                    # By position (field orders checked at import): .execution.seq, .session.
                    seq = output[1][2]
                    session = output[0]
                    if seq > sent.get(session, 0):
                        if not moved:  # the marks are replaced, not changed: they may not be stored
                            sent = dict(sent)
                            moved = True
                        sent[session] = seq
            if moved and self._outputs_stored is not None:
                # The mark below may be committed before the sessions' transports next write
                # (and store) their output: a kill in between would lose reports that are then
                # neither in the FIX store nor sent again. So they are stored first.
                try:
                    self._outputs_stored()
                except Exception:  # not stored: leave them unmarked, a restart sends them again
                    log.exception("storing sent reports failed")
                    moved = False
            if moved:
                # Which stored reports went out: rides along with the next batch (no commit of its
                # own), so after a crash at most the last batch's reports are sent again.
                self._sent_exec_seq = sent
                self._marks_moved = True  # written into the batch at the next flush
        if self._subscribers:
            for ex, row in batch.events:
                event = OrderEvent(ex, Order.from_row(row))
                for callback in list(self._subscribers):
                    try:
                        callback(event)
                    except Exception:
                        log.exception("order event subscriber failed")

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait until every batch handed to the journal is durable and sent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (self.in_flight or self._flush_scheduled) and loop.time() < deadline:
            await asyncio.sleep(0.002)

    # ------------------------------------------------------------------ recovery
    def restore(self, orders: Iterable[dict[str, Any]], cl_ord_ids: Iterable[tuple[str, str, str]],
                meta: dict[str, str], risk_snapshot: dict[int, dict[str, Any]],
                recent_executions: Iterable[dict[str, Any]] = ()) -> None:
        """Load state saved by the journal (before venues start). ``recent_executions`` are the
        stored executions that may not have been sent (see SqliteJournal.open)."""
        self._sent_exec_seq = {k: int(v) for k, v in json.loads(meta.get("sent_exec_seq", "{}")).items()}
        self._unsent = [e for e in recent_executions if e["seq"] > self._sent_exec_seq.get(e["session"], 0)]
        for row in orders:
            order = Order.from_row(row)
            self.orders[order.order_id] = order
            if order.is_open:
                self._open[order.order_id] = order
                self._risk_price[order.order_id] = int(row.get("risk_price", 0))
        for session, cl, oid in cl_ord_ids:
            self._by_cl_ord_id[(session, cl)] = oid
        self._order_seq = self._stored_order_seq = int(meta.get("order_seq", "0"))
        self._exec_seq = self._stored_exec_seq = int(meta.get("exec_seq", "0"))
        if meta.get("kill_state"):
            state = json.loads(meta["kill_state"])
            self.risk.kill("global", None, bool(state.get("global")))
            for firm in state.get("firms", []):
                self.risk.kill("firm", firm, True)
            for account in state.get("accounts", []):
                self.risk.kill("account", account, True)
            self._killed = frozenset(self.risk.killed_accounts())
        if risk_snapshot:
            self.risk.restore(risk_snapshot)

    def hold_at_venue(self, order_id: str, acknowledged: bool = False) -> Order:
        """After :meth:`restore`, before :meth:`resubmit_open_orders`: the open order ``order_id``
        is still held by its venue, a venue process that outlived this server (a FixVenue, which
        reconciles it at logon), so it must not be entered again. Its venue ids are mapped again,
        so the venue's events reach it, and ``resubmit_open_orders`` leaves it where it is.
        ``acknowledged``: the venue has taken the order back as live and will say nothing more
        about its entry (a router restoring a parent whose children rest at venue processes): an
        order still PENDING_NEW (journaled before it was sent, write-ahead) is acknowledged now
        (New). Returns the order; ValueError when it is not an open order with a venue id."""
        order = self._open.get(order_id)
        if order is None:
            raise ValueError(f"hold_at_venue: {order_id!r} is not an open order (restore() it first)")
        if not order.venue_cl_ord_id:
            raise ValueError(f"hold_at_venue: order {order_id} was never sent to a venue")
        # Every venue ClOrdID the order had or was about to get (a replace journaled before it
        # left, write-ahead: ``venue_seq`` counts it), so a late or resent event for any of them,
        # e.g. the venue's Replaced and the fills under the new id, reaches the order.
        ids = self._venue_ids(order.venue)
        for k in range(1, order.venue_seq + 1):
            ids[f"{order_id}.{k}"] = order
        ids[order.venue_cl_ord_id] = order
        self._held_at_venue.add(order_id)
        if acknowledged and order.state is OrderState.PENDING_NEW:
            transition(order, Trigger.ACCEPTED)
            self._execution(order, ExecType.NEW)
        return order

    def resend_owed_reports(self) -> int:
        """After a restart: send again (PossResend) the stored reports that may not have gone out
        (numbered above their session's sent mark). Call it once the output sink is set and
        before anything at start can report (a router settling a parent, a FIX venue's
        reconciliation): a newer report delivered first would move the session's sent mark past
        these, so a kill before they go out would lose them for good (a restart resends only
        reports above the mark), and the client would see them after the same order's newer
        reports. They ride in the current batch, ahead of whatever follows. Returns how many."""
        owed = sorted(self._unsent, key=lambda e: e["seq"])
        self._unsent = []
        for row in owed:
            ex = Execution.from_row(row)
            order = self.orders.get(ex.order_id)
            rej = OrdRejReason(ex.ord_rej_reason) if ex.ord_rej_reason in OrdRejReason._value2member_map_ else None
            self._emit(ExecReport(ex.session, ex, rej, order_qty=ex.qty, ord_type=order.ord_type if order else 0,
                                  stop_px=order.stop_px if order else 0, tif=order.tif if order else 0,
                                  poss_resend=True))
        return len(owed)

    def resubmit_open_orders(self) -> int:
        """After a restart: send again the owed reports not yet sent (:meth:`resend_owed_reports`,
        which a server calls earlier), put every open order back on its venue (in entry order)
        and finish what was in flight: a pending cancel completes, a pending replace is refused.
        Orders held at their venue (:meth:`hold_at_venue`) are left to the venue's
        reconciliation."""
        self.resend_owed_reports()
        count = 0
        for order in self.open_orders():
            if order.order_id in self._held_at_venue:
                continue
            venue = self.venues.get(order.venue)
            if order.state is OrderState.PENDING_CANCEL:
                if order.pending_kind != "cancel":
                    order.text = _CAUSE_TEXT.get(CancelCause(order.pending_kind) if order.pending_kind in
                                                 CancelCause._value2member_map_ else CancelCause.RESTART, "")
                self._close_risk(order)
                self._end(order, Trigger.CANCELED, ExecType.CANCELED,
                          CancelCause.CLIENT if order.pending_kind == "cancel" else CancelCause.RESTART,
                          order.text)
                self._clear_pending(order)
                continue
            if order.state is OrderState.PENDING_REPLACE:
                cl, orig = order.pending_cl_ord_id, order.cl_ord_id
                transition(order, Trigger.REPLACE_REJECTED)
                self._clear_pending(order)
                self.reject_cancel_replace(order.session, order, cl, orig, CxlRejResponseTo.REPLACE,
                                           CxlRejReason.BROKER_OPTION,
                                           "server restarted while the replace was pending: order kept unchanged")
            if venue is None:
                self._close_risk(order)
                self._end(order, Trigger.CANCELED, ExecType.CANCELED, CancelCause.VENUE,
                          f"venue {order.venue} is no longer configured")
                continue
            inst = self.instruments.by_index(order.instrument_index)
            silent = order.state is not OrderState.PENDING_NEW
            self._send_to_venue(order, inst, venue)
            if silent:
                self._absorb_ack.add((order.venue, order.venue_cl_ord_id))
            count += 1
        self._schedule_flush()
        return count


def avg_px(order_or_exec: Any, tick_size: Decimal) -> Decimal:
    """AvgPx (6) as a price: cum_value / cum_qty ticks x tick size, exact while it terminates."""
    if order_or_exec.cum_qty == 0:
        return Decimal(0)
    return Decimal(order_or_exec.cum_value) * tick_size / Decimal(order_or_exec.cum_qty)
