"""SmartRouter.restore_parent: after an OMS restart, a parent whose children outlived it at their
venues is taken back from the audit trail (SQLite) and continues with those children (fills,
cancel) instead of being routed again."""
from __future__ import annotations

import asyncio
import time

import pytest

from crossbook.app.server import SystemClock
from crossbook.core import OrdType, Side, Status, TimeInForce
from crossbook.model.instruments import DEFAULT_INSTRUMENTS, InstrumentMaster
from crossbook.routing.audit import SqliteAuditLog
from crossbook.routing import router as router_module
from crossbook.routing.router import SmartRouter
from crossbook.routing.venue import VenueEventKind as K, VenueOrder
from crossbook.venues import InProcessVenue

MASTER = InstrumentMaster.from_config(DEFAULT_INSTRUMENTS)
AAPL = MASTER.by_symbol("AAPL")


class KeptVenue(InProcessVenue):
    """An in-process venue standing for a venue process: it outlives the router (the test keeps
    the object) and, like FixVenue, is told about the orders a restarted OMS takes back."""

    outlives_process = True     # as FixVenue: only such venues' children are taken back live

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.restored: list[tuple] = []
        self.notionals: list[int] = []

    def restore_order(self, order: VenueOrder, cum_qty: int = 0, venue_order_id: str = "",
                      acked: bool = True, notional: int = 0) -> None:
        self.restored.append((order.venue_cl_ord_id, order.qty, order.price, order.tif, cum_qty, acked))
        self.notionals.append(notional)


async def wait(pred, what, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.002)


def test_parent_with_a_resting_child_is_taken_back_and_continues(tmp_path):
    async def main():
        a = KeptVenue("VENUE-A", MASTER, SystemClock())
        b = KeptVenue("VENUE-B", MASTER, SystemClock())
        await a.start()
        await b.start()
        a.new_order(VenueOrder("mk1", AAPL, Side.SELL, OrdType.LIMIT, TimeInForce.DAY, 30, 23001))
        await asyncio.sleep(0.01)
        path = str(tmp_path / "audit.db")

        # Before the restart: 30 taken at A, the remainder (70) rests at B.
        audit = SqliteAuditLog(path)
        r1 = SmartRouter("SOR", [a, b], "sweep", rest_venue="VENUE-B", audit=audit, watch_s=0.01)
        up1 = []
        r1.set_event_sink(up1.append)
        await r1.start()
        order = VenueOrder("O1.1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 100, 23001)
        r1.new_order(order)
        await wait(lambda: b.top_of_book(AAPL)[:2] == (23001, 70), "remainder resting at B")
        assert [(e.kind, e.cum_qty) for e in up1 if e.venue == "SOR"] == [(K.NEW, 0), (K.TRADE, 30)]
        await r1.stop()
        audit.close()
        # The first router dies with its process: it no longer hears the venues (in one process
        # here, it would still claim its children's events from the venues' shared taps).
        for venue in (a, b):
            router_module._tap_for(venue).routers.remove(r1)

        # After: a new router over the same venues and audit file.
        audit2 = SqliteAuditLog(path)
        r2 = SmartRouter("SOR", [a, b], "sweep", rest_venue="VENUE-B", audit=audit2, watch_s=0.01)
        events = []
        r2.set_event_sink(events.append)

        def up(kind):   # the router's own events (orders sent to the venues directly pass through)
            return [e for e in events if e.venue == "SOR" and e.kind == kind]

        with pytest.raises(ValueError, match="cum_qty"):
            r2.restore_parent(order, 100)
        assert not r2.restore_parent(VenueOrder("O9.1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 10, 1), 0)
        assert not r2.restore_parent(order, 0)       # the children hold 70, not 100: not this parent's state
        assert r2.restore_parent(order, 30)
        assert b.restored == [(r2.children_of("O1.1")[-1]["cl"], 70, 23001, TimeInForce.DAY, 0, True)]
        assert a.restored == []
        assert [(k["venue"], k["leaves"], k["done"]) for k in r2.children_of("O1.1")] == [
            ("VENUE-A", 0, True), ("VENUE-B", 70, False)]
        await r2.start()

        # The resting child fills: the parent (not a new one) hears it, with the right totals.
        b.new_order(VenueOrder("mk2", AAPL, Side.SELL, OrdType.LIMIT, TimeInForce.DAY, 50, 23001))
        await wait(lambda: up(K.TRADE), "fill of the restored child")
        fill = up(K.TRADE)
        assert [(e.venue, e.venue_cl_ord_id, e.last_qty, e.cum_qty, e.leaves_qty, e.last_mkt) for e in fill] == [
            ("SOR", "O1.1", 50, 80, 20, "VENUE-B")]
        # Cancel of the parent reaches the child; the parent ends with what it filled.
        r2.cancel_order("O1.1", "O1.1.c")
        await wait(lambda: up(K.CANCELED), "parent canceled")
        end = up(K.CANCELED)[0]
        assert (end.venue_cl_ord_id, end.cum_qty, end.ord_status) == ("O1.1.c", 80, int(Status.CANCELLED))
        assert b.top_of_book(AAPL)[:2] == (0, 0)
        assert "parent_restored" in [row["event"] for row in r2.audit("O1.1")]
        with pytest.raises(ValueError, match="already"):
            r2.restore_parent(order, 30)
        await r2.stop()
        audit2.close()
        await a.stop()
        await b.stop()

    asyncio.run(asyncio.wait_for(main(), 30))
