"""A router's parent after the OMS is SIGKILLed: a real `crossbook serve` routing to a real
`crossbook venue` process (VENUE-A over FIX), killed at a chosen point, then restarted.

The venue process outlives the OMS, and so do the children the router left there. The restart
must never route a parent again while children of the previous run may be live (the client's
order would be over-filled), must count the fills those children made (CumQty / AvgPx exact),
and must finish what was in flight as the client asked:

* a parent of a router without ``audit_path`` (BEST in the example config): its children are
  found all the same (the trail defaults to the storage folder) and it continues with them;
* a cancel in flight (PendingCancel heard, the cancel never left), with a fill the OMS never
  heard: the child is cancelled, the fill reported, the client hears Canceled with the right
  CumQty and AvgPx, and nothing is left at the venue;
* a replace in flight (never left): the old child is cancelled, the replace is done (Replaced)
  and only the new quantity works at the venue;
* a child written ahead that never left: the client, who never heard New, hears Rejected (not
  New then Canceled).

Before, the first three left orphans at the venue (a seller then took 20 instead of 10, 3 beyond
a canceled order, 20 instead of 6), and the last acknowledged an order nobody had.
"""
from __future__ import annotations

import asyncio
import os
import signal
from functools import partial

import pytest

import omskit
from omskit import KillRig, reports
from servekit import fix_venue_toml, firms_toml, http_json

until = partial(omskit.until, timeout=omskit.PROCESS_WAIT_S)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

# `crossbook serve` that SIGUSR1 arms: from then on the routers' audit writer thread commits
# nothing (rows recorded through SqliteAuditLog.record are held, as when it has not run yet), and
# the server SIGKILLs itself at the point MODE names:
#   child_left  - at the venue's first answer after a child was sent (before the OMS sees it);
#   child_held  - right before a child is sent (it was written ahead, it never leaves);
#   cancel      - a child cancel is swallowed (never leaves); killed at the next fill of a router
#                 child the venue reports (before the OMS sees it);
#   replace     - right before a child replace is sent.
# Only public interfaces are hooked (SqliteAuditLog.record, FixVenue.new_order / cancel_order /
# replace_order / from_app).
ARMED_SERVE = """
import asyncio, os, signal, sys
import crossbook.app.server as server_module
from crossbook.routing.audit import SqliteAuditLog
from crossbook.routing.fix_venue import FixVenue

MODE = "%s"
state = {"armed": False, "sent": False, "swallowed": False}
held = []
_start = server_module.Server.start
_record = SqliteAuditLog.record
_new_order, _cancel_order, _replace_order = FixVenue.new_order, FixVenue.cancel_order, FixVenue.replace_order
_from_app = FixVenue.from_app

def die():
    os.kill(os.getpid(), signal.SIGKILL)

async def start(self):
    await _start(self)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, lambda: state.update(armed=True))

def record(self, row):
    if state["armed"]:
        held.append(row)
        return
    _record(self, row)

def new_order(self, order):
    if state["armed"] and MODE == "child_held":
        die()
    if state["armed"] and MODE == "child_left":
        state["sent"] = True
    _new_order(self, order)

def cancel_order(self, cl, cancel_cl):
    if state["armed"] and MODE == "cancel":
        state["swallowed"] = True
        return
    _cancel_order(self, cl, cancel_cl)

def replace_order(self, cl, new_cl, qty, price):
    if state["armed"] and MODE == "replace":
        die()
    _replace_order(self, cl, new_cl, qty, price)

def from_app(self, session, message):
    if message.msg_type == b"8":
        if state["sent"]:
            die()
        if state["swallowed"] and message.get(150) == b"F" and (message.get(11) or b"").startswith(b"SOR-"):
            die()
    return _from_app(self, session, message)

server_module.Server.start = start
SqliteAuditLog.record = record
FixVenue.new_order, FixVenue.cancel_order, FixVenue.replace_order = new_order, cancel_order, replace_order
FixVenue.from_app = from_app
from crossbook.app.cli import main
sys.exit(main(sys.argv[1:]))
"""


