"""``crossbook client``: a FIX initiator for people and scripts.

It logs on with settings from flags or a session config file, sends orders and order
requests from its command line (one-shot) or from a line-oriented prompt on stdin, prints
what comes back one readable line per message, and logs out cleanly on ``quit``, end of
input or Ctrl-C.

The module has two halves:

* plain, synchronous pieces that never touch a socket: :func:`parse_command` (the verbs),
  :class:`OrderTracker` (our orders, their ClOrdID chains, what is still unanswered),
  :func:`build_request` (verb -> FIX fields for the session's FIX version) and
  :func:`format_message` (one line per received message);
* :class:`ClientRunner`, which drives them over the engine's asyncio initiator.

See docs/fix.md, section "Client", for the grammar and exit codes.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as _dt
import itertools
import logging
import os
import shlex
import signal
import ssl
import sys
import threading
import time
from decimal import Decimal, InvalidOperation
from typing import Iterable, Sequence

from crossbook.fix.session import Application
from crossbook.fix.settings import SessionSettings, SettingsError, load_settings
from crossbook.fix.settings import replace as replace_settings
from crossbook.fix.transport import Initiator
from crossbook.model.ids import base36

SOH = "\x01"

# --------------------------------------------------------------------------------------
# FIX vocabulary the client needs (names for printing, codes for sending)
# --------------------------------------------------------------------------------------

#: FIX version names accepted by --fix-version -> (BeginString, DefaultApplVerID or None).
FIX_VERSIONS: dict[str, tuple[str, str | None]] = {
    "4.2": ("FIX.4.2", None),
    "4.4": ("FIX.4.4", None),
    "5.0": ("FIXT.1.1", "7"),
    "5.0SP1": ("FIXT.1.1", "8"),
    "5.0SP2": ("FIXT.1.1", "9"),
}

MSG_TYPE_NAMES = {
    "0": "Heartbeat", "1": "TestRequest", "2": "ResendRequest", "3": "Reject",
    "4": "SequenceReset", "5": "Logout", "A": "Logon", "8": "ExecutionReport",
    "9": "OrderCancelReject", "D": "NewOrderSingle", "F": "OrderCancelRequest",
    "G": "OrderCancelReplaceRequest", "H": "OrderStatusRequest", "j": "BusinessMessageReject",
    "q": "OrderMassCancelRequest", "r": "OrderMassCancelReport", "d": "SecurityDefinition",
}

EXEC_TYPE_NAMES = {
    "0": "New", "1": "PartialFill", "2": "Fill", "3": "DoneForDay", "4": "Canceled",
    "5": "Replaced", "6": "PendingCancel", "7": "Stopped", "8": "Rejected", "9": "Suspended",
    "A": "PendingNew", "B": "Calculated", "C": "Expired", "D": "Restated",
    "E": "PendingReplace", "F": "Trade", "G": "TradeCorrect", "H": "TradeCancel",
    "I": "OrderStatus",
}

ORD_STATUS_NAMES = {
    "0": "New", "1": "PartiallyFilled", "2": "Filled", "3": "DoneForDay", "4": "Canceled",
    "5": "Replaced", "6": "PendingCancel", "7": "Stopped", "8": "Rejected", "9": "Suspended",
    "A": "PendingNew", "B": "Calculated", "C": "Expired", "D": "AcceptedForBidding",
    "E": "PendingReplace",
}

#: OrdStatus values after which an order can no longer trade.
TERMINAL_STATUSES = frozenset("2348C")

SIDES = {"buy": "1", "sell": "2", "short": "5", "short-exempt": "6"}
SIDE_NAMES = {"1": "BUY", "2": "SELL", "5": "SHORT", "6": "SHORT-EXEMPT", "3": "BUY-MINUS",
              "4": "SELL-PLUS", "7": "UNDISCLOSED", "8": "CROSS"}

ORD_TYPES = {"market": "1", "mkt": "1", "limit": "2", "lmt": "2", "stop": "3",
             "stop-limit": "4"}
ORD_TYPE_NAMES = {"1": "MKT", "2": "LMT", "3": "STP", "4": "STPLMT"}

TIME_IN_FORCE = {"day": "0", "gtc": "1", "opg": "2", "ioc": "3", "fok": "4", "gtx": "5",
                 "gtd": "6"}

CXL_REJ_REASON_NAMES = {"0": "TooLateToCancel", "1": "UnknownOrder", "2": "BrokerOption",
                        "3": "AlreadyPendingCancelOrReplace", "4": "UnableToProcessMassCancel",
                        "5": "OrigOrdModTimeMismatch", "6": "DuplicateClOrdID",
                        "99": "Other"}

SESSION_REJECT_REASON_NAMES = {
    "0": "InvalidTagNumber", "1": "RequiredTagMissing", "2": "TagNotDefinedForMessageType",
    "3": "UndefinedTag", "4": "TagSpecifiedWithoutValue", "5": "ValueIncorrectForTag",
    "6": "IncorrectDataFormat", "7": "DecryptionProblem", "8": "SignatureProblem",
    "9": "CompIDProblem", "10": "SendingTimeAccuracyProblem", "11": "InvalidMsgType",
    "12": "XMLValidationError", "13": "TagAppearsMoreThanOnce", "14": "TagOutOfOrder",
    "15": "RepeatingGroupFieldsOutOfOrder", "16": "IncorrectNumInGroupCount",
    "17": "NonDataValueIncludesFieldDelimiter", "99": "Other",
}

BUSINESS_REJECT_REASON_NAMES = {
    "0": "Other", "1": "UnknownID", "2": "UnknownSecurity", "3": "UnsupportedMessageType",
    "4": "ApplicationNotAvailable", "5": "ConditionallyRequiredFieldMissing",
    "6": "NotAuthorized", "7": "DeliverToFirmNotAvailable",
}

MASS_CANCEL_RESPONSE_NAMES = {"0": "Rejected", "1": "CancelSecurity", "2": "CancelUnderlying",
                              "3": "CancelProduct", "4": "CancelCFICode",
                              "5": "CancelSecurityType", "6": "CancelTradingSession",
                              "7": "CancelAll"}

HELP_TEXT = """\
Commands (one per line; words are separated by spaces, quote values with spaces):
  send SIDE QTY SYMBOL [market | limit PRICE | stop STOPPX | stop-limit STOPPX PRICE | PRICE]
       [tif=day|gtc|opg|ioc|fok|gtx|gtd] [account=A] [clordid=ID] [text=T] [exdest=X] [TAG=VALUE]...
                          NewOrderSingle; SIDE is buy, sell, short or short-exempt.
                          "buy ..." and "sell ..." work without "send". No type and no price
                          means market; a bare PRICE means limit.
  cancel ID [TAG=VALUE]...            OrderCancelRequest for the order ID (any ClOrdID of its
                                      chain, or its OrderID)
  replace ID [qty=Q] [price=P] [stop=S] [tif=T] [TAG=VALUE]...
                                      OrderCancelReplaceRequest changing what is given
  status ID                           OrderStatusRequest
  mass-cancel [SYMBOL]                OrderMassCancelRequest: all orders, or one symbol's
  orders                              list the orders sent in this session
  help                                this text
  quit                                log out and exit (also: exit, logout, end of input, Ctrl-C)
