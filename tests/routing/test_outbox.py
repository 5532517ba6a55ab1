"""EventOutbox, the delivery FIFO shared by InProcessVenue, FixVenue and SmartRouter: order, delay,
no re-entrancy, one callback's share, a raising sink or listener, no sink yet, state notices."""
from __future__ import annotations

import asyncio
import logging
import time

import pytest

from crossbook.routing.outbox import EventOutbox
from crossbook.routing.venue import VenueEvent, VenueEventKind as K


def ev(cl: str, kind: K = K.NEW) -> VenueEvent:
    return VenueEvent(kind, "V", cl, f"V-{cl}")


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


class Recorder:
    """A sink that records (callback number, cl id) and checks it is never entered twice."""

    def __init__(self) -> None:
        self.got: list[str] = []
        self.depth = 0
        self.max_depth = 0

    def __call__(self, event: VenueEvent) -> None:
        self.depth += 1
        self.max_depth = max(self.max_depth, self.depth)
        try:
            self.got.append(event.venue_cl_ord_id)
        finally:
            self.depth -= 1


def test_events_arrive_in_order_from_a_loop_callback_never_inside_push():
    async def main():
        box = EventOutbox("VENUE-A")
        sink = Recorder()
        box.set_sink(sink)
        box.push(ev("a"))
        box.extend([ev("b"), ev("c")])
        box.push(ev("d"))
        assert sink.got == [] and len(box) == 4       # nothing delivered inside the calls
        await turns(1)
        assert sink.got == ["a", "b", "c", "d"] and len(box) == 0

    asyncio.run(main())


def test_a_sink_that_pushes_from_its_callback_is_not_reentered_and_waits_a_callback():
    async def main():
        box = EventOutbox("VENUE-A")
        calls: list[tuple[int, str]] = []
        depth = [0]
        turn = [0]

        def sink(event: VenueEvent) -> None:
            depth[0] += 1
            assert depth[0] == 1, "sink entered re-entrantly"
            calls.append((turn[0], event.venue_cl_ord_id))
            if event.venue_cl_ord_id.count("+") < 3:
                box.push(ev(event.venue_cl_ord_id + "+"))   # what an OMS sending orders does
            depth[0] -= 1

        box.set_sink(sink)
        box.extend([ev("a"), ev("b")])
        for t in range(1, 6):
            turn[0] = t
            await asyncio.sleep(0)
        # One callback delivers what was queued when it started; what the sink queued comes in the
        # next one, after everything older.
        per_turn: dict[int, list[str]] = {}
        for t, cl in calls:
            per_turn.setdefault(t, []).append(cl)
        assert list(per_turn.values()) == [["a", "b"], ["a+", "b+"], ["a++", "b++"], ["a+++", "b+++"]]
        assert len(box) == 0

    asyncio.run(main())


def test_a_raising_sink_is_logged_with_the_owner_and_later_events_still_arrive(caplog):
    async def main():
        box = EventOutbox("SOR-1", label="router")
        got = []

        def sink(event: VenueEvent) -> None:
            got.append(event.venue_cl_ord_id)
            if event.venue_cl_ord_id == "b":
                raise RuntimeError("boom")

        box.set_sink(sink)
        box.extend([ev("a"), ev("b", K.TRADE), ev("c")])
        await turns()
        assert got == ["a", "b", "c"]

    with caplog.at_level(logging.ERROR, logger="crossbook.routing.outbox"):
        asyncio.run(main())
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].getMessage() == "router SOR-1: event sink raised on TRADE b"
    assert errors[0].exc_info and isinstance(errors[0].exc_info[1], RuntimeError)


def test_events_queued_without_a_sink_wait_for_it():
    async def main():
        box = EventOutbox("VENUE-A")
        box.extend([ev("a"), ev("b")])
        await turns()
        assert len(box) == 2                    # kept, not dropped
        sink = Recorder()
        box.set_sink(sink)
        box.push(ev("c"))
        assert sink.got == []
        await turns(1)
        assert sink.got == ["a", "b", "c"]

    asyncio.run(main())


