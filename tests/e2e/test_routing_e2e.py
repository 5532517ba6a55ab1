"""Routers configured in `[[routers]]`, reached by FIX clients through a real Server (in-process
venues, real loopback FIX, real SQLite): ExDestination naming a router, an instrument's default
router, best price and direct policies, failover when a venue is down, cancel and replace of a
routed order, and GET /venues."""
from __future__ import annotations

import asyncio
import json
import urllib.request

from fixpeer import FixPeer
from omskit import make_config, until

from crossbook.app.server import Server

ROUTERS = [
    {"name": "SOR", "policy": "sweep", "venues": ["VENUE-A", "VENUE-B"], "rest_venue": "VENUE-B",
     "instruments": ["AAPL"]},
    {"name": "BEST", "policy": "best_price", "venues": ["VENUE-A", "VENUE-B"]},
    {"name": "ONLY-A", "policy": "direct", "venues": ["VENUE-A"]},
]


def execs(peer: FixPeer, cl: str | None = None) -> list:
    return [m for m in peer.app.all if m.msg_type == b"8" and (cl is None or cl.encode() in (m.get(11), m.get(41)))]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:   # in a thread: the server runs on this loop
        return json.loads(resp.read())


async def acked(peer: FixPeer, cl: str) -> None:
    await until(lambda: any(m.get(150) == b"0" for m in execs(peer, cl)), f"{cl} acknowledged")


async def server_with_routers(tmp_path, http: bool = False) -> Server:
    extra = {"routers": ROUTERS}
    if http:
        extra["http"] = {"enabled": True, "port": 0}
    server = Server(make_config(str(tmp_path), **extra))
    await server.start()
    return server


def test_router_names_policies_and_instrument_default(tmp_path, run):
    async def scenario():
        server = await server_with_routers(tmp_path, http=True)
        a, b = server.venues["VENUE-A"], server.venues["VENUE-B"]
        try:
            async with FixPeer(server.fix_port, "FIRM1") as c1, FixPeer(server.fix_port, "FIRM2") as c2:
                # FIRM2's offers: A 230.02, B 230.01 (B is better).
                for px, dest in (("230.02", "VENUE-A"), ("230.01", "VENUE-B")):
                    await acked(c2, c2.new_order(side="2", qty=100, price=px, extra=[(100, dest)]))
                # BEST: the whole order to B, the better ask.
                best = c1.new_order(qty=30, price="230.05", extra=[(100, "BEST"), (59, "3")])
                await until(lambda: execs(c1, best) and execs(c1, best)[-1].get(39) == b"2", "BEST filled")
                fill = [m for m in execs(c1, best) if m.get(150) == b"F"]
                assert [(m.get(32), m.get(31)) for m in fill] == [(b"30", b"230.01")]
                assert server.manager.order(execs(c1, best)[0].get(37).decode()).venue == "BEST"
                # ONLY-A (direct): at A's price although B is better.
                direct = c1.new_order(qty=10, price="230.05", extra=[(100, "ONLY-A"), (59, "3")])
                await until(lambda: execs(c1, direct) and execs(c1, direct)[-1].get(39) == b"2", "direct filled")
                assert [m.get(31) for m in execs(c1, direct) if m.get(150) == b"F"] == [b"230.02"]
                # AAPL without ExDestination: its default router SOR sweeps B (70 left) then A.
                swept = c1.new_order(qty=120, price="230.02", extra=[(59, "3")])
                await until(lambda: execs(c1, swept) and execs(c1, swept)[-1].get(39) == b"2", "swept")
                fills = [m for m in execs(c1, swept) if m.get(150) == b"F"]
                assert [(m.get(32), m.get(31)) for m in fills] == [(b"70", b"230.01"), (b"50", b"230.02")]
                # (230.01 x 70 + 230.02 x 50) / 120 = 230.014166...: tick decimals + 6, half to even
                assert fills[-1].get(6) == b"230.01416667"
                assert server.manager.order(fills[0].get(37).decode()).venue == "SOR"
                # MSFT has no router: the default venue stays VENUE-A.
                msft = c1.new_order(symbol="MSFT", qty=5, price="400.00")
                await acked(c1, msft)
                assert server.manager.order(execs(c1, msft)[0].get(37).decode()).venue == "VENUE-A"
                # A name that is neither a venue nor a router.
                bad = c1.new_order(qty=5, price="230.00", extra=[(100, "NOWHERE")])
                await until(lambda: any(m.get(150) == b"8" for m in execs(c1, bad)), "rejected")
                rej = execs(c1, bad)[-1]
                assert b"ExDestination 'NOWHERE' does not list AAPL" in rej.get(58)
                assert b"SOR" in rej.get(58) and b"BEST" in rej.get(58)
            venues = (await asyncio.to_thread(get_json, f"http://127.0.0.1:{server.http_port}/venues"))["venues"]
            assert [(v["name"], v["kind"], v["up"]) for v in venues] == [
                ("VENUE-A", "in_process", True), ("VENUE-B", "in_process", True), ("SOR", "router", True),
                ("BEST", "router", True), ("ONLY-A", "router", True)]
            assert venues[2]["policy"] == "sweep" and venues[2]["rest_venue"] == "VENUE-B"
            assert (a.is_up, b.is_up) == (True, True)
        finally:
            await server.stop()

    run(scenario())