An order not sent by this session can be cancelled, replaced or queried by also giving
symbol=S side=buy|sell (and qty=Q)."""


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Command:
    """One parsed command line.

    ``verb`` is one of send, cancel, replace, status, mass-cancel, orders, help, quit.
    ``options`` holds the named ``key=value`` words (lower-case keys); ``extra_tags`` the
    ``TAG=VALUE`` words with numeric tags, passed through to the message unchanged.
    """

    verb: str
    side: str | None = None          # FIX Side code
    quantity: Decimal | None = None
    symbol: str | None = None
    ord_type: str | None = None      # FIX OrdType code
    price: Decimal | None = None
    stop_price: Decimal | None = None
    order_ref: str | None = None     # ClOrdID or OrderID the request is about
    options: tuple[tuple[str, str], ...] = ()
    extra_tags: tuple[tuple[int, str], ...] = ()

    def option(self, key: str, default: str | None = None) -> str | None:
        for k, v in self.options:
            if k == key:
                return v
        return default


_VERB_ALIASES = {"exit": "quit", "logout": "quit", "q": "quit", "?": "help",
                 "masscancel": "mass-cancel", "mass_cancel": "mass-cancel"}

_OPTIONS_BY_VERB = {
    "send": {"tif", "account", "clordid", "text", "exdest", "expire"},
    "cancel": {"clordid", "text", "symbol", "side", "qty", "account"},
    "replace": {"clordid", "text", "symbol", "side", "qty", "price", "stop", "tif", "account",
                "type"},
    "status": {"clordid", "symbol", "side"},
    "mass-cancel": {"clordid", "text"},
}


def parse_decimal(text: str, what: str, *, positive: bool = True) -> Decimal:
    """Parse a price or quantity word; a ValueError names ``what`` and the bad text."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{what} must be a number, got {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"{what} must be a finite number, got {text!r}")
    if positive and value <= 0:
        raise ValueError(f"{what} must be greater than zero, got {text!r}")
    return value


def format_decimal(value: Decimal) -> str:
    """A Decimal as FIX wants it: plain digits, no exponent, no trailing zeros."""
    text = format(value.normalize(), "f")
    return text


#: Tags the session layer owns; a TAG=VALUE word cannot set them.
SESSION_OWNED_TAGS = frozenset({8, 9, 10, 34, 35, 43, 49, 52, 56, 97, 122, 1128})


def _check_fix_value(tag: str, value: str) -> None:
    if SOH in value:
        raise ValueError(f"value of {tag} must not contain the SOH field separator")
    if value == "":
        raise ValueError(f"value of {tag} is empty")


def parse_command(line: str) -> Command | None:
    """Parse one command line; ``None`` for an empty line or a comment (``#``).

    Raises ValueError with a message naming the bad word.
    """
    try:
        words = shlex.split(line, comments=True)
    except ValueError as exc:  # unbalanced quotes
        raise ValueError(f"cannot split the line into words: {exc}") from None
    if not words:
        return None
    verb = words[0].lower()
    verb = _VERB_ALIASES.get(verb, verb)
    args = words[1:]
    if verb in ("buy", "sell", "short", "short-exempt"):
        args = [verb] + args
        verb = "send"
    positional: list[str] = []
    options: list[tuple[str, str]] = []
    extra: list[tuple[int, str]] = []
    for word in args:
        key, eq, value = word.partition("=")
        if not eq:
            if options or extra:
                raise ValueError(f"{word!r} comes after key=value words; put it before them")
            positional.append(word)
            continue
        if not key:
            raise ValueError(f"{word!r} has no name before '='")
        _check_fix_value(key, value)
        if key.isdigit():
            tag = int(key)
            if tag <= 0:
                raise ValueError(f"tag number must be positive, got {key!r}")
            if tag in SESSION_OWNED_TAGS:
                raise ValueError(f"tag {tag} is set by the session layer and cannot be given")
            extra.append((tag, value))
        else:
            options.append((key.lower(), value))

    if verb == "help":
        return Command("help")
    if verb == "quit":
        return Command("quit")
    if verb == "orders":
        if positional or options or extra:
            raise ValueError("'orders' takes no arguments")
        return Command("orders")
    if verb not in _OPTIONS_BY_VERB:
        raise ValueError(f"unknown command {words[0]!r}; type 'help' for the list")
    allowed = _OPTIONS_BY_VERB[verb]
    for key, _ in options:
        if key not in allowed:
            raise ValueError(f"unknown option {key!r} for {verb}; allowed: "
                             + ", ".join(sorted(allowed)) + " or a numeric TAG=VALUE")
    opts = tuple(options)
    tags = tuple(extra)
    if verb == "send":
        return _parse_send(positional, opts, tags)
    if verb == "mass-cancel":
        if len(positional) > 1:
            raise ValueError("mass-cancel takes at most one word, the symbol")
        return Command("mass-cancel", symbol=positional[0] if positional else None,
                       options=opts, extra_tags=tags)
    # cancel / replace / status: one order reference
    if not positional:
        raise ValueError(f"{verb} needs the ClOrdID (or OrderID) of the order")
    if len(positional) > 1:
        raise ValueError(f"{verb} takes one order reference, got {' '.join(positional)!r}; "
                         "changes go as key=value words")
    cmd = Command(verb, order_ref=positional[0], options=opts, extra_tags=tags)
    if verb == "replace":
        _check_replace_options(cmd)
    for key in ("qty", "price", "stop"):
        if cmd.option(key) is not None:
            parse_decimal(cmd.option(key), key)
    if cmd.option("side") is not None and cmd.option("side").lower() not in SIDES:
        raise ValueError(f"side must be one of {', '.join(SIDES)}, got {cmd.option('side')!r}")
    if cmd.option("tif") is not None and cmd.option("tif").lower() not in TIME_IN_FORCE:
        raise ValueError(f"tif must be one of {', '.join(TIME_IN_FORCE)}, "
                         f"got {cmd.option('tif')!r}")
    return cmd


def _check_replace_options(cmd: Command) -> None:
    if not any(cmd.option(k) is not None for k in ("qty", "price", "stop", "tif", "type")) \
            and not cmd.extra_tags:
        raise ValueError("replace needs at least one change: qty=, price=, stop=, tif= or type=")
    if cmd.option("type") is not None and cmd.option("type").lower() not in ORD_TYPES:
        raise ValueError(f"type must be one of market, limit, stop, stop-limit, "
                         f"got {cmd.option('type')!r}")


def _parse_send(words: list[str], options: tuple, extra: tuple) -> Command:
    usage = "send SIDE QTY SYMBOL [market | limit PRICE | stop STOPPX | stop-limit STOPPX PRICE]"
    if len(words) < 3:
        missing = ["SIDE", "QTY", "SYMBOL"][len(words):]
        raise ValueError(f"send needs {' '.join(missing)} (usage: {usage})")
    side_word, qty_word, symbol = words[0].lower(), words[1], words[2]
    if side_word not in SIDES:
        raise ValueError(f"side must be one of {', '.join(SIDES)}, got {words[0]!r}")
    quantity = parse_decimal(qty_word, "quantity")
    rest = words[3:]
    price = stop = None
    if not rest:
        ord_type = "1"
    elif rest[0].lower() in ORD_TYPES:
        ord_type = ORD_TYPES[rest[0].lower()]
        needs = {"1": 0, "2": 1, "3": 1, "4": 2}[ord_type]
        prices = rest[1:]
        if len(prices) != needs:
            name = rest[0].lower()
            wanted = {0: "no price", 1: "one price", 2: "a stop price and a limit price"}[needs]
            raise ValueError(f"{name} order takes {wanted}, got {len(prices)}: "
                             f"{' '.join(prices) or 'none'}")
        if ord_type == "2":
            price = parse_decimal(prices[0], "limit price")
        elif ord_type == "3":
            stop = parse_decimal(prices[0], "stop price")
        elif ord_type == "4":
            stop = parse_decimal(prices[0], "stop price")
            price = parse_decimal(prices[1], "limit price")
    elif len(rest) == 1:
        ord_type = "2"
        try:
            price = parse_decimal(rest[0], "limit price")
        except ValueError:
            raise ValueError(f"expected an order type (market, limit, stop, stop-limit) or a "
                             f"price after the symbol, got {rest[0]!r}") from None
    else:
        raise ValueError(f"unexpected words after the symbol: {' '.join(rest)!r} "
                         f"(usage: {usage})")
    cmd = Command("send", side=SIDES[side_word], quantity=quantity, symbol=symbol,
                  ord_type=ord_type, price=price, stop_price=stop, options=options,
                  extra_tags=extra)
    tif = cmd.option("tif")
    if tif is not None and tif.lower() not in TIME_IN_FORCE:
        raise ValueError(f"tif must be one of {', '.join(TIME_IN_FORCE)}, got {tif!r}")
    if tif is not None and tif.lower() == "gtd" and cmd.option("expire") is None:
        raise ValueError("tif=gtd needs expire=YYYYMMDD (ExpireDate) as well")
    return cmd


