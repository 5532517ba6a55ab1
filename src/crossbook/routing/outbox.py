"""EventOutbox: the one FIFO through which a venue (or a router) hands VenueEvents to its sink.

Every Venue implementation answers through a single sink, and the delivery rules are the same for
all of them (docs/venues.md, "Delivery rules"):

1. Never re-entrant: events reach the sink from a loop callback (``call_soon``, or ``call_later``
   while the head of the queue is not due yet), never from inside the call that produced them, so
   a sink may send new orders to the venue from inside its callback.
2. In order: one FIFO for everything the owner produces; one sink call per event.
3. Batched and fair: a callback delivers what was queued when it started; what the sink causes
   waits for the next callback, so a sink that keeps sending cannot starve the loop.
4. A sink (or state listener) that raises is logged, naming the owner; delivery goes on with the
   next item.
5. Events queued while no sink is installed wait for ``set_sink``.

Optional extras, used by one owner each but kept here so that the rules above hold for them too:

* **Delay** (``InProcessVenue``'s latency knob): ``extend(events, delay_s)`` makes the events due
  ``delay_s`` seconds later (monotonic clock). An event is never delivered before it is due, and
  an event behind one that is not due waits for it (FIFO).
* **State notices** (``FixVenue``'s up/down): ``push_state(up, reason)`` queues a notice that is
  delivered, in FIFO order with the events, as ``listener(name, up, reason)`` to every listener of
  ``add_state_listener``. Notices are delivered even while no sink is installed, until the first
  event that waits for one.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable

from crossbook.routing.venue import VenueEvent

__all__ = ["EventOutbox", "StateNotice"]

log = logging.getLogger(__name__)

_monotonic = time.monotonic


class StateNotice:
    """An up/down notice queued among the events (``EventOutbox.push_state``)."""

    __slots__ = ("up", "reason")

    def __init__(self, up: bool, reason: str) -> None:
        self.up = up
        self.reason = reason

    def __repr__(self) -> str:
        return f"StateNotice(up={self.up!r}, reason={self.reason!r})"


class _Due:
    """An event with a due time (monotonic seconds); plain events in the queue are due at once."""

    __slots__ = ("due", "event")

    def __init__(self, due: float, event: VenueEvent) -> None:
        self.due = due
        self.event = event


class EventOutbox:
    """Queue of VenueEvents (and optional state notices) delivered to one sink from loop callbacks.

    ``name`` and ``label`` name the owner in log lines and errors (``"venue VENUE-A: ..."``,
    ``"router SOR: ..."``). ``loop`` is the loop that runs the delivery callbacks; when None it is
    the running loop at the first delivery that needs scheduling (or ``bind_loop()``).
    """

    __slots__ = ("name", "label", "loop", "_sink", "_listeners", "_out", "_wrapped", "_handle", "_delivering")

    def __init__(self, name: str, *, label: str = "venue", loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.name = name
        self.label = label
        self.loop = loop
        self._sink: Callable[[VenueEvent], None] | None = None
        self._listeners: list[Callable[[str, bool, str], None]] = []
        self._out: deque = deque()
        # Queued entries that are not plain events (_Due, StateNotice): while there are none, a
        # delivery callback runs the plain loop, which checks nothing per event.
        self._wrapped = 0
        self._handle: asyncio.Handle | None = None
        self._delivering = False

    # ---------------------------------------------------------------------------------------------
    # Configuration
    # ---------------------------------------------------------------------------------------------
    @property
    def sink(self) -> Callable[[VenueEvent], None] | None:
        """The installed sink, or None."""
        return self._sink

    def set_sink(self, sink: Callable[[VenueEvent], None]) -> None:
        """Install the sink; events queued before it get delivered from the next callback."""
        if not callable(sink):
            raise TypeError(f"sink must be callable, got {type(sink).__name__}")
        self._sink = sink
        if self._out:
            self._schedule()

    def add_state_listener(self, listener: Callable[[str, bool, str], None]) -> None:
        """``listener(name, up, reason)`` for every ``push_state``, in FIFO order with the events."""
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {type(listener).__name__}")
        self._listeners.append(listener)

    def bind_loop(self) -> asyncio.AbstractEventLoop:
        """The delivery loop: ``loop``, else the running loop (kept). RuntimeError naming the owner
        when there is neither."""
        loop = self.loop
        if loop is None:
            try:
                loop = self.loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError(f"{self.label} {self.name} needs a running asyncio loop (or loop=) "
                                   "to deliver events") from None
        return loop

    def __len__(self) -> int:
        """Items queued and not delivered yet (events and notices)."""
        return len(self._out)

    # ---------------------------------------------------------------------------------------------
    # Queueing
    # ---------------------------------------------------------------------------------------------
    def push(self, event: VenueEvent) -> None:
        """Queue one event, due at once (after anything queued before it)."""
        self._out.append(event)
        if self._handle is None and (self._sink is not None or self._listeners):
            self._schedule()

    def extend(self, events: Iterable[VenueEvent], delay_s: float = 0.0) -> None:
        """Queue events in order, due ``delay_s`` seconds from now (0: at once, after anything
        queued before them). ValueError for a negative or non-numeric delay."""
        out = self._out
        if delay_s:   # 0 / 0.0: due at once, the common case
            if isinstance(delay_s, bool) or not isinstance(delay_s, (int, float)) or not delay_s > 0:
                raise ValueError(f"delay_s must be a number of seconds >= 0, got {delay_s!r}")
            due = _monotonic() + delay_s
            before = len(out)
            out.extend([_Due(due, ev) for ev in events])
            self._wrapped += len(out) - before
        else:
            out.extend(events)
        if self._handle is None and (self._sink is not None or self._listeners):
            self._schedule()

    def push_state(self, up: bool, reason: str) -> None:
        """Queue an up/down notice for the state listeners."""
        self._out.append(StateNotice(bool(up), reason))
        self._wrapped += 1
        if self._handle is None and (self._sink is not None or self._listeners):
            self._schedule()

    # ---------------------------------------------------------------------------------------------
    # Delivery
    # ---------------------------------------------------------------------------------------------
    def _schedule(self) -> None:
        out = self._out
        if self._handle is not None or not out:
            return
        loop = self.loop
        if loop is None:
            loop = self.bind_loop()
        if self._wrapped and type(out[0]) is _Due:
            wait = out[0].due - _monotonic()
            if wait > 0:
                # Due times use the monotonic clock itself, not loop.time(): uvloop's loop time is
                # cached per iteration with millisecond resolution. Loops also wait in whole
                # milliseconds (uvloop rounds to the nearest), so this can fire early; _flush then
                # reschedules for the rest: an event is never delivered before its time.
                self._handle = loop.call_later(wait, self._flush)
                return
        self._handle = loop.call_soon(self._flush)

    def deliver_now(self) -> None:
        """Deliver what is queued now instead of from the scheduled callback (which is cancelled).

        Only for an owner that is itself running inside a loop callback that its sink did not
        cause: a router handling its venues' events (they come from the venues' own delivery
        callbacks) answers upstream in the same callback, one loop turn earlier, so the OMS sees
        a routed order's answer in the same turn as a direct one's. The rules hold: the sink is
        still never called from inside its own call (a call made while this outbox is delivering
        does nothing), events keep their FIFO order, and what the sink causes waits for the next
        callback. Due times and state notices are honoured as in a scheduled delivery."""
        if self._delivering or not self._out:
            return
        handle = self._handle
        if handle is not None:
            handle.cancel()
        self._flush()

    def _flush(self) -> None:
        self._handle = None
        out = self._out
        sink = self._sink
        self._delivering = True
        try:
            self._deliver(out, sink)
        finally:
            self._delivering = False
        if out and sink is not None:
            self._schedule()

    def _deliver(self, out: deque, sink: Callable[[VenueEvent], None] | None) -> None:
        # Deliver only what was queued when this callback started: what the sink causes (it may
        # send orders) waits for the next callback, so a burst cannot starve the loop.
        n = len(out)
        if not self._wrapped:
            # Only plain events are queued (the hot path): no per-event checks.
            if sink is None:
                return
            while n and out:
                ev = out.popleft()
                n -= 1
                try:
                    sink(ev)
                except Exception:
                    self._sink_raised(ev)
        else:
            self._flush_mixed(n, sink)

    def _flush_mixed(self, n: int, sink: Callable[[VenueEvent], None] | None) -> None:
        out = self._out
        now = _monotonic()
        while n and out:
            item = out[0]
            cls = type(item)
            if cls is StateNotice:
                out.popleft()
                n -= 1
                self._wrapped -= 1
                self._notify(item)
                continue
            if sink is None:
                break
            if cls is _Due:
                if item.due > now:
                    break
                out.popleft()
                self._wrapped -= 1
                item = item.event
            else:
                out.popleft()
            n -= 1
            try:
                sink(item)
            except Exception:
                self._sink_raised(item)

    def _notify(self, notice: StateNotice) -> None:
        for listener in list(self._listeners):
            try:
                listener(self.name, notice.up, notice.reason)
            except Exception:
                log.exception("%s %s: state listener raised on %s (%s)", self.label, self.name,
                              "up" if notice.up else "down", notice.reason)

    def _sink_raised(self, ev) -> None:
        kind = getattr(getattr(ev, "kind", None), "name", type(ev).__name__)
        log.exception("%s %s: event sink raised on %s %s", self.label, self.name, kind,
                      getattr(ev, "venue_cl_ord_id", ""))
