"""A log-bucketed latency histogram in the HdrHistogram layout (integer nanoseconds).

Values below ``2 ** sub_bits`` (2,048 with the default 3 significant digits) are counted exactly;
above that every power-of-two range is split into ``2 ** (sub_bits - 1)`` equal buckets, so a
recorded value is known to within ``1 / 2 ** (sub_bits - 1)`` of itself (0.1 % by default) however
large it is. Memory is fixed (about 280 KB of counts), recording is O(1), and two histograms
merge by adding their counts, which is how runs in several processes are combined.

Percentiles follow HdrHistogram: ``value_at_percentile(p)`` is the highest value equivalent to the
bucket holding the ``ceil(p / 100 * count)``-th smallest recorded value, so a reported percentile
is never below the true one and at most one bucket width above it. ``max`` and ``min`` are exact.

    h = Histogram()
    h.record(1_250)                       # one value (ns)
    h.record_many(np.array([...]))        # many at once (vectorised)
    h.value_at_percentile(99.9), h.max, h.mean
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

#: Largest value counted in its own bucket: about 2.4 hours in ns. Larger values are counted in
#: the last bucket (``clamped`` says how many) so that one absurd sample cannot raise.
MAX_TRACKABLE = (1 << 43) - 1


class Histogram:
    """Counts of non-negative integer values (ns) in HdrHistogram-style log-linear buckets."""

    __slots__ = ("sub_bits", "_half_bits", "_mask", "counts", "count", "min", "max", "_sum", "clamped")

    def __init__(self, significant_digits: int = 3) -> None:
        if isinstance(significant_digits, bool) or not isinstance(significant_digits, int) \
                or not 1 <= significant_digits <= 5:
            raise ValueError(f"significant_digits must be an integer in 1..5, got {significant_digits!r}")
        # Smallest power of two holding 2 * 10**digits, as HdrHistogram sizes its sub-buckets.
        self.sub_bits = math.ceil(math.log2(2 * 10 ** significant_digits))
        self._half_bits = self.sub_bits - 1
        self._mask = (1 << self.sub_bits) - 1
        self.counts = np.zeros(self._index(MAX_TRACKABLE) + 1, dtype=np.int64)
        self.count = 0
        self.min = 0
        self.max = 0
        self._sum = 0
        self.clamped = 0

    # -- bucket arithmetic (scalar and vectorised versions agree; tests check both)
    def _index(self, value: int) -> int:
        shift = (value | self._mask).bit_length() - self.sub_bits
        return ((shift + 1) << self._half_bits) + (value >> shift) - (1 << self._half_bits)

    def _indices(self, values: np.ndarray) -> np.ndarray:
        v = values | self._mask
        # frexp's exponent is the bit length; exact because values are below 2**53.
        shift = np.frexp(v.astype(np.float64))[1].astype(np.int64) - self.sub_bits
        return ((shift + 1) << self._half_bits) + (values >> shift) - (1 << self._half_bits)

    def _lowest_at(self, index: int) -> int:
        half = 1 << self._half_bits
        if index < 2 * half:
            return index
        shift = (index >> self._half_bits) - 1
        return ((index & (half - 1)) + half) << shift

    def highest_equivalent(self, value: int) -> int:
        """The largest value counted in the same bucket as ``value``."""
        index = self._index(value)
        return self._lowest_at(index + 1) - 1

    # -- recording
    def record(self, value: int) -> None:
        """Count one value (ns). Negative values are a caller bug: ValueError."""
        if value < 0:
            raise ValueError(f"histogram values must be >= 0, got {value}")
        if value > MAX_TRACKABLE:
            self.clamped += 1
            bucket = MAX_TRACKABLE
        else:
            bucket = value
        self.counts[self._index(bucket)] += 1
        if self.count == 0 or value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.count += 1
        self._sum += value

    def record_many(self, values: Iterable[int] | np.ndarray) -> None:
        """Count many values at once (a NumPy array or any iterable of ints)."""
        arr = np.asarray(values, dtype=np.int64).ravel()
        if arr.size == 0:
            return
        lo = int(arr.min())
        if lo < 0:
            raise ValueError(f"histogram values must be >= 0, got {lo}")
        hi = int(arr.max())
        total = int(arr.sum(dtype=np.float64)) if hi > (1 << 40) else int(arr.sum())
        if hi > MAX_TRACKABLE:
            self.clamped += int((arr > MAX_TRACKABLE).sum())
            arr = np.minimum(arr, MAX_TRACKABLE)
        indices = self._indices(arr)
        if arr.size < 64:
            np.add.at(self.counts, indices, 1)
        else:
            top = int(indices.max()) + 1
            self.counts[:top] += np.bincount(indices, minlength=top)
        if self.count == 0 or lo < self.min:
            self.min = lo
        if hi > self.max:
            self.max = hi
        self.count += int(arr.size)
        self._sum += total

    def merge(self, other: "Histogram") -> "Histogram":
        """Add ``other``'s counts into this histogram (same precision required); returns self."""
        if not isinstance(other, Histogram):
            raise TypeError(f"can only merge a Histogram, got {type(other).__name__}")
        if other.sub_bits != self.sub_bits:
            raise ValueError("cannot merge histograms of different precision "
                             f"({self.sub_bits} and {other.sub_bits} sub-bucket bits)")
        if other.count == 0:
            return self
        self.counts += other.counts
        self.min = other.min if self.count == 0 else min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.count += other.count
        self._sum += other._sum
        self.clamped += other.clamped
        return self

    def reset(self) -> None:
        self.counts[:] = 0
        self.count = self.min = self.max = self._sum = self.clamped = 0

    def copy(self) -> "Histogram":
        h = Histogram.__new__(Histogram)
        for name in Histogram.__slots__:
            setattr(h, name, getattr(self, name))
        h.counts = self.counts.copy()
        return h

    # -- queries
    @property
    def mean(self) -> float:
        return self._sum / self.count if self.count else 0.0

    def value_at_percentile(self, percentile: float) -> int:
        """The value at or below which ``percentile`` % of the recorded values fall (0 when empty)."""
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"percentile must be within 0..100, got {percentile!r}")
        if self.count == 0:
            return 0
        if percentile == 100.0:
            return self.max
        rank = max(1, math.ceil(percentile / 100.0 * self.count))
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        value = self._lowest_at(index + 1) - 1
        # The bucket's upper end can lie past what was actually recorded.
        return min(max(value, self.min), self.max)

    def percentiles(self, points: Iterable[float] = (50.0, 99.0, 99.9)) -> dict[float, int]:
        """Several percentiles with one cumulative pass."""
        points = list(points)
        out: dict[float, int] = {}
        if self.count == 0:
            return {p: 0 for p in points}
        cum = np.cumsum(self.counts)
        for p in points:
            if not 0.0 <= p <= 100.0:
                raise ValueError(f"percentile must be within 0..100, got {p!r}")
            if p == 100.0:
                out[p] = self.max
                continue
            rank = max(1, math.ceil(p / 100.0 * self.count))
            index = int(np.searchsorted(cum, rank))
            out[p] = min(max(self._lowest_at(index + 1) - 1, self.min), self.max)
        return out

    def count_at_or_above(self, value: int) -> int:
        """How many recorded values are in buckets at or above ``value``'s bucket."""
        return int(self.counts[self._index(min(max(value, 0), MAX_TRACKABLE)):].sum())

    # -- transport between processes and into JSON
    def to_state(self) -> dict:
        """A compact picklable/JSON-able form (non-zero buckets only)."""
        nz = np.flatnonzero(self.counts)
        return {"sub_bits": self.sub_bits, "index": nz.tolist(), "counts": self.counts[nz].tolist(),
                "count": self.count, "min": self.min, "max": self.max, "sum": self._sum, "clamped": self.clamped}

    @classmethod
    def from_state(cls, state: dict) -> "Histogram":
        digits = {4: 1, 8: 2, 11: 3, 15: 4, 18: 5}.get(state.get("sub_bits"))
        if digits is None:
            raise ValueError(f"histogram state has an unknown sub_bits value {state.get('sub_bits')!r}")
        h = cls(digits)
        h.counts[np.asarray(state["index"], dtype=np.int64)] = np.asarray(state["counts"], dtype=np.int64)
        h.count, h.min, h.max = int(state["count"]), int(state["min"]), int(state["max"])
        h._sum, h.clamped = int(state["sum"]), int(state["clamped"])
        return h

    def __repr__(self) -> str:
        p = self.percentiles((50.0, 99.0))
        return f"Histogram(count={self.count}, p50={p[50.0]}, p99={p[99.0]}, max={self.max})"
