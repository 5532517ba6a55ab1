"""An order through a venue in its own process over FIX: FixVenue (the OMS's initiator) sends a
NewOrderSingle to a `crossbook venue` process and the clock stops when the TRADE VenueEvent (the
first ExecutionReport, decoded and applied by FixVenue) reaches the sink. Beside it, in the same
run, the same client loop does a bare uvloop TCP echo round trip against an echo server in its
own process: the floor any cross-process request/answer pays on this machine.

The venue runs with background liquidity off and one large resting sell placed before the
measurement, so every probe (a 1-lot IOC buy at that price) trades at once and the path is the
same each time. Probes go out on a fixed schedule (slots of 1 ms at 1,000/s), one in flight: a
slot is skipped when the previous probe is still unanswered or went out less than half a slot
before (a late timer; uvloop's timers have millisecond resolution), and the probe takes the next
free slot. Without that rule a late timer was followed by a catch-up send some 50 us after the
previous probe, and up to half the probes measured the wait behind another one. Latency is
measured from the moment the probe is handed to ``FixVenue.new_order`` (``send_lag`` reports how
late the timer fired against the slot; ``skipped`` counts the slots given up).

Issue 5 target (full mode): p50 under 300 us through the venue process (absolute, as the issue
states it), and the venue p50 within 15x of the echo p50 (same run; our guard, not the issue's:
the bare echo is 20-28 us and moves by a third between runs, so 10x failed at 250 us). Short mode (CI) checks
floors well above what was measured, so only a broken or stalled path fails.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crossbook.core import OrdType, Side, TimeInForce
from crossbook.fix.transport import install_uvloop
from crossbook.model.instruments import DEFAULT_INSTRUMENTS, InstrumentMaster
from crossbook.routing.fix_venue import FixVenue
from crossbook.routing.venue import VenueEventKind, VenueOrder

SUPPORT = Path(__file__).resolve().parent.parent / "tests" / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))
import venuekit  # noqa: E402

pytestmark = pytest.mark.timeout(300)

MASTER = InstrumentMaster.from_config(DEFAULT_INSTRUMENTS)
AAPL = MASTER.by_symbol("AAPL")

# A uvloop echo server as its own process (the venue is one too): prints its port, echoes until
# stdin closes, so it never outlives the benchmark.
ECHO_SERVER = r"""
import asyncio, sys, uvloop
class Echo(asyncio.Protocol):
    def connection_made(self, t): self.t = t
    def data_received(self, d): self.t.write(d)