def test_failover_and_direct_reject_when_a_venue_is_down(tmp_path, run):
    async def scenario():
        server = await server_with_routers(tmp_path)
        a = server.venues["VENUE-A"]
        try:
            async with FixPeer(server.fix_port, "FIRM1") as c1, FixPeer(server.fix_port, "FIRM2") as c2:
                for px, dest in (("230.01", "VENUE-A"), ("230.02", "VENUE-B")):
                    await acked(c2, c2.new_order(side="2", qty=100, price=px, extra=[(100, dest)]))
                a.set_up(False)
                await asyncio.sleep(0.15)              # > the router's watch_s (0.05 s): A seen down
                sweep = c1.new_order(qty=150, price="230.02", extra=[(100, "SOR")])   # DAY
                await until(lambda: any(m.get(150) == b"F" for m in execs(c1, sweep)), "filled at B")
                await until(lambda: server.venues["VENUE-B"].top_of_book(
                    server.config.instruments.by_symbol("AAPL"))[:2] == (23002, 50), "remainder resting at B")
                fills = [m for m in execs(c1, sweep) if m.get(150) == b"F"]
                assert [(m.get(32), m.get(31), m.get(151)) for m in fills] == [(b"100", b"230.02", b"50")]
                direct = c1.new_order(qty=10, price="230.05", extra=[(100, "ONLY-A")])
                await until(lambda: any(m.get(150) == b"8" for m in execs(c1, direct)), "direct rejected")
                assert b"venue ONLY-A is down" in execs(c1, direct)[-1].get(58)
                plain = c1.new_order(qty=10, price="230.05", extra=[(100, "VENUE-A")])
                await until(lambda: any(m.get(150) == b"8" for m in execs(c1, plain)), "venue rejected")
                assert execs(c1, plain)[-1].get(58) == b"venue VENUE-A is down"
                # The routed order is one order: replace down, then cancel, through its children.
                rep = c1.replace(sweep, qty=120, price="230.02")
                await until(lambda: any(m.get(150) == b"5" for m in execs(c1, rep)), "replaced")
                r = [m for m in execs(c1, rep) if m.get(150) == b"5"][0]
                assert (r.get(38), r.get(14), r.get(151)) == (b"120", b"100", b"20")
                can = c1.cancel(rep, qty=120)
                await until(lambda: any(m.get(150) == b"4" for m in execs(c1, can)), "canceled")
                c = [m for m in execs(c1, can) if m.get(150) == b"4"][0]
                assert (c.get(14), c.get(151), c.get(39)) == (b"100", b"0", b"4")
                assert server.venues["VENUE-B"].top_of_book(server.config.instruments.by_symbol("AAPL"))[:2] == (0, 0)
        finally:
            await server.stop()

    run(scenario())
