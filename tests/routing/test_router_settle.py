"""SmartRouter.recover_parent, the cases a review of the first version found wrong: each test
here failed on that version (see docs/routing.md "After an OMS restart").

As in test_router_recover.py, the venue process is an in-process venue counted as one
(``ProcessVenue``), kept across the "restart", and the reconciliation FixVenue plays at logon is
played through the venue's event tap, so every step is deterministic.
"""
from __future__ import annotations

import asyncio

import pytest

from crossbook.core import OrdType, Reason, Side, Status, TimeInForce
from crossbook.routing import router as router_module
from crossbook.routing.audit import MemoryAuditLog
from crossbook.routing.router import SmartRouter
from crossbook.routing.venue import VenueOrder, VenueEventKind as K

from test_router_recover import (AAPL, PARENT, _cancel_confirmed, _ev, _first_run, _first_run_rests_at_b,
                                  _mine, _recon_fill, _reconciled, _router, _run, _second_router,
                                  _settled_after_a_lost_fill, _venue_process, _venue_process_and_in_process_b)


def _kill(router: SmartRouter, *venues) -> None:
    """The router's process dies: it stops hearing its venues (which live on)."""
    router._started = False
    for v in venues:
        tap = router_module._tap_for(v)
        if router in tap.routers:
            tap.routers.remove(router)


# ------------------------------------------------------------------------------------------------
# Finding 1: a parent that may execute only once, or that already ended, is never routed again
# ------------------------------------------------------------------------------------------------
def test_an_ioc_parent_that_executed_before_the_kill_is_finished_with_its_fills_not_routed_again():
    async def main():
        a = await _venue_process()
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

    _run(main, 20)


def test_an_ioc_parent_whose_fills_the_oms_journaled_is_taken_back_and_finished_not_resubmitted():
    """Nothing to settle (its child is done, the OMS has its fills), yet recover_parent used to
    return False, and the OMS's resubmit would route the IOC's remainder again."""
    async def main():
        a = await _venue_process()
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

    _run(main, 20)


def test_a_day_parent_the_venue_ended_before_the_kill_ends_with_that_reason_not_routed_again():
    async def main():
        a = await _venue_process()
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

    _run(main, 20)


# ------------------------------------------------------------------------------------------------
# Finding 2: settling writes trail rows only for what it counted, so a second restart adds up
# the same fills (no phantom fills from a resent report)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["resent", "cum_jump", "status_only"])
def test_fills_counted_while_settling_survive_a_second_crash_exactly(case):
    async def main():
        a = await _venue_process()
        audit = MemoryAuditLog()
        child, _ = await _first_run(a, audit, (30, 22990))      # trail: child_trade 30 (e1)
        # Run 2: the OMS journal lost the fill (cum 0): settled.
        r2, ev2 = _second_router(a, audit)
        assert r2.recover_parent(PARENT, 0, ["O1.1"], cum_value=0, acknowledged=True)
        await r2.start()
        tap = router_module._tap_for(a)
        if case == "resent":
            # The venue resends e1 (already in the trail): not counted, and no second row.
            tap(_ev(K.TRADE, child, last_qty=30, last_px=22990, leaves_qty=70, cum_qty=30, exec_id="e1"))
            venue_cum = 30
        elif case == "cum_jump":
            # A fill of 10 whose CumQty says 20 more: a report before it is missing everywhere.
            tap(_ev(K.TRADE, child, last_qty=10, last_px=22980, leaves_qty=50, cum_qty=50, exec_id="e3"))
            venue_cum = 50
        else:
            venue_cum = 45    # learned from the status alone (valued at the child's limit)
        _reconciled(a, child, venue_cum, 100 - venue_cum)
        _cancel_confirmed(a, child, venue_cum, 0)
        await asyncio.sleep(0.01)
        trades2 = _mine(ev2, K.TRADE)
        assert trades2 and trades2[-1].cum_qty == venue_cum
        oms_cum = sum(e.last_qty for e in trades2)
        oms_value = sum(e.last_qty * e.last_px for e in trades2)
        # What the trail holds for the old child now adds up to what the venue filled.
        rows = [r for r in r2.audit("O1.1") if r["child_id"] == child and r["event"] in ("child_trade", "reconcile_fill")]
        assert sum(r["qty"] for r in rows) == venue_cum
        await r2.stop()
        tap.routers.remove(r2)
        # Run 3 (a second crash, any time later): the OMS has what run 2 reported.
        r3, ev3 = _second_router(a, audit)
        assert r3.recover_parent(PARENT, oms_cum, ["O1.1"], cum_value=oms_value, acknowledged=True)
        await r3.start()
        new_child = [k for k in r3.children_of("O1.1") if k["id"] != child][0]["id"]
        _reconciled(a, new_child, 0, 100 - venue_cum, Status.RESTING)
        _cancel_confirmed(a, new_child, 0)
        await asyncio.sleep(0.01)
        assert _mine(ev3, K.TRADE) == [], "fills the venue never made were reported"
        await a.stop()

    _run(main, 20)


