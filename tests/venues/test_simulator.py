"""InProcessVenue on a real asyncio loop: exchange answers, delivery rules, background flow, knobs."""
from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from crossbook.core import OrdType, Reason, Side, Status, STPMode, TimeInForce
from crossbook.core.kernels import FlowMix
from crossbook.model.instruments import DEFAULT_INSTRUMENTS, InstrumentMaster
from crossbook.routing.venue import VenueEvent, VenueEventKind as K, VenueOrder, VenueReason
from crossbook.venues import BACKGROUND_ID_BASE, BackgroundFlow, InProcessVenue

MASTER = InstrumentMaster.from_config(DEFAULT_INSTRUMENTS)
AAPL = MASTER.by_symbol("AAPL")
ES = MASTER.by_symbol("ESZ6")
FX = MASTER.by_symbol("EUR/USD")
T0 = 1_790_000_000_000_000_000


class ManualClock:
    def __init__(self, t: int = T0):
        self.t = t

    def now_ns(self) -> int:
        return self.t


class Harness:
    """A started venue whose sink records every event."""

    def __init__(self, **kw):
        self.clock = ManualClock()
        self.venue = InProcessVenue("VENUE-A", MASTER, self.clock, **kw)
        self.events: list[VenueEvent] = []
        self.venue.set_event_sink(self.events.append)
        self._ids = itertools.count(1)

    async def __aenter__(self):
        await self.venue.start()
        return self

    async def __aexit__(self, *exc):
        await self.venue.stop()

    def order(self, side=Side.BUY, qty=100, price=23000, *, inst=AAPL, ord_type=OrdType.LIMIT, tif=TimeInForce.DAY,
              cl=None, **kw) -> str:
        cl = cl or f"c{next(self._ids)}"
        self.venue.new_order(VenueOrder(cl, inst, side, ord_type, tif, qty, price, **kw))
        return cl

    async def settle(self) -> list[VenueEvent]:
        """Let queued events be delivered; return and clear them."""
        for _ in range(5):
            await asyncio.sleep(0)
        out, self.events[:] = list(self.events), []
        return out


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def kinds(events):
    return [(e.kind, e.venue_cl_ord_id) for e in events]


# ------------------------------------------------------------------------------------------------
# Acks, fills, partial fills
# ------------------------------------------------------------------------------------------------

def test_ack_then_fill_at_the_makers_price():
    async def main():
        async with Harness() as h:
            sell = h.order(Side.SELL, 100, 23010)
            assert h.events == []  # nothing delivered inside new_order
            (ack,) = await h.settle()
            assert (ack.kind, ack.venue_cl_ord_id, ack.leaves_qty, ack.cum_qty, ack.ord_status) == (
                K.NEW, sell, 100, 0, Status.RESTING)
            assert ack.venue_order_id.startswith("VENUE-A-") and ack.venue == "VENUE-A" and ack.ts == T0
            buy = h.order(Side.BUY, 100, 23020)
            ev = await h.settle()
            assert kinds(ev) == [(K.NEW, buy), (K.TRADE, sell), (K.TRADE, buy)]
            for e in ev[1:]:
                assert (e.last_qty, e.last_px, e.cum_qty, e.leaves_qty, e.ord_status) == (
                    100, 23010, 100, 0, Status.FILLED)
            assert ev[1].exec_id != ev[2].exec_id and ev[1].exec_id
            assert ev[1].venue_order_id == ack.venue_order_id != ev[2].venue_order_id
    run(main())


def test_partial_fill_then_rest_then_complete():
    async def main():
        async with Harness() as h:
            s1 = h.order(Side.SELL, 30, 23010)
            s2 = h.order(Side.SELL, 50, 23011)
            await h.settle()
            b = h.order(Side.BUY, 100, 23011)
            ev = await h.settle()
            mine = [e for e in ev if e.venue_cl_ord_id == b]
            assert [(e.kind, e.last_qty, e.last_px, e.cum_qty, e.leaves_qty, e.ord_status) for e in mine] == [
                (K.NEW, 0, 0, 0, 100, Status.RESTING),
                (K.TRADE, 30, 23010, 30, 70, Status.PARTIALLY_FILLED),
                (K.TRADE, 50, 23011, 80, 20, Status.PARTIALLY_FILLED)]
            assert {e.venue_cl_ord_id for e in ev if e.kind == K.TRADE} == {s1, s2, b}
            assert h.venue.top_of_book(AAPL) == (23011, 20, 0, 0)
            h.order(Side.SELL, 20, 23000)
            ev = await h.settle()
            last = [e for e in ev if e.venue_cl_ord_id == b][-1]
            assert (last.kind, last.last_px, last.cum_qty, last.leaves_qty, last.ord_status) == (
                K.TRADE, 23011, 100, 0, Status.FILLED)
    run(main())


def test_exec_ids_unique_and_order_ids_from_a_disjoint_range():
    async def main():
        async with Harness(background=BackgroundFlow(seed=3)) as h:
            for _ in range(40):
                h.order(Side.BUY, 10, 23005)
                h.order(Side.SELL, 10, 22995)
            for _ in range(20):
                h.venue.background_step(AAPL, 50)
            ev = await h.settle()
            trades = [e for e in ev if e.kind == K.TRADE]
            assert len(trades) >= 40
            assert len({e.exec_id for e in trades}) == len(trades)
            book_ids = {int(e.venue_order_id.rsplit("-", 1)[1]) for e in ev}
            assert max(book_ids) < BACKGROUND_ID_BASE
            # every event is about an order the OMS sent
            assert {e.venue_cl_ord_id for e in ev} <= {f"c{i}" for i in range(1, 81)}
    run(main())


# ------------------------------------------------------------------------------------------------
# Cancels
# ------------------------------------------------------------------------------------------------