def test_events_can_be_queued_outside_a_loop_until_a_sink_needs_delivery():
    box = EventOutbox("VENUE-A")
    box.push(ev("a"))                           # no sink: nothing to schedule, no loop needed
    assert len(box) == 1
    with pytest.raises(RuntimeError, match="venue VENUE-A needs a running asyncio loop"):
        box.set_sink(Recorder())

    async def main():
        sink = Recorder()
        box.set_sink(sink)
        await turns(1)
        assert sink.got == ["a"]

    asyncio.run(main())


def test_bad_sink_listener_and_delay_are_refused_with_a_clear_error():
    box = EventOutbox("VENUE-A")
    with pytest.raises(TypeError, match="sink must be callable, got int"):
        box.set_sink(3)
    with pytest.raises(TypeError, match="listener must be callable, got str"):
        box.add_state_listener("x")
    for bad in (-0.1, float("nan"), "1", True):
        with pytest.raises(ValueError, match="delay_s must be a number of seconds >= 0"):
            box.extend([ev("a")], delay_s=bad)
    assert len(box) == 0


def test_a_delayed_event_is_never_delivered_before_it_is_due_and_keeps_fifo_order():
    async def main():
        box = EventOutbox("VENUE-A")
        arrivals: list[tuple[float, str]] = []
        box.set_sink(lambda e: arrivals.append((time.monotonic(), e.venue_cl_ord_id)))
        sent = time.monotonic()
        box.extend([ev("a"), ev("b")], delay_s=0.03)
        box.push(ev("c"))                          # due at once, but behind the delayed ones
        await turns()
        assert arrivals == []
        deadline = time.monotonic() + 2.0
        while len(arrivals) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert [cl for _, cl in arrivals] == ["a", "b", "c"]
        assert all(t - sent >= 0.03 for t, _ in arrivals)
        # Back to no delay: the plain path again.
        box.push(ev("d"))
        await turns(1)
        assert arrivals[-1][1] == "d"

    asyncio.run(main())


def test_delays_may_change_between_pushes_without_reordering():
    async def main():
        box = EventOutbox("VENUE-A")
        got: list[str] = []
        box.set_sink(lambda e: got.append(e.venue_cl_ord_id))
        box.extend([ev("slow")], delay_s=0.02)
        box.extend([ev("fast")], delay_s=0.001)
        deadline = time.monotonic() + 2.0
        while len(got) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        assert got == ["slow", "fast"]

    asyncio.run(main())


def test_state_notices_share_the_fifo_and_reach_every_listener_even_without_a_sink(caplog):
    async def main():
        box = EventOutbox("VENUE-F")
        seen: list[tuple] = []

        def bad_listener(name, up, reason):
            raise ValueError("listener bug")

        box.add_state_listener(bad_listener)
        box.add_state_listener(lambda name, up, reason: seen.append(("state", name, up, reason)))
        box.push_state(False, "disconnected: connection closed")
        box.push(ev("x", K.REJECTED))                  # the VENUE_DOWN answer the notice explains
        box.push_state(True, "logged on")
        await turns()
        # No sink: the first notice is delivered, the event waits, and so does what is behind it.
        assert seen == [("state", "VENUE-F", False, "disconnected: connection closed")]
        assert len(box) == 2
        box.set_sink(lambda e: seen.append(("event", e.venue_cl_ord_id)))
        await turns()
        assert seen[1:] == [("event", "x"), ("state", "VENUE-F", True, "logged on")]
        assert len(box) == 0

    with caplog.at_level(logging.ERROR, logger="crossbook.routing.outbox"):
        asyncio.run(main())
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert messages == ["venue VENUE-F: state listener raised on down (disconnected: connection closed)",
                        "venue VENUE-F: state listener raised on up (logged on)"]