# --------------------------------------------------------------------------------------
# Orders and ClOrdIDs
# --------------------------------------------------------------------------------------

class ClOrdIdGenerator:
    """ClOrdIDs unique across runs: a prefix from the start time plus a counter.

    The prefix is the start time in milliseconds, base 36, so two clients started a
    millisecond apart (or the same client restarted) never reuse an ID the counterparty
    may still remember for the day.
    """

    def __init__(self, prefix: str | None = None, *, now_ms: int | None = None):
        if prefix is None:
            stamp = int(time.time() * 1000) if now_ms is None else now_ms
            prefix = "C" + base36(stamp, upper=True) + "-"
        self.prefix = prefix
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self._counter)}"



@dataclasses.dataclass
class TrackedOrder:
    """What the client knows about one of its orders."""

    clordid: str                     # the ClOrdID currently in force
    symbol: str
    side: str
    quantity: Decimal
    ord_type: str
    price: Decimal | None = None
    stop_price: Decimal | None = None
    account: str | None = None
    time_in_force: str | None = None
    order_id: str | None = None
    ord_status: str | None = None    # None until the first ExecutionReport
    cum_qty: Decimal = Decimal(0)
    leaves_qty: Decimal | None = None
    avg_px: Decimal | None = None
    chain: list[str] = dataclasses.field(default_factory=list)   # every ClOrdID used, oldest first
    pending: dict[str, "PendingRequest"] = dataclasses.field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        return self.ord_status is not None and self.ord_status in TERMINAL_STATUSES


@dataclasses.dataclass
class PendingRequest:
    """A cancel or replace sent but not yet accepted or rejected."""

    kind: str                        # "cancel" | "replace"
    clordid: str
    orig_clordid: str
    quantity: Decimal | None = None
    price: Decimal | None = None
    stop_price: Decimal | None = None
    ord_type: str | None = None
    time_in_force: str | None = None


class OrderTracker:
    """Our orders by ClOrdID chain and OrderID, and which requests still await an answer.

    A cancel or replace carries OrigClOrdID = the ClOrdID currently in force; the new
    ClOrdID takes over only when the counterparty accepts (ExecType Canceled/Replaced),
    as FIX 4.2+ prescribes, so a rejected replace leaves the order addressable as before.
    """

    def __init__(self) -> None:
        self._orders: list[TrackedOrder] = []
        self._by_clordid: dict[str, TrackedOrder] = {}
        self._by_order_id: dict[str, TrackedOrder] = {}
        # request ClOrdID -> verb, for requests with no answer yet
        self.unanswered: dict[str, str] = {}
        # status request key -> (its order or None, the ClOrdID it named). A status report
        # may carry any ClOrdID of the chain (the venue's current one), so it answers by
        # order; and an ordinary report of the order (a late fill) does not answer it.
        self._status_requests: dict[str, tuple[TrackedOrder | None, str]] = {}

    def __iter__(self):
        return iter(self._orders)

    def __len__(self) -> int:
        return len(self._orders)

    def find(self, ref: str) -> TrackedOrder | None:
        """The order whose ClOrdID chain (or OrderID) contains ``ref``."""
        return self._by_clordid.get(ref) or self._by_order_id.get(ref)

    def knows_clordid(self, clordid: str) -> bool:
        return clordid in self._by_clordid

    def add_new(self, clordid: str, cmd: Command) -> TrackedOrder:
        order = TrackedOrder(clordid=clordid, symbol=cmd.symbol or "", side=cmd.side or "",
                             quantity=cmd.quantity or Decimal(0), ord_type=cmd.ord_type or "1",
                             price=cmd.price, stop_price=cmd.stop_price,
                             account=cmd.option("account"),
                             time_in_force=_tif_code(cmd.option("tif")), chain=[clordid])
        self._orders.append(order)
        self._by_clordid[clordid] = order
        self.unanswered[clordid] = "send"
        return order

    def add_pending(self, order: TrackedOrder, request: PendingRequest) -> None:
        order.pending[request.clordid] = request
        self._by_clordid[request.clordid] = order
        self.unanswered[request.clordid] = request.kind

    def note_request(self, key: str, verb: str) -> None:
        """A request (mass cancel, a request for an unknown order) that awaits an answer."""
        self.unanswered[key] = verb

    def note_status_request(self, order: TrackedOrder | None, clordid: str) -> str:
        """An OrderStatusRequest naming ``clordid``; returns the key its answer clears."""
        key = f"status {clordid}"
        self.unanswered[key] = "status"
        self._status_requests[key] = (order, clordid)
        return key

    def _answer_status_requests(self, order: TrackedOrder | None, clordid: str | None) -> None:
        for key, (asked, named) in list(self._status_requests.items()):
            if (order is not None and asked is order) or (asked is None and named == clordid):
                del self._status_requests[key]
                self.answered(key)

    def answered(self, clordid: str | None) -> bool:
        """Mark the request with this ClOrdID answered; True if it was one of ours."""
        return clordid is not None and self.unanswered.pop(clordid, None) is not None

    def refused(self, key: str | None) -> bool:
        """The request with this key was refused outright (Reject, BusinessMessageReject):
        it is answered and no longer pending. True if it was awaiting an answer."""
        if key is None:
            return False
        self._status_requests.pop(key, None)
        order = self._by_clordid.get(key)
        if order is not None:
            order.pending.pop(key, None)
        return self.answered(key)

    def on_execution_report(self, fields: "FieldView") -> TrackedOrder | None:
        clordid = fields.get(11)
        orig = fields.get(41)
        order = self.find(clordid) if clordid else None
        if order is None and orig:
            order = self.find(orig)
        if order is None and fields.get(37):
            order = self._by_order_id.get(fields.get(37))
        exec_type = fields.get(150)
        is_status_report = exec_type == "I" or fields.get(20) == "3"  # 4.4+ / 4.2
        if is_status_report or (order is None and exec_type == "8"):
            # a status report, or the venue saying it does not know the order we asked about
            self._answer_status_requests(order, clordid)
        if order is None:
            self.answered(clordid)
            return None
        request = order.pending.get(clordid) if clordid else None
        if request is not None:
            if exec_type in ("4", "5") or (exec_type == "8" and request.kind == "replace"):
                del order.pending[clordid]
            if exec_type == "5":
                order.clordid = clordid
                order.chain.append(clordid)
                if request.quantity is not None:
                    order.quantity = request.quantity
                if request.price is not None:
                    order.price = request.price
                if request.stop_price is not None:
                    order.stop_price = request.stop_price
                if request.ord_type is not None:
                    order.ord_type = request.ord_type
                if request.time_in_force is not None:
                    order.time_in_force = request.time_in_force
            elif exec_type == "4":
                order.clordid = clordid
                order.chain.append(clordid)
        # Pending states (6, E) and PendingNew (A) still owe a final answer in strict FIX,
        # but the request has been acknowledged, which is what the one-shot mode waits for.
        self.answered(clordid)
        order_id = fields.get(37)
        if order_id and order_id != "NONE":
            order.order_id = order_id
            self._by_order_id[order_id] = order
        status = fields.get(39)
        if status:
            order.ord_status = status
        for tag, attr in ((14, "cum_qty"), (151, "leaves_qty"), (6, "avg_px")):
            value = fields.get(tag)
            if value:
                try:
                    setattr(order, attr, Decimal(value))
                except InvalidOperation:
                    pass  # printed as received; the tracker keeps its last good value
        if exec_type == "5" and fields.get(38):
            try:
                order.quantity = Decimal(fields.get(38))
            except InvalidOperation:
                pass
        return order

    def on_cancel_reject(self, fields: "FieldView") -> TrackedOrder | None:
        clordid = fields.get(11)
        order = self.find(clordid) if clordid else None
        if order is None and fields.get(41):
            order = self.find(fields.get(41))
        self.answered(clordid)
        if order is None:
            return None
        if clordid in order.pending:
            del order.pending[clordid]
        # 39 on a cancel reject is the order's current status; "8" there often means
        # "unknown to me" rather than a rejected order, so it does not overwrite ours.
        status = fields.get(39)
        if status and status != "8":
            order.ord_status = status
        return order

    def on_business_reject(self, fields: "FieldView") -> None:
        # BusinessRejectRefID (379) carries the ClOrdID of the refused request when given.
        ref = fields.get(379)
        if not self.answered(ref) and ref:
            self._answer_status_requests(None, ref)
            self._answer_status_requests(self.find(ref), ref)


