"""Every order lifecycle path over real FIX sessions on loopback against a real Server."""
from __future__ import annotations

import asyncio
from decimal import Decimal


from omskit import make_config
from fixpeer import FixPeer
from crossbook.app.server import Server


async def started(tmp_path, **extra) -> Server:
    server = Server(make_config(str(tmp_path), **extra))
    await server.start()
    return server


async def rest(peer: FixPeer, **kw) -> str:
    cl = peer.new_order(**kw)
    await peer.expect_exec("A", "A", t11=cl)
    await peer.expect_exec("0", "0", t11=cl)
    return cl


def test_fill_and_partial_fill_with_exact_avg_px(tmp_path, run):
    async def scenario():
        server = await started(tmp_path)
        try:
            async with FixPeer(server.fix_port, "FIRM1") as buyer, FixPeer(server.fix_port, "FIRM2") as seller:
                s1 = await rest(seller, side="2", qty=10, price="230.00")
                s2 = await rest(seller, side="2", qty=20, price="230.01")
                b = buyer.new_order(side="1", qty=40, price="230.01")
                await buyer.expect_exec("A", "A", t11=b)
                await buyer.expect_exec("0", "0", t11=b)
                first = await buyer.expect_exec("F", "1", t32="10", t31="230.00", t14="10", t151="30", t6="230",
                                                t30="VENUE-A")
                # 10 @ 230.00 + 20 @ 230.01 = 6900.20 / 30 = 230.00666...: AvgPx leaves rounded half to
                # even at the tick's 2 decimals + 6 (docs/oms.md), not as 28 digits.
                second = await buyer.expect_exec("F", "1", t32="20", t31="230.01", t14="30", t151="10",
                                                 t6="230.00666667")
                assert abs(Decimal(second[6].decode()) - Decimal("6900.20") / 30) < Decimal("0.000000005")
                assert first[17] != second[17]
                await seller.expect_exec("F", "2", t11=s1, t14="10", t151="0")
                await seller.expect_exec("F", "2", t11=s2, t14="20", t151="0")
                await buyer.quiet()
        finally:
            await server.stop()
    run(scenario())


def test_cancel_pending_cancel_then_canceled_and_too_late(tmp_path, run):
    async def scenario():
        server = await started(tmp_path)
        try:
            async with FixPeer(server.fix_port, "FIRM1") as p:
                cl = await rest(p, qty=100, price="229.00")
                c = p.cancel(cl)
                await p.expect_exec("6", "6", t11=c, t41=cl, t151="100")
                await p.expect_exec("4", "4", t11=c, t41=cl, t151="0", t14="0")
                c2 = p.cancel(c)
                await p.expect("9", t11=c2, t41=c, t434="1", t102="0", t39="4")
        finally:
            await server.stop()
    run(scenario())


def test_replace_down_keeps_priority_and_replace_up_loses_it(tmp_path, run):
    async def scenario():
        server = await started(tmp_path)
        try:
            async with FixPeer(server.fix_port, "FIRM1") as a, FixPeer(server.fix_port, "FIRM2") as b:
                first = await rest(a, qty=100, price="229.50")
                second = await rest(b, qty=100, price="229.50")
                r = a.replace(first, qty=60, price="229.50")
                await a.expect_exec("E", "E", t11=r, t41=first)
                await a.expect_exec("5", "0", t11=r, t41=first, t38="60", t151="60")
                # A sell of 60 must hit the replaced-down order first (priority kept).
                async with FixPeer(server.fix_port, "FIRM42", "FIX.4.2") as s:
                    sc = s.new_order(side="2", qty=60, price="229.50")
                    await s.expect("8", t11=sc, t150="A")
                    await s.expect("8", t11=sc, t150="0")
                    await s.expect("8", t11=sc, t150="2", t39="2", t20="0", t32="60")
                    await a.expect_exec("F", "2", t11=r, t14="60")
                    # Replace up (B 100 -> 150) loses priority: then a sell of 50 still hits B (alone).
                    up = b.replace(second, qty=150, price="229.50")
                    await b.expect_exec("E", "E", t11=up)
                    await b.expect_exec("5", "0", t11=up, t38="150", t151="150")
                    # Rejected replace: the filled order A cannot change.
                    bad = a.replace(r, qty=80, price="229.50")
                    await a.expect("9", t11=bad, t41=r, t434="2", t102="0", t39="2")
        finally:
            await server.stop()
    run(scenario())


def test_replace_priority_order_of_fills(tmp_path, run):
    async def scenario():
        server = await started(tmp_path)
        try:
            async with FixPeer(server.fix_port, "FIRM1") as a, FixPeer(server.fix_port, "FIRM2") as b:
                a1 = await rest(a, qty=100, price="229.50")
                b1 = await rest(b, qty=100, price="229.50")
                up = a.replace(a1, qty=120, price="229.50")   # up: goes behind B
                await a.expect_exec("E", "E")
                await a.expect_exec("5", "0", t11=up)
                async with FixPeer(server.fix_port, "FIRM42", "FIX.4.2") as s:
                    s.new_order(side="2", qty=100, price="229.50")
                    await b.expect_exec("F", "2", t11=b1)     # B first now
                    await a.quiet(0.2)
        finally:
            await server.stop()
    run(scenario())


