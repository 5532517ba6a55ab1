"""Type stubs for the compiled order book (crossbook.core._book)."""
from enum import IntEnum
from typing import Iterator, NamedTuple, SupportsIndex

import numpy as np

class Side(IntEnum):
    BUY = 1
    SELL = 2

class OrdType(IntEnum):
    MARKET = 1
    LIMIT = 2
    STOP = 3
    STOP_LIMIT = 4

class TimeInForce(IntEnum):
    DAY = 0
    GTC = 1
    IOC = 3
    FOK = 4
    GTD = 6

class STPMode(IntEnum):
    NONE = 0
    CANCEL_TAKER = 1
    CANCEL_MAKER = 2
    CANCEL_BOTH = 3

class Status(IntEnum):
    RESTING = 0
    PARTIALLY_FILLED = 1
    FILLED = 2
    CANCELLED = 4
    REJECTED = 8
    STOP_PENDING = 20

class Reason(IntEnum):
    NONE = 0
    IOC_REMAINDER = 1
    MARKET_REMAINDER = 2
    FOK_UNFILLABLE = 3
    STP_TAKER = 4
    STP_MAKER = 5
    USER_CANCEL = 6
    REPLACED_TO_FILLED = 7
    END_OF_DAY = 8
    EXPIRED = 9
    INVALID_QTY = 20
    INVALID_PRICE = 21
    INVALID_STOP_PRICE = 22
    INVALID_DISPLAY_QTY = 23
    INVALID_POST_ONLY = 24
    DUPLICATE_ID = 25
    POST_ONLY_WOULD_MATCH = 26
    UNKNOWN_ORDER = 27
    TOO_LATE = 28
    INVALID_ENUM = 29
    INVALID_EXPIRE_TIME = 30

REASON_TEXT: dict[Reason, str]

class Fill:
    """A trade; behaves like the namedtuple (maker_id, taker_id, price, qty)."""
    def __init__(self, maker_id: int, taker_id: int, price: int, qty: int) -> None: ...
    @property
    def maker_id(self) -> int: ...
    @property
    def taker_id(self) -> int: ...
    @property
    def price(self) -> int: ...
    @property
    def qty(self) -> int: ...
    def __len__(self) -> int: ...
    def __getitem__(self, i: int) -> int: ...
    def __iter__(self) -> Iterator[int]: ...
    def __hash__(self) -> int: ...
    def _asdict(self) -> dict[str, int]: ...

class Cancel:
    """An order ended without a fill of qty; behaves like the namedtuple (order_id, qty, reason)."""
    def __init__(self, order_id: int, qty: int, reason: Reason | int) -> None: ...
    @property
    def order_id(self) -> int: ...
    @property
    def qty(self) -> int: ...
    @property
    def reason(self) -> Reason: ...
    def __len__(self) -> int: ...
    def __getitem__(self, i: int) -> int | Reason: ...
    def __iter__(self) -> Iterator[int | Reason]: ...
    def __hash__(self) -> int: ...
    def _asdict(self) -> dict[str, int | Reason]: ...

class OrderState(NamedTuple):
    side: Side
    price: int
    qty: int
    leaves: int
    displayed: int
    filled: int

OP_SUBMIT: int
OP_CANCEL: int
OP_REPLACE: int
OP_END_OF_DAY: int
OP_EXPIRE: int
COMMAND_DTYPE: np.dtype
FILL_DTYPE: np.dtype
ENDED_DTYPE: np.dtype
MAX_QTY: int
MAX_PRICE: int

class Result:
    @property
    def order_id(self) -> int: ...
    @property
    def status(self) -> Status: ...
    @property
    def reason(self) -> str: ...
    @property
    def reason_code(self) -> Reason: ...
    @property
    def filled_qty(self) -> int: ...
    @property
    def leaves_qty(self) -> int: ...
    @property
    def fills(self) -> list[Fill]: ...
    @property
    def cancels(self) -> list[Cancel]: ...

class OrderBook:
    def __init__(self, capacity: int = 1024) -> None: ...
    def submit(
        self,
        order_id: SupportsIndex,
        side: SupportsIndex,
        price: SupportsIndex,
        qty: SupportsIndex,
        ord_type: SupportsIndex = OrdType.LIMIT,
        tif: SupportsIndex = TimeInForce.DAY,
        display_qty: SupportsIndex = 0,
        stop_price: SupportsIndex = 0,
        owner: SupportsIndex = 0,
        stp: SupportsIndex = STPMode.NONE,
        post_only: bool = False,
        expire_time: SupportsIndex = 0,
    ) -> Result: ...
    def cancel(self, order_id: SupportsIndex) -> int: ...
    def cancel_result(self, order_id: SupportsIndex) -> Result: ...
    def replace(self, order_id: SupportsIndex, qty: SupportsIndex, price: SupportsIndex) -> Result: ...
    def end_of_day(self) -> list[Cancel]: ...
    def expire(self, now: SupportsIndex) -> list[Cancel]: ...
    def process(self, commands: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
    def best_bid(self) -> tuple[int, int] | None: ...
    def best_ask(self) -> tuple[int, int] | None: ...
    def depth(self, side: SupportsIndex, levels: SupportsIndex = 10) -> list[tuple[int, int, int]]: ...
    def order(self, order_id: SupportsIndex) -> OrderState | None: ...
    def is_pending_stop(self, order_id: SupportsIndex) -> bool: ...
    def live_order_ids(self) -> list[int]: ...
    @property
    def last_price(self) -> int: ...
    def __len__(self) -> int: ...
    def __contains__(self, order_id: object) -> bool: ...
    @staticmethod
    def memory_bytes_per_order() -> int: ...
    def memory_usage(self) -> dict[str, int]: ...