# ------------------------------------------------------------------------------------------------
# Finding 3: a second restart finds the children of every router parent of the order's chain
# ------------------------------------------------------------------------------------------------
def _day(cl: str, side: Side = Side.BUY) -> VenueOrder:
    return VenueOrder(cl, AAPL, side, OrdType.LIMIT, TimeInForce.DAY, 100, 23000)


def test_a_second_restart_settles_the_child_of_the_parent_the_first_restart_routed_again():
    async def main():
        a, b = await _venue_process_and_in_process_b()
        audit = MemoryAuditLog()
        # Run 1: parent P1 (O1.1) rests at the in-process venue B.
        r1 = await _first_run_rests_at_b(a, b, audit, _day("O1.1"))
        _kill(r1, a, b)
        # Run 2: nothing of it can be live at a venue process: left to the OMS, which routes it
        # again as O1.2 (parent P2); B is down now, so the child goes to the venue process A.
        r2, _ = _router([b, a], audit, "best_price")
        assert not r2.recover_parent(_day("O1.1"), 0, ["O1.1"])
        await r2.start()
        b.set_up(False)
        r2.new_order(_day("O1.2"))
        await asyncio.sleep(0.01)
        kids = r2.children_of("O1.2")
        assert [(k["venue"], k["done"]) for k in kids] == [("VENUE-A", False)]
        p2_child = kids[0]["id"]
        _kill(r2, a, b)
        # Run 3: the server asks with the whole chain.
        r3, events = _router([b, a], audit, "best_price")
        assert r3.recover_parent(_day("O1.2"), 0, ["O1.1", "O1.2"], acknowledged=True)
        assert [r[0] for r in a.restored] == [p2_child]          # P2's child is asked about
        assert {k["id"] for k in r3.children_of("O1.2")} >= {p2_child}
        await r3.start()
        _reconciled(a, p2_child, 0, 100, Status.RESTING)
        assert a.cancels and a.cancels[-1][0] == p2_child      # live: cancelled before anything else
        assert r3.children_sent == 0
        await a.stop()
        await b.stop()

    _run(main, 20)


def test_trail_rows_of_another_order_under_the_same_id_are_not_taken_as_its_children():
    async def main():
        a = await _venue_process()
        audit = MemoryAuditLog()
        P = "SOR-old-1"
        # An earlier order (a sell) that used the id O1.1, with a child live at the venue process.
        audit.rows = [
            (1, "SOR", P, "O1.1", "parent_new", "", "", 100, 23000,
             {"side": int(Side.SELL), "instrument": AAPL.key}),
            (2, "SOR", P, "O1.1", "child_sent", "VENUE-A", P + ".1", 100, 23000, {"mirror": True}),
        ]
        r2, _ = _router([a], audit)
        assert not r2.recover_parent(_day("O1.1", Side.BUY), 0, ["O1.1"])
        assert a.restored == []
        await a.stop()

    _run(main, 20)


