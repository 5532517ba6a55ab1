"""kill -9 of a real `crossbook serve` during a stream of orders, then a restart: every
acknowledged order and fill is back, the same open orders and risk usage, and the FIX sequence
numbers continue (the client keeps its own file store and does not reset)."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time

import pytest

from fixpeer import FixPeer
from servekit import IN_PROCESS_VENUES, firms_toml, free_port, http_json, start_server, write_server_config
from crossbook.fix.store import FileStore
from crossbook.persistence import OrderStore

pytestmark = pytest.mark.slow


# Everything but the ports and the storage folder (write_server_config adds those).
SERVER_BODY = "\n" + firms_toml() + IN_PROCESS_VENUES


def test_kill_9_during_order_stream_then_restart(tmp_path, run):
    fix_port, http_port = free_port(), free_port()
    storage = tmp_path / "var"
    config = tmp_path / "server.toml"
    write_server_config(config, fix_port=fix_port, http_port=http_port, storage=storage, body=SERVER_BODY)
    log = tmp_path / "server.log"
    client_dir = str(tmp_path / "client")
    proc = start_server(config, log)
    acked: dict[str, str] = {}          # ClOrdID -> OrderID (the client saw an ExecutionReport)
    fills: dict[str, int] = {}          # ExecID -> LastQty of trade reports received
    cum_seen: dict[str, int] = {}       # OrderID -> highest CumQty reported
    last_seq_before = 0

    def note(peer: FixPeer) -> None:
        for m in peer.app.all:
            if m.msg_type != b"8" or m.get(37) == b"NONE":
                continue
            acked[m[11].decode()] = m[37].decode()
            oid = m[37].decode()
            cum_seen[oid] = max(cum_seen.get(oid, 0), int(m[14]))
            if m[150] == b"F":
                fills[m[17].decode()] = int(m[32])

    async def stream() -> None:
        nonlocal last_seq_before
        store = FileStore(client_dir, "FIRM1", now=time.time())
        async with FixPeer(fix_port, "FIRM2") as seller:
            seller.new_order(side="2", qty=5000, price="230.00")
            await seller.expect_exec("A", "A")
            await seller.expect_exec("0", "0")
        peer = FixPeer(fix_port, "FIRM1", store=store, reset=False)
        await peer.__aenter__()
        sent = 0
        killed = False
        try:
            while sent < 3000:
                # Alternate an order that fills against the seller and one that rests.
                if killed and not peer.initiator.is_logged_on():
                    break  # the connection is gone: what was sent and not answered may be lost
                try:
                    peer.new_order(qty=1, price="230.00" if sent % 2 == 0 else "229.00")
                except (RuntimeError, ConnectionError):
                    break
                sent += 1
                if sent % 20 == 0:
                    await asyncio.sleep(0.002)
                if not killed and len(peer.app.all) > 600:
                    os.kill(proc.pid, signal.SIGKILL)  # in the middle of the stream
                    killed = True
            await asyncio.sleep(0.5)
        finally:
            try:
                await peer.initiator.stop(logout_grace=0.2)
            except (RuntimeError, ConnectionError):
                pass
        assert killed
        note(peer)
        last_seq_before = store.get_next_target_seq() - 1
        store.close()

    run(stream(), timeout=120)
    proc.wait(10)
    assert acked and fills

    # What the database held at the moment of the kill.
    db = OrderStore(str(storage / "crossbook.db"))
    before = {o["order_id"]: o for o in db.orders()}
    usage_before = db.risk_usage()
    max_exec_before = max(e["seq"] for e in db.executions())
    db.close()
    for cl, oid in acked.items():
        assert oid in before, f"acknowledged order {cl} ({oid}) lost"
        assert before[oid]["cum_qty"] >= cum_seen[oid]
    db = OrderStore(str(storage / "crossbook.db"))
    stored_execs = db.executions()
    stored_exec_ids = stored_all = {e["exec_id"] for e in stored_execs}
    db.close()
    assert set(fills) <= stored_exec_ids, "a fill the client saw is not in the database"

    log = tmp_path / "server-restarted.log"
    proc = start_server(config, log)
    try:
        open_after = {o["order_id"]: o for o in http_json(http_port, "/orders?status=open")["orders"]}
        open_before = {oid: o for oid, o in before.items()
                       if o["state"] in ("new", "partially_filled", "pending_cancel", "pending_replace")}
        assert set(open_before) <= set(open_after) | {oid for oid, o in before.items() if o["state"] == "pending_cancel"}
        all_after = {o["order_id"]: o for o in http_json(http_port, "/orders")["orders"]}
        assert set(before) <= set(all_after)
        # Orders entered but not yet acknowledged by the venue at the kill go back to it and may
        # trade now (against the resting seller): those trades are the only allowed change.
        new_trades = [e for e in http_json(http_port, "/executions")["executions"]
                      if e["exec_type"] == "F" and int(e["exec_id"][1:]) > max_exec_before]
        traded_after = {}
        for e in new_trades:
            traded_after[e["order_id"]] = traded_after.get(e["order_id"], 0) + e["last_qty"]
            assert before[e["order_id"]]["state"] == "pending_new" or e["order_id"] in open_before
        for oid, o in before.items():
            assert all_after[oid]["cum_qty"] == o["cum_qty"] + traded_after.get(oid, 0), oid
            if o["state"] in ("filled", "canceled", "rejected", "expired"):
                assert all_after[oid]["state"] == o["state"]
        usage_after = http_json(http_port, "/risk/usage")
        # Risk usage is what was stored at the kill, moved only by those trades.
        for name, index in (("ACC1", 0), ("ACC3", 1)):
            stored = json.loads(json.dumps(usage_before[index]))
            delta = sum(e["last_qty"] * (1 if e["side"] == "buy" else -1) for e in new_trades if e["account"] == name)
            pos_before = stored["positions"].get("0", {}).get("position", 0)
            assert usage_after[name]["positions"].get("0", {}).get("position", 0) == pos_before + delta
            if not new_trades:
                assert usage_after[name] == stored, (name, usage_after[name], stored)

        async def resume() -> None:
            store = FileStore(client_dir, "FIRM1", now=time.time())
            assert store.get_next_target_seq() == last_seq_before + 1
            async with FixPeer(fix_port, "FIRM1", store=store, reset=False) as peer:
                cl = peer.new_order(qty=1, price="229.00")
                msgs = []
                while not any(m.get(11) == cl.encode() for m in msgs):
                    msgs.append(await peer.expect("8", timeout=10))
                # No reset: the server's numbers continued past everything received before the kill.
                assert all(int(m[34]) > last_seq_before for m in peer.app.all)
                # Every fill of FIRM1 stored at the kill reached the client: before the kill, or
                # after the restart (sent again with PossResend, then resent to us on logon).
                await asyncio.sleep(0.3)
                received = set(fills) | {m[17].decode() for m in peer.app.all if m.msg_type == b"8"}
                stored = {e["exec_id"] for e in stored_execs if e["session"] == "FIRM1" and e["exec_type"] == "F"}
                assert stored <= received, sorted(stored - received)[:5]
                again = [m for m in peer.app.all if m.get(97) == b"Y"]
                assert all(m[17].decode() in stored_all for m in again)
                # A ClOrdID acknowledged before the crash is still known: duplicate.
                dup = next(iter(acked))
                peer.new_order(qty=1, price="229.00", cl_ord_id=dup)
                while True:
                    m = await peer.expect("8", timeout=10)
                    if m.get(11) == dup.encode() and m[150] == b"8":
                        assert m[103] == b"6"
                        break
            store.close()

        run(resume(), timeout=60)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert b"stopped" in log.read_bytes()
