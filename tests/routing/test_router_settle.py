"""SmartRouter.recover_parent, the cases a review of the first version found wrong: each test
here failed on that version (see docs/routing.md "After an OMS restart").

As in test_router_recover.py, the venue process is an in-process venue counted as one
(``ProcessVenue``), kept across the "restart", and the reconciliation FixVenue plays at logon is
played through the venue's event tap, so every step is deterministic.
"""
from __future__ import annotations

import asyncio

from crossbook.app.server import SystemClock
from crossbook.core import OrdType, Reason, Side, Status, TimeInForce
from crossbook.routing import router as router_module
from crossbook.routing.audit import MemoryAuditLog
from crossbook.routing.router import SmartRouter
from crossbook.routing.venue import VenueOrder, VenueEventKind as K

from test_router_recover import AAPL, MASTER, ProcessVenue, _mine


def _kill(router: SmartRouter, *venues) -> None:
    """The router's process dies: it stops hearing its venues (which live on)."""
    router._started = False
    for v in venues:
        tap = router_module._tap_for(v)
        if router in tap.routers:
            tap.routers.remove(router)


def _router(venues, audit, policy="direct") -> tuple[SmartRouter, list]:
    r = SmartRouter("SOR", list(venues), policy, audit=audit, watch_s=0.01)
    events: list = []
    r.set_event_sink(events.append)
    return r, events


# ------------------------------------------------------------------------------------------------
# Finding 1: a parent that may execute only once, or that already ended, is never routed again
# ------------------------------------------------------------------------------------------------
def test_an_ioc_parent_that_executed_before_the_kill_is_finished_with_its_fills_not_routed_again():
    async def main():
        a = ProcessVenue("VENUE-A", MASTER, SystemClock())
        await a.start()
        a.new_order(VenueOrder("mk", AAPL, Side.SELL, OrdType.LIMIT, TimeInForce.DAY, 30, 23000))
        await asyncio.sleep(0.01)
        audit = MemoryAuditLog()
        r1, up1 = _router([a], audit)
        await r1.start()
        parent = VenueOrder("O1.1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.IOC, 100, 23000)
        r1.new_order(parent)
        await asyncio.sleep(0.02)
        # Run 1: the IOC took 30, its remainder was cancelled at the venue.
        assert [(e.kind, e.cum_qty) for e in _mine(up1)] == [(K.NEW, 0), (K.TRADE, 30), (K.CANCELED, 30)]
        _kill(r1, a)
        # Later liquidity that a second execution of the IOC would take.
        a.new_order(VenueOrder("mk2", AAPL, Side.SELL, OrdType.LIMIT, TimeInForce.DAY, 500, 23000))
        await asyncio.sleep(0.01)
        # The OMS's journal lost everything after the order's New.
        r2, events = _router([a], audit)
        assert r2.recover_parent(parent, 0, ["O1.1"], cum_value=0, acknowledged=True)
        await r2.start()
        await asyncio.sleep(0.02)
        assert r2.children_sent == 0, "the IOC was sent to the venue a second time"
        got = [(e.kind, e.last_qty, e.last_px, e.cum_qty) for e in _mine(events)]
        assert got == [(K.TRADE, 30, 23000, 30), (K.CANCELED, 0, 0, 30)]
        await a.stop()

    asyncio.run(asyncio.wait_for(main(), 20))


def test_an_ioc_parent_whose_fills_the_oms_journaled_is_taken_back_and_finished_not_resubmitted():
    """Nothing to settle (its child is done, the OMS has its fills), yet recover_parent used to
    return False, and the OMS's resubmit would route the IOC's remainder again."""
    async def main():
        a = ProcessVenue("VENUE-A", MASTER, SystemClock())
        await a.start()
        a.new_order(VenueOrder("mk", AAPL, Side.SELL, OrdType.LIMIT, TimeInForce.DAY, 30, 23000))
        await asyncio.sleep(0.01)
        audit = MemoryAuditLog()
        r1, _ = _router([a], audit)
        await r1.start()
        parent = VenueOrder("O1.1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.IOC, 100, 23000)
        r1.new_order(parent)
        await asyncio.sleep(0.02)
        _kill(r1, a)
        r2, events = _router([a], audit)
        assert r2.recover_parent(parent, 30, ["O1.1"], cum_value=30 * 23000, acknowledged=True)
        await r2.start()
        await asyncio.sleep(0.01)
        assert r2.children_sent == 0
        assert [(e.kind, e.cum_qty, e.reason_code) for e in _mine(events)] == [
            (K.CANCELED, 30, int(Reason.IOC_REMAINDER))]
        await a.stop()

    asyncio.run(asyncio.wait_for(main(), 20))


def test_a_day_parent_the_venue_ended_before_the_kill_ends_with_that_reason_not_routed_again():
    async def main():
        a = ProcessVenue("VENUE-A", MASTER, SystemClock())
        await a.start()
        audit = MemoryAuditLog()
        P = "SOR-x-1"
        # Trail: the resting child was expired by the venue; the parent was cancelled with it.
        audit.rows = [
            (1, "SOR", P, "O1.1", "parent_new", "", "", 100, 23000, {}),
            (2, "SOR", P, "O1.1", "child_sent", "VENUE-A", P + ".1", 100, 23000, {"mirror": True}),
            (3, "SOR", P, "O1.1", "child_new", "VENUE-A", P + ".1", 100, 23000, {"venue_order_id": "V1"}),
            (4, "SOR", P, "O1.1", "child_canceled", "VENUE-A", P + ".1", 0, 0, {}),
            (5, "SOR", P, "O1.1", "parent_canceled", "", "", 0, 0,
             {"reason": "VENUE-A: expired", "reason_code": int(Reason.EXPIRED), "cum": 0}),
        ]
        r2, events = _router([a], audit)
        parent = VenueOrder("O1.1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 100, 23000)
        assert r2.recover_parent(parent, 0, ["O1.1"], acknowledged=True)
        await r2.start()
        await asyncio.sleep(0.01)
        assert r2.children_sent == 0
        got = [(e.kind, e.cum_qty, e.reason_code) for e in _mine(events)]
        assert got == [(K.CANCELED, 0, int(Reason.EXPIRED))]
        assert "expired" in _mine(events)[0].reason
        await a.stop()

    asyncio.run(asyncio.wait_for(main(), 20))
