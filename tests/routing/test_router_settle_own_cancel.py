"""A cancel of ours at a venue process, answered only after an OMS restart, is not taken for the
venue ending the child on its own.

The client's cancel (or a replace cutting a child to 0) was in flight at the kill (the OMS
journal says PENDING_CANCEL / PENDING_REPLACE) and the router had cancelled the child at the
venue. At the restart the venue says the child is CANCELED (resent, or found by reconciliation):
the answer to OUR cancel. The parent must then end in the STATUS on which the OMS sends its
request again (docs/routing.md "After an OMS restart"), not Canceled with the venue's text (a
pending replace would end Canceled instead of Replaced).

Two guards, each tested alone: the ``child_cancel_sent`` row of a child at a venue process is
written ahead (``record_durable``), so a kill cannot lose it; and with an audit log without
write-ahead, a parent with a request in flight at the restart never takes a cancel for the
venue's own end. The last test: neither guard reaches further than that.
"""
from __future__ import annotations

import asyncio

import pytest

from crossbook.app.server import SystemClock
from crossbook.core import OrdType, Reason, Side, Status, TimeInForce
from crossbook.routing import router as router_module
from crossbook.routing.audit import MemoryAuditLog
from crossbook.routing.fix_venue import RECONCILED
from crossbook.routing.venue import VenueEventKind as K, VenueOrder
from crossbook.venues import InProcessVenue

from test_router_recover import AAPL, MASTER, PARENT, ProcessVenue, _ev, _mine, _router, _second_router
from test_router_settle_ends import _settled_then_venue_cancels


class QueuedOrAheadAudit(MemoryAuditLog):
    """A memory audit log that knows which rows were written ahead (``record_durable``): a kill
    before the writer thread commits keeps those and loses the rows only queued since."""

    def __init__(self) -> None:
        super().__init__()
        self.durable: set[int] = set()     # indexes into rows

    def record_durable(self, rows: list[tuple]) -> None:
        start = len(self.rows)
        super().record_durable(rows)
        self.durable.update(range(start, len(self.rows)))

    def kill_after(self, keep: int) -> None:
        """Rows recorded after index ``keep`` survive only if written ahead."""
        self.rows[keep:] = [r for i, r in enumerate(self.rows) if i >= keep and i in self.durable]
        self.durable = {i for i in self.durable if i < len(self.rows)}


class NoWriteAheadAudit(MemoryAuditLog):
    """An audit log from before write-ahead (no ``record_durable``): every row is only queued."""

    record_durable = None


