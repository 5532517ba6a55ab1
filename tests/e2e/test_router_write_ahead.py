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

import asyncio
import os
import signal
import sqlite3
import time

import pytest

from fixpeer import FixPeer
from servekit import free_port, http_json, launch_server, start_server, stop_server, write_server_config
from test_write_ahead import reports, server_body, until, venue_up
from venuekit import VenueProcess, venue_config
from crossbook.fix.store import FileStore

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


def _kill_around_child_send(tmp_path, run, kill_at: str):
    """Run the armed server, send a control order (VENUE-A direct, acknowledged before arming) and
    the victim (through SOR); the server dies around the victim's child send."""
    venue = VenueProcess(venue_config(tmp_path, "VENUE-A"))
    fix_port, http_port = free_port(), free_port()
    config = write_server_config(tmp_path / "server.toml", fix_port=fix_port, http_port=http_port,
                                 storage=tmp_path / "var", body=server_body(venue.port, tmp_path / "audit.db"))
    script = tmp_path / "kill_around_child_send.py"
    script.write_text(KILL_AROUND_CHILD_SEND % kill_at)
    client_dir = str(tmp_path / "client")
    ids: dict[str, str] = {}
    try:
        proc = launch_server([str(script), "serve", "--config", str(config)], tmp_path / "server1.log")
        try:
            async def before_kill() -> None:
                await until(lambda: venue_up(http_port), "VENUE-A to log on")
                peer = FixPeer(fix_port, "FIRM1", store=FileStore(client_dir, "FIRM1", now=time.time()), reset=False)
                await peer.__aenter__()
                try:
                    ids["control"] = peer.new_order(qty=10, price="229.00", extra=[(100, "VENUE-A")])
                    await until(lambda: any(m.get(150) == b"0" for m in reports(peer, ids["control"])),
                                "control New")
                    os.kill(proc.pid, signal.SIGUSR1)
                    await asyncio.sleep(0.3)
                    ids["victim"] = peer.new_order(qty=10, price="229.00", extra=[(100, "SOR")])
                    await until(lambda: proc.poll() is not None, f"the server to be killed {kill_at} the child's send")
                    assert proc.returncode == -signal.SIGKILL, (proc.returncode,
                                                                (tmp_path / "server1.log").read_text())
                finally:
                    try:
                        await peer.initiator.stop(logout_grace=0.2)
                    except (RuntimeError, ConnectionError, OSError):
                        pass

            run(before_kill(), timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    except BaseException:
        venue.stop()
        raise
    return config, venue, http_port, fix_port, client_dir, ids


def _seller_takes(fix_port: int, run) -> int:
    """A seller's IOC for 30 at 229.00 at VENUE-A: the quantity it fills is what rests there."""
    async def sell() -> int:
        async with FixPeer(fix_port, "FIRM2") as seller:
            ioc = seller.new_order(side="2", qty=30, price="229.00", extra=[(59, "3"), (100, "VENUE-A")])
            await until(lambda: any(m.get(39) in (b"2", b"4") for m in reports(seller, ioc)), f"{ioc} done")
            return sum(int(m[32]) for m in reports(seller, ioc) if m.get(150) == b"F")
    return run(sell(), timeout=60)


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
    config, venue, http_port, fix_port, client_dir, ids = _kill_around_child_send(tmp_path, run, "after")
    proc = start_server(config, tmp_path / "server2.log")
    try:
        async def after_restart() -> None:
            await until(lambda: venue_up(http_port), "VENUE-A to log on again")
            async with FixPeer(fix_port, "FIRM1", store=FileStore(client_dir, "FIRM1", now=time.time()),
                               reset=False) as peer:
                cl = ids["victim"]
                # Taken back with its child (live at the venue): acknowledged, never Rejected.
                await until(lambda: any(m.get(150) == b"0" for m in reports(peer, cl)), f"{cl} New after restart")
                # A possible resend of it gets its status, not a second parent.
                peer.initiator.send(None, "D", [(11, cl), (55, "AAPL"), (54, "1"), (60, "20260101-00:00:00.000"),
                                                (38, "10"), (40, "2"), (44, "229.00"), (100, "SOR")],
                                    header=[(97, "Y")])
                await until(lambda: any(m.get(150) == b"I" for m in reports(peer, cl)), f"{cl} status (ExecType I)")
                assert not [m for m in reports(peer, cl) if m.get(150) == b"8"]
                # The OMS controls the child the router holds at the venue: the cancel reaches it.
                peer.cancel(cl, qty=10)
                await until(lambda: any(m.get(150) == b"4" for m in reports(peer, cl)), f"{cl} canceled")

        run(after_restart(), timeout=60)
        # Only the control rests at the venue now (before: the re-routed parent's second child
        # too, and a seller took 20).
        assert _seller_takes(fix_port, run) == 10
        rows = [o for o in http_json(http_port, "/orders")["orders"] if ids["victim"] in o["cl_ord_ids"]]
        assert [o["state"] for o in rows] == ["canceled"], rows
        # Taken back from the trail (the child's row was written ahead), not routed again.
        assert _trail(tmp_path)[:2] == [("child_sent", "VENUE-A"), ("parent_restored", "")]
    finally:
        stop_server(proc)
        venue.stop()


def test_a_child_written_ahead_but_never_sent_is_reconciled_at_logon(tmp_path, run):
    config, venue, http_port, fix_port, client_dir, ids = _kill_around_child_send(tmp_path, run, "before")
    proc = start_server(config, tmp_path / "server2.log")
    try:
        async def after_restart() -> None:
            await until(lambda: venue_up(http_port), "VENUE-A to log on again")
            async with FixPeer(fix_port, "FIRM1", store=FileStore(client_dir, "FIRM1", now=time.time()),
                               reset=False) as peer:
                cl = ids["victim"]
                # The trail holds the child, the venue never got it: asked at logon, it is
                # unknown there, and the parent ends with nothing filled.
                await until(lambda: any(m.get(39) in (b"4", b"8") for m in reports(peer, cl)), f"{cl} ended")
                assert not [m for m in reports(peer, cl) if m.get(150) == b"F"]

        run(after_restart(), timeout=60)
        assert _seller_takes(fix_port, run) == 10
        rows = [o for o in http_json(http_port, "/orders")["orders"] if ids["victim"] in o["cl_ord_ids"]]
        assert [(o["state"], o["cum_qty"]) for o in rows] in ([("canceled", 0)], [("rejected", 0)]), rows
        assert _trail(tmp_path) == [("child_sent", "VENUE-A"), ("parent_restored", "")]
    finally:
        stop_server(proc)
        venue.stop()