def test_cancel_and_cancel_rejects():
    async def main():
        async with Harness() as h:
            o = h.order(Side.BUY, 100, 22990)
            await h.settle()
            h.venue.cancel_order(o, "x1")
            assert h.events == []
            (ev,) = await h.settle()
            assert (ev.kind, ev.venue_cl_ord_id, ev.orig_venue_cl_ord_id, ev.reason_code, ev.leaves_qty,
                    ev.ord_status) == (
                K.CANCELED, "x1", o, Reason.USER_CANCEL, 0, Status.CANCELLED)
            assert ev.reason == "cancelled on request"
            assert h.venue.top_of_book(AAPL) == (0, 0, 0, 0)
            h.venue.cancel_order(o, "x2")        # already cancelled
            h.venue.cancel_order("nope", "x3")   # unknown
            f = h.order(Side.SELL, 10, 23000)
            h.order(Side.BUY, 10, 23000)
            h.venue.cancel_order(f, "x4")        # filled
            h.venue.cancel_order("c99", "x1")    # unknown (and a used id)
            ev = await h.settle()
            rej = [e for e in ev if e.kind == K.CANCEL_REJECTED]
            assert [(e.venue_cl_ord_id, e.orig_venue_cl_ord_id, e.reason_code) for e in rej] == [
                ("x2", o, Reason.TOO_LATE), ("x3", "nope", Reason.UNKNOWN_ORDER), ("x4", f, Reason.TOO_LATE),
                ("x1", "c99", Reason.UNKNOWN_ORDER)]
            assert rej[0].reason.startswith("too late to cancel")
            assert rej[2].reason == "too late to cancel: order already filled"
            assert rej[2].cum_qty == 10 and rej[2].ord_status == Status.FILLED
            assert rej[1].reason == "unknown order nope" and rej[1].venue_order_id == ""
            live = h.order(Side.BUY, 10, 22000)
            h.venue.cancel_order(live, f)        # the cancel's own id is already used
            ev = await h.settle()
            assert (ev[-1].kind, ev[-1].reason_code) == (K.CANCEL_REJECTED, Reason.DUPLICATE_ID)
            assert h.venue.top_of_book(AAPL)[0] == 22000
            with pytest.raises(ValueError):
                h.venue.cancel_order(live, "")
    run(main())


@pytest.mark.parametrize("tif,ord_type,price,qty,reason", [
    (TimeInForce.IOC, OrdType.LIMIT, 23010, 100, Reason.IOC_REMAINDER),
    (TimeInForce.DAY, OrdType.MARKET, 0, 100, Reason.MARKET_REMAINDER),
    (TimeInForce.FOK, OrdType.LIMIT, 23010, 100, Reason.FOK_UNFILLABLE),
])
def test_unsolicited_remainder_cancels(tif, ord_type, price, qty, reason):
    async def main():
        async with Harness() as h:
            h.order(Side.SELL, 40, 23005)
            await h.settle()
            b = h.order(Side.BUY, qty, price, tif=tif, ord_type=ord_type)
            ev = [e for e in await h.settle() if e.venue_cl_ord_id == b]
            filled = 0 if reason == Reason.FOK_UNFILLABLE else 40
            assert ev[0].kind == K.NEW and ev[-1].kind == K.CANCELED
            assert (ev[-1].reason_code, ev[-1].cum_qty, ev[-1].leaves_qty) == (reason, filled, 0)
            assert ev[-1].reason and ev[-1].ord_status == Status.CANCELLED
            assert sum(e.last_qty for e in ev if e.kind == K.TRADE) == filled
    run(main())


def test_self_trade_prevention_cancels_with_reason():
    async def main():
        async with Harness() as h:
            maker = h.order(Side.SELL, 10, 23000, owner=7)
            taker = h.order(Side.BUY, 10, 23000, owner=7, stp=STPMode.CANCEL_MAKER)
            ev = await h.settle()
            assert (ev[-2].kind, ev[-2].venue_cl_ord_id, ev[-2].reason_code) == (K.NEW, taker, Reason.NONE)
            assert (ev[-1].kind, ev[-1].venue_cl_ord_id, ev[-1].reason_code) == (K.CANCELED, maker, Reason.STP_MAKER)
            t2 = h.order(Side.SELL, 10, 23000, owner=7, stp=STPMode.CANCEL_TAKER)
            ev = await h.settle()
            assert kinds(ev) == [(K.NEW, t2), (K.CANCELED, t2)] and ev[-1].reason_code == Reason.STP_TAKER
    run(main())


# ------------------------------------------------------------------------------------------------
# Replace
# ------------------------------------------------------------------------------------------------

def test_replace_down_keeps_priority_replace_up_loses_it():
    async def main():
        async with Harness() as h:
            a = h.order(Side.BUY, 100, 23000)
            b = h.order(Side.BUY, 100, 23000)
            await h.settle()
            h.venue.replace_order(a, "a2", 60, 23000)        # qty down, same price: keeps its place
            (ev,) = await h.settle()
            assert (ev.kind, ev.venue_cl_ord_id, ev.orig_venue_cl_ord_id, ev.leaves_qty, ev.cum_qty, ev.ord_status) == (
                K.REPLACED, "a2", a, 60, 0, Status.RESTING)
            h.order(Side.SELL, 10, 23000)
            ev = await h.settle()
            assert [e.venue_cl_ord_id for e in ev if e.kind == K.TRADE][0] == "a2"
            h.venue.replace_order(b, "b2", 150, 23000)       # qty up: goes to the back
            await h.settle()
            h.order(Side.SELL, 10, 23000)
            ev = await h.settle()
            assert [e.venue_cl_ord_id for e in ev if e.kind == K.TRADE][0] == "a2"
            # the venue order id is stable along the chain; the old id still reaches the order
            ids = {e.venue_order_id for e in ev if e.venue_cl_ord_id == "a2"}
            h.venue.order_status(a)
            (st,) = await h.settle()
            assert st.venue_order_id in ids and st.venue_cl_ord_id == "a2" and st.cum_qty == 20 and st.leaves_qty == 40
    run(main())


def test_replace_that_crosses_trades_and_replace_to_filled():
    async def main():
        async with Harness() as h:
            s = h.order(Side.SELL, 50, 23010)
            b = h.order(Side.BUY, 100, 23000)
            await h.settle()
            h.venue.replace_order(b, "b2", 100, 23010)       # price up through the ask: re-enters and trades
            ev = await h.settle()
            assert kinds(ev) == [(K.REPLACED, "b2"), (K.TRADE, s), (K.TRADE, "b2")]
            assert (ev[0].leaves_qty, ev[2].cum_qty, ev[2].leaves_qty) == (100, 50, 50)
            h.venue.replace_order("b2", "b3", 50, 23010)     # down to the filled qty: done
            ev = await h.settle()
            assert kinds(ev) == [(K.REPLACED, "b3")]
            assert (ev[0].leaves_qty, ev[0].cum_qty, ev[0].ord_status) == (0, 50, Status.FILLED)
            assert h.venue.top_of_book(AAPL) == (0, 0, 0, 0)
            h.venue.replace_order("b3", "b4", 80, 23010)
            (rej,) = await h.settle()
            assert (rej.kind, rej.reason_code, rej.orig_venue_cl_ord_id) == (K.REPLACE_REJECTED, Reason.TOO_LATE, "b3")
            assert rej.reason == "too late to replace: order already filled"
    run(main())


