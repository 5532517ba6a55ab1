"""Running one load over several processes: sessions and rate split, one start time, reports merged.

One Python process sends and receives about 50-60k messages/s at most (see docs/loadgen.md);
``--processes K`` runs K generators, each with every K-th session and its share of the rate.
They log on, report ready, and all start their schedules at the same ``time.monotonic_ns()``
instant (CLOCK_MONOTONIC is system-wide on Linux). Histograms are merged exactly; the
per-second progress line sums counts and shows the worst process's p99.
"""
from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import multiprocessing.connection
import time
from typing import Callable

from crossbook.loadgen.config import LoadConfig
from crossbook.loadgen.report import Report
from crossbook.loadgen.runner import LoadRun, Progress, run_load
from crossbook.loadgen.wire import LoadSessionError

START_DELAY_NS = 100_000_000


def split_config(config: LoadConfig, k: int) -> list[LoadConfig]:
    """K configs with every K-th session, a proportional share of rate and count, distinct seeds."""
    n = len(config.sessions)
    if not 1 <= k <= n:
        raise ValueError(f"processes must be within 1..{n} (the number of sessions), got {k}")
    parts = []
    for i in range(k):
        sessions = config.sessions[i::k]
        share = len(sessions) / n
        count = None if config.count is None else max(1, round(config.count * share))
        parts.append(dataclasses.replace(config, sessions=sessions, rate=config.rate * share, count=count,
                                         seed=config.seed + 7919 * i))
    return parts


def run_processes(config: LoadConfig, processes: int = 1,
                  progress: Callable[[Progress], None] | None = None) -> Report:
    """Run ``config`` in this process (``processes == 1``) or in ``processes`` child processes."""
    from crossbook.fix.transport import install_uvloop

    if processes == 1:
        install_uvloop()
        return asyncio.run(run_load(config, progress))
    parts = split_config(config, processes)
    ctx = multiprocessing.get_context("fork")
    pipes, children = [], []
    offset = 0
    for part in parts:
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(target=_child, args=(child_end, part, offset), daemon=True)
        proc.start()
        child_end.close()
        pipes.append(parent_end)
        children.append(proc)
        offset += len(part.sessions)
    try:
        return _coordinate(config, pipes, progress)
    finally:
        for proc in children:
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=2.0)


def _coordinate(config: LoadConfig, pipes: list, progress) -> Report:
    deadline = time.monotonic() + config.logon_timeout_s + 10.0
    ready = 0
    while ready < len(pipes):
        waiting = multiprocessing.connection.wait(pipes, timeout=max(0.0, deadline - time.monotonic()))
        if not waiting:
            raise LoadSessionError("the generator processes did not log on in time")
        for conn in waiting:
            kind, payload = _recv(conn)
            if kind == "ready":
                ready += 1
    start = time.monotonic_ns() + START_DELAY_NS
    for conn in pipes:
        conn.send(start)
    reports: list[Report] = []
    by_second: dict[int, list[Progress]] = {}
    open_pipes = list(pipes)
    while open_pipes:
        for conn in multiprocessing.connection.wait(open_pipes, timeout=1.0):
            kind, payload = _recv(conn)
            if kind == "progress":
                rows = by_second.setdefault(payload.second, [])
                rows.append(payload)
                if len(rows) == len(pipes) and progress is not None:
                    progress(_merge_progress(rows))
                    del by_second[payload.second]
            elif kind == "report":
                reports.append(payload)
                open_pipes.remove(conn)
    merged = reports[0]
    for other in reports[1:]:
        merged.merge(other)
    merged.target_rate = config.rate
    return merged


def _recv(conn):
    try:
        kind, payload = conn.recv()
    except EOFError:
        raise LoadSessionError("a generator process ended without a report") from None
    if kind == "error":
        raise LoadSessionError(payload)
    return kind, payload


def _merge_progress(rows: list[Progress]) -> Progress:
    return Progress(second=rows[0].second, sent=sum(r.sent for r in rows), rate=sum(r.rate for r in rows),
                    answered=sum(r.answered for r in rows), in_flight=sum(r.in_flight for r in rows),
                    timed_out=sum(r.timed_out for r in rows), p99_us=max(r.p99_us for r in rows),
                    max_us=max(r.max_us for r in rows), p99_total_us=max(r.p99_total_us for r in rows))


def _child(conn, config: LoadConfig, session_offset: int) -> None:
    from crossbook.fix.transport import install_uvloop

    install_uvloop()

    async def main() -> Report:
        run = LoadRun(config, progress=lambda p: conn.send(("progress", p)), session_offset=session_offset)
        await run.connect()
        conn.send(("ready", None))
        # Blocking here is fine: nothing else runs on this loop until the schedule starts.
        run.start_at_ns = conn.recv()
        return await run.run()

    try:
        report = asyncio.run(main())
    except BaseException as exc:  # report any failure to the parent instead of dying silently
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("report", report))
