"""Order events: what the order manager publishes (after the change is durable) to the FIX
gateway, subscribers, and later drop copies."""
from __future__ import annotations

from dataclasses import dataclass

from crossbook.model.orders import Execution, Order


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """An order changed: ``execution`` is the ExecutionReport content, ``order`` a snapshot of the
    order after the change (a copy: subscribers may keep it)."""

    execution: Execution
    order: Order

    @property
    def order_id(self) -> str:
        return self.order.order_id

    @property
    def session(self) -> str:
        return self.order.session
