"""The open-loop driver: N FIX sessions, a schedule of intended send times, an order mix.

Every message has a slot in the schedule (``t0 + i / rate``, or Poisson arrivals) fixed before
the run starts. The driver sends whatever is due each event-loop tick, in one write per session,
and never waits for answers before sending; a latency is ``receive time - intended time``.
If the server (or the generator) stalls for 200 ms, every message scheduled in those 200 ms
carries the stall in its latency instead of silently not being sent, which is what "coordinated
omission" would hide (Gil Tene, "How NOT to Measure Latency").

    report = asyncio.run(run_load(LoadConfig(sessions=..., symbols=..., rate=20_000, duration_s=10)))
    print(report.format_table())
"""
from __future__ import annotations

import asyncio
import gc
import random
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from crossbook.fix.codec import format_utc_timestamp
from crossbook.loadgen.config import LoadConfig
from crossbook.loadgen.histogram import Histogram
from crossbook.loadgen.report import KIND_NAMES, KindCounts, Report
from crossbook.loadgen.slot_timer import SlotTimer
from crossbook.loadgen.wire import LoadSession, LoadSessionError

PASSIVE, MARKETABLE, CANCEL, REPLACE, CLEANUP = range(5)
#: ExecTypes that are not yet the venue's answer: PendingNew, PendingCancel, PendingReplace.
PENDING_EXEC_TYPES = frozenset({b"A", b"6", b"E"})
#: OrdStatus values after which an order is gone: filled, done for day, canceled, rejected, expired.
DONE_STATUSES = frozenset({b"2", b"3", b"4", b"8", b"C"})
#: Below this much time to the next slot the driver polls the loop instead of sleeping, because
#: event loops sleep in whole milliseconds.
SPIN_NS = 2_000_000
#: How often collected latencies are moved into the histograms.
ABSORB_NS = 50_000_000


@dataclass(frozen=True)
class Progress:
    """One progress line's worth (once a second while running)."""

    second: int
    sent: int
    rate: float                 # sent in the last second
    answered: int               # final answers in the last second
    in_flight: int
    timed_out: int
    p99_us: float               # all kinds, ack latency, last second
    max_us: float
    p99_total_us: float         # since the start

    def line(self) -> str:
        return (f"[{self.second:>4}s] sent {self.sent:>10,}  rate {self.rate:>9,.0f}/s  answered {self.answered:>8,}/s  "
                f"in-flight {self.in_flight:>7,}  p99 {self.p99_us:>9.1f} us (all {self.p99_total_us:.1f})  "
                f"max {self.max_us:>9.1f} us  timeouts {self.timed_out:,}")


class _Order:
    __slots__ = ("cl", "sym", "side", "qty", "cum", "ticks", "passive", "pending", "pool_at", "open")

    def __init__(self, cl: bytes, sym: int, side: bytes, qty: int, ticks: int, passive: bool) -> None:
        self.cl = cl
        self.sym = sym
        self.side = side
        self.qty = qty
        self.cum = 0
        self.ticks = ticks
        self.passive = passive
        self.pending = False
        self.pool_at = -1
        self.open = True


class _Request:
    __slots__ = ("kind", "cl", "intended", "sent", "first", "order", "seq", "session", "new_ticks", "new_qty")

    def __init__(self, kind: int, cl: bytes, intended: int, order: _Order, session: "_SessionState") -> None:
        self.kind = kind
        self.cl = cl
        self.intended = intended
        self.sent = 0
        self.first = 0
        self.order = order
        self.seq = 0
        self.session = session
        self.new_ticks = 0
        self.new_qty = 0


class _SessionState:
    __slots__ = ("wire", "account", "prefix", "counter", "orders", "pool", "live_passive", "is42")

    def __init__(self, wire: LoadSession, account: str, prefix: bytes, is42: bool) -> None:
        self.wire = wire
        self.account = ((1, account.encode()),) if account else ()   # Account (1) field, when one is set
        self.prefix = prefix
        self.counter = 0
        self.orders: dict[bytes, _Order] = {}    # live orders by their current ClOrdID
        self.pool: list[_Order] = []             # resting, acknowledged, nothing pending: cancel/replace targets
        self.live_passive = 0
        self.is42 = is42


