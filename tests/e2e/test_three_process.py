"""Three processes, as docs/routing-setup.md runs them: `crossbook serve` with two `crossbook venue`
processes as FIX venues, a sweep router over both, and a drop-copy session.

One scenario, real processes and loopback FIX throughout: orders routed to each venue by
ExDestination; a sweep across both through the router, aggregated into one client order; venue A
SIGKILLed in the middle of a sweep, restarted on the same port and stores, and the client told
what really happened (the child there died with A's books; the remainder then rests); the
drop-copy session receiving a copy of every ExecutionReport the clients got, field by field.
"""
from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path

import pytest

from fixpeer import FixPeer
from lossyproxy import LossyProxy
from crossbook.fix.store import MemoryStore
from omskit import PROCESS_WAIT_S, reports, runner, until
from servekit import (firms_toml, fix_venue_toml, free_port, http_json, start_server, stop_server,
                      write_server_config)
from venuekit import VenueProcess, venue_config

pytestmark = pytest.mark.timeout(90)

# Fields a drop copy must carry exactly as the client got them (header fields differ by design).
COPIED = (37, 11, 41, 17, 150, 39, 1, 55, 54, 38, 40, 44, 59, 32, 31, 30, 151, 14, 6, 103, 58)


def server_config(tmp: Path, port_a: int, port_b: int, fix_port: int, http_port: int, audit: str = "") -> Path:
    """The three-process server config; ``audit``: the SOR's audit_path (empty: in memory)."""
    body = ("\n" + firms_toml(limits=False) + fix_venue_toml("VENUE-A", port_a) + fix_venue_toml("VENUE-B", port_b)
            + f'[[routers]]\nname = "SOR"\npolicy = "sweep"\nvenues = ["VENUE-A", "VENUE-B"]\nrest_venue = "VENUE-B"\n'
              f'audit_path = "{audit}"\n[[drop_copy]]\ncomp_id = "DC1"\nscope = "all"\n')
    return write_server_config(tmp / "serve.toml", fix_port=fix_port, http_port=http_port, storage=tmp / "var",
                               body=body)


wait_for = partial(until, timeout=PROCESS_WAIT_S)


def venues_up(http_port: int) -> dict[str, bool]:
    return {v["name"]: v["up"] for v in http_json(http_port, "/venues")["venues"]}


