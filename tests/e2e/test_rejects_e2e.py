"""Bad input and every pre-trade risk rejection, with the exact FIX answers."""
from __future__ import annotations


from omskit import make_config
from fixpeer import FixPeer
from crossbook.app.server import Server


async def started(tmp_path, **extra) -> Server:
    server = Server(make_config(str(tmp_path), **extra))
    await server.start()
    return server


def test_bad_input_exact_answers(tmp_path, run):
    async def scenario():
        server = await started(tmp_path)
        try:
            async with FixPeer(server.fix_port, "FIRM1") as p:
                # Side (54) missing: the dictionary requires it -> session Reject 373=1, 371=54.
                p.send("D", [(11, "m1"), (55, "AAPL"), (60, "20260101-00:00:00"), (38, 1), (40, "2"), (44, "1")])
                await p.expect("3", t371="54", t373="1", t372="D", t58="Required tag missing")
                # Price missing on a limit order: conditionally required -> BusinessMessageReject 380=5.
                p.send("D", [(11, "m2"), (55, "AAPL"), (54, "1"), (60, "20260101-00:00:00"), (38, 1), (40, "2")])
                j = await p.expect("j", t380="5", t372="D")
                assert b"Price (44)" in j[58]
                # StopPx missing on a stop order.
                p.send("D", [(11, "m3"), (55, "AAPL"), (54, "1"), (60, "20260101-00:00:00"), (38, 1), (40, "3")])
                assert b"StopPx" in (await p.expect("j", t380="5"))[58]
                # Unknown instrument -> ExecutionReport Rejected, OrdRejReason 1.
                cl = p.new_order(symbol="NOPE", qty=1, price="1.00")
                rej = await p.expect_exec("8", "8", t11=cl, t103="1", t14="0", t151="0")
                assert b"unknown instrument" in rej[58]
                # Off-tick price -> OrdRejReason 99, Text names the price and the tick.
                cl = p.new_order(qty=1, price="230.005")
                rej = await p.expect_exec("8", "8", t11=cl, t103="99")
                assert b"230.005" in rej[58] and b"0.01" in rej[58]
                # Wrong lot (EUR/USD lots of 1000) -> OrdRejReason 13.
                cl = p.new_order(symbol="EUR/USD", qty=1500, price="1.08000")
                rej = await p.expect_exec("8", "8", t11=cl, t103="13")
                assert b"1500" in rej[58] and b"1000" in rej[58]
                # Fractional quantity.
                cl = p.new_order(qty="1.5", price="230.00")
                await p.expect_exec("8", "8", t11=cl, t103="13")
                # Account of another firm -> OrdRejReason 15.
                cl = p.new_order(qty=1, price="230.00", extra=[(1, "ACC3")])
                await p.expect_exec("8", "8", t11=cl, t103="15")
                # Option without its contract fields -> unknown symbol; with them -> accepted.
                cl = p.new_order(qty=1, price="32.50", extra=[(167, "OPT")])
                await p.expect_exec("8", "8", t11=cl, t103="1")
                cl = p.new_order(qty=1, price="32.50",
                                 extra=[(167, "OPT"), (200, "202612"), (202, "200"), (201, "1")])
                await p.expect_exec("A", "A", t11=cl, t167="OPT", t202="200", t201="1")
                await p.expect_exec("0", "0", t11=cl)
                # Duplicate ClOrdID -> OrdRejReason 6, OrderID NONE; the original order is untouched.
                again = p.new_order(qty=1, price="32.50", cl_ord_id=cl,
                                    extra=[(167, "OPT"), (200, "202612"), (202, "200"), (201, "1")])
                await p.expect_exec("8", "8", t11=again, t103="6", t37="NONE")
                # Unknown OrigClOrdID: cancel -> 9 with 102=1 434=1; replace -> 434=2.
                c = p.cancel("never-sent")
                await p.expect("9", t11=c, t41="never-sent", t37="NONE", t102="1", t434="1")
                r = p.replace("never-sent", qty=5, price="230.00")
                await p.expect("9", t11=r, t41="never-sent", t37="NONE", t102="1", t434="2")
                # Cancel with a ClOrdID already used -> 102=6 (duplicate).
                c = p.cancel(cl, cl_ord_id=cl)
                await p.expect("9", t11=cl, t102="6", t434="1")
                # Cancel while a cancel is pending is refused with 102=3 (the venue answers later).
                c1 = p.cancel(cl)
                c2 = p.cancel(cl)
                await p.expect_exec("6", "6", t11=c1)
                await p.expect("9", t11=c2, t102="3", t39="6")
                await p.expect_exec("4", "4", t11=c1)
        finally:
            await server.stop()
    run(scenario())


