"""Write-ahead for a venue in its own process: a real `crossbook serve` with a FIX venue (a real
`crossbook venue` process) is SIGKILLed right after one of its NewOrderSingles reached the venue,
while its journal takes no more batches, then restarted.

The venue process outlives the OMS and keeps the order live. Before write-ahead the order left
the OMS before the batch holding it was journaled: the restart did not know it, the client's
resend (PossDupFlag=Y, asked for by the inbound mark) entered it again under the same OrderID and
venue ClOrdID, the venue refused that as a duplicate and the client heard Rejected, while the
original stayed live at the venue, working for nobody (double fill risk). With write-ahead the
batch holding the order (with its venue ClOrdID and the id counters) is durable before the
NewOrderSingle leaves: the restart finds it PENDING_NEW, the venue connector reconciles it at
logon (New), the resend gets its status (ExecType I) and the order can be canceled at the venue.

The same through a router whose child goes to the venue process (its audit trail committed, the
OMS journal not): before, the resend was routed again as a new parent, so a second child went to
the venue beside the first, which nobody canceled; now the router takes the journaled parent back
with its child. Either way, a seller's IOC afterwards finds only the one other resting buy.
"""
from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from fixpeer import FixPeer
from servekit import free_port, http_json, launch_server, start_server, stop_server, write_server_config
from venuekit import VenueProcess, venue_config
from crossbook.fix.store import FileStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# `crossbook serve` that, once armed by SIGUSR1, lets the next FixVenue.new_order (or replace_order)
# go out and then
# stops its journal (batches are taken and never made durable) and SIGKILLs itself when the venue's
# answer arrives (after committing the routers' audit trails): the venue has the order, the OMS
# durably has only what was journaled before the NewOrderSingle was handed to the venue. Only
# public interfaces are hooked (Venue.new_order / replace_order, the FIX Application's from_app, the journal's
# submit(), SqliteAuditLog.sync()).
KILL_AFTER_VENUE_SEND = """
import asyncio, os, signal, sys
import crossbook.app.server as server_module
from crossbook.routing.fix_venue import FixVenue

state = {"armed": False, "sent": False, "server": None}
_start = server_module.Server.start
_new_order = FixVenue.new_order
_replace_order = FixVenue.replace_order
_from_app = FixVenue.from_app

async def start(self):
    state["server"] = self
    await _start(self)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, lambda: state.update(armed=True))

def sent(self):
    if state["armed"] and not state["sent"]:
        state["sent"] = True
        state["server"].journal.submit = lambda batch, on_durable: None

def new_order(self, order):
    _new_order(self, order)
    sent(self)

def replace_order(self, *args):
    _replace_order(self, *args)
    sent(self)

def from_app(self, session, message):
    if state["sent"] and message.msg_type == b"8":
        for audit in state["server"]._audit_logs:  # the router's trail is committed, the journal is not
            audit.sync()
        os.kill(os.getpid(), signal.SIGKILL)
    return _from_app(self, session, message)

server_module.Server.start = start
FixVenue.new_order = new_order
FixVenue.replace_order = replace_order
FixVenue.from_app = from_app
from crossbook.app.cli import main
sys.exit(main(sys.argv[1:]))
"""


def server_body(venue_port: int, audit: Path) -> str:
    return f"""
[[firms]]
name = "FIRM1"
[[firms.accounts]]
name = "ACC1"
limits = {{ max_order_qty = 100000, collar_pct = "10", max_open_orders = 100000 }}
[[firms]]
name = "FIRM2"
[[firms.accounts]]
name = "ACC3"
[[sessions]]
comp_id = "FIRM1"
[[sessions]]
comp_id = "FIRM2"
[[venues]]
name = "VENUE-A"
kind = "fix"
host = "127.0.0.1"
port = {venue_port}
target_comp_id = "VENUE-A"
heartbeat_s = 5
reconnect_min_s = 0.1
reconnect_max_s = 0.5
[[venues]]
name = "VENUE-B"
[[routers]]
name = "SOR"
policy = "direct"
venues = ["VENUE-A"]
audit_path = "{audit}"
"""


