"""Order-lifecycle enums shared by the OMS, persistence, the HTTP API and publishers.

FIX values are the enum values, so a state maps to the wire without a lookup table.
``OrderState`` is the OMS's own lifecycle state (one per order); ``OrdStatus`` and ``ExecType`` are
what ExecutionReports say about it.
"""
from __future__ import annotations

from enum import Enum


class OrderState(str, Enum):
    """Where an order is in its life (see crossbook.oms.lifecycle for the legal moves)."""

    PENDING_NEW = "pending_new"           # accepted by the OMS, sent to the venue, not acked yet
    NEW = "new"                           # working at the venue, nothing filled
    PARTIALLY_FILLED = "partially_filled"
    PENDING_CANCEL = "pending_cancel"     # cancel sent to the venue, not answered yet
    PENDING_REPLACE = "pending_replace"   # replace sent to the venue, not answered yet
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def is_pending(self) -> bool:
        return self in (OrderState.PENDING_CANCEL, OrderState.PENDING_REPLACE)


TERMINAL_STATES = frozenset({OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED, OrderState.EXPIRED})


class OrdStatus(str, Enum):
    """FIX OrdStatus (39)."""

    NEW = "0"
    PARTIALLY_FILLED = "1"
    FILLED = "2"
    DONE_FOR_DAY = "3"
    CANCELED = "4"
    PENDING_CANCEL = "6"
    REJECTED = "8"
    PENDING_NEW = "A"
    EXPIRED = "C"
    PENDING_REPLACE = "E"


#: OrdStatus reported for each lifecycle state.
ORD_STATUS_OF = {
    OrderState.PENDING_NEW: OrdStatus.PENDING_NEW,
    OrderState.NEW: OrdStatus.NEW,
    OrderState.PARTIALLY_FILLED: OrdStatus.PARTIALLY_FILLED,
    OrderState.PENDING_CANCEL: OrdStatus.PENDING_CANCEL,
    OrderState.PENDING_REPLACE: OrdStatus.PENDING_REPLACE,
    OrderState.FILLED: OrdStatus.FILLED,
    OrderState.CANCELED: OrdStatus.CANCELED,
    OrderState.REJECTED: OrdStatus.REJECTED,
    OrderState.EXPIRED: OrdStatus.EXPIRED,
}


class ExecType(str, Enum):
    """FIX ExecType (150), FIX 4.4 values; ``TRADE`` becomes 1/2 (partial fill/fill) on FIX 4.2 and
    ``ORDER_STATUS`` becomes the current OrdStatus with ExecTransType 3 (Status)."""

    NEW = "0"
    CANCELED = "4"
    REPLACED = "5"
    PENDING_CANCEL = "6"
    REJECTED = "8"
    PENDING_NEW = "A"
    EXPIRED = "C"
    PENDING_REPLACE = "E"
    TRADE = "F"
    ORDER_STATUS = "I"
    TRIGGERED = "L"


class OrdRejReason(int, Enum):
    """FIX OrdRejReason (103). FIX 4.2 only knows 0..6: see ``for_version``."""

    BROKER_OPTION = 0
    UNKNOWN_SYMBOL = 1
    EXCHANGE_CLOSED = 2
    ORDER_EXCEEDS_LIMIT = 3
    TOO_LATE_TO_ENTER = 4
    UNKNOWN_ORDER = 5
    DUPLICATE_ORDER = 6
    UNSUPPORTED_ORDER_CHARACTERISTIC = 11
    INCORRECT_QUANTITY = 13
    UNKNOWN_ACCOUNT = 15
    OTHER = 99

    def for_version(self, begin_string: str) -> int:
        """The value to send on ``begin_string``: FIX 4.2 has no code above 6 (-> 0, broker option)."""
        if begin_string == "FIX.4.2" and self.value > 6:
            return 0
        return self.value


class CxlRejReason(int, Enum):
    """FIX CxlRejReason (102)."""

    TOO_LATE_TO_CANCEL = 0
    UNKNOWN_ORDER = 1
    BROKER_OPTION = 2
    ALREADY_PENDING = 3
    DUPLICATE_CL_ORD_ID = 6
    OTHER = 99

    def for_version(self, begin_string: str) -> int:
        """FIX 4.2 knows 0..3 only (-> 2, broker option)."""
        if begin_string == "FIX.4.2" and self.value > 3:
            return 2
        return self.value


class CxlRejResponseTo(str, Enum):
    """FIX CxlRejResponseTo (434)."""

    CANCEL = "1"
    REPLACE = "2"


class CancelCause(str, Enum):
    """Why an order ended without being filled; recorded with the execution and named in Text."""

    CLIENT = "client"                 # OrderCancelRequest
    MASS_CANCEL = "mass_cancel"       # OrderMassCancelRequest
    IOC_REMAINDER = "ioc_remainder"
    FOK = "fok"
    MARKET_REMAINDER = "market_remainder"
    SELF_TRADE = "self_trade"
    EXPIRED = "expired"               # GTD expiry
    END_OF_DAY = "end_of_day"
    VENUE = "venue"                   # unsolicited by the venue, any other reason
    KILL_SWITCH = "kill_switch"
    DISCONNECT = "disconnect"         # the client session dropped (cancel_on_disconnect)
    RESTART = "restart"
