"""Inbound sequence recovery of a real `crossbook serve` after kill -9, with a client that keeps its
FIX store (no reset) and logs on again:

* orders the FIX session had counted as received but the journal had not committed when the
  process died are asked for again (ResendRequest) and handled once, when the client resends them
  with PossDupFlag=Y; before, the stored MsgSeqNum covered them and they were lost unanswered;
* a ResendRequest that arrives while the server is itself waiting for a resend (its MsgSeqNum too
  high) is answered and counted when the gap closes: the server is level with the client without
  another ResendRequest round trip (before, its number stayed a hole until the client's next
  message, up to a heartbeat interval later)."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from fixpeer import FixPeer
from omskit import PROCESS_WAIT_S, kept_store_peer, until
from servekit import (IN_PROCESS_VENUES, firms_toml, free_port, http_json, launch_server, stop_server,
                      write_server_config)
from crossbook.app.config import load_config
from crossbook.fix.framing import split_fields
from crossbook.fix.store import FileStore, store_name

pytestmark = pytest.mark.slow

BODY = "\n" + firms_toml(firm2=False) + IN_PROCESS_VENUES

# `crossbook serve` whose journal stops making batches durable on SIGUSR1 (it takes them and never
# answers): the state a kill -9 leaves when it lands after the FIX session handled a read and
# before the journal committed what the read did. Only the journal's submit() contract is used.
# Once stalled it creates the file <script>.stalled: the test sends the orders to lose only then
# (the signal is handled on the server's loop, whenever a busy machine runs it).
STALLING_SERVE = """
import asyncio, signal, sys
import crossbook.app.server as server_module

_start = server_module.Server.start

async def start(self):
    await _start(self)

    def stall():
        self.journal.submit = lambda batch, on_durable: None
        open(__file__ + ".stalled", "w").close()

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, stall)

