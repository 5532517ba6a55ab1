"""The FIX gateway: FIX application messages -> typed order-manager commands, and the manager's
outputs -> ExecutionReports / OrderCancelRejects / OrderMassCancelReports for the session's FIX
version (4.2 or 4.4 semantics).

Edge rules (FIX answers):

* a tag the FIX dictionary requires is missing -> the session layer answers a session Reject (3)
  with SessionRejectReason 1 and RefTagID before we see the message;
* a tag required only by the order's type (Price for limit, StopPx for stop, ExpireTime/Date for
  GTD, OrigClOrdID ...) -> BusinessMessageReject (j) with BusinessRejectReason 5 naming the tag;
* unknown instrument -> ExecutionReport Rejected, OrdRejReason 1 (unknown symbol);
* off-tick price, wrong lot, bad quantity -> ExecutionReport Rejected, OrdRejReason 13 (incorrect
  quantity) / 99 (other; 0 on FIX 4.2, which has no 13/99), Text naming the value and the rule;
* unknown account / account of another firm -> OrdRejReason 15 (0 on 4.2);
* unsupported Side/OrdType/TimeInForce -> OrdRejReason 11 (0 on 4.2);
* a NewOrderSingle, OrderCancelRequest or OrderCancelReplaceRequest resent with PossDupFlag (43=Y)
  or PossResend (97=Y) whose ClOrdID the session already used -> ExecutionReport ExecType I with
  the current status of the order that ClOrdID belongs to (not processed again, not rejected as a
  duplicate); the same ClOrdID without either flag is a duplicate (OrdRejReason 6 for a D,
  CxlRejReason 6, 2 on 4.2, for an F/G).
"""
from __future__ import annotations

import datetime as _dt
import logging
from decimal import Decimal, InvalidOperation
from functools import partial

from crossbook.core import OrdType, TimeInForce
from crossbook.fix.codec import (ExecutionReportBodyEncoder, ReportInstrument, format_utc_timestamp,
                                 parse_utc_timestamp)
from crossbook.fix.messages import Message
from crossbook.fix.session import Application, BusinessReject, Session, UnsupportedMessageType
from crossbook.model.enums import CxlRejReason, CxlRejResponseTo, ExecType, OrdRejReason, OrdStatus
from crossbook.model.instruments import Instrument, InstrumentMaster, LotSizeError, PriceError
from crossbook.model.orders import AVG_PX_EXTRA_DECIMALS, CancelOrder, Execution, NewOrder, ReplaceOrder, avg_px_text
from crossbook.oms.accounts import Directory
from crossbook.oms.manager import OrderManager
from crossbook.oms.reports import CancelReject, ExecReport, MassCancelReport, Output

log = logging.getLogger("crossbook.oms.gateway")

CONDITIONALLY_REQUIRED = 5  # BusinessRejectReason
#: Journal meta key prefix (+ client CompID): "<next inbound MsgSeqNum> <FIX store creation time>",
#: the number after the last message whose effects are in the same commit.
INBOUND_MARK = "fix_next_in:"

_SIDES = {b"1": 1, b"2": 2}
_ORD_TYPES = {b"1": OrdType.MARKET, b"2": OrdType.LIMIT, b"3": OrdType.STOP, b"4": OrdType.STOP_LIMIT}
_TIFS = {b"0": TimeInForce.DAY, b"1": TimeInForce.GTC, b"3": TimeInForce.IOC, b"4": TimeInForce.FOK,
         b"6": TimeInForce.GTD}
