"""FixVenue over FIX against InProcessVenue called directly: the same seeded stream of requests
must give the same events (kinds, ids, quantities, prices, statuses, reasons), in the same order.

This is the promise of docs/venue-process.md: the OMS cannot tell a venue behind FIX from an
in-process one. Ids the venue makes up (venue order ids, exec ids) differ by their prefix and are
compared by first appearance.
"""
from __future__ import annotations

import asyncio
import random
import time

import pytest

from crossbook.core import OrdType, Side, STPMode, TimeInForce
from crossbook.model.instruments import DEFAULT_INSTRUMENTS, InstrumentMaster
from crossbook.routing.fix_venue import FixVenue
from crossbook.routing.venue import VenueEvent, VenueEventKind as K, VenueOrder
from crossbook.venues import InProcessVenue
from crossbook.venues.process import build_server, parse_venue_config

pytestmark = pytest.mark.timeout(120)

MASTER = InstrumentMaster.from_config(DEFAULT_INSTRUMENTS)
INSTRUMENTS = [MASTER.by_symbol("AAPL"), MASTER.by_symbol("ESZ6"), MASTER.by_symbol("EUR/USD")]


class Clock:
    def now_ns(self):
        return time.time_ns()


def requests(seed: int, n: int):
    """A seeded stream of venue calls: ("new", VenueOrder) / ("cancel", id, new id) /
    ("replace", id, new id, qty, price) / ("status", id)."""
    rng = random.Random(seed)
    ids: list[tuple[str, object]] = []
    out = []
    for k in range(n):
        r = rng.random()
        if r < 0.55 or not ids:
            inst = rng.choice(INSTRUMENTS)
            mid = inst.reference_ticks
            lot = inst.lot_size
            side = rng.choice((Side.BUY, Side.SELL))
            kind = rng.random()
            ord_type, tif, price, stop = OrdType.LIMIT, TimeInForce.DAY, mid + rng.randint(-4, 4), 0
            if kind < 0.08:
                ord_type, price = OrdType.MARKET, 0
                tif = TimeInForce.IOC
            elif kind < 0.15:
                tif = rng.choice((TimeInForce.IOC, TimeInForce.FOK))
            elif kind < 0.2:
                ord_type, price = OrdType.STOP, 0
                stop = mid + (3 if side == Side.BUY else -3)
            elif kind < 0.25:
                tif = TimeInForce.GTC
            qty = lot * rng.randint(1, 20)
            if rng.random() < 0.03:
                qty += 1 if lot > 1 else 0           # off-lot (EUR/USD)
            cl = f"N{k}" if rng.random() > 0.03 or not ids else ids[rng.randrange(len(ids))][0]   # some reuse
            out.append(("new", VenueOrder(cl, inst, side, ord_type, tif, qty, price, stop_price=stop,
                                          post_only=ord_type == OrdType.LIMIT and rng.random() < 0.1,
                                          display_qty=lot * 2 if rng.random() < 0.05 else 0,
                                          owner=rng.randint(0, 2),
                                          stp=STPMode.CANCEL_TAKER if rng.random() < 0.1 else STPMode.NONE)))
            ids.append((cl, inst))
        elif r < 0.72:
            target, _ = rng.choice(ids) if rng.random() > 0.05 else ("ghost", None)
            out.append(("cancel", target, f"C{k}"))
            ids.append((f"C{k}", None))
        elif r < 0.9:
            target, inst = rng.choice(ids)
            inst = inst or INSTRUMENTS[0]
            qty = inst.lot_size * rng.randint(1, 25)
            out.append(("replace", target, f"R{k}", qty, inst.reference_ticks + rng.randint(-4, 4)))
            ids.append((f"R{k}", inst))
        else:
            out.append(("status", rng.choice(ids)[0] if rng.random() > 0.1 else "ghost"))
    return out


def apply(venue, req) -> str:
    """Send one request; returns the id its answer carries."""
    if req[0] == "new":
        venue.new_order(req[1])
        return req[1].venue_cl_ord_id
    if req[0] == "cancel":
        venue.cancel_order(req[1], req[2])
        return req[2]
    if req[0] == "replace":
        venue.replace_order(req[1], req[2], req[3], req[4])
        return req[2]
    venue.order_status(req[1])
    return req[1]


def normalise(events: list[VenueEvent]) -> list[tuple]:
    ids: dict[str, int] = {}
    out = []
    for e in events:
        oid = ids.setdefault(e.venue_order_id, len(ids)) if e.venue_order_id else -1
        out.append((e.kind.name, e.venue_cl_ord_id, e.orig_venue_cl_ord_id, oid, e.last_qty, e.last_px,
                    e.leaves_qty, e.cum_qty, e.ord_status, e.reason_code, e.reason, bool(e.exec_id)))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_requests_same_events(seed):
    stream = requests(seed, 350)

    async def main():
        direct = InProcessVenue("VENUE-A", MASTER, Clock())
        direct_events: list[VenueEvent] = []
        direct.set_event_sink(direct_events.append)
        await direct.start()

        doc = {"venue": {"name": "VENUE-A", "port": 0},
               "sessions": [{"comp_id": "CROSSBOOK", "reason_codes": True}]}
        srv = build_server(parse_venue_config(doc))
        await srv.start()
        fv = FixVenue("VENUE-A", MASTER, host="127.0.0.1", port=srv.port, sender_comp_id="CROSSBOOK",
                      target_comp_id="VENUE-A", md_depth=0)
        fix_events: list[VenueEvent] = []
        fv.set_event_sink(fix_events.append)
        await fv.start()
        try:
            assert await fv.wait_up(10)
            for req in stream:
                apply(direct, req)
                await asyncio.sleep(0)
                before = len(fix_events)
                answer_id = apply(fv, req)
                # Pace on the answer, so both sides see the same history before the next request.
                deadline = time.monotonic() + 5
                while not any(e.venue_cl_ord_id == answer_id or e.orig_venue_cl_ord_id == answer_id
                              for e in fix_events[before:]):
                    assert time.monotonic() < deadline, f"no answer to {req}"
                    await asyncio.sleep(0.0005)
            await asyncio.sleep(0.2)
            for _ in range(5):
                await asyncio.sleep(0)
            a, b = normalise(direct_events), normalise(fix_events)
            for i, (x, y) in enumerate(zip(a, b)):
                if x != y:
                    window = "\n".join(f"  {j}: {p}\n  {j}: {q}" for j, (p, q) in
                                       enumerate(zip(a[i - 6:i + 3], b[i - 6:i + 3]), i - 6))
                    raise AssertionError(f"event {i} differs (direct, then fix):\n{window}")
            assert len(a) == len(b)
            kinds = {e[0] for e in a}
            # The stream exercised the whole vocabulary.
            assert {"NEW", "TRADE", "CANCELED", "REPLACED", "REJECTED", "CANCEL_REJECTED", "REPLACE_REJECTED",
                    "STATUS"} <= kinds
        finally:
            await fv.stop()
            await srv.stop()
            await direct.stop()
    asyncio.run(main())