def test_replace_rejects():
    async def main():
        async with Harness() as h:
            h.order(Side.SELL, 10, 23010)
            p = h.order(Side.BUY, 10, 23000, post_only=True)
            await h.settle()
            h.venue.replace_order(p, "p2", 10, 23010)        # post-only moved onto the ask
            h.venue.replace_order("zz", "z2", 10, 23010)     # unknown
            h.venue.replace_order(p, "c1", 10, 23000)        # new id already used
            h.venue.replace_order(p, "p3", 0, 23000)         # bad qty (the book's answer)
            h.venue.replace_order(p, "p4", 10, -5)           # bad price
            ev = await h.settle()
            assert [(e.kind, e.venue_cl_ord_id, e.reason_code) for e in ev] == [
                (K.REPLACE_REJECTED, "p2", Reason.POST_ONLY_WOULD_MATCH),
                (K.REPLACE_REJECTED, "z2", Reason.UNKNOWN_ORDER),
                (K.REPLACE_REJECTED, "c1", Reason.DUPLICATE_ID), (K.REPLACE_REJECTED, "p3", Reason.INVALID_QTY),
                (K.REPLACE_REJECTED, "p4", Reason.INVALID_PRICE)]
            assert all(e.orig_venue_cl_ord_id in (p, "zz") for e in ev)
            assert ev[0].reason == "post-only order would match on entry" and ev[0].leaves_qty == 10
            assert h.venue.top_of_book(AAPL) == (23000, 10, 23010, 10)  # unchanged
            h.venue.replace_order(p, "p5", 5, 23000)       # and the chain still works with its old id
            (ok,) = await h.settle()
            assert (ok.kind, ok.leaves_qty) == (K.REPLACED, 5)
    run(main())


# ------------------------------------------------------------------------------------------------
# Rejects
# ------------------------------------------------------------------------------------------------

def test_new_order_rejects_carry_reason_and_code():
    async def main():
        async with Harness() as h:
            h.order(Side.SELL, 10, 23010, cl="s")
            cases = [
                (dict(qty=0), Reason.INVALID_QTY),
                (dict(price=0), Reason.INVALID_PRICE),
                (dict(ord_type=OrdType.STOP, price=0), Reason.INVALID_STOP_PRICE),
                (dict(display_qty=200), Reason.INVALID_DISPLAY_QTY),
                (dict(post_only=True, tif=TimeInForce.IOC), Reason.INVALID_POST_ONLY),
                (dict(post_only=True, price=23010), Reason.POST_ONLY_WOULD_MATCH),
                (dict(tif=TimeInForce.GTD), Reason.INVALID_EXPIRE_TIME),
                (dict(cl="s"), Reason.DUPLICATE_ID),
                (dict(inst=FX, qty=1500, price=108000), VenueReason.INVALID_LOT),
            ]
            for kw, _ in cases:
                h.order(**kw)
            ev = (await h.settle())[1:]
            assert [(e.kind, e.reason_code) for e in ev] == [(K.REJECTED, code) for _, code in cases]
            assert all(e.reason and e.venue_order_id == "" and e.ord_status == Status.REJECTED for e in ev)
            assert ev[-1].reason == "quantity 1500 is not a multiple of the lot size 1000 for EUR/USD"
            assert ev[-2].reason == "duplicate venue_cl_ord_id s"
            assert h.venue.top_of_book(AAPL) == (0, 0, 23010, 10)
            with pytest.raises(TypeError):
                h.venue.new_order("not an order")
            with pytest.raises(ValueError):
                h.venue.new_order(VenueOrder("", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 1, 1))
            with pytest.raises(TypeError):          # a broken contract (float price) is an exception, not an event
                h.order(price=230.0)
            assert await h.settle() == []
    run(main())


def test_not_listed_and_not_started_and_down():
    async def main():
        other = InstrumentMaster.from_config([
            {"symbol": "ZZZ", "asset_class": "equity", "tick_size": "0.01", "venues": ["VENUE-B"]},
        ]).by_symbol("ZZZ")
        h = Harness()
        h.order()                               # before start: down
        async with h:
            h.order(inst=other)
            ev = await h.settle()
            assert [(e.kind, e.reason_code) for e in ev] == [(K.REJECTED, VenueReason.VENUE_DOWN),
                                                            (K.REJECTED, VenueReason.NOT_LISTED)]
            assert ev[0].reason == "venue down: VENUE-A is not started"
            assert ev[1].reason == "ZZZ is not listed on VENUE-A"
            assert not h.venue.lists(other) and h.venue.lists(AAPL)
            assert h.venue.top_of_book(other) is None and h.venue.depth(other, 5) == ([], [])
            assert h.venue.is_up
        assert not h.venue.is_up
        h.order()
        h.venue.cancel_order("c1", "k1")
        ev = await h.settle()
        assert [(e.kind, e.reason) for e in ev] == [(K.REJECTED, "venue down: VENUE-A is not started"),
                                                    (K.CANCEL_REJECTED, "venue down: VENUE-A is not started")]
    run(main())


# ------------------------------------------------------------------------------------------------
# Stops and icebergs
# ------------------------------------------------------------------------------------------------

def test_stop_triggers_then_trades():
    async def main():
        async with Harness() as h:
            h.order(Side.SELL, 10, 23000)
            h.order(Side.BUY, 10, 23000)                     # last trade 23000
            h.order(Side.SELL, 50, 23020)
            stop = h.order(Side.BUY, 20, 0, ord_type=OrdType.STOP, stop_price=23010)
            ev = await h.settle()
            assert ev[-1].kind == K.NEW and ev[-1].venue_cl_ord_id == stop
            assert h.venue.order_book(AAPL).is_pending_stop(1 + 3)
            h.order(Side.SELL, 5, 23010)
            h.order(Side.BUY, 5, 23010)                      # trades at 23010: the stop triggers
            ev = [e for e in await h.settle() if e.venue_cl_ord_id == stop]
            assert [(e.kind, e.last_qty, e.last_px) for e in ev] == [(K.STOP_TRIGGERED, 0, 0), (K.TRADE, 20, 23020)]
            assert ev[-1].ord_status == Status.FILLED
    run(main())