def _run_tag() -> bytes:
    """A short base-36 tag from the wall clock, so ClOrdIDs never repeat across runs."""
    n = time.time_ns() // 1_000_000
    digits = b""
    while n:
        n, r = divmod(n, 36)
        digits = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[r:r + 1] + digits
    return digits


class _Schedule:
    """Where the run is in its schedule; ``step()`` sends what is due and says when to come back."""

    __slots__ = ("run", "t0", "i", "slot", "next_ns", "last_slot", "next_tick", "next_absorb", "next_batch",
                 "batch_ns", "period", "end", "count", "poisson", "arrivals", "rate", "batch")

    def __init__(self, run: "LoadRun", t0: int) -> None:
        cfg = run.config
        self.run = run
        self.t0 = t0
        self.i = 0
        self.slot = float(t0)
        self.next_ns = t0
        self.last_slot = t0
        self.next_tick = t0 + 1_000_000_000
        self.next_absorb = t0 + ABSORB_NS
        self.batch_ns = int(cfg.batch_us * 1000)
        self.next_batch = t0
        self.period = 1e9 / cfg.rate
        self.rate = cfg.rate
        self.end = t0 + int(cfg.duration_s * 1e9) if cfg.duration_s is not None else None
        self.count = cfg.count
        self.poisson = cfg.arrival == "poisson"
        self.arrivals = random.Random(cfg.seed + 1)
        self.batch: list[_Request] = []

    def step(self) -> int:
        """Send every slot due now (one write per session), do the periodic bookkeeping when due;
        the monotonic time at which to call again, or -1 once the last slot is sent."""
        run = self.run
        mono = time.monotonic_ns
        now = mono()
        next_ns = self.next_ns
        if next_ns <= now and now >= self.next_batch:
            self.next_batch = now + self.batch_ns
            stamp = format_utc_timestamp(time.time_ns(), 3)
            sessions = run.sessions
            n_sessions = len(sessions)
            send_one = run._send_one
            batch = self.batch
            i = self.i
            slot = self.slot
            count, end = self.count, self.end
            while next_ns <= now:
                batch.append(send_one(sessions[i % n_sessions], next_ns, stamp))
                self.last_slot = next_ns
                i += 1
                slot = slot + self.arrivals.expovariate(self.rate) * 1e9 if self.poisson else self.t0 + i * self.period
                next_ns = int(slot)
                if (count is not None and i >= count) or (end is not None and next_ns >= end):
                    next_ns = -1
                    break
            self.i, self.slot, self.next_ns = i, slot, next_ns
            for s in sessions:
                if s.wire.out:
                    s.wire.flush()
            sent = run.last_sent_ns = mono()
            lag = run._lag
            for req in batch:
                req.sent = sent
                lag.append(sent - req.intended)
            run.sent_in_interval += len(batch)
            batch.clear()
            if next_ns < 0:
                return -1
        if now >= self.next_absorb:
            self.next_absorb = now + ABSORB_NS
            if now >= self.next_tick:
                run._interval(self.t0)
                self.next_tick += 1_000_000_000
            else:
                run._absorb()
        return min(max(self.next_ns, self.next_batch), self.next_absorb)


