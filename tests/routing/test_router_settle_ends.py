"""SmartRouter.recover_parent, how a settled parent ENDS: the cases a second review found wrong
(each test here failed on the code before its fix; see docs/routing.md "After an OMS restart").

- A parent whose child the venue ended on its own (GTD expiry run by the venue process's
  housekeeping, self-trade prevention) while the OMS was down ends as on the normal path when the
  end is learned while settling (the venue's resent CANCELED, or the reconciliation's "canceled
  at the venue"): its leaves are not routed again.
- The parent's end rows go ahead with the next child rows written ahead (record_durable), so a
  kill before the writer thread commits does not leave a trail whose child is done and whose
  parent never ended (routed again by the OMS).
- A child refusing its cancels for hours keeps being cancelled again (the back-off's power does
  not overflow).

As in test_router_recover.py, the venue process is an in-process venue counted as one
(``ProcessVenue``), kept across the "restart", and the reconciliation FixVenue plays at logon is
played through the venue's event tap.
"""
from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from crossbook.app.server import SystemClock
from crossbook.core import OrdType, Reason, Side, Status, TimeInForce
from crossbook.routing import router as router_module
from crossbook.routing.audit import MemoryAuditLog, SqliteAuditLog
from crossbook.routing.fix_venue import RECONCILED
from crossbook.routing.router import SmartRouter
from crossbook.routing.venue import VenueEventKind as K, VenueOrder

from test_router_recover import AAPL, MASTER, PARENT, ProcessVenue, _ev, _first_run, _mine, _second_router


def _settled_then_venue_cancels(reason_code: int, reason: str, *, ours: bool = False, pending: str = "",
                                replace_while_settling: bool = False):
    """Run 1: the DAY parent's child rests at the venue process and fills 30 (the trail has it,
    the OMS journal lost it). Run 2 settles the parent (OMS cum 0 < trail 30); the venue then
    reports the child CANCELED: its own end (``ours`` False: no OrigClOrdID, no cancel of ours
    out) or the answer to the router's own settle cancel (``ours`` True). ``pending``: the
    OMS's request in flight at the restart; ``replace_while_settling``: the client's replace
    arrives during the settle. With either, a STATUS is answered as the OMS does: the replace
    sent again. Returns the upstream events of run 2 as (kind, cum, reason_code, reason) and
    the children run 2 sent."""
    async def main():
        a = ProcessVenue("VENUE-A", MASTER, SystemClock())
        await a.start()
        audit = MemoryAuditLog()
        child, _ = await _first_run(a, audit, (30, 22990))
        r2, events = _second_router(a, audit)
        assert r2.recover_parent(PARENT, 0, ["O1.1"], cum_value=0, acknowledged=True, pending=pending)
        await r2.start()
        if replace_while_settling:
            r2.replace_order("O1.1", "O1.2", 100, 23000)
        tap = router_module._tap_for(a)
        if ours:
            # The reconciliation says live; the router cancels it; the venue confirms that cancel.
            tap(_ev(K.STATUS, child, leaves_qty=70, cum_qty=30, reason=RECONCILED,
                    ord_status=int(Status.PARTIALLY_FILLED)))
            assert a.cancels, "the settle cancels the live child"
            tap(_ev(K.CANCELED, a.cancels[-1][1], cum_qty=30, leaves_qty=0, orig_venue_cl_ord_id=child,
                    ord_status=int(Status.CANCELLED), reason_code=reason_code, reason=reason))
        else:
            tap(_ev(K.CANCELED, child, cum_qty=30, leaves_qty=0, ord_status=int(Status.CANCELLED),
                    reason_code=reason_code, reason=reason))
        await asyncio.sleep(0.02)
        if (pending or replace_while_settling) and _mine(events) and _mine(events)[-1].kind == K.STATUS:
            r2.replace_order("O1.1", "O1.2", 100, 23000)   # what the OMS does on a STATUS
            await asyncio.sleep(0.05)
        got = [(e.kind, e.cum_qty, e.reason_code, e.reason) for e in _mine(events)]
        sent = r2.children_sent
        await r2.stop()
        await a.stop()
        return got, sent
    return asyncio.run(asyncio.wait_for(main(), 20))


