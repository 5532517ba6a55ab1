"""Orders, executions and the typed commands the FIX gateway hands to the order manager.

Prices are int ticks of the order's instrument and quantities int units everywhere here; the
gateway converts FIX Decimals at the edge (crossbook.model.instruments does the arithmetic).
``Order`` is mutable and owned by the order manager (one writer on the event loop); everything
else is an immutable record.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any, NamedTuple

from crossbook.model.enums import ExecType, OrderState, OrdStatus, ORD_STATUS_OF

#: AvgPx (6) leaves the OMS (FIX, HTTP) with this many decimal places beyond the instrument's tick.
AVG_PX_EXTRA_DECIMALS = 6


def avg_px_text(cum_value: int, cum_qty: int, tick_size: Decimal) -> str:
    """AvgPx as it goes on the wire: ``cum_value / cum_qty`` ticks times ``tick_size``, rounded half
    to even to the tick's decimal places plus :data:`AVG_PX_EXTRA_DECIMALS`, trailing zeros
    dropped, never an exponent ("0" when nothing is filled).

    Inside the OMS the average stays exact (``cum_value`` and ``cum_qty`` are integers); only its
    text is rounded, because an exact quotient that does not terminate would otherwise print as
    28 significant digits (230.0066666666666666666666667), more than FIX engines keep (QuickFIX
    reads prices as doubles, about 15 digits). Six decimals beyond the tick keep every average
    within a millionth of a tick, so a fill-weighted notional recomputed from it is off by less
    than a tick per million units.
    """
    if isinstance(cum_value, bool) or not isinstance(cum_value, int):
        raise TypeError(f"cum_value must be an int (ticks x units), got {cum_value!r}")
    if isinstance(cum_qty, bool) or not isinstance(cum_qty, int) or cum_qty < 0:
        raise ValueError(f"cum_qty must be an int >= 0, got {cum_qty!r}")
    if not isinstance(tick_size, Decimal) or not tick_size > 0:
        raise ValueError(f"tick_size must be a positive Decimal, got {tick_size!r}")
    if cum_qty == 0:
        return "0"
    tick = tick_size.normalize()
    sign, digits, exponent = tick.as_tuple()
    places = max(0, -exponent) + AVG_PX_EXTRA_DECIMALS
    # Integer arithmetic, so the rounding is exact at any size (a Decimal quotient would first be
    # rounded to the context's 28 digits, then again here).
    numerator = cum_value * int("".join(map(str, digits))) * 10 ** (exponent + places)
    quotient, remainder = divmod(numerator, cum_qty)
    if 2 * remainder > cum_qty or (2 * remainder == cum_qty and quotient % 2):
        quotient += 1
    if quotient == 0:
        return "0"
    with localcontext() as ctx:
        ctx.prec = len(str(abs(quotient))) + 2        # scaleb and normalize round to the context
        return format(Decimal(quotient).scaleb(-places).normalize(), "f")


@dataclass(slots=True)
class Order:
    """One client order as the OMS tracks it. ``order_id`` is the OMS's OrderID (37), stable for
    the whole ClOrdID chain; ``cl_ord_id`` is the latest accepted ClOrdID."""

    order_id: str
    seq: int                       # entry order, also the sort key for recovery
    session: str                   # client session key (BeginString:Sender->Target)
    begin_string: str
    firm: str
    account: str
    symbol: str
    instrument_index: int          # -1 when the instrument could not be resolved (rejected order)
    side: int                      # crossbook.core.Side value (1 buy, 2 sell)
    ord_type: int                  # crossbook.core.OrdType value
    tif: int                       # crossbook.core.TimeInForce value
    qty: int
    price: int = 0                 # ticks; 0 for market / stop
    stop_px: int = 0
    display_qty: int = 0           # MaxFloor (iceberg); 0 = fully displayed
    post_only: bool = False
    expire_time: int = 0           # ns, GTD
    cl_ord_id: str = ""
    orig_cl_ord_id: str = ""       # the ClOrdID this one replaced, when replaced
    venue: str = ""
    venue_cl_ord_id: str = ""      # current child id at the venue
    venue_order_id: str = ""
    venue_seq: int = 0             # counter for venue_cl_ord_id suffixes
    state: OrderState = OrderState.PENDING_NEW
    cum_qty: int = 0
    leaves_qty: int = 0
    cum_value: int = 0             # sum of fill qty x fill price in ticks: AvgPx is exact from it
    text: str = ""
    created_ns: int = 0
    updated_ns: int = 0
    # A cancel or replace in flight: its ClOrdID, kind ("cancel" / "replace"), new qty/price.
    pending_cl_ord_id: str = ""
    pending_kind: str = ""
    pending_qty: int = 0
    pending_price: int = 0
    # Every ClOrdID this order ever had (for duplicate detection and OrigClOrdID lookups).
    cl_ord_ids: list[str] = field(default_factory=list)

    @property
    def ord_status(self) -> OrdStatus:
        return ORD_STATUS_OF[self.state]

    @property
    def is_open(self) -> bool:
        return not self.state.is_terminal

    def avg_px_ticks(self) -> Decimal:
        """Average fill price in ticks, exact while it terminates (Decimal division, 28 digits)."""
        if self.cum_qty == 0:
            return Decimal(0)
        return Decimal(self.cum_value) / Decimal(self.cum_qty)

    def to_row(self) -> dict[str, Any]:
        """Plain values for storage and JSON (state as its value)."""
        row = {name: getattr(self, name) for name in ORDER_FIELDS}
        row["state"] = self.state.value
        row["cl_ord_ids"] = list(self.cl_ord_ids)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Order":
        values = {name: row[name] for name in ORDER_FIELDS if name in row}
        values["state"] = OrderState(values["state"])
        values["post_only"] = bool(values.get("post_only", False))
        values["cl_ord_ids"] = list(row.get("cl_ord_ids") or [])
        return cls(**values)


ORDER_FIELDS = tuple(f for f in Order.__dataclass_fields__)


class Execution(NamedTuple):
    """One ExecutionReport's content (what was durably recorded and then sent).

    A NamedTuple (immutable, fields by name) rather than a frozen dataclass: two are made per
    order, and a frozen dataclass pays an ``object.__setattr__`` per field (about 1.5 us against
    0.1-0.2 us for this one's 23 fields); the order manager builds it from the same value tuple
    as its stored row."""

    exec_id: str
    order_id: str
    seq: int                      # global execution sequence (also orders ExecIDs)
    cl_ord_id: str
    orig_cl_ord_id: str
    exec_type: ExecType
    ord_status: OrdStatus
    symbol: str
    side: int
    qty: int                      # OrderQty after this execution
    price: int                    # limit price ticks after this execution
    last_qty: int
    last_px: int                  # ticks
    cum_qty: int
    leaves_qty: int
    cum_value: int                # ticks x units; AvgPx = cum_value / cum_qty ticks
    venue: str
    text: str
    reason: str                   # CancelCause / rejection code name, for queries
    ord_rej_reason: int           # -1 when not a rejection
    ts: int
    account: str
    session: str

    def to_row(self) -> dict[str, Any]:
        """Plain values for storage and JSON (exec_type and ord_status as their values)."""
        row = dict(zip(EXECUTION_FIELDS, self))
        row["exec_type"] = self.exec_type.value
        row["ord_status"] = self.ord_status.value
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Execution":
        values = {name: row[name] for name in EXECUTION_FIELDS}
        values["exec_type"] = ExecType(values["exec_type"])
        values["ord_status"] = OrdStatus(values["ord_status"])
        return cls(**values)


EXECUTION_FIELDS: tuple[str, ...] = Execution._fields


# -- commands (what the gateway hands to the order manager) ---------------------------------
class NewOrder(NamedTuple):
    """A validated NewOrderSingle: instrument resolved, prices in ticks, lot checked.

    A NamedTuple (immutable) like Execution: one is made per order, and this is about 6x cheaper
    to build than a frozen dataclass of the same 16 fields."""

    session: str
    begin_string: str
    cl_ord_id: str
    firm: str
    account: str
    instrument_index: int
    side: int
    ord_type: int
    tif: int
    qty: int
    price: int = 0
    stop_px: int = 0
    display_qty: int = 0
    post_only: bool = False
    expire_time: int = 0
    ex_destination: str = ""


@dataclass(frozen=True, slots=True)
class CancelOrder:
    session: str
    cl_ord_id: str
    orig_cl_ord_id: str
    order_id: str = ""
    symbol: str = ""
    side: int = 0


@dataclass(frozen=True, slots=True)
class ReplaceOrder:
    session: str
    cl_ord_id: str
    orig_cl_ord_id: str
    qty: int
    price: int
    order_id: str = ""
    symbol: str = ""
    side: int = 0