def test_iceberg_shows_only_its_slice():
    async def main():
        async with Harness() as h:
            h.order(Side.SELL, 100, 23010, display_qty=10)
            await h.settle()
            bids, asks = h.venue.depth(AAPL, 5)
            assert bids == [] and asks == [(23010, 10, 1)]
            b = h.order(Side.BUY, 35, 23010)
            ev = [e for e in await h.settle() if e.venue_cl_ord_id == b]
            assert sum(e.last_qty for e in ev if e.kind == K.TRADE) == 35
            assert h.venue.top_of_book(AAPL)[2:] == (23010, 5)
    run(main())


# ------------------------------------------------------------------------------------------------
# Delivery rules
# ------------------------------------------------------------------------------------------------

def test_events_never_reentrant_and_in_order():
    """A sink that reacts to every ack by sending another order: each event arrives only after
    the call that caused it returned, and events arrive in the order the venue produced them."""
    async def main():
        h = Harness()
        depth = 0
        seen: list[tuple] = []
        returned: set[str] = set()

        def sink(ev):
            nonlocal depth
            assert depth == 0, "sink re-entered"
            assert ev.venue_cl_ord_id in returned or ev.orig_venue_cl_ord_id in returned, \
                "event before the call returned"
            depth += 1
            seen.append((ev.kind, ev.venue_cl_ord_id))
            if ev.kind == K.NEW and len(returned) < 7:
                cl = f"r{len(returned) - 1}"
                h.venue.new_order(VenueOrder(cl, AAPL, Side.SELL, OrdType.LIMIT, TimeInForce.IOC, 10, 23000))
                returned.add(cl)
            depth -= 1

        h.venue.set_event_sink(sink)
        async with h:
            h.order(Side.BUY, 100, 23000, cl="root")
            returned.add("root")
            for _ in range(30):
                await asyncio.sleep(0)
        assert seen[0] == (K.NEW, "root")
        # per order: NEW, then the trade(s); the resting buy's trades come in the order the sells arrived
        root_trades = [i for i, (k, cl) in enumerate(seen) if cl == "root" and k == K.TRADE]
        assert len(root_trades) == 6
        for n in range(6):
            cl = f"r{n}"
            mine = [k for k, c in seen if c == cl]
            assert mine == [K.NEW, K.TRADE], (cl, mine)
        order_of_sells = [cl for k, cl in seen if k == K.NEW and cl != "root"]
        assert order_of_sells == [f"r{n}" for n in range(6)]
    run(main())


def test_events_wait_for_the_sink_and_a_failing_sink_does_not_stop_delivery():
    async def main():
        clock = ManualClock()
        venue = InProcessVenue("VENUE-A", MASTER, clock)
        await venue.start()
        venue.new_order(VenueOrder("a", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 1, 100))
        venue.new_order(VenueOrder("b", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 1, 100))
        await asyncio.sleep(0.01)
        got = []

        def sink(ev):
            got.append(ev.venue_cl_ord_id)
            if ev.venue_cl_ord_id == "a":
                raise RuntimeError("OMS bug")

        venue.set_event_sink(sink)
        for _ in range(5):
            await asyncio.sleep(0)
        assert got == ["a", "b"]
        await venue.stop()
        with pytest.raises(TypeError):
            venue.set_event_sink(None)
    run(main())


def test_latency_knob_delays_every_event():
    async def main():
        async with Harness(latency_ns=60_000_000) as h:
            arrivals = []
            h.venue.set_event_sink(lambda ev: arrivals.append((time.monotonic(), ev.kind)))
            sent = time.monotonic()
            h.order(Side.SELL, 10, 23000)
            h.order(Side.BUY, 10, 23000)
            await asyncio.sleep(0.01)
            assert arrivals == []                            # not after a few loop turns
            for _ in range(100):
                if len(arrivals) == 4:
                    break
                await asyncio.sleep(0.01)
            assert [k for _, k in arrivals] == [K.NEW, K.NEW, K.TRADE, K.TRADE]
            assert min(t for t, _ in arrivals) - sent >= 0.06 - 1e-9    # never earlier than the latency
            h.venue.latency_ns = 0
            h.order(Side.SELL, 10, 23000)
            for _ in range(3):
                await asyncio.sleep(0)
            assert len(arrivals) == 5
            with pytest.raises(ValueError):
                h.venue.latency_ns = -1
    run(main())


def test_reject_ratio_is_seeded():
    async def rejected(seed, ratio, n=300):
        async with Harness(reject_ratio=ratio, seed=seed) as h:
            for i in range(n):
                h.order(Side.BUY, 1, 100 + i)
            ev = await h.settle()
            rej = [e for e in ev if e.kind == K.REJECTED]
            assert all(e.reason_code == VenueReason.SIMULATED_REJECT and "reject ratio" in e.reason for e in rej)
            assert len(ev) == n
            return [e.venue_cl_ord_id for e in rej]

    async def main():
        a = await rejected(11, 0.3)
        assert a == await rejected(11, 0.3)
        assert a != await rejected(12, 0.3)
        assert 45 <= len(a) <= 135
        assert await rejected(11, 0.0) == []
        assert len(await rejected(11, 1.0)) == 300
    run(main())


def test_constructor_and_knob_validation():
    with pytest.raises(ValueError):
        InProcessVenue("", MASTER, ManualClock())
    with pytest.raises(TypeError):
        InProcessVenue("V", [AAPL], ManualClock())
    with pytest.raises(TypeError):
        InProcessVenue("V", MASTER, object())
    with pytest.raises(ValueError):
        InProcessVenue("V", MASTER, ManualClock(), reject_ratio=1.5)
    with pytest.raises(ValueError):
        InProcessVenue("V", MASTER, ManualClock(), latency_ns=1.5)
    with pytest.raises(TypeError):
        InProcessVenue("V", MASTER, ManualClock(), background={"rate": 5})
    with pytest.raises(ValueError):
        InProcessVenue("V", MASTER, ManualClock(), tick_s=0)
    no_ref = InstrumentMaster.from_config([
        {"symbol": "NOREF", "asset_class": "equity", "tick_size": "0.01", "venues": ["V"]}])
    with pytest.raises(ValueError, match="needs a reference_price for NOREF"):
        InProcessVenue("V", no_ref, ManualClock(), background=BackgroundFlow())
    v = InProcessVenue("V", no_ref, ManualClock())
    with pytest.raises(ValueError, match="no background flow"):
        v.set_background(True)
    with pytest.raises(ValueError, match="no background flow"):
        v.background_step(no_ref.by_symbol("NOREF"), 1)


