"""SmartRouter over FixVenues to two real `crossbook venue` processes on loopback.

The router reads the venues' books from their FIX market data, sweeps across both, rests the
remainder, and survives a venue killed with SIGKILL in the middle of a sweep: the child there is
marked unknown, the remainder waits, and when the venue is back FixVenue's reconciliation tells
the router what really happened (the child is gone with the venue's books), after which the
remainder rests at the other venue. Nothing is filled twice.
"""
from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import pytest

from crossbook.core import OrdType, Side, Status, TimeInForce
from crossbook.model.instruments import DEFAULT_INSTRUMENTS, InstrumentMaster
from crossbook.routing.fix_venue import FixVenue
from crossbook.routing.router import SmartRouter
from crossbook.routing.venue import VenueEventKind as K, VenueOrder
from venuekit import venue_config

pytestmark = pytest.mark.timeout(120)

MASTER = InstrumentMaster.from_config(DEFAULT_INSTRUMENTS)
AAPL = MASTER.by_symbol("AAPL")


class FixRig:
    def __init__(self, tmp: Path, port_a: int, port_b: int):
        self.fa = FixVenue("VENUE-A", MASTER, host="127.0.0.1", port=port_a, sender_comp_id="CROSSBOOK",
                           target_comp_id="VENUE-A", store_path=str(tmp / "oms-a"), reconnect_min_s=0.05,
                           reconnect_max_s=0.4)
        self.fb = FixVenue("VENUE-B", MASTER, host="127.0.0.1", port=port_b, sender_comp_id="CROSSBOOK",
                           target_comp_id="VENUE-B", store_path=str(tmp / "oms-b"), reconnect_min_s=0.05,
                           reconnect_max_s=0.4)
        self.router = SmartRouter("SOR", [self.fa, self.fb], "sweep", rest_venue="VENUE-B")
        self.events = []
        self.router.set_event_sink(self.events.append)
        self.n = 0

    async def __aenter__(self):
        await self.router.start()
        assert await self.fa.wait_up(15) and await self.fb.wait_up(15), "FixVenues did not log on"
        return self

    async def __aexit__(self, *exc):
        await self.router.stop()
        await self.fa.stop()
        await self.fb.stop()

    def quote(self, venue, side, qty, px):
        self.n += 1
        cl = f"mk{self.n}"
        venue.new_order(VenueOrder(cl, AAPL, side, OrdType.LIMIT, TimeInForce.DAY, qty, px))
        return cl

    def up(self, kind=None):
        return [e for e in self.events if e.venue == "SOR" and (kind is None or e.kind == kind)]

    async def wait(self, pred, what, timeout=15.0):
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; upstream: {self.up()}; "
                                     f"children: {[self.router.children_of(p.venue_cl_ord_id) for p in self.up()[:1]]}")
            await asyncio.sleep(0.01)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 100))


def start_slow_a_and_b(tmp_path, venue_proc):
    """VENUE-A answering 400 ms late and VENUE-B; returns A's config (to restart it), A and B."""
    cfg_a = venue_config(tmp_path, "VENUE-A", faults="latency_us = 400000")
    va = venue_proc(cfg_a)
    vb = venue_proc(venue_config(tmp_path, "VENUE-B"))
    return cfg_a, va, vb