def test_three_processes_route_sweep_fail_over_reconcile_and_drop_copy(tmp_path):
    va = VenueProcess(venue_config(tmp_path, "VENUE-A", faults="latency_us = 400000"))
    vb = VenueProcess(venue_config(tmp_path, "VENUE-B"))
    procs = [va, vb]
    fix_port, http_port = free_port(), free_port()
    server = start_server(server_config(tmp_path, va.port, vb.port, fix_port, http_port), tmp_path / "serve.log")

    async def scenario():
        await wait_for(lambda: venues_up(http_port) == {"VENUE-A": True, "VENUE-B": True, "SOR": True},
                       "both venues logged on")
        async with FixPeer(fix_port, "FIRM1") as c1, FixPeer(fix_port, "FIRM2") as c2, \
                FixPeer(fix_port, "DC1") as dc:
            # 1. ExDestination names each venue: FIRM2's offers rest at A and at B.
            ask_a = c2.new_order(side="2", qty=100, price="230.01", extra=[(100, "VENUE-A")])
            ask_b = c2.new_order(side="2", qty=50, price="230.02", extra=[(100, "VENUE-B")])
            for cl in (ask_a, ask_b):
                await wait_for(lambda: any(m.get(150) == b"0" for m in reports(c2, cl)), f"{cl} acknowledged")
            assert reports(c2, ask_a)[-1].get(37) != reports(c2, ask_b)[-1].get(37)
            rows = {o["cl_ord_id"]: o for o in http_json(http_port, "/orders?status=open")["orders"]}
            assert (rows[ask_a]["venue"], rows[ask_b]["venue"]) == ("VENUE-A", "VENUE-B")
            await asyncio.sleep(0.5)   # the venues' market data (X) reaches the router's book copy

            # 2. A sweep through the router: one client order, children at both venues.
            buy = c1.new_order(side="1", qty=150, price="230.02", extra=[(100, "SOR"), (59, "3")])  # IOC
            await wait_for(lambda: any(m.get(39) in (b"2", b"4") for m in reports(c1, buy)), "sweep done")
            fills = [m for m in reports(c1, buy) if m.get(150) == b"F"]
            assert sorted((m.get(32), m.get(31), m.get(30)) for m in fills) == [
                (b"100", b"230.01", b"VENUE-A"), (b"50", b"230.02", b"VENUE-B")]   # LastMkt: the venue, not SOR
            last = fills[-1]
            assert (last.get(14), last.get(151), last.get(39)) == (b"150", b"0", b"2")
            assert last.get(6) == b"230.01333333"   # 34,502 / 150 = 230.01333...: tick decimals + 6
            assert len({m.get(37) for m in reports(c1, buy)}) == 1   # one order for the client
            await wait_for(lambda: len([m for m in reports(c2) if m.get(150) == b"F"]) == 2, "FIRM2 filled")

            # 3. A killed in the middle of a sweep: FIRM2 offers at both, FIRM1 sweeps, A dies before
            #    its (400 ms late) answer; its child's fill dies with A's books.
            ask_a2 = c2.new_order(side="2", qty=100, price="230.03", extra=[(100, "VENUE-A")])
            ask_b2 = c2.new_order(side="2", qty=50, price="230.03", extra=[(100, "VENUE-B")])
            for cl in (ask_a2, ask_b2):
                await wait_for(lambda: any(m.get(150) == b"0" for m in reports(c2, cl)), f"{cl} acknowledged")
            await asyncio.sleep(0.5)
            sweep = c1.new_order(side="1", qty=200, price="230.03", extra=[(100, "SOR")])            # DAY
            await asyncio.sleep(0.15)
            va.kill()
            await wait_for(lambda: not venues_up(http_port)["VENUE-A"], "A reported down")
            down = next(v for v in http_json(http_port, "/venues")["venues"] if v["name"] == "VENUE-A")
            assert down["reason"].startswith("disconnected")
            await wait_for(lambda: any(m.get(150) == b"F" for m in reports(c1, sweep)), "B's fill")
            procs.append(VenueProcess(venue_config(tmp_path, "VENUE-A", faults="latency_us = 400000"),
                                      port=va.port))                                         # back, same stores
            await wait_for(lambda: venues_up(http_port)["VENUE-A"], "A back")
            # FIRM2's offer at A was in A's books: reconciliation tells its owner it is gone.
            await wait_for(lambda: any(m.get(150) == b"4" for m in reports(c2, ask_a2)), "A's offer reconciled",
                           timeout=20)
            gone = [m for m in reports(c2, ask_a2) if m.get(150) == b"4"][0]
            assert b"unknown at VENUE-A after reconnect" in gone.get(58)
            # The sweep: only B's 50 really filled; the remainder (150) rests at B, the rest venue.
            await wait_for(lambda: http_json(http_port, "/orders?status=open")["orders"] and any(
                o["cl_ord_id"] == sweep for o in http_json(http_port, "/orders?status=open")["orders"]), "sweep open")
            await asyncio.sleep(0.5)
            sweep_fills = [m for m in reports(c1, sweep) if m.get(150) == b"F"]
            assert [(m.get(32), m.get(31), m.get(14), m.get(151)) for m in sweep_fills] == [
                (b"50", b"230.03", b"50", b"150")]
            assert reports(c1, sweep)[-1].get(39) == b"1"
            c1.cancel(sweep, qty=200)
            await wait_for(lambda: any(m.get(150) == b"4" for m in reports(c1, sweep)), "sweep canceled")
            done = [m for m in reports(c1, sweep) if m.get(150) == b"4"][0]
            assert (done.get(14), done.get(151)) == (b"50", b"0")

            # 4. The drop copy: every ExecutionReport either client got, same content, 797=Y.
            await asyncio.sleep(0.3)
            client_reports = reports(c1) + reports(c2)
            copies = reports(dc)
            assert len(copies) == len(client_reports)
            by_exec = {m.get(17): m for m in copies}
            for m in client_reports:
                copy = by_exec[m.get(17)]
                assert [(t, copy.get(t)) for t in COPIED] == [(t, m.get(t)) for t in COPIED]
                assert copy.get(797) == b"Y" and copy.get(56) == b"DC1"

    try:
        runner(scenario(), timeout=75)
    finally:
        try:
            assert stop_server(server) == 0
        finally:
            for p in procs:
                p.kill()


