"""Drop copy over real loopback FIX against a real Server: copies of every ExecutionReport of the
session's scope (all firms / some firms), with the session's own sequence numbers and 797=Y, and
copies made while the drop-copy session was logged out delivered by resend when it logs back on."""
from __future__ import annotations

import asyncio

from fixpeer import FixPeer
from omskit import make_config, until

from crossbook.app.server import Server
from crossbook.fix.store import MemoryStore

COPIED = (37, 11, 41, 17, 150, 39, 1, 55, 54, 38, 40, 44, 59, 32, 31, 30, 151, 14, 6, 103, 58)


def execs(peer: FixPeer) -> list:
    return [m for m in peer.app.all if m.msg_type == b"8"]


def test_drop_copy_scopes_contents_and_resend(tmp_path, run):
    async def scenario():
        server = Server(make_config(str(tmp_path), drop_copy=[{"comp_id": "DCALL"},
                                                              {"comp_id": "DC2", "firms": ["FIRM2"]}]))
        await server.start()
        try:
            dc_store = MemoryStore()
            async with FixPeer(server.fix_port, "FIRM1") as c1, FixPeer(server.fix_port, "FIRM2") as c2, \
                    FixPeer(server.fix_port, "DC2") as dc2:
                dc_all = FixPeer(server.fix_port, "DCALL", store=dc_store, reset=False)
                await dc_all.__aenter__()
                # FIRM2 rests an offer, FIRM1 takes part of it; FIRM1 also gets a reject.
                ask = c2.new_order(side="2", qty=100, price="230.00")
                await c2.expect_exec("A", "A")
                await c2.expect_exec("0", "0")
                buy = c1.new_order(side="1", qty=40, price="230.00")
                await until(lambda: len(execs(c2)) == 3 and len(execs(c1)) == 3, "the trade reported to both")
                c1.new_order(symbol="NOPE", qty=1)
                await until(lambda: len(execs(c1)) == 4, "the reject")
                await until(lambda: len(execs(dc_all)) == 7, "every copy on DCALL")
                client = execs(c1) + execs(c2)
                copies = {m.get(17): m for m in execs(dc_all)}
                assert sorted(copies) == sorted(m.get(17) for m in client)
                for m in client:
                    c = copies[m.get(17)]
                    assert [(t, c.get(t)) for t in COPIED] == [(t, m.get(t)) for t in COPIED], m.get(17)
                    assert (c.get(797), c.get(49), c.get(56)) == (b"Y", b"CROSSBOOK", b"DCALL")
                assert any(m.get(103) == b"1" for m in copies.values())          # the reject's reason, copied
                # DC2 sees FIRM2 only: its three reports, in order, with its own sequence numbers.
                await until(lambda: len(execs(dc2)) == 3, "FIRM2's copies on DC2")
                assert [m.get(17) for m in execs(dc2)] == [m.get(17) for m in execs(c2)]
                seqs = [int(m.get(34)) for m in execs(dc2)]
                assert seqs == list(range(seqs[0], seqs[0] + 3))
                await asyncio.sleep(0.3)
                assert len(execs(dc2)) == 3          # nothing of FIRM1's

                # DCALL logs out; FIRM1 cancels and FIRM2 cancels meanwhile; DCALL logs back on
                # with its stored sequence numbers and gets the missed copies by resend.
                await dc_all.__aexit__(None, None, None)
                c1_before, c2_before = len(execs(c1)), len(execs(c2))
                c1.cancel(buy, qty=40)     # already filled: an OrderCancelReject, not an ExecutionReport
                c2.cancel(ask, side="2")
                await until(lambda: len(execs(c2)) == c2_before + 2, "FIRM2's pending cancel and canceled")
                assert len(execs(c1)) == c1_before
                missed = [m.get(17) for m in execs(c2)[c2_before:]]
                dc_back = FixPeer(server.fix_port, "DCALL", store=dc_store, reset=False)
                await dc_back.__aenter__()
                try:
                    await until(lambda: [m.get(17) for m in execs(dc_back)] == missed, "resent copies")
                    assert all(m.get(43) == b"Y" and m.get(797) == b"Y" for m in execs(dc_back))
                    await asyncio.sleep(0.3)
                    assert len(execs(dc_back)) == len(missed)
                finally:
                    await dc_back.__aexit__(None, None, None)
                # Order entry on a drop-copy session is refused (it only receives).
                dc2.new_order(qty=1)
                await until(lambda: any(m.msg_type == b"j" for m in dc2.app.all), "BusinessMessageReject")
                assert [m.get(380) for m in dc2.app.all if m.msg_type == b"j"] == [b"4"]
            assert server.drop_copy.copies == {"DCALL": 9, "DC2": 5}
        finally:
            await server.stop()

    run(scenario())
