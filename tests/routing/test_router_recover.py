"""SmartRouter.recover_parent: after an OMS restart, a parent whose children from the previous
run may be live at a venue process is settled before it routes again: children found in the
audit trail, their real state learned from the venue's reconciliation, live ones cancelled,
fills counted and reported (CumQty / AvgPx exact), then what the OMS had in flight finished.

The venue here is an in-process venue counted as a venue process (``outlives_process``): the
test keeps the object across the "restart" and plays the reconciliation FixVenue does at logon
(the resend, the catch-up TRADE, the STATUS "reconciled after reconnect") through the venue's
event tap, so every step is deterministic. tests/e2e/test_router_restart.py runs the same
situations with a real server killed and a real venue process over FIX.
"""
from __future__ import annotations

import asyncio

import pytest

from crossbook.app.server import SystemClock
from crossbook.core import OrdType, Reason, Side, Status, TimeInForce
from crossbook.model.instruments import DEFAULT_INSTRUMENTS, InstrumentMaster
from crossbook.routing import router as router_module
from crossbook.routing.audit import MemoryAuditLog
from crossbook.routing.fix_venue import RECONCILED
from crossbook.routing.router import SmartRouter
from crossbook.routing.venue import VenueEvent, VenueEventKind as K, VenueOrder
from crossbook.venues import InProcessVenue

MASTER = InstrumentMaster.from_config(DEFAULT_INSTRUMENTS)
AAPL = MASTER.by_symbol("AAPL")