def test_server_restart_keeps_orders_live_at_fix_venues(tmp_path):
    """An order resting at a venue process survives a restart of `crossbook serve`: the new server
    registers it (not entered again: the venue's book holds it once) and a later fill reaches
    its owner under the same OrderID."""
    va = VenueProcess(venue_config(tmp_path, "VENUE-A"))
    vb = VenueProcess(venue_config(tmp_path, "VENUE-B"))
    fix_port, http_port = free_port(), free_port()
    cfg = server_config(tmp_path, va.port, vb.port, fix_port, http_port)
    log = tmp_path / "serve.log"
    store = MemoryStore()

    async def before():
        await wait_for(lambda: venues_up(http_port)["VENUE-A"], "A logged on")
        async with FixPeer(fix_port, "FIRM2", store=store) as c2:
            ask = c2.new_order(side="2", qty=100, price="230.01", extra=[(100, "VENUE-A")])
            await wait_for(lambda: any(m.get(150) == b"0" for m in reports(c2, ask)), "ask acknowledged")
            return ask, reports(c2, ask)[-1].get(37)

    async def after(ask, order_id):
        await wait_for(lambda: venues_up(http_port)["VENUE-A"], "A logged on again")
        async with FixPeer(fix_port, "FIRM2", store=store, reset=False) as c2, FixPeer(fix_port, "FIRM1") as c1:
            await asyncio.sleep(0.5)    # A's market data after the logon
            buy = c1.new_order(side="1", qty=150, price="230.01", extra=[(100, "VENUE-A"), (59, "3")])
            await wait_for(lambda: any(m.get(39) in (b"1", b"2", b"4") and m.get(150) in (b"F", b"4")
                                       for m in reports(c1, buy)), "buy done")
            await wait_for(lambda: any(m.get(150) == b"F" for m in reports(c2, ask)), "the restored ask filled")
            fill = [m for m in reports(c2, ask) if m.get(150) == b"F"]
            assert [(m.get(37), m.get(32), m.get(14), m.get(151), m.get(39)) for m in fill] == [
                (order_id, b"100", b"100", b"0", b"2")]
            # Entered once only: the buyer took 100 and the rest of its IOC was canceled.
            got = [m for m in reports(c1, buy) if m.get(150) == b"F"]
            assert sum(int(m.get(32)) for m in got) == 100
            rows = http_json(http_port, "/orders?status=all")["orders"]
            assert [r["venue_order_id"] != "" for r in rows if r["cl_ord_id"] == ask] == [True]

    server = start_server(cfg, log)
    try:
        ask, order_id = runner(before(), timeout=30)
        assert stop_server(server) == 0
        log2 = tmp_path / "serve-2.log"
        server = start_server(cfg, log2)
        assert "(1 orders restored, 0 open orders back on their venues)" in log2.read_text()
        runner(after(ask, order_id), timeout=30)
    finally:
        try:
            assert stop_server(server) == 0
        finally:
            va.kill()
            vb.kill()


