"""FixVenue: the Venue interface over a FIX 4.4 initiator session to a venue process.

``FixVenue`` implements :class:`crossbook.routing.venue.Venue` for an exchange reached over FIX
(``crossbook venue``, or any FIX 4.4 acceptor that answers NewOrderSingle / cancel / replace /
status with ExecutionReports). It keeps the semantics of ``InProcessVenue`` so that the OMS and
the router cannot tell the two apart:

* ``new_order`` / ``cancel_order`` / ``replace_order`` / ``order_status`` send D / F / G / H with
  the OMS's ids as ClOrdID; ExecutionReports and OrderCancelRejects come back as ``VenueEvent`` s
  of the same kinds, reasons, ``venue_order_id`` and ``exec_id``, delivered through the sink from
  a loop callback (never re-entrantly), in order, batched.
* While the session is not logged on, requests are answered locally with ``VENUE_DOWN``
  (``"venue down: VENUE-A is disconnected"``), exactly as ``InProcessVenue.set_up(False)``.
* The session is kept up: reconnect with exponential backoff; sequence numbers survive
  reconnects (and OMS restarts when ``store_path`` is given: a ``FileStore``), so the venue's
  resend brings back ExecutionReports missed while down. A TRADE whose ``exec_id`` was already
  delivered is dropped (idempotency).
* On every logon it reconciles: an OrderStatusRequest for each order it believes live or pending,
  then corrective events for what really happened (a TRADE for fills it never saw, CANCELED for an
  order the venue no longer knows, e.g. after a venue restart, REJECTED for an order the venue
  never received), then a ``STATUS`` event with ``reason="reconciled after reconnect"``.
* Market data: on logon it subscribes (MarketDataRequest, incremental) to every instrument it
  lists and keeps a local copy of the top ``md_depth`` levels for ``top_of_book`` / ``depth``.
* Up/down: ``add_state_listener(cb)``; ``cb(venue_name, up, reason)`` is called from the same
  FIFO as the events (a DOWN comes before the VENUE_DOWN answers it causes).

docs/venue-process.md describes the whole picture.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from crossbook.core import REASON_TEXT, OrdType, Reason, Side, Status, TimeInForce
from crossbook.fix.messages import Message, parse_timestamp
from crossbook.fix.session import Application, DoNotSend, Session
from crossbook.fix.settings import SessionSettings
from crossbook.fix.transport import Initiator
from crossbook.model.instruments import Instrument, InstrumentMaster
from crossbook.routing.outbox import EventOutbox
from crossbook.routing.venue import Level, VenueEvent, VenueEventKind, VenueOrder, VenueReason

__all__ = ["FixVenue", "RECONCILED", "REASON_CODE_TAG", "STP_MODE_TAG"]

log = logging.getLogger(__name__)

#: User-defined tags shared with crossbook.venues.fixserver (the exact reason code; STP mode).
REASON_CODE_TAG = 5100
STP_MODE_TAG = 5102
#: ``reason`` of the STATUS event that closes the reconciliation of one order after a logon.
RECONCILED = "reconciled after reconnect"

_K = VenueEventKind
_EXEC_KIND = {b"0": _K.NEW, b"8": _K.REJECTED, b"F": _K.TRADE, b"4": _K.CANCELED, b"5": _K.REPLACED,
              b"D": _K.STOP_TRIGGERED, b"C": _K.CANCELED}
# Standard reason fields back to our codes, for venues that do not send tag 5100.
_ORD_REJ_CODE = {b"1": int(VenueReason.NOT_LISTED), b"5": int(Reason.UNKNOWN_ORDER), b"6": int(Reason.DUPLICATE_ID),
                 b"2": int(VenueReason.VENUE_DOWN), b"13": int(Reason.INVALID_QTY)}
_CXL_REJ_CODE = {b"0": int(Reason.TOO_LATE), b"1": int(Reason.UNKNOWN_ORDER), b"6": int(Reason.DUPLICATE_ID),
                 b"2": int(VenueReason.VENUE_DOWN)}
_TEXT_CODE = {text: int(r) for r, text in REASON_TEXT.items()}
_DONE = (int(Status.FILLED), int(Status.CANCELLED), int(Status.REJECTED))
_LIMIT_TYPES = (OrdType.LIMIT, OrdType.STOP_LIMIT)
_STOP_TYPES = (OrdType.STOP, OrdType.STOP_LIMIT)


#: Most entries a per-instrument text cache holds before it starts again (bounded memory).
_CACHE_MAX = 4096


class _WireInstrument:
    """One instrument's FIX texts, made once: the instrument block as bytes and prices of the tick
    grid both ways (ticks -> text for orders, text -> ticks for fills). Caches are bounded."""

    __slots__ = ("inst", "ident", "_px", "_ticks")

    def __init__(self, inst: Instrument) -> None:
        self.inst = inst
        self.ident = [(t, v.encode("latin-1")) for t, v in _instrument_fields(inst)]
        self._px: dict[int, bytes] = {}
        self._ticks: dict[bytes, int] = {}

    def px(self, ticks: int) -> bytes:
        text = self._px.get(ticks)
        if text is None:
            text = _px(self.inst, ticks).encode()
            if len(self._px) >= _CACHE_MAX:
                self._px.clear()
            self._px[ticks] = text
        return text

    def ticks(self, raw: bytes) -> int:
        """A wire price as ticks; raises as ``Instrument.price_to_ticks`` does."""
        ticks = self._ticks.get(raw)
        if ticks is None:
            ticks = self.inst.price_to_ticks(raw.decode("latin-1"))
            if len(self._ticks) >= _CACHE_MAX:
                self._ticks.clear()
            self._ticks[raw] = ticks
        return ticks


class _SystemClock:
    @staticmethod
    def now_ns() -> int:
        return time.time_ns()


@dataclass(slots=True, eq=False)
class _Tracked:
    """What the connector knows of one order (all ids of its chain map to the same object)."""

    cl_ord_id: str                # latest id of the chain the venue accepted
    instrument: Instrument
    side: Side
    ord_type: OrdType
    tif: TimeInForce
    qty: int
    price: int
    stop_price: int
    venue_order_id: str = ""
    acked: bool = False
    done: bool = False
    cum: int = 0
    leaves: int = 0
    notional: int = 0             # sum of last_qty x last_px seen (ticks)
    status: int = int(Status.RESTING)
    pending: dict[str, str] = field(default_factory=dict)   # request cl id -> "cancel" | "replace"
    ids: list[str] = field(default_factory=list)             # every id of the chain
    forgotten_after: bool = False                            # queued in _done


class _BackoffInitiator(Initiator):
    """The engine's Initiator with exponential reconnect backoff (min_s, doubling up to max_s;
    back to min_s after a logon) instead of a fixed ReconnectInterval."""

    def __init__(self, settings: SessionSettings, application: Application, *, min_s: float, max_s: float) -> None:
        super().__init__(settings, application)
        self.min_s = min_s
        self.max_s = max_s
        self.delay = min_s

    def logged_on(self) -> None:
        self.delay = self.min_s

    def reconnect_delay(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, self.max_s)
        return delay


class FixVenue(Application):
    """A remote venue reached over a FIX 4.4 initiator session (implements the Venue protocol).

    ``name``: the venue's name (instruments list it in ``venues``). ``instruments``: the OMS's
    master (the venue process must list the same symbols and tick sizes). ``host`` / ``port``:
    the venue's acceptor. ``sender_comp_id`` / ``target_comp_id``: our CompID / the venue's.
    ``store_path``: directory of the FIX FileStore (None: memory, sequence numbers survive
    reconnects but not an OMS restart). ``heartbeat_s``: HeartBtInt. ``reconnect_min_s`` /
    ``reconnect_max_s``: backoff bounds. ``md_depth``: levels kept per side (0: no market data
    subscription). Reason codes are read from tag 5100 when the venue sends it (a crossbook venue
    session with ``reason_codes = true``); otherwise they are derived from OrdRejReason /
    CxlRejReason and the text.
    ``max_done_orders``: finished orders remembered (late reports, status); the oldest are
    forgotten first. ``validate``: check the venue's messages against the FIX 4.4 dictionary
    (False: about twice the message rate, for a trusted venue).
    """

    #: Orders sent here stay live when the OMS process dies (the venue is another process): a
    #: router writes its children's audit rows ahead of sending them here (SmartRouter).
    outlives_process = True

    def __init__(self, name: str, instruments: InstrumentMaster, *, host: str, port: int, sender_comp_id: str,
                 target_comp_id: str, store_path: str | None = None, heartbeat_s: int = 30,
                 reconnect_min_s: float = 0.2, reconnect_max_s: float = 10.0, md_depth: int = 5,
                 username: str | None = None, password: str | None = None, reset_on_logon: bool = False,
                 logon_timeout_s: float = 10.0, clock=None, max_done_orders: int = 1_000_000,
                 validate: bool = True) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"venue name must be a non-empty string, got {name!r}")
        if not isinstance(instruments, InstrumentMaster):
            raise TypeError(f"instruments must be an InstrumentMaster, got {type(instruments).__name__}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"port must be an int from 1 to 65535, got {port!r}")
        for what, v in (("reconnect_min_s", reconnect_min_s), ("reconnect_max_s", reconnect_max_s)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 3600:
                raise ValueError(f"{what} must be seconds in (0, 3600], got {v!r}")
        if reconnect_max_s < reconnect_min_s:
            raise ValueError(f"reconnect_max_s ({reconnect_max_s}) must be >= reconnect_min_s ({reconnect_min_s})")
        if isinstance(md_depth, bool) or not isinstance(md_depth, int) or not 0 <= md_depth <= 1000:
            raise ValueError(f"md_depth must be an int from 0 to 1000, got {md_depth!r}")
        self.name = name
        self._master = instruments
        self._listed = {inst.key: inst for inst in instruments.on_venue(name)}
        self._clock = clock or _SystemClock()
        self.md_depth = md_depth
        self.settings = SessionSettings(
            begin_string="FIX.4.4", sender_comp_id=sender_comp_id, target_comp_id=target_comp_id,
            connection_type="initiator", heart_bt_int=heartbeat_s, socket_connect_host=host,
            socket_connect_port=port, store="file" if store_path else "memory", file_store_path=store_path,
            username=username, password=password, reset_on_logon=reset_on_logon, logon_timeout=logon_timeout_s,
            validate_user_defined_fields=False, use_data_dictionary=bool(validate))
        self._initiator = _BackoffInitiator(self.settings, self, min_s=float(reconnect_min_s),
                                            max_s=float(reconnect_max_s))
        self._started = False
        self._stopped = False
        self._up = False
        # Events and up/down notices share one FIFO (a DOWN comes before the VENUE_DOWN answers it causes).
        self._outbox = EventOutbox(name, label="venue")
        self._orders: dict[str, _Tracked] = {}
        self._awaiting: set[str] = set()                     # D/F/G ids not answered yet
        self._pending_replace: dict[str, tuple[int, int]] = {}
        self._done: deque[_Tracked] = deque()
        self._max_done = max_done_orders
        self._seen_exec: set[str] = set()
        self._seen_order: deque[str] = deque()
        self._max_seen = 1_000_000
        self._status_ids = itertools.count(1)
        self._status_req: dict[str, tuple[str, bool]] = {}  # OrdStatusReqID -> (asked cl, reconciliation?)
        self._status_wanted: list[str] = []                  # asked while down: sent on logon
        self._md_req: dict[bytes, Instrument] = {}
        self._books: dict[str, tuple[dict[int, tuple[int, int]], dict[int, tuple[int, int]]]] = {}
        # book_version(): per listing key, bumped by every market data message applied to its book
        # and when the books are dropped (logon, disconnect).
        self._md_changes: dict[str, int] = {}
        self._md_ready: set[str] = set()    # instrument keys whose snapshot came since the last logon
        self._connections = 0
        self._live_send = False
        self._wire: dict[str, _WireInstrument] = {}
        self._ts_raw: bytes | None = None   # the last TransactTime text read and its value (ns):
        self._ts_ns = 0                     # the reports of one read usually share it
        #: Counters for tests and monitoring.
        self.logons = 0
        self.duplicate_execs_dropped = 0
        self.reconciled_orders = 0

    # ============================================================================================
    # Venue protocol
    # ============================================================================================
    def lists(self, instrument: Instrument) -> bool:
        return isinstance(instrument, Instrument) and instrument.key in self._listed

    def set_event_sink(self, sink: Callable[[VenueEvent], None]) -> None:
        self._outbox.set_sink(sink)

    def add_state_listener(self, listener: Callable[[str, bool, str], None]) -> None:
        """``listener(venue_name, up, reason)`` on every logon (up) and disconnect (down), from
        the same FIFO as the events."""
        self._outbox.add_state_listener(listener)

    @property
    def is_up(self) -> bool:
        return self._started and self._up

    @property
    def session(self) -> Session:
        """The FIX session (sequence numbers: ``next_sender_seq`` / ``next_target_seq``)."""
        return self._initiator.session()

    async def start(self) -> None:
        """Start connecting (in the background; watch ``is_up`` or a state listener). A FixVenue
        is started once: after ``stop()`` its store is closed; build a new one to connect again."""
        if self._started:
            return
        if self._stopped:
            raise RuntimeError(f"FixVenue {self.name} was stopped; build a new one to connect again")
        self._outbox.loop = asyncio.get_running_loop()
        self._started = True
        await self._initiator.start()

    async def wait_up(self, timeout: float) -> bool:
        """Wait until logged on; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.is_up:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def stop(self) -> None:
        """Log out and stop reconnecting; afterwards requests get VENUE_DOWN "is not started"."""
        if not self._started:
            return
        self._stopped = True
        await self._initiator.stop()
        self._started = False
        self._set_down("stopped")

    def new_order(self, order: VenueOrder) -> None:
        if not isinstance(order, VenueOrder):
            raise TypeError(f"new_order takes a VenueOrder, got {type(order).__name__}")
        cl = order.venue_cl_ord_id
        if not isinstance(cl, str) or not cl:
            raise ValueError(f"venue_cl_ord_id must be a non-empty string, got {cl!r}")
        now = self._clock.now_ns()
        if not self.is_up:
            return self._outbox.push(self._reject(cl, VenueReason.VENUE_DOWN, self._down_text(), now))
        inst = order.instrument
        if not self.lists(inst):
            key = getattr(inst, "key", inst)
            return self._outbox.push(self._reject(cl, VenueReason.NOT_LISTED, f"{key} is not listed on {self.name}",
                                                  now))
        if cl in self._orders or cl in self._awaiting:
            return self._outbox.push(self._reject(cl, Reason.DUPLICATE_ID, f"duplicate venue_cl_ord_id {cl}", now))
        t = _Tracked(cl, inst, order.side, order.ord_type, order.tif, order.qty, order.price, order.stop_price,
                     leaves=order.qty)
        # Values as bytes: the session then converts nothing (that was a third of this call).
        w = self._wire_of(inst)
        ord_type = order.ord_type
        body: list = [(11, cl.encode("latin-1")), (1, _int_bytes(order.owner)), *w.ident, (54, b"%d" % order.side),
                      (60, _stamp_bytes(now)), (38, _int_bytes(order.qty)), (40, b"%d" % ord_type)]
        if ord_type in _LIMIT_TYPES:
            body.append((44, w.px(order.price)))
        if ord_type in _STOP_TYPES:
            body.append((99, w.px(order.stop_price)))
        body.append((59, b"%d" % order.tif))
        if order.tif == TimeInForce.GTD:
            body.append((126, _stamp_bytes(order.expire_time)))
        if order.post_only:
            body.append((18, b"6"))
        if order.display_qty:
            body.append((111, _int_bytes(order.display_qty)))
        if int(order.stp):
            body.append((STP_MODE_TAG, b"%d" % order.stp))
        t.ids.append(cl)
        self._orders[cl] = t
        self._awaiting.add(cl)
        self._send(b"D", body)

    def cancel_order(self, venue_cl_ord_id: str, cancel_cl_ord_id: str) -> None:
        now = self._clock.now_ns()
        t = self._orders.get(venue_cl_ord_id)
        if not self.is_up:
            return self._outbox.push(self._request_reject(_K.CANCEL_REJECTED, cancel_cl_ord_id, venue_cl_ord_id, t,
                                                          VenueReason.VENUE_DOWN, self._down_text(), now))
        if not isinstance(cancel_cl_ord_id, str) or not cancel_cl_ord_id:
            raise ValueError(f"cancel_cl_ord_id must be a non-empty string, got {cancel_cl_ord_id!r}")
        body: list = [(41, venue_cl_ord_id)]
        if t is not None and t.venue_order_id:
            body.append((37, t.venue_order_id))
        body.append((11, cancel_cl_ord_id))
        body += _instrument_fields(t.instrument) if t is not None else [(55, "[N/A]")]
        body += [(54, int(t.side) if t is not None else 1)]
        if t is not None:
            body.append((38, t.qty))
            t.pending[cancel_cl_ord_id] = "cancel"
        body.append((60, _stamp(now)))
        self._awaiting.add(cancel_cl_ord_id)
        self._send(b"F", body)

    def replace_order(self, venue_cl_ord_id: str, new_venue_cl_ord_id: str, qty: int, price: int) -> None:
        now = self._clock.now_ns()
        t = self._orders.get(venue_cl_ord_id)
        new = new_venue_cl_ord_id
        if not self.is_up:
            return self._outbox.push(self._request_reject(_K.REPLACE_REJECTED, new, venue_cl_ord_id, t,
                                                          VenueReason.VENUE_DOWN, self._down_text(), now))
        if not isinstance(new, str) or not new:
            raise ValueError(f"new_venue_cl_ord_id must be a non-empty string, got {new!r}")
        if isinstance(qty, bool) or not isinstance(qty, int) or isinstance(price, bool) or not isinstance(price, int):
            raise TypeError(f"qty and price must be ints (units, ticks), got {qty!r}, {price!r}")
        if t is None:
            # The venue answers "unknown order"; the message still needs a side and an instrument.
            body = [(41, venue_cl_ord_id), (11, new), (55, "[N/A]"), (54, 1), (60, _stamp(now)), (38, qty), (40, 2)]
        else:
            body = [(37, t.venue_order_id or "NONE"), (41, venue_cl_ord_id), (11, new),
                    *_instrument_fields(t.instrument), (54, int(t.side)), (60, _stamp(now)), (38, qty),
                    (40, int(t.ord_type))]
            if t.ord_type in _LIMIT_TYPES:
                body.append((44, _px(t.instrument, price)))
            body.append((59, int(t.tif)))
            t.pending[new] = "replace"
            self._pending_replace[new] = (qty, price)
        self._awaiting.add(new)
        self._send(b"G", body)

    def order_status(self, venue_cl_ord_id: str) -> None:
        if not self.is_up:
            # Asked while down: the question goes out on the next logon (with the reconciliation).
            self._status_wanted.append(venue_cl_ord_id)
            return
        self._send_status(venue_cl_ord_id, reconcile=False)

    def restore_order(self, order: VenueOrder, cum_qty: int = 0, venue_order_id: str = "",
                      acked: bool = True, notional: int = 0) -> None:
        """After an OMS restart: start tracking an order the OMS recovered as open at this venue
        and ask the venue for its state. Unlike an in-process venue, a remote venue kept the order:
        nothing is re-entered. Answered (now if up, else after the next logon) by the
        reconciliation events and a STATUS with ``reason="reconciled after reconnect"``.
        ``acked=False``: the OMS never saw the venue acknowledge it; if the venue does not know
        it, it never received it, and the answer is REJECTED (not CANCELED). ``notional``: the
        value (sum of qty x price, ticks) of the ``cum_qty`` already filled, so that a TRADE for
        fills found by the reconciliation is priced to make AvgPx exact."""
        if not isinstance(order, VenueOrder):
            raise TypeError(f"restore_order takes a VenueOrder, got {type(order).__name__}")
        cl = order.venue_cl_ord_id
        if cl in self._orders:
            raise ValueError(f"venue_cl_ord_id {cl} is already tracked by {self.name}")
        t = _Tracked(cl, order.instrument, order.side, order.ord_type, order.tif, order.qty, order.price,
                     order.stop_price, venue_order_id=venue_order_id, acked=bool(acked), cum=cum_qty,
                     leaves=order.qty - cum_qty, ids=[cl], notional=notional)
        self._orders[cl] = t
        if self.is_up:
            self._send_status(cl, reconcile=True)

    def top_of_book(self, instrument: Instrument) -> tuple[int, int, int, int] | None:
        if not self.lists(instrument):
            return None
        bids, asks = self._books.get(instrument.key, ({}, {}))
        bp = max(bids) if bids else 0
        ap = min(asks) if asks else 0
        return (bp, bids[bp][0] if bp else 0, ap, asks[ap][0] if ap else 0)

    def book_version(self, instrument: Instrument) -> int:
        """A counter of the instrument's market data book that changes whenever what
        :meth:`depth` / :meth:`top_of_book` read may have changed (a snapshot or incremental
        update applied, the books dropped at logon or disconnect): equal values mean the book
        reads the same (the router keeps what it read). -1 for an instrument not listed here."""
        if not self.lists(instrument):
            return -1
        return self._md_changes.get(instrument.key, 0)

    def market_data_ready(self, instrument: Instrument) -> bool:
        """Whether the instrument's book was received since the last logon (its first market
        data snapshot): before it, :meth:`depth` reads empty although the venue's book may not
        be. True when no market data is subscribed (``md_depth`` 0: no book ever comes); False
        while down or for an instrument not listed here."""
        if not self.lists(instrument) or not self._up:
            return False
        return not self.md_depth or instrument.key in self._md_ready

    def depth(self, instrument: Instrument, levels: int = 10) -> tuple[list[Level], list[Level]]:
        if not self.lists(instrument):
            return ([], [])
        bids, asks = self._books.get(instrument.key, ({}, {}))
        return ([(p, *bids[p]) for p in sorted(bids, reverse=True)[:levels]],
                [(p, *asks[p]) for p in sorted(asks)[:levels]])

    # ============================================================================================
    # FIX application callbacks
    # ============================================================================================
    def on_logon(self, session: Session) -> None:
        self._initiator.logged_on()
        self._up = True
        self.logons += 1
        self._connections += 1
        self._outbox.push_state(True, f"logged on to {self.settings.socket_connect_host}:"
                                      f"{self.settings.socket_connect_port}")
        if self.md_depth:
            self._subscribe_market_data()
        self._reconcile()

    def on_logout(self, session: Session) -> None:
        why = getattr(session, "last_disconnect_reason", None)
        self._set_down("stopped" if self._stopped else f"disconnected: {why}" if why else "disconnected")

    def to_app(self, session: Session, msg_type: bytes, body) -> None:
        if self._live_send:
            return
        # A resend (the venue missed messages). Order entry is replayed only while still
        # unanswered, so a venue that lost its store never sees stale orders again; status and
        # market data requests are asked afresh after every logon, so only those of the current
        # connection go again: a venue that saw a gap at this logon (messages of the previous
        # connection that never reached it) asks for everything from the gap on, including the
        # reconciliation's requests sent right after the logon, and must not lose them.
        key = {b"D": 11, b"F": 11, b"G": 11, b"H": 790, b"V": 262}.get(msg_type)
        if key is not None:
            v = next((v for t, v in body if t == key), b"")
            v = v.decode("latin-1") if isinstance(v, bytes) else str(v)
            if msg_type == b"V":
                if v.encode("latin-1") in self._md_req:
                    return
            elif v in (self._status_req if msg_type == b"H" else self._awaiting):
                return
        raise DoNotSend()

    def from_app(self, session: Session, message: Message) -> None:
        try:
            self._dispatch(message)
        except (ValueError, TypeError, KeyError):
            # A malformed report must not cost the connection (the transport would drop it and the
            # venue would resend the same message forever): log it and go on.
            log.exception("venue %s: could not handle %r", self.name, message)

    def _dispatch(self, message: Message) -> None:
        mt = message.msg_type
        if mt == b"8":
            self._on_execution_report(message)
        elif mt == b"9":
            self._on_cancel_reject(message)
        elif mt == b"W":
            self._on_snapshot(message)
        elif mt == b"X":
            self._on_incremental(message)
        elif mt == b"Y":
            log.warning("venue %s: market data request %s rejected: %s", self.name,
                        message.get(262, b"").decode("latin-1"), message.get(58, b"").decode("latin-1"))
        else:
            log.info("venue %s: ignoring message type %s", self.name, mt.decode("latin-1"))

    # ============================================================================================
    # Inbound
    # ============================================================================================
    def _instrument_of(self, m: Message, t: _Tracked | None) -> Instrument | None:
        if t is not None:
            return t.instrument
        try:
            return self._master.resolve(_txt(m, 55) or "", _txt(m, 167), _txt(m, 200), _txt(m, 202), _txt(m, 201))
        except ValueError:
            return None

    def _on_execution_report(self, m: Message) -> None:
        # The hot path of every answer: the message's fields are read once each, with no helper
        # calls where a local will do (same values as _txt / get_int / _order_id would give).
        get = m.get
        exec_type = get(150, b"")
        v = get(11)
        cl = v.decode("latin-1") if v else ""
        v = get(41)
        orig = v.decode("latin-1") if v else ""
        t = self._orders.get(cl) or (self._orders.get(orig) if orig else None)
        if exec_type == b"I":
            return self._on_status_report(m, cl, t)
        kind = _EXEC_KIND.get(exec_type)
        if kind is None:
            log.warning("venue %s: ExecutionReport with ExecType %r ignored", self.name, exec_type)
            return
        last_qty = last_px = 0
        exec_id = ""
        if kind == _K.TRADE:
            v = get(17)
            exec_id = v.decode("latin-1") if v else ""
            if exec_id in self._seen_exec:
                self.duplicate_execs_dropped += 1
                return
            self._remember_exec(exec_id)
            last_qty = _int0(get(32))
            v = get(31)
            if v:
                inst = self._instrument_of(m, t)
                if inst is not None:
                    last_px = self._wire_of(inst).ticks(v)
        else:
            last_qty = _int0(get(32))
        v = get(37, b"")
        venue_order_id = "" if v == b"NONE" or not v else v.decode("latin-1")
        v = get(58)
        text = v.decode("latin-1") if v else ""
        v = get(39)
        ord_status = -1 if v is None else _int_or(v, -1)
        ev = VenueEvent(kind, self.name, cl, venue_order_id, last_qty=last_qty, last_px=last_px,
                        leaves_qty=_int0(get(151)), cum_qty=_int0(get(14)), reason=text,
                        reason_code=self._reason_code(m, kind), exec_id=exec_id,
                        ts=self._event_ts(get(60)), orig_venue_cl_ord_id=orig, ord_status=ord_status)
        self._awaiting.discard(cl)
        if t is not None:
            self._apply(t, ev)
        self._outbox.push(ev)

    def _event_ts(self, raw: bytes | None) -> int:
        """TransactTime (60) as epoch ns, the local clock when absent or not a timestamp."""
        if raw is not None and raw == self._ts_raw:
            return self._ts_ns
        t = parse_timestamp(raw) if raw else None
        if t is None:
            return self._clock.now_ns()
        ns = self._ts_ns = int(round(t * 1e9))
        self._ts_raw = raw
        return ns

    def _wire_of(self, inst: Instrument) -> _WireInstrument:
        w = self._wire.get(inst.key)
        if w is None or w.inst is not inst:
            w = self._wire[inst.key] = _WireInstrument(inst)
        return w

    def _apply(self, t: _Tracked, ev: VenueEvent) -> None:
        """Bring the tracked order to the venue's view after ``ev``."""
        kind = ev.kind
        if kind == _K.REJECTED:
            # A refused order leaves no trace at the venue, whose ids may then be used again.
            t.done = True
            t.leaves = 0
            t.status = int(Status.REJECTED)
            for i in t.ids:
                if self._orders.get(i) is t:
                    del self._orders[i]
            return
        if ev.venue_order_id:
            t.venue_order_id = ev.venue_order_id
        if kind == _K.NEW:
            t.acked = True
        elif kind == _K.TRADE and (not ev.cum_qty or ev.cum_qty > t.cum):
            # (Not above what is counted: a resend of a fill the reconciliation already caught up.)
            t.notional += ev.last_qty * ev.last_px
        elif kind == _K.REPLACED:
            qty, price = self._pending_replace.pop(ev.venue_cl_ord_id, (t.qty, t.price))
            t.qty, t.price = max(qty, ev.cum_qty), price
            t.pending.pop(ev.venue_cl_ord_id, None)
            t.cl_ord_id = ev.venue_cl_ord_id
            self._orders[ev.venue_cl_ord_id] = t
            t.ids.append(ev.venue_cl_ord_id)
        elif kind == _K.CANCELED and ev.orig_venue_cl_ord_id:
            t.pending.pop(ev.venue_cl_ord_id, None)
            self._orders[ev.venue_cl_ord_id] = t
            t.ids.append(ev.venue_cl_ord_id)
        t.acked = t.acked or kind != _K.REJECTED
        t.cum = max(t.cum, ev.cum_qty)
        t.leaves = ev.leaves_qty
        if ev.ord_status >= 0:
            t.status = ev.ord_status
        if kind in (_K.REJECTED, _K.CANCELED) or ev.ord_status in _DONE:
            t.done = True
            t.leaves = 0
            self._finished(t)

    def _finished(self, t: _Tracked) -> None:
        """Remember a finished order for a while (late reports, status), then forget it."""
        if t.forgotten_after:
            return
        t.forgotten_after = True
        self._done.append(t)
        if len(self._done) > self._max_done:
            old = self._done.popleft()
            for i in old.ids:
                if self._orders.get(i) is old:
                    del self._orders[i]

    def _on_cancel_reject(self, m: Message) -> None:
        cl = _txt(m, 11) or ""
        orig = _txt(m, 41) or ""
        kind = _K.REPLACE_REJECTED if m.get(434) == b"2" else _K.CANCEL_REJECTED
        self._awaiting.discard(cl)
        self._pending_replace.pop(cl, None)
        t = self._orders.get(orig)
        code = m.get_int(REASON_CODE_TAG)
        if code is None:
            code = _CXL_REJ_CODE.get(m.get(102, b""), 0)
        if t is not None:
            t.pending.pop(cl, None)
            ev = VenueEvent(kind, self.name, cl, _order_id(m) or t.venue_order_id, leaves_qty=t.leaves, cum_qty=t.cum,
                            reason=_txt(m, 58) or "", reason_code=code, ts=_ts(m, self._clock),
                            orig_venue_cl_ord_id=orig, ord_status=_ord_status(m))
        else:
            ev = VenueEvent(kind, self.name, cl, _order_id(m), reason=_txt(m, 58) or "", reason_code=code,
                            ts=_ts(m, self._clock), orig_venue_cl_ord_id=orig, ord_status=_ord_status(m))
        self._outbox.push(ev)

    def _on_status_report(self, m: Message, cl: str, t: _Tracked | None) -> None:
        req = self._status_req.pop(_txt(m, 790) or "", None)
        if m.get(584) is not None:
            return  # a mass status report: this connector asks per order
        asked, reconcile = req if req is not None else (cl, False)
        t = self._orders.get(asked) or t
        unknown = m.get(39) == b"8" and _order_id(m) == ""
        now = _ts(m, self._clock)
        if not reconcile:
            ev = VenueEvent(_K.STATUS, self.name, cl if not unknown else asked, _order_id(m),
                            leaves_qty=m.get_int(151) or 0, cum_qty=m.get_int(14) or 0,
                            reason=_txt(m, 58) or "", reason_code=int(Reason.UNKNOWN_ORDER) if unknown else 0,
                            ts=now, orig_venue_cl_ord_id=asked if asked != cl else "", ord_status=_ord_status(m))
            return self._outbox.push(ev)
        if t is None:
            return
        self.reconciled_orders += 1
        if unknown:
            self._order_gone(t, now)
        else:
            self._catch_up(t, m, now)
        self._outbox.push(VenueEvent(_K.STATUS, self.name, t.cl_ord_id, t.venue_order_id, leaves_qty=t.leaves,
                                     cum_qty=t.cum, reason=RECONCILED,
                                     reason_code=int(Reason.UNKNOWN_ORDER) if unknown else 0, ts=now,
                                     ord_status=t.status))

    def _order_gone(self, t: _Tracked, now: int) -> None:
        """The venue has no record of an order we believed live: it restarted (its books are not
        durable) or never received the order. Tell the OMS what that means for the order."""
        if t.done:
            return
        for req, what in list(t.pending.items()):
            self._awaiting.discard(req)
            if what == "replace":
                self._pending_replace.pop(req, None)
                self._outbox.push(VenueEvent(_K.REPLACE_REJECTED, self.name, req, t.venue_order_id, leaves_qty=t.leaves,
                                             cum_qty=t.cum, reason=f"unknown order {t.cl_ord_id}",
                                             reason_code=int(Reason.UNKNOWN_ORDER), ts=now,
                                             orig_venue_cl_ord_id=t.cl_ord_id, ord_status=t.status))
                del t.pending[req]
        self._awaiting.discard(t.cl_ord_id)
        t.done = True
        t.leaves = 0
        self._finished(t)
        if not t.acked:
            t.status = int(Status.REJECTED)
            self._outbox.push(VenueEvent(_K.REJECTED, self.name, t.cl_ord_id, "",
                                         reason=f"order lost: {self.name} never received it (disconnected)",
                                         reason_code=int(Reason.UNKNOWN_ORDER), ts=now, ord_status=t.status))
            return
        t.status = int(Status.CANCELLED)
        cancel = next((r for r, w in t.pending.items() if w == "cancel"), "")
        t.pending.clear()
        self._outbox.push(VenueEvent(_K.CANCELED, self.name, cancel or t.cl_ord_id, t.venue_order_id, cum_qty=t.cum,
                                     reason=f"order unknown at {self.name} after reconnect (venue restarted): "
                                            f"it is no longer live",
                                     reason_code=int(Reason.UNKNOWN_ORDER), ts=now,
                                     orig_venue_cl_ord_id=t.cl_ord_id if cancel else "", ord_status=t.status))

    def _catch_up(self, t: _Tracked, m: Message, now: int) -> None:
        """The venue knows the order: emit what we missed (normally nothing, the resend brought
        every ExecutionReport back; after a session reset, fills and the end of the order)."""
        if m.get(37):
            t.venue_order_id = _order_id(m) or t.venue_order_id
        t.acked = True
        cum = m.get_int(14) or 0
        status = _ord_status(m)
        if cum > t.cum:
            # Fills we never saw: TRADEs for the difference whose value makes AvgPx right. The
            # missed fills' value (the venue's AvgPx x CumQty, less what we counted) rarely
            # divides by their quantity (7 @ 22995 + 6 @ 22997): one price rounded would be off
            # by up to half a tick per unit, so the units are split over two prices one tick
            # apart (value // qty, and one tick more for the remainder's units).
            diff = cum - t.cum
            exec_id = f"{t.venue_order_id}-RECON-{cum}"
            if exec_id not in self._seen_exec:
                avg = Decimal(_txt(m, 6) or "0")
                value = int((avg * cum / t.instrument.tick_size).to_integral_value())
                px, rest = divmod(value - t.notional, diff)
                if px < 1:
                    # The venue's AvgPx is below what we counted (a wrong trail): priced as before,
                    # at least one tick, AvgPx then off.
                    px, rest = max(1, px), 0
                leaves = m.get_int(151) or 0
                parts = ((diff - rest, px), (rest, px + 1)) if rest else ((diff, px),)
                for qty, ticks in parts:
                    t.cum += qty
                    t.notional += qty * ticks
                    last = t.cum == cum
                    # The last part carries the stable id checked above (a second reconciliation
                    # finds it and emits nothing), the first one an id of its own CumQty.
                    eid = exec_id if last else f"{t.venue_order_id}-RECON-{t.cum}"
                    self._remember_exec(eid)
                    self._outbox.push(VenueEvent(
                        _K.TRADE, self.name, t.cl_ord_id, t.venue_order_id, last_qty=qty, last_px=ticks,
                        leaves_qty=leaves if last else leaves + (cum - t.cum), cum_qty=t.cum, exec_id=eid, ts=now,
                        reason="fill found by reconciliation",
                        ord_status=status if last else int(Status.PARTIALLY_FILLED)))
        t.leaves = m.get_int(151) or 0
        t.status = status
        if status == int(Status.CANCELLED) and not t.done:
            t.done = True
            self._outbox.push(VenueEvent(_K.CANCELED, self.name, t.cl_ord_id, t.venue_order_id, cum_qty=t.cum,
                                         reason="canceled at the venue (found by reconciliation)", ts=now,
                                         ord_status=status))
        elif status in _DONE:
            t.done = True
        if t.done:
            self._finished(t)
        self._awaiting.discard(t.cl_ord_id)

    # -- market data
    def _subscribe_market_data(self) -> None:
        self._md_req.clear()
        self._md_ready.clear()
        self._books.clear()
        self._bump_all_books()
        for inst in self._listed.values():
            req = f"{self.name}-{self._connections}-{inst.index}".encode()
            self._md_req[req] = inst
            self._books[inst.key] = ({}, {})
            self._send(b"V", [(262, req), (263, "1"), (264, self.md_depth), (265, "1"), (267, 2), (269, "0"),
                              (269, "1"), (146, 1), *_instrument_fields(inst)])

    def _on_snapshot(self, m: Message) -> None:
        inst = self._md_req.get(m.get(262, b""))
        if inst is None:
            return
        bids: dict[int, tuple[int, int]] = {}
        asks: dict[int, tuple[int, int]] = {}
        for side, px, qty, n, _action in _md_entries(m, inst, b"269"):
            (bids if side == b"0" else asks)[px] = (qty, n)
        self._books[inst.key] = (bids, asks)
        self._md_ready.add(inst.key)
        changes = self._md_changes
        changes[inst.key] = changes.get(inst.key, 0) + 1

    def _on_incremental(self, m: Message) -> None:
        inst = self._md_req.get(m.get(262, b""))
        if inst is None:
            return
        bids, asks = self._books.setdefault(inst.key, ({}, {}))
        changes = self._md_changes
        changes[inst.key] = changes.get(inst.key, 0) + 1
        for side, px, qty, n, action in _md_entries(m, inst, b"279"):
            book = bids if side == b"0" else asks
            if action == b"2":
                book.pop(px, None)
            else:
                book[px] = (qty, n)

    # ============================================================================================
    # Internals
    # ============================================================================================
    def _reason_code(self, m: Message, kind: VenueEventKind) -> int:
        code = m.get_int(REASON_CODE_TAG)
        if code is not None:
            return code
        text = _txt(m, 58) or ""
        if text in _TEXT_CODE:
            return _TEXT_CODE[text]
        if kind == _K.REJECTED:
            return _ORD_REJ_CODE.get(m.get(103, b""), 0)
        return 0

    def _remember_exec(self, exec_id: str) -> None:
        self._seen_exec.add(exec_id)
        self._seen_order.append(exec_id)
        if len(self._seen_order) > self._max_seen:
            self._seen_exec.discard(self._seen_order.popleft())

    def _send(self, msg_type: bytes, body: list) -> None:
        self._live_send = True
        try:
            self._initiator.session().send(msg_type, body)
        finally:
            self._live_send = False

    def _send_status(self, cl: str, reconcile: bool) -> None:
        t = self._orders.get(cl)
        req_id = f"{'R' if reconcile else 'S'}{next(self._status_ids)}"
        self._status_req[req_id] = (cl, reconcile)
        body: list = [(11, cl)]
        if t is not None and t.venue_order_id:
            body.insert(0, (37, t.venue_order_id))
        body += _instrument_fields(t.instrument) if t is not None else [(55, "[N/A]")]
        body += [(54, int(t.side) if t is not None else 1), (790, req_id)]
        self._send(b"H", body)

    def _reconcile(self) -> None:
        """Ask the venue about every order that is not known to be finished."""
        self._status_req.clear()
        seen: set[int] = set()
        for t in list(self._orders.values()):
            if t.done or id(t) in seen:
                continue
            seen.add(id(t))
            self._send_status(t.cl_ord_id, reconcile=True)
        wanted, self._status_wanted = self._status_wanted, []
        for cl in wanted:
            self._send_status(cl, reconcile=False)

    def _set_down(self, reason: str) -> None:
        if not self._up:
            return
        self._up = False
        self._books.clear()
        self._md_ready.clear()
        self._bump_all_books()
        self._outbox.push_state(False, reason)

    def _bump_all_books(self) -> None:
        changes = self._md_changes
        for key in list(changes):
            changes[key] += 1

    def _down_text(self) -> str:
        return f"venue down: {self.name} " + ("is disconnected" if self._started else "is not started")

    def _reject(self, cl: str, code: int, text: str, now: int) -> VenueEvent:
        return VenueEvent(_K.REJECTED, self.name, cl, "", reason=text, reason_code=int(code), ts=now,
                          ord_status=int(Status.REJECTED))

    def _request_reject(self, kind, cl: str, orig: str, t: _Tracked | None, code: int, text: str,
                        now: int) -> VenueEvent:
        if t is None:
            return VenueEvent(kind, self.name, cl, "", reason=text, reason_code=int(code), ts=now,
                              orig_venue_cl_ord_id=orig, ord_status=int(Status.REJECTED))
        return VenueEvent(kind, self.name, cl, t.venue_order_id, leaves_qty=t.leaves, cum_qty=t.cum, reason=text,
                          reason_code=int(code), ts=now, orig_venue_cl_ord_id=orig, ord_status=t.status)

    # ============================================================================================
    # Configuration
    # ============================================================================================
    _KEYS = ("name", "kind", "host", "port", "sender_comp_id", "target_comp_id", "store_path", "heartbeat_s",
             "reconnect_min_s", "reconnect_max_s", "md_depth", "username", "password", "reset_on_logon",
             "logon_timeout_s", "validate", "max_done_orders")

    @classmethod
    def from_config(cls, table: dict, instruments: InstrumentMaster, *, where: str = "venues[0]") -> FixVenue:
        """Build from a TOML table (keys: the constructor's, plus ``kind = "fix"``); errors are
        ValueError naming the key, e.g. ``venues[2].port: ...``."""
        if not isinstance(table, dict):
            raise ValueError(f"{where}: must be a table, got {type(table).__name__}")
        for k in table:
            if k not in cls._KEYS:
                raise ValueError(f"{where}.{k}: unknown key (known: {', '.join(cls._KEYS)})")
        for k in ("name", "host", "port", "sender_comp_id", "target_comp_id"):
            if k not in table:
                raise ValueError(f"{where}.{k}: required for a FIX venue")
        if table.get("kind", "fix") != "fix":
            raise ValueError(f"{where}.kind: a FixVenue has kind = \"fix\", got {table['kind']!r}")
        args = {k: v for k, v in table.items() if k not in ("name", "kind")}
        try:
            return cls(table["name"], instruments, **args)
        except (TypeError, ValueError) as e:
            text = str(e)
            key = next((k for k in cls._KEYS if text.startswith(k)), None)
            raise ValueError(f"{where}.{key}: {text}" if key else f"{where}: {text}") from None