# Report values as wire bytes: the session's field conversion passes bytes straight through.
_ORD_TYPE_FIX = {int(v): k for k, v in _ORD_TYPES.items()}
_TIF_FIX = {int(v): k for k, v in _TIFS.items()}
_SIDE_FIX = {1: b"1", 2: b"2"}
_EXEC_TYPE_FIX = {e: e.value.encode() for e in ExecType}
_ORD_STATUS_FIX = {s: s.value.encode() for s in OrdStatus}
_PRICED_ORD_TYPES = (OrdType.LIMIT, OrdType.STOP_LIMIT, 0)  # Price (44) is reported for these (0: not known)
# The D path in plain ints (an IntEnum's int() and comparisons cost a Python call each).
_ORD_TYPE_INTS = {raw: int(value) for raw, value in _ORD_TYPES.items()}
_TIF_INTS = {raw: int(value) for raw, value in _TIFS.items()}
_LIMIT_TYPES = (int(OrdType.LIMIT), int(OrdType.STOP_LIMIT))   # Price (44) required
_STOP_TYPES = (int(OrdType.STOP), int(OrdType.STOP_LIMIT))     # StopPx (99) required
_GTD = int(TimeInForce.GTD)
_POSS_RESEND = ((97, b"Y"),)  # header of a report sent again after a restart
_AMEND_EXEC_TYPES = frozenset((ExecType.REPLACED, ExecType.CANCELED, ExecType.PENDING_CANCEL, ExecType.PENDING_REPLACE))
#: Bound on the memo of price texts (clients choose prices; the memo must not grow without end).
_PRICE_MEMO_MAX = 65_536


class _Refused(Exception):
    """A NewOrderSingle refused at the edge: answered with an ExecutionReport Rejected."""

    def __init__(self, reason: OrdRejReason, text: str) -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text
        #: What is known of the order when it was refused (OrderManager.reject_new's keywords).
        self.partial: dict = {}


def _text(msg: Message | dict[int, bytes], tag: int) -> str:
    value = msg.get(tag)
    return value.decode("latin-1") if value is not None else ""


def _require(msg: Message | dict[int, bytes], tag: int, why: str) -> bytes:
    value = msg.get(tag)
    if not value:
        raise BusinessReject(CONDITIONALLY_REQUIRED, f"Conditionally required field missing: {why}", tag)
    return value


def _fmt(value: Decimal) -> str:
    """A Decimal (StrikePrice) without trailing zeros or exponent."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def _px(value: Decimal) -> str:
    """A price in the instrument's tick precision (230.00, not 230 or 2.3E+2)."""
    return format(value, "f")


