"""A venue behind a FIX acceptor: the exchange side of ``crossbook venue``.

:class:`VenueFixServer` puts a FIX 4.4 acceptor (``crossbook.fix``) in front of an
:class:`~crossbook.venues.InProcessVenue`:

* NewOrderSingle (D) -> ``new_order``; OrderCancelRequest (F) -> ``cancel_order``;
  OrderCancelReplaceRequest (G) -> ``replace_order``; OrderStatusRequest (H) -> ``order_status``;
  OrderMassStatusRequest (AF) -> one status report per live order of the session;
  MarketDataRequest (V) -> :class:`~crossbook.venues.marketdata.MarketDataPublisher`.
* Every :class:`~crossbook.routing.venue.VenueEvent` becomes an ExecutionReport (8) or an
  OrderCancelReject (9) on the session that owns the order. docs/venue-process.md has the tables.

Several client sessions may share the venue. ClOrdIDs are per session (two clients may both use
``C1``): inside, the venue's ids are ``<client CompID>\\x1f<ClOrdID>``.

Fault knobs beyond the simulator's (latency, reject ratio): ``disconnect_after`` drops a
session's connection (no Logout, like a network failure) after it sent that many application
messages, and :meth:`VenueFixServer.drop_all_sessions` (SIGUSR1 in ``crossbook venue``) drops
every connection at once.
"""
from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import deque
from dataclasses import dataclass
from decimal import Decimal

from crossbook.core import OrdType, Reason, Side, Status, STPMode, TimeInForce
from crossbook.fix.messages import Message, parse_timestamp
from crossbook.fix.session import (
    BUSINESS_REJECT_OTHER, CONDITIONALLY_REQUIRED_FIELD_MISSING, Application, BusinessReject, DoNotSend, Session,
    UnsupportedMessageType,
)
from crossbook.fix.settings import SessionSettings
from crossbook.fix.transport import Acceptor
from crossbook.model.instruments import Instrument, InstrumentMaster
from crossbook.routing.venue import VenueEvent, VenueEventKind, VenueOrder, VenueReason
from crossbook.venues.marketdata import MAX_DEPTH_DEFAULT, MarketDataPublisher, instrument_fields
from crossbook.venues.simulator import InProcessVenue
from crossbook.model.ids import base36

__all__ = ["VenueFixServer", "REASON_CODE_TAG", "STP_MODE_TAG", "SEP"]

log = logging.getLogger(__name__)

#: User-defined tag carrying the exact crossbook.core.Reason / VenueReason code of a reject or
#: cancel next to the standard OrdRejReason / CxlRejReason (which are coarser).
REASON_CODE_TAG = 5100
#: User-defined tag on NewOrderSingle: crossbook.core.STPMode of the order (0 when absent).
STP_MODE_TAG = 5102
#: Separates the client CompID from its ClOrdID in the venue's internal order ids.
SEP = "\x1f"

_EXEC_TYPE = {
    VenueEventKind.NEW: b"0", VenueEventKind.REJECTED: b"8", VenueEventKind.TRADE: b"F",
    VenueEventKind.CANCELED: b"4", VenueEventKind.REPLACED: b"5", VenueEventKind.STOP_TRIGGERED: b"D",
    VenueEventKind.STATUS: b"I",
}
# OrdRejReason (103) for new-order rejects; everything else is 99 (other) with the exact code in 5100.
_ORD_REJ = {int(VenueReason.NOT_LISTED): b"1", int(Reason.DUPLICATE_ID): b"6", int(Reason.UNKNOWN_ORDER): b"5",
            int(VenueReason.VENUE_DOWN): b"2", int(Reason.INVALID_QTY): b"13", int(VenueReason.INVALID_LOT): b"13"}
# CxlRejReason (102)
_CXL_REJ = {int(Reason.TOO_LATE): b"0", int(Reason.UNKNOWN_ORDER): b"1", int(VenueReason.VENUE_DOWN): b"2",
            int(Reason.DUPLICATE_ID): b"6"}