def test_cancel_and_replace_lost_when_the_server_dies_are_sent_again_after_restart(tmp_path):
    """The server dies with a cancel and a replace pending at VENUE-A that never reached it (the
    link to A lost what the server sent, as a network failing one way). After the restart, A's
    reconciliation shows both orders live with nothing answered: the server sends the requests
    again, and the client gets its Canceled and Replaced, and A's book agrees."""
    va = VenueProcess(venue_config(tmp_path, "VENUE-A"))
    vb = VenueProcess(venue_config(tmp_path, "VENUE-B"))
    link = LossyProxy(va.port)
    fix_port, http_port = free_port(), free_port()
    cfg = server_config(tmp_path, link.port, vb.port, fix_port, http_port)
    store = MemoryStore()

    async def before():
        await wait_for(lambda: venues_up(http_port)["VENUE-A"], "A logged on")
        async with FixPeer(fix_port, "FIRM2", store=store) as c2:
            ask = c2.new_order(side="2", qty=100, price="230.01", extra=[(100, "VENUE-A")])
            ask_r = c2.new_order(side="2", qty=100, price="230.02", extra=[(100, "VENUE-A")])
            for cl in (ask, ask_r):
                await wait_for(lambda: any(m.get(150) == b"0" for m in reports(c2, cl)), f"{cl} acknowledged")
            link.lose_upstream = True
            cxl = c2.cancel(ask, side="2")
            rpl = c2.replace(ask_r, qty=60, price="230.02", side="2")
            await wait_for(lambda: any(m.get(150) == b"6" for m in reports(c2, cxl)), "PendingCancel")
            await wait_for(lambda: any(m.get(150) == b"E" for m in reports(c2, rpl)), "PendingReplace")
            await asyncio.sleep(0.2)
            assert link.lost_bytes > 0
            return ask, ask_r, cxl, rpl

    async def after(ask, ask_r, cxl, rpl):
        await wait_for(lambda: venues_up(http_port)["VENUE-A"], "A logged on again")
        async with FixPeer(fix_port, "FIRM2", store=store, reset=False) as c2, FixPeer(fix_port, "FIRM1") as c1:
            await wait_for(lambda: any(m.get(150) == b"4" for m in reports(c2, cxl)), "Canceled after restart")
            await wait_for(lambda: any(m.get(150) == b"5" for m in reports(c2, rpl)), "Replaced after restart")
            done = [m for m in reports(c2, cxl) if m.get(150) == b"4"][0]
            assert (done.get(41), done.get(39), done.get(151)) == (ask.encode(), b"4", b"0")
            replaced = [m for m in reports(c2, rpl) if m.get(150) == b"5"][0]
            assert (replaced.get(41), replaced.get(38), replaced.get(151)) == (ask_r.encode(), b"60", b"60")
            # A's book: the canceled offer is gone, the replaced one rests for 60.
            await asyncio.sleep(0.5)    # A's market data after the logon
            buy = c1.new_order(side="1", qty=150, price="230.02", extra=[(100, "VENUE-A"), (59, "3")])
            await wait_for(lambda: any(m.get(150) == b"4" or m.get(39) == b"2" for m in reports(c1, buy)), "buy done")
            got = [(m.get(32), m.get(31)) for m in reports(c1, buy) if m.get(150) == b"F"]
            assert got == [(b"60", b"230.02")]

    kill_and_restart(tmp_path, cfg, before, after, link, [va, vb])


def kill_and_restart(tmp_path, cfg, before, after, link: LossyProxy, venues) -> None:
    """`crossbook serve` runs ``before()``, is SIGKILLed, what it sent through ``link`` is lost for
    good, and a new server runs ``after(*before's result)``; everything is stopped at the end."""
    server = start_server(cfg, tmp_path / "serve.log")
    try:
        ids = runner(before(), timeout=30)
        server.kill()                      # dies with its requests unanswered
        server.wait(10)
        link.drop_connections()            # what the dead server sent is never delivered
        link.lose_upstream = False
        server = start_server(cfg, tmp_path / "serve-2.log")
        runner(after(*ids), timeout=30)
    finally:
        try:
            assert stop_server(server) == 0
        finally:
            link.close()
            for v in venues:
                v.kill()


