"""Write-ahead for a router's children: a real `crossbook serve` whose router (SOR, direct to a
FIX venue) sends a child to a real `crossbook venue` process is SIGKILLed around that send, while
the router's audit writer thread commits nothing more (its background path, ``record``, is
stalled from the moment the test arms the server), then restarted.

The venue process outlives the OMS. Before write-ahead the child's ``child_sent`` row was only
queued for the writer thread when the child left: after the kill the trail did not hold it,
``SmartRouter.restore_parent`` could not take the parent back, and the restart routed it again,
so a second child went to the venue beside the first, working for nobody (a seller then filled
20 instead of 10: double fill). Now the router commits its children's rows in one write
(``AuditLog.record_durable``) before they leave:

* killed after the child reached the venue: the restart takes the parent back with its child,
  the client hears New, a resend gets the status, the cancel reaches the venue; the venue holds
  nothing the OMS does not know.
* killed after the write but before the child left: the restart takes the parent back, the venue
  is asked at logon, does not know the child, and the parent ends (Canceled) with nothing at the
  venue.
"""
from __future__ import annotations

import sqlite3
from functools import partial

import pytest

import omskit
from omskit import KillRig, reports, resend_buy
from servekit import http_json

until = partial(omskit.until, timeout=omskit.PROCESS_WAIT_S)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# `crossbook serve` that, once armed by SIGUSR1, stalls the routers' audit writer thread (rows
# recorded through SqliteAuditLog.record are held, never committed, as when the thread has not
# run yet) and SIGKILLs itself either right before the next FixVenue.new_order (KILL_AT before)
# or when the venue's first answer after it arrives (KILL_AT after, before the OMS sees it). Only
# public interfaces are hooked (SqliteAuditLog.record, FixVenue.new_order, FixVenue.from_app).
KILL_AROUND_CHILD_SEND = """
import asyncio, os, signal, sys
import crossbook.app.server as server_module
from crossbook.routing.audit import SqliteAuditLog
from crossbook.routing.fix_venue import FixVenue

KILL_AT = "%s"
state = {"armed": False, "sent": False}
held = []
_start = server_module.Server.start
_record = SqliteAuditLog.record
_new_order = FixVenue.new_order
_from_app = FixVenue.from_app

async def start(self):
    await _start(self)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, lambda: state.update(armed=True))

def record(self, row):
    if state["armed"]:
        held.append(row)   # the writer thread never gets it
        return
    _record(self, row)

def new_order(self, order):
    if state["armed"] and not state["sent"]:
        if KILL_AT == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        state["sent"] = True
    _new_order(self, order)

def from_app(self, session, message):
    if state["sent"] and message.msg_type == b"8":
        os.kill(os.getpid(), signal.SIGKILL)
    return _from_app(self, session, message)

server_module.Server.start = start
SqliteAuditLog.record = record
FixVenue.new_order = new_order
FixVenue.from_app = from_app
from crossbook.app.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _kill_around_child_send(tmp_path, run, kill_at: str) -> tuple[KillRig, str]:
    """Run the armed server, send a control order (VENUE-A direct, acknowledged before arming) and
    the victim (through SOR); the server dies around the victim's child send. Returns the rig and
    the victim's ClOrdID."""
    rig = KillRig.start(tmp_path, KILL_AROUND_CHILD_SEND % kill_at)
    _control, victim = rig.kill_after_armed_send(
        run, lambda peer: peer.new_order(qty=10, price="229.00", extra=[(100, "VENUE-A")]),
        lambda peer, _control: peer.new_order(qty=10, price="229.00", extra=[(100, "SOR")]),
        f"{kill_at} the child's send")
    return rig, victim


def _trail(tmp_path) -> list[tuple[str, str]]:
    """(event, venue) of the committed audit rows about sending and restoring children, in order:
    the rows the armed server held back never reached the file."""
    conn = sqlite3.connect(f"file:{tmp_path / 'audit.db'}?mode=ro", uri=True)
    try:
        return list(conn.execute("SELECT event, venue FROM routing_audit WHERE event IN "
                                 "('child_sent', 'parent_restored') ORDER BY seq"))
    finally:
        conn.close()


def test_a_child_at_a_venue_process_is_taken_back_after_a_kill_before_its_audit_commit(tmp_path, run):
    rig, cl = _kill_around_child_send(tmp_path, run, "after")
    with rig.restarted():
        async def after_restart() -> None:
            async with rig.firm1_after_restart() as peer:
                # Taken back with its child (live at the venue): acknowledged, never Rejected.
                await until(lambda: any(m.get(150) == b"0" for m in reports(peer, cl)), f"{cl} New after restart")
                # A possible resend of it gets its status, not a second parent.
                resend_buy(peer, cl, "SOR")
                await until(lambda: any(m.get(150) == b"I" for m in reports(peer, cl)), f"{cl} status (ExecType I)")
                assert not [m for m in reports(peer, cl) if m.get(150) == b"8"]
                # The OMS controls the child the router holds at the venue: the cancel reaches it.
                peer.cancel(cl, qty=10)
                await until(lambda: any(m.get(150) == b"4" for m in reports(peer, cl)), f"{cl} canceled")

        run(after_restart(), timeout=60)
        # Only the control rests at the venue now (before: the re-routed parent's second child
        # too, and a seller took 20).
        assert rig.seller_takes(run, "229.00") == 10
        rows = [o for o in http_json(rig.http_port, "/orders")["orders"] if cl in o["cl_ord_ids"]]
        assert [o["state"] for o in rows] == ["canceled"], rows
        # Taken back from the trail (the child's row was written ahead), not routed again.
        assert _trail(tmp_path)[:2] == [("child_sent", "VENUE-A"), ("parent_restored", "")]


def test_a_child_written_ahead_but_never_sent_is_reconciled_at_logon(tmp_path, run):
    rig, cl = _kill_around_child_send(tmp_path, run, "before")
    with rig.restarted():
        async def after_restart() -> None:
            async with rig.firm1_after_restart() as peer:
                # The trail holds the child, the venue never got it: asked at logon, it is
                # unknown there, and the parent ends with nothing filled.
                await until(lambda: any(m.get(39) in (b"4", b"8") for m in reports(peer, cl)), f"{cl} ended")
                assert not [m for m in reports(peer, cl) if m.get(150) == b"F"]

        run(after_restart(), timeout=60)
        assert rig.seller_takes(run, "229.00") == 10
        rows = [o for o in http_json(rig.http_port, "/orders")["orders"] if cl in o["cl_ord_ids"]]
        assert [(o["state"], o["cum_qty"]) for o in rows] in ([("canceled", 0)], [("rejected", 0)]), rows
        assert _trail(tmp_path) == [("child_sent", "VENUE-A"), ("parent_restored", "")]
