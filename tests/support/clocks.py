"""Test clocks shared by the venue and router tests."""
from __future__ import annotations


class SteppingClock:
    """A venue/router clock that moves 1 us forward at every reading (distinct, ordered
    timestamps without sleeping), from a fixed 2023 start so runs are reproducible."""

    def __init__(self) -> None:
        self.t = 1_700_000_000_000_000_000

    def now_ns(self) -> int:
        self.t += 1000
        return self.t
