"""SmartRouter over in-process venues with constructed books (no background liquidity), on a real
asyncio loop: routing decisions, parent/child aggregation, cancel and replace with children in
flight, FOK across venues, venues down at entry and reconciliation after a reconnect, the audit
trail, and the config loader. The router is driven directly, as the OMS drives a venue."""
from __future__ import annotations

import asyncio
import itertools
import re
import time
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossbook.core import OrdType, Reason, Side, Status, TimeInForce
from crossbook.model.instruments import DEFAULT_INSTRUMENTS, InstrumentMaster
from crossbook.routing.audit import MemoryAuditLog, SqliteAuditLog, read_audit
from crossbook.routing.policies import Policy, VenueQuote, marketable_levels, plan_best_price, plan_sweep
from crossbook.routing.router import RouterConfig, SmartRouter, build_router, load_routers
from crossbook.routing.venue import Venue, VenueEventKind as K, VenueOrder, VenueReason
from crossbook.venues import BackgroundFlow, InProcessVenue
from clocks import SteppingClock

pytestmark = pytest.mark.timeout(60)
SEEDS = [(1, 0), (2, 0), (3, 0), (4, 2_000_000), (5, 2_000_000)]   # (seed, venue latency ns)

MASTER = InstrumentMaster.from_config(DEFAULT_INSTRUMENTS)
AAPL = MASTER.by_symbol("AAPL")
MSFT = MASTER.by_symbol("MSFT")
BUY, SELL = Side.BUY, Side.SELL


class Rig:
    """Two in-process venues with empty books, a router over them, and an upstream recorder that
    plays the OMS (it also receives the events of orders sent to the venues directly)."""

    def __init__(self, policy="sweep", *, rest_venue="VENUE-A", audit=None, latency_ns=0, background=None):
        self.clock = SteppingClock()
        self.a = InProcessVenue("VENUE-A", MASTER, self.clock, background=background, latency_ns=latency_ns)
        self.b = InProcessVenue("VENUE-B", MASTER, self.clock, latency_ns=latency_ns)
        self.audit_log = audit if audit is not None else MemoryAuditLog()
        venues = [self.a] if policy == "direct" else [self.a, self.b]
        self.router = SmartRouter("SOR", venues, policy, rest_venue=rest_venue, clock=self.clock,
                                  audit=self.audit_log, watch_s=0.01)
        self.events = []
        self.router.set_event_sink(self.events.append)
        self._n = itertools.count(1)

    async def __aenter__(self):
        await self.a.start()
        await self.b.start()
        await self.router.start()
        return self

    async def __aexit__(self, *exc):
        await self.router.stop()
        await self.a.stop()
        await self.b.stop()

    def quote(self, venue, side, qty, px):
        """A resting order sent to a venue directly (another member's liquidity)."""
        cl = f"mk{next(self._n)}"
        venue.new_order(VenueOrder(cl, AAPL, side, OrdType.LIMIT, TimeInForce.DAY, qty, px))
        return cl

    def parent(self, side, qty, px, *, ord_type=OrdType.LIMIT, tif=TimeInForce.DAY, inst=AAPL, **kw):
        cl = f"P{next(self._n)}"
        self.router.new_order(VenueOrder(cl, inst, side, ord_type, tif, qty, px, **kw))
        return cl

    def up(self, kind=None):
        return [e for e in self.events if e.venue == "SOR" and (kind is None or e.kind == kind)]

    async def wait(self, pred, what="condition", timeout=5.0):
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; upstream: {self.up()}")
            await asyncio.sleep(0.002)

    async def settle(self, turns=20):
        for _ in range(turns):
            await asyncio.sleep(0)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 50))


def check_aggregates(events, qty):
    """Every TRADE's cum/leaves follow from the fills before it; returns (cum, avg px)."""
    cum, value = 0, 0
    for e in events:
        if e.kind == K.TRADE:
            cum += e.last_qty
            value += e.last_qty * e.last_px
            assert (e.cum_qty, e.leaves_qty) == (cum, qty - cum), e
    return cum, (Decimal(value) / cum if cum else Decimal(0))


# ------------------------------------------------------------------------------------------------
# Policies as pure functions
# ------------------------------------------------------------------------------------------------
def test_policies_on_quotes():
    qa = VenueQuote("A", 0, ((99, 10, 1),), ((101, 100, 1), (102, 50, 1)))
    qb = VenueQuote("B", 1, ((100, 10, 1),), ((101, 30, 1), (103, 500, 1)))
    p = plan_sweep(BUY, OrdType.LIMIT, TimeInForce.DAY, 170, 102, [qa, qb])
    # Best price first; at 101 A before B (preference); then A's 102.
    assert [(c.venue, c.qty, c.price) for c in p.children] == [("A", 140, 102), ("B", 30, 101)]
    assert p.rest and not p.killed
    p = plan_sweep(BUY, OrdType.LIMIT, TimeInForce.FOK, 200, 102, [qa, qb])
    assert p.killed and not p.children and "180" in p.killed
    p = plan_sweep(SELL, OrdType.MARKET, TimeInForce.IOC, 15, 0, [qa, qb])
    assert [(c.venue, c.qty, c.price) for c in p.children] == [("B", 10, 100), ("A", 5, 99)] and not p.rest
    assert plan_best_price(BUY, 10, 105, [qa, qb]).children[0].venue == "A"          # tie at 101: preference
    assert plan_best_price(SELL, 10, 90, [qa, qb]).children[0].venue == "B"          # best bid 100
    assert Policy.parse("split") is Policy.SWEEP


