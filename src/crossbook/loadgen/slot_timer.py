"""Waking the event loop at an exact nanosecond: a Linux timerfd on ``CLOCK_MONOTONIC``.

Event loops time their sleeps in whole milliseconds (uvloop rounds a 50 us ``call_later`` down to
0 ms, asyncio's epoll rounds it up to 1 ms), so an open-loop schedule with slots every 50 us can
either poll the loop (``asyncio.sleep(0)`` in a loop: one core at 100 % whatever the rate) or
send up to a millisecond late. On a 2-core machine that also runs the server under test, the
polling core is taken from the server: at 10,000 orders/s the generator used as much CPU as the
server it measured (docs/loadgen.md, "Measured").

A timerfd armed with an absolute ``CLOCK_MONOTONIC`` time (the clock behind
``time.monotonic_ns()`` on Linux) becomes readable at that instant with no slack, so the loop
sleeps in ``epoll_wait`` and wakes when the next slot is due. ``SlotTimer.available()`` is False
where there is no timerfd (not Linux, no libc); the runner then falls back to polling.

    timer = SlotTimer(loop, on_due)     # on_due() runs in the loop when the armed time has come
    timer.arm(time.monotonic_ns() + 50_000)
    ...
    timer.close()
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import sys
from typing import Callable

CLOCK_MONOTONIC = 1
TFD_TIMER_ABSTIME = 1
TFD_NONBLOCK = os.O_NONBLOCK
TFD_CLOEXEC = getattr(os, "O_CLOEXEC", 0o2000000)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _load_libc():
    """libc's timerfd_create/timerfd_settime, or None where they do not exist."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        create, settime = libc.timerfd_create, libc.timerfd_settime
    except (OSError, AttributeError):
        return None
    create.argtypes = (ctypes.c_int, ctypes.c_int)
    create.restype = ctypes.c_int
    settime.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.POINTER(_Itimerspec))
    settime.restype = ctypes.c_int
    return create, settime


_LIBC = _load_libc()


class SlotTimer:
    """A one-shot timer on the running loop: ``arm(at_ns)`` calls ``on_due()`` at ``at_ns``
    (``time.monotonic_ns()`` scale) or right away when that is past. Arming again replaces the
    previous time. ``on_due`` runs as a loop reader callback, so it must not block; an exception
    from it propagates to the loop's exception handler, as any callback's does."""

    @staticmethod
    def available() -> bool:
        """True where timerfd exists (Linux)."""
        return _LIBC is not None

    def __init__(self, loop: asyncio.AbstractEventLoop, on_due: Callable[[], None]) -> None:
        if _LIBC is None:
            raise OSError("SlotTimer needs Linux timerfd (SlotTimer.available() is False here)")
        if not callable(on_due):
            raise TypeError(f"on_due must be callable, got {type(on_due).__name__}")
        fd = _LIBC[0](CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_create: {os.strerror(err)}")
        self.fd = fd
        self._loop = loop
        self._on_due = on_due
        # One preallocated itimerspec (interval 0: one-shot), rewritten by every arm().
        self._spec = _Itimerspec()
        self._value = self._spec.it_value
        self._spec_ref = ctypes.byref(self._spec)
        self._settime = _LIBC[1]
        self.armed_at = 0
        loop.add_reader(fd, self._readable)

    def arm(self, at_ns: int) -> None:
        """Call ``on_due`` once at ``at_ns`` (monotonic nanoseconds; the past means now)."""
        if self.fd < 0:
            raise ValueError("SlotTimer is closed")
        # A zero it_value disarms a timerfd; the earliest real instant is 1 ns.
        at = at_ns if at_ns > 0 else 1
        value = self._value
        value.tv_sec, value.tv_nsec = divmod(at, 1_000_000_000)
        if self._settime(self.fd, TFD_TIMER_ABSTIME, self._spec_ref, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_settime: {os.strerror(err)}")
        self.armed_at = at

    def _readable(self) -> None:
        try:
            os.read(self.fd, 8)        # the expiry count; reading it clears readability
        except BlockingIOError:
            return                     # re-armed after it fired but before the loop saw it
        self._on_due()

    def close(self) -> None:
        """Stop the timer and release its descriptor (idempotent)."""
        if self.fd >= 0:
            self._loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "SlotTimer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