def test_ioc_remainder_and_fok_kill(tmp_path, run):
    async def scenario():
        server = await started(tmp_path)
        try:
            async with FixPeer(server.fix_port, "FIRM1") as a, FixPeer(server.fix_port, "FIRM2") as b:
                await rest(b, side="2", qty=40, price="230.00")
                ioc = a.new_order(qty=100, price="230.00", extra=[(59, "3")])
                await a.expect_exec("A", "A", t11=ioc)
                seen = [await a.expect("8", t11=ioc) for _ in range(3)]
                kinds = [(m[150], m[39]) for m in seen]
                assert (b"F", b"1") in kinds and kinds[-1] == (b"4", b"4")
                assert seen[-1][58] == b"IOC remainder canceled" and seen[-1][14] == b"40"
                await b.expect_exec("F", "2")
                await rest(b, side="2", qty=40, price="230.00")
                fok = a.new_order(qty=100, price="230.00", extra=[(59, "4")])
                await a.expect_exec("A", "A", t11=fok)
                msgs = [await a.expect("8", t11=fok)]
                while msgs[-1][150] not in (b"4",):
                    msgs.append(await a.expect("8", t11=fok))
                assert msgs[-1][58] == b"FOK order could not be filled in full" and msgs[-1][14] == b"0"
        finally:
            await server.stop()
    run(scenario())


def test_stop_trigger_iceberg_post_only_and_self_trade(tmp_path, run):
    async def scenario():
        server = await started(tmp_path)
        try:
            async with FixPeer(server.fix_port, "FIRM1") as a, FixPeer(server.fix_port, "FIRM2") as b:
                # Stop buy at 231.00 triggers when a trade prints at 231.00.
                stop = a.new_order(qty=10, price=None, ord_type="3", extra=[(99, "231.00")])
                await a.expect_exec("A", "A", t11=stop)
                await a.expect_exec("0", "0", t11=stop, t99="231.00")
                await rest(b, side="2", qty=30, price="231.00")
                async with FixPeer(server.fix_port, "FIRM42", "FIX.4.2") as c:
                    c.new_order(qty=5, price="231.00")
                    for _ in range(3):
                        await c.expect("8")
                got = []
                while not got or got[-1][39] != b"2":
                    got.append(await a.expect("8", t11=stop))
                assert got[-1][31] == b"231.00" and got[-1][14] == b"10"
                fills = [m for m in await b.drain() if m[150] == b"F"]
                assert sum(int(m[32]) for m in fills) == 15
                # Iceberg: 50 with 10 shown.
                ice = await rest(b, symbol="MSFT", side="2", qty=50, price="421.00", extra=[(111, "10")])
                venue = server.venues["VENUE-A"]
                top = venue.top_of_book(server.config.instruments.by_symbol("MSFT"))
                assert top[2] == 42100 and top[3] == 10
                # Post-only that would cross: rejected.
                po = a.new_order(symbol="MSFT", qty=5, price="421.00", extra=[(18, "6")])
                await a.expect_exec("A", "A", t11=po)
                rej = await a.expect_exec("8", "8", t11=po)
                assert b"post" in rej[58].lower()
                # Self-trade prevention (ACC1 is cancel_taker): FIRM1 sells into its own bid.
                own = await rest(a, qty=5, price="229.00")
                taker = a.new_order(side="2", qty=5, price="229.00")
                await a.expect_exec("A", "A", t11=taker)
                msgs = [await a.expect("8", t11=taker)]
                while msgs[-1][39] not in (b"4", b"8"):
                    msgs.append(await a.expect("8", t11=taker))
                assert msgs[-1][58] == b"canceled by self-trade prevention"
                del ice, own
        finally:
            await server.stop()
    run(scenario())


def test_status_mass_status_mass_cancel(tmp_path, run):
    async def scenario():
        server = await started(tmp_path)
        try:
            async with FixPeer(server.fix_port, "FIRM1") as a:
                o1 = await rest(a, qty=10, price="229.00")
                o2 = await rest(a, symbol="MSFT", qty=10, price="419.00")
                a.send("H", [(11, o1), (55, "AAPL"), (54, "1")])
                await a.expect_exec("I", "0", t11=o1, t151="10")
                a.send("H", [(11, "nope"), (55, "AAPL"), (54, "1")])
                await a.expect_exec("I", "8", t37="NONE")
                a.send("AF", [(584, "ms1"), (585, "7")])
                r1 = await a.expect_exec("I", "0", t584="ms1", t911="2")
                r2 = await a.expect_exec("I", "0", t584="ms1", t911="2", t912="Y")
                assert {r1[11], r2[11]} == {o1.encode(), o2.encode()}
                a.send("q", [(11, "mc1"), (530, "1"), (55, "MSFT"), (60, "20260101-00:00:00")])
                await a.expect("r", t11="mc1", t530="1", t531="1", t533="1")
                await a.expect_exec("4", "4", t11=o2, t58="canceled by mass cancel")
                a.send("q", [(11, "mc2"), (530, "7"), (60, "20260101-00:00:00")])
                await a.expect("r", t11="mc2", t531="7", t533="1")
                await a.expect_exec("4", "4", t11=o1)
        finally:
            await server.stop()
    run(scenario())