# ================================================================================================
# helpers
# ================================================================================================
def _instrument_fields(inst: Instrument) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = [(55, inst.symbol)]
    # FIX 4.4 knows no FXSPOT or CRYPTO SecurityType: FX spot is FOR, crypto goes without (the
    # symbol alone names it), as the OMS gateway writes them.
    st = "FOR" if inst.security_type == "FXSPOT" else inst.security_type
    if st != "CRYPTO":
        out.append((167, st))
    if inst.maturity_month_year:
        out.append((200, inst.maturity_month_year))
    if inst.put_or_call is not None:
        out.append((201, str(inst.put_or_call)))
    if inst.strike is not None:
        out.append((202, format(inst.strike, "f")))
    return out


def _px(inst: Instrument, ticks: int) -> str:
    return format(inst.ticks_to_price(ticks), "f")


def _txt(m: Message, tag: int) -> str | None:
    v = m.get(tag)
    return None if v is None else v.decode("latin-1")


def _order_id(m: Message) -> str:
    v = m.get(37, b"")
    return "" if v in (b"NONE", b"") else v.decode("latin-1")


def _ord_status(m: Message) -> int:
    v = m.get_int(39)
    return -1 if v is None else v


def _ts(m: Message, clock) -> int:
    t = parse_timestamp(m.get(60, b"")) if m.get(60) else None
    return int(round(t * 1e9)) if t is not None else clock.now_ns()