# ------------------------------------------------------------------------------------------------
# Venue down / reconnect, status
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("drop", [False, True])
def test_disconnect_holds_or_drops_events_and_status_reconciles(drop):
    async def main():
        async with Harness(background=BackgroundFlow(seed=9)) as h:
            bid_px = h.venue.top_of_book(AAPL)[0]
            b = h.order(Side.BUY, 50, bid_px + 1)
            await h.settle()
            h.venue.set_up(False)
            assert not h.venue.is_up
            n = h.order(Side.BUY, 5, 23000)
            h.venue.cancel_order(b, "x")
            h.venue.replace_order(b, "y", 40, bid_px + 1)
            ev = await h.settle()
            assert [(e.kind, e.reason_code) for e in ev] == [
                (K.REJECTED, VenueReason.VENUE_DOWN), (K.CANCEL_REJECTED, VenueReason.VENUE_DOWN),
                (K.REPLACE_REJECTED, VenueReason.VENUE_DOWN)]
            assert ev[0].venue_cl_ord_id == n and ev[0].reason == "venue down: VENUE-A is disconnected"
            # the exchange keeps trading while we are away: background flow sells into our bid
            book = h.venue.order_book(AAPL)
            for _ in range(400):
                h.venue.background_step(AAPL, 20)
                if book.order(1) is None or book.order(1).filled:
                    break
            filled = 50 if book.order(1) is None else book.order(1).filled
            assert filled > 0
            h.venue.order_status(b)
            assert await h.settle() == []                    # held while down
            h.venue.set_up(True, drop_held_events=drop)
            ev = await h.settle()
            if drop:
                assert ev == []
            else:
                assert {e.kind for e in ev[:-1]} == {K.TRADE} and sum(e.last_qty for e in ev[:-1]) == filled
                assert (ev[-1].kind, ev[-1].cum_qty) == (K.STATUS, filled)
            h.venue.order_status(b)                          # what reconciliation asks after a reconnect
            (st,) = await h.settle()
            assert (st.kind, st.venue_cl_ord_id, st.cum_qty, st.leaves_qty) == (K.STATUS, b, filled, 50 - filled)
            assert st.ord_status == (Status.FILLED if filled == 50 else Status.PARTIALLY_FILLED)
    run(main())


def test_status_of_unknown_and_finished_orders():
    async def main():
        async with Harness() as h:
            s = h.order(Side.SELL, 10, 23000)
            h.order(Side.BUY, 10, 23000)
            await h.settle()
            h.venue.order_status(s)
            h.venue.order_status("ghost")
            st, ghost = await h.settle()
            assert (st.kind, st.cum_qty, st.leaves_qty, st.ord_status) == (K.STATUS, 10, 0, Status.FILLED)
            assert (ghost.kind, ghost.reason_code, ghost.ord_status, ghost.venue_order_id) == (
                K.STATUS, Reason.UNKNOWN_ORDER, Status.REJECTED, "")
    run(main())


def test_cancel_all_by_owner():
    async def main():
        async with Harness() as h:
            a = h.order(Side.BUY, 10, 22000, owner=1)
            h.order(Side.BUY, 10, 22001, owner=2)
            c = h.order(Side.SELL, 1, 24100, owner=1, inst=ES)
            await h.settle()
            assert h.venue.cancel_all(owner=1) == 2
            ev = await h.settle()
            assert sorted(e.venue_cl_ord_id for e in ev) == sorted([a, c])
            assert all(e.kind == K.CANCELED and e.reason_code == Reason.USER_CANCEL for e in ev)
            assert h.venue.cancel_all() == 1
    run(main())


def test_old_done_orders_are_forgotten_beyond_the_bound():
    async def main():
        async with Harness(max_done_orders=2) as h:
            ids = [h.order(Side.BUY, 1, 100, tif=TimeInForce.IOC) for _ in range(4)]
            await h.settle()
            h.venue.order_status(ids[0])
            h.venue.order_status(ids[3])
            old, new = await h.settle()
            assert old.reason_code == Reason.UNKNOWN_ORDER and new.ord_status == Status.CANCELLED
    run(main())


# ------------------------------------------------------------------------------------------------
# End of day and expiry
# ------------------------------------------------------------------------------------------------

def test_end_of_day_cancels_day_orders_and_reopens_two_sided():
    async def main():
        async with Harness(background=BackgroundFlow(seed=1, rate=1.0)) as h:
            day = h.order(Side.BUY, 10, 22000)
            gtc = h.order(Side.BUY, 10, 21000, tif=TimeInForce.GTC)
            stop = h.order(Side.SELL, 10, 0, ord_type=OrdType.STOP, stop_price=20000)
            await h.settle()
            assert h.venue.end_of_day() == 2
            ev = await h.settle()
            assert sorted((e.venue_cl_ord_id, e.kind, e.reason_code) for e in ev) == sorted([
                (day, K.CANCELED, Reason.END_OF_DAY), (stop, K.CANCELED, Reason.END_OF_DAY)])
            assert ev[0].reason == "day order cancelled at end of day"
            book = h.venue.order_book(AAPL)
            assert 2 in book                                     # the GTC order rests on
            bid_px, _, ask_px, _ = h.venue.top_of_book(AAPL)
            assert 0 < bid_px < ask_px                           # fresh ladder
            h.venue.cancel_order(gtc, "x")
            assert (await h.settle())[0].kind == K.CANCELED
    run(main())


def test_expire_and_automatic_expiry():
    async def main():
        async with Harness(tick_s=0.01) as h:
            t = h.clock.t
            g1 = h.order(Side.BUY, 10, 22000, tif=TimeInForce.GTD, expire_time=t + 1_000)
            g2 = h.order(Side.BUY, 10, 22001, tif=TimeInForce.GTD, expire_time=t + 5_000)
            await h.settle()
            with pytest.raises(TypeError):
                h.venue.expire(1.5)
            assert h.venue.expire(t + 1_000) == 1
            (ev,) = await h.settle()
            assert (ev.venue_cl_ord_id, ev.kind, ev.reason_code, ev.reason) == (
                g1, K.CANCELED, Reason.EXPIRED, "good-till-date order expired")
            h.clock.t = t + 5_000                                # the housekeeping task notices by itself
            for _ in range(200):
                await asyncio.sleep(0.01)
                if h.events:
                    break
            assert [(e.venue_cl_ord_id, e.reason_code) for e in h.events] == [(g2, Reason.EXPIRED)]
    run(main())