def restart_body(venue_port: int, audit) -> str:
    """FIRM1 and FIRM2, the FIX venue VENUE-A, the in-process VENUE-B, SOR (direct to VENUE-A,
    audit trail ``audit``) and BEST (best price over VENUE-A, no audit_path: as in the example
    config)."""
    return ("\n" + firms_toml() + fix_venue_toml("VENUE-A", venue_port)
            + f'[[venues]]\nname = "VENUE-B"\n'
              f'[[routers]]\nname = "SOR"\npolicy = "direct"\nvenues = ["VENUE-A"]\naudit_path = "{audit}"\n'
              f'[[routers]]\nname = "BEST"\npolicy = "best_price"\nvenues = ["VENUE-A"]\n')


def _run_until_killed(rig: KillRig, run, steps) -> dict:
    """Start the armed server; once VENUE-A is up, ``await steps(peer, proc, ids)`` (FIRM1's
    peer; arm with ``os.kill(proc.pid, SIGUSR1)``), then the server must die of SIGKILL."""
    ids: dict = {}

    async def steps_with_ids(peer, proc) -> None:
        await steps(peer, proc, ids)

    rig.run_until_killed(run, steps_with_ids, timeout=90)
    return ids


def _killed_after_an_armed_new_order(rig: KillRig, run, router: str) -> str:
    """Arm the server (SIGUSR1), then FIRM1 sends a buy of 10 at 229.00 to ``router``; the
    server must die of SIGKILL at the point its mode names. Returns the order's ClOrdID."""
    async def steps(peer, proc, ids) -> None:
        os.kill(proc.pid, signal.SIGUSR1)
        await asyncio.sleep(0.3)
        ids["cl"] = peer.new_order(qty=10, price="229.00", extra=[(100, router)])

    return _run_until_killed(rig, run, steps)["cl"]


async def _new(peer, cl: str) -> None:
    await until(lambda: any(m.get(150) == b"0" for m in reports(peer, cl)), f"{cl} New")


async def _sell(rig: KillRig, qty: int, price: str) -> int:
    """FIRM2's IOC to sell ``qty`` at ``price`` at VENUE-A (through the server): what it filled."""
    return await rig.seller_fills(qty, price)


def _order(rig: KillRig, cl: str) -> dict:
    rows = [o for o in http_json(rig.http_port, "/orders")["orders"] if cl in o["cl_ord_ids"]]
    assert len(rows) == 1, rows
    return rows[0]


def test_a_best_price_parent_without_audit_path_continues_with_its_child(tmp_path, run):
    rig = KillRig.start(tmp_path, ARMED_SERVE % "child_left", restart_body)
    cl = _killed_after_an_armed_new_order(rig, run, "BEST")
    with rig.restarted():
        async def after_restart() -> None:
            async with rig.firm1_after_restart() as peer:
                await _new(peer, cl)
                # One child works for it at VENUE-A, not two: a seller of 30 takes 10.
                assert await _sell(rig, 30, "229.00") == 10
                await until(lambda: any(m.get(39) == b"2" for m in reports(peer, cl)), f"{cl} filled")
                assert sum(int(m[32]) for m in reports(peer, cl) if m.get(150) == b"F") == 10

        run(after_restart(), timeout=90)
        assert (_order(rig, cl)["state"], _order(rig, cl)["cum_qty"]) == ("filled", 10)
    assert (tmp_path / "var" / "routing-audit.db").exists()


