"""In-process subscription to order events."""
from __future__ import annotations

import asyncio
from typing import Callable

from crossbook.model.events import OrderEvent


class EventBus:
    """Subscriptions with optional filters over an order manager's durable events.

        bus = EventBus(manager)
        unsubscribe = bus.subscribe(print, account="ACC1")
    """

    def __init__(self, manager) -> None:
        self._manager = manager

    def subscribe(self, callback: Callable[[OrderEvent], None], *, account: str | None = None,
                  session: str | None = None, symbol: str | None = None) -> Callable[[], None]:
        """Call ``callback(event)`` for every event matching the filters (all when none); runs on
        the event loop, so keep it short. Returns a function that unsubscribes."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")

        def filtered(event: OrderEvent) -> None:
            order = event.order
            if account is not None and order.account != account:
                return
            if session is not None and order.session != session:
                return
            if symbol is not None and order.symbol != symbol:
                return
            callback(event)

        return self._manager.subscribe(filtered)

    def queue(self, maxsize: int = 0, **filters) -> "EventQueue":
        """An asyncio queue of events (for ``async for``-style consumers)."""
        return EventQueue(self, maxsize, **filters)


class EventQueue:
    """Events in an asyncio.Queue; ``close()`` unsubscribes. A full queue drops the newest event
    and counts it in ``dropped`` (a slow consumer must not stall the order manager)."""

    def __init__(self, bus: EventBus, maxsize: int = 0, **filters) -> None:
        self.queue: asyncio.Queue[OrderEvent] = asyncio.Queue(maxsize)
        self.dropped = 0
        self._unsubscribe = bus.subscribe(self._put, **filters)

    def _put(self, event: OrderEvent) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    async def get(self, timeout: float | None = None) -> OrderEvent:
        return await asyncio.wait_for(self.queue.get(), timeout)

    def close(self) -> None:
        self._unsubscribe()