def _tif_code(word: str | None) -> str | None:
    return TIME_IN_FORCE[word.lower()] if word is not None else None


# --------------------------------------------------------------------------------------
# Requests: command -> FIX fields
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Request:
    """An application message to send: MsgType and body fields in order."""

    msg_type: str
    fields: tuple[tuple[int, str], ...]
    clordid: str | None
    #: what ``OrderTracker.unanswered`` calls this request until it is answered
    key: str | None = None

    def __post_init__(self) -> None:
        if self.key is None:
            object.__setattr__(self, "key", self.clordid)

    def to_fix_string(self) -> str:
        return "35=" + self.msg_type + "|" + "".join(f"{t}={v}|" for t, v in self.fields)


def utc_timestamp(now: float | None = None) -> str:
    """UTCTimestamp with milliseconds, e.g. 20261125-08:30:00.123."""
    moment = _dt.datetime.fromtimestamp(time.time() if now is None else now, _dt.timezone.utc)
    return moment.strftime("%Y%m%d-%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def build_request(cmd: Command, tracker: OrderTracker, ids: ClOrdIdGenerator,
                  begin_string: str, *, now: float | None = None) -> Request:
    """Turn a send/cancel/replace/status/mass-cancel command into a Request and record it.

    ``begin_string`` selects the version's required fields (FIX.4.2 needs HandlInst on
    orders and replaces; mass cancel does not exist before FIX.4.3). Raises ValueError
    when the command cannot be sent (unknown order, closed order, unsupported message).
    """
    transact_time = utc_timestamp(now)
    explicit_id = cmd.option("clordid")
    if explicit_id is not None and tracker.knows_clordid(explicit_id):
        raise ValueError(f"ClOrdID {explicit_id!r} was already used in this session")
    fields: list[tuple[int, str]]
    if cmd.verb == "send":
        clordid = explicit_id or ids.next()
        fields = [(11, clordid), (21, "1")]
        if cmd.option("account"):
            fields.insert(0, (1, cmd.option("account")))
        fields += [(38, format_decimal(cmd.quantity)), (40, cmd.ord_type)]
        if cmd.price is not None:
            fields.append((44, format_decimal(cmd.price)))
        fields += [(54, cmd.side), (55, cmd.symbol)]
        if cmd.option("tif") is not None:
            fields.append((59, TIME_IN_FORCE[cmd.option("tif").lower()]))
        fields.append((60, transact_time))
        if cmd.stop_price is not None:
            fields.append((99, format_decimal(cmd.stop_price)))
        if cmd.option("exdest"):
            fields.append((100, cmd.option("exdest")))
        if cmd.option("expire"):
            fields.append((432, cmd.option("expire")))
        if cmd.option("text"):
            fields.append((58, cmd.option("text")))
        request = Request("D", _with_extra(fields, cmd.extra_tags), clordid)
        tracker.add_new(clordid, cmd)
        return request

    if cmd.verb == "mass-cancel":
        if begin_string == "FIX.4.2":
            raise ValueError("OrderMassCancelRequest does not exist in FIX.4.2; "
                             "cancel the orders one by one")
        clordid = explicit_id or ids.next()
        fields = [(11, clordid)]
        if cmd.symbol:
            fields.append((55, cmd.symbol))
        if cmd.option("text"):
            fields.append((58, cmd.option("text")))
        fields += [(60, transact_time), (530, "1" if cmd.symbol else "7")]
        tracker.note_request(clordid, "mass-cancel")
        return Request("q", _with_extra(fields, cmd.extra_tags), clordid)

    order = tracker.find(cmd.order_ref)
    symbol, side, quantity = _order_identity(cmd, order)
    if cmd.verb == "status":
        fields = [(11, order.clordid if order else cmd.order_ref)]
        if order and order.order_id:
            fields.insert(0, (37, order.order_id))
        fields += [(54, side), (55, symbol)]
        # OrderStatusRequest reuses the order's ClOrdID (11 is the order's, not a new one).
        request_id = order.clordid if order else cmd.order_ref
        key = tracker.note_status_request(order, request_id)
        return Request("H", _with_extra(fields, cmd.extra_tags), request_id, key)

    if order is not None and order.is_terminal:
        raise ValueError(f"order {cmd.order_ref} is already "
                         f"{ORD_STATUS_NAMES.get(order.ord_status, order.ord_status)}")
    orig = order.clordid if order else cmd.order_ref
    account = cmd.option("account") or (order.account if order else None)
    head: list[tuple[int, str]] = [(1, account)] if account else []
    if cmd.verb == "cancel":
        clordid = explicit_id or ids.next()
        fields = head + [(11, clordid)]
        if order and order.order_id:
            fields.append((37, order.order_id))
        if quantity is not None:
            fields.append((38, format_decimal(quantity)))
        fields += [(41, orig), (54, side), (55, symbol)]
        if cmd.option("text"):
            fields.append((58, cmd.option("text")))
        fields.append((60, transact_time))
        pending = PendingRequest("cancel", clordid, orig)
    else:  # replace
        new_qty = (parse_decimal(cmd.option("qty"), "qty") if cmd.option("qty") is not None
                   else quantity)
        if new_qty is None:
            raise ValueError(f"replace of {cmd.order_ref}: qty= is required for an order "
                             "this session did not send")
        type_word = cmd.option("type")
        ord_type = ORD_TYPES[type_word.lower()] if type_word else (order.ord_type if order
                                                                  else "2")
        new_price = (parse_decimal(cmd.option("price"), "price")
                     if cmd.option("price") is not None else (order.price if order else None))
        new_stop = (parse_decimal(cmd.option("stop"), "stop")
                    if cmd.option("stop") is not None else (order.stop_price if order else None))
        if ord_type in ("2", "4") and new_price is None:
            raise ValueError(f"replace of {cmd.order_ref}: a limit order needs price=")
        if ord_type in ("3", "4") and new_stop is None:
            raise ValueError(f"replace of {cmd.order_ref}: a stop order needs stop=")
        tif = _tif_code(cmd.option("tif")) or (order.time_in_force if order else None)
        clordid = explicit_id or ids.next()
        fields = head + [(11, clordid), (21, "1")]
        if order and order.order_id:
            fields.append((37, order.order_id))
        fields += [(38, format_decimal(new_qty)), (40, ord_type), (41, orig)]
        if ord_type in ("2", "4"):
            fields.append((44, format_decimal(new_price)))
        fields += [(54, side), (55, symbol)]
        if tif is not None:
            fields.append((59, tif))
        fields.append((60, transact_time))
        if ord_type in ("3", "4"):
            fields.append((99, format_decimal(new_stop)))
        if cmd.option("text"):
            fields.append((58, cmd.option("text")))
        pending = PendingRequest("replace", clordid, orig, quantity=new_qty,
                                 price=new_price if ord_type in ("2", "4") else None,
                                 stop_price=new_stop if ord_type in ("3", "4") else None,
                                 ord_type=ord_type, time_in_force=tif)
    msg_type = "F" if cmd.verb == "cancel" else "G"
    request = Request(msg_type, _with_extra(fields, cmd.extra_tags), clordid)
    if order is not None:
        tracker.add_pending(order, pending)
    else:
        tracker.note_request(clordid, cmd.verb)
    return request


def _order_identity(cmd: Command, order: TrackedOrder | None):
    """Symbol, side and quantity of the order a request is about."""
    if order is not None:
        return order.symbol, order.side, order.quantity
    symbol = cmd.option("symbol")
    side = cmd.option("side")
    if not symbol or not side:
        raise ValueError(f"unknown order {cmd.order_ref!r}: it was not sent in this session; "
                         "give symbol= and side= to send the request anyway")
    qty = cmd.option("qty")
    return symbol, SIDES[side.lower()], (parse_decimal(qty, "qty") if qty else None)