def test_a_cancel_in_flight_ends_canceled_with_the_fills_the_venue_made(tmp_path, run):
    rig = KillRig.start(tmp_path, ARMED_SERVE % "cancel", restart_body)

    async def steps(peer, proc, ids) -> None:
        cl = ids["cl"] = peer.new_order(qty=10, price="229.00", extra=[(100, "SOR")])
        await _new(peer, cl)
        assert await _sell(rig, 4, "229.00") == 4        # heard and journaled before the kill
        await until(lambda: any(m.get(14) == b"4" for m in reports(peer, cl)), f"{cl} filled 4")
        await asyncio.sleep(0.3)                         # the trail's rows so far are committed
        os.kill(proc.pid, signal.SIGUSR1)
        await asyncio.sleep(0.3)
        ids["cxl"] = peer.cancel(cl, qty=10)             # it never leaves for the venue
        await until(lambda: any(m.get(150) == b"6" for m in reports(peer, cl)), f"{cl} PendingCancel")
        # A seller fills 3 more of the child at the venue; the server dies at that report.
        async with omskit.FixPeer(rig.fix_port, "FIRM2") as seller:
            seller.new_order(side="2", qty=3, price="229.00", extra=[(59, "3"), (100, "VENUE-A")])
            await until(lambda: proc.poll() is not None, "the server to die at the child's fill")

    ids = _run_until_killed(rig, run, steps)
    cl, cxl = ids["cl"], ids["cxl"]
    with rig.restarted():
        async def after_restart() -> None:
            async with rig.firm1_after_restart() as peer:
                await until(lambda: any(m.get(150) == b"4" for m in reports(peer, cxl)), f"{cl} Canceled")
                end = next(m for m in reports(peer, cxl) if m.get(150) == b"4")
                # The 3 filled while the server died are reported, then the cancel as asked.
                assert (end.get(11), end.get(41), end.get(14), end.get(151)) == (
                    cxl.encode(), cl.encode(), b"7", b"0")
                assert float(end[6]) == 229.0
                # (This connection's reports: the 4 were heard before the kill.)
                fills = [(m.get(32), m.get(31), m.get(14)) for m in reports(peer, cl) if m.get(150) == b"F"]
                assert [(q, float(px), cum) for q, px, cum in fills] == [(b"3", 229.0, b"7")], fills
                assert not [m for m in reports(peer, cl) if m.get(150) == b"8"]
                # Nothing of it is left at the venue.
                assert await _sell(rig, 30, "229.00") == 0

        run(after_restart(), timeout=90)
        order = _order(rig, cl)
        assert (order["state"], order["cum_qty"]) == ("canceled", 7), order


def test_a_replace_in_flight_is_done_and_only_the_new_quantity_works(tmp_path, run):
    rig = KillRig.start(tmp_path, ARMED_SERVE % "replace", restart_body)

    async def steps(peer, proc, ids) -> None:
        cl = ids["cl"] = peer.new_order(qty=10, price="229.00", extra=[(100, "SOR")])
        await _new(peer, cl)
        await asyncio.sleep(0.3)
        os.kill(proc.pid, signal.SIGUSR1)
        await asyncio.sleep(0.3)
        ids["new"] = peer.replace(cl, qty=6, price="229.00")

    ids = _run_until_killed(rig, run, steps)
    cl, new = ids["cl"], ids["new"]
    with rig.restarted():
        async def after_restart() -> None:
            async with rig.firm1_after_restart() as peer:
                await until(lambda: any(m.get(150) in (b"5",) for m in reports(peer, new))
                            or any(m.msg_type == b"9" and m.get(11) == new.encode() for m in peer.app.all),
                            f"{new} answered")
                replaced = [m for m in reports(peer, new) if m.get(150) == b"5"]
                assert replaced and replaced[0].get(38) == b"6", [m.get(150) for m in reports(peer, new)]
                # Only the replaced quantity works at the venue (before: the old child and a
                # second one routed for the order again, 20).
                assert await _sell(rig, 30, "229.00") == 6
                await until(lambda: any(m.get(39) == b"2" for m in reports(peer, new)), f"{new} filled")

        run(after_restart(), timeout=90)
        order = _order(rig, new)
        assert (order["state"], order["cum_qty"], order["qty"]) == ("filled", 6, 6), order


def test_a_child_written_ahead_that_never_left_makes_the_order_rejected_not_new_then_canceled(tmp_path, run):
    rig = KillRig.start(tmp_path, ARMED_SERVE % "child_held", restart_body)
    cl = _killed_after_an_armed_new_order(rig, run, "SOR")
    with rig.restarted():
        async def after_restart() -> None:
            async with rig.firm1_after_restart() as peer:
                await until(lambda: any(m.get(39) in (b"4", b"8") for m in reports(peer, cl)), f"{cl} ended")
                got = [(m.get(150), m.get(39)) for m in reports(peer, cl) if m.get(150) != b"A"]   # PendingNew
                assert got == [(b"8", b"8")], got
                text = next(m for m in reports(peer, cl) if m.get(150) == b"8").get(58, b"").decode()
                assert "never received" in text and "restarted" in text, text

        run(after_restart(), timeout=90)
        assert _order(rig, cl)["state"] == "rejected"