def _stamp(ns: int) -> str:
    s, rest = divmod(int(ns), 1_000_000_000)
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(s)) + f".{rest // 1_000_000:03d}"


_stamp_second: list = [None, b""]   # (epoch second, its "YYYYMMDD-HH:MM:SS") of the last _stamp_bytes


def _stamp_bytes(ns: int) -> bytes:
    """:func:`_stamp` as bytes, the date and time text made once per second."""
    s, rest = divmod(int(ns), 1_000_000_000)
    cached = _stamp_second
    if cached[0] != s:
        cached[1] = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(s)).encode()
        cached[0] = s
    return cached[1] + b".%03d" % (rest // 1_000_000)


def _int_bytes(value: int) -> bytes:
    # What the session's to_bytes makes of an int (a bool would be Y/N there: keep that).
    return (b"Y" if value else b"N") if isinstance(value, bool) else b"%d" % value


def _int0(v: bytes | None) -> int:
    """``Message.get_int(tag) or 0`` for an already fetched value."""
    return _int_or(v, 0) if v else 0


def _int_or(v: bytes, default: int) -> int:
    digits = v[1:] if v[:1] == b"-" else v
    if not digits.isdigit() or len(digits) > 18:
        return default
    return int(v)


def _md_entries(m: Message, inst: Instrument, start: bytes):
    """(side, price ticks, qty, orders, action) per entry of a W (entries start at 269) or an X
    (entries start at 279)."""
    start_tag = int(start)
    entry: dict[int, bytes] | None = None
    entries: list[dict[int, bytes]] = []
    for tag, value in m.fields:
        if tag == start_tag:
            entry = {}
            entries.append(entry)
        if entry is not None and tag not in entry:
            entry[tag] = value
    for e in entries:
        px = e.get(270)
        if px is None:
            continue
        try:
            ticks = inst.price_to_ticks(px.decode("latin-1"))
        except ValueError:
            continue
        qty = int(e.get(271, b"0") or 0)
        n = int(e.get(346, b"0") or 0)
        yield e.get(269, b""), ticks, qty, n, e.get(279, b"0")