def _levels_by_definition(side, limit, market, quotes):
    # marketable_levels as specified: every opposite level at an acceptable price, whatever its
    # place in the book, best price first, ties by venue preference.
    out = [(px, qty, q.preference, q.venue) for q in quotes for px, qty, _n in q.opposite(side)
           if qty > 0 and px > 0 and (market or (px <= limit if side == BUY else px >= limit))]
    return sorted(out, key=lambda t: (t[0] if side == BUY else -t[0], t[2]))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([BUY, SELL]), st.integers(90, 110), st.booleans(),
       st.lists(st.tuples(st.sets(st.integers(85, 115), max_size=8), st.sets(st.integers(85, 115), max_size=8),
                          st.integers(0, 50)), min_size=1, max_size=3))
def test_marketable_levels_stops_at_the_limit_and_matches_its_definition(side, limit, market, books):
    # Books as venues show them: bids best (highest) first, asks best (lowest) first.
    quotes = [VenueQuote(f"V{i}", i, tuple((px, qty + px % 3, 1) for px in sorted(bids, reverse=True)),
                         tuple((px, qty + px % 5, 1) for px in sorted(asks)))
              for i, (bids, asks, qty) in enumerate(books)]
    assert marketable_levels(side, limit, market, quotes) == _levels_by_definition(side, limit, market, quotes)
    with pytest.raises(ValueError, match="unknown routing policy"):
        Policy.parse("fastest")


# ------------------------------------------------------------------------------------------------
# Routing decisions on constructed books
# ------------------------------------------------------------------------------------------------
def test_router_is_a_venue_and_passes_other_orders_through():
    async def main():
        async with Rig() as r:
            assert isinstance(r.router, Venue) and r.router.is_up and r.router.lists(AAPL)
            mk = r.quote(r.a, SELL, 100, 23010)
            r.quote(r.b, SELL, 40, 23010)
            r.quote(r.b, BUY, 30, 23000)
            await r.settle()
            # The OMS's own orders at a venue still reach it (the router only takes its children).
            assert [e.kind for e in r.events if e.venue_cl_ord_id == mk] == [K.NEW]
            assert r.router.top_of_book(AAPL) == (23000, 30, 23010, 140)
            assert r.router.depth(AAPL, 5) == ([(23000, 30, 1)], [(23010, 140, 2)])
    run(main())


def test_best_price_goes_to_the_best_offer_ties_by_preference():
    async def main():
        async with Rig("best_price") as r:
            r.quote(r.a, SELL, 100, 23010)
            r.quote(r.b, SELL, 100, 23005)
            await r.settle()
            p = r.parent(BUY, 60, 23010)
            await r.wait(lambda: r.up(K.TRADE), "fill")
            (child,) = r.router.children_of(p)
            assert child["venue"] == "VENUE-B" and child["qty"] == 60
            t = r.up(K.TRADE)[0]
            assert (t.last_qty, t.last_px, t.cum_qty, t.leaves_qty) == (60, 23005, 60, 0)
            r.quote(r.a, SELL, 50, 23005)                  # now a tie at 23005: A preferred
            await r.settle()
            p2 = r.parent(BUY, 30, 23005)
            await r.wait(lambda: len(r.up(K.TRADE)) == 2, "second fill")
            assert r.router.children_of(p2)[0]["venue"] == "VENUE-A"
            # No offer anywhere on the other side: joins the best bid.
            r.quote(r.b, BUY, 10, 22990)
            await r.settle()
            p3 = r.parent(SELL, 10, 23100)
            await r.wait(lambda: r.router.children_of(p3) and r.router.children_of(p3)[0]["cl"], "routed")
            assert r.router.children_of(p3)[0]["venue"] == "VENUE-B"
    run(main())


def test_sweep_across_two_venues_best_price_first_then_remainder_rests():
    async def main():
        async with Rig(rest_venue="VENUE-B") as r:
            r.quote(r.a, SELL, 60, 23001)
            r.quote(r.a, SELL, 40, 23001)
            r.quote(r.a, SELL, 100, 23003)
            r.quote(r.b, SELL, 150, 23002)
            r.quote(r.b, SELL, 500, 23004)                 # beyond the limit: not taken
            await r.settle()
            p = r.parent(BUY, 500, 23003)
            await r.wait(lambda: len(r.router.children_of(p)) == 3, "rest child")
            await r.wait(lambda: r.b.top_of_book(AAPL)[:2] == (23003, 150), "remainder resting at B")
            kids = r.router.children_of(p)
            assert [(k["venue"], k["qty"], k["price"], k["mirror"]) for k in kids] == [
                ("VENUE-A", 200, 23003, False), ("VENUE-B", 150, 23002, False), ("VENUE-B", 150, 23003, True)]
            assert [e.kind for e in r.up()] == [K.NEW, K.TRADE, K.TRADE, K.TRADE, K.TRADE]
            cum, avg = check_aggregates(r.up(), 500)
            assert cum == 350
            assert avg == Decimal(60 * 23001 + 40 * 23001 + 100 * 23003 + 150 * 23002) / 350
            assert [(e.last_qty, e.last_px) for e in r.up(K.TRADE)] == [(60, 23001), (40, 23001), (100, 23003),
                                                                       (150, 23002)]
            assert len({e.exec_id for e in r.up(K.TRADE)}) == 4
            assert all(e.venue_cl_ord_id == p and e.venue_order_id == r.up(K.NEW)[0].venue_order_id for e in r.up())
            # Later a seller hits the resting remainder at B: the parent fills completely.
            r.quote(r.b, SELL, 150, 23003)
            await r.wait(lambda: len(r.up(K.TRADE)) == 5, "last fill")
            last = r.up(K.TRADE)[-1]
            assert (last.cum_qty, last.leaves_qty, last.ord_status) == (500, 0, Status.FILLED)
            assert not r.up(K.CANCELED)
    run(main())


