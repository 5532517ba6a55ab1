"""The HdrHistogram-style histogram against NumPy's exact percentiles, and merging."""
from __future__ import annotations

import numpy as np
import pytest

from crossbook.loadgen.histogram import MAX_TRACKABLE, Histogram

POINTS = (0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0)


def _check_against_numpy(h: Histogram, data: np.ndarray, rel: float) -> None:
    for p in POINTS:
        exact = int(np.percentile(data, p, method="inverted_cdf"))  # the ceil(p * n)-th smallest
        got = h.value_at_percentile(p)
        assert exact <= got <= exact + exact * rel + 1, (p, exact, got)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percentiles_match_numpy_within_the_bucket_width(seed):
    rng = np.random.default_rng(seed)
    # Latency-like: most values tens of microseconds, a long tail into hundreds of milliseconds.
    data = np.concatenate([rng.lognormal(10.5, 0.6, 50_000), rng.lognormal(15, 1.5, 500)]).astype(np.int64)
    h = Histogram()
    h.record_many(data)
    assert h.count == data.size and h.min == data.min() and h.max == data.max()
    assert h.mean == pytest.approx(data.mean())
    _check_against_numpy(h, data, rel=1 / 1024)
    assert h.percentiles(POINTS) == {p: h.value_at_percentile(p) for p in POINTS}


def test_small_values_are_exact_and_precision_is_configurable():
    rng = np.random.default_rng(7)
    data = rng.integers(0, 2048, 10_000)
    h = Histogram()
    h.record_many(data)
    for p in POINTS:
        assert h.value_at_percentile(p) == int(np.percentile(data, p, method="inverted_cdf"))
    coarse = Histogram(significant_digits=2)   # 128 sub-buckets: within 1/64 of the value
    wide = rng.integers(1, 10**9, 20_000)
    coarse.record_many(wide)
    _check_against_numpy(coarse, wide, rel=1 / 64)


def test_scalar_and_vector_recording_agree():
    rng = np.random.default_rng(11)
    data = np.concatenate([rng.integers(0, 5_000, 300), rng.integers(0, 10**12, 300), [0, 1, 2047, 2048, 4095, 4096]])
    one, many = Histogram(), Histogram()
    for v in data:
        one.record(int(v))
    many.record_many(data)
    assert np.array_equal(one.counts, many.counts)
    assert (one.count, one.min, one.max, one.mean) == (many.count, many.min, many.max, many.mean)
    for v in (0, 1, 2047, 2048, 2049, 123_456, 10**9):
        hi = one.highest_equivalent(v)
        assert hi >= v and one._index(hi) == one._index(v) and one._index(hi + 1) == one._index(v) + 1


def test_merge_equals_recording_everything_in_one():
    rng = np.random.default_rng(5)
    a_data = rng.lognormal(11, 1, 20_000).astype(np.int64)
    b_data = rng.lognormal(13, 2, 7_000).astype(np.int64)
    a, b, both = Histogram(), Histogram(), Histogram()
    a.record_many(a_data)
    b.record_many(b_data)
    both.record_many(np.concatenate([a_data, b_data]))
    merged = a.copy().merge(b)
    assert np.array_equal(merged.counts, both.counts)
    assert (merged.count, merged.min, merged.max) == (both.count, both.min, both.max)
    assert merged.percentiles(POINTS) == both.percentiles(POINTS)
    assert a.count == a_data.size  # copy() left the original alone
    assert Histogram().merge(a).percentiles(POINTS) == a.percentiles(POINTS)
    restored = Histogram.from_state(merged.to_state())
    assert np.array_equal(restored.counts, merged.counts) and restored.percentiles(POINTS) == merged.percentiles(POINTS)


def test_bad_input_is_refused_with_clear_errors():
    h = Histogram()
    with pytest.raises(ValueError, match=">= 0"):
        h.record(-1)
    with pytest.raises(ValueError, match=">= 0"):
        h.record_many([5, -3])
    with pytest.raises(ValueError, match="percentile"):
        h.value_at_percentile(101)
    with pytest.raises(ValueError, match="significant_digits"):
        Histogram(0)
    with pytest.raises(ValueError, match="precision"):
        h.merge(Histogram(2))
    with pytest.raises(TypeError, match="Histogram"):
        h.merge([1, 2])
    assert h.value_at_percentile(99) == 0 and h.count == 0


def test_values_beyond_the_range_are_clamped_not_lost():
    h = Histogram()
    h.record(MAX_TRACKABLE + 10)
    h.record_many([5, MAX_TRACKABLE * 2])
    assert h.count == 3 and h.clamped == 2 and h.max == MAX_TRACKABLE * 2
    assert h.value_at_percentile(100) == MAX_TRACKABLE * 2