RISK_FIRMS = [
    {"name": "FIRM1", "default_account": "ACC1", "accounts": [
        {"name": "ACC1", "restricted": ["MSFT"],
         "limits": {"max_order_qty": 1000, "max_order_notional": "100000", "collar_pct": "5",
                    "daily_credit_limit": "120000", "max_position": 800, "max_open_orders": 3}},
        {"name": "ACC2", "currency": "EUR", "limits": {"market_orders_allowed": False}}]},
    {"name": "FIRM2", "default_account": "ACC3", "accounts": [{"name": "ACC3"}]},
    {"name": "FIRM42", "default_account": "ACC42", "accounts": [{"name": "ACC42"}]},
]
RISK_SESSIONS = [
    {"comp_id": "FIRM1", "firm": "FIRM1"},
    {"comp_id": "FIRM2", "firm": "FIRM2", "msg_rate_per_sec": 3},
    {"comp_id": "FIRM42", "firm": "FIRM42", "begin_string": "FIX.4.2"},
]


def test_every_risk_rejection_names_the_check(tmp_path, run):
    async def scenario():
        server = await started(tmp_path, firms=RISK_FIRMS, sessions=RISK_SESSIONS,
                               risk={"restricted": ["BTC-USD"]})
        try:
            async with FixPeer(server.fix_port, "FIRM1") as p:
                async def rejected(check: str, **order) -> bytes:
                    cl = p.new_order(**order)
                    msg = await p.expect_exec("8", "8", t11=cl, t103="3")
                    assert msg[58].startswith(b"risk: " + check.encode()), msg[58]
                    return msg[58]

                text = await rejected("max order quantity", qty=2000, price="230.00")
                assert b"2,000 > limit 1,000" in text
                await rejected("max order notional", qty=500, price="230.00")
                await rejected("price collar", qty=10, price="250.00")
                await rejected("restricted instrument", symbol="MSFT", qty=1, price="420.00")
                await rejected("restricted instrument", symbol="BTC-USD", qty=1, price="90000.00")
                await rejected("max position", symbol="EUR/USD", qty=1000, price="1.08000")
                cl = p.new_order(qty=1, price=None, extra=[(1, "ACC2")])
                msg = await p.expect_exec("8", "8", t11=cl, t103="3")
                assert b"market orders not allowed" in msg[58]
                opened = []
                for _ in range(3):
                    cl = p.new_order(qty=100, price="229.00")
                    await p.expect_exec("A", "A", t11=cl)
                    await p.expect_exec("0", "0", t11=cl)
                    opened.append(cl)
                await rejected("max open orders", qty=10, price="229.00")
                # Daily credit: 2 x 100 x 229 = 45,800 open + 400 x 229 = 91,600 > 120,000.
                c = p.cancel(opened.pop())
                await p.expect_exec("6", "6", t11=c)
                await p.expect_exec("4", "4", t11=c)
                await rejected("daily credit limit", qty=400, price="229.00")
                # Kill switch (account): open orders canceled, new ones blocked; then firm, global.
                canceled = server.manager.kill("account", "ACC1")
                assert canceled == 2
                for _ in range(2):
                    m = await p.expect_exec("4", "4")
                    assert m[58] == b"canceled by kill switch"
                await rejected("kill switch on for account ACC1", qty=1, price="229.00")
                server.manager.kill("account", "ACC1", on=False)
                server.manager.kill("firm", "FIRM1")
                await rejected("kill switch on for firm FIRM1", qty=1, price="229.00")
                server.manager.kill("firm", "FIRM1", on=False)
                server.manager.kill("global")
                await rejected("kill switch on (global)", qty=1, price="229.00")
                server.manager.kill("global", on=False)
                cl = p.new_order(qty=1, price="229.00")
                await p.expect_exec("A", "A", t11=cl)
            async with FixPeer(server.fix_port, "FIRM2") as q:
                for _ in range(6):
                    q.new_order(qty=1, price="229.00")
                texts = [m[58] for m in await q.drain() if m[150] == b"8"]
                assert texts and all(t.startswith(b"risk: message rate exceeded") for t in texts)
        finally:
            await server.stop()
    run(scenario())


