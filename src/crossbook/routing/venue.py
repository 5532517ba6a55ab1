"""The venue interface: how the OMS talks to an exchange, in-process or over FIX.

Plain data and a Protocol only, so that ``crossbook.oms`` may import it (DESIGN.md layout rule).
The OMS sends :class:`VenueOrder` s and cancel / replace / status requests; the venue answers with
:class:`VenueEvent` s through the one sink the OMS installed. Prices are int ticks of the
instrument's tick size, quantities int units, times UTC epoch nanoseconds.

Delivery rules every implementation keeps (docs/venues.md):

* Events go to the sink asynchronously, never from inside ``new_order`` / ``cancel_order`` /
  ``replace_order`` / ``order_status``: the OMS never sees an event for an order before the
  call that created it returned.
* Events are delivered in the order the venue produced them, one sink call per event.
* Identifiers follow FIX: ``venue_cl_ord_id`` is chosen by the OMS and changes along a
  cancel/replace chain (``orig_venue_cl_ord_id`` names the previous link); ``venue_order_id`` is
  the venue's id, stable for the life of the order; ``exec_id`` is unique per venue (the OMS
  uses it to ignore a TRADE it has already applied, e.g. after a resend).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol, runtime_checkable

from crossbook.core import OrdType, Reason, Side, Status, STPMode, TimeInForce
from crossbook.model.instruments import Instrument

__all__ = [
    "Level",
    "Reason",
    "Status",
    "Venue",
    "VenueEvent",
    "VenueEventKind",
    "VenueOrder",
    "VenueEventSink",
    "VenueReason",
]


@dataclass(slots=True)
class VenueOrder:
    """A new order as the OMS sends it to a venue (one child order)."""

    venue_cl_ord_id: str           # unique per venue; the OMS's child order id
    instrument: Instrument
    side: Side
    ord_type: OrdType
    tif: TimeInForce
    qty: int                       # units, a whole number of lots
    price: int                     # ticks; 0 for MARKET and STOP
    stop_price: int = 0            # ticks, for STOP and STOP_LIMIT
    display_qty: int = 0           # iceberg slice; 0 = fully displayed
    post_only: bool = False
    expire_time: int = 0           # GTD expiry, UTC epoch ns
    owner: int = 0                 # self-trade prevention group (e.g. the account index)
    stp: STPMode = STPMode.NONE


class VenueEventKind(IntEnum):
    """What a VenueEvent reports (FIX ExecType analogues)."""

    NEW = 1                # order accepted and live (ack); venue_order_id assigned
    REJECTED = 2           # new order refused; reason / reason_code say why
    TRADE = 3              # a fill: last_qty at last_px, exec_id unique per venue
    CANCELED = 4           # requested cancel, or unsolicited: IOC/FOK/market remainder, STP, end of day, expiry
    REPLACED = 5           # cancel/replace done; venue_cl_ord_id is the new id, orig_venue_cl_ord_id the old
    CANCEL_REJECTED = 6    # cancel refused (unknown order, too late, venue down)
    REPLACE_REJECTED = 7   # replace refused; the order stays as it was
    STOP_TRIGGERED = 8     # a stop order was triggered and entered the book
    STATUS = 9             # answer to order_status()


class VenueReason(IntEnum):
    """Reason codes a venue adds to crossbook.core.Reason (values >= 100, so they never collide).

    ``VenueEvent.reason_code`` holds either a ``crossbook.core.Reason`` (the matching core's answer)
    or one of these (the venue's own answer before the book is asked).
    """

    VENUE_DOWN = 100          # the venue is down or disconnected (set_up(False), not started, stopped)
    NOT_LISTED = 101          # the instrument is not listed on this venue
    SIMULATED_REJECT = 102    # the reject-ratio fault knob fired
    INVALID_LOT = 103         # quantity not a whole number of the instrument's lots


@dataclass(slots=True)
class VenueEvent:
    """Something a venue reports about one order (see VenueEventKind)."""

    kind: VenueEventKind
    venue: str
    venue_cl_ord_id: str
    venue_order_id: str
    last_qty: int = 0              # TRADE: units filled
    last_px: int = 0               # TRADE: ticks, the venue's (maker's) price
    leaves_qty: int = 0            # the venue's view after the event
    cum_qty: int = 0
    reason: str = ""               # human text for cancels / rejects
    reason_code: int = 0           # crossbook.core.Reason or VenueReason
    exec_id: str = ""              # TRADE: unique per venue (idempotency key)
    ts: int = 0                    # venue clock, ns, when the venue produced the event
    orig_venue_cl_ord_id: str = ""  # REPLACED / CANCEL_REJECTED / REPLACE_REJECTED / requested CANCELED
    # Added beyond the issue-4 contract (additive, with a default):
    ord_status: int = -1           # the venue's OrdStatus after the event, a crossbook.core.Status value
                                   # (FIX OrdStatus numbers); -1 = not given
    last_mkt: str = ""             # TRADE: the market that filled, when it is not ``venue`` itself (a
                                   # router reports its child venue here: FIX LastMkt (30)); "" = ``venue``


#: One price level of ``depth()``: (price in ticks, displayed quantity, number of orders).
Level = tuple[int, int, int]


@runtime_checkable
class Venue(Protocol):
    """One exchange as the OMS sees it. Implementations: crossbook.venues.InProcessVenue now,
    a FIX-initiator connector (issue 5) beside it.

    Optional, beyond the protocol (the router looks for them): ``book_version(instrument) -> int``,
    a counter that moves whenever what ``depth`` reads for the instrument may have changed (the
    router then keeps its snapshot until it moves); ``outlives_process = True`` on a venue whose
    orders stay live when this process dies (a venue process: the router writes its children's
    audit rows ahead of sending them there)."""

    name: str

    def lists(self, instrument: Instrument) -> bool:
        """True when the venue trades this instrument."""

    def set_event_sink(self, sink: Callable[[VenueEvent], None]) -> None:
        """Install the single handler that receives every event (the OMS's)."""

    async def start(self) -> None:
        """Connect / open for trading."""

    async def stop(self) -> None:
        """Disconnect / close; afterwards is_up is False and new orders are rejected."""

    @property
    def is_up(self) -> bool:
        """False while the venue cannot take orders (down, disconnected, stopped)."""

    def new_order(self, order: VenueOrder) -> None:
        """Send a new order; answered by NEW then TRADE/CANCELED..., or REJECTED."""

    def cancel_order(self, venue_cl_ord_id: str, cancel_cl_ord_id: str) -> None:
        """Cancel the order ``venue_cl_ord_id`` (any id of its chain); ``cancel_cl_ord_id`` is the
        request's own id. Answered by CANCELED or CANCEL_REJECTED, both carrying
        ``venue_cl_ord_id=cancel_cl_ord_id`` and ``orig_venue_cl_ord_id=venue_cl_ord_id``."""

    def replace_order(self, venue_cl_ord_id: str, new_venue_cl_ord_id: str, qty: int, price: int) -> None:
        """Cancel/replace with FIX semantics (``qty`` is the new total quantity, filled included).
        Answered by REPLACED (then any TRADEs if the order re-entered and matched) or
        REPLACE_REJECTED."""

    def order_status(self, venue_cl_ord_id: str) -> None:
        """Ask for the order's state; answered with a STATUS event."""

    def top_of_book(self, instrument: Instrument) -> tuple[int, int, int, int] | None:
        """(bid px, bid qty, ask px, ask qty) in ticks / units, displayed quantity only; 0, 0 for an
        empty side; None when the instrument is not listed."""

    def depth(self, instrument: Instrument, levels: int) -> tuple[list[Level], list[Level]]:
        """(bids, asks), best first, each level (price, displayed qty, order count)."""


VenueEventSink = Callable[[VenueEvent], None]
