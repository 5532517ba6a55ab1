"""process() hands big report buffers to numpy and reuses them once their arrays are gone: results
must never change under the caller, and a reused buffer must give exactly a fresh batch's rows."""
import gc

import numpy as np

from crossbook.core import OrderBook
from crossbook.core.kernels import FlowMix, OrderFlowGenerator


def stream(seed, n):
    gen = OrderFlowGenerator(seed)
    build = gen.generate(2_000, mix=FlowMix.passive_only()).commands
    return np.concatenate([build, gen.generate(n).commands])


def test_results_survive_later_batches_and_reused_buffers_are_exact():
    big, other = stream(7, 40_000), stream(8, 60_000)
    fills, ended = OrderBook().process(big)
    assert len(fills) >= 4096 and len(ended) >= 4096      # both were handed over, not copied
    want_fills, want_ended = fills.copy(), ended.copy()
    # a view keeps its buffer alive after the array it came from is gone
    view = fills[100:200]
    del fills
    gc.collect()
    for _ in range(3):
        f, e = OrderBook().process(other)
        del f, e                                # their buffers become the spare blocks
    assert np.array_equal(view, want_fills[100:200])
    assert np.array_equal(ended, want_ended)
    del view, ended
    gc.collect()
    # now the first batch's buffers are free too; the same stream again gives the same rows
    for _ in range(2):
        fills, ended = OrderBook().process(big)
        assert np.array_equal(fills, want_fills) and np.array_equal(ended, want_ended)
        del fills, ended


def test_small_batches_after_big_ones():
    book = OrderBook()
    fills_big, ended_big = book.process(stream(9, 30_000))
    del fills_big, ended_big
    fresh = OrderBook()
    fresh.process(stream(9, 30_000))
    tail = stream(10, 500)[2_000:]
    tail["order_id"] += 10**6
    a = book.process(tail)
    b = fresh.process(tail)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_results_alive_at_once_do_not_share_memory():
    big = stream(11, 30_000)
    first = OrderBook().process(big)
    want = (first[0].copy(), first[1].copy())
    del first
    gc.collect()                               # its buffers are now the spare blocks
    kept = [OrderBook().process(big) for _ in range(3)]
    for fills, ended in kept:
        assert np.array_equal(fills, want[0]) and np.array_equal(ended, want[1])
    kept[0][0][:] = 0
    kept[0][1][:] = 0
    for fills, ended in kept[1:]:
        assert np.array_equal(fills, want[0]) and np.array_equal(ended, want[1])