class FixGateway(Application):
    """The FIX Application of the OMS acceptor. ``sessions`` maps client CompID -> live Session."""

    # from_app notes the next inbound MsgSeqNum in the manager's batch after every message it
    # handled (_note_received), and the server takes it back from the journal at a restart.
    journals_inbound = True

    def __init__(self, manager: OrderManager, instruments: InstrumentMaster, directory: Directory) -> None:
        self.manager = manager
        self.instruments = instruments
        self.directory = directory
        self.sessions: dict[str, Session] = {}
        self._resolved: dict[tuple, Instrument] = {}
        # Per instrument key: (instrument, its report fields as bytes); per (instrument, ticks):
        # the price text. Both are pure functions of a master that is fixed for the server's life.
        self._report_instruments: dict[str, tuple[Instrument | None, list[tuple[int, bytes]]]] = {}
        self._price_texts: dict[tuple[int, int], bytes] = {}
        # The compiled twin of execution_report_body, one per BeginString, and the instruments
        # as it takes them (the dict is shared with the encoders: never rebound).
        self._report_encoders: dict[str, ExecutionReportBodyEncoder] = {}
        self._compiled_instruments: dict[str, ReportInstrument] = {}
        # (instrument index, wire value) -> quantity / ticks, for values that passed every check:
        # exact (the conversion is a pure function) and skips Decimal arithmetic for repeated values.
        self._quantities: dict[tuple[int, bytes | None], int] = {}
        self._ticks: dict[tuple[int, bytes | None], int] = {}
        #: Set while the server shuts down: its own logouts are not client disconnects.
        self.stopping = False
        # Sessions that sent reports not yet written to their (batching) FIX store.
        self._unstored: set[Session] = set()
        # Per client CompID: (FIX store creation time, journal meta key, " <creation time>").
        self._marks: dict[str, tuple[float, str, str]] = {}
        manager.set_output_sink(self.send_output, self.store_outputs)

    # ------------------------------------------------------------------ session callbacks
    def on_create(self, session: Session) -> None:
        self.sessions[session.settings.target_comp_id] = session

    def on_logout(self, session: Session) -> None:
        # Everything received has been handled: a restart need not ask for the admin tail
        # (heartbeats, the Logout) again.
        self._note_received(session.settings.target_comp_id, session, session.next_target_seq)
        spec = self.directory.sessions.get(session.settings.target_comp_id)
        if spec is not None and spec.cancel_on_disconnect and not self.stopping:
            count = self.manager.cancel_session_orders(spec.comp_id)
            log.info("%s disconnected: %d open orders canceled", spec.comp_id, count)

    def from_app(self, session: Session, message: Message) -> None:
        key = session.settings.target_comp_id
        if key not in self.directory.sessions:
            raise BusinessReject(4, "session is not configured for order entry")  # 4: application not available
        try:
            if message._first.get(35) == b"D":  # the order path, without the _dispatch hop
                self.on_new_order_single(key, session.settings.begin_string, message)
            else:
                self._dispatch(key, session, message)
        except (BusinessReject, UnsupportedMessageType):
            raise
        except Exception as exc:  # a bug must cost one message, answered, not the session
            log.exception("handling %r failed", message)
            raise BusinessReject(0, f"internal error handling the message: {type(exc).__name__}") from None
        self._note_received(key, session, message.seq_num + 1)

    def _note_received(self, key: str, session: Session, next_seq: int) -> None:
        # The session's store counts a message as received as soon as its read is handled, but
        # what it did (the order) is durable only when the manager's batch is committed: a kill
        # in between would lose it for good. So the number after it rides in that same batch; a
        # restart goes back to the last committed mark (Server) and the client resends the rest.
        created = session.store.creation_time()
        mark = self._marks.get(key)
        if mark is None or mark[0] != created:  # (the store's numbering changes only on a reset)
            mark = self._marks[key] = (created, INBOUND_MARK + key, f" {created!r}")
        self.manager.note_meta(mark[1], f"{next_seq}{mark[2]}")

    def _dispatch(self, key: str, session: Session, message: Message) -> None:
        mt = message.msg_type
        if mt == b"D":
            self.on_new_order_single(key, session.settings.begin_string, message)
        elif mt == b"F":
            self.on_order_cancel_request(key, message)
        elif mt == b"G":
            self.on_order_cancel_replace_request(key, message)
        elif mt == b"H":
            self.manager.order_status(key, _text(message, 11), _text(message, 37))
        elif mt == b"AF":
            self.manager.mass_status(key, _text(message, 584), _text(message, 585), symbol=_text(message, 55),
                                     account=_text(message, 1))
        elif mt == b"q":
            self.manager.mass_cancel(key, _text(message, 11), _text(message, 530), symbol=_text(message, 55),
                                     security_type=_text(message, 167), account=_text(message, 1))
        else:
            raise UnsupportedMessageType()

    # ------------------------------------------------------------------ D
    def on_new_order_single(self, key: str, begin_string: str, message: Message) -> None:
        # Every lookup below (and in _new_order, resolve_instrument, quantity, price,
        # expire_time) only needs .get / [] of the first values: on the message's own dict
        # those are C calls, not a Python method each (about 20 per order).
        msg = message._first
        get = msg.get
        raw = get(11)
        cl_ord_id = raw.decode("latin-1") if raw is not None else ""
        if not cl_ord_id:
            raise BusinessReject(CONDITIONALLY_REQUIRED, "Conditionally required field missing: ClOrdID", 11)
        if (get(43) == b"Y" or get(97) == b"Y") and self.manager.find(key, cl_ord_id) is not None:
            # A resent order we already hold (PossDupFlag or PossResend, e.g. after the client or
            # we restarted): FIX answers with the order's current status (ExecType I), not with
            # a duplicate-ClOrdID reject that a client would take for the working order's fate.
            self.manager.order_status(key, cl_ord_id)
            return
        if not get(40):
            _require(msg, 40, "OrdType")
        ord_type = _ORD_TYPE_INTS.get(msg[40])
        if ord_type in _LIMIT_TYPES and not get(44):
            _require(msg, 44, "Price (44) for a limit order")
        if ord_type in _STOP_TYPES and not get(99):
            _require(msg, 99, "StopPx (99) for a stop order")
        tif = _TIF_INTS.get(get(59, b"0"))
        if tif == _GTD and not get(126) and not get(432):
            raise BusinessReject(CONDITIONALLY_REQUIRED,
                                 "Conditionally required field missing: ExpireTime (126) or ExpireDate (432) for GTD", 126)
        if not get(38):
            _require(msg, 38, "OrderQty")
        account = get(1)
        try:
            cmd = self._new_order(key, begin_string, cl_ord_id, msg, ord_type, tif,
                                  account.decode("latin-1") if account is not None else "", _SIDES.get(get(54, b""), 0))
        except _Refused as refused:
            self.manager.reject_new(key, begin_string, cl_ord_id, refused.reason, refused.text, **refused.partial)
            return
        self.manager.new_order(cmd)

    def _new_order(self, key: str, begin_string: str, cl_ord_id: str, msg: dict[int, bytes], ord_type: int | None,
                   tif: int | None, account_text: str, side: int) -> NewOrder:
        # A refusal carries what is known of the order at that point (reject_new's keywords),
        # built only then: the order path makes no dict for it.
        acc = self.directory.account_of(key, account_text)
        if acc is None:
            refused = _Refused(OrdRejReason.UNKNOWN_ACCOUNT, f"unknown account {account_text!r} for this session")
            refused.partial = {"account": account_text, "symbol": _text(msg, 55), "side": side}
            raise refused
        try:
            inst = self.resolve_instrument(msg)
        except _Refused as refused:
            refused.partial = {"account": acc.name, "symbol": _text(msg, 55), "side": side}
            raise
        known = 0   # 1: ord_type, 2: + tif, 3: + qty, 4: + price, as they pass their checks
        qty = price = 0
        try:
            if side == 0:
                raise _Refused(OrdRejReason.UNSUPPORTED_ORDER_CHARACTERISTIC,
                               f"Side {_text(msg, 54)!r} not supported (1 buy, 2 sell)")
            if ord_type is None:
                raise _Refused(OrdRejReason.UNSUPPORTED_ORDER_CHARACTERISTIC,
                               f"OrdType {_text(msg, 40)!r} not supported (1 market, 2 limit, 3 stop, 4 stop limit)")
            known = 1
            if tif is None:
                raise _Refused(OrdRejReason.UNSUPPORTED_ORDER_CHARACTERISTIC,
                               f"TimeInForce {_text(msg, 59)!r} not supported (0 DAY, 1 GTC, 3 IOC, 4 FOK, 6 GTD)")
            known = 2
            qty = self.quantity(inst, msg, 38, "OrderQty")
            known = 3
            stop = 0
            if ord_type in _LIMIT_TYPES:
                price = self.price(inst, msg, 44, "Price")
                known = 4
            if ord_type in _STOP_TYPES:
                stop = self.price(inst, msg, 99, "StopPx")
            display = 0
            get = msg.get
            if get(111):
                display = self.quantity(inst, msg, 111, "MaxFloor")
                if display > qty:
                    raise _Refused(OrdRejReason.INCORRECT_QUANTITY, f"MaxFloor {display} is above OrderQty {qty}")
            exec_inst = get(18)
            post_only = b"6" in exec_inst.split(b" ") if exec_inst else False
            expire = 0
            if tif == _GTD:
                expire = self.expire_time(msg)
        except _Refused as refused:
            partial = {"account": acc.name, "symbol": inst.key, "side": side, "instrument_index": inst.index}
            if known >= 1:
                partial["ord_type"] = ord_type
            if known >= 2:
                partial["tif"] = tif
            if known >= 3:
                partial["qty"] = qty
            if known >= 4:
                partial["price"] = price
            refused.partial = partial
            raise
        ex_destination = get(100)
        # Positional, in NewOrder's field order (session ... expire_time, ex_destination).
        return NewOrder(key, begin_string, cl_ord_id, acc.firm, acc.name, inst.index, side, ord_type, tif,
                        qty, price, stop, display, post_only, expire,
                        ex_destination.decode("latin-1") if ex_destination is not None else "")

    def resolve_instrument(self, msg: Message | dict[int, bytes]) -> Instrument:
        key = (msg.get(55), msg.get(167), msg.get(200), msg.get(202), msg.get(201), msg.get(15))
        inst = self._resolved.get(key)
        if inst is not None:
            return inst
        try:
            inst = self.instruments.resolve(
                _text(msg, 55), security_type=_text(msg, 167) or None, maturity_month_year=_text(msg, 200) or None,
                strike=_text(msg, 202) or None, put_or_call=_text(msg, 201) or None, currency=_text(msg, 15) or None)
        except ValueError as exc:
            raise _Refused(OrdRejReason.UNKNOWN_SYMBOL, str(exc)) from None
        # The master is fixed for the server's life: remember what these field values named
        # (bounded, since clients choose the values).
        if len(self._resolved) < 10_000:
            self._resolved[key] = inst
        return inst

    def quantity(self, inst: Instrument, msg: Message | dict[int, bytes], tag: int, name: str) -> int:
        """A quantity field as whole units (lot checked), or _Refused naming the field."""
        key = (inst.index, msg.get(tag))
        qty = self._quantities.get(key)
        if qty is None:
            qty = self._quantity(inst, msg, tag, name)
            if len(self._quantities) >= _PRICE_MEMO_MAX:
                self._quantities.clear()
            self._quantities[key] = qty  # only values that passed: a bad one is checked (and named) each time
        return qty

    @staticmethod
    def _quantity(inst: Instrument, msg: Message | dict[int, bytes], tag: int, name: str) -> int:
        raw = _text(msg, tag)
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise _Refused(OrdRejReason.INCORRECT_QUANTITY, f"{name} ({tag}) {raw!r} is not a number") from None
        if not value.is_finite() or value <= 0 or value != value.to_integral_value():
            raise _Refused(OrdRejReason.INCORRECT_QUANTITY, f"{name} ({tag}) {raw} must be a positive whole number")
        qty = int(value)
        try:
            inst.check_qty(qty)
        except LotSizeError as exc:
            raise _Refused(OrdRejReason.INCORRECT_QUANTITY, f"{name} ({tag}): {exc}") from None
        except ValueError as exc:
            raise _Refused(OrdRejReason.INCORRECT_QUANTITY, f"{name} ({tag}): {exc}") from None
        return qty

    def price(self, inst: Instrument, msg: Message | dict[int, bytes], tag: int, name: str) -> int:
        """A price field in ticks (exact, on the tick grid), or _Refused naming the field."""
        key = (inst.index, msg.get(tag))
        ticks = self._ticks.get(key)
        if ticks is None:
            ticks = self._price(inst, msg, tag, name)
            if len(self._ticks) >= _PRICE_MEMO_MAX:
                self._ticks.clear()
            self._ticks[key] = ticks
        return ticks

    @staticmethod
    def _price(inst: Instrument, msg: Message | dict[int, bytes], tag: int, name: str) -> int:
        raw = _text(msg, tag)
        try:
            ticks = inst.price_to_ticks(raw)
        except PriceError as exc:
            raise _Refused(OrdRejReason.OTHER, f"{name} ({tag}): {exc}") from None
        except (ValueError, InvalidOperation) as exc:
            raise _Refused(OrdRejReason.OTHER, f"{name} ({tag}) {raw!r}: {exc}") from None
        if ticks <= 0:
            raise _Refused(OrdRejReason.OTHER, f"{name} ({tag}) {raw} must be positive")
        return ticks

    @staticmethod
    def expire_time(msg: Message | dict[int, bytes]) -> int:
        if msg.get(126):
            try:
                return parse_utc_timestamp(msg[126])
            except ValueError:
                raise _Refused(OrdRejReason.OTHER, f"ExpireTime (126) {_text(msg, 126)!r} is not a UTCTimestamp") from None
        raw = _text(msg, 432)
        try:
            day = _dt.datetime.strptime(raw, "%Y%m%d").replace(tzinfo=_dt.timezone.utc)
        except ValueError:
            raise _Refused(OrdRejReason.OTHER, f"ExpireDate (432) {raw!r} is not YYYYMMDD") from None
        # Good for the whole of that (UTC) day.
        return int((day + _dt.timedelta(days=1)).timestamp()) * 1_000_000_000 - 1

    # ------------------------------------------------------------------ F / G
    def _answer_resent_request(self, key: str, first: dict[int, bytes], cl_ord_id: str) -> bool:
        """A cancel or cancel/replace request resent with PossDupFlag (43=Y) or PossResend (97=Y)
        whose ClOrdID this session already used: answered with the current status of the order
        that ClOrdID belongs to (ExecType I, as an OrderStatusRequest), and True. The manager
        keeps every ClOrdID of an order's chain (its own, each accepted cancel's and replace's),
        so ``find`` names the order the first request acted on. Processing it again would answer
        a duplicate-ClOrdID OrderCancelReject, which a client's engine may take for the fate of
        its request (a cancel it believes refused while it was done). A repeat without either
        flag is an error of the client's and keeps that reject. (The NewOrderSingle twin is
        inline in :meth:`on_new_order_single`, the hot path.)"""
        if (first.get(43) == b"Y" or first.get(97) == b"Y") and self.manager.find(key, cl_ord_id) is not None:
            self.manager.order_status(key, cl_ord_id)
            return True
        return False

    def on_order_cancel_request(self, key: str, msg: Message) -> None:
        cl = _text(msg, 11)
        if self._answer_resent_request(key, msg._first, cl):
            return
        orig = _require(msg, 41, "OrigClOrdID").decode("latin-1")
        self.manager.cancel_order(CancelOrder(session=key, cl_ord_id=cl, orig_cl_ord_id=orig,
                                              order_id=_text(msg, 37), symbol=_text(msg, 55),
                                              side=_SIDES.get(msg.get(54, b""), 0)))

    def on_order_cancel_replace_request(self, key: str, msg: Message) -> None:
        cl = _text(msg, 11)
        if self._answer_resent_request(key, msg._first, cl):
            return
        orig = _require(msg, 41, "OrigClOrdID").decode("latin-1")
        order = self.manager.find_amend_target(key, orig, _text(msg, 37))
        side = _SIDES.get(msg.get(54, b""), 0)
        if order is None or order.instrument_index < 0:
            self.manager.replace_order(ReplaceOrder(session=key, cl_ord_id=cl, orig_cl_ord_id=orig, qty=0, price=0,
                                                    order_id=_text(msg, 37), side=side))
            return
        inst = self.instruments.by_index(order.instrument_index)
        _require(msg, 38, "OrderQty")
        try:
            qty = self.quantity(inst, msg, 38, "OrderQty")
            price = order.price
            if order.ord_type in (OrdType.LIMIT, OrdType.STOP_LIMIT):
                price = self.price(inst, msg, 44, "Price") if msg.get(44) else order.price
        except _Refused as refused:
            self.manager.reject_cancel_replace(key, order, cl, orig, CxlRejResponseTo.REPLACE,
                                               CxlRejReason.BROKER_OPTION, refused.text)
            return
        self.manager.replace_order(ReplaceOrder(session=key, cl_ord_id=cl, orig_cl_ord_id=orig, qty=qty,
                                                price=price, order_id=_text(msg, 37), side=side))

    # ------------------------------------------------------------------ outputs
    def send_output(self, output: Output) -> None:
        session = self.sessions.get(output.session)
        if session is None:
            log.error("no FIX session %s for %s", output.session, type(output).__name__)
            return
        if isinstance(output, ExecReport):
            header = _POSS_RESEND if output.poss_resend else ()
            # The body encoded in one compiled call, the session stamping its header around it;
            # a session object without send_encoded gets the field list.
            send_encoded = getattr(session, "send_encoded", None)
            if send_encoded is not None:
                send_encoded(b"8", self.execution_report_bytes(session.settings.begin_string, output), header)
            else:
                session.send(b"8", self.execution_report_body(session.settings.begin_string, output), header)
        elif isinstance(output, CancelReject):
            session.send(b"9", self.cancel_reject_body(session.settings.begin_string, output))
        elif isinstance(output, MassCancelReport):
            session.send(b"r", self.mass_cancel_report_body(output))
        else:
            return
        self._unstored.add(session)

    def store_outputs(self) -> None:
        """Write what :meth:`send_output` sent to the sessions' FIX stores now (one write per
        session). The manager calls it before it journals the reports as sent: a batching store
        would otherwise write them only when the connection next flushes, after that mark may
        already be committed, and a kill in between would lose them for good."""
        sessions, self._unstored = self._unstored, set()
        for session in sessions:
            session.store.write_pending()

    def _report_instrument(self, symbol_key: str) -> tuple[Instrument | None, list[tuple[int, bytes]]]:
        cached = self._report_instruments.get(symbol_key)
        if cached is not None:
            return cached
        inst = self.instruments.by_symbol(symbol_key) if symbol_key else None
        if inst is None:
            fields = [(55, (symbol_key or "[N/A]").encode("latin-1"))]
        else:
            fields = [(55, inst.symbol.encode("latin-1"))]
            # Only SecurityType values the 4.2/4.4 dictionaries know (a QuickFIX peer rejects
            # others): FX spot is FOR there (FXSPOT arrived with 5.0); no version has a crypto
            # value, so crypto goes without 167 (the Symbol names it).
            security_type = inst.security_type
            if security_type == "FXSPOT":
                security_type = "FOR"
            if security_type != "CRYPTO":
                fields.append((167, security_type.encode()))
            if inst.maturity_month_year:
                fields.append((200, inst.maturity_month_year.encode()))
            if inst.put_or_call is not None:
                fields.append((201, str(inst.put_or_call).encode()))
            if inst.strike is not None:
                fields.append((202, _fmt(inst.strike).encode()))
        if inst is not None or len(self._report_instruments) < 10_000:  # unknown keys come from clients
            self._report_instruments[symbol_key] = (inst, fields)
        return inst, fields

    def _price_text(self, inst: Instrument, ticks: int) -> bytes:
        key = (inst.index, ticks)
        text = self._price_texts.get(key)
        if text is None:
            text = _px(inst.ticks_to_price(ticks)).encode()
            if len(self._price_texts) >= _PRICE_MEMO_MAX:
                self._price_texts.clear()
            self._price_texts[key] = text
        return text

    def execution_report_bytes(self, begin_string: str, out: ExecReport) -> bytes:
        """:meth:`execution_report_body` encoded (``tag=value<SOH>``...) in one compiled call, for
        ``Session.send_encoded``: byte for byte what the session makes of that list."""
        encoder = self._report_encoders.get(begin_string)
        if encoder is None:
            encoder = self._report_encoders[begin_string] = ExecutionReportBodyEncoder(
                begin_string, ExecReport._fields, Execution._fields, _ORD_TYPE_FIX, _TIF_FIX, _PRICED_ORD_TYPES,
                self._compiled_instruments, self._compiled_instrument)
        return encoder.encode(out)

    def _compiled_instrument(self, symbol_key: str) -> ReportInstrument:
        # From the list path's own fields and price texts: the two cannot drift apart.
        inst, fields = self._report_instrument(symbol_key)
        encoded = b"".join(b"%d=%s\x01" % (tag, value) for tag, value in fields)
        if inst is None:
            compiled = ReportInstrument(encoded)
        else:
            compiled = ReportInstrument(encoded, inst.tick_size, partial(self._price_text, inst),
                                        partial(avg_px_text, tick_size=inst.tick_size), AVG_PX_EXTRA_DECIMALS)
        if inst is not None or len(self._compiled_instruments) < 10_000:  # unknown keys come from clients
            self._compiled_instruments[symbol_key] = compiled
        return compiled

    def execution_report_body(self, begin_string: str, out: ExecReport) -> list[tuple[int, str | bytes]]:
        """The ExecutionReport's body fields, in order, values as bytes or str: the reference for
        :meth:`execution_report_bytes`, and the body of drop copies and of sessions without
        ``send_encoded``."""
        ex = out.execution
        exec_type = ex.exec_type
        cached = self._report_instruments.get(ex.symbol)
        inst, inst_fields = cached if cached is not None else self._report_instrument(ex.symbol)
        # Identifiers go as bytes, encoded as the session would (latin-1), one C call each
        # instead of the session's per-value conversion.
        cl_ord_id = ex.cl_ord_id
        body: list[tuple[int, str | bytes]] = (
            [(37, ex.order_id.encode("latin-1")), (11, cl_ord_id.encode("latin-1"))] if cl_ord_id
            else [(37, ex.order_id.encode("latin-1"))])
        if ex.orig_cl_ord_id and exec_type in _AMEND_EXEC_TYPES:
            body.append((41, ex.orig_cl_ord_id.encode("latin-1")))
        exec_id = ex.exec_id.encode("latin-1")
        if begin_string == "FIX.4.2":
            body.append((17, exec_id))
            if exec_type is ExecType.TRADE:
                body += [(20, b"0"), (150, b"2" if ex.leaves_qty == 0 else b"1")]
            elif exec_type is ExecType.ORDER_STATUS:
                body += [(20, b"3"), (150, _ORD_STATUS_FIX[ex.ord_status])]
            else:
                body += [(20, b"0"), (150, _EXEC_TYPE_FIX[exec_type])]
            body.append((39, _ORD_STATUS_FIX[ex.ord_status]))
        else:
            body += [(17, exec_id), (150, _EXEC_TYPE_FIX[exec_type]), (39, _ORD_STATUS_FIX[ex.ord_status])]
        if ex.account:
            body.append((1, ex.account.encode("latin-1")))
        body += inst_fields
        side = ex.side
        body.append((54, _SIDE_FIX.get(side) or str(side or 1)))
        order_qty = out.order_qty or ex.qty
        if order_qty:
            body.append((38, b"%d" % order_qty))
        ord_type = out.ord_type
        if ord_type:
            body.append((40, _ORD_TYPE_FIX[ord_type]))
        cum_qty = ex.cum_qty
        if inst is not None:
            if ex.price and ord_type in _PRICED_ORD_TYPES:
                body.append((44, self._price_texts.get((inst.index, ex.price)) or self._price_text(inst, ex.price)))
            if out.stop_px:
                body.append((99, self._price_text(inst, out.stop_px)))
            if ord_type:
                body.append((59, _TIF_FIX.get(out.tif, b"0")))
            if exec_type is ExecType.TRADE:
                body += [(32, b"%d" % ex.last_qty), (31, self._price_text(inst, ex.last_px)), (30, ex.venue)]
            body += [(151, b"%d" % ex.leaves_qty), (14, b"%d" % cum_qty),
                     (6, avg_px_text(ex.cum_value, cum_qty, inst.tick_size) if cum_qty else b"0")]
        else:
            if ord_type:
                body.append((59, _TIF_FIX.get(out.tif, b"0")))
            body += [(151, b"%d" % ex.leaves_qty), (14, b"%d" % cum_qty), (6, b"0")]
        if out.ord_rej_reason is not None:
            body.append((103, str(out.ord_rej_reason.for_version(begin_string))))
        if out.mass_status_req_id:
            body.append((584, out.mass_status_req_id))
        if out.tot_num_reports >= 0:
            body.append((911, str(out.tot_num_reports)))
        if out.last_rpt_requested:
            body.append((912, b"Y"))
        if ex.text:
            body.append((58, ex.text))
        body.append((60, format_utc_timestamp(ex.ts, 6)))
        return body

    @staticmethod
    def cancel_reject_body(begin_string: str, out: CancelReject) -> list[tuple[int, str]]:
        body = [(37, out.order_id), (11, out.cl_ord_id or "NONE"), (41, out.orig_cl_ord_id or "NONE"),
                (39, out.ord_status.value)]
        if out.account:
            body.append((1, out.account))
        body += [(434, out.response_to.value), (102, str(out.reason.for_version(begin_string)))]
        if out.text:
            body.append((58, out.text))
        return body

    @staticmethod
    def mass_cancel_report_body(out: MassCancelReport) -> list[tuple[int, str]]:
        body = [(11, out.cl_ord_id), (37, out.report_id), (530, out.request_type), (531, out.response)]
        if out.reject_reason >= 0:
            body.append((532, str(out.reject_reason)))
        body.append((533, str(out.affected)))
        if out.symbol:
            body.append((55, out.symbol))
        if out.security_type:
            body.append((167, out.security_type))
        if out.text:
            body.append((58, out.text))
        return body