def _with_extra(fields: list[tuple[int, str]],
                extra: Iterable[tuple[int, str]]) -> tuple[tuple[int, str], ...]:
    """Numeric TAG=VALUE words override generated fields of the same tag, else append."""
    out = list(fields)
    for tag, value in extra:
        for i, (existing, _) in enumerate(out):
            if existing == tag:
                out[i] = (tag, value)
                break
        else:
            out.append((tag, value))
    return tuple(out)


# --------------------------------------------------------------------------------------
# Printing received messages
# --------------------------------------------------------------------------------------

class FieldView:
    """Read-only access to a received message's fields: first value per tag, as str."""

    __slots__ = ("pairs", "_first")

    def __init__(self, pairs: Sequence[tuple[int, str]]):
        self.pairs = list(pairs)
        self._first: dict[int, str] = {}
        for tag, value in self.pairs:
            self._first.setdefault(tag, value)

    @classmethod
    def from_raw(cls, raw: bytes | str) -> "FieldView":
        """Split a FIX message (SOH or '|' separated) into fields, never raising."""
        if isinstance(raw, (bytes, bytearray, memoryview)):
            raw = bytes(raw).decode("latin-1")
        sep = SOH if SOH in raw else "|"
        pairs = []
        for part in raw.split(sep):
            tag, eq, value = part.partition("=")
            if eq and tag.isdigit():
                pairs.append((int(tag), value))
        return cls(pairs)

    def get(self, tag: int, default: str | None = None) -> str | None:
        return self._first.get(tag, default)

    @property
    def msg_type(self) -> str:
        return self._first.get(35, "")

    def to_fix_string(self) -> str:
        return "".join(f"{t}={v}|" for t, v in self.pairs)


def _time_of(fields: FieldView) -> str:
    stamp = fields.get(60) or fields.get(52) or ""
    _, dash, clock = stamp.partition("-")
    return clock if dash else (stamp or "-")


def _name(table: dict[str, str], code: str | None) -> str:
    if code is None:
        return "?"
    return table.get(code, code)


def format_message(fields: FieldView) -> str:
    """One readable line for a received message (the session's own chatter included)."""
    t = fields.msg_type
    when = _time_of(fields)
    g = fields.get
    if t == "8":
        exec_type = g(150)
        name = _name(EXEC_TYPE_NAMES, exec_type)
        if g(20) == "3":  # FIX.4.2 status response: ExecTransType=Status
            name += "(status)"
        side = _name(SIDE_NAMES, g(54))
        price = g(44)
        stop = g(99)
        parts = [when, "EXEC", f"{name}/{_name(ORD_STATUS_NAMES, g(39))}", g(11, "-")]
        if g(41):
            parts.append(f"orig={g(41)}")
        parts += [side, g(38, "-"), g(55, "-")]
        parts.append(f"@{price}" if price else ("MKT" if g(40) == "1" else "-"))
        if stop:
            parts.append(f"stop={stop}")
        last_qty = g(32)
        parts.append(f"last={last_qty}@{g(31, '-')}" if last_qty and last_qty != "0" else "last=-")
        parts += [f"cum={g(14, '-')}", f"leaves={g(151, '-')}", f"avg={g(6, '-')}"]
        if g(37):
            parts.append(f"order={g(37)}")
        if g(58):
            parts.append(f"text={g(58)!r}")
        return " ".join(parts)
    if t == "9":
        parts = [when, "CANCEL-REJECT", g(11, "-"), f"orig={g(41, '-')}",
                 f"for={'replace' if g(434) == '2' else 'cancel'}",
                 f"status={_name(ORD_STATUS_NAMES, g(39))}"]
        if g(102):
            parts.append(f"reason={_name(CXL_REJ_REASON_NAMES, g(102))}")
        if g(58):
            parts.append(f"text={g(58)!r}")
        return " ".join(parts)
    if t == "3":
        parts = [when, "SESSION-REJECT", f"refseq={g(45, '-')}"]
        if g(372):
            parts.append(f"reftype={_name(MSG_TYPE_NAMES, g(372))}")
        if g(371):
            parts.append(f"reftag={g(371)}")
        if g(373):
            parts.append(f"reason={_name(SESSION_REJECT_REASON_NAMES, g(373))}")
        if g(58):
            parts.append(f"text={g(58)!r}")
        return " ".join(parts)
    if t == "j":
        parts = [when, "BUSINESS-REJECT", f"refseq={g(45, '-')}",
                 f"reftype={_name(MSG_TYPE_NAMES, g(372))}"]
        if g(379):
            parts.append(f"refid={g(379)}")
        parts.append(f"reason={_name(BUSINESS_REJECT_REASON_NAMES, g(380))}")
        if g(58):
            parts.append(f"text={g(58)!r}")
        return " ".join(parts)
    if t == "r":
        parts = [when, "MASS-CANCEL-REPORT", g(11, "-"),
                 f"response={_name(MASS_CANCEL_RESPONSE_NAMES, g(531))}",
                 f"affected={g(533, '-')}"]
        if g(55):
            parts.append(f"symbol={g(55)}")
        if g(532):
            parts.append(f"reject={g(532)}")
        if g(58):
            parts.append(f"text={g(58)!r}")
        return " ".join(parts)
    if t == "D":
        # An acceptor in echo mode (crossbook fix-test-server) sends our order back.
        price = f"@{g(44)}" if g(44) else "MKT"
        return " ".join([when, "ORDER-ECHO", g(11, "-"), _name(SIDE_NAMES, g(54)), g(38, "-"),
                         g(55, "-"), price])
    if t == "5":
        return " ".join([when, "LOGOUT"] + ([f"text={g(58)!r}"] if g(58) else []))
    if t == "A":
        return " ".join([when, "LOGON", f"heartbeat={g(108, '-')}s"]
                        + (["reset"] if g(141) == "Y" else []))
    name = MSG_TYPE_NAMES.get(t, f"MsgType {t}")
    return f"{when} {name.upper()} {fields.to_fix_string()}"


def is_rejection(fields: FieldView) -> bool:
    """True for answers that refuse what we asked: rejects of any kind."""
    t = fields.msg_type
    if t in ("3", "j", "9"):
        return True
    if t == "8":
        return fields.get(150) == "8" or (fields.get(39) == "8" and fields.get(150) != "I")
    if t == "r":
        return fields.get(531) == "0"
    return False

def format_request(request: Request, when: str) -> str:
    """One line for a request we sent."""
    f = dict(request.fields)
    name = MSG_TYPE_NAMES.get(request.msg_type, request.msg_type)
    parts = [when, "SENT", name, request.clordid or "-"]
    if request.msg_type == "D":
        parts += [_name(SIDE_NAMES, f.get(54)), f.get(38, "-"), f.get(55, "-")]
        parts.append(f"@{f[44]}" if 44 in f else _name(ORD_TYPE_NAMES, f.get(40)))
        if 99 in f:
            parts.append(f"stop={f[99]}")
        if 59 in f:
            tif = {v: k for k, v in TIME_IN_FORCE.items()}.get(f[59], f[59])
            parts.append(f"tif={tif.upper()}")
        if 1 in f:
            parts.append(f"account={f[1]}")
    elif request.msg_type in ("F", "G"):
        parts.append(f"orig={f.get(41, '-')}")
        parts += [_name(SIDE_NAMES, f.get(54)), f.get(38, "-"), f.get(55, "-")]
        if request.msg_type == "G":
            parts.append(f"@{f[44]}" if 44 in f else _name(ORD_TYPE_NAMES, f.get(40)))
            if 99 in f:
                parts.append(f"stop={f[99]}")
    elif request.msg_type == "H":
        parts += [_name(SIDE_NAMES, f.get(54)), f.get(55, "-")]
    elif request.msg_type == "q":
        parts.append(f"symbol={f[55]}" if 55 in f else "all")
    return " ".join(parts)


