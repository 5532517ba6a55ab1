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
import dataclasses
import datetime as _dt
import itertools
import shlex
import time
from decimal import Decimal, InvalidOperation
from typing import Callable, Iterable, Sequence

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
            prefix = "C" + _base36(stamp) + "-"
        self.prefix = prefix
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self._counter)}"


def _base36(number: int) -> str:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = ""
    while True:
        number, rem = divmod(number, 36)
        out = digits[rem] + out
        if number == 0:
            return out


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

    def note_request(self, clordid: str, verb: str) -> None:
        """A request (status, mass cancel) that changes no order but awaits an answer."""
        self.unanswered[clordid] = verb

    def answered(self, clordid: str | None) -> bool:
        """Mark the request with this ClOrdID answered; True if it was one of ours."""
        return clordid is not None and self.unanswered.pop(clordid, None) is not None

    def on_execution_report(self, fields: "FieldView") -> TrackedOrder | None:
        clordid = fields.get(11)
        orig = fields.get(41)
        order = self.find(clordid) if clordid else None
        if order is None and orig:
            order = self.find(orig)
        if order is None and fields.get(37):
            order = self._by_order_id.get(fields.get(37))
        if order is None:
            self.answered(clordid)
            return None
        exec_type = fields.get(150)
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
        self.answered(fields.get(379))


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
        tracker.note_request(request_id, "status")
        return Request("H", _with_extra(fields, cmd.extra_tags), request_id)

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
        parts.append(f"@{price}" if price else ("MKT" if g(40) in (None, "1") else "-"))
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


def _answer_ref(fields: FieldView) -> str | None:
    """The ClOrdID an application message answers."""
    t = fields.msg_type
    if t == "j":
        return fields.get(379)
    return fields.get(11)