def test_order_the_venue_never_got_before_the_server_died_is_rejected_after_restart(tmp_path):
    """The server dies with a new order sent to VENUE-A but lost on the way (PendingNew): after the
    restart, A's reconciliation does not know it, and its owner gets Rejected (not Canceled), with
    the reason; an order A did acknowledge stays live."""
    va = VenueProcess(venue_config(tmp_path, "VENUE-A"))
    vb = VenueProcess(venue_config(tmp_path, "VENUE-B"))
    link = LossyProxy(va.port)
    fix_port, http_port = free_port(), free_port()
    cfg = server_config(tmp_path, link.port, vb.port, fix_port, http_port)
    store = MemoryStore()

    async def before():
        await wait_for(lambda: venues_up(http_port)["VENUE-A"], "A logged on")
        async with FixPeer(fix_port, "FIRM2", store=store) as c2:
            live = c2.new_order(side="2", qty=100, price="230.01", extra=[(100, "VENUE-A")])
            await wait_for(lambda: any(m.get(150) == b"0" for m in reports(c2, live)), "acknowledged")
            link.lose_upstream = True
            lost = c2.new_order(side="2", qty=70, price="230.05", extra=[(100, "VENUE-A")])
            await wait_for(lambda: any(m.get(150) == b"A" for m in reports(c2, lost)), "PendingNew")
            await asyncio.sleep(0.2)
            assert link.lost_bytes > 0
            return live, lost

    async def after(live, lost):
        await wait_for(lambda: venues_up(http_port)["VENUE-A"], "A logged on again")
        async with FixPeer(fix_port, "FIRM2", store=store, reset=False) as c2:
            await wait_for(lambda: any(m.get(39) in (b"4", b"8") for m in reports(c2, lost)), "lost order ended")
            end = [m for m in reports(c2, lost) if m.get(39) in (b"4", b"8")]
            assert [(m.get(150), m.get(39), m.get(151)) for m in end] == [(b"8", b"8", b"0")]
            assert b"never received" in end[0].get(58)
            rows = {o["cl_ord_id"]: o for o in http_json(http_port, "/orders?status=open")["orders"]}
            assert list(rows) == [live]

    kill_and_restart(tmp_path, cfg, before, after, link, [va, vb])


def test_routed_order_resting_at_a_venue_process_continues_after_a_server_restart(tmp_path):
    """A sweep's remainder rests at VENUE-B (a child of the SOR parent) when `crossbook serve` is
    restarted: the new server's router takes the parent back from its audit trail with that child
    (not routed again: B holds one bid), and a later fill at B reaches the client's order."""
    va = VenueProcess(venue_config(tmp_path, "VENUE-A"))
    vb = VenueProcess(venue_config(tmp_path, "VENUE-B"))
    fix_port, http_port = free_port(), free_port()
    cfg = server_config(tmp_path, va.port, vb.port, fix_port, http_port, audit=str(tmp_path / "audit.db"))
    store = MemoryStore()

    async def before():
        await wait_for(lambda: venues_up(http_port) == {"VENUE-A": True, "VENUE-B": True, "SOR": True}, "up")
        async with FixPeer(fix_port, "FIRM1", store=store) as c1:
            buy = c1.new_order(side="1", qty=150, price="230.02", extra=[(100, "SOR")])      # DAY: rests
            await wait_for(lambda: any(m.get(150) == b"0" for m in reports(c1, buy)), "routed order acknowledged")
            return buy, reports(c1, buy)[-1].get(37)

    async def after(buy, order_id):
        await wait_for(lambda: venues_up(http_port) == {"VENUE-A": True, "VENUE-B": True, "SOR": True}, "up again")
        async with FixPeer(fix_port, "FIRM1", store=store, reset=False) as c1, FixPeer(fix_port, "FIRM2") as c2:
            ask = c2.new_order(side="2", qty=200, price="230.02", extra=[(100, "VENUE-B")])
            await wait_for(lambda: any(m.get(150) == b"F" for m in reports(c1, buy)), "the routed order filled")
            await wait_for(lambda: any(m.get(150) == b"F" for m in reports(c2, ask)), "the ask filled")
            await asyncio.sleep(0.3)
            fills = [m for m in reports(c1, buy) if m.get(150) == b"F"]
            assert [(m.get(37), m.get(32), m.get(31), m.get(30), m.get(14), m.get(151), m.get(39)) for m in fills] == [
                (order_id, b"150", b"230.02", b"VENUE-B", b"150", b"0", b"2")]
            # B held one bid for the order, not two: the seller's 200 met 150 and 50 rest.
            sold = [m for m in reports(c2, ask) if m.get(150) == b"F"]
            assert [(m.get(32), m.get(14), m.get(151)) for m in sold] == [(b"150", b"150", b"50")]

    server = start_server(cfg, tmp_path / "serve.log")
    try:
        ids = runner(before(), timeout=30)
        assert stop_server(server) == 0
        log2 = tmp_path / "serve-2.log"
        server = start_server(cfg, log2)
        assert "(1 orders restored, 0 open orders back on their venues)" in log2.read_text()
        runner(after(*ids), timeout=30)
    finally:
        try:
            assert stop_server(server) == 0
        finally:
            va.kill()
            vb.kill()