# ------------------------------------------------------------------------------------------------
# Finding 4: a parent with a child left at an in-process venue is settled, not adopted (the
# in-process venue's restore_order re-enters an order: it cannot take one back)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tif", [TimeInForce.DAY, TimeInForce.IOC])
def test_a_parent_with_children_at_a_venue_process_and_an_in_process_venue_is_settled(tif):
    async def main():
        a, b = await _venue_process_and_in_process_b()
        audit = MemoryAuditLog()
        P = "SOR-x-1"
        # A sweep's two children written ahead and sent; the process died before any answer.
        audit.rows = [
            (1, "SOR", P, "O1.1", "parent_new", "", "", 100, 23000, {}),
            (2, "SOR", P, "O1.1", "child_sent", "VENUE-A", P + ".1", 50, 23000, {"mirror": False}),
            (3, "SOR", P, "O1.1", "child_sent", "VENUE-B", P + ".2", 50, 23000, {"mirror": False}),
        ]
        r2, events = _router([a, b], audit, "sweep")
        parent = VenueOrder("O1.1", AAPL, Side.BUY, OrdType.LIMIT, tif, 100, 23000)
        # Used to raise TypeError (InProcessVenue.restore_order has no venue_order_id / acked /
        # notional): the server could not start.
        assert r2.recover_parent(parent, 0, ["O1.1"], acknowledged=False)
        assert [r[0] for r in a.restored] == [P + ".1"]        # only the venue process is asked
        kids = {k["id"]: (k["done"], k["unknown"]) for k in r2.children_of("O1.1")}
        assert kids == {P + ".1": (False, True), P + ".2": (True, False)}
        await a.stop()
        await b.stop()

    _run(main, 20)


# ------------------------------------------------------------------------------------------------
# Finding 5: a child that keeps refusing its cancel keeps the parent settling; it is never
# routed again while the child is live
# ------------------------------------------------------------------------------------------------
def test_a_child_refusing_its_cancels_is_cancelled_again_later_and_its_parent_is_not_routed_meanwhile():
    async def main():
        a = await _venue_process()
        child, r2, events = await _settled_after_a_lost_fill(a, MemoryAuditLog())     # settled, not adopted
        r2.recovery_retry_s = 0.02
        await r2.start()
        tap = router_module._tap_for(a)
        _recon_fill(a, child, 30, 22990, 30)
        _reconciled(a, child, 30, 70)
        for _ in range(4):
            tap(_ev(K.CANCEL_REJECTED, a.cancels[-1][1], orig_venue_cl_ord_id=child, reason="cannot cancel now",
                    reason_code=0))
            await asyncio.sleep(0.005)    # the venue answers order_status: still live
        assert len(a.cancels) == 4
        assert r2.children_sent == 0, "leaves routed again while the old child is live at its venue"
        # Later the cancel is sent again (it keeps going while the child is live).
        for _ in range(100):
            await asyncio.sleep(0.005)
            if len(a.cancels) == 5:
                break
        assert len(a.cancels) == 5 and r2.children_sent == 0
        assert [e for e in _mine(events) if e.kind != K.TRADE] == []        # nothing ended, nothing routed
        # The old child fills its 70 at the venue meanwhile: that reaches the parent, which is done.
        tap(_ev(K.TRADE, child, last_qty=70, last_px=22990, leaves_qty=0, cum_qty=100, exec_id="late",
                ord_status=int(Status.FILLED)))
        await asyncio.sleep(0.01)
        assert [(e.kind, e.last_qty, e.cum_qty) for e in _mine(events)] == [(K.TRADE, 70, 100)]
        assert r2.children_sent == 0
        await r2.stop()
        await a.stop()

    _run(main, 20)


# ------------------------------------------------------------------------------------------------
# Finding 6: a parent settled at the router's start waits for a venue to be up before it
# routes again (FIX venues log on in the background), not cancelled "venue down" at once
# ------------------------------------------------------------------------------------------------
def _settled_at_start(a) -> tuple[SmartRouter, list]:
    audit = MemoryAuditLog()
    P = "SOR-x-1"
    # A sweep's IOC child at A took 30 (done); the process died before the rest was sent.
    audit.rows = [
        (1, "SOR", P, "O1.1", "parent_new", "", "", 100, 23000, {}),
        (2, "SOR", P, "O1.1", "child_sent", "VENUE-A", P + ".1", 30, 23000, {"mirror": False}),
        (3, "SOR", P, "O1.1", "child_trade", "VENUE-A", P + ".1", 30, 23000, {"exec_id": "e1"}),
    ]
    r2, events = _router([a], audit, "sweep")
    assert r2.recover_parent(_day("O1.1"), 0, ["O1.1"], acknowledged=True)
    return r2, events


