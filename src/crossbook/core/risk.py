"""crossbook.core.risk: pre-trade risk checks (compiled, ``crossbook.core._risk``).

Per-account limits (order quantity and notional, price collar, daily credit, worst-case net
position, open orders, market orders), per-session message rates, restricted instruments and
kill switches, with the usage accounting the OMS drives (on_open / on_fill / on_close /
on_replace), usage snapshots for persistence and a GIL-free batch path.  See docs/risk.md.

    >>> from crossbook.core.risk import RiskEngine, RiskLimits, RiskCode
    >>> eng = RiskEngine()
    >>> eng.set_instrument(0, tick_size="0.01", symbol="AAPL", reference_price_ticks=15000)
    >>> eng.set_account(0, RiskLimits(max_order_qty=1000), name="ACC1")
    >>> eng.check_new(0, 0, -1, 1, 2, 5000, 15000, 0) is RiskCode.MAX_ORDER_QTY
    True
    >>> eng.explain(RiskCode.MAX_ORDER_QTY, 0, 0, 1, 2, 5000, 15000)
    'risk: max order quantity exceeded: 5,000 > limit 1,000 (account ACC1, AAPL)'
"""
from crossbook.core._risk import (
    CHECK_NAMES,
    MAX_MSG_RATE,
    MAX_PRICE,
    MAX_QTY,
    NOTIONAL_TOLERANCE,
    RiskCode,
    RiskDecision,
    RiskEngine,
    RiskLimits,
)

__all__ = [
    "CHECK_NAMES", "MAX_MSG_RATE", "MAX_PRICE", "MAX_QTY", "NOTIONAL_TOLERANCE",
    "RiskCode", "RiskDecision", "RiskEngine", "RiskLimits",
]
