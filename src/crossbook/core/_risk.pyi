"""Type stubs for the compiled pre-trade risk engine (crossbook.core._risk)."""
from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum
from typing import Any, NamedTuple, Protocol, SupportsIndex

import numpy as np
import numpy.typing as npt

MAX_QTY: int
MAX_PRICE: int
MAX_MSG_RATE: int
NOTIONAL_TOLERANCE: float

class RiskCode(IntEnum):
    OK = 0
    KILL_GLOBAL = 1
    KILL_FIRM = 2
    KILL_ACCOUNT = 3
    MSG_RATE = 4
    RESTRICTED_GLOBAL = 5
    RESTRICTED_ACCOUNT = 6
    MARKET_NOT_ALLOWED = 7
    MAX_ORDER_QTY = 8
    NO_FX_RATE = 9
    NO_REFERENCE_PRICE = 10
    MAX_ORDER_NOTIONAL = 11
    PRICE_COLLAR = 12
    MAX_OPEN_ORDERS = 13
    DAILY_CREDIT = 14
    MAX_POSITION = 15

CHECK_NAMES: dict[RiskCode, str]

class RiskDecision(NamedTuple):
    code: RiskCode
    text: str
    @property
    def accepted(self) -> bool: ...

Amount = Decimal | int | float | str

@dataclass(frozen=True)
class RiskLimits:
    max_order_qty: int | None = None
    max_order_notional: Decimal | None = None
    collar_bps: int | None = None
    daily_credit_limit: Decimal | None = None
    max_position: int | None = None
    max_open_orders: int | None = None
    market_orders_allowed: bool = True
    def replace(self, **changes: Any) -> RiskLimits: ...
    @classmethod
    def from_dict(cls, entries: dict[str, Any], where: str = "limits") -> RiskLimits: ...

class _InstrumentLike(Protocol):
    index: int
    symbol: str
    tick_size: Decimal
    multiplier: Decimal
    currency: str
    reference_price: Decimal | None
    def price_to_ticks(self, price: Decimal | str) -> int: ...

Usage = dict[str, Any]
Ints = npt.ArrayLike

class RiskEngine:
    def __init__(self, max_accounts: int = 16, max_instruments: int = 16, max_sessions: int = 16,
                 max_firms: int = 4) -> None: ...
    # configuration
    def set_instrument(self, index: SupportsIndex, *, tick_size: Amount, multiplier: Amount = 1,
                       currency: str = "USD", symbol: str | None = None,
                       reference_price_ticks: SupportsIndex = 0) -> None: ...
    def add_instrument(self, instrument: _InstrumentLike) -> None: ...
    def set_account(self, index: SupportsIndex, limits: RiskLimits, *, firm: SupportsIndex = 0,
                    currency: str = "USD", name: str | None = None) -> None: ...
    def set_limits(self, account: SupportsIndex, limits: RiskLimits) -> None: ...
    def set_fx_rate(self, from_ccy: str, to_ccy: str, rate: Amount) -> None: ...
    def set_session(self, index: SupportsIndex, msg_rate_per_sec: SupportsIndex | None,
                    burst: SupportsIndex | None = None, *, name: str | None = None) -> None: ...
    def set_firm_name(self, index: SupportsIndex, name: str) -> None: ...
    def missing_fx_rates(self) -> list[tuple[str, str]]: ...
    # run-time controls
    def set_reference_price(self, instrument: SupportsIndex, price_ticks: SupportsIndex) -> None: ...
    def reference_price(self, instrument: SupportsIndex) -> int: ...
    def market_price(self, instrument: SupportsIndex) -> int: ...
    def set_restricted(self, instrument: SupportsIndex, restricted: bool = True,
                       account: SupportsIndex | None = None) -> None: ...
    def kill(self, scope: str, index: SupportsIndex | None = None, on: bool = True) -> None: ...
    def killed_accounts(self) -> list[int]: ...
    def kill_state(self) -> dict[str, Any]: ...
    def new_day(self) -> None: ...
    # checks
    def check_new(self, account: SupportsIndex, instrument: SupportsIndex, session: SupportsIndex,
                  side: SupportsIndex, ord_type: SupportsIndex, qty: SupportsIndex,
                  price_ticks: SupportsIndex, now_ns: SupportsIndex) -> RiskCode: ...
    def check_replace(self, account: SupportsIndex, instrument: SupportsIndex,
                      session: SupportsIndex, side: SupportsIndex, ord_type: SupportsIndex,
                      new_qty: SupportsIndex, new_price_ticks: SupportsIndex,
                      old_leaves: SupportsIndex, old_price_ticks: SupportsIndex,
                      cum_qty: SupportsIndex, now_ns: SupportsIndex) -> RiskCode: ...
    def decide_new(self, account: SupportsIndex, instrument: SupportsIndex, session: SupportsIndex,
                   side: SupportsIndex, ord_type: SupportsIndex, qty: SupportsIndex,
                   price_ticks: SupportsIndex, now_ns: SupportsIndex) -> RiskDecision: ...
    def decide_replace(self, account: SupportsIndex, instrument: SupportsIndex,
                       session: SupportsIndex, side: SupportsIndex, ord_type: SupportsIndex,
                       new_qty: SupportsIndex, new_price_ticks: SupportsIndex,
                       old_leaves: SupportsIndex, old_price_ticks: SupportsIndex,
                       cum_qty: SupportsIndex, now_ns: SupportsIndex) -> RiskDecision: ...
    def check_batch(self, account: Ints, instrument: Ints, session: Ints, side: Ints,
                    ord_type: Ints, qty: Ints, price_ticks: Ints, now_ns: Ints, *,
                    open_accepted: bool = False) -> np.ndarray: ...
    def explain(self, code: SupportsIndex, account: SupportsIndex, instrument: SupportsIndex,
                side: SupportsIndex, ord_type: SupportsIndex, qty: SupportsIndex,
                price_ticks: SupportsIndex, session: SupportsIndex = -1, *,
                replace: tuple[int, int, int] | None = None) -> str: ...
    # usage
    def on_open(self, account: SupportsIndex, instrument: SupportsIndex, side: SupportsIndex,
                qty: SupportsIndex, price_ticks: SupportsIndex) -> None: ...
    def on_fill(self, account: SupportsIndex, instrument: SupportsIndex, side: SupportsIndex,
                qty: SupportsIndex, price_ticks: SupportsIndex,
                fill_price_ticks: SupportsIndex | None = None) -> None: ...
    def on_close(self, account: SupportsIndex, instrument: SupportsIndex, side: SupportsIndex,
                 leaves_qty: SupportsIndex, price_ticks: SupportsIndex) -> None: ...
    def on_replace(self, account: SupportsIndex, instrument: SupportsIndex, side: SupportsIndex,
                   old_leaves: SupportsIndex, old_price_ticks: SupportsIndex,
                   new_leaves: SupportsIndex, new_price_ticks: SupportsIndex) -> None: ...
    def usage(self, account: SupportsIndex) -> Usage: ...
    def restore_usage(self, account: SupportsIndex, usage: Usage) -> None: ...
    def snapshot(self) -> dict[int, Usage]: ...
    def restore(self, snapshot: dict[Any, Usage]) -> None: ...
    def limits(self, account: SupportsIndex) -> RiskLimits: ...
    def account_firm(self, account: SupportsIndex) -> int: ...