def test_ioc_and_market_remainders_are_cancelled_not_rested():
    async def main():
        async with Rig() as r:
            r.quote(r.a, SELL, 30, 23001)
            r.quote(r.b, SELL, 20, 23002)
            await r.settle()
            p = r.parent(BUY, 100, 23002, tif=TimeInForce.IOC)
            await r.wait(lambda: r.up(K.CANCELED), "IOC remainder")
            c = r.up(K.CANCELED)[0]
            assert (c.cum_qty, c.leaves_qty, c.reason_code) == (50, 0, Reason.IOC_REMAINDER)
            assert len(r.router.children_of(p)) == 2
            r.quote(r.a, BUY, 10, 22990)
            r.quote(r.b, BUY, 10, 22995)
            await r.settle()
            n = len(r.events)
            m = r.parent(SELL, 50, 0, ord_type=OrdType.MARKET, tif=TimeInForce.IOC)
            await r.wait(lambda: len(r.up(K.CANCELED)) == 2, "market remainder")
            mine = [e for e in r.events[n:] if e.venue == "SOR"]
            assert [(e.last_qty, e.last_px) for e in mine if e.kind == K.TRADE] == [(10, 22995), (10, 22990)]
            assert mine[-1].reason_code == Reason.MARKET_REMAINDER and mine[-1].cum_qty == 20
            assert all(not k["mirror"] for k in r.router.children_of(m))
    run(main())


def test_fok_across_venues_fills_or_is_killed_without_a_child():
    async def main():
        async with Rig() as r:
            r.quote(r.a, SELL, 60, 23001)
            r.quote(r.b, SELL, 50, 23002)
            await r.settle()
            killed = r.parent(BUY, 111, 23002, tif=TimeInForce.FOK)
            await r.wait(lambda: r.up(K.CANCELED), "FOK killed")
            assert [e.kind for e in r.up()] == [K.NEW, K.CANCELED]
            assert r.up(K.CANCELED)[0].reason_code == Reason.FOK_UNFILLABLE
            assert r.router.children_of(killed) == [] and r.router.children_sent == 0
            assert sum(lv[1] for lv in r.router.depth(AAPL, 5)[1]) == 110   # nothing taken
            r.parent(BUY, 110, 23002, tif=TimeInForce.FOK)
            await r.wait(lambda: r.up(K.TRADE) and r.up(K.TRADE)[-1].leaves_qty == 0, "FOK filled")
            assert [(e.last_qty, e.last_px) for e in r.up(K.TRADE)] == [(60, 23001), (50, 23002)]
            assert len(r.up(K.CANCELED)) == 1
    run(main())


def test_partial_fills_on_both_venues_aggregate_exactly():
    async def main():
        async with Rig() as r:
            r.quote(r.a, SELL, 70, 23001)
            r.quote(r.b, SELL, 30, 23001)
            r.quote(r.b, SELL, 25, 23002)
            await r.settle()
            p = r.parent(BUY, 400, 23002)                  # takes 125, rests 275 at A
            await r.wait(lambda: r.a.top_of_book(AAPL)[:2] == (23002, 275), "rest at A")
            r.quote(r.a, SELL, 100, 23002)                 # partial fill of the resting child
            r.quote(r.a, SELL, 75, 23000)                  # price improvement? no: the maker (child) price
            await r.wait(lambda: len(r.up(K.TRADE)) == 5, "fills")
            cum, avg = check_aggregates(r.up(), 400)
            assert cum == 300
            fills = [(e.last_qty, e.last_px) for e in r.up(K.TRADE)]
            assert fills == [(70, 23001), (30, 23001), (25, 23002), (100, 23002), (75, 23002)]
            assert avg == Decimal(100 * 23001 + 200 * 23002) / 300
            t = r.up(K.TRADE)[-1]
            assert (t.cum_qty, t.leaves_qty, t.ord_status) == (300, 100, Status.PARTIALLY_FILLED)
            r.router.order_status(p)
            await r.wait(lambda: r.up(K.STATUS), "status")
            st = r.up(K.STATUS)[0]
            assert (st.cum_qty, st.leaves_qty, st.ord_status) == (300, 100, Status.PARTIALLY_FILLED)
    run(main())


# ------------------------------------------------------------------------------------------------
# Cancel and replace of the parent
# ------------------------------------------------------------------------------------------------
def test_cancel_with_sweep_children_in_flight_answers_after_them_and_rests_nothing():
    async def main():
        async with Rig(latency_ns=20_000_000) as r:       # every venue answer 20 ms late
            r.quote(r.a, SELL, 40, 23001)
            r.quote(r.b, SELL, 30, 23002)
            await r.wait(lambda: sum(lv[1] for lv in r.router.depth(AAPL, 5)[1]) == 70, "liquidity")
            p = r.parent(BUY, 300, 23002)
            r.router.cancel_order(p, "P-cancel")           # before any child answered
            await r.settle()
            assert r.up() == []                            # nothing before the children answer
            await r.wait(lambda: r.up(K.CANCELED), "cancel done")
            kinds = [e.kind for e in r.up()]
            assert kinds == [K.NEW, K.TRADE, K.TRADE, K.CANCELED]
            c = r.up(K.CANCELED)[0]
            assert (c.venue_cl_ord_id, c.orig_venue_cl_ord_id, c.cum_qty, c.leaves_qty) == ("P-cancel", p, 70, 0)
            assert len(r.router.children_of(p)) == 2        # no rest child
            trail = [row["event"] for row in r.router.audit(p)]
            assert trail.index("parent_canceled") > max(i for i, e in enumerate(trail) if e.startswith("child_cancel"))
            # The finished parent: cancel and replace are too late, unknown ids are unknown.
            r.router.cancel_order("P-cancel", "again")
            r.router.replace_order("nope", "x", 10, 1)
            await r.wait(lambda: len(r.up()) == 6, "rejects")
            late, unknown = r.up()[-2:]
            assert late.kind == K.CANCEL_REJECTED and late.reason_code == Reason.TOO_LATE
            assert unknown.kind == K.REPLACE_REJECTED and unknown.reason_code == Reason.UNKNOWN_ORDER
    run(main())