def test_notional_is_converted_to_the_account_currency(tmp_path, run):
    """ACC2 (EUR, max order notional 1,000,000 EUR, EURUSD 1.08): 4,500 AAPL @ 230.00 is
    1,035,000 USD = 958,333 EUR (accepted); 4,800 is 1,104,000 USD = 1,022,222 EUR (rejected)."""
    async def scenario():
        server = await started(tmp_path)
        try:
            async with FixPeer(server.fix_port, "FIRM1") as p:
                ok = p.new_order(qty=4500, price="230.00", extra=[(1, "ACC2")])
                await p.expect_exec("A", "A", t11=ok, t1="ACC2")
                await p.expect_exec("0", "0", t11=ok)
                bad = p.new_order(qty=4800, price="230.00", extra=[(1, "ACC2")])
                msg = await p.expect_exec("8", "8", t11=bad, t103="3")
                assert msg[58].startswith(b"risk: max order notional exceeded: 1,022,222.22 EUR > limit 1,000,000.00 EUR")
        finally:
            await server.stop()
    run(scenario())


def test_random_bad_new_orders_always_get_an_answer(tmp_path, run):
    """Seeded random garbage in the fields of NewOrderSingles: every one is answered (session
    Reject, BusinessMessageReject or ExecutionReport) and the session stays up."""
    import random
    rng = random.Random(2026)
    values = {
        55: ["AAPL", "MSFT", "ESZ6", "EUR/USD", "BTC-USD", "", "NOPE", "AAPL 20261218 C200", "\u00e9"],
        54: ["1", "2", "5", "9", "", "x"],
        38: ["1", "0", "-5", "1.5", "abc", "1000", "99999999999999999999", "1e3"],
        40: ["1", "2", "3", "4", "P", ""],
        44: ["230.00", "230.001", "-1", "0", "abc", "1e2", "999999999999999"],
        99: ["231.00", "x", ""],
        59: ["0", "1", "3", "4", "6", "2", "Z"],
        111: ["1", "0", "1000000"],
        18: ["6", "6 G", "Q"],
        1: ["ACC1", "ACC2", "ACC3", "NOPE"],
        100: ["VENUE-A", "VENUE-B", "NOPE"],
        126: ["20990101-00:00:00", "bad"],
        167: ["CS", "OPT", "FUT", "ZZZ"],
    }

    async def scenario():
        server = await started(tmp_path)
        try:
            async with FixPeer(server.fix_port, "FIRM1") as p:
                for i in range(150):
                    fields = [(11, f"R{i}"), (60, "20260101-00:00:00")]
                    for tag, choices in values.items():
                        if tag in (55, 54, 38, 40) or rng.random() < 0.3:
                            v = rng.choice(choices)
                            if v != "" or rng.random() < 0.3:
                                fields.append((tag, v))
                    p.send("D", fields)
                    answers = []
                    while not answers or answers[-1].msg_type == b"8" and answers[-1][150] in (b"A", b"0", b"F"):
                        m = await p.expect(timeout=5)
                        answers.append(m)
                        if m.msg_type == b"8" and m[150] in (b"A", b"0", b"F") and m[39] in (b"0", b"2", b"1"):
                            break
                    assert answers[0].msg_type in (b"3", b"j", b"8"), answers
                    await p.drain(0.01)
                assert p.initiator.is_logged_on()
        finally:
            await server.stop()
    run(scenario(), timeout=120)