# ------------------------------------------------------------------------------------------------
# Background liquidity
# ------------------------------------------------------------------------------------------------

def test_background_book_is_two_sided_at_start_and_a_hand_order_trades():
    async def main():
        async with Harness(background=BackgroundFlow(seed=5)) as h:
            for inst in MASTER:
                bid_px, bid_qty, ask_px, ask_qty = h.venue.top_of_book(inst)
                assert bid_qty > 0 and ask_qty > 0 and bid_px < inst.reference_ticks < ask_px
                assert ask_px - bid_px == 2
                assert bid_qty % inst.lot_size == 0
            ask_px = h.venue.top_of_book(ES)[2]
            b = h.order(Side.BUY, 1, ask_px, inst=ES)
            ev = await h.settle()
            assert [(e.kind, e.last_px) for e in ev] == [(K.NEW, 0), (K.TRADE, ask_px)]
            assert ev[1].venue_cl_ord_id == b
    run(main())


def test_background_flow_fills_a_resting_oms_order():
    async def main():
        async with Harness(background=BackgroundFlow(seed=9)) as h:
            bid_px = h.venue.top_of_book(AAPL)[0]
            b = h.order(Side.BUY, 50, bid_px + 1)             # best bid, inside the spread
            await h.settle()
            trades = []
            for _ in range(400):
                h.venue.background_step(AAPL, 20)
                trades += [e for e in await h.settle() if e.kind == K.TRADE]
                if trades and trades[-1].leaves_qty == 0:
                    break
            assert trades and all(e.venue_cl_ord_id == b and e.last_px == bid_px + 1 for e in trades)
            assert sum(e.last_qty for e in trades) == 50 and trades[-1].ord_status == Status.FILLED
            assert [e.cum_qty for e in trades] == sorted(e.cum_qty for e in trades)
    run(main())


def test_background_is_deterministic_per_seed_and_differs_per_instrument():
    async def book_after(seed):
        async with Harness(background=BackgroundFlow(seed=seed)) as h:
            for _ in range(20):
                h.venue.background_step(AAPL, 100)
                h.venue.background_step(MASTER.by_symbol("MSFT"), 100)
            return (h.venue.depth(AAPL, 20), h.venue.order_book(AAPL).last_price,
                    h.venue.order_book(MASTER.by_symbol("MSFT")).last_price - 42000)

    async def main():
        a = await book_after(4)
        assert a == await book_after(4)
        assert a != await book_after(5)
        assert a[1] - 23000 != a[2]                           # instruments get unrelated streams
    run(main())


def test_background_book_stays_bounded_and_sane():
    async def main():
        mix = FlowMix(passive=0.8, cancel=0.1, aggressive=0.05, market=0.05)
        flow = BackgroundFlow(seed=2, max_resting=120, mix=mix)
        async with Harness(background=flow) as h:
            book = h.venue.order_book(FX)
            peak = 0
            for _ in range(300):
                h.venue.background_step(FX, 50)                # 15,000 commands, mostly adds
                peak = max(peak, h.venue.background_resting(FX))
                bid, ask = book.best_bid(), book.best_ask()
                if bid and ask:
                    assert bid[0] < ask[0]                     # never crossed
            assert peak <= 120
            assert h.venue.background_commands(FX) == 15_000
            bid_px, bid_qty, ask_px, ask_qty = h.venue.top_of_book(FX)
            assert bid_qty and ask_qty                         # still two-sided
    run(main())


def test_background_runs_on_its_timer_with_bounded_work_per_tick():
    async def main():
        flow = BackgroundFlow(seed=1, rate=1_000_000.0, max_per_tick=40)
        async with Harness(background=flow, tick_s=0.01) as h:
            loop = asyncio.get_running_loop()
            start = loop.time()
            for _ in range(300):
                await asyncio.sleep(0.01)
                if h.venue.background_commands(AAPL) >= 200:
                    break
            elapsed = loop.time() - start
            done = h.venue.background_commands(AAPL)
            assert done >= 200
            assert done <= 40 * (elapsed / 0.01 + 2)           # at most max_per_tick per tick
            h.venue.set_background(False)
            await asyncio.sleep(0.03)
            frozen = h.venue.background_commands(AAPL)
            await asyncio.sleep(0.05)
            assert h.venue.background_commands(AAPL) == frozen
    run(main())


# ------------------------------------------------------------------------------------------------
# BackgroundFlow configuration
# ------------------------------------------------------------------------------------------------

def test_background_flow_from_config():
    f = BackgroundFlow.from_config({"rate": 50, "seed": 3, "enabled": False, "mix": {"passive": 1, "cancel": 1}})
    assert (f.rate, f.seed, f.enabled, f.mix.passive, f.mix.market) == (50, 3, False, 1, 0.05)
    assert BackgroundFlow.from_config(None) == BackgroundFlow()


@pytest.mark.parametrize("table,text", [
    ({"rate": 0}, "venues\\[0\\].background.rate: .*> 0"),
    ({"rate": "fast"}, "venues\\[0\\].background.rate"),
    ({"seed": -1}, "venues\\[0\\].background.seed"),
    ({"seed": 1.5}, "venues\\[0\\].background.seed"),
    ({"enabled": "yes"}, "venues\\[0\\].background.enabled"),
    ({"max_resting": 0}, "venues\\[0\\].background.max_resting"),
    ({"volatility": float("nan")}, "venues\\[0\\].background.volatility"),
    ({"mean_lots": 0.5}, "venues\\[0\\].background.mean_lots"),
    ({"speed": 1}, "venues\\[0\\].background.speed: unknown key"),
    ({"mix": {"passive": -1}}, "venues\\[0\\].background.mix"),
    ({"mix": {"lunch": 1}}, "venues\\[0\\].background.mix"),
    ({"mix": 3}, "venues\\[0\\].background.mix"),
    ([1], "venues\\[0\\].background: must be a table"),
])
def test_background_flow_config_errors_name_the_key(table, text):
    with pytest.raises(ValueError, match=text):
        BackgroundFlow.from_config(table, where="venues[0].background")