def _kill_then_restart(pending, audit, lose):
    """Run 1: a parent at the venue process VENUE-A fills 30 of 100; the client's cancel /
    replace reaches the router, which cancels the child; ``lose(keep)`` plays the kill. Run 2:
    the OMS holds the fill and the request in flight; VENUE-A's reconciliation says the child
    is cancelled. Returns the upstream events of the parent in run 2."""
    async def main():
        a = ProcessVenue("VENUE-A", MASTER, SystemClock())
        await a.start()
        r1, _ = _router([a], audit)
        await r1.start()
        r1.new_order(VenueOrder("O1.1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 100, 23000))
        await asyncio.sleep(0.01)
        child = r1.children_of("O1.1")[0]["id"]
        tap = router_module._tap_for(a)
        tap(_ev(K.TRADE, child, last_qty=30, last_px=22990, leaves_qty=70, cum_qty=30, exec_id="e1",
                ord_status=int(Status.PARTIALLY_FILLED)))
        await asyncio.sleep(0)
        keep = len(audit.rows)
        if pending == "cancel":
            r1.cancel_order("O1.1", "O1.2")
        else:   # replace down to the filled quantity: the child's rest is cancelled
            r1.replace_order("O1.1", "O1.2", 30, 23000)
        assert any(r[4] == "child_cancel_sent" for r in audit.rows[keep:]), "setup: the child was cancelled"
        lose(keep)                      # kill -9 before the writer thread committed the queued rows
        await r1.stop()
        tap.routers.remove(r1)
        r2, events = _second_router(a, audit)
        assert r2.recover_parent(PARENT, 30, ["O1.1"], cum_value=30 * 22990, acknowledged=True, pending=pending)
        await r2.start()
        tap(_ev(K.STATUS, child, leaves_qty=0, cum_qty=30, reason=RECONCILED, ord_status=int(Status.CANCELLED)))
        await asyncio.sleep(0.02)
        got = [(e.kind, e.cum_qty, e.reason_code, e.reason) for e in _mine(events)]
        await r2.stop()
        await a.stop()
        return got
    return asyncio.run(asyncio.wait_for(main(), 20))


def _answered_by_status(got, pending):
    assert got and got[-1][0] == K.STATUS and got[-1][3] == RECONCILED, (
        f"the OMS's {pending} in flight should be answered by a STATUS (it sends its request again), "
        f"not pre-empted by an unsolicited end: {got}")
    assert not any(kind in (K.CANCELED, K.REPLACED) for kind, *_ in got), got


@pytest.mark.parametrize("pending", ["cancel", "replace"])
def test_a_lost_cancel_row_does_not_end_the_parent_behind_the_clients_request(pending):
    """The row is lost anyway (no write-ahead): the request in flight explains the cancel."""
    audit = NoWriteAheadAudit()

    def lose(keep):
        del audit.rows[keep:]

    _answered_by_status(_kill_then_restart(pending, audit, lose), pending)


@pytest.mark.parametrize("pending", ["cancel", "replace"])
def test_the_cancel_row_of_a_child_at_a_venue_process_survives_a_kill(pending):
    audit = QueuedOrAheadAudit()
    kept = []

    def lose(keep):
        audit.kill_after(keep)
        kept.extend(r[4] for r in audit.rows[keep:])

    got = _kill_then_restart(pending, audit, lose)
    assert "child_cancel_sent" in kept, f"the cancel's row was only queued, lost with the process: {kept}"
    _answered_by_status(got, pending)


def test_a_cancel_at_an_in_process_venue_is_not_written_ahead():
    """Nothing of an in-process venue outlives the process: its cancel rows stay queued (no
    write per cancel on the loop)."""
    async def main():
        audit = QueuedOrAheadAudit()
        a = InProcessVenue("VENUE-A", MASTER, SystemClock(), asyncio.get_running_loop())
        await a.start()
        r, _ = _router([a], audit)
        await r.start()
        r.new_order(VenueOrder("O1.1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 100, 23000))
        await asyncio.sleep(0.01)
        r.cancel_order("O1.1", "O1.2")
        rows = [(i in audit.durable, row[4]) for i, row in enumerate(audit.rows)]
        await r.stop()
        await a.stop()
        return rows
    rows = asyncio.run(asyncio.wait_for(main(), 20))
    assert (False, "child_cancel_sent") in rows and not any(d for d, _ in rows), rows


@pytest.mark.parametrize("how", ["deferred", "restored_without_a_cancel_row"])
def test_a_venue_expiry_while_settling_with_a_replace_pending_still_ends_the_parent(how):
    """The guard above is only for a cancel of ours whose row may be lost: not for a replace the
    client sends while the parent is settled (nothing of the previous run behind it: this run's
    cancels are known), nor for one in flight at the restart when the trail's cancel rows are
    written ahead (no ``child_cancel_sent``: the router never cancelled the child). The venue
    expiring the child then ends the parent EXPIRED; routing the new leaves would put an order
    its venue expired back in the market."""
    got, sent = _settled_then_venue_cancels(int(Reason.EXPIRED), "expired", pending="" if how == "deferred" else "replace",
                                            replace_while_settling=how == "deferred")
    assert sent == 0, f"a parent its venue expired was routed again: {got}"
    assert any(kind == K.CANCELED and code == int(Reason.EXPIRED) for kind, _, code, _ in got), got