def test_fix42_semantics(tmp_path, run):
    async def scenario():
        server = await started(tmp_path)
        try:
            async with FixPeer(server.fix_port, "FIRM42", "FIX.4.2") as a, FixPeer(server.fix_port, "FIRM2") as b:
                cl = a.new_order(qty=10, price="230.00")
                await a.expect("8", t11=cl, t150="A", t39="A", t20="0")
                await a.expect("8", t11=cl, t150="0", t39="0", t20="0")
                b.new_order(side="2", qty=4, price="230.00")
                await a.expect("8", t11=cl, t150="1", t39="1", t20="0", t32="4", t31="230.00")
                a.send("H", [(11, cl), (55, "AAPL"), (54, "1")])
                await a.expect("8", t11=cl, t150="1", t39="1", t20="3")
                # FIX 4.2 has no OrdRejReason 13: wrong lot -> 0
                bad = a.new_order(symbol="EUR/USD", qty=1500, price="1.08000")
                await a.expect("8", t11=bad, t150="8", t39="8", t103="0")
        finally:
            await server.stop()
    run(scenario())


def test_ex_destination_routes_to_the_named_venue(tmp_path, run):
    async def scenario():
        server = await started(tmp_path)
        try:
            async with FixPeer(server.fix_port, "FIRM1") as a, FixPeer(server.fix_port, "FIRM2") as b:
                await rest(b, side="2", qty=10, price="230.00", extra=[(100, "VENUE-B")])
                inst = server.config.instruments.by_symbol("AAPL")
                assert server.venues["VENUE-B"].top_of_book(inst)[2:] == (23000, 10)
                assert server.venues["VENUE-A"].top_of_book(inst)[2:] == (0, 0)
                # Without ExDestination the buy goes to the default venue (VENUE-A): no trade.
                await rest(a, qty=10, price="230.00")
                cl = a.new_order(qty=10, price="230.00", extra=[(100, "VENUE-B")])
                await a.expect_exec("A", "A", t11=cl)
                await a.expect_exec("0", "0", t11=cl)
                await a.expect_exec("F", "2", t11=cl, t30="VENUE-B")
                bad = a.new_order(qty=10, price="230.00", extra=[(100, "VENUE-Z")])
                msg = await a.expect_exec("8", "8", t11=bad, t103="99")
                assert b"VENUE-Z" in msg[58]
        finally:
            await server.stop()
    run(scenario())


def test_an_order_trades_against_background_liquidity(tmp_path, run):
    async def scenario():
        server = await started(tmp_path, venues=[
            {"name": "VENUE-A", "background": {"enabled": True, "rate": 50.0, "seed": 7}},
            {"name": "VENUE-B"}])
        try:
            async with FixPeer(server.fix_port, "FIRM1") as a:
                cl = a.new_order(qty=5, price="232.00")   # above the ladder around 230.00: marketable
                await a.expect_exec("A", "A", t11=cl)
                msgs = await a.drain(0.5)
                assert msgs and msgs[-1][39] == b"2" and msgs[-1][14] == b"5", msgs
                assert all(m[30] == b"VENUE-A" for m in msgs if m[150] == b"F")
        finally:
            await server.stop()
    run(scenario())


def test_cancel_on_disconnect_per_session(tmp_path, run):
    async def scenario():
        server = await started(tmp_path, sessions=[
            {"comp_id": "FIRM1", "firm": "FIRM1"},
            {"comp_id": "FIRM2", "firm": "FIRM2", "cancel_on_disconnect": True},
            {"comp_id": "FIRM42", "firm": "FIRM42", "begin_string": "FIX.4.2"}])
        try:
            async with FixPeer(server.fix_port, "FIRM1") as a:
                keep = await rest(a, qty=10, price="229.00")
            async with FixPeer(server.fix_port, "FIRM2") as b:
                gone = await rest(b, qty=10, price="229.00")
            await asyncio.sleep(0.05)
            await server.manager.drain()
            orders = {o.cl_ord_id: o for o in server.manager.orders.values()}
            assert orders[keep].state.value == "new"
            assert orders[gone].state.value == "canceled" and orders[gone].text == "canceled on disconnect"
            # The report waits in the session's store: a client that does not reset gets it by resend.
            assert server.risk.usage(server.config.directory.accounts["ACC3"].index)["open_orders"] == 0
            # Shutting the server down is not a disconnect: FIRM2's order rests through it.
            b = FixPeer(server.fix_port, "FIRM2")
            await b.__aenter__()
            survivor = await rest(b, qty=10, price="229.00")
        finally:
            await server.stop()
        await b.initiator.stop(logout_grace=0.2)
        orders = {o.cl_ord_id: o for o in server.manager.orders.values()}
        assert orders[survivor].state.value == "new"
    run(scenario())