_SIDES = {b"1": Side.BUY, b"2": Side.SELL}
_ORD_TYPES = {b"1": OrdType.MARKET, b"2": OrdType.LIMIT, b"3": OrdType.STOP, b"4": OrdType.STOP_LIMIT}
_TIFS = {b"0": TimeInForce.DAY, b"1": TimeInForce.GTC, b"3": TimeInForce.IOC, b"4": TimeInForce.FOK,
         b"6": TimeInForce.GTD}
_LIVE = (int(Status.RESTING), int(Status.PARTIALLY_FILLED), int(Status.STOP_PENDING))
_DONE = (int(Status.FILLED), int(Status.CANCELLED), int(Status.REJECTED))
_MD_TYPES = (b"W", b"X", b"Y")
_NEW, _TRADE, _CANCELED, _REPLACED, _REJECTED, _STATUS = (
    VenueEventKind.NEW, VenueEventKind.TRADE, VenueEventKind.CANCELED, VenueEventKind.REPLACED,
    VenueEventKind.REJECTED, VenueEventKind.STATUS)
_CXL_REJECTED, _RPL_REJECTED = VenueEventKind.CANCEL_REJECTED, VenueEventKind.REPLACE_REJECTED
_REJECTED_ST = int(Status.REJECTED)
_PRICED = (OrdType.LIMIT, OrdType.STOP_LIMIT)
_STOPPED = (OrdType.STOP, OrdType.STOP_LIMIT)
# Wire spellings computed once: the report path sends bytes, so the session converts nothing.
_ORD_STATUS = {int(s): (b"0" if s == Status.STOP_PENDING else str(int(s)).encode()) for s in Status}
#: Most entries a per-instrument text cache holds before it starts again (bounded memory).
_CACHE_MAX = 4096


class SystemNsClock:
    """Wall clock in UTC epoch nanoseconds (what InProcessVenue wants)."""

    @staticmethod
    def now_ns() -> int:
        return time.time_ns()


@dataclass(slots=True)
class _Order:
    """What the server remembers of a client's order to fill the ExecutionReports."""

    session: str
    cl_ord_id: str               # the client's latest ClOrdID
    instrument: Instrument
    side: Side
    ord_type: OrdType
    tif: TimeInForce
    qty: int
    price: int
    stop_price: int
    venue_order_id: str = ""
    cum: int = 0
    leaves: int = 0
    notional: int = 0            # sum of last_qty x last_px (ticks), for AvgPx
    status: int = int(Status.RESTING)
    acked: bool = False
    ids: list[str] | None = None  # every internal id of the chain (to forget them together)
    finished: bool = False
    # The report fields that change only with a replace (instrument block to TimeInForce), as
    # bytes: made at the first report, dropped when a replace changes quantity or price.
    fixed: list | None = None


class _WireInstrument:
    """One instrument's FIX texts, computed once: the instrument block, prices of the tick grid
    (ticks -> text, text -> ticks) and AvgPx texts. Caches are bounded (cleared when full)."""

    __slots__ = ("inst", "ident", "_px", "_avg", "_ticks")

    def __init__(self, inst: Instrument) -> None:
        self.inst = inst
        self.ident = [(t, v.encode("latin-1")) for t, v in instrument_fields(inst)]
        self._px: dict[int, bytes] = {}
        self._avg: dict[int, bytes] = {}
        self._ticks: dict[bytes, int] = {}

    def px(self, ticks: int) -> bytes:
        text = self._px.get(ticks)
        if text is None:
            text = format(self.inst.ticks_to_price(ticks), "f").encode()
            if len(self._px) >= _CACHE_MAX:
                self._px.clear()
            self._px[ticks] = text
        return text

    def avg_px(self, notional: int, cum: int) -> bytes:
        """AvgPx (6): the exact mean of the fills, normalised (``232``, not ``232.00``)."""
        if not cum:
            return b"0"
        whole, rest = divmod(notional, cum)
        if rest:
            return format((Decimal(notional) / cum * self.inst.tick_size).normalize(), "f").encode()
        text = self._avg.get(whole)
        if text is None:
            # notional / cum is whole: the same Decimal as the general formula, without the division.
            text = format((Decimal(whole) * self.inst.tick_size).normalize(), "f").encode()
            if len(self._avg) >= _CACHE_MAX:
                self._avg.clear()
            self._avg[whole] = text
        return text

    def ticks(self, raw: bytes | None) -> int:
        """A wire price as ticks; raises as ``Instrument.price_to_ticks`` (None: TypeError)."""
        ticks = self._ticks.get(raw) if raw is not None else None
        if ticks is None:
            ticks = self.inst.price_to_ticks(None if raw is None else raw.decode("latin-1"))
            if len(self._ticks) >= _CACHE_MAX:
                self._ticks.clear()
            self._ticks[raw] = ticks
        return ticks