async def _two_resting_children(r):
    """A passive parent of 100 resting at A, replaced up to 300: SWEEP routes the added 200 as a
    second child (also at A, the rest venue)."""
    p = r.parent(BUY, 100, 22990)
    await r.wait(lambda: r.up(K.NEW), "ack")
    r.router.replace_order(p, "R1", 300, 22990)
    await r.wait(lambda: r.up(K.REPLACED), "replaced up")
    await r.wait(lambda: len(r.router.children_of(p)) == 2 and all(k["cl"] for k in r.router.children_of(p))
                 and r.a.top_of_book(AAPL)[:2] == (22990, 300), "second child resting")
    return p


def test_replace_up_down_and_price_newest_child_first():
    async def main():
        async with Rig() as r:
            p = await _two_resting_children(r)
            rep = r.up(K.REPLACED)[0]
            assert (rep.venue_cl_ord_id, rep.orig_venue_cl_ord_id, rep.leaves_qty) == ("R1", p, 300)
            # Down to 150: the newest child (200) is cut to 50, the oldest keeps its priority.
            r.router.replace_order("R1", "R2", 150, 22990)
            await r.wait(lambda: len(r.up(K.REPLACED)) == 2, "replaced down")
            assert [(k["qty"], k["done"]) for k in r.router.children_of(p)] == [(100, False), (50, False)]
            assert r.a.depth(AAPL, 1)[0] == [(22990, 150, 2)]
            # Down to 40: newest cancelled, oldest cut to 40.
            r.router.replace_order("R2", "R3", 40, 22990)
            await r.wait(lambda: len(r.up(K.REPLACED)) == 3, "replaced down again")
            assert [(k["qty"], k["done"]) for k in r.router.children_of(p)] == [(40, False), (50, True)]
            # A new price moves the live child.
            r.router.replace_order("R3", "R4", 40, 22995)
            await r.wait(lambda: len(r.up(K.REPLACED)) == 4, "repriced")
            assert r.a.top_of_book(AAPL)[:2] == (22995, 40)
            last = r.up(K.REPLACED)[-1]
            assert (last.venue_cl_ord_id, last.orig_venue_cl_ord_id, last.leaves_qty, last.cum_qty) == ("R4", "R3", 40, 0)
            # The cancel goes to the live child; CANCELED carries the request's id.
            r.router.cancel_order("R4", "C1")
            await r.wait(lambda: r.up(K.CANCELED), "cancelled")
            c = r.up(K.CANCELED)[0]
            assert (c.venue_cl_ord_id, c.orig_venue_cl_ord_id) == ("C1", "R4")
            assert r.a.top_of_book(AAPL)[:2] == (0, 0)
    run(main())


def test_replace_and_cancel_with_child_answers_in_flight():
    async def main():
        async with Rig(latency_ns=15_000_000) as r:
            p = await _two_resting_children(r)
            r.router.replace_order("R1", "R2", 50, 22995)   # cancel newest, cut + reprice oldest
            await asyncio.sleep(0.005)
            assert len(r.up(K.REPLACED)) == 1                # answers still in flight
            await r.wait(lambda: len(r.up(K.REPLACED)) == 2, "replace done")
            trail = r.router.audit(p)
            events = [row["event"] for row in trail]
            last_child = max(i for i, e in enumerate(events) if e in ("child_replaced", "child_canceled"))
            assert events.index("parent_replaced", events.index("parent_replace_requested", 6)) > last_child
            # A second request while one is in progress is refused.
            r.router.cancel_order("R2", "C1")
            r.router.replace_order("R2", "R3", 60, 22995)
            await r.wait(lambda: r.up(K.REPLACE_REJECTED), "refused")
            assert "in progress" in r.up(K.REPLACE_REJECTED)[0].reason
            await r.wait(lambda: r.up(K.CANCELED), "cancel done")
            assert r.up(K.CANCELED)[0].cum_qty == 0
    run(main())


def test_fill_while_cancel_pending_answers_too_late():
    async def main():
        async with Rig(latency_ns=10_000_000) as r:
            p = r.parent(BUY, 100, 22990)
            await r.wait(lambda: r.up(K.NEW), "ack")
            r.quote(r.a, SELL, 100, 22990)                 # fills the child...
            r.router.cancel_order(p, "C1")                 # ...before the cancel reaches it
            await r.wait(lambda: r.up(K.CANCEL_REJECTED), "too late")
            assert r.up(K.TRADE)[0].leaves_qty == 0
            assert r.up(K.CANCEL_REJECTED)[0].reason_code == Reason.TOO_LATE
            assert not r.up(K.CANCELED)
    run(main())