async def sweep_with_a_child_in_flight_at_a(r: FixRig) -> None:
    """Offers of 100 @ 23010 at A and 50 @ 23005 at B, then parent P1 buying 200 @ 23010: its
    child at A is received (and matched) there but, A being slow, not yet reported."""
    mk = r.quote(r.fa, Side.SELL, 100, 23010)
    r.quote(r.fb, Side.SELL, 50, 23005)
    await r.wait(lambda: r.router.depth(AAPL, 5)[1] == [(23005, 50, 1), (23010, 100, 1)], "market data")
    await r.wait(lambda: [e for e in r.events if e.venue_cl_ord_id == mk and e.kind == K.NEW], "maker ack")
    r.router.new_order(VenueOrder("P1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 200, 23010))
    await asyncio.sleep(0.1)


def test_sweep_across_two_fix_venues_and_rest_the_remainder(tmp_path, venue_proc):
    va = venue_proc(venue_config(tmp_path, "VENUE-A"))
    vb = venue_proc(venue_config(tmp_path, "VENUE-B"))

    async def main():
        async with FixRig(tmp_path, va.port, vb.port) as r:
            r.quote(r.fa, Side.SELL, 100, 23010)
            r.quote(r.fb, Side.SELL, 50, 23005)
            r.quote(r.fb, Side.SELL, 100, 23020)
            await r.wait(lambda: r.router.depth(AAPL, 5)[1] == [(23005, 50, 1), (23010, 100, 1), (23020, 100, 1)],
                         "market data from both venues")
            r.router.new_order(VenueOrder("P1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 200, 23010))
            await r.wait(lambda: len(r.up(K.TRADE)) == 2, "two fills")
            await r.wait(lambda: r.fb.top_of_book(AAPL)[:2] == (23010, 50), "remainder resting at B")
            kids = r.router.children_of("P1")
            assert [(k["venue"], k["qty"], k["price"], k["mirror"]) for k in kids] == [
                ("VENUE-B", 50, 23005, False), ("VENUE-A", 100, 23010, False), ("VENUE-B", 50, 23010, True)]
            trades = r.up(K.TRADE)
            assert sorted((t.last_qty, t.last_px) for t in trades) == [(50, 23005), (100, 23010)]
            assert trades[-1].cum_qty == 150 and trades[-1].leaves_qty == 50
            assert Decimal(sum(t.last_qty * t.last_px for t in trades)) / 150 == Decimal(50 * 23005 + 100 * 23010) / 150
            assert [e.kind for e in r.up()] == [K.NEW, K.TRADE, K.TRADE]
            r.router.cancel_order("P1", "P1-c")
            await r.wait(lambda: r.up(K.CANCELED), "cancelled")
            c = r.up(K.CANCELED)[0]
            assert (c.venue_cl_ord_id, c.orig_venue_cl_ord_id, c.cum_qty, c.leaves_qty) == ("P1-c", "P1", 150, 0)
            await r.wait(lambda: r.fb.top_of_book(AAPL)[:2] == (0, 0), "bid gone at B")
    run(main())


def test_venue_killed_in_the_middle_of_a_sweep_and_brought_back_is_reconciled(tmp_path, venue_proc):
    # A answers 400 ms late, so the sweep's child there is received (and matched) but not yet
    # reported when the process is killed: the fill dies with the venue's books.
    cfg_a, va, vb = start_slow_a_and_b(tmp_path, venue_proc)
    port_a = va.port

    async def main():
        async with FixRig(tmp_path, port_a, vb.port) as r:
            await sweep_with_a_child_in_flight_at_a(r)
            va.kill()                                                   # SIGKILL mid-sweep
            await r.wait(lambda: not r.fa.is_up, "A down")
            await r.wait(lambda: r.up(K.TRADE), "B's fill")
            child_a = next(k for k in r.router.children_of("P1") if k["venue"] == "VENUE-A")
            await r.wait(lambda: next(k for k in r.router.children_of("P1") if k["id"] == child_a["id"])["unknown"],
                         "A's child unknown")
            await asyncio.sleep(0.3)
            # The remainder waits for A's child to be resolved: resting it now could double-fill.
            assert len(r.router.children_of("P1")) == 2 and not r.up(K.CANCELED)
            venue_proc(cfg_a, port=port_a)                              # back, same port and stores
            await r.wait(lambda: len(r.router.children_of("P1")) == 3, "remainder routed after reconciliation",
                         timeout=30)
            await r.wait(lambda: r.fb.top_of_book(AAPL)[:2] == (23010, 150), "remainder resting at B")
            kids = r.router.children_of("P1")
            a = next(k for k in kids if k["venue"] == "VENUE-A")
            assert a["done"] and a["cum"] == 0 and not a["unknown"]
            assert (kids[2]["venue"], kids[2]["qty"], kids[2]["mirror"]) == ("VENUE-B", 150, True)
            await asyncio.sleep(0.3)
            trades = r.up(K.TRADE)
            assert [(t.last_qty, t.last_px, t.cum_qty, t.leaves_qty) for t in trades] == [(50, 23005, 50, 150)]
            assert trades[0].exec_id.startswith("VENUE-B:")
            assert [e.kind for e in r.up()] == [K.NEW, K.TRADE]          # still live, nothing doubled
            r.router.order_status("P1")
            await r.wait(lambda: r.up(K.STATUS), "status")
            st = r.up(K.STATUS)[0]
            assert (st.cum_qty, st.leaves_qty, st.ord_status) == (50, 150, Status.PARTIALLY_FILLED)
            trail = [(row["event"], row["child_id"]) for row in r.router.audit("P1")]
            assert ("child_unknown", a["id"]) in trail
            assert any(e in ("child_rejected", "child_canceled") and c == a["id"] for e, c in trail)
            # Trading goes on at the restarted venue through the router.
            r.quote(r.fb, Side.SELL, 150, 23010)
            await r.wait(lambda: r.up(K.TRADE)[-1].leaves_qty == 0, "filled at B")
    run(main())


def test_parent_cancel_while_a_venue_is_killed_waits_for_its_reconciliation(tmp_path, venue_proc):
    cfg_a, va, vb = start_slow_a_and_b(tmp_path, venue_proc)
    port_a = va.port

    async def main():
        async with FixRig(tmp_path, port_a, vb.port) as r:
            await sweep_with_a_child_in_flight_at_a(r)
            va.kill()
            await r.wait(lambda: not r.fa.is_up and r.up(K.TRADE), "A down, B filled")
            r.router.cancel_order("P1", "P1-c")                         # A's child cannot be reached
            await asyncio.sleep(0.5)
            assert not r.up(K.CANCELED) and not r.up(K.CANCEL_REJECTED)  # no answer before the truth is known
            venue_proc(cfg_a, port=port_a)
            await r.wait(lambda: r.up(K.CANCELED), "cancelled after reconciliation", timeout=30)
            c = r.up(K.CANCELED)[0]
            assert (c.venue_cl_ord_id, c.orig_venue_cl_ord_id, c.cum_qty, c.leaves_qty) == ("P1-c", "P1", 50, 0)
            assert len(r.router.children_of("P1")) == 2                  # nothing rested
            assert [e.kind for e in r.up()] == [K.NEW, K.TRADE, K.CANCELED]
    run(main())
