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

from functools import partial

import pytest

import omskit
from omskit import KillRig, reports, resend_buy
from servekit import http_json

until = partial(omskit.until, timeout=omskit.PROCESS_WAIT_S)

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


@pytest.mark.parametrize("destination", ["VENUE-A", "SOR"])
def test_an_order_at_a_venue_process_survives_a_kill_right_after_it_left(tmp_path, run, destination):
    rig = KillRig.start(tmp_path, KILL_AFTER_VENUE_SEND)
    # The server kills itself when the venue answers the victim: the venue has the order.
    _control, victim = rig.kill_after_armed_send(
        run, lambda peer: peer.new_order(qty=10, price="229.00", extra=[(100, "VENUE-A")]),
        lambda peer, _control: peer.new_order(qty=10, price="229.00", extra=[(100, destination)]),
        "after the venue answered")

    with rig.restarted():
        async def after_restart() -> None:
            async with rig.firm1_after_restart() as peer:
                cl = victim
                # Reconciled at the venue's logon: live there, so acknowledged (New), never Rejected.
                await until(lambda: any(m.get(150) in (b"0", b"8") for m in reports(peer, cl)),
                            f"{cl} New after restart")
                answers = [(m.get(150), m.get(37), m.get(58)) for m in reports(peer, cl)]
                assert b"8" not in [a[0] for a in answers], answers
                # The client sends it once more as a possible resend: it gets the order's status,
                # not a second order or a duplicate reject.
                resend_buy(peer, cl, destination)
                await until(lambda: any(m.get(150) == b"I" for m in reports(peer, cl)), f"{cl} status (ExecType I)")
                mine = reports(peer, cl)
                assert not [m for m in mine if m.get(150) == b"8"], [m for m in mine if m.get(150) == b"8"]
                assert {m.get(37) for m in mine if m.get(150) in (b"0", b"I")} == {mine[-1].get(37)}
                # The OMS controls the order it holds at the venue: the venue cancels it.
                peer.cancel(cl, qty=10)
                await until(lambda: any(m.get(150) == b"4" for m in reports(peer, cl)), f"{cl} canceled at the venue")

        run(after_restart(), timeout=60)
        # The venue holds one buy at 229.00 now, the control's 10: nothing else works there.
        assert rig.seller_takes(run, "229.00") == 10
        rows = [o for o in http_json(rig.http_port, "/orders")["orders"] if victim in o["cl_ord_ids"]]
        # One order, the one the venue held, ended by the client's cancel.
        assert [o["state"] for o in rows] == ["canceled"], rows


def test_a_replace_at_a_venue_process_survives_a_kill_right_after_it_left(tmp_path, run):
    """The same kill with an OrderCancelReplaceRequest: the new venue ClOrdID was journaled before
    the replace left and the venue applied it, but its answer died with the OMS. After the restart
    the client hears Replaced (no OrderCancelReject) and the OMS holds what the venue holds."""
    rig = KillRig.start(tmp_path, KILL_AFTER_VENUE_SEND)
    order, rep = rig.kill_after_armed_send(
        run, lambda peer: peer.new_order(qty=10, price="228.00", extra=[(100, "VENUE-A")]),
        lambda peer, order: peer.replace(order, qty=20, price="228.50"),
        "after the venue answered")

    with rig.restarted():
        async def after_restart() -> None:
            async with rig.firm1_after_restart() as peer:
                await until(lambda: any(m.get(150) == b"5" for m in reports(peer, rep))
                            or any(m.msg_type == b"9" and m.get(11) == rep.encode() for m in peer.app.all),
                            f"{rep} answered after restart")
                refused = [m.get(58) for m in peer.app.all if m.msg_type == b"9" and m.get(11) == rep.encode()]
                assert not refused, refused

        run(after_restart(), timeout=60)
        # The venue holds 20 at 228.50: a seller's IOC takes exactly that, and the OMS agrees.
        assert rig.seller_takes(run, "228.50") == 20
        rows = [o for o in http_json(rig.http_port, "/orders")["orders"] if order in o["cl_ord_ids"]]
        assert [(o["state"], o["qty"], o["cum_qty"], o["price"]) for o in rows] == [("filled", 20, 20, "228.50")], rows