class VenueFixServer(Application):
    """An InProcessVenue served over FIX.

    ``venue``: the simulator (its sink is taken over). ``instruments``: the master FIX instrument
    fields are resolved against (the venue's own). ``sessions``: acceptor
    ``SessionSettings``, one per client CompID (FIX.4.4). ``host``/``port``: where to listen
    (port 0 picks a free one; read :attr:`port` after :meth:`start`). ``md_max_depth``: the most
    levels a market data subscription gets. ``disconnect_after``: drop a session's connection after
    it sent this many application messages (0 = never); once, or after every that many messages
    when ``disconnect_repeat``. ``reason_code_sessions``: client CompIDs that get tag 5100.
    ``max_done_orders``: finished orders remembered for their reports (oldest forgotten first).
    ``md_conflate_s``: market data conflation interval (MarketDataPublisher).
    """

    def __init__(self, venue: InProcessVenue, instruments: InstrumentMaster, sessions: list[SessionSettings], *,
                 host: str = "127.0.0.1", port: int = 0, md_max_depth: int = MAX_DEPTH_DEFAULT, disconnect_after: int = 0,
                 disconnect_repeat: bool = False, store_factory=None,
                 reason_code_sessions: frozenset[str] | set[str] = frozenset(),
                 max_done_orders: int = 1_000_000, md_conflate_s: float = 0.0) -> None:
        if not isinstance(venue, InProcessVenue):
            raise TypeError(f"venue must be an InProcessVenue, got {type(venue).__name__}")
        if isinstance(disconnect_after, bool) or not isinstance(disconnect_after, int) or disconnect_after < 0:
            raise ValueError(f"disconnect_after must be an int >= 0, got {disconnect_after!r}")
        self.venue = venue
        self.name = venue.name
        self.disconnect_after = disconnect_after
        self.disconnect_repeat = bool(disconnect_repeat)
        self.disconnects = 0                      # connections dropped by the fault knobs
        # Client CompIDs that get the exact reason code in tag 5100 (crossbook peers). Others would
        # refuse an unknown user-defined tag with a session Reject.
        self._coded = frozenset(reason_code_sessions)
        if not isinstance(instruments, InstrumentMaster):
            raise TypeError(f"instruments must be an InstrumentMaster, got {type(instruments).__name__}")
        self._master = instruments
        self._acceptor = Acceptor(sessions, self, host=host, port=port, store_factory=store_factory)
        self._sessions: dict[str, Session] = {s.settings.target_comp_id: s for s in self._acceptor.sessions.values()}
        self._orders: dict[str, _Order] = {}       # internal id (every id of the chain) -> order
        self._done: deque[_Order] = deque()        # finished orders, oldest first (bounded memory)
        self._max_done = max_done_orders
        self._pending_replace: dict[str, tuple[int, int]] = {}   # new internal id -> (qty, price)
        self._status_reqs: dict[str, list[tuple[bytes, list]]] = {}  # asked internal id -> [(790, ident)]
        self._msg_count: dict[str, int] = {}
        self._live_send = False
        self._exec_prefix = f"{self.name}-{base36(time.time_ns() // 1000)}-X"
        self._next_exec = 1
        self._wire: dict[str, _WireInstrument] = {}          # instrument key -> its FIX texts
        # Instrument block as received (55, 167, 200, 202, 201) -> instrument: the master is fixed,
        # so a block that resolved once resolves the same way again (failures are not kept).
        self._resolved: dict[tuple, Instrument] = {}
        self.md = MarketDataPublisher(venue, self._master, self._send_md, max_depth=md_max_depth,
                                      conflate_s=md_conflate_s)
        venue.set_event_sink(self._on_event)

    # ------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._acceptor.port

    @property
    def acceptor(self) -> Acceptor:
        return self._acceptor

    async def start(self) -> None:
        await self.venue.start()
        await self._acceptor.start()

    async def stop(self) -> None:
        await self._acceptor.stop()
        await self.venue.stop()
        self.md.close()

    def drop_all_sessions(self) -> int:
        """Drop every connection without a Logout (a simulated network failure). Returns how many."""
        n = 0
        for sk in list(self._sessions):
            n += self._drop(sk)
        return n

    def _drop(self, sk: str) -> int:
        session = self._sessions[sk]
        # The transport has no public per-session disconnect; closing its connection is what a
        # cut cable looks like to both sides.
        conn = self._acceptor._connections.get(session.session_id)
        if conn is None or conn.closed:
            return 0
        log.warning("venue %s: dropping the connection of %s (fault injection)", self.name, sk)
        self.disconnects += 1
        conn.close()
        return 1

    # ------------------------------------------------------------------------------------------
    # Application callbacks
    # ------------------------------------------------------------------------------------------
    def on_logon(self, session: Session) -> None:
        self._msg_count[session.settings.target_comp_id] = 0
        log.info("venue %s: %s logged on", self.name, session.session_id)

    def on_logout(self, session: Session) -> None:
        self.md.drop_session(session.settings.target_comp_id)
        log.info("venue %s: %s logged out", self.name, session.session_id)

    def to_app(self, session: Session, msg_type: bytes, body) -> None:
        # Market data is only worth its moment: on a resend it is gap-filled, not replayed (the
        # subscriber subscribes again and gets a fresh snapshot). Execution reports are resent.
        if msg_type in _MD_TYPES and not self._live_send:
            raise DoNotSend()

    def from_app(self, session: Session, message: Message) -> None:
        try:
            self._dispatch(session, message)
        except KeyError as e:
            # Only reachable with validate = false (the dictionary would have sent a Reject): answer,
            # never let a bad message drop the connection (the client would resend it forever).
            tag = e.args[0] if e.args and isinstance(e.args[0], int) else None
            raise BusinessReject(CONDITIONALLY_REQUIRED_FIELD_MISSING, "Required tag missing", tag) from None
        except (ValueError, TypeError) as e:
            raise BusinessReject(BUSINESS_REJECT_OTHER, f"cannot handle the message: {e}") from None

    def _dispatch(self, session: Session, message: Message) -> None:
        sk = session.settings.target_comp_id
        mt = message.msg_type
        if mt == b"D":
            self._on_new_order(sk, message)
        elif mt == b"F":
            self._on_cancel(sk, message)
        elif mt == b"G":
            self._on_replace(sk, message)
        elif mt == b"H":
            self._on_status(sk, message)
        elif mt == b"AF":
            self._on_mass_status(sk, message)
        elif mt == b"V":
            self.md.on_request(sk, message)
        else:
            raise UnsupportedMessageType()
        if self.disconnect_after:
            n = self._msg_count.get(sk, 0) + 1
            self._msg_count[sk] = n
            if n >= self.disconnect_after:
                if not self.disconnect_repeat:
                    self.disconnect_after = 0
                # After this message's answers are written: the drop comes between messages.
                asyncio.get_running_loop().call_soon(self._drop, sk)

    # ------------------------------------------------------------------------------------------
    # Requests
    # ------------------------------------------------------------------------------------------
    def _wire_of(self, inst: Instrument) -> _WireInstrument:
        w = self._wire.get(inst.key)
        if w is None or w.inst is not inst:
            w = self._wire[inst.key] = _WireInstrument(inst)
        return w

    def _on_new_order(self, sk: str, m: Message) -> None:
        cl = m[11].decode("latin-1")
        internal = sk + SEP + cl
        get = m.get
        side = _SIDES.get(get(54, b""))
        ord_type = _ORD_TYPES.get(get(40, b""))
        tif = _TIFS.get(get(59, b"0"))
        block = (get(55), get(167), get(200), get(202), get(201))
        inst = self._resolved.get(block)
        if inst is None:
            try:
                inst = self._master.resolve(_text(m, 55), _text(m, 167), _text(m, 200), _text(m, 202), _text(m, 201))
            except ValueError as e:
                return self._reject_raw(sk, cl, m, b"1", int(VenueReason.NOT_LISTED), str(e), _ident_of(m))
            if len(self._resolved) >= _CACHE_MAX:
                self._resolved.clear()
            self._resolved[block] = inst
        if side is None or ord_type is None or tif is None or internal in self._orders:
            return self._refuse_new(sk, cl, internal, m, side, ord_type, tif)
        qty = m.get_int(38)
        if qty is None or qty <= 0:
            return self._reject_raw(sk, cl, m, b"13", int(Reason.INVALID_QTY),
                                    f"OrderQty must be a whole number > 0, got {_text(m, 38)!r}", _ident_of(m))
        w = self._wire_of(inst)
        try:
            price = w.ticks(get(44)) if ord_type in _PRICED else 0
            stop = w.ticks(get(99)) if ord_type in _STOPPED else 0
        except (ValueError, TypeError) as e:
            return self._reject_raw(sk, cl, m, b"99", int(Reason.INVALID_PRICE), str(e), _ident_of(m))
        display = m.get_int(111) or 0
        post_only = b"6" in (get(18) or b"").split(b" ")
        expire_ns = 0
        if tif == TimeInForce.GTD:
            t = parse_timestamp(get(126, b""))
            if t is None:
                return self._reject_raw(sk, cl, m, b"99", int(Reason.INVALID_EXPIRE_TIME),
                                        "GTD needs ExpireTime (126) as a UTC timestamp", _ident_of(m))
            expire_ns = int(round(t * 1e9))
        account = get(1, b"")
        owner = int(account) if account.lstrip(b"-").isdigit() and len(account) < 18 else zlib.crc32(account)
        stp_raw = m.get_int(STP_MODE_TAG) or 0
        stp = STPMode(stp_raw) if stp_raw in (0, 1, 2, 3) else STPMode.NONE
        self._orders[internal] = _Order(sk, cl, inst, side, ord_type, tif, qty, price, stop, leaves=qty,
                                        ids=[internal])
        self.venue.new_order(VenueOrder(internal, inst, side, ord_type, tif, qty, price, stop_price=stop,
                                        display_qty=display, post_only=post_only, expire_time=expire_ns,
                                        owner=owner, stp=stp))

    def _refuse_new(self, sk: str, cl: str, internal: str, m: Message, side, ord_type, tif) -> None:
        """The first of: Side, OrdType, TimeInForce not supported, ClOrdID in use (that order)."""
        ident_in = _ident_of(m)
        if side is None:
            return self._reject_raw(sk, cl, m, b"99", int(Reason.INVALID_ENUM),
                                    f"Side {_text(m, 54)!r} not supported (1 buy, 2 sell)", ident_in)
        if ord_type is None:
            return self._reject_raw(sk, cl, m, b"99", int(Reason.INVALID_ENUM),
                                    f"OrdType {_text(m, 40)!r} not supported (1, 2, 3, 4)", ident_in)
        if tif is None:
            return self._reject_raw(sk, cl, m, b"99", int(Reason.INVALID_ENUM),
                                    f"TimeInForce {_text(m, 59)!r} not supported (0, 1, 3, 4, 6)", ident_in)
        if internal in self._orders:
            return self._reject_raw(sk, cl, m, b"6", int(Reason.DUPLICATE_ID), f"duplicate ClOrdID {cl}", ident_in)

    def _on_cancel(self, sk: str, m: Message) -> None:
        cl = m[11].decode("latin-1")
        orig = m[41].decode("latin-1")
        self.venue.cancel_order(sk + SEP + orig, sk + SEP + cl)

    def _on_replace(self, sk: str, m: Message) -> None:
        cl = m[11].decode("latin-1")
        orig = m[41].decode("latin-1")
        o = self._orders.get(sk + SEP + orig)
        qty = m.get_int(38)
        if qty is None:
            qty = o.qty if o is not None else 0
        price = o.price if o is not None else 0
        if o is not None and m.get(44) is not None and o.ord_type in (OrdType.LIMIT, OrdType.STOP_LIMIT):
            try:
                price = o.instrument.price_to_ticks(_text(m, 44))
            except (ValueError, TypeError) as e:
                return self._cancel_reject_raw(sk, cl, orig, o, b"2", b"99", int(Reason.INVALID_PRICE), str(e))
        if o is not None:
            self._pending_replace[sk + SEP + cl] = (qty, price)
        self.venue.replace_order(sk + SEP + orig, sk + SEP + cl, qty, price)

    def _on_status(self, sk: str, m: Message) -> None:
        internal = sk + SEP + m[11].decode("latin-1")
        self._status_reqs.setdefault(internal, []).append((m.get(790, b""), [(54, m.get(54, b"1"))] + _ident_of(m)))
        self.venue.order_status(internal)

    def _on_mass_status(self, sk: str, m: Message) -> None:
        req_id = m.get(584, b"")
        req_type = m.get(585, b"7")
        symbol = m.get(55)
        live = []
        seen = set()
        for o in self._orders.values():
            if o.session != sk or id(o) in seen or not o.acked or o.status not in _LIVE:
                continue
            seen.add(id(o))
            if req_type == b"1" and symbol is not None and o.instrument.symbol.encode() != symbol:
                continue
            live.append(o)
        if not live:
            self._send(sk, b"8", [(37, b"NONE"), (17, self._exec_id().encode("latin-1")), (150, b"I"), (39, b"8"),
                                  (54, b"1"), (55, b"[N/A]"), (151, b"0"), (14, b"0"), (6, b"0"), (584, req_id),
                                  (911, b"0"), (912, b"Y"), (58, b"no orders")])
            return
        for i, o in enumerate(live):
            body = self._report_body(sk, o, o.cl_ord_id, b"I", o.status,
                                     extra=[(584, req_id), (911, b"%d" % len(live))])
            if i == len(live) - 1:
                body.append((912, b"Y"))
            self._send(sk, b"8", body)

    # ------------------------------------------------------------------------------------------
    # Answers
    # ------------------------------------------------------------------------------------------
    # Bodies are built as bytes (ints included): Session.send then converts nothing, which was
    # about a third of the cost of a report.
    def _exec_id(self) -> str:
        n = self._next_exec
        self._next_exec = n + 1
        return f"{self._exec_prefix}{n}"

    def _tail(self, sk: str, text: str, code: int) -> list:
        """Text (58) and, for sessions that take it, the exact reason code (5100). The simulator's
        texts name its internal ids ("unknown order CROSSBOOK\x1fC1"): the client knows the order
        by its own ClOrdID."""
        out = []
        if text:
            if SEP in text:
                text = text.replace(sk + SEP, "")
            out.append((58, text.encode("latin-1")))
        if code and sk in self._coded:
            out.append((REASON_CODE_TAG, b"%d" % code))
        return out

    def _report_body(self, sk: str, o: _Order, cl: str, exec_type: bytes, ord_status: int, *, orig: str = "",
                     exec_id: str = "", last_qty: int = 0, last_px: int = 0, text: str = "",
                     code: int = 0, rej: bytes | None = None, extra=()) -> list:
        w = self._wire_of(o.instrument)
        body: list = [(37, o.venue_order_id.encode("latin-1") if o.venue_order_id else b"NONE"),
                      (11, cl.encode("latin-1"))]
        if orig:
            body.append((41, orig.encode("latin-1")))
        body += [(17, (exec_id or self._exec_id()).encode("latin-1")), (150, exec_type),
                 (39, _ord_status(ord_status))]
        if rej is not None:
            body.append((103, rej))
        fixed = o.fixed
        if fixed is None:
            ord_type = o.ord_type
            fixed = [*w.ident, (54, b"%d" % o.side), (38, b"%d" % o.qty), (40, b"%d" % ord_type)]
            if ord_type in _PRICED:
                fixed.append((44, w.px(o.price)))
            if ord_type in _STOPPED:
                fixed.append((99, w.px(o.stop_price)))
            fixed.append((59, b"%d" % o.tif))
            o.fixed = fixed
        body += fixed
        if last_qty:
            body += [(32, b"%d" % last_qty), (31, w.px(last_px))]
        body += [(151, b"%d" % o.leaves), (14, b"%d" % o.cum), (6, w.avg_px(o.notional, o.cum)), (60, _now_stamp())]
        if text or code:
            body += self._tail(sk, text, code)
        if extra:
            body += extra
        return body

    def _reject_raw(self, sk: str, cl: str, m: Message, rej: bytes, code: int, text: str, ident) -> None:
        """Reject a NewOrderSingle before it reaches the venue (it names nothing the venue has)."""
        body = [(37, b"NONE"), (11, cl.encode("latin-1")), (17, self._exec_id().encode("latin-1")), (150, b"8"),
                (39, b"8"), (103, rej), *ident, (54, m.get(54, b"1"))]
        if m.get_int(38) is not None:
            body.append((38, m[38]))
        body += [(151, b"0"), (14, b"0"), (6, b"0"), (60, _now_stamp())]
        body += self._tail(sk, text, code)
        self._send(sk, b"8", body)

    def _cancel_reject_raw(self, sk, cl, orig, o, response_to: bytes, reason: bytes, code: int, text: str) -> None:
        self._send(sk, b"9", [
            (37, ((o.venue_order_id if o else "") or "NONE").encode("latin-1")), (11, cl.encode("latin-1")),
            (41, orig.encode("latin-1")), (39, _ord_status(o.status if o else int(Status.REJECTED))),
            (434, response_to), (102, reason), *self._tail(sk, text, code)])

    def _on_event(self, ev: VenueEvent) -> None:
        internal = ev.venue_cl_ord_id
        sk, _, cl = internal.partition(SEP)
        if sk not in self._sessions:
            log.error("venue %s: event for an id of no session: %r", self.name, internal)
            return
        orig_internal = ev.orig_venue_cl_ord_id
        orig = orig_internal.partition(SEP)[2] if orig_internal else ""
        kind = ev.kind
        orders = self._orders
        o = orders.get(internal) or (orders.get(orig_internal) if orig_internal else None)
        if kind == _CXL_REJECTED or kind == _RPL_REJECTED:
            self._pending_replace.pop(internal, None)
            return self._cancel_reject_raw(
                sk, cl, orig, o, b"1" if kind == _CXL_REJECTED else b"2",
                _CXL_REJ.get(ev.reason_code, b"99"), ev.reason_code, ev.reason)
        if kind == _STATUS:
            return self._status_report(sk, cl, ev, o)
        if o is None:
            log.error("venue %s: event for an unknown order %r", self.name, internal)
            return
        # Bring the record up to the venue's view, then report from it.
        if ev.venue_order_id:
            o.venue_order_id = ev.venue_order_id
        if kind == _TRADE:
            o.notional += ev.last_qty * ev.last_px
        elif kind == _NEW:
            o.cl_ord_id = cl
        elif kind == _REPLACED:
            qty, price = self._pending_replace.pop(internal, (o.qty, o.price))
            o.qty, o.price = max(qty, ev.cum_qty), price
            o.fixed = None
            orders[internal] = o
            o.ids.append(internal)
            o.cl_ord_id = cl
        elif kind == _CANCELED:
            if orig_internal:
                orders[internal] = o
                o.ids.append(internal)
            o.cl_ord_id = cl
        if kind != _REJECTED:
            o.acked = True
        o.cum, o.leaves = ev.cum_qty, ev.leaves_qty
        if ev.ord_status >= 0:
            o.status = ev.ord_status
        rej = None
        if kind == _REJECTED:
            o.status = _REJECTED_ST
            rej = _ORD_REJ.get(ev.reason_code, b"99")
            del orders[internal]
        body = self._report_body(sk, o, cl, _EXEC_TYPE[kind], o.status, orig=orig, exec_id=ev.exec_id,
                                 last_qty=ev.last_qty, last_px=ev.last_px, text=ev.reason,
                                 code=ev.reason_code, rej=rej)
        self._sessions[sk].send(b"8", body)
        if o.status in _DONE and not o.finished and kind != _REJECTED:
            o.finished = True
            self._done.append(o)
            if len(self._done) > self._max_done:
                old = self._done.popleft()
                for i in old.ids:
                    if orders.get(i) is old:
                        del orders[i]

    def _status_report(self, sk: str, cl: str, ev: VenueEvent, o: _Order | None) -> None:
        asked = ev.orig_venue_cl_ord_id or ev.venue_cl_ord_id
        reqs = self._status_reqs.get(asked)
        req_id, ident = reqs.pop(0) if reqs else (b"", [])
        if reqs is not None and not reqs:
            del self._status_reqs[asked]
        extra = [(790, req_id)] if req_id else []
        if o is None or ev.ord_status == int(Status.REJECTED) and not ev.venue_order_id:
            # Unknown to the venue: FIX answers a status request with OrdStatus Rejected.
            body = [(37, b"NONE"), (11, asked.partition(SEP)[2].encode("latin-1")),
                    (17, self._exec_id().encode("latin-1")), (150, b"I"), (39, b"8"), (103, b"5")]
            body += [t for t in ident if t[0] != 54] or [(55, b"[N/A]")]
            body += [t for t in ident if t[0] == 54] or [(54, b"1")]
            body += [(151, b"0"), (14, b"0"), (6, b"0"), (60, _now_stamp())]
            body += self._tail(sk, ev.reason or "unknown order", int(Reason.UNKNOWN_ORDER))
            body += extra
            self._send(sk, b"8", body)
            return
        body = self._report_body(sk, o, cl, b"I", ev.ord_status if ev.ord_status >= 0 else o.status,
                                 orig=ev.orig_venue_cl_ord_id.partition(SEP)[2], extra=extra)
        self._send(sk, b"8", body)

    def _send(self, sk: str, msg_type: bytes, body: list) -> None:
        self._sessions[sk].send(msg_type, body)

    def _send_md(self, sk: str, msg_type: bytes, body: list) -> None:
        session = self._sessions.get(sk)
        if session is None or not session.is_logged_on:
            return
        self._live_send = True
        try:
            session.send(msg_type, body)
        finally:
            self._live_send = False


def _ord_status(status: int) -> bytes:
    # A stop waiting for its trigger is New to the client.
    return _ORD_STATUS.get(status) or b"%d" % status


def _text(m: Message, tag: int) -> str | None:
    v = m.get(tag)
    return None if v is None else v.decode("latin-1")


def _ident_of(m: Message) -> list:
    return [(t, m[t]) for t in (55, 167, 200, 201, 202) if t in m]


_stamp_second: list = [-1, b""]   # (epoch second, its "YYYYMMDD-HH:MM:SS") of the last stamp


def _now_stamp() -> bytes:
    """TransactTime now, milliseconds truncated; the date and time text made once per second."""
    t = time.time_ns()
    second = t // 1_000_000_000
    cached = _stamp_second
    if cached[0] != second:
        cached[1] = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(second)).encode()
        cached[0] = second
    return cached[1] + b".%03d" % ((t // 1_000_000) % 1000)
