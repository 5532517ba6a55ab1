"""NewOrderSingle in to first ExecutionReport out, over loopback, against an in-process OMS server
(in-process venues, SQLite journal with group commit), at a steady rate, vs a bare uvloop TCP echo
round trip measured in the same run with the same client.

The server (and the echo server) run on this process's uvloop; the load client is its own
process (benchmarks/oms_load_client.py), open loop, latency from the intended send time.

Issue 4 targets (full mode): p50 within 2x of the echo round trip; p99 under 1 ms at 20,000
orders/s. Short mode (CI) runs a low rate and checks floors well inside what was measured.
"""
from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
from pathlib import Path

import pytest

from crossbook.app.config import DEFAULT_CONFIG, merge, parse_config
from crossbook.app.server import Server
from crossbook.fix.messages import to_bytes
from crossbook.fix.transport import install_uvloop

import tomllib

CLIENT = Path(__file__).resolve().parent / "oms_load_client.py"


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100 * (len(sorted_values) - 1)))))
    return sorted_values[k]


class _Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def _client(port: int, mode: str, count: int, rate: float) -> dict:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CLIENT), "--port", str(port), "--mode", mode, "--count", str(count),
        "--rate", str(rate), "--drain-s", "120", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise AssertionError(f"load client failed: {err.decode()[-2000:]}")
    return json.loads(out.decode().strip().splitlines()[-1])


async def _measure(storage: str, count: int, rate: float) -> tuple[dict, dict]:
    data = tomllib.loads(DEFAULT_CONFIG)
    data = merge(data, {"fix": {"port": 0, "check_latency": False}, "http": {"enabled": False},
                        "storage": {"dir": storage}})
    data["firms"][0]["accounts"][0]["limits"] = {}   # risk checks all run; no limit is hit
    data["sessions"][0]["msg_rate_per_sec"] = 1_000_000
    data["venues"] = [{"name": "VENUE-A"}, {"name": "VENUE-B"}]
    server = Server(parse_config(data, "<bench>"))
    await server.start()
    echo = await asyncio.get_running_loop().create_server(_Echo, "127.0.0.1", 0)
    try:
        echo_port = echo.sockets[0].getsockname()[1]
        warm = await _client(server.fix_port, "fix", min(count, 2000), min(rate, 5000))
        assert warm["lost"] == 0
        echo_result = await _client(echo_port, "echo", count, rate)
        fix_result = await _client(server.fix_port, "fix", count, rate)
        return echo_result, fix_result
    finally:
        echo.close()
        await echo.wait_closed()
        await server.stop()


@pytest.mark.parametrize("rate", [1_000, 20_000])
def test_oms_new_order_to_first_execution_report(tmp_path, bench_mode, bench_table, rate):
    """At 1,000/s (a rate the server sustains: the latency of the path itself) and at the issue's
    20,000/s (full mode only; the targets apply there)."""
    if bench_mode.short:
        if rate != 1_000:
            pytest.skip("short mode runs the 1,000/s point only")
        count = 2_000
    else:
        count = 10_000 if rate == 1_000 else 40_000
    install_uvloop()
    echo, fix = asyncio.run(_measure(str(tmp_path / "var"), count, rate))
    assert echo["lost"] == 0 and echo["answered"] == count
    assert fix["lost"] == 0 and fix["answered"] == count, {k: v for k, v in fix.items() if k != "latencies_us"}
    e, f = echo["latencies_us"], fix["latencies_us"]
    title = f"OMS latency, NewOrderSingle -> first ExecutionReport, {count:,} orders at {rate:,}/s (us)"
    for name, values in (("uvloop TCP echo round trip", e), ("OMS D -> first 35=8", f)):
        for p in (50, 99, 99.9):
            bench_table.add(title, f"{name} p{p:g}", percentile(values, p), "us")
        bench_table.add(title, f"{name} max", values[-1], "us")
    p50_ratio = percentile(f, 50) / percentile(e, 50)
    bench_table.add(title, "OMS p50 / echo p50", p50_ratio, "x", "target <= 2")
    bench_table.add(title, "OMS orders answered per second", fix["throughput"], "orders/s",
                    f"{fix['answered']:,} answered")
    if bench_mode.short or rate != 20_000:
        # Floors: the path works at a modest rate without queueing up (measured p99 well under these).
        assert percentile(f, 50) < 5_000 and percentile(f, 99) < 50_000
    else:
        assert p50_ratio <= 2.0, f"p50 {percentile(f, 50):.0f} us is {p50_ratio:.1f}x the echo round trip"
        assert percentile(f, 99) < 1_000, f"p99 {percentile(f, 99):.0f} us at {rate}/s"


# ---------------------------------------------------------------------------------------------
# The OMS layers alone: CPU per order, in-process, no sockets and no FIX session.
# ---------------------------------------------------------------------------------------------
class _CountingSession:
    """Stands in for the FIX session: takes the report bodies (a field list's values converted to
    wire bytes, as the session does; an encoded body as it is) and counts them."""

    class _Store:
        def write_pending(self) -> None:   # the real session's FileStore writes here; nothing to do
            pass

        def creation_time(self) -> float:  # the gateway journals it with the inbound MsgSeqNum mark
            return 0.0

    def __init__(self, settings) -> None:
        self.settings = settings
        self.store = self._Store()
        self.sent = 0

    def send(self, msg_type, body, header=()) -> None:
        # Session.send's own conversion: bytes values pass as they are, the rest through to_bytes.
        [(tag, value if type(value) is bytes else to_bytes(value)) for tag, value in body]
        self.sent += 1

    def send_encoded(self, msg_type, body, header=()) -> None:
        # The gateway's ExecutionReport path (body encoded in one compiled call); the session's
        # own stamping is measured by bench_fix_session.
        self.sent += 1