def test_background_orders_never_trigger_the_omss_self_trade_prevention():
    async def main():
        async with Harness(background=BackgroundFlow(seed=8, mix=FlowMix.passive_only(), ladder_levels=0)) as h:
            h.venue.background_step(AAPL, 400)                # generator orders only (owners 1..8 in the raw stream)
            for owner in range(0, 10):
                h.order(Side.BUY, 40, 23100, owner=owner, stp=STPMode.CANCEL_TAKER, tif=TimeInForce.IOC)
                h.order(Side.SELL, 40, 22900, owner=owner, stp=STPMode.CANCEL_TAKER, tif=TimeInForce.IOC)
            ev = await h.settle()
            assert sum(e.last_qty for e in ev if e.kind == K.TRADE) == 800
            assert not [e for e in ev if e.reason_code in (Reason.STP_TAKER, Reason.STP_MAKER)]
    run(main())


def test_book_listener_hears_which_books_changed_once_per_iteration():
    async def main():
        async with Harness(background=BackgroundFlow(seed=1, rate=1.0)) as h:
            heard: list[frozenset] = []
            h.venue.add_book_listener(heard.append)
            h.order(Side.BUY, 10, 22000)
            h.order(Side.BUY, 1, 24000, inst=ES)
            h.order(Side.BUY, 0, 22000)                        # rejected: no book change
            assert heard == []                                 # never from inside the call
            await h.settle()
            assert heard == [frozenset({"AAPL", "ESZ6"})]
            h.venue.cancel_order("c1", "x")
            h.venue.background_step(FX, 10)
            await h.settle()
            assert heard[1:] == [frozenset({"AAPL", "EUR/USD"})]
            h.order(Side.BUY, 0, 22000)
            await h.settle()
            assert len(heard) == 2
            h.venue.remove_book_listener(heard.append)
            h.order(Side.BUY, 10, 22000)
            await h.settle()
            assert len(heard) == 2
            with pytest.raises(TypeError):
                h.venue.add_book_listener("no")
    run(main())


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_sub_millisecond_latency_is_never_delivered_early(loop_kind):
    """Loops wait in whole milliseconds and uvloop's loop.time() is cached per iteration: the
    venue still never delivers an event before its latency has passed."""
    async def main():
        async with Harness(latency_ns=300_000) as h:
            got = asyncio.Event()
            h.venue.set_event_sink(lambda ev: got.set())
            for i in range(20):
                got.clear()
                sent = time.monotonic()
                h.order(Side.BUY, 1, 100, tif=TimeInForce.IOC)
                await got.wait()
                assert time.monotonic() - sent >= 0.0003
    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(asyncio.wait_for(main(), 30))
    else:
        run(main())


def test_background_switched_on_later_seeds_its_ladder_then():
    async def main():
        async with Harness(background=BackgroundFlow(seed=1, enabled=False)) as h:
            assert not h.venue.background_enabled
            assert h.venue.top_of_book(AAPL) == (0, 0, 0, 0)
            h.venue.set_background(True)
            assert h.venue.background_enabled
            bid_px, _, ask_px, _ = h.venue.top_of_book(AAPL)
            assert (bid_px, ask_px) == (22999, 23001)
            h.venue.set_background(False)
            h.venue.set_background(True)                       # once only
            assert h.venue.depth(AAPL, 10)[0][0] == (22999, 20, 1)
    run(main())