def test_a_notice_queued_by_a_listener_waits_for_the_next_callback():
    async def main():
        box = EventOutbox("VENUE-F")
        seen: list[tuple[int, str]] = []
        turn = [0]

        def listener(name, up, reason):
            seen.append((turn[0], reason))
            if reason == "first":
                box.push_state(True, "second")

        box.add_state_listener(listener)
        box.push_state(True, "first")
        for t in range(1, 4):
            turn[0] = t
            await asyncio.sleep(0)
        assert seen == [(1, "first"), (2, "second")]

    asyncio.run(main())


def test_a_delivery_callback_that_fires_early_delivers_nothing_before_it_is_due():
    # Loops round timer waits to whole milliseconds (uvloop to the nearest), so the callback can run
    # before the head is due: simulated here by running it at once.
    async def main():
        box = EventOutbox("VENUE-A")
        got: list[str] = []
        box.set_sink(lambda e: got.append(e.venue_cl_ord_id))
        box.extend([ev("a")], delay_s=0.05)
        box._handle.cancel()
        box._flush()
        assert got == [] and len(box) == 1
        assert box._handle is not None          # rescheduled for the rest of the wait
        deadline = time.monotonic() + 2.0
        while not got and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert got == ["a"]

    asyncio.run(main())


def test_deliver_now_delivers_the_queue_in_order_once_and_cancels_the_scheduled_callback():
    async def main():
        box = EventOutbox("SOR", label="router")
        sink = Recorder()
        box.set_sink(sink)
        box.push(ev("a"))
        box.extend([ev("b"), ev("c")])

        def venue_callback() -> None:          # what a venue's delivery callback into the router does
            box.deliver_now()
            assert sink.got == ["a", "b", "c"] and len(box) == 0

        asyncio.get_running_loop().call_soon(venue_callback)
        await turns(3)
        assert sink.got == ["a", "b", "c"] and sink.max_depth == 1   # not a second time from the old callback
        box.deliver_now()                      # nothing queued: nothing happens
        assert sink.got == ["a", "b", "c"]

    asyncio.run(main())


def test_deliver_now_from_inside_the_sink_does_nothing_and_what_the_sink_causes_waits_a_callback():
    async def main():
        box = EventOutbox("SOR", label="router")
        turn = [0]
        calls: list[tuple[int, str]] = []
        depth = [0]

        def sink(event: VenueEvent) -> None:
            depth[0] += 1
            assert depth[0] == 1, "sink entered re-entrantly"
            calls.append((turn[0], event.venue_cl_ord_id))
            if not event.venue_cl_ord_id.endswith("+"):
                box.push(ev(event.venue_cl_ord_id + "+"))
                box.deliver_now()              # re-entrant: refused, the new event waits
            depth[0] -= 1

        box.set_sink(sink)
        box.extend([ev("a"), ev("b")])
        box.deliver_now()                      # from this task's step: a loop callback the sink did not cause
        for t in range(1, 5):
            turn[0] = t
            await asyncio.sleep(0)
        per_turn: dict[int, list[str]] = {}
        for t, cl in calls:
            per_turn.setdefault(t, []).append(cl)
        assert per_turn == {0: ["a", "b"], 1: ["a+", "b+"]} and len(box) == 0

    asyncio.run(main())


def test_deliver_now_keeps_due_times_and_state_notices():
    async def main():
        box = EventOutbox("V")
        sink = Recorder()
        seen: list[tuple[str, bool]] = []
        box.add_state_listener(lambda name, up, reason: seen.append((name, up)))
        box.set_sink(sink)
        box.push_state(False, "down")
        box.push(ev("now"))
        box.extend([ev("later")], delay_s=0.05)
        box.deliver_now()
        assert seen == [("V", False)] and sink.got == ["now"] and len(box) == 1   # "later" is not due
        await asyncio.sleep(0.1)
        assert sink.got == ["now", "later"]

    asyncio.run(main())