def format_order(order: TrackedOrder) -> str:
    """One line of the ``orders`` listing."""
    price = f"@{format_decimal(order.price)}" if order.price is not None else ""
    parts = [order.clordid, f"order={order.order_id or '-'}", _name(SIDE_NAMES, order.side),
             format_decimal(order.quantity), order.symbol, _name(ORD_TYPE_NAMES, order.ord_type)]
    if price:
        parts.append(price)
    if order.stop_price is not None:
        parts.append(f"stop={format_decimal(order.stop_price)}")
    status = _name(ORD_STATUS_NAMES, order.ord_status) if order.ord_status else "Unacknowledged"
    parts += [f"status={status}", f"cum={format_decimal(order.cum_qty)}",
              f"leaves={format_decimal(order.leaves_qty) if order.leaves_qty is not None else '-'}",
              f"avg={format_decimal(order.avg_px) if order.avg_px is not None else '-'}"]
    if len(order.chain) > 1:
        parts.append("chain=" + ">".join(order.chain))
    for request in order.pending.values():
        parts.append(f"pending={request.kind}:{request.clordid}")
    return " ".join(parts)


def _clock_now() -> str:
    return utc_timestamp().partition("-")[2]


# --------------------------------------------------------------------------------------
# The client over the asyncio initiator
# --------------------------------------------------------------------------------------

# Exit codes (documented in docs/fix.md).
EXIT_OK = 0
EXIT_REJECTED = 1          # an answer refused the request, or the session was lost
EXIT_USAGE = 2             # bad flags, settings or command
EXIT_NO_ANSWER = 3         # no answer within --timeout
EXIT_NO_LOGON = 4          # could not connect or log on


class _EngineLogHandler(logging.Handler):
    """With ``-v``, shows the engine's own log lines (resends, rejects, disconnects) on stderr.

    Only for people: the client learns why a logon failed or a session ended from the
    engine's API (``Initiator.last_disconnect_reason``, ``Session.last_disconnect_reason``),
    never from these texts.
    """

    def __init__(self, client: "Client") -> None:
        super().__init__(level=logging.DEBUG)
        self.client = client
        self._logger = logging.getLogger("crossbook.fix")
        self._previous_level = self._logger.level

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.client.warn(f"# {record.getMessage()}")
        except Exception:  # logging must never break the session
            pass

    def __enter__(self) -> "_EngineLogHandler":
        if self.client.verbose:
            self._logger.addHandler(self)
            self._logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc) -> None:
        if self.client.verbose:
            self._logger.removeHandler(self)
            self._logger.setLevel(self._previous_level)


class _ClientApplication(Application):
    """The engine's callbacks, forwarded to the client."""

    def __init__(self, client: "Client") -> None:
        self.client = client

    def on_logon(self, session) -> None:
        self.client.was_logged_on = True

    def on_logout(self, session) -> None:
        self.client._on_disconnected()

    def from_admin(self, session, message) -> None:
        self.client._on_admin(message)

    def from_app(self, session, message) -> None:
        self.client._on_app(message)

    def to_admin(self, session, msg_type, body) -> None:
        self.client._on_admin_sent(msg_type, body)