async def _oms_cpu_per_order(storage: str, count: int, per_round: int) -> tuple[float, float, int]:
    """CPU seconds per order for NewOrderSingles handed to the gateway ``per_round`` at a time
    (more per loop round = more orders per batch and per commit, as under load)."""
    import time
    from crossbook.app.server import SystemClock, build_risk
    from crossbook.fix import framing
    from crossbook.fix.codec import encode_message
    from crossbook.fix.messages import Message
    from crossbook.oms.gateway import FixGateway
    from crossbook.oms.manager import OrderManager
    from crossbook.persistence import SqliteJournal
    from crossbook.venues import InProcessVenue

    data = merge(tomllib.loads(DEFAULT_CONFIG), {"http": {"enabled": False}, "storage": {"dir": storage}})
    data["firms"][0]["accounts"][0]["limits"] = {}
    data["sessions"][0]["msg_rate_per_sec"] = 1_000_000
    data["venues"] = [{"name": "VENUE-A"}, {"name": "VENUE-B"}]
    cfg = parse_config(data, "<bench>")
    clock, loop = SystemClock(), asyncio.get_running_loop()
    venues = {v.name: InProcessVenue(v.name, cfg.instruments, clock, loop) for v in cfg.venues}
    # The server's journal as it runs there: each flush is one log record written on the loop
    # (durable when submit returns), SQLite fed by the projection thread; process_time counts
    # that thread too, and the measurement ends when it has applied everything.
    journal = SqliteJournal(os.path.join(storage, "cpu.db"))
    journal.open()
    journal.start(loop)
    manager = OrderManager(instruments=cfg.instruments, venues=venues, risk=build_risk(cfg),
                           directory=cfg.directory, clock=clock, journal=journal)
    for venue in venues.values():
        await venue.start()
    gateway = FixGateway(manager, cfg.instruments, cfg.directory)
    spec = cfg.directory.sessions["FIRM1"]
    session = _CountingSession(type("S", (), {"target_comp_id": "FIRM1", "begin_string": spec.begin_string})())
    gateway.sessions["FIRM1"] = session

    def order(i: int) -> Message:  # the bench client's orders: alternating resting buys and sells
        raw = encode_message(spec.begin_string, "D",
                             [(34, i + 2), (49, "FIRM1"), (52, "20261125-09:00:00.000"), (56, "CROSSBOOK")],
                             [(11, f"C{i}"), (1, "ACC1"), (55, "AAPL"), (54, "1" if i % 2 else "2"), (38, "1"),
                              (40, "2"), (44, "229.00" if i % 2 else "231.00"), (59, "0"),
                              (60, "20261125-09:00:00.000")])
        return Message(framing.split_fields(raw), raw)

    messages = [order(i) for i in range(2 * count)]

    async def run(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            gateway.from_app(session, messages[i])
            if (i + 1) % per_round == 0:
                for _ in range(3):          # venue acks, the flush's two hops (durable inside it)
                    await asyncio.sleep(0)
        for _ in range(10):
            await asyncio.sleep(0)

    await run(0, count)                     # warm up (memos, caches, log and SQLite pages)
    await journal.wait_applied(30)
    # Start from the same collector state whatever ran before in this process: after the router
    # benchmark in the same process, one engineer's runs measured 75-100 us at 100 per round
    # instead of ~33 us (the collections that garbage triggered here) and the ratio check failed;
    # one collection before the clock starts brought it back.
    gc.collect()
    # The server's collector policy (Server.start installs it): without it, full collections over
    # the growing order heap land in these figures, which the server never pays.
    from crossbook.app.gcpolicy import YoungOnlyGC
    gc_policy = YoungOnlyGC()
    gc_policy.install()
    try:
        writes = journal.writes
        start = time.process_time()
        await run(count, 2 * count)
        await journal.wait_applied(30)
        cpu = (time.process_time() - start) / count
    finally:
        gc_policy.uninstall()
    assert session.sent == 4 * count, session.sent   # PendingNew + New for every order
    for venue in venues.values():
        await venue.stop()
    journal.close()
    return cpu, (journal.writes - writes) / count, session.sent


def test_oms_layers_cpu_per_order(tmp_path, bench_mode, bench_table):
    """Gateway + order manager + risk + in-process venue + journal (log record per flush, SQLite
    projection thread) + report building, without the FIX session: CPU per NewOrderSingle when
    each order is a batch of its own and when 10 or 100 share one (what group commit does under
    load). Same-run ratio: how much sharing saves."""
    count = bench_mode.size(5_000, 1_000)
    install_uvloop()
    title = f"OMS layers without the FIX session, CPU per NewOrderSingle ({count:,} orders, in-process)"
    cpu = {}
    for per_round in (1, 10, 100):
        seconds, records_per_order, _ = asyncio.run(_oms_cpu_per_order(str(tmp_path / f"r{per_round}"), count,
                                                                        per_round))
        cpu[per_round] = seconds
        bench_table.add(title, f"{per_round} order(s) per loop round", seconds * 1e6, "us/order",
                        f"{records_per_order:.2f} journal records per order")
    ratio = cpu[1] / cpu[100]
    bench_table.add(title, "1 per round / 100 per round", ratio, "x", "group commit amortises")
    # Measured 2.3x in full mode with the log journal (3.3-3.4x with inline SQLite commits), 1.5-1.7x
    # over short mode's 1,000 orders; 1.25 still proves batches are shared, with room for noise.
    bench_mode.check_ratio("CPU per order, 1 vs 100 per journal batch", ratio, target=1.5, floor=1.25)