# ------------------------------------------------------------------------------------------------
# Venues down
# ------------------------------------------------------------------------------------------------
def test_venue_down_at_entry_fails_over_or_rejects():
    async def main():
        async with Rig() as r:
            r.quote(r.a, SELL, 100, 23000)                 # the better price, but A goes down
            r.quote(r.b, SELL, 100, 23005)
            await r.settle()
            r.a.set_up(False)
            r.parent(BUY, 150, 23005)
            await r.wait(lambda: len(r.router.children_of(r.up(K.NEW)[0].venue_cl_ord_id if r.up(K.NEW) else "x")) == 2,
                         "sweep at B then rest")
            p = r.up(K.NEW)[0].venue_cl_ord_id
            assert [k["venue"] for k in r.router.children_of(p)] == ["VENUE-B", "VENUE-B"]   # rests at B: A down
            assert r.up(K.TRADE)[0].last_px == 23005
            r.b.set_up(False)
            x = r.parent(BUY, 10, 23005)
            await r.wait(lambda: r.up(K.REJECTED), "rejected")
            rej = r.up(K.REJECTED)[0]
            assert rej.venue_cl_ord_id == x and rej.reason_code == VenueReason.VENUE_DOWN
            assert rej.reason == "venue down: no venue of SOR is up for AAPL (VENUE-A, VENUE-B down)"
        async with Rig("direct") as d:
            d.a.set_up(False)
            d.parent(BUY, 10, 23000)
            await d.wait(lambda: d.up(K.REJECTED), "direct rejected")
            assert d.up(K.REJECTED)[0].reason == "venue down: router SOR routes direct to VENUE-A, which is down"
            d.router.new_order(VenueOrder("Z", MASTER.by_symbol("EUR/USD"), BUY, OrdType.LIMIT, TimeInForce.DAY,
                                          1000, 108000))
            await d.wait(lambda: len(d.up(K.REJECTED)) == 2, "second")
            d.a.set_up(True)
            d.parent(BUY, 10, 23000)
            await d.wait(lambda: d.up(K.NEW), "direct ack")
    run(main())


@pytest.mark.parametrize("drop", [False, True], ids=["events-held", "events-dropped"])
def test_children_at_a_disconnected_venue_are_reconciled_on_reconnect(drop):
    """A child rests at A; A disconnects (the router marks the child unknown); while it is away the
    venue's background flow fills the child; a client cancel meanwhile waits. On reconnect the
    router asks order_status: the fill reaches the parent exactly once (from the held events, or
    from the status when they were dropped), then the pending cancel completes."""
    flow = BackgroundFlow(rate=1.0, seed=3, ladder_levels=3)

    async def main():
        async with Rig(background=flow) as r:
            r.a.set_background(False)                      # no timer: the test steps the flow itself
            await r.settle()
            p = r.parent(BUY, 50, 23000)                   # the mid: best bid at A, crosses nothing
            await r.wait(lambda: r.up(K.NEW), "ack")
            (child,) = r.router.children_of(p)
            assert child["venue"] == "VENUE-A" and child["mirror"]
            oid = int(child["venue_order_id"].rsplit("-", 1)[1])
            book = r.a.order_book(AAPL)
            r.a.set_up(False)
            await r.wait(lambda: r.router.children_of(p)[0]["unknown"], "child unknown")
            r.router.cancel_order(p, "C1")                 # cannot reach A: waits
            steps = 0
            while book.order(oid) is not None and book.order(oid).filled == 0:
                r.a.background_step(AAPL, 1)
                steps += 1
                assert steps < 5000, "background flow never hit the child"
            state = book.order(oid)
            filled = 50 if state is None else state.filled
            await asyncio.sleep(0.05)
            assert r.up(K.TRADE) == [] and r.up(K.CANCELED) == []
            r.a.set_up(True, drop_held_events=drop)
            await r.wait(lambda: r.up(K.CANCELED) or (r.up(K.TRADE) and r.up(K.TRADE)[-1].leaves_qty == 0),
                         "resolved")
            await asyncio.sleep(0.05)
            trades = r.up(K.TRADE)
            assert sum(t.last_qty for t in trades) == filled and all(t.last_px == 23000 for t in trades)
            cum, _ = check_aggregates(r.up(), 50)
            if filled < 50:
                c = r.up(K.CANCELED)[0]
                assert (c.venue_cl_ord_id, c.cum_qty) == ("C1", filled)
            else:
                assert r.up(K.CANCEL_REJECTED)[0].reason_code == Reason.TOO_LATE
            assert not r.router.children_of(p)[0]["unknown"]
            events = [row["event"] for row in r.router.audit(p)]
            assert "child_unknown" in events and "child_reconciled" in events
            assert ("reconcile_fill" in events) == drop
    run(main())