def test_restore_order_after_an_oms_restart():
    async def main():
        async with Harness() as h:
            h.order(Side.SELL, 10, 23050)
            await h.settle()
            h.venue.restore_order(VenueOrder("old1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.GTC, 100, 23000), 30)
            assert h.events == []
            (st,) = await h.settle()
            assert (st.kind, st.venue_cl_ord_id, st.cum_qty, st.leaves_qty, st.ord_status) == (
                K.STATUS, "old1", 30, 70, Status.PARTIALLY_FILLED)
            assert st.venue_order_id
            h.order(Side.SELL, 70, 23000)
            ev = [e for e in await h.settle() if e.venue_cl_ord_id == "old1"]
            assert [(e.kind, e.last_qty, e.cum_qty, e.leaves_qty, e.ord_status) for e in ev] == [
                (K.TRADE, 70, 100, 0, Status.FILLED)]
            # restoring one that crosses trades at once; an iceberg's display is kept only if below leaves
            h.venue.restore_order(VenueOrder("old2", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 20, 23050,
                                             display_qty=15), 10)
            ev = await h.settle()
            assert [(e.kind, e.venue_cl_ord_id, e.cum_qty) for e in ev if e.venue_cl_ord_id == "old2"] == [
                (K.STATUS, "old2", 10), (K.TRADE, "old2", 20)]
            other = InstrumentMaster.from_config([
                {"symbol": "ZZZ", "asset_class": "equity", "tick_size": "0.01", "venues": ["VENUE-B"]},
            ]).by_symbol("ZZZ")
            h.venue.restore_order(VenueOrder("old3", other, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 20, 100), 0)
            h.order(Side.BUY, 10, 22990)
            h.venue.restore_order(VenueOrder("old4", AAPL, Side.SELL, OrdType.LIMIT, TimeInForce.DAY, 20, 22990,
                                             post_only=True), 0)
            ev = await h.settle()
            assert [(e.kind, e.venue_cl_ord_id, e.reason_code) for e in ev] == [
                (K.CANCELED, "old3", VenueReason.NOT_LISTED), (K.NEW, "c3", Reason.NONE),
                (K.CANCELED, "old4", Reason.POST_ONLY_WOULD_MATCH)]
            assert ev[0].reason == "not restored: ZZZ is not listed on VENUE-A"
            with pytest.raises(ValueError, match="already known"):
                h.venue.restore_order(VenueOrder("old1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 20, 100), 0)
            for bad in (-1, 20, 1.5):
                with pytest.raises(ValueError, match="cum_qty"):
                    order = VenueOrder("new", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 20, 100)
                    h.venue.restore_order(order, bad)
    run(main())


# ------------------------------------------------------------------------------------------------
# Random streams: the event stream of every order is consistent with the book
# ------------------------------------------------------------------------------------------------

class _Model:
    """What the OMS can know from the events alone, checked event by event."""

    TERMINAL = {int(Status.FILLED), int(Status.CANCELLED)}

    def __init__(self):
        self.orders: dict[str, dict] = {}   # root id -> state
        self.chain: dict[str, str] = {}     # any id of a chain -> root id
        self.exec_ids: set[str] = set()

    def sent(self, cl, qty, is_stop=False):
        self.orders[cl] = {"qty": qty, "cum": 0, "done": False, "acked": False, "voi": None, "stop": is_stop}
        self.chain[cl] = cl

    def on_event(self, ev: VenueEvent):
        root = self.chain.get(ev.venue_cl_ord_id) or self.chain.get(ev.orig_venue_cl_ord_id)
        assert root is not None, f"event for an id never sent: {ev}"
        o = self.orders[root]
        k = ev.kind
        if k == K.REJECTED:
            assert not o["acked"] and not o["done"]
            o["done"] = True
            return
        if k in (K.CANCEL_REJECTED, K.REPLACE_REJECTED):
            if ev.reason_code not in (Reason.UNKNOWN_ORDER, VenueReason.VENUE_DOWN):
                assert ev.cum_qty == o["cum"]
            return
        if k == K.STATUS:
            assert (ev.cum_qty, ev.leaves_qty == 0 or not o["done"]) == (o["cum"], True)
            return
        assert not o["done"], f"{k.name} after the order ended: {ev}"
        if k == K.NEW:
            assert not o["acked"] and ev.cum_qty == 0 and ev.leaves_qty == o["qty"]
            o["acked"], o["voi"] = True, ev.venue_order_id
            return
        assert o["acked"] and ev.venue_order_id == o["voi"]
        if k == K.TRADE:
            assert ev.exec_id not in self.exec_ids and ev.last_qty > 0 and ev.last_px > 0
            self.exec_ids.add(ev.exec_id)
            o["cum"] += ev.last_qty
            assert (ev.cum_qty, ev.leaves_qty) == (o["cum"], o["qty"] - o["cum"]) and ev.leaves_qty >= 0
            o["done"] = ev.leaves_qty == 0
            assert (ev.ord_status == Status.FILLED) == o["done"]
        elif k == K.CANCELED:
            assert ev.cum_qty == o["cum"] and ev.leaves_qty == 0 and ev.ord_status == Status.CANCELLED
            o["done"] = True
        elif k == K.REPLACED:
            self.chain[ev.venue_cl_ord_id] = root
            assert ev.cum_qty == o["cum"]
            o["qty"] = ev.cum_qty + ev.leaves_qty
            o["done"] = ev.leaves_qty == 0
        elif k == K.STOP_TRIGGERED:
            assert o["stop"] and ev.cum_qty == o["cum"]
            o["stop"] = False  # triggers once


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_streams_keep_events_and_books_consistent(seed):
    import random

    async def main():
        rnd = random.Random(seed)
        model = _Model()
        async with Harness(background=BackgroundFlow(seed=seed, max_resting=150), reject_ratio=0.05, seed=seed) as h:
            h.venue.set_event_sink(model.on_event)
            insts = [AAPL, ES, FX]
            sent: list[tuple[str, object]] = []
            for step in range(2500):
                r = rnd.random()
                if r < 0.45 or not sent:
                    inst = rnd.choice(insts)
                    mid = h.venue.order_book(inst).last_price or inst.reference_ticks
                    lot = inst.lot_size
                    qty = lot * rnd.randint(1, 60)
                    ord_type = rnd.choice([OrdType.LIMIT] * 6 + [OrdType.MARKET, OrdType.STOP, OrdType.STOP_LIMIT])
                    tif = rnd.choice([TimeInForce.DAY] * 4 + [TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK,
                                                              TimeInForce.GTD])
                    side = rnd.choice([Side.BUY, Side.SELL])
                    sign = 1 if side == Side.BUY else -1
                    price = 0 if ord_type in (OrdType.MARKET, OrdType.STOP) else mid + sign * rnd.randint(-8, 4)
                    stop = mid - sign * rnd.randint(-3, 6) if ord_type in (OrdType.STOP, OrdType.STOP_LIMIT) else 0
                    display = lot * rnd.randint(1, 5) if rnd.random() < 0.15 else 0
                    cl = f"o{step}"
                    model.sent(cl, qty, ord_type in (OrdType.STOP, OrdType.STOP_LIMIT))
                    h.venue.new_order(VenueOrder(
                        cl, inst, side, ord_type, tif, qty, price, stop_price=stop, display_qty=display,
                        post_only=rnd.random() < 0.1, expire_time=h.clock.t + rnd.randint(1, 10) * 1000
                        if tif == TimeInForce.GTD else 0, owner=rnd.randint(1, 4),
                        stp=rnd.choice(list(STPMode))))
                    sent.append((cl, inst))
                elif r < 0.6:
                    cl, _ = rnd.choice(sent)
                    h.venue.cancel_order(cl, f"x{step}")
                    model.chain[f"x{step}"] = cl
                elif r < 0.75:
                    cl, inst = rnd.choice(sent)
                    # any id of the chain reaches the order; use the newest order or replace id
                    newest = next(c for c, root in reversed(model.chain.items()) if root == cl and c[0] in "oy")
                    mid = h.venue.order_book(inst).last_price or inst.reference_ticks
                    new_qty, new_px = inst.lot_size * rnd.randint(1, 60), mid + rnd.randint(-5, 5)
                    h.venue.replace_order(newest, f"y{step}", new_qty, new_px)
                    model.chain[f"y{step}"] = cl
                elif r < 0.93:
                    h.venue.background_step(rnd.choice(insts), rnd.randint(1, 40))
                elif r < 0.96:
                    h.venue.order_status(rnd.choice(sent)[0])
                elif r < 0.97:
                    h.venue.end_of_day()
                else:
                    h.clock.t += 2000
                    h.venue.expire(h.clock.t)
                if step % 50 == 0:
                    await asyncio.sleep(0)
            for _ in range(5):
                await asyncio.sleep(0)
            # the venue's books agree with what the events told
            for cl, o in model.orders.items():
                if o["voi"] is None:
                    continue
                oid = int(o["voi"].rsplit("-", 1)[1])
                inst = dict(sent)[cl]
                state = h.venue.order_book(inst).order(oid)
                if o["done"]:
                    assert state is None, (cl, o, state)
                else:
                    assert state is not None and state.filled == o["cum"] and state.qty == o["qty"], (cl, o, state)
            assert len(model.exec_ids) > 100
            for inst in insts:
                assert h.venue.background_resting(inst) <= 150
    run(main())
