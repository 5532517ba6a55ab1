"""The router reads a venue's market data once per book change, not once per order
(SmartRouter._quotes keeps each venue's VenueQuote with the venue's ``book_version`` counter).

Differential: whatever happens to the books (orders, cancels, replaces, fills, background flow,
expiry, end of day, cancel-all, the router's own children), the cached quotes equal a fresh read
of every venue after every step, so the router's decisions (pure functions of the quotes) are
the same as without the cache. FixVenue's counter follows its market data messages."""
from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossbook.core import OrdType, Side, TimeInForce
from crossbook.model.instruments import DEFAULT_INSTRUMENTS, InstrumentMaster
from crossbook.routing.policies import VenueQuote
from crossbook.routing.router import SmartRouter
from crossbook.routing.venue import VenueOrder
from crossbook.venues import BackgroundFlow, InProcessVenue
from clocks import SteppingClock

pytestmark = pytest.mark.timeout(120)

MASTER = InstrumentMaster.from_config(DEFAULT_INSTRUMENTS)
AAPL = MASTER.by_symbol("AAPL")
MSFT = MASTER.by_symbol("MSFT")
REF = AAPL.reference_ticks
LOT = AAPL.lot_size


def fresh_quotes(router: SmartRouter, inst, venues) -> list[VenueQuote]:
    """What _quotes read before the cache: every venue's depth, now."""
    out = []
    for v in venues:
        bids, asks = v.depth(inst, router.depth_levels)
        out.append(VenueQuote(v.name, router._pref[v.name], tuple(bids), tuple(asks)))
    return out


venue_ix = st.integers(0, 1)
side = st.sampled_from([Side.BUY, Side.SELL])
offset = st.integers(-4, 4)
lots = st.integers(1, 6)
OPS = st.one_of(
    st.tuples(st.just("limit"), venue_ix, side, offset, lots,
              st.sampled_from([TimeInForce.DAY, TimeInForce.IOC, TimeInForce.GTD])),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
    st.tuples(st.just("replace"), st.integers(0, 30), lots, offset),
    st.tuples(st.just("background"), st.integers(1, 40)),
    st.tuples(st.just("expire"), venue_ix),
    st.tuples(st.just("end_of_day"), venue_ix),
    st.tuples(st.just("cancel_all"), venue_ix),
    st.tuples(st.just("route"), side, offset, lots, st.sampled_from([TimeInForce.DAY, TimeInForce.IOC])),
    st.tuples(st.just("deliver")),
    st.tuples(st.just("other_instrument"), venue_ix, side, lots),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=1, max_size=40))