# ------------------------------------------------------------------------------------------------
# Audit trail
# ------------------------------------------------------------------------------------------------
def test_audit_trail_is_durable_and_complete(tmp_path):
    path = str(tmp_path / "audit.db")
    log = SqliteAuditLog(path)

    async def main():
        async with Rig(audit=log, rest_venue="VENUE-B") as r:
            r.quote(r.a, SELL, 100, 23001)
            await r.settle()
            p = r.parent(BUY, 150, 23001)
            await r.wait(lambda: len(r.router.children_of(p)) == 2 and r.b.top_of_book(AAPL)[0] == 23001, "rest")
            rows = r.router.audit(p)
            assert rows == r.router.audit(r.up(K.NEW)[0].venue_order_id)
            by = [(row["event"], row["venue"], row["qty"], row["price"]) for row in rows]
            assert by[:3] == [("parent_new", "", 150, 23001), ("decision", "", 150, 23001),
                              ("child_sent", "VENUE-A", 100, 23001)]
            decision = rows[1]["detail"]
            assert decision["policy"] == "sweep" and decision["up"] == ["VENUE-A", "VENUE-B"]
            assert decision["market"][0] == {"venue": "VENUE-A", "bids": [], "asks": [[23001, 100, 1]]}
            assert decision["children"][0]["why"] == "take 100 displayed on 1 level(s) 23001..23001"
            assert ("child_new", "VENUE-A") in [(e, v) for e, v, _q, _p in by]
            assert ("child_trade", "VENUE-A", 100, 23001) in by
            rest = [row for row in rows if row["event"] == "child_sent"][1]
            assert (rest["venue"], rest["qty"], rest["detail"]["why"]) == ("VENUE-B", 50, "remainder rests at VENUE-B")
            assert all(row["ts"] > 0 and row["router"] == "SOR" for row in rows)
            return p, len(rows)

    p, n = run(main())
    log.close()
    rows = read_audit(path, p)                              # from the file, another connection
    assert len(rows) == n and rows[0]["event"] == "parent_new"


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------
def test_router_config_loader_names_the_key():
    venues = ["VENUE-A", "VENUE-B"]
    (cfg,) = load_routers([{"name": "SOR", "policy": "split", "venues": venues, "rest_venue": "VENUE-B"}], venues)
    assert cfg == RouterConfig("SOR", Policy.SWEEP, ("VENUE-A", "VENUE-B"), "VENUE-B")
    assert load_routers(None, venues) == ()
    bad = [
        ({"name": "SOR", "venues": venues}, "routers[0].policy: required"),
        ({"name": "SOR", "policy": "x", "venues": venues}, "routers[0].policy: unknown routing policy 'x'"),
        ({"name": "SOR", "policy": "sweep", "venues": ["VENUE-C"]}, "routers[0].venues: 'VENUE-C' is not a configured"),
        ({"name": "SOR", "policy": "direct", "venues": venues}, "routers[0].venues: a direct router routes to exactly"),
        ({"name": "SOR", "policy": "sweep", "venues": venues, "rest_venue": "X"}, "routers[0].rest_venue: must be"),
        ({"name": "VENUE-A", "policy": "sweep", "venues": venues}, "routers[0].name: 'VENUE-A' is already"),
        ({"name": "SOR", "policy": "sweep", "venues": venues, "speed": 1}, "routers[0].speed: unknown key"),
        ({"name": "SOR", "policy": "sweep", "venues": []}, "routers[0].venues: required"),
        ({"name": "SOR", "policy": "sweep", "venues": venues, "depth_levels": 0}, "routers[0].depth_levels"),
    ]
    for table, msg in bad:
        with pytest.raises(ValueError, match=re.escape(msg)):
            load_routers([table], venues)
    with pytest.raises(ValueError, match=r"routers\[1\]\.name: router 'SOR' is defined twice"):
        load_routers([{"name": "SOR", "policy": "sweep", "venues": venues}] * 2, venues)
    with pytest.raises(ValueError, match=r"routers\[0\]\.instruments: unknown instrument 'ZZZ'"):
        load_routers([{"name": "SOR", "policy": "sweep", "venues": venues, "instruments": ["ZZZ"]}], venues,
                     known_instruments=[i.key for i in MASTER])
    two = [{"name": "S1", "policy": "sweep", "venues": venues, "instruments": ["AAPL"]},
           {"name": "S2", "policy": "best_price", "venues": venues, "instruments": ["MSFT", "AAPL"]}]
    with pytest.raises(ValueError, match=r"routers\[1\]\.instruments: 'AAPL' is already routed by 'S1'"):
        load_routers(two, venues)
    assert load_routers(two[:1], venues, known_instruments=["AAPL"])[0].instruments == ("AAPL",)
    with pytest.raises(ValueError, match="routers: must be a list"):
        load_routers({"name": "SOR"}, venues)

    async def main():
        clock = SteppingClock()
        a = InProcessVenue("VENUE-A", MASTER, clock)
        b = InProcessVenue("VENUE-B", MASTER, clock)
        router = build_router(cfg, {"VENUE-A": a, "VENUE-B": b}, clock)
        assert router.rest_venue == "VENUE-B" and router.policy is Policy.SWEEP
        assert [v.name for v in router.venues] == venues
        with pytest.raises(ValueError, match="venues not built"):
            build_router(cfg, {"VENUE-A": a}, clock)
        # Bad calls are contract errors, answered at once.
        with pytest.raises(TypeError):
            router.new_order("order")
        with pytest.raises(TypeError):
            SmartRouter("S", [object()])
        with pytest.raises(TypeError, match="VenueOrder.price must be an int"):
            router.new_order(VenueOrder("F1", AAPL, BUY, OrdType.LIMIT, TimeInForce.DAY, 10, 230.0))
        with pytest.raises(ValueError, match="VenueOrder.side must be a Side"):
            router.new_order(VenueOrder("F2", AAPL, 7, OrdType.LIMIT, TimeInForce.DAY, 10, 23000))
        with pytest.raises(TypeError, match="VenueOrder.qty must be an int"):
            router.new_order(VenueOrder("F3", AAPL, BUY, OrdType.LIMIT, TimeInForce.DAY, True, 23000))
        with pytest.raises(TypeError, match="VenueOrder.expire_time must be an int"):
            router.new_order(VenueOrder("F4", AAPL, BUY, OrdType.LIMIT, TimeInForce.DAY, 10, 23000, expire_time=None))
        with pytest.raises(ValueError, match="VenueOrder.tif must be a TimeInForce"):
            router.new_order(VenueOrder("F5", AAPL, BUY, OrdType.LIMIT, 99, 10, 23000))
        with pytest.raises(ValueError, match="venue_cl_ord_id must be a non-empty string"):
            router.new_order(VenueOrder("", AAPL, BUY, OrdType.LIMIT, TimeInForce.DAY, 10, 23000))
        events = []
        router.set_event_sink(events.append)
        router.new_order(VenueOrder("N1", AAPL, BUY, OrdType.LIMIT, TimeInForce.DAY, 10, 23000))  # not started
        await asyncio.sleep(0.01)
        assert events[0].kind == K.REJECTED and events[0].reason == "venue down: SOR is not started"
        await a.start()
        await b.start()
        await router.start()
        router.new_order(VenueOrder("N2", AAPL, BUY, OrdType.LIMIT, TimeInForce.DAY, 0, 23000))
        router.new_order(VenueOrder("N3", AAPL, BUY, OrdType.LIMIT, TimeInForce.DAY, 10, 23000))
        router.new_order(VenueOrder("N3", AAPL, BUY, OrdType.LIMIT, TimeInForce.DAY, 10, 23000))
        router.new_order(VenueOrder("N4", MSFT, BUY, OrdType.LIMIT, TimeInForce.DAY, 7, -5))   # the rest venue refuses
        await asyncio.sleep(0.02)
        rej = {e.venue_cl_ord_id: e for e in events if e.kind == K.REJECTED}
        assert rej["N2"].reason_code == Reason.INVALID_QTY
        assert [e.reason_code for e in events if e.venue_cl_ord_id == "N3" and e.kind == K.REJECTED] == [
            Reason.DUPLICATE_ID]
        assert rej["N4"].reason.startswith("VENUE-B: ") and rej["N4"].reason_code == Reason.INVALID_PRICE
        await router.stop()
        await a.stop()
        await b.stop()
    run(main())