class LoadRun:
    """One run of ``config``; ``await run()`` returns the ``Report``."""

    def __init__(self, config: LoadConfig, progress: Callable[[Progress], None] | None = None,
                 start_at_ns: int | None = None, session_offset: int = 0) -> None:
        self.config = config
        self.progress = progress
        self.start_at_ns = start_at_ns
        self.session_offset = session_offset
        self.rng = random.Random(config.seed)
        self.sessions: list[_SessionState] = []
        self.pending: dict[bytes, _Request] = {}
        self.timed_out_ids: dict[bytes, int] = {}    # ClOrdID -> kind, to notice late answers
        self.counts = [KindCounts() for _ in range(5)]
        # Latencies are appended to lists on the hot path and moved into histograms once a second.
        self._first = [[] for _ in range(5)]
        self._ack = [[] for _ in range(5)]
        self._service = [[] for _ in range(5)]
        self._rejected: list[int] = []
        self._lag: list[int] = []
        names = [f"{k}.{s}" for k in KIND_NAMES for s in ("first", "ack", "service")]
        self.hist: dict[str, Histogram] = {n: Histogram() for n in names + ["all.ack", "rejected", "send_lag"]}
        self.timeline: list[dict] = []
        self._interval_all = Histogram()
        self._interval_marketable = Histogram()
        self.follow_up = 0
        self.last_sent_ns = 0
        self.unmatched = 0
        self.substituted = 0
        self.answered_in_interval = 0
        self.sent_in_interval = 0
        self.timed_out_in_interval = 0
        self._prices: list[dict[int, bytes]] = [{} for _ in config.symbols]
        self._symbol_bytes = [s.symbol.encode() for s in config.symbols]
        self._qty_bytes: dict[int, bytes] = {}
        self._cut = config.mix.cumulative()
        self._ex_destination = ((100, config.ex_destination.encode()),) if config.ex_destination else ()

    # ------------------------------------------------------------------ connection
    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        tag = _run_tag()
        cfg = self.config
        for i, spec in enumerate(cfg.sessions):
            wire_index = i + self.session_offset
            try:
                _, wire = await asyncio.wait_for(loop.create_connection(
                    lambda: LoadSession(wire_index, spec.begin_string, spec.comp_id, cfg.target_comp_id, self._on_app,
                                        heartbeat_s=cfg.heartbeat_s),
                    cfg.host, cfg.port), cfg.logon_timeout_s)
            except (OSError, asyncio.TimeoutError) as exc:
                await self.close()
                raise LoadSessionError(f"{spec.comp_id}: cannot connect to {cfg.host}:{cfg.port}: {exc}") from None
            self.sessions.append(_SessionState(wire, spec.account, b"L" + tag + b"-" + str(wire_index).encode() + b"-",
                                               spec.begin_string == "FIX.4.2"))
        try:
            await asyncio.wait_for(asyncio.gather(*(s.wire.logged_on for s in self.sessions)), cfg.logon_timeout_s)
        except asyncio.TimeoutError:
            await self.close()
            raise LoadSessionError(f"logon not answered within {cfg.logon_timeout_s} s (are the CompIDs "
                                   f"{', '.join(s.comp_id for s in cfg.sessions)} configured on the server?)") from None
        except LoadSessionError:
            await self.close()
            raise

    async def close(self) -> None:
        """Log every session out at once (each waits at most 2 s for the server's Logout)."""
        await asyncio.gather(*(s.wire.logout(2.0) for s in self.sessions))

    # ------------------------------------------------------------------ the run
    async def run(self) -> Report:
        if not self.sessions:
            await self.connect()
        cfg = self.config
        start = self.start_at_ns if self.start_at_ns is not None else time.monotonic_ns() + 5_000_000
        while time.monotonic_ns() < start - SPIN_NS:
            await asyncio.sleep((start - time.monotonic_ns() - SPIN_NS) / 1e9)
        # The run's objects hold no reference cycles; a full collection over hundreds of thousands
        # of live requests would pause the schedule for milliseconds, so the cyclic GC is off.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            last_slot = await self._drive(start)
            await self._drain(start)
        except BaseException:
            await self.close()   # log out even when the run fails (server stopped reading, cancelled)
            raise
        finally:
            if gc_was_enabled:
                gc.enable()
        for req in list(self.pending.values()):
            self._time_out(req)
        self._interval(start, final=True)
        if cfg.cleanup:
            await self._cleanup()
        await self.close()
        return self._report(start, last_slot)

    async def _drive(self, t0: int) -> int:
        """Send every slot of the schedule at its time; the last slot's intended time."""
        sched = _Schedule(self, t0)
        if SlotTimer.available() and not self.config.poll:
            await self._drive_timed(sched)
        else:
            await self._drive_polled(sched)
        return sched.last_slot

    async def _drive_timed(self, sched: "_Schedule") -> None:
        # The loop sleeps in epoll until the timerfd says the next slot (or bookkeeping) is due;
        # answers are read in between. No core is spent waiting (module docstring of slot_timer).
        done = asyncio.get_running_loop().create_future()

        def on_due() -> None:
            if done.done():
                return
            try:
                at = sched.step()
                if at < 0:
                    done.set_result(None)
                else:
                    # Inside the try: an OSError from timerfd_settime must end the run with that
                    # error, not go to the loop's exception handler and leave ``done`` pending.
                    timer.arm(at)
            except BaseException as exc:       # LoadSessionError: the server stopped reading
                done.set_exception(exc)

        timer = SlotTimer(asyncio.get_running_loop(), on_due)
        try:
            timer.arm(sched.t0)
            await done
        finally:
            timer.close()

    async def _drive_polled(self, sched: "_Schedule") -> None:
        # Without timerfd: poll the loop when the next slot is less than SPIN_NS away (event loops
        # sleep in whole milliseconds), sleep otherwise.
        mono = time.monotonic_ns
        while True:
            at = sched.step()
            if at < 0:
                return
            wait = at - mono()
            if wait > SPIN_NS:
                await asyncio.sleep((wait - SPIN_NS // 2) / 1e9)
            else:
                await asyncio.sleep(0)

    async def _drain(self, t0: int) -> None:
        deadline = time.monotonic() + self.config.drain_s
        next_tick = t0 + (len(self.timeline) + 1) * 1_000_000_000
        while self.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
            if time.monotonic_ns() >= next_tick:
                self._interval(t0)
                next_tick += 1_000_000_000

    async def _cleanup(self) -> None:
        """Cancel the run's orders still resting, so repeated runs do not pile up open orders."""
        stamp = format_utc_timestamp(time.time_ns(), 3)
        now = time.monotonic_ns()
        for s in self.sessions:
            for order in list(s.orders.values()):
                if order.open and not order.pending and order.passive:
                    self._queue_cancel(s, order, now, stamp, CLEANUP)
            s.wire.flush()
        deadline = time.monotonic() + max(self.config.drain_s, 1.0)
        while any(r.kind == CLEANUP for r in self.pending.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    # ------------------------------------------------------------------ sending
    def _next_id(self, s: _SessionState) -> bytes:
        s.counter += 1
        return s.prefix + str(s.counter).encode()

    def _price(self, sym: int, ticks: int) -> bytes:
        cache = self._prices[sym]
        text = cache.get(ticks)
        if text is None:
            text = cache[ticks] = self.config.symbols[sym].price_text(ticks)
        return text

    def _qty(self, qty: int) -> bytes:
        text = self._qty_bytes.get(qty)
        if text is None:
            text = self._qty_bytes[qty] = str(qty).encode()
        return text

    def _send_one(self, s: _SessionState, intended: int, stamp: bytes) -> _Request:
        rng = self.rng
        r = rng.random()
        a, b, c = self._cut
        kind = PASSIVE if r < a else MARKETABLE if r < b else CANCEL if r < c else REPLACE
        drawn = kind
        if kind == PASSIVE and s.live_passive >= self.config.max_resting:
            kind = CANCEL
        if (kind == CANCEL or kind == REPLACE) and not s.pool:
            kind = PASSIVE if s.live_passive < self.config.max_resting else MARKETABLE
        if kind != drawn:
            self.substituted += 1
        if kind == CANCEL:
            order = s.pool[int(rng.random() * len(s.pool))]
            return self._queue_cancel(s, order, intended, stamp, CANCEL)
        if kind == REPLACE:
            return self._queue_replace(s, s.pool[int(rng.random() * len(s.pool))], intended, stamp)
        cfg = self.config
        sym_index = int(rng.random() * len(cfg.symbols))
        sym = cfg.symbols[sym_index]
        buy = rng.random() < 0.5
        qty = rng.randint(cfg.lots[0], cfg.lots[1]) * sym.lot_size
        if kind == PASSIVE:
            offset = rng.randint(cfg.passive_ticks[0], cfg.passive_ticks[1])
            tif = b"0"
            s.live_passive += 1
        else:
            offset = -cfg.aggressive_ticks
            tif = b"3"
        ticks = sym.reference_ticks - offset if buy else sym.reference_ticks + offset
        cl = self._next_id(s)
        side = b"1" if buy else b"2"
        order = _Order(cl, sym_index, side, qty, ticks, kind == PASSIVE)
        s.orders[cl] = order
        req = _Request(kind, cl, intended, order, s)
        req.seq = s.wire.queue_app(b"D", [(11, cl), *s.account, (21, b"1"), (38, self._qty(qty)), (40, b"2"),
                                          (44, self._price(sym_index, ticks)), (54, side),
                                          (55, self._symbol_bytes[sym_index]), (59, tif), (60, stamp),
                                          *self._ex_destination], stamp)
        self.pending[cl] = req
        self.counts[kind].sent += 1
        return req

    def _take_from_pool(self, s: _SessionState, order: _Order) -> None:
        at = order.pool_at
        if at < 0:
            return
        last = s.pool.pop()
        if last is not order:
            s.pool[at] = last
            last.pool_at = at
        order.pool_at = -1

    def _queue_cancel(self, s: _SessionState, order: _Order, intended: int, stamp: bytes, kind: int) -> _Request:
        self._take_from_pool(s, order)
        order.pending = True
        cl = self._next_id(s)
        req = _Request(kind, cl, intended, order, s)
        req.seq = s.wire.queue_app(b"F", [(11, cl), *s.account, (38, self._qty(order.qty)), (41, order.cl),
                                          (54, order.side), (55, self._symbol_bytes[order.sym]), (60, stamp)], stamp)
        self.pending[cl] = req
        self.counts[kind].sent += 1
        return req

    def _queue_replace(self, s: _SessionState, order: _Order, intended: int, stamp: bytes) -> _Request:
        self._take_from_pool(s, order)
        order.pending = True
        cfg = self.config
        sym = cfg.symbols[order.sym]
        rng = self.rng
        qty, ticks = order.qty, order.ticks
        if rng.random() < 0.5:
            # Move the price one tick, staying within the passive band on the order's side.
            offset = abs(ticks - sym.reference_ticks) + (1 if rng.random() < 0.5 else -1)
            offset = min(max(offset, cfg.passive_ticks[0]), cfg.passive_ticks[1])
            ticks = sym.reference_ticks - offset if order.side == b"1" else sym.reference_ticks + offset
        if ticks == order.ticks:
            # Change the size by one lot instead (never to or below what has filled).
            up = qty < cfg.lots[1] * sym.lot_size or qty - sym.lot_size <= order.cum
            qty = qty + sym.lot_size if up else qty - sym.lot_size
        cl = self._next_id(s)
        req = _Request(REPLACE, cl, intended, order, s)
        req.new_ticks = ticks
        req.new_qty = qty
        req.seq = s.wire.queue_app(b"G", [(11, cl), *s.account, (21, b"1"), (38, self._qty(qty)), (40, b"2"),
                                          (41, order.cl), (44, self._price(order.sym, ticks)), (54, order.side),
                                          (55, self._symbol_bytes[order.sym]), (59, b"0"), (60, stamp)], stamp)
        self.pending[cl] = req
        self.counts[REPLACE].sent += 1
        return req

    # ------------------------------------------------------------------ receiving
    def _on_app(self, wire: LoadSession, msg_type: bytes, fields, now: int) -> None:
        if msg_type == b"8":
            self._on_execution_report(wire, fields, now)
        elif msg_type == b"9":
            self._on_cancel_reject(fields, now)
        elif msg_type == b"3" or msg_type == b"j":
            self._on_session_reject(wire, fields, now)
        else:
            self.unmatched += 1

    def _answer(self, req: _Request, now: int, rejected: bool) -> None:
        """The final answer to ``req``: count it and record its latency."""
        del self.pending[req.cl]
        kind = req.kind
        if req.first == 0:
            req.first = now
            self._first[kind].append(now - req.intended)
        if rejected:
            self.counts[kind].rejected += 1
            if kind != CLEANUP:
                self._rejected.append(now - req.intended)
        else:
            self.counts[kind].acked += 1
            self._ack[kind].append(now - req.intended)
            self._service[kind].append(now - req.sent if req.sent else 0)
        self.answered_in_interval += 1

    def _on_execution_report(self, wire: LoadSession, fields, now: int) -> None:
        cl = fields.get(11)
        exec_type = fields.get(150)
        status = fields.get(39)
        req = self.pending.get(cl)
        if req is not None:
            order = req.order
            if exec_type in PENDING_EXEC_TYPES:
                if req.first == 0:
                    req.first = now
                    self._first[req.kind].append(now - req.intended)
                return
            self._answer(req, now, exec_type == b"8")
        else:
            late = cl in self.timed_out_ids
            if late:
                self._late(cl)   # the first late answer; later reports on the order are follow-ups
            s = self.sessions[wire.index - self.session_offset]
            order = s.orders.get(cl)
            if order is None:
                if not late:
                    self.unmatched += 1
                return
            self.follow_up += 1
        s = req.session if req is not None else self.sessions[wire.index - self.session_offset]
        cum = fields.get_int(14, None)
        if cum is not None:
            order.cum = cum
        if status in DONE_STATUSES:
            self._close(s, order)
        elif req is not None and req.kind == REPLACE and exec_type == b"5":
            del s.orders[order.cl]
            order.cl = req.cl
            order.ticks = req.new_ticks
            order.qty = req.new_qty
            s.orders[order.cl] = order
            order.pending = False
            self._to_pool(s, order)
        elif req is None or req.kind == PASSIVE:
            if not order.pending:
                self._to_pool(s, order)

    def _on_cancel_reject(self, fields, now: int) -> None:
        cl = fields.get(11)
        req = self.pending.get(cl)
        if req is None:
            if cl in self.timed_out_ids:
                self._late(cl)
            else:
                self.unmatched += 1
            return
        self._answer(req, now, True)
        order = req.order
        if fields.get(39) in DONE_STATUSES:
            self._close(req.session, order)
        else:
            order.pending = False
            self._to_pool(req.session, order)

    def _on_session_reject(self, wire: LoadSession, fields, now: int) -> None:
        ref = fields.get_int(45, 0)
        s = self.sessions[wire.index - self.session_offset]
        for req in self.pending.values():
            if req.session is s and req.seq == ref:
                self._answer(req, now, True)
                if req.kind in (PASSIVE, MARKETABLE):
                    self._close(s, req.order)
                else:
                    req.order.pending = False
                    self._to_pool(s, req.order)
                return
        self.unmatched += 1

    def _late(self, cl: bytes) -> None:
        # Counted as timed out already; the late answer is noted, not counted twice.
        self.counts[self.timed_out_ids.pop(cl)].late += 1

    def _to_pool(self, s: _SessionState, order: _Order) -> None:
        if order.pool_at < 0 and order.open and order.passive and not order.pending:
            order.pool_at = len(s.pool)
            s.pool.append(order)

    def _close(self, s: _SessionState, order: _Order) -> None:
        if not order.open:
            return
        order.open = False
        self._take_from_pool(s, order)
        if s.orders.get(order.cl) is order:
            del s.orders[order.cl]
        if order.passive:
            s.live_passive -= 1

    def _time_out(self, req: _Request) -> None:
        del self.pending[req.cl]
        self.counts[req.kind].timed_out += 1
        self.timed_out_in_interval += 1
        self.timed_out_ids[req.cl] = req.kind

    # ------------------------------------------------------------------ bookkeeping
    def _absorb(self) -> None:
        """Move the latencies collected since the last call into the histograms. Called every
        ``ABSORB_NS`` so each call is short (a few hundred microseconds at 50k/s), rather than
        one long pause a second that would itself show up in the latencies."""
        for kind in range(4):
            name = KIND_NAMES[kind]
            for stage, lists in (("first", self._first), ("ack", self._ack), ("service", self._service)):
                values = lists[kind]
                if values:
                    arr = np.fromiter(values, dtype=np.int64, count=len(values))
                    values.clear()
                    self.hist[f"{name}.{stage}"].record_many(arr)
                    if stage == "ack":
                        self.hist["all.ack"].record_many(arr)
                        self._interval_all.record_many(arr)
                        if kind == MARKETABLE:
                            self._interval_marketable.record_many(arr)
        self._first[CLEANUP].clear()
        self._ack[CLEANUP].clear()
        self._service[CLEANUP].clear()
        if self._rejected:
            self.hist["rejected"].record_many(self._rejected)
            self._rejected.clear()
        if self._lag:
            self.hist["send_lag"].record_many(self._lag)
            self._lag.clear()

    def _interval(self, t0: int, final: bool = False) -> None:
        """Once a second: expire requests, heartbeat idle sessions, add a timeline row, report progress."""
        self._absorb()
        now = time.monotonic_ns()
        limit = now - int(self.config.timeout_s * 1e9)
        expired = []
        for req in self.pending.values():   # oldest first (insertion order = schedule order)
            if req.intended > limit:
                break
            expired.append(req)
        for req in expired:
            self._time_out(req)
        for s in self.sessions:
            s.wire.heartbeat_if_idle()
        interval = self._interval_all
        if final and not self.sent_in_interval and not self.answered_in_interval and not interval.count:
            return
        p = interval.percentiles((50.0, 99.0))
        second = len(self.timeline) + 1
        row = {"second": second, "sent": self.sent_in_interval, "answered": self.answered_in_interval,
               "in_flight": len(self.pending), "timed_out": self.timed_out_in_interval,
               "ack_p50_us": p[50.0] / 1e3, "ack_p99_us": p[99.0] / 1e3, "ack_max_us": interval.max / 1e3,
               "marketable_p99_us": self._interval_marketable.value_at_percentile(99.0) / 1e3}
        self.timeline.append(row)
        if self.progress is not None:
            total = sum(c.sent for c in self.counts[:4])
            self.progress(Progress(second, total, float(self.sent_in_interval), self.answered_in_interval,
                                   len(self.pending), sum(c.timed_out for c in self.counts[:4]),
                                   p[99.0] / 1e3, interval.max / 1e3,
                                   self.hist["all.ack"].value_at_percentile(99.0) / 1e3))
        self.sent_in_interval = self.answered_in_interval = self.timed_out_in_interval = 0
        interval.reset()
        self._interval_marketable.reset()

    def _report(self, t0: int, last_slot: int) -> Report:
        counts = {KIND_NAMES[k]: self.counts[k] for k in range(4)}
        cfg = self.config
        sent = sum(c.sent for c in counts.values())
        # From the first slot to the last actual write, plus the one period the last message owns:
        # a generator that falls behind shows a lower rate here (and its lag in the latencies).
        elapsed = (self.last_sent_ns - t0) / 1e9 + 1.0 / cfg.rate if sent else 0.0
        hist = {k: v for k, v in self.hist.items() if v.count}
        planned = cfg.planned if cfg.planned is not None else int(cfg.rate * cfg.duration_s)
        return Report(target_rate=cfg.rate, planned=planned,
                      elapsed_s=elapsed, counts=counts, histograms=hist, timeline=self.timeline,
                      sessions=len(self.sessions), follow_up_reports=self.follow_up, unmatched=self.unmatched,
                      substituted=self.substituted, seq_gaps=sum(s.wire.seq_gaps for s in self.sessions),
                      garbled=sum(s.wire.garbled for s in self.sessions),
                      resend_requests=sum(s.wire.resend_requests for s in self.sessions),
                      cleanup_sent=self.counts[CLEANUP].sent,
                      cleanup_answered=self.counts[CLEANUP].acked + self.counts[CLEANUP].rejected,
                      logout_texts=[s.wire.logout_text for s in self.sessions if s.wire.logout_text])


async def run_load(config: LoadConfig, progress: Callable[[Progress], None] | None = None) -> Report:
    """Connect, log on, run the schedule, drain, clean up, log out; the report."""
    run = LoadRun(config, progress)
    await run.connect()
    return await run.run()