def test_cached_quotes_equal_a_fresh_read_after_every_change(ops):
    async def main():
        clock = SteppingClock()
        flow = BackgroundFlow(rate=1.0, seed=7, ladder_levels=3)
        # tick_s=60: background flow and expiry only when the test says so (deterministic).
        a = InProcessVenue("VENUE-A", MASTER, clock, background=flow, tick_s=60)
        b = InProcessVenue("VENUE-B", MASTER, clock, tick_s=60)
        venues = [a, b]
        router = SmartRouter("SOR", venues, "sweep", clock=clock, watch_s=60, depth_levels=3)
        router.set_event_sink(lambda ev: None)
        for v in venues:
            await v.start()
        await router.start()
        ids = itertools.count(1)
        mine: list[tuple[InProcessVenue, str]] = []   # orders sent to the venues directly

        def check():
            for inst in (AAPL, MSFT):
                assert router._quotes(inst, venues) == fresh_quotes(router, inst, venues)

        check()
        for op in ops:
            kind = op[0]
            if kind == "limit":
                _, vi, sd, off, n, tif = op
                cl = f"D{next(ids)}"
                expire = clock.t + 5_000 if tif == TimeInForce.GTD else 0
                venues[vi].new_order(VenueOrder(cl, AAPL, sd, OrdType.LIMIT, tif, n * LOT, REF + off,
                                                expire_time=expire))
                mine.append((venues[vi], cl))
            elif kind == "cancel" and mine:
                v, cl = mine[op[1] % len(mine)]
                v.cancel_order(cl, f"C{next(ids)}")
            elif kind == "replace" and mine:
                v, cl = mine[op[1] % len(mine)]
                new = f"R{next(ids)}"
                v.replace_order(cl, new, op[2] * LOT, REF + op[3])
                mine.append((v, new))
            elif kind == "background":
                a.background_step(AAPL, op[1])
            elif kind == "expire":
                venues[op[1]].expire(clock.t + 10_000)
            elif kind == "end_of_day":
                venues[op[1]].end_of_day()
            elif kind == "cancel_all":
                venues[op[1]].cancel_all()
            elif kind == "route":
                _, sd, off, n, tif = op
                router.new_order(VenueOrder(f"P{next(ids)}", AAPL, sd, OrdType.LIMIT, tif, n * LOT, REF + off))
            elif kind == "deliver":
                for _ in range(3):   # events, and the router's reactions (remainders resting)
                    await asyncio.sleep(0)
            elif kind == "other_instrument":
                _, vi, sd, n = op
                venues[vi].new_order(VenueOrder(f"M{next(ids)}", MSFT, sd, OrdType.LIMIT, TimeInForce.DAY,
                                                n * MSFT.lot_size, MSFT.reference_ticks))
            check()
        await router.stop()
        for v in venues:
            await v.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_book_version_moves_with_the_book_and_a_hit_reads_nothing():
    async def main():
        clock = SteppingClock()
        a = InProcessVenue("VENUE-A", MASTER, clock, tick_s=60)
        await a.start()
        router = SmartRouter("SOR", [a], "best_price", clock=clock, watch_s=60)
        router.set_event_sink(lambda ev: None)
        await router.start()
        v0 = a.book_version(AAPL)
        a.new_order(VenueOrder("s1", AAPL, Side.SELL, OrdType.LIMIT, TimeInForce.DAY, LOT, REF + 1))
        assert a.book_version(AAPL) > v0
        assert a.book_version(MSFT) == 0              # another book: unchanged
        assert a.book_version("AAPL") == -1           # not an Instrument: not listed
        reads = []
        depth = a.depth
        a.depth = lambda inst, levels=10: reads.append(inst.key) or depth(inst, levels)
        first = router._quotes(AAPL, [a])
        assert router._quotes(AAPL, [a]) is not first and router._quotes(AAPL, [a]) == first
        assert reads == ["AAPL"]                     # read once: the book did not change since
        a.cancel_order("s1", "s1c")
        assert router._quotes(AAPL, [a])[0].asks == ()
        assert reads == ["AAPL", "AAPL"]
        await router.stop()
        await a.stop()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_fix_venue_book_version_follows_its_market_data(tmp_path, venue_proc):
    from test_fix_venue import Recorder, venue_config

    vp = venue_proc(venue_config(tmp_path))

    async def main():
        recorder = Recorder(vp.port, tmp_path, md_depth=3)
        fv = recorder.venue
        # (listing key, its version) after every market data message of a current
        # subscription. Installed before the logon, so the snapshots are seen too; the venue
        # subscribes to every listed instrument, so the messages about AAPL are picked out:
        # another instrument's snapshot leaves AAPL's counter where it was, rightly.
        seen = []
        for name in ("_on_snapshot", "_on_incremental"):
            handler = getattr(fv, name)

            def probe(m, handler=handler):
                inst = fv._md_req.get(m.get(262, b""))
                handler(m)
                if inst is not None:
                    seen.append((inst.key, fv.book_version(inst)))
            setattr(fv, name, probe)
        async with recorder as r:
            router = SmartRouter("SOR", [fv], "best_price", watch_s=60)
            router.set_event_sink(lambda ev: None)
            await router.start()
            # The book is empty before its snapshot too: wait for the snapshot itself.
            await r.wait(lambda: any(key == AAPL.key for key, _ in seen), what="AAPL snapshot")
            assert fv.top_of_book(AAPL) == (0, 0, 0, 0)
            assert router._quotes(AAPL, [fv]) == fresh_quotes(router, AAPL, [fv])
            r.order(Side.SELL, 10, 23010)
            await r.wait(lambda: fv.top_of_book(AAPL)[2:] == (23010, 10), what="ask")
            assert router._quotes(AAPL, [fv]) == fresh_quotes(router, AAPL, [fv])
            b = r.order(Side.BUY, 5, 22990)
            await r.wait(lambda: fv.top_of_book(AAPL)[:2] == (22990, 5), what="bid")
            assert router._quotes(AAPL, [fv]) == fresh_quotes(router, AAPL, [fv])
            fv.cancel_order(b, "b-c")
            await r.wait(lambda: fv.top_of_book(AAPL)[:2] == (0, 0), what="bid gone")
            assert router._quotes(AAPL, [fv]) == fresh_quotes(router, AAPL, [fv])
            # Every market data message moved its book's counter; equal counters never read differently.
            aapl = [v for key, v in seen if key == AAPL.key]
            assert len(aapl) >= 4 and aapl == sorted(set(aapl))   # snapshot, ask, bid, bid gone
            for key in {key for key, _ in seen}:
                versions = [v for k, v in seen if k == key]
                assert versions == sorted(set(versions)), (key, versions)
            before = fv.book_version(AAPL)
            fv._set_down("test: disconnected")      # the books are dropped: they read empty now
            assert fv.book_version(AAPL) > before and fv.depth(AAPL, 10) == ([], [])
            await router.stop()
    from test_fix_venue import run
    run(main())