server_module.Server.start = start
from crossbook.app.cli import main
sys.exit(main(sys.argv[1:]))
"""


def server_next_target(config: Path) -> int:
    """The server's stored next inbound MsgSeqNum for FIRM1, read from its .seqnums line
    (crossbook.fix.store: "SSS... TTT...\\n", rewritten in place) without opening the store."""
    cfg = load_config(str(config))
    path = Path(cfg.storage.fix_store_dir) / (store_name("FIX.4.4", cfg.fix.comp_id, "FIRM1") + ".seqnums")
    fields = path.read_bytes().split()
    return int(fields[1])


async def reports_for(peer: FixPeer, cl_ord_ids: list[str], exec_type: bytes, timeout: float) -> dict[str, bytes]:
    """ClOrdID -> OrderID of the first report with ``exec_type`` for each of ``cl_ord_ids``."""
    found: dict[str, bytes] = {}
    deadline = time.monotonic() + timeout
    while set(found) != set(cl_ord_ids):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {exec_type!r} report for {sorted(set(cl_ord_ids) - set(found))}"
        try:
            m = await peer.expect("8", timeout=remaining)
        except asyncio.TimeoutError:
            continue
        cl = (m.get(11) or b"").decode()
        if cl in cl_ord_ids and m[150] == exec_type:
            found.setdefault(cl, m[37])
    return found


def test_orders_counted_but_not_journaled_at_a_kill_are_asked_for_again(tmp_path, run):
    fix_port, http_port = free_port(), free_port()
    config = write_server_config(tmp_path / "server.toml", fix_port=fix_port, http_port=http_port,
                                 storage=tmp_path / "var", body=BODY)
    script = tmp_path / "stalling_serve.py"
    script.write_text(STALLING_SERVE)
    stalled = Path(f"{script}.stalled")
    client_dir = str(tmp_path / "client")
    proc = launch_server([str(script), "serve", "--config", str(config)], tmp_path / "server1.log")
    first: list[str] = []
    lost: list[str] = []

    async def before_kill() -> None:
        peer = kept_store_peer(fix_port, client_dir)
        await peer.__aenter__()
        try:
            first.append(peer.new_order(qty=1, price="229.00"))
            await reports_for(peer, first, b"0", timeout=10)
            os.kill(proc.pid, signal.SIGUSR1)
            await until(stalled.exists, "the server's journal to stall", PROCESS_WAIT_S)
            lost.extend(peer.new_order(qty=1, price="229.00") for _ in range(3))
            sender = peer.initiator.session().next_sender_seq
            # The session has counted all three as received (its store says so)...
            await until(lambda: server_next_target(config) == sender, "the server to count the orders", 10)
            # ...but none is durable, so none is answered.
            await peer.quiet(0.3)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            try:
                await peer.initiator.stop(logout_grace=0.2)
            except (RuntimeError, ConnectionError, OSError):
                pass

    try:
        run(before_kill(), timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    proc = launch_server(["-m", "crossbook.app.cli", "serve", "--config", str(config)], tmp_path / "server2.log")
    try:
        async def after_restart() -> None:
            async with kept_store_peer(fix_port, client_dir) as peer:
                # Asked for again, resent with PossDupFlag=Y, handled for the first time.
                order_ids = await reports_for(peer, lost, b"0", timeout=10)
                assert b"NONE" not in order_ids.values()
                assert len(set(order_ids.values())) == len(lost)
                fresh = peer.new_order(qty=1, price="229.00")
                await reports_for(peer, [fresh], b"0", timeout=10)
                # Nothing older than the lost orders was asked for again: no duplicate rejects.
                assert not [m for m in peer.app.all if m.get(103) == b"6"]

        run(after_restart(), timeout=60)
        orders = http_json(http_port, "/orders")["orders"]
        by_cl = {}
        for o in orders:
            by_cl.setdefault(o["cl_ord_id"], []).append(o["order_id"])
        for cl in first + lost:
            assert len(by_cl.get(cl, [])) == 1, (cl, by_cl.get(cl))
    finally:
        stop_server(proc)


def test_resend_request_received_during_a_gap_leaves_no_hole(tmp_path, run):
    fix_port, http_port = free_port(), free_port()
    config = write_server_config(tmp_path / "server.toml", fix_port=fix_port, http_port=http_port,
                                 storage=tmp_path / "var", body=BODY)
    client_dir = str(tmp_path / "client")
    proc = launch_server(["-m", "crossbook.app.cli", "serve", "--config", str(config)], tmp_path / "server1.log")
    unread: list[str] = []

    async def before_kill() -> None:
        peer = kept_store_peer(fix_port, client_dir)
        await peer.__aenter__()
        try:
            acked = [peer.new_order(qty=1, price="229.00") for _ in range(2)]
            await reports_for(peer, acked, b"0", timeout=10)
            # The server's loop is stopped: these two stay in its socket buffer, never read.
            os.kill(proc.pid, signal.SIGSTOP)
            unread.extend(peer.new_order(qty=1, price="229.00") for _ in range(2))
            await asyncio.sleep(0.2)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            # As after a real crash, the client sends nothing more (no Logout): the Logon that
            # follows is the first message after the two unread orders.
            await until(lambda: not peer.initiator.is_logged_on(), "the client to see the connection drop", 10)
        finally:
            try:
                await peer.initiator.stop(logout_grace=0.2)
            except (RuntimeError, ConnectionError, OSError):
                pass
        store = FileStore(client_dir, "FIRM1")
        # The client also misses the server's last two messages, so it answers the server's
        # Logon with a ResendRequest while the server waits for the two unread orders.
        store.set_next_target_seq(store.get_next_target_seq() - 2)
        store.close()

    try:
        run(before_kill(), timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    client_store = FileStore(client_dir, "FIRM1")
    logon_seq = client_store.get_next_sender_seq()  # the Logon after the restart
    client_store.close()

    proc = launch_server(["-m", "crossbook.app.cli", "serve", "--config", str(config)], tmp_path / "server2.log")
    try:
        async def after_restart() -> None:
            store = FileStore(client_dir, "FIRM1", now=time.time())
            async with FixPeer(fix_port, "FIRM1", store=store, reset=False) as peer:
                await reports_for(peer, unread, b"0", timeout=10)
                assert b"2" in sent_types_of(store, logon_seq), "the client sent no ResendRequest"
                session = peer.initiator.session()
                # No further message from the client: the server must be level with it by itself.
                await until(lambda: server_next_target(config) == session.next_sender_seq,
                            f"the server's next inbound MsgSeqNum to reach {session.next_sender_seq}", 3)
                assert session.next_target_seq == session.store.get_next_target_seq()
                fresh = peer.new_order(qty=1, price="229.00")
                await reports_for(peer, [fresh], b"0", timeout=10)

        run(after_restart(), timeout=60)
    finally:
        stop_server(proc)


def sent_types_of(store: FileStore, first_seq: int) -> list[bytes]:
    """MsgTypes an open client store holds from ``first_seq`` on."""
    return [dict(split_fields(raw))[35] for _, raw in store.get(first_seq, 10**9)]