def test_finished_parents_are_forgotten_oldest_first():
    async def main():
        clock = SteppingClock()
        a = InProcessVenue("VENUE-A", MASTER, clock)
        b = InProcessVenue("VENUE-B", MASTER, clock)
        router = SmartRouter("SOR", [a, b], "sweep", clock=clock, max_done_parents=2)
        events = []
        router.set_event_sink(events.append)
        await a.start()
        await b.start()
        await router.start()
        for k in range(5):   # nothing displayed, IOC: sent whole to the preferred venue, cancelled there
            router.new_order(VenueOrder(f"P{k}", AAPL, BUY, OrdType.LIMIT, TimeInForce.IOC, 10, 23000))
        deadline = time.monotonic() + 5
        while len([e for e in events if e.kind == K.CANCELED]) < 5:
            assert time.monotonic() < deadline, events
            await asyncio.sleep(0.002)
        assert all(e.reason_code == Reason.IOC_REMAINDER for e in events if e.kind == K.CANCELED)
        for k in range(5):
            router.order_status(f"P{k}")
        await asyncio.sleep(0.01)
        statuses = [e for e in events if e.kind == K.STATUS]
        assert [s.ord_status for s in statuses] == [Status.REJECTED] * 3 + [Status.CANCELLED] * 2
        assert router.children_of("P0") == [] and len(router.children_of("P4")) == 1
        # A late request about a forgotten parent is "unknown", one about a remembered one "too late".
        router.cancel_order("P0", "c0")
        router.cancel_order("P4", "c4")
        await asyncio.sleep(0.01)
        rej = [e for e in events if e.kind == K.CANCEL_REJECTED]
        assert [r.reason_code for r in rej] == [Reason.UNKNOWN_ORDER, Reason.TOO_LATE]
        await router.stop()
    run(main())


def test_venue_ends_the_resting_child_while_a_replace_is_out():
    async def main():
        async with Rig(latency_ns=10_000_000) as r:
            p = r.parent(BUY, 100, 22990)
            await r.wait(lambda: r.up(K.NEW), "ack")
            r.a.end_of_day()                               # the venue expires the child...
            r.router.replace_order(p, "R1", 100, 22995)    # ...while the client's replace goes out
            await r.wait(lambda: r.up(K.REPLACE_REJECTED), "replace refused")
            await asyncio.sleep(0.03)
            assert [e.kind for e in r.up()] == [K.NEW, K.CANCELED, K.REPLACE_REJECTED]
            c, rr = r.up()[1:]
            assert c.reason_code == Reason.END_OF_DAY and c.venue_cl_ord_id == p
            assert rr.reason_code == Reason.TOO_LATE and rr.venue_cl_ord_id == "R1"
            assert len(r.router.children_of(p)) == 1       # nothing re-routed
    run(main())


def test_replace_up_sweeps_the_added_quantity_and_rests_the_rest_beside_the_old_child():
    async def main():
        async with Rig() as r:
            p = r.parent(BUY, 100, 22990)                  # rests at A
            await r.wait(lambda: r.up(K.NEW), "ack")
            r.quote(r.b, SELL, 50, 23000)
            await r.settle()
            r.router.replace_order(p, "R1", 300, 23000)    # reprice the resting child, add 200
            await r.wait(lambda: len(r.router.children_of(p)) == 3 and r.a.top_of_book(AAPL)[:2] == (23000, 250),
                         "added quantity swept and rested")
            kids = [(k["venue"], k["qty"], k["price"], k["mirror"], k["done"]) for k in r.router.children_of(p)]
            assert kids == [("VENUE-A", 100, 23000, True, False), ("VENUE-B", 50, 23000, False, True),
                            ("VENUE-A", 150, 23000, True, False)]
            assert [e.kind for e in r.up()] == [K.NEW, K.REPLACED, K.TRADE]
            t = r.up(K.TRADE)[0]
            assert (t.last_qty, t.last_px, t.cum_qty, t.leaves_qty) == (50, 23000, 50, 250)
    run(main())