class Client:
    """One logged-on FIX session driven by commands; prints everything it sends and gets.

    Use ``await logon()``, then ``submit(command)`` / ``await wait_for_answers(...)`` as
    often as needed, then ``await close()`` (logout). All methods run on the event loop
    that runs the engine's :class:`~crossbook.fix.transport.Initiator`.
    """

    def __init__(self, settings, *, out=None, err=None, raw: bool = False,
                 answer_timeout: float = 10.0, settle: float = 0.5, logon_timeout: float = 10.0,
                 logout_timeout: float = 5.0, ssl_context=None, clordid_prefix: str | None = None,
                 verbose: bool = False, store=None) -> None:
        self.settings = settings
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.raw = raw
        self.verbose = verbose
        self.answer_timeout = answer_timeout
        self.settle = settle
        self.logon_timeout = logon_timeout
        self.logout_timeout = logout_timeout
        self.tracker = OrderTracker()
        self.ids = ClOrdIdGenerator(clordid_prefix)
        self.begin_string = settings.begin_string
        #: ClOrdIDs of requests answered by a rejection of any kind
        self.rejected: set[str] = set()
        self.logout_sent = False
        self.logout_reply_seen = False
        self.peer_logout_text: str | None = None
        self.session_lost = False
        self.was_logged_on = False
        self._seq_to_request: dict[int, str] = {}
        self._last_app_message = 0.0
        # One attempt: a person or a script wants the reason a logon failed, not retries.
        self.initiator = Initiator(settings, _ClientApplication(self), ssl_context=ssl_context,
                                   store=store, max_logon_attempts=1)

    # ---------------------------------------------------------------- output
    def emit(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def warn(self, line: str) -> None:
        print(line, file=self.err, flush=True)

    def _emit_raw(self, arrow: str, raw: bytes) -> None:
        if self.raw:
            self.emit(f"  {arrow} " + raw.decode("latin-1").replace(SOH, "|"))

    # ---------------------------------------------------------------- engine callbacks
    def _on_admin(self, message) -> None:
        fields = FieldView.from_raw(message.raw)
        t = fields.msg_type
        if t in ("A", "5", "3"):
            self.emit(format_message(fields))
        self._emit_raw("<", message.raw)
        if t == "5":
            if self.logout_sent:
                self.logout_reply_seen = True
            else:
                self.peer_logout_text = fields.get(58, "")
        elif t == "3":
            ref = fields.get(45)
            request = self._seq_to_request.get(int(ref)) if ref and ref.isdigit() else None
            if self.tracker.refused(request):
                self.rejected.add(request)

    def _on_app(self, message) -> None:
        fields = FieldView.from_raw(message.raw)
        self.emit(format_message(fields))
        self._emit_raw("<", message.raw)
        self._last_app_message = time.monotonic()
        t = fields.msg_type
        if t == "j":
            # RefSeqNum names our message exactly; BusinessRejectRefID (a ClOrdID) may not
            # be the request's key (status requests), so it comes second.
            seq = fields.get(45)
            key = self._seq_to_request.get(int(seq)) if seq and seq.isdigit() else None
            for candidate in (key, fields.get(379)):
                if self.tracker.refused(candidate):
                    self.rejected.add(candidate)
                    break
            return
        waiting = set(self.tracker.unanswered)
        if t == "8":
            self.tracker.on_execution_report(fields)
        elif t == "9":
            self.tracker.on_cancel_reject(fields)
        else:
            self.tracker.answered(fields.get(11))
        if is_rejection(fields):
            self.rejected.update(waiting - set(self.tracker.unanswered))

    def _on_admin_sent(self, msg_type: bytes, body) -> None:
        if msg_type == b"3":
            pairs = [(35, "3")] + [(t, v.decode("latin-1") if isinstance(v, bytes) else str(v))
                                   for t, v in body]
            line = format_message(FieldView(pairs))
            self.emit(line.replace("- SESSION-REJECT", f"{_clock_now()} SENT SESSION-REJECT", 1))
        elif msg_type == b"5":
            self.logout_sent = True

    def _on_disconnected(self) -> None:
        if not self.was_logged_on:
            return  # logon() reports why the logon failed
        if not self.logout_sent or self.peer_logout_text is not None:
            self.session_lost = True
            reason = (f"peer logged out: {self.peer_logout_text!r}" if self.peer_logout_text
                      else self.session.last_disconnect_reason or "connection closed")
            self.warn(f"session ended: {reason}")

    # ---------------------------------------------------------------- steps
    @property
    def session(self):
        return self.initiator.session()

    async def logon(self, stop=None) -> bool:
        """Connect and log on; False (with the reason printed) on failure or ``stop``."""
        await self.initiator.start()
        # The engine bounds the attempt itself (the connect and the Logon answer each within
        # LogonTimeout, set from --logon-timeout) and, allowed one attempt, gives up with the
        # reason; the wait below is only a safety net around that.
        bound = 2 * max(self.logon_timeout, self.settings.logon_timeout) + 1.0
        waiters = {asyncio.ensure_future(self.initiator.wait_logged_on(bound))}
        if stop is not None:
            waiters.add(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        if self.session.is_logged_on:
            return True
        s = self.settings
        if stop is not None and stop.is_set():
            failed = "interrupted"
        elif self.peer_logout_text is not None:
            failed = f"logon refused: {self.peer_logout_text or 'Logout without text'}"
        elif self.initiator.gave_up:
            failed = self.initiator.last_disconnect_reason or "connection closed before logon"
        else:
            failed = f"no Logon answer within {bound:g}s"
        self.warn(f"could not log on to {s.socket_connect_host}:{s.socket_connect_port} "
                  f"as {s.sender_comp_id} -> {s.target_comp_id} ({s.begin_string}): {failed}")
        await self.initiator.stop(logout_grace=0.0)
        return False

    def submit(self, cmd: Command) -> Request:
        """Build and send one request; raises ValueError when it cannot be sent."""
        if self.session_lost or not self.session.is_logged_on:
            raise ValueError("not logged on")
        request = build_request(cmd, self.tracker, self.ids, self.begin_string)
        seq = self.session.next_sender_seq
        self.initiator.send(None, request.msg_type, request.fields)
        if request.key is not None:
            self._seq_to_request[seq] = request.key
        stored = self.session.store.get(seq, seq)
        raw = stored[0][1] if stored else None
        # Stamp the line with the message's own SendingTime when the store kept it.
        when = _time_of(FieldView.from_raw(raw)) if raw else _clock_now()
        self.emit(format_request(request, when))
        if raw is not None:
            self._emit_raw(">", raw)
        return request

    def local_command(self, cmd: Command) -> bool:
        """Handle help/orders; True when the command was local."""
        if cmd.verb == "help":
            self.emit(HELP_TEXT)
            return True
        if cmd.verb == "orders":
            if not len(self.tracker):
                self.emit("no orders sent in this session")
            for order in self.tracker:
                self.emit(format_order(order))
            return True
        return False

    async def wait_for_answers(self, keys: Iterable[str | None], stop=None,
                               settle: float | None = None, timeout: float | None = None) -> bool:
        """Wait until every request (by ``Request.key``) is answered, then until the line
        has been quiet for ``settle`` seconds (default: the client's ``settle``).

        Returns False when ``timeout`` (default ``answer_timeout``) passed first, or the
        session ended.
        """
        quiet_needed = self.settle if settle is None else settle
        wanted = [c for c in keys if c is not None]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.answer_timeout if timeout is None else timeout)
        while any(c in self.tracker.unanswered for c in wanted):
            if loop.time() >= deadline or self.session_lost or (stop is not None and stop.is_set()):
                return False
            await asyncio.sleep(0.01)
        # Follow-on messages (the fill after the ack) usually come within milliseconds.
        while quiet_needed > 0 and loop.time() < deadline and not self.session_lost:
            quiet = time.monotonic() - self._last_app_message
            if quiet >= quiet_needed or (stop is not None and stop.is_set()):
                break
            await asyncio.sleep(min(0.02, quiet_needed - quiet + 0.001))
        return True

    async def close(self) -> bool:
        """Log out and wait up to ``logout_timeout`` for the answer; True if it came."""
        if self.session.is_logged_on and not self.session_lost:
            self.logout_sent = True
            await self.initiator.stop(logout_grace=self.logout_timeout)
            if not self.logout_reply_seen:
                self.warn(f"no Logout answer within {self.logout_timeout:g}s; disconnected")
            return self.logout_reply_seen
        await self.initiator.stop(logout_grace=0.0)
        return False


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``crossbook client`` (see docs/fix.md, section Client)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = HELP_TEXT + "\n\nWith a COMMAND the client runs it once, prints the answers and " \
        "logs out;\nwithout one it reads commands from stdin."
    s = parser.add_argument_group("session")
    s.add_argument("--config", metavar="FILE",
                   help="session settings file (crossbook.fix.settings format); flags override it")
    s.add_argument("--session", metavar="TARGET",
                   help="which initiator session of --config (TargetCompID or SessionQualifier)")
    s.add_argument("--host", help="acceptor host (default 127.0.0.1)")
    s.add_argument("--port", type=int, help="acceptor port")
    s.add_argument("--sender", metavar="COMPID", help="our SenderCompID")
    s.add_argument("--target", metavar="COMPID", help="the acceptor's CompID (our TargetCompID)")
    s.add_argument("--fix-version", metavar="V",
                   help="4.2, 4.4, 5.0, 5.0SP1 or 5.0SP2 (default 4.4)")
    s.add_argument("--heartbeat", type=int, metavar="SECONDS", help="HeartBtInt (default 30)")
    s.add_argument("--username", help="Username (553) sent on Logon")
    s.add_argument("--password", help="Password (554) sent on Logon (or set "
                   "CROSSBOOK_FIX_PASSWORD, which other users cannot see in the process list)")
    s.add_argument("--reset", action="store_true", default=None,
                   help="ResetSeqNumFlag on Logon: both sides restart at sequence number 1")
    s.add_argument("--store", metavar="DIR",
                   help="keep sequence numbers and sent messages in DIR (default: memory)")
    s.add_argument("--no-validate", action="store_true",
                   help="do not check received messages against the data dictionary")
    t = parser.add_argument_group("TLS")
    t.add_argument("--tls", action="store_true", help="connect with TLS (system trust store)")
    t.add_argument("--tls-ca", metavar="FILE", help="trust this CA / self-signed certificate (implies --tls)")
    t.add_argument("--tls-cert", metavar="FILE", help="client certificate (PEM; implies --tls)")
    t.add_argument("--tls-key", metavar="FILE", help="key of --tls-cert")
    t.add_argument("--tls-insecure", action="store_true",
                   help="do not verify the server certificate or name (testing only)")
    b = parser.add_argument_group("behaviour")
    b.add_argument("--raw", action="store_true",
                   help="also show every message sent and received as FIX with | separators")
    b.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for answers (default 10)")
    b.add_argument("--settle", type=float, default=0.5, metavar="SECONDS",
                   help="after the answer, wait this long for follow-ups such as fills (default 0.5)")
    b.add_argument("--logon-timeout", type=float, default=10.0, metavar="SECONDS")
    b.add_argument("--logout-timeout", type=float, default=5.0, metavar="SECONDS",
                   help="how long to wait for the Logout answer (default 5)")
    b.add_argument("--clordid-prefix", metavar="TEXT",
                   help="prefix of generated ClOrdIDs (default: C + start time in base 36 + -)")
    b.add_argument("-v", "--verbose", action="store_true", help="print session events to stderr")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND",
                        help="one command to run (e.g. send buy 100 AAPL limit 187.25); "
                             "none: interactive")


def settings_from_args(args: argparse.Namespace):
    """SessionSettings for the client: --config's initiator session, overridden by flags."""

    overrides: dict[str, object] = {"connection_type": "initiator"}
    password = args.password
    if password is None and args.username is not None:
        password = os.environ.get("CROSSBOOK_FIX_PASSWORD")
    if args.fix_version is not None:
        name = args.fix_version.upper().removeprefix("FIX.").replace("SP", "SP")
        key = {k.upper(): k for k in FIX_VERSIONS}.get(name)
        if key is None:
            raise ValueError(f"--fix-version must be one of {', '.join(FIX_VERSIONS)}, "
                             f"got {args.fix_version!r}")
        begin, appl = FIX_VERSIONS[key]
        overrides.update(begin_string=begin, default_appl_ver_id=appl)
    for attr, value in (("socket_connect_host", args.host), ("socket_connect_port", args.port),
                        ("sender_comp_id", args.sender), ("target_comp_id", args.target),
                        ("heart_bt_int", args.heartbeat), ("username", args.username),
                        ("password", password), ("reset_on_logon", args.reset)):
        if value is not None:
            overrides[attr] = value
    if args.store:
        overrides.update(store="file", file_store_path=args.store)
    if args.no_validate:
        overrides["use_data_dictionary"] = False
    if args.heartbeat is not None and args.heartbeat <= 0:
        raise ValueError(f"--heartbeat must be a positive number of seconds, got {args.heartbeat}")
    for flag in ("timeout", "logon_timeout", "logout_timeout"):
        if not getattr(args, flag) > 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    if args.settle < 0:
        raise ValueError(f"--settle must not be negative, got {args.settle}")

    # One attempt at a time (the client decides whether a failure is final), and the
    # session's own logout wait matches ours.
    overrides.update(reconnect_interval=0.2, logout_timeout=args.logout_timeout,
                     logon_timeout=args.logon_timeout)
    if args.config:
        sessions = load_settings(args.config).initiators()
        if not sessions:
            raise SettingsError(f"{args.config}: no session with ConnectionType=initiator")
        if args.session:
            sessions = tuple(s for s in sessions if args.session in (s.target_comp_id,
                                                                     s.session_qualifier))
            if not sessions:
                raise SettingsError(f"{args.config}: no initiator session named {args.session!r}")
        if len(sessions) > 1:
            names = ", ".join(s.target_comp_id + (f" ({s.session_qualifier})"
                                                  if s.session_qualifier else "")
                              for s in sessions)
            raise SettingsError(f"{args.config}: several initiator sessions ({names}); "
                                "choose one with --session")
        base = sessions[0]
        if "begin_string" in overrides and overrides["begin_string"] != "FIXT.1.1":
            overrides["default_appl_ver_id"] = None
        return replace_settings(base, **overrides)

    missing = [flag for flag, value in (("--port", args.port), ("--sender", args.sender),
                                        ("--target", args.target)) if value is None]
    if missing:
        raise ValueError(f"missing {', '.join(missing)} (or give --config FILE)")
    overrides.setdefault("socket_connect_host", "127.0.0.1")
    overrides.setdefault("begin_string", "FIX.4.4")
    return SessionSettings(**overrides)


