"""SlotTimer: the timerfd that wakes the load generator's loop at a slot's intended time.

Only order and "never early" are asserted here (timing belongs in benchmarks/bench_loadgen.py)."""
from __future__ import annotations

import asyncio
import os
import time

import pytest

from crossbook.fix.transport import install_uvloop
from crossbook.loadgen.slot_timer import SlotTimer

pytestmark = pytest.mark.skipif(not SlotTimer.available(), reason="timerfd is Linux-only")


def _run(coro):
    install_uvloop()
    return asyncio.run(asyncio.wait_for(coro, 10.0))


def test_fires_once_and_never_before_the_armed_time():
    async def scenario():
        fired: list[int] = []
        timer = SlotTimer(asyncio.get_running_loop(), lambda: fired.append(time.monotonic_ns()))
        try:
            at = time.monotonic_ns() + 3_000_000
            timer.arm(at)
            await asyncio.sleep(0.05)
        finally:
            timer.close()
        return at, fired

    at, fired = _run(scenario())
    assert len(fired) == 1 and fired[0] >= at


def test_arming_again_replaces_the_earlier_time():
    async def scenario():
        fired: list[int] = []
        timer = SlotTimer(asyncio.get_running_loop(), lambda: fired.append(time.monotonic_ns()))
        with timer:
            timer.arm(time.monotonic_ns() + 10_000_000_000)   # 10 s: replaced below, never fires
            soon = time.monotonic_ns() + 2_000_000
            timer.arm(soon)
            await asyncio.sleep(0.05)
            assert timer.armed_at == soon
        return soon, fired

    soon, fired = _run(scenario())
    assert len(fired) == 1 and fired[0] >= soon


def test_a_past_time_fires_on_the_next_loop_iteration_and_rearming_from_the_callback_chains():
    async def scenario():
        loop = asyncio.get_running_loop()
        times: list[int] = []
        done = loop.create_future()

        def on_due() -> None:
            times.append(time.monotonic_ns())
            if len(times) < 5:
                timer.arm(times[-1] + 200_000)   # 200 us apart, as a schedule's slots are
            else:
                done.set_result(None)

        timer = SlotTimer(loop, on_due)
        with timer:
            timer.arm(0)       # the past (0 is not "disarm": it is clamped to 1 ns)
            await done
        return times

    times = _run(scenario())
    assert len(times) == 5
    assert all(b - a >= 200_000 for a, b in zip(times, times[1:]))


def test_close_is_idempotent_and_a_closed_timer_refuses_to_arm():
    async def scenario():
        timer = SlotTimer(asyncio.get_running_loop(), lambda: None)
        fd = timer.fd
        timer.close()
        timer.close()
        with pytest.raises(ValueError, match="closed"):
            timer.arm(time.monotonic_ns())
        with pytest.raises(OSError):
            os.fstat(fd)   # the descriptor is released

    _run(scenario())


def test_the_callback_must_be_callable():
    async def scenario():
        with pytest.raises(TypeError, match="on_due"):
            SlotTimer(asyncio.get_running_loop(), "not callable")  # type: ignore[arg-type]

    _run(scenario())
