"""The router behind the unchanged OrderManager: the client's order is one order with exact
ExecutionReports while its children trade on two in-process venues.

The manager accepts an ExDestination only when the instrument lists it, so the instruments here
also list "SOR" (the server's config wiring, docs/routing.md, does this properly); nothing in the
manager is changed or patched.
"""
from __future__ import annotations

import asyncio
import time
from decimal import Decimal

from crossbook.app.config import load_config
from crossbook.app.server import SystemClock, build_risk
from crossbook.core import OrdType, Side, TimeInForce
from crossbook.model.enums import ExecType, OrderState, OrdStatus
from crossbook.model.instruments import DEFAULT_INSTRUMENTS, InstrumentMaster
from crossbook.model.orders import CancelOrder, NewOrder, ReplaceOrder
from crossbook.oms.manager import OrderManager, avg_px
from crossbook.oms.reports import ExecReport
from crossbook.routing.router import SmartRouter
from crossbook.routing.venue import VenueOrder
from crossbook.venues import InProcessVenue


def _master_with_router() -> InstrumentMaster:
    entries = []
    for e in DEFAULT_INSTRUMENTS:
        e = dict(e)
        e["venues"] = list(e["venues"]) + ["SOR"]
        entries.append(e)
    return InstrumentMaster.from_config(entries)


async def _wait(pred, what, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.002)


def test_routed_order_through_the_order_manager():
    async def main():
        cfg = load_config(None, {"venues": [{"name": "VENUE-A"}, {"name": "VENUE-B"}]})
        master = _master_with_router()
        assert [i.key for i in master] == [i.key for i in cfg.instruments]   # same indices as the risk engine
        aapl = master.by_symbol("AAPL")
        clock = SystemClock()
        a = InProcessVenue("VENUE-A", master, clock)
        b = InProcessVenue("VENUE-B", master, clock)
        router = SmartRouter("SOR", [a, b], "sweep", rest_venue="VENUE-A", clock=clock)
        m = OrderManager(instruments=master, venues={"VENUE-A": a, "VENUE-B": b, "SOR": router},
                         risk=build_risk(cfg), directory=cfg.directory, clock=clock)
        sent = []
        m.set_output_sink(sent.append)
        await a.start()
        await b.start()
        await router.start()                                     # after the manager: takes the venues' sinks
        # Other members' offers on both venues (sent straight to the venues).
        for venue, qty, px in ((a, 30, 23001), (b, 50, 23002), (a, 20, 23003)):
            venue.new_order(VenueOrder(f"mk{px}", aapl, Side.SELL, OrdType.LIMIT, TimeInForce.DAY, qty, px,
                                       owner=99))
        await asyncio.sleep(0.01)

        def reports(cl=None):
            return [o.execution for o in sent if isinstance(o, ExecReport)]

        m.new_order(NewOrder(session="FIRM1", begin_string="FIX.4.4", cl_ord_id="c1", firm="FIRM1", account="ACC1",
                             instrument_index=aapl.index, side=int(Side.BUY), ord_type=int(OrdType.LIMIT),
                             tif=int(TimeInForce.DAY), qty=200, price=23003, ex_destination="SOR"))
        await _wait(lambda: sum(1 for e in reports() if e.exec_type is ExecType.TRADE) == 3, "three fills")
        await m.drain()
        order = m.order("O1")
        assert order.venue == "SOR" and order.state is OrderState.PARTIALLY_FILLED
        ex = reports()
        assert [e.exec_type for e in ex] == [ExecType.PENDING_NEW, ExecType.NEW] + [ExecType.TRADE] * 3
        assert [(e.last_qty, e.last_px, e.cum_qty, e.leaves_qty) for e in ex[2:]] == [
            (30, 23001, 30, 170), (20, 23003, 50, 150), (50, 23002, 100, 100)]
        # Each fill names the venue that filled it (LastMkt), not the router.
        assert [e.venue for e in ex[2:]] == ["VENUE-A", "VENUE-A", "VENUE-B"]
        assert avg_px(order, aapl.tick_size) == Decimal(30 * 23001 + 20 * 23003 + 50 * 23002) / 100 / 100
        # The remainder rests at A; the client replaces down, then cancels: one order all along.
        await _wait(lambda: a.top_of_book(aapl)[:2] == (23003, 100), "remainder resting at A")
        m.replace_order(ReplaceOrder(session="FIRM1", cl_ord_id="c2", orig_cl_ord_id="c1", qty=160, price=23003))
        await _wait(lambda: m.order("O1").state is OrderState.PARTIALLY_FILLED and m.order("O1").qty == 160,
                    "replaced")
        assert a.top_of_book(aapl)[:2] == (23003, 60)
        m.cancel_order(CancelOrder(session="FIRM1", cl_ord_id="c3", orig_cl_ord_id="c2"))
        await _wait(lambda: m.order("O1").state is OrderState.CANCELED, "cancelled")
        await m.drain()
        last = reports()[-1]
        assert (last.exec_type, last.ord_status, last.cum_qty, last.leaves_qty, last.cl_ord_id) == (
            ExecType.CANCELED, OrdStatus.CANCELED, 100, 0, "c3")
        assert a.top_of_book(aapl)[:2] == (0, 0)
        assert len({e.exec_id for e in reports()}) == len(reports())
        # The router's audit trail of that order, by the id the manager used at the venue.
        events = [row["event"] for row in router.audit("O1.1")]
        assert events[:3] == ["parent_new", "decision", "child_sent"] and events[-1] == "parent_canceled"
        await router.stop()
        await a.stop()
        await b.stop()

    asyncio.run(asyncio.wait_for(main(), 30))