def ssl_context_from_args(args: argparse.Namespace):
    """The TLS context the flags ask for, or None (then --config's SSL* keys apply)."""
    if not (args.tls or args.tls_ca or args.tls_cert or args.tls_insecure):
        if args.tls_key:
            raise ValueError("--tls-key needs --tls-cert")
        return None
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    ctx = ssl.create_default_context(cafile=args.tls_ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if args.tls_insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if args.tls_cert:
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
    return ctx


def run(args: argparse.Namespace) -> int:
    """Entry point of ``crossbook client``; returns the exit code."""


    words = list(args.command or [])
    if words and words[0] == "--":
        words = words[1:]
    one_shot: Command | None = None
    try:
        stray = [w for w in words if w.startswith("--")]
        if stray:
            raise ValueError(f"options must come before the command: {' '.join(stray)}")
        settings = settings_from_args(args)
        ssl_context = ssl_context_from_args(args)
        if words:
            one_shot = parse_command(shlex.join(words))
            if one_shot is None:
                raise ValueError("empty command")
            if one_shot.verb in ("quit", "orders"):
                raise ValueError(f"'{one_shot.verb}' is only meaningful at the prompt")
            if one_shot.verb == "help":
                print(HELP_TEXT)
                return EXIT_OK
    except (ValueError, SettingsError, OSError, ssl.SSLError) as exc:
        print(f"crossbook client: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_main(args, settings, ssl_context, one_shot))
    except KeyboardInterrupt:  # a second Ctrl-C while logging out
        return 130


async def _main(args, settings, ssl_context, one_shot: Command | None) -> int:

    try:
        client = Client(settings, raw=args.raw, answer_timeout=args.timeout, settle=args.settle,
                        logon_timeout=args.logon_timeout, logout_timeout=args.logout_timeout,
                        ssl_context=ssl_context, clordid_prefix=args.clordid_prefix,
                        verbose=args.verbose)
    except (OSError, ValueError) as exc:  # e.g. --store names a file, not a directory
        print(f"crossbook client: {exc}", file=sys.stderr)
        return EXIT_USAGE
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    interrupts = 0
    main_task = asyncio.current_task()

    def on_sigint() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            client.warn("interrupted: logging out (Ctrl-C again to quit at once)")
            stop.set()
        elif main_task is not None:
            main_task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
        pass
    try:
        with _EngineLogHandler(client):
            if not await client.logon(stop):
                return EXIT_OK if stop.is_set() else EXIT_NO_LOGON
            if one_shot is not None:
                code = await _run_one_shot(client, one_shot, stop)
            else:
                code = await _run_interactive(client, stop, sys.stdin)
            await client.close()
            return code
    except asyncio.CancelledError:
        return 130
    finally:
        try:
            loop.remove_signal_handler(signal.SIGINT)
        except (NotImplementedError, RuntimeError):
            pass


async def _run_one_shot(client: Client, cmd: Command, stop) -> int:
    if client.local_command(cmd):
        return EXIT_OK
    try:
        request = client.submit(cmd)
    except ValueError as exc:
        client.warn(f"error: {exc}")
        return EXIT_USAGE
    answered = await client.wait_for_answers([request.key], stop)
    if stop.is_set():
        return EXIT_OK
    if client.session_lost:
        return EXIT_REJECTED
    if not answered:
        client.warn(f"no answer to {request.key} within {client.answer_timeout:g}s")
        return EXIT_NO_ANSWER
    return EXIT_REJECTED if request.key in client.rejected else EXIT_OK


async def _run_interactive(client: Client, stop, stdin) -> int:

    loop = asyncio.get_running_loop()
    lines: asyncio.Queue = asyncio.Queue()
    interactive = stdin.isatty()
    prompt = "crossbook> " if interactive else None
    # Commands from a pipe or file run one after the other: each waits for the answer to
    # the previous request, so "buy ..." then "cancel <its ClOrdID>" behaves the same
    # however fast the counterparty is. At a terminal a person may not want to wait.
    sequential = not interactive
    s = client.settings
    client.emit(f"logged on to {s.socket_connect_host}:{s.socket_connect_port} as "
                f"{s.sender_comp_id} -> {s.target_comp_id} ({s.begin_string}); "
                "type 'help' for commands")

    # The prompt is shown once the previous command's output is out (set by the loop).
    ready = threading.Event()
    ready.set()

    def read_lines() -> None:
        # A thread, not loop.connect_read_pipe: stdin may be a regular file, which epoll refuses.
        try:
            while True:
                if prompt:
                    ready.wait()
                    ready.clear()
                    print(prompt, end="", file=client.out, flush=True)
                line = stdin.readline()
                if not line:
                    break
                loop.call_soon_threadsafe(lines.put_nowait, line)
        except (OSError, ValueError, RuntimeError):
            pass
        try:
            loop.call_soon_threadsafe(lines.put_nowait, None)
        except RuntimeError:  # the loop is already closed
            pass

    threading.Thread(target=read_lines, name="client-stdin", daemon=True).start()
    outstanding: list[str] = []
    while True:
        getter = asyncio.ensure_future(lines.get())
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED,
                                     timeout=0.2)
        if getter not in done:
            getter.cancel()
        if stopper not in done:
            stopper.cancel()
        if stop.is_set():
            return EXIT_OK
        if client.session_lost:
            return EXIT_REJECTED
        if getter not in done:
            continue
        line = getter.result()
        try:
            cmd = parse_command(line) if line is not None else Command("quit")
            if cmd is None:
                continue
            if cmd.verb == "quit":
                # quit or end of input: let the answers to what was sent arrive first, so
                # a script piping commands in sees them all.
                if outstanding:
                    await _wait_or_warn(client, outstanding, stop)
                return EXIT_REJECTED if client.session_lost else EXIT_OK
            if client.local_command(cmd):
                continue
            request = client.submit(cmd)
            outstanding.append(request.key)
            if sequential:
                # A short quiet period lets the fill that follows an ack print first.
                await _wait_or_warn(client, outstanding, stop, settle=min(client.settle, 0.05))
                outstanding.clear()
            else:
                # At a terminal, give the answer a moment so it prints before the prompt.
                await client.wait_for_answers([request.key], stop, settle=0,
                                              timeout=min(1.0, client.answer_timeout))
        except ValueError as exc:
            client.warn(f"error: {exc}")
        finally:
            ready.set()


async def _wait_or_warn(client: Client, keys: list[str], stop,
                        settle: float | None = None) -> None:
    if not await client.wait_for_answers(keys, stop, settle=settle) and not stop.is_set():
        late = [c for c in dict.fromkeys(keys) if c in client.tracker.unanswered]
        if late:
            client.warn(f"no answer within {client.answer_timeout:g}s to: {' '.join(late)}")