class ProcessVenue(InProcessVenue):
    """Stands for a venue process: it outlives the router, is told about the children a restarted
    router takes back (``restore_order``), and records the cancels sent to it (the test answers)."""

    outlives_process = True

    def __init__(self, *args, drop_new: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.restored: list[tuple] = []
        self.cancels: list[tuple[str, str]] = []
        self.drop_new = drop_new     # orders "never leave" (the process died before the send)

    def new_order(self, order: VenueOrder) -> None:
        if not self.drop_new:
            super().new_order(order)

    def restore_order(self, order: VenueOrder, cum_qty: int = 0, venue_order_id: str = "", acked: bool = True,
                      notional: int = 0) -> None:
        self.restored.append((order.venue_cl_ord_id, order.qty, cum_qty, notional, acked))

    def cancel_order(self, venue_cl_ord_id: str, cancel_cl_ord_id: str) -> None:
        self.cancels.append((venue_cl_ord_id, cancel_cl_ord_id))


def _ev(kind, cl, **kw) -> VenueEvent:
    return VenueEvent(kind, "VENUE-A", cl, kw.pop("venue_order_id", "V1"), **kw)


async def _first_run(venue: ProcessVenue, audit: MemoryAuditLog, fill: tuple[int, int] | None) -> tuple[str, list]:
    """Router 1 routes the parent O1.1 (buy 100 at 23000, direct) to ``venue``; the child is
    acknowledged, then fills ``fill`` = (qty, price) if given. Router 1 then dies with its
    process. Returns the child's id and router 1's upstream events."""
    r1, up = _router([venue], audit)
    await r1.start()
    r1.new_order(VenueOrder("O1.1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 100, 23000))
    await asyncio.sleep(0.01)
    child = r1.children_of("O1.1")[0]["id"]
    if fill is not None:
        router_module._tap_for(venue)(_ev(K.TRADE, child, last_qty=fill[0], last_px=fill[1], leaves_qty=100 - fill[0],
                                          cum_qty=fill[0], exec_id="e1", ord_status=int(Status.PARTIALLY_FILLED)))
        await asyncio.sleep(0)
    await r1.stop()
    router_module._tap_for(venue).routers.remove(r1)
    return child, up


def _router(venues, audit, policy="direct") -> tuple[SmartRouter, list]:
    """A router "SOR" over ``venues`` with ``audit``, and the list its upstream events go to."""
    r = SmartRouter("SOR", list(venues), policy, audit=audit, watch_s=0.01)
    events: list = []
    r.set_event_sink(events.append)
    return r, events


def _second_router(venue, audit) -> tuple[SmartRouter, list]:
    """The router of the restarted process, over the one venue process of ``_first_run``."""
    return _router([venue], audit)


async def _venue_process(**kwargs) -> ProcessVenue:
    """VENUE-A as a venue process, started."""
    venue = ProcessVenue("VENUE-A", MASTER, SystemClock(), **kwargs)
    await venue.start()
    return venue


def _recon_fill(venue, child: str, qty: int, px: int, cum: int) -> None:
    """The venue's reconciliation reports a catch-up fill of ``qty`` at ``px`` (CumQty ``cum``),
    under the stable exec id FixVenue gives it."""
    router_module._tap_for(venue)(_ev(K.TRADE, child, last_qty=qty, last_px=px, leaves_qty=100 - cum, cum_qty=cum,
                                      exec_id=f"V1-RECON-{cum}"))


def _reconciled(venue, child: str, cum: int, leaves: int, status: Status = Status.PARTIALLY_FILLED) -> None:
    """The venue's reconciliation ends with the STATUS "reconciled after reconnect" for ``child``."""
    router_module._tap_for(venue)(_ev(K.STATUS, child, leaves_qty=leaves, cum_qty=cum, reason=RECONCILED,
                                      ord_status=int(status)))


def _cancel_confirmed(venue: ProcessVenue, child: str, cum: int, which: int = -1) -> None:
    """The venue confirms the cancel ``venue.cancels[which]`` sent for ``child`` (CumQty ``cum``)."""
    router_module._tap_for(venue)(_ev(K.CANCELED, venue.cancels[which][1], cum_qty=cum, orig_venue_cl_ord_id=child,
                                      ord_status=int(Status.CANCELLED), reason_code=int(Reason.USER_CANCEL)))


async def _settled_after_a_lost_fill(venue: ProcessVenue, audit: MemoryAuditLog) -> tuple[str, SmartRouter, list]:
    """Run 1 fills 30 x 22990 of PARENT's child and dies; the crash lost the trail's fill row
    (not written ahead), so the trail says 0 filled and the OMS 30: the parent cannot be rebuilt
    exactly and run 2's router takes it back to settle (asserted). Returns the child's id and run
    2's router (not started) and events."""
    child, _ = await _first_run(venue, audit, (30, 22990))
    audit.rows = [r for r in audit.rows if r[4] != "child_trade"]
    r2, events = _second_router(venue, audit)
    assert r2.recover_parent(PARENT, 30, ["O1.1"], cum_value=30 * 22990, acknowledged=True)
    return child, r2, events


async def _venue_process_and_in_process_b() -> tuple[ProcessVenue, InProcessVenue]:
    """VENUE-A as a venue process and VENUE-B in process (its book dies with the router), started."""
    a = await _venue_process()
    b = InProcessVenue("VENUE-B", MASTER, SystemClock())
    await b.start()
    return a, b


async def _first_run_rests_at_b(a: ProcessVenue, b: InProcessVenue, audit: MemoryAuditLog,
                                order: VenueOrder) -> SmartRouter:
    """Run 1: a best_price router over B and A sends ``order`` to the in-process VENUE-B (asserted).
    Returns that router, still running: the caller ends its run."""
    r1, _ = _router([b, a], audit, "best_price")
    await r1.start()
    r1.new_order(order)
    await asyncio.sleep(0.01)
    assert r1.children_of(order.venue_cl_ord_id)[0]["venue"] == "VENUE-B"
    return r1


def _run(main, timeout: float = 30) -> None:
    asyncio.run(asyncio.wait_for(main(), timeout))


def _mine(events, kind=None):
    return [e for e in events if e.venue == "SOR" and (kind is None or e.kind == kind)]


PARENT = VenueOrder("O1.1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 100, 23000)


def test_a_pending_cancel_settles_the_child_reports_the_missed_fills_exactly_then_cancels():
    async def main():
        a = await _venue_process()
        audit = MemoryAuditLog()
        child, up1 = await _first_run(a, audit, (30, 22990))
        assert [(e.kind, e.cum_qty) for e in _mine(up1)] == [(K.NEW, 0), (K.TRADE, 30)]

        r2, events = _second_router(a, audit)
        # The OMS has 30 filled (30 x 22990) and a cancel in flight.
        assert r2.recover_parent(PARENT, 30, ["O1.1"], cum_value=30 * 22990, acknowledged=True, pending="cancel")
        # The child is taken back from what the trail knows (30 filled, its value), to be asked.
        assert a.restored == [(child, 100, 30, 30 * 22990, True)]
        await r2.start()
        tap = router_module._tap_for(a)
        # The venue's resend (7 more) and its reconciliation (a catch-up of 6, then the status):
        # the child is live there, 57 left.
        tap(_ev(K.TRADE, child, last_qty=7, last_px=22995, leaves_qty=63, cum_qty=37, exec_id="e2"))
        tap(_ev(K.TRADE, child, last_qty=7, last_px=22995, leaves_qty=63, cum_qty=37, exec_id="e2b"))  # again
        _recon_fill(a, child, 6, 22997, 43)
        assert not _mine(events)                     # nothing goes up before the child is settled
        _reconciled(a, child, 43, 57)
        assert [c for c, _ in a.cancels] == [child]    # live: cancelled
        _cancel_confirmed(a, child, 43, 0)
        await asyncio.sleep(0.01)
        # 13 more filled, worth 7 x 22995 + 6 x 22997: reported as 1 at 22995 and 12 at 22996
        # (same total, whole ticks), then the STATUS after which the OMS sends its cancel again.
        got = [(e.kind, e.last_qty, e.last_px, e.cum_qty, e.leaves_qty) for e in _mine(events)]
        assert got == [(K.TRADE, 1, 22995, 31, 69), (K.TRADE, 12, 22996, 43, 57), (K.STATUS, 0, 0, 43, 57)]
        assert _mine(events, K.STATUS)[0].reason == RECONCILED
        assert sum(e.last_qty * e.last_px for e in _mine(events, K.TRADE)) == 7 * 22995 + 6 * 22997
        assert len({e.exec_id for e in _mine(events, K.TRADE)}) == 2
        r2.cancel_order("O1.1", "O1.1.c")
        await asyncio.sleep(0.01)
        end = _mine(events)[-1]
        assert (end.kind, end.venue_cl_ord_id, end.cum_qty, end.leaves_qty) == (K.CANCELED, "O1.1.c", 43, 0)
        assert r2.children_sent == 0                 # never routed again
        events_rows = [r["event"] for r in r2.audit("O1.1")]
        assert "parent_restored" in events_rows and "parent_settled" in events_rows
        await r2.stop()
        await a.stop()

    _run(main)


def test_a_parent_the_trail_cannot_rebuild_is_settled_then_routed_again_for_its_leaves():
    async def main():
        a = await _venue_process()
        child, r2, events = await _settled_after_a_lost_fill(a, MemoryAuditLog())
        assert a.restored == [(child, 100, 0, 0, True)]
        await r2.start()
        _recon_fill(a, child, 30, 22990, 30)
        _reconciled(a, child, 30, 70)
        assert r2.children_sent == 0                 # not before the old child is done
        _cancel_confirmed(a, child, 30, 0)
        await asyncio.sleep(0.01)
        # Nothing unreported (the venue's 30 are the OMS's 30); then its 70 are routed afresh.
        assert [(e.kind, e.cum_qty) for e in _mine(events)] == [(K.STATUS, 30)]
        kids = r2.children_of("O1.1")
        assert [(k["id"] == child, k["qty"], k["done"]) for k in kids] == [(True, 100, True), (False, 70, False)]
        assert [r["event"] for r in r2.audit("O1.1")][-3:] == ["decision", "child_sent", "child_new"]
        assert a.top_of_book(AAPL)[:2] == (23000, 170)   # the old child (the book's copy) + the new 70
        await r2.stop()
        await a.stop()

    _run(main)


@pytest.mark.parametrize("acknowledged", [False, True])
def test_a_child_that_never_left_ends_the_order_rejected_or_canceled_with_the_reason(acknowledged):
    async def main():
        a = await _venue_process(drop_new=True)
        audit = MemoryAuditLog()
        child, up1 = await _first_run(a, audit, None)
        assert _mine(up1) == []                      # written ahead, never sent: nothing heard
        r2, events = _second_router(a, audit)
        assert r2.recover_parent(PARENT, 0, ["O1.1"], acknowledged=acknowledged)
        await r2.start()
        tap = router_module._tap_for(a)
        tap(_ev(K.REJECTED, child, venue_order_id="", reason="order lost: VENUE-A never received it (disconnected)",
                reason_code=int(Reason.UNKNOWN_ORDER), ord_status=int(Status.REJECTED)))
        tap(_ev(K.STATUS, child, venue_order_id="", reason=RECONCILED, reason_code=int(Reason.UNKNOWN_ORDER),
                ord_status=int(Status.REJECTED)))
        await asyncio.sleep(0.01)
        got = _mine(events)
        assert [e.kind for e in got] == [K.CANCELED if acknowledged else K.REJECTED]
        assert "restarted" in got[0].reason and "never received" in got[0].reason, got[0].reason
        assert got[0].reason_code == int(Reason.UNKNOWN_ORDER)
        assert r2.children_sent == 0
        await r2.stop()
        await a.stop()

    _run(main)


def test_nothing_to_settle_is_left_to_the_oms_and_bad_arguments_are_refused():
    async def main():
        a, b = await _venue_process_and_in_process_b()
        audit = MemoryAuditLog()
        r1 = await _first_run_rests_at_b(a, b, audit, VenueOrder("O2.1", AAPL, Side.BUY, OrdType.LIMIT,
                                                                  TimeInForce.DAY, 10, 23000))
        await r1.stop()
        r2, _ = _router([b, a], audit, "best_price")
        order = VenueOrder("O2.1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 10, 23000)
        # Its only child was at an in-process venue (its book died): routed again by the OMS.
        assert not r2.recover_parent(order, 0, ["O2.1"])
        # Unknown to the trail: nothing of it ever left.
        assert not r2.recover_parent(VenueOrder("O3.1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 10, 1), 0)
        with pytest.raises(ValueError, match="pending"):
            r2.recover_parent(order, 0, pending="amend")
        with pytest.raises(ValueError, match="cum_value"):
            r2.recover_parent(order, 0, cum_value=-1)
        with pytest.raises(ValueError, match="cum_qty"):
            r2.recover_parent(order, 10)
        with pytest.raises(TypeError, match="VenueOrder"):
            r2.recover_parent("O2.1", 0)
        assert r2.children_sent == 0 and a.restored == []
        await a.stop()
        await b.stop()

    _run(main)


def test_a_cancel_arriving_while_the_parent_is_settled_is_answered_after_and_nothing_is_routed():
    async def main():
        a = await _venue_process()
        # The trail lost the fill the OMS has: the parent is settled, not adopted.
        child, r2, events = await _settled_after_a_lost_fill(a, MemoryAuditLog())
        await r2.start()
        r2.cancel_order("O1.1", "O1.1.c")            # the client's cancel, while the child is asked
        assert _mine(events) == []
        _recon_fill(a, child, 30, 22990, 30)
        _reconciled(a, child, 30, 70)
        _cancel_confirmed(a, child, 30, 0)
        await asyncio.sleep(0.01)
        # Settled: the STATUS on which the OMS sends its cancel again; nothing routed meanwhile
        # (without the cancel, its 70 would be routed afresh here).
        assert [e.kind for e in _mine(events)] == [K.STATUS] and r2.children_sent == 0
        r2.cancel_order("O1.1", "O1.1.c")
        await asyncio.sleep(0.01)
        end = _mine(events)[-1]
        assert (end.kind, end.venue_cl_ord_id, end.cum_qty) == (K.CANCELED, "O1.1.c", 30)
        await r2.stop()
        await a.stop()

    _run(main)


def test_a_router_reaching_a_venue_process_keeps_a_trail_by_default(tmp_path):
    from crossbook.routing.router import RouterConfig, durable_audit_path
    a = ProcessVenue("VENUE-A", MASTER, SystemClock())
    b = InProcessVenue("VENUE-B", MASTER, SystemClock())
    venues = {"VENUE-A": a, "VENUE-B": b}
    best = RouterConfig.from_config({"name": "BEST", "policy": "best_price", "venues": ["VENUE-B", "VENUE-A"]})
    local = RouterConfig.from_config({"name": "LOCAL", "policy": "direct", "venues": ["VENUE-B"]})
    named = RouterConfig.from_config({"name": "SOR", "policy": "direct", "venues": ["VENUE-A"],
                                      "audit_path": str(tmp_path / "mine.db")})
    assert durable_audit_path(best, venues, str(tmp_path)) == str(tmp_path / "routing-audit.db")
    assert durable_audit_path(local, venues, str(tmp_path)) == ""        # in-process only: in memory
    assert durable_audit_path(named, venues, str(tmp_path)) == str(tmp_path / "mine.db")


def test_a_parent_the_trail_rebuilds_exactly_is_adopted_with_the_value_of_its_fills():
    async def main():
        a = await _venue_process()
        audit = MemoryAuditLog()
        child, _ = await _first_run(a, audit, (30, 22990))
        r2, events = _second_router(a, audit)
        assert r2.recover_parent(PARENT, 30, ["O1.1"], cum_value=30 * 22990, acknowledged=True)
        # Adopted (not settled): the venue is told the fills it already reported and their value,
        # so a catch-up for fills beyond them is priced for an exact AvgPx.
        assert a.restored == [(child, 100, 30, 30 * 22990, True)]
        await r2.start()
        _recon_fill(a, child, 10, 22980, 40)
        _reconciled(a, child, 40, 60)
        await asyncio.sleep(0.01)
        assert [(e.kind, e.last_qty, e.last_px, e.cum_qty) for e in _mine(events)] == [(K.TRADE, 10, 22980, 40)]
        assert a.cancels == [] and r2.children_sent == 0   # the child keeps working for it
        await r2.stop()
        await a.stop()

    _run(main)
