"""Cancel and cancel/replace requests resent with PossResend (97=Y) or PossDupFlag (43=Y, with
OrigSendingTime) over a real loopback FIX session to a real Server: once their ClOrdID is used
on the session, the client gets the order's current status (ExecutionReport 150=I; 20=3 on FIX
4.2), never an
OrderCancelReject it could take for the fate of its request; the same ClOrdID sent again without
either flag is still a duplicate (OrderCancelReject 102=6, 2 on FIX 4.2)."""
from __future__ import annotations

import time

import pytest
from fixpeer import FixPeer
from omskit import make_config

from crossbook.app.server import Server
from crossbook.fix.messages import format_timestamp


def fields_of(peer: FixPeer, msg_type: str, orig: str, cl: str, qty: int, price: str | None) -> list:
    """The body FixPeer.cancel / FixPeer.replace send, to send it once more with a header flag."""
    fields: list = [(41, orig), (11, cl)]
    if msg_type == "G" and peer.begin_string == "FIX.4.2":
        fields.append((21, "1"))
    fields += [(55, "AAPL"), (54, "1"), (60, "20260101-00:00:00.000"), (38, str(qty))]
    if msg_type == "G":
        fields += [(40, "2"), (44, price)]
    return fields


async def expect_status(peer: FixPeer, ord_status: str, **tags):
    """An order status report: 150=I on FIX 4.4; on 4.2 ExecTransType 20=3 (status) and 150 = 39."""
    if peer.begin_string == "FIX.4.2":
        return await peer.expect_exec(ord_status, ord_status, t20="3", **tags)
    return await peer.expect_exec("I", ord_status, **tags)


@pytest.mark.parametrize("comp_id, begin", [("FIRM1", "FIX.4.4"), ("FIRM42", "FIX.4.2")])
def test_resent_cancel_and_replace_get_the_orders_status(tmp_path, run, comp_id, begin):
    async def scenario():
        server = Server(make_config(str(tmp_path)))
        await server.start()
        try:
            async with FixPeer(server.fix_port, comp_id, begin_string=begin) as peer:
                o1 = peer.new_order(qty=100, price="229.00")
                await peer.expect_exec("A", "A", t11=o1)
                new = await peer.expect_exec("0", "0", t11=o1)
                order_id = new.get(37).decode()

                r1 = peer.replace(o1, qty=150, price="228.50")
                await peer.expect_exec("E", "E", t11=r1, t41=o1)
                await peer.expect_exec("5", "0", t11=r1, t38=150)
                # The replace again, as a possible resend: the order's status, replaced once.
                peer.initiator.send(None, "G", fields_of(peer, "G", o1, r1, 150, "228.50"), header=[(97, "Y")])
                await expect_status(peer, "0", t37=order_id, t38=150, t151=150, t44="228.50")
                await peer.quiet(0.3)

                c1 = peer.cancel(r1, qty=150)
                await peer.expect_exec("6", "6", t11=c1, t41=r1)
                await peer.expect_exec("4", "4", t11=c1, t151=0)
                # The cancel again with PossDupFlag (at the next MsgSeqNum, so the session hands it
                # on): Canceled, not "cancel rejected".
                peer.initiator.send(None, "F", fields_of(peer, "F", r1, c1, 150, None),
                                    header=[(43, "Y"), (122, format_timestamp(time.time()))])
                await expect_status(peer, "4", t37=order_id, t151=0)
                await peer.quiet(0.3)

                # Without a flag the same ClOrdIDs are the client's error, rejected as duplicates.
                duplicate = "2" if begin == "FIX.4.2" else "6"
                peer.cancel(r1, qty=150, cl_ord_id=c1)
                await peer.expect("9", t11=c1, t102=duplicate, t434="1", t39="4")
                peer.replace(o1, qty=150, price="228.50", cl_ord_id=r1)
                await peer.expect("9", t11=r1, t102=duplicate, t434="2", t39="4")
                await peer.quiet(0.2)
            order = server.manager.order(order_id)
            assert (order.qty, order.cl_ord_ids, order.ord_status.value) == (150, [o1, r1, c1], "4")
        finally:
            await server.stop()

    run(scenario())