async def main():
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(Echo, "127.0.0.1", 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
uvloop.run(main())
"""


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100 * (len(sorted_values) - 1)))))
    return sorted_values[k]


class _OneInFlight:
    """Set while no probe is unanswered; ``skipped`` counts the slots given up (see _paced)."""

    def __init__(self) -> None:
        self.idle = asyncio.Event()
        self.idle.set()
        self.skipped = 0

    def sent(self) -> None:
        self.idle.clear()

    def answered(self) -> None:
        self.idle.set()


async def _paced(count: int, rate: float, send, gate: _OneInFlight) -> list[int]:
    """Call ``send(i)`` on a fixed schedule of ``rate`` slots per second, one in flight: a slot is
    skipped while the previous call is unanswered (``gate``) or when it went out less than half a
    slot before; returns the lateness of each call against its slot (ns)."""
    lags = []
    period = 1e9 / rate
    start = time.perf_counter_ns() + 10_000_000
    slot = 0
    last = start - int(period)
    for i in range(count):
        while True:
            due = start + int(slot * period)
            wait = due - time.perf_counter_ns()
            if wait > 0:
                await asyncio.sleep(wait / 1e9)
            if gate.idle.is_set() and time.perf_counter_ns() - last >= period / 2:
                break
            gate.skipped += 1
            await gate.idle.wait()
            slot = max(slot + 1, (time.perf_counter_ns() - start) // int(period) + 1)
        last = time.perf_counter_ns()
        lags.append(last - due)
        gate.sent()
        send(i)
        slot += 1
    return lags


class _EchoClient(asyncio.Protocol):
    def __init__(self, size: int) -> None:
        self.payload = b"x" * size
        self.sent: list[int] = []
        self.rtt: list[int] = []
        self.size = size
        self._buffered = 0
        self.all_back = asyncio.Event()
        self.expected = 0
        self.gate = _OneInFlight()

    def connection_made(self, transport):
        self.transport = transport

    def send(self, i: int) -> None:
        self.sent.append(time.perf_counter_ns())
        self.transport.write(self.payload)

    def data_received(self, data):
        # One payload outstanding at a time (the schedule is far slower than a round trip), but
        # count bytes anyway so a split read is never counted as two answers.
        self._buffered += len(data)
        now = time.perf_counter_ns()
        while self._buffered >= self.size:
            self._buffered -= self.size
            self.rtt.append(now - self.sent[len(self.rtt)])
            self.gate.answered()
        if len(self.rtt) >= self.expected:
            self.all_back.set()


async def _echo_round_trips(port: int, count: int, rate: float) -> list[float]:
    loop = asyncio.get_running_loop()
    # ~ the size of a NewOrderSingle on the wire, so both paths move similar bytes.
    _, client = await loop.create_connection(lambda: _EchoClient(200), "127.0.0.1", port)
    client.expected = count
    await _paced(count, rate, client.send, client.gate)
    await asyncio.wait_for(client.all_back.wait(), 30)
    client.transport.close()
    return sorted(ns / 1000 for ns in client.rtt)


async def _venue_round_trips(port: int, store: str, count: int, rate: float) -> tuple[list[float], list[int], int]:
    venue = FixVenue("VENUE-A", MASTER, host="127.0.0.1", port=port, sender_comp_id="CROSSBOOK",
                     target_comp_id="VENUE-A", store_path=store, md_depth=0, heartbeat_s=30)
    lot = AAPL.lot_size
    price = AAPL.reference_ticks or 23_000
    sent: dict[str, int] = {}
    latencies: list[float] = []
    all_back = asyncio.Event()
    rested = asyncio.Event()
    gate = _OneInFlight()

    def sink(ev) -> None:
        now = time.perf_counter_ns()
        if ev.venue_cl_ord_id == "REST" and ev.kind == VenueEventKind.NEW:
            rested.set()
        elif ev.kind == VenueEventKind.TRADE and ev.venue_cl_ord_id in sent:
            latencies.append((now - sent.pop(ev.venue_cl_ord_id)) / 1000)
            gate.answered()
            if len(latencies) == count:
                all_back.set()
        elif ev.kind == VenueEventKind.REJECTED:
            raise AssertionError(f"venue rejected a probe: {ev}")

    venue.set_event_sink(sink)
    await venue.start()
    try:
        assert await venue.wait_up(15), "FixVenue did not log on to the venue process"
        # The contra side: enough to fill every probe (and the warm-up), resting.
        venue.new_order(VenueOrder("REST", AAPL, Side.SELL, OrdType.LIMIT, TimeInForce.DAY,
                                   (2 * count + 1_000) * lot, price))
        await asyncio.wait_for(rested.wait(), 10)

        def probe(tag: str):
            def send(i: int) -> None:
                cl = f"{tag}{i}"
                sent[cl] = time.perf_counter_ns()
                venue.new_order(VenueOrder(cl, AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.IOC, lot, price))
            return send

        warm = min(count, 500)
        await _paced(warm, rate, probe("W"), gate)    # warm both processes' caches and code paths
        deadline = time.monotonic() + 30
        while len(latencies) < warm and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert len(latencies) == warm, f"warm-up: {len(latencies)} of {warm} probes traded"
        latencies.clear()
        all_back.clear()                              # the warm-up may have set it (warm == count)
        gate.skipped = 0
        lags = await _paced(count, rate, probe("P"), gate)
        await asyncio.wait_for(all_back.wait(), 60)
        return sorted(latencies), sorted(lags), gate.skipped
    finally:
        await venue.stop()


async def _measure(tmp: Path, count: int, rate: float):
    config = venuekit.venue_config(tmp, "VENUE-A")       # no [background]: empty books
    proc = venuekit.VenueProcess(config)
    echo = subprocess.Popen([sys.executable, "-c", ECHO_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        echo_port = int(echo.stdout.readline())
        await _echo_round_trips(echo_port, min(count, 500), rate)     # warm-up
        echo_rtt = await _echo_round_trips(echo_port, count, rate)
        venue_rtt, lags, skipped = await _venue_round_trips(proc.port, str(tmp / "oms-store"), count, rate)
        return echo_rtt, venue_rtt, lags, skipped
    finally:
        echo.stdin.close()
        echo.wait(10)
        proc.stop()


def test_order_through_a_venue_process_over_fix(tmp_path, bench_mode, bench_table):
    count = bench_mode.size(5_000, 500)
    rate = 1_000
    install_uvloop()
    echo, venue, lags, skipped = asyncio.run(_measure(tmp_path, count, rate))
    assert len(echo) == count and len(venue) == count
    title = (f"FIX venue process: FixVenue new_order -> TRADE event, 1-lot IOC vs a resting sell, "
             f"{count:,} orders at {rate:,}/s (us)")
    for name, values in (("uvloop TCP echo round trip (200 B)", echo), ("FixVenue -> venue process -> TRADE", venue)):
        for p in (50, 99, 99.9):
            bench_table.add(title, f"{name} p{p:g}", percentile(values, p), "us")
        bench_table.add(title, f"{name} max", values[-1], "us")
    bench_table.add(title, "send_lag p50 / p99 (timer lateness, not in the latencies)",
                    percentile(lags, 50) / 1000, "us", f"p99 {percentile(lags, 99) / 1000:,.0f} us")
    bench_table.add(title, "slots skipped (previous probe unanswered or sent < half a slot before)", skipped, "",
                    f"{count:,} probes")
    p50 = percentile(venue, 50)
    ratio = p50 / percentile(echo, 50)
    bench_table.add(title, "venue p50 / echo p50", ratio, "x", "guard <= 15; issue 5: p50 < 300 us")
    if bench_mode.short:
        # Floors for CI on a loaded machine: the path works and does not stall (see docs/benchmarks.md
        # for what was measured).
        assert p50 < 3_000 and percentile(venue, 99) < 50_000, (p50, percentile(venue, 99))
    else:
        assert p50 < 300, f"p50 {p50:.0f} us through the venue process (issue 5 target: under 300 us)"
        assert ratio <= 15, f"venue p50 is {ratio:.1f}x the echo round trip (guard <= 15x)"