@pytest.mark.parametrize("seed,latency", SEEDS)
def test_random_streams_conserve_quantity(seed, latency):
    """Seeded random streams of other members' offers, routed buy orders (DAY / IOC / FOK), cancels,
    replaces and venue disconnects. Buyers are only the router's parents and sellers only the
    makers, so every unit a maker sold was bought by exactly one parent: the makers' fills (seen
    directly from the venues) must equal the parents' fills (seen through the router), and the
    bids resting at the venues must equal the leaves of the live parents (no orphan child, no
    over-allocation). Each parent's reports must also be well formed."""
    import random
    rng = random.Random(seed)

    async def main():
        async with Rig(rest_venue="VENUE-B", latency_ns=latency) as r:
            venues = [r.a, r.b]
            parents: list[str] = []
            n_rep = itertools.count(1)
            current: dict[str, str] = {}
            for _ in range(150):
                op = rng.random()
                if op < 0.35:
                    r.quote(rng.choice(venues), SELL, rng.randint(1, 10) * 10, 23000 + rng.randint(0, 5))
                elif op < 0.65:
                    tif = rng.choice([TimeInForce.DAY, TimeInForce.DAY, TimeInForce.IOC, TimeInForce.FOK])
                    p = r.parent(BUY, rng.randint(1, 30) * 10, 22998 + rng.randint(0, 7), tif=tif)
                    parents.append(p)
                    current[p] = p
                elif op < 0.78 and parents:
                    p = rng.choice(parents)
                    r.router.cancel_order(current[p], f"{p}-c{next(n_rep)}")
                elif op < 0.93 and parents:
                    p = rng.choice(parents)
                    cum = sum(e.last_qty for e in r.up(K.TRADE) if e.venue_order_id ==
                              next((x.venue_order_id for x in r.up() if x.venue_cl_ord_id == p), None))
                    new = f"{p}-r{next(n_rep)}"
                    r.router.replace_order(current[p], new, cum + rng.randint(1, 30) * 10, 22998 + rng.randint(0, 7))
                    current[p] = new          # if refused, later requests on it are "unknown": fine
                else:
                    v = rng.choice(venues)
                    v.set_up(not v.is_up)
                for _ in range(rng.randint(0, 3)):
                    await asyncio.sleep(0)
                if latency and rng.random() < 0.2:
                    await asyncio.sleep(latency * 1e-9)
            for v in venues:
                v.set_up(True)
            await asyncio.sleep(0.2 + latency * 1e-7)      # watch, reconciliation, last answers

            maker_fills = sum(e.last_qty for e in r.events if e.venue != "SOR" and e.kind == K.TRADE)
            parent_fills = sum(e.last_qty for e in r.up(K.TRADE))
            assert maker_fills == parent_fills and parent_fills > 0
            by_parent: dict[str, list] = {}
            for e in r.up():
                if e.venue_order_id:
                    by_parent.setdefault(e.venue_order_id, []).append(e)
            live_leaves = 0
            for pid, evs in by_parent.items():
                kinds = [e.kind for e in evs]
                assert kinds[0] == K.NEW or kinds[0] in (K.CANCEL_REJECTED, K.REPLACE_REJECTED, K.STATUS), kinds
                cum = 0
                qty = evs[0].leaves_qty + evs[0].cum_qty
                ended = False
                for e in evs:
                    if e.kind == K.TRADE:
                        assert not ended
                        cum += e.last_qty
                        assert e.cum_qty == cum and e.cum_qty + e.leaves_qty == qty, (pid, evs)
                    elif e.kind == K.REPLACED:
                        assert not ended
                        qty = e.cum_qty + e.leaves_qty
                        assert e.cum_qty == cum
                    elif e.kind == K.CANCELED:
                        assert not ended and e.cum_qty == cum
                        ended = True
                    if cum == qty:
                        ended = True
                assert cum <= qty
                kids = r.router.children_of(pid)
                if not ended:
                    live_leaves += qty - cum
                    assert any(not k["done"] for k in kids), (pid, kids)
                else:
                    assert all(k["done"] for k in kids), (pid, kids)
            resting = sum(q for v in venues for _p, q, _n in v.depth(AAPL, 1000)[0])
            assert resting == live_leaves
            return {k.name: len(r.up(k)) for k in (K.NEW, K.TRADE, K.CANCELED, K.REPLACED, K.REJECTED,
                                                      K.CANCEL_REJECTED, K.REPLACE_REJECTED)}, live_leaves
    stats = run(main())
    print(stats)


def test_a_childs_events_go_upstream_in_the_venues_own_delivery_callback():
    # The parent's answer reaches the OMS in the loop turn in which the venue delivers its child's
    # events (the router forwards from inside that callback), as a direct order's answer would:
    # one turn after new_order, never inside it.
    async def main():
        async with Rig() as r:
            r.quote(r.a, SELL, 100, 23001)
            await r.settle()
            r.events.clear()
            p = r.parent(BUY, 100, 23001, tif=TimeInForce.IOC)
            direct = r.quote(r.b, BUY, 10, 22000)              # a direct order at the same time
            assert r.events == []                             # nothing inside the calls
            await asyncio.sleep(0)                            # one turn: the venues' callbacks
            kinds = [(e.venue, e.venue_cl_ord_id, e.kind) for e in r.events]
            assert ("SOR", p, K.NEW) in kinds and ("SOR", p, K.TRADE) in kinds, kinds
            assert ("VENUE-B", direct, K.NEW) in kinds, kinds
            trade = next(e for e in r.up(K.TRADE))
            assert (trade.cum_qty, trade.leaves_qty) == (100, 0)

    run(main())