async def until(pred, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def venue_up(http_port: int) -> bool:
    return any(v["name"] == "VENUE-A" and v["up"] for v in http_json(http_port, "/venues")["venues"])


def reports(peer: FixPeer, cl: str) -> list:
    return [m for m in peer.app.all if m.msg_type == b"8" and (m.get(11) == cl.encode() or m.get(41) == cl.encode())]


@pytest.mark.parametrize("destination", ["VENUE-A", "SOR"])
def test_an_order_at_a_venue_process_survives_a_kill_right_after_it_left(tmp_path, run, destination):
    venue = VenueProcess(venue_config(tmp_path, "VENUE-A"))
    fix_port, http_port = free_port(), free_port()
    config = write_server_config(tmp_path / "server.toml", fix_port=fix_port, http_port=http_port,
                                 storage=tmp_path / "var",
                                 body=server_body(venue.port, tmp_path / "audit.db"))
    script = tmp_path / "kill_after_venue_send.py"
    script.write_text(KILL_AFTER_VENUE_SEND)
    client_dir = str(tmp_path / "client")
    proc = launch_server([str(script), "serve", "--config", str(config)], tmp_path / "server1.log")
    control: list[str] = []
    victim: list[str] = []
    try:
        async def before_kill() -> None:
            await until(lambda: venue_up(http_port), "VENUE-A to log on")
            store = FileStore(client_dir, "FIRM1", now=time.time())
            peer = FixPeer(fix_port, "FIRM1", store=store, reset=False)
            await peer.__aenter__()
            try:
                control.append(peer.new_order(qty=10, price="229.00", extra=[(100, "VENUE-A")]))
                await until(lambda: any(m.get(150) == b"0" for m in reports(peer, control[0])), "control New")
                os.kill(proc.pid, signal.SIGUSR1)
                await asyncio.sleep(0.3)
                victim.append(peer.new_order(qty=10, price="229.00", extra=[(100, destination)]))
                # The server kills itself when the venue answers: the venue has the order.
                await until(lambda: proc.poll() is not None, "the server to be killed after the venue answered")
                assert proc.returncode == -signal.SIGKILL, (proc.returncode, (tmp_path / "server1.log").read_text())
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

    proc = start_server(config, tmp_path / "server2.log")
    try:
        async def after_restart() -> None:
            await until(lambda: venue_up(http_port), "VENUE-A to log on again")
            store = FileStore(client_dir, "FIRM1", now=time.time())
            async with FixPeer(fix_port, "FIRM1", store=store, reset=False) as peer:
                cl = victim[0]
                # Reconciled at the venue's logon: live there, so acknowledged (New), never Rejected.
                await until(lambda: any(m.get(150) in (b"0", b"8") for m in reports(peer, cl)),
                            f"{cl} New after restart")
                answers = [(m.get(150), m.get(37), m.get(58)) for m in reports(peer, cl)]
                assert b"8" not in [a[0] for a in answers], answers
                # The client sends it once more as a possible resend (PossResend, 97=Y, a header
                # field): it gets the order's status, not a second order or a duplicate reject.
                peer.initiator.send(None, "D", [(11, cl), (55, "AAPL"), (54, "1"), (60, "20260101-00:00:00.000"),
                                                (38, "10"), (40, "2"), (44, "229.00"), (100, destination)],
                                    header=[(97, "Y")])
                await until(lambda: any(m.get(150) == b"I" for m in reports(peer, cl)), f"{cl} status (ExecType I)")
                mine = reports(peer, cl)
                assert not [m for m in mine if m.get(150) == b"8"], [m for m in mine if m.get(150) == b"8"]
                assert {m.get(37) for m in mine if m.get(150) in (b"0", b"I")} == {mine[-1].get(37)}
                # The OMS controls the order it holds at the venue: the venue cancels it.
                peer.cancel(cl, qty=10)
                await until(lambda: any(m.get(150) == b"4" for m in reports(peer, cl)), f"{cl} canceled at the venue")
            # The venue holds one buy at 229.00 now, the control's 10: nothing else works there.
            async with FixPeer(fix_port, "FIRM2") as seller:
                ioc = seller.new_order(side="2", qty=30, price="229.00", extra=[(59, "3"), (100, "VENUE-A")])
                await until(lambda: any(m.get(39) in (b"2", b"4") for m in reports(seller, ioc)), f"{ioc} done")
                assert sum(int(m[32]) for m in reports(seller, ioc) if m.get(150) == b"F") == 10

        run(after_restart(), timeout=60)
        rows = [o for o in http_json(http_port, "/orders")["orders"] if victim[0] in o["cl_ord_ids"]]
        # One order, the one the venue held, ended by the client's cancel.
        assert [o["state"] for o in rows] == ["canceled"], rows
    finally:
        stop_server(proc)
        venue.stop()


def test_a_replace_at_a_venue_process_survives_a_kill_right_after_it_left(tmp_path, run):
    """The same kill with an OrderCancelReplaceRequest: the new venue ClOrdID was journaled before
    the replace left and the venue applied it, but its answer died with the OMS. After the restart
    the client hears Replaced (no OrderCancelReject) and the OMS holds what the venue holds."""
    venue = VenueProcess(venue_config(tmp_path, "VENUE-A"))
    fix_port, http_port = free_port(), free_port()
    config = write_server_config(tmp_path / "server.toml", fix_port=fix_port, http_port=http_port,
                                 storage=tmp_path / "var",
                                 body=server_body(venue.port, tmp_path / "audit.db"))
    script = tmp_path / "kill_after_venue_send.py"
    script.write_text(KILL_AFTER_VENUE_SEND)
    client_dir = str(tmp_path / "client")
    proc = launch_server([str(script), "serve", "--config", str(config)], tmp_path / "server1.log")
    ids: dict[str, str] = {}
    try:
        async def before_kill() -> None:
            await until(lambda: venue_up(http_port), "VENUE-A to log on")
            store = FileStore(client_dir, "FIRM1", now=time.time())
            peer = FixPeer(fix_port, "FIRM1", store=store, reset=False)
            await peer.__aenter__()
            try:
                ids["order"] = peer.new_order(qty=10, price="228.00", extra=[(100, "VENUE-A")])
                await until(lambda: any(m.get(150) == b"0" for m in reports(peer, ids["order"])), "New")
                os.kill(proc.pid, signal.SIGUSR1)
                await asyncio.sleep(0.3)
                ids["replace"] = peer.replace(ids["order"], qty=20, price="228.50")
                await until(lambda: proc.poll() is not None, "the server to be killed after the venue answered")
                assert proc.returncode == -signal.SIGKILL, (proc.returncode, (tmp_path / "server1.log").read_text())
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

    proc = start_server(config, tmp_path / "server2.log")
    try:
        async def after_restart() -> None:
            await until(lambda: venue_up(http_port), "VENUE-A to log on again")
            store = FileStore(client_dir, "FIRM1", now=time.time())
            async with FixPeer(fix_port, "FIRM1", store=store, reset=False) as peer:
                rep = ids["replace"]
                await until(lambda: any(m.get(150) == b"5" for m in reports(peer, rep))
                            or any(m.msg_type == b"9" and m.get(11) == rep.encode() for m in peer.app.all),
                            f"{rep} answered after restart")
                refused = [m.get(58) for m in peer.app.all if m.msg_type == b"9" and m.get(11) == rep.encode()]
                assert not refused, refused
            # The venue holds 20 at 228.50: a seller's IOC takes exactly that, and the OMS agrees.
            async with FixPeer(fix_port, "FIRM2") as seller:
                ioc = seller.new_order(side="2", qty=30, price="228.50", extra=[(59, "3"), (100, "VENUE-A")])
                await until(lambda: any(m.get(39) in (b"2", b"4") for m in reports(seller, ioc)), f"{ioc} done")
                assert sum(int(m[32]) for m in reports(seller, ioc) if m.get(150) == b"F") == 20

        run(after_restart(), timeout=60)
        rows = [o for o in http_json(http_port, "/orders")["orders"] if ids["order"] in o["cl_ord_ids"]]
        assert [(o["state"], o["qty"], o["cum_qty"], o["price"]) for o in rows] == [("filled", 20, 20, "228.50")], rows
    finally:
        stop_server(proc)
        venue.stop()
