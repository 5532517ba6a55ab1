"""crossbook.core: the matching core.

Public API of the compiled order book (``crossbook.core._book``); see docs/core.md for the
semantics, the design and a worked example.

    >>> from crossbook.core import OrderBook, Side
    >>> book = OrderBook()
    >>> book.submit(1, Side.SELL, 101, 10).status
    <Status.RESTING: 0>
"""
from crossbook.core._book import (
    COMMAND_DTYPE,
    ENDED_DTYPE,
    FILL_DTYPE,
    MAX_PRICE,
    MAX_QTY,
    OP_CANCEL,
    OP_END_OF_DAY,
    OP_EXPIRE,
    OP_REPLACE,
    OP_SUBMIT,
    REASON_TEXT,
    Cancel,
    Fill,
    OrderBook,
    OrderState,
    OrdType,
    Reason,
    Result,
    Side,
    Status,
    STPMode,
    TimeInForce,
)

__all__ = [
    "COMMAND_DTYPE", "ENDED_DTYPE", "FILL_DTYPE", "MAX_PRICE", "MAX_QTY",
    "OP_CANCEL", "OP_END_OF_DAY", "OP_EXPIRE", "OP_REPLACE", "OP_SUBMIT", "REASON_TEXT",
    "Cancel", "Fill", "OrderBook", "OrderState", "OrdType", "Reason", "Result", "Side",
    "Status", "STPMode", "TimeInForce",
]