def test_a_child_the_venue_expired_learned_while_settling_ends_the_parent_expired_not_routed_again():
    got, sent = _settled_then_venue_cancels(int(Reason.EXPIRED), "expired")
    assert sent == 0, f"parent routed again after its venue expired it: {got}"
    assert got[-1][0] == K.CANCELED and got[-1][2] == int(Reason.EXPIRED), got
    assert got[-1][1] == 30, got                      # the fill found while settling is counted
    assert "ended before the restart:" not in got[-1][3], got


def test_a_child_the_reconciliation_found_cancelled_at_the_venue_ends_the_parent_not_routed_again():
    # What FixVenue._catch_up emits when the status says CANCELLED and no report was resent.
    got, sent = _settled_then_venue_cancels(0, "canceled at the venue (found by reconciliation)")
    assert sent == 0, f"parent routed again after its venue cancelled it: {got}"
    assert got[-1][0] == K.CANCELED and got[-1][1] == 30, got


def test_the_answer_to_the_settles_own_cancel_still_routes_the_leaves_again():
    # Control: the cancel the settle sent itself is not the venue ending the order.
    got, sent = _settled_then_venue_cancels(0, "", ours=True)
    assert sent == 1, f"the leaves of a settled DAY parent are routed again: {got}"


def test_a_venue_expired_parent_whose_end_rows_were_not_committed_is_not_routed_again(tmp_path):
    """The venue expired a GTD parent's child in run 1 (child_canceled, parent_ending,
    parent_canceled queued); another parent's child then left for the venue process
    (record_durable). Killed before the writer thread committed: the side file must hold the
    parent's end with its child's, else the OMS routes the expired order again."""
    async def main():
        path = str(tmp_path / "audit.db")
        a = ProcessVenue("VENUE-A", MASTER, SystemClock())
        await a.start()
        log1 = SqliteAuditLog(path)
        stall = threading.Event()
        log1._write = lambda rows: stall.wait()        # the writer thread has not committed yet
        r1 = SmartRouter("SOR", [a], "direct", audit=log1, watch_s=0.01)
        up1: list = []
        r1.set_event_sink(up1.append)
        await r1.start()
        now = time.time_ns()
        gtd = VenueOrder("O1.1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.GTD, 100, 23000,
                         expire_time=now + 10**9)
        r1.new_order(gtd)
        await asyncio.sleep(0.01)
        a.expire(now + 2 * 10**9)                      # the venue's housekeeping expires it
        await asyncio.sleep(0.01)
        assert [e.kind for e in _mine(up1)][-1] == K.CANCELED     # run 1: parent ended EXPIRED
        r1.new_order(VenueOrder("O2.1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 10, 22000))
        await asyncio.sleep(0.01)
        # kill -9: the side file stays, its lock goes with the process.
        r1._started = False
        router_module._tap_for(a).routers.remove(r1)
        os.close(log1._ahead_fd)
        log2 = SqliteAuditLog(path)                    # restart: the side file is read back
        try:
            events = [r["event"] for r in log2.query("O1.1")]
            assert "child_canceled" in events and "parent_canceled" in events, events
            r2 = SmartRouter("SOR", [a], "direct", audit=log2, watch_s=0.01)
            up2: list = []
            r2.set_event_sink(up2.append)
            # The OMS: open GTD order, acknowledged, nothing filled (its cancel was not journaled).
            taken = r2.recover_parent(gtd, 0, ["O1.1"], acknowledged=True)
            assert taken, f"recover_parent left the venue-expired order to the OMS (routed again): {events}"
            await r2.start()
            await asyncio.sleep(0.01)
            ends = [(e.kind, e.reason_code) for e in _mine(up2)]
            assert ends and ends[-1] == (K.CANCELED, int(Reason.EXPIRED)), ends
            assert r2.children_sent == 0
            await r2.stop()
        finally:
            stall.set()
            log2.close()
            await a.stop()

    asyncio.run(asyncio.wait_for(main(), 30))


@pytest.mark.parametrize("refused", [5, 1028, 5000])
def test_a_child_refusing_cancels_for_hours_is_still_cancelled_again_later(refused):
    """The back-off doubles up to 60 s; at the 1028th refused cancel 2.0 ** 1024 used to raise
    OverflowError inside the venue's event delivery, and no retry was scheduled again."""
    async def main():
        a = ProcessVenue("VENUE-A", MASTER, SystemClock())
        await a.start()
        audit = MemoryAuditLog()
        child, _ = await _first_run(a, audit, (30, 22990))
        r2, _ = _second_router(a, audit)
        assert r2.recover_parent(PARENT, 0, ["O1.1"], cum_value=0, acknowledged=True)
        await r2.start()
        c = r2._children[child]
        for i in range(refused):                  # cancels already sent and refused
            c.requests[f"{child}.c{i + 1}"] = ("cancel",)
        err = None
        try:
            router_module._tap_for(a)(_ev(K.STATUS, child, leaves_qty=70, cum_qty=30, reason=RECONCILED,
                                          ord_status=int(Status.PARTIALLY_FILLED)))
        except Exception as exc:  # what the venue's event delivery would get
            err = exc
        retry = c.parent.recovery.retry.get(child)
        delay = retry.when() - asyncio.get_running_loop().time() if retry is not None else None
        await r2.stop()
        await a.stop()
        assert err is None and retry is not None, f"retry not scheduled: {err!r}"
        assert 0 < delay <= 60.0, delay
    asyncio.run(asyncio.wait_for(main(), 20))


def test_the_reason_of_a_parent_ended_before_two_restarts_has_one_prefix():
    """The trail of a parent finished after a restart says "ended before the restart: X"; the
    next restart reads that row and must not prefix it again."""
    rows = [{"event": "parent_new", "detail": {}},
            {"event": "parent_canceled", "detail": {"reason": "VENUE-A: expired", "reason_code": int(Reason.EXPIRED)}}]
    first = SmartRouter._trail_end(rows)
    assert first == (int(Reason.EXPIRED), "ended before the restart: VENUE-A: expired")
    rows.append({"event": "parent_canceled", "detail": {"reason": first[1], "reason_code": first[0]}})
    assert SmartRouter._trail_end(rows) == first


# ------------------------------------------------------------------------------------------------
# A settled parent waiting for its venues at start is routed on what they show, not on the
# first one up with a book it has not received yet
# ------------------------------------------------------------------------------------------------
class _MdVenue(ProcessVenue):
    """A venue process whose market data arrives after it is up, as a FixVenue's first snapshot
    after its logon: ``asks`` None = not received yet (``market_data_ready`` False)."""

    def __init__(self, name: str) -> None:
        super().__init__(name, MASTER, SystemClock())
        self.asks: list | None = None
        self.version = 0

    def show(self, asks: list) -> None:
        self.asks = asks
        self.version += 1

    def market_data_ready(self, instrument) -> bool:
        return self.is_up and self.asks is not None

    def depth(self, instrument, levels: int = 10):
        return ([], list(self.asks or [])[:levels])

    def book_version(self, instrument) -> int:
        return self.version


async def _settled_with_two_venues_down(md_wait_s: float):
    """A DAY parent (buy 100 at 23000, best price over A then B) whose sweep child at A took 30
    before the kill: settled at start and its 70 leaves to route again, both venues down."""
    a, b = _MdVenue("VENUE-A"), _MdVenue("VENUE-B")
    for v in (a, b):
        await v.start()
        v.set_up(False)
    audit = MemoryAuditLog()
    P = "SOR-x-1"
    audit.rows = [(1, "SOR", P, "O1.1", "parent_new", "", "", 100, 23000, {}),
                  (2, "SOR", P, "O1.1", "child_sent", "VENUE-A", P + ".1", 30, 23000, {"mirror": False}),
                  (3, "SOR", P, "O1.1", "child_trade", "VENUE-A", P + ".1", 30, 23000, {"exec_id": "e1"})]
    r = SmartRouter("SOR", [a, b], "best_price", audit=audit, watch_s=0.005)
    r.recovery_md_wait_s = md_wait_s
    events: list = []
    r.set_event_sink(events.append)
    assert r.recover_parent(PARENT, 0, ["O1.1"], acknowledged=True)
    await r.start()
    return r, a, b, events


async def _until_routed(r: SmartRouter, timeout: float = 2.0) -> None:
    for _ in range(int(timeout / 0.005)):
        if r.children_sent:
            return
        await asyncio.sleep(0.005)


def test_a_settled_parent_is_routed_once_every_venue_is_up_with_its_book_not_at_the_first_one_up():
    async def main():
        r, a, b, events = await _settled_with_two_venues_down(md_wait_s=5.0)
        a.set_up(True)
        a.show([])                      # A logged on first, its book empty
        await asyncio.sleep(0.05)
        assert r.children_sent == 0, "routed on A alone while B was still logging on"
        b.set_up(True)                  # B logged on, its snapshot not there yet
        await asyncio.sleep(0.05)
        assert r.children_sent == 0, "routed before B's market data arrived (read as an empty book)"
        b.show([(22990, 100, 1)])       # B's snapshot: the best offer
        await _until_routed(r)
        kids = r.children_of("O1.1")
        assert r.children_sent == 1 and kids[-1]["venue"] == "VENUE-B" and kids[-1]["qty"] == 70, kids
        await r.stop()
        for v in (a, b):
            await v.stop()
    asyncio.run(asyncio.wait_for(main(), 20))


def test_a_settled_parent_waits_for_a_venue_still_down_only_the_grace_then_routes_on_those_up():
    async def main():
        r, a, b, events = await _settled_with_two_venues_down(md_wait_s=0.05)
        a.set_up(True)
        a.show([(23000, 100, 1)])
        await _until_routed(r)          # B never comes up: routed at A after the grace
        kids = r.children_of("O1.1")
        assert r.children_sent == 1 and kids[-1]["venue"] == "VENUE-A", kids
        assert [e.kind for e in _mine(events)][-1] != K.CANCELED     # not ended "venue down"
        await r.stop()
        for v in (a, b):
            await v.stop()
    asyncio.run(asyncio.wait_for(main(), 20))


def test_a_fix_venue_has_market_data_once_its_first_snapshot_since_the_logon_arrived(tmp_path, venue_proc):
    """FixVenue.market_data_ready: False before the logon, True once the snapshot of the
    instrument came (the venue process answers the subscription sent at logon), False again
    when the session is lost; True as soon as it is up without a subscription (md_depth 0)."""
    from test_fix_venue import Recorder, venue_config
    vp = venue_proc(venue_config(tmp_path))

    async def main():
        r = Recorder(vp.port, tmp_path, md_depth=3)
        assert not r.venue.market_data_ready(AAPL)
        async with r:
            await r.wait(lambda: r.venue.market_data_ready(AAPL), what="AAPL's snapshot")
            vp.kill()
            await r.wait(lambda: not r.venue.is_up, what="the session lost")
            assert not r.venue.market_data_ready(AAPL)
    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_fix_venue_without_market_data_is_ready_when_up(tmp_path, venue_proc):
    from test_fix_venue import Recorder, venue_config
    vp = venue_proc(venue_config(tmp_path))

    async def main():
        async with Recorder(vp.port, tmp_path, md_depth=0) as r:
            assert r.venue.market_data_ready(AAPL)
    asyncio.run(asyncio.wait_for(main(), 60))