def test_a_parent_settled_at_start_waits_for_its_venue_to_log_on_then_routes_its_leaves():
    async def main():
        a = await _venue_process()
        r2, events = _settled_at_start(a)
        a.set_up(False)            # = a FixVenue right after start(): not logged on yet
        await r2.start()
        await asyncio.sleep(0.03)
        got = [(e.kind, e.cum_qty) for e in _mine(events)]
        assert got == [(K.TRADE, 30), (K.STATUS, 30)], got      # not cancelled "venue down"
        assert r2.children_sent == 0
        a.set_up(True)             # logged on
        for _ in range(100):
            await asyncio.sleep(0.005)
            if r2.children_sent:
                break
        assert r2.children_sent == 1
        kids = r2.children_of("O1.1")
        assert kids[-1]["venue"] == "VENUE-A" and kids[-1]["qty"] == 70 and not kids[-1]["done"]
        assert [e.kind for e in _mine(events)][-1] != K.CANCELED
        await r2.stop()
        await a.stop()

    _run(main, 20)


def test_a_parent_settled_at_start_ends_venue_down_when_no_venue_comes_up_in_time():
    async def main():
        a = await _venue_process()
        r2, events = _settled_at_start(a)
        r2.recovery_venue_wait_s = 0.05
        a.set_up(False)
        await r2.start()
        for _ in range(100):
            await asyncio.sleep(0.005)
            if _mine(events, K.CANCELED):
                break
        last = _mine(events)[-1]
        assert (last.kind, last.cum_qty) == (K.CANCELED, 30) and "venue down" in last.reason
        assert r2.children_sent == 0
        await r2.stop()
        await a.stop()

    _run(main, 20)


def test_a_client_cancel_while_the_settled_parent_waits_for_a_venue_ends_it_canceled():
    async def main():
        a = await _venue_process()
        r2, events = _settled_at_start(a)
        a.set_up(False)
        await r2.start()
        await asyncio.sleep(0.01)
        r2.cancel_order("O1.1", "O1.1.c")
        await asyncio.sleep(0.01)
        last = _mine(events)[-1]
        assert (last.kind, last.cum_qty, last.reason_code) == (K.CANCELED, 30, int(Reason.USER_CANCEL))
        a.set_up(True)
        await asyncio.sleep(0.03)
        assert r2.children_sent == 0          # not routed after it ended
        assert r2._waiting == {}              # and no longer waiting
        await r2.stop()
        await a.stop()

    _run(main, 20)


# ------------------------------------------------------------------------------------------------
# Finding 10 (part): a settle that does not end (its venue never comes back) is reported
# ------------------------------------------------------------------------------------------------
def test_a_settle_that_does_not_end_is_reported_and_keeps_waiting_for_the_venue(caplog):
    async def main():
        a = await _venue_process()
        audit = MemoryAuditLog()
        child, _ = await _first_run(a, audit, (30, 22990))
        r2, events = _second_router(a, audit)
        r2.recovery_alert_s = 0.02
        assert r2.recover_parent(PARENT, 0, ["O1.1"], cum_value=0, acknowledged=True)   # settled
        a.set_up(False)                         # the venue process does not come back
        await r2.start()
        r2.cancel_order("O1.1", "O1.1.c")      # deferred: the child's state is unknown
        for _ in range(100):
            await asyncio.sleep(0.005)
            if len([r for r in r2.audit("O1.1") if r["event"] == "parent_settle_overdue"]) >= 2:
                break
        rows = [r for r in r2.audit("O1.1") if r["event"] == "parent_settle_overdue"]
        assert len(rows) >= 2 and rows[0]["detail"]["children"] == [
            {"child": child, "venue": "VENUE-A", "venue_up": False, "cancel_out": False}]
        assert rows[0]["detail"]["pending"] == "cancel"
        assert rows[1]["detail"]["waited_s"] == 2 * rows[0]["detail"]["waited_s"]      # less and less often
        assert any("still settling" in m for m in caplog.messages)
        assert _mine(events) == [] and r2.children_sent == 0     # nothing guessed, nothing routed
        # The venue is back: its reconciliation settles the child, the OMS hears the STATUS.
        a.set_up(True)
        _reconciled(a, child, 30, 70)
        _cancel_confirmed(a, child, 30)
        await asyncio.sleep(0.01)
        assert [(e.kind, e.cum_qty) for e in _mine(events)] == [(K.TRADE, 30), (K.STATUS, 30)]
        assert r2._settling == {}
        await r2.stop()
        await a.stop()

    _run(main, 20)
