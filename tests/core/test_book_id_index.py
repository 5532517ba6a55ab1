"""The live-order id index (a window over dense ids plus a hash index for the rest) under id
patterns that exercise both parts and the moves between them.

The window follows increasing, dense ids; ids below it, far above it, or in a random order go to
the hash index; the window slides up (moving the orders whose ids fall out into the hash),
grows with the pool, and must never cover an id the hash holds.  Each stream runs through the
compiled book (from a tiny capacity, so that everything grows) and the pure-Python reference
book, comparing every result and, after every step, the set of live orders.
"""
import random

import numpy as np
import pytest

from crossbook.core import COMMAND_DTYPE, OP_CANCEL, OP_REPLACE, OP_SUBMIT, OrderBook, Side
from reference_book import ReferenceBook
from test_book_differential import result_rows

INT64_MAX = 2**63 - 1
INT64_MIN = -2**63


def dense(rng, n):
    return list(range(1, n + 1))


def dense_from_large(rng, n):
    return [10**15 + i for i in range(n)]


def gaps(rng, n):
    """Increasing with big steps: every id is far above the window."""
    return [i * 1_000_003 for i in range(1, n + 1)]


def descending(rng, n):
    return list(range(10**6, 10**6 - n, -1))


def random_ids(rng, n):
    return list({rng.randint(INT64_MIN, INT64_MAX): None for _ in range(n)})


def dense_jump_back(rng, n):
    """Dense, a jump ahead (far above a small window: hashed, and the window must not slide over
    those ids later), then the dense run goes on through the jumped ids (duplicates) and past
    them."""
    ids = list(range(1, 301)) + list(range(1000, 1010))
    return ids + [i for i in range(301, 301 + n) if not 1000 <= i < 1010][: n - len(ids)]


def interleaved(rng, n):
    """Two dense runs far apart, interleaved (one follows the window, one is hashed)."""
    out = []
    for i in range(n // 2):
        out += [1 + i, 10**9 + i]
    return out


def near_extremes(rng, n):
    return [INT64_MAX - i for i in range(n // 2)] + [INT64_MIN + i for i in range(n // 2)]


def extremes_min_first(rng, n):
    """Ids at the bottom of int64 (hashed, below the window), then the top: the window moving up
    to the top must not wrap around onto the bottom ids."""
    low = [INT64_MIN + i for i in range(n // 2)]
    return low + [INT64_MAX - n // 2 + 1 + i for i in range(n // 2)]      # up to INT64_MAX


def shuffled_window(rng, n):
    """Dense ids in a locally shuffled order (ids a little below the window's top)."""
    ids = list(range(1, n + 1))
    for i in range(0, n, 64):
        block = ids[i:i + 64]
        rng.shuffle(block)
        ids[i:i + 64] = block
    return ids


PATTERNS = [dense, dense_from_large, gaps, descending, random_ids, dense_jump_back, interleaved,
            near_extremes, extremes_min_first, shuffled_window]


def fills_of(res):
    return [tuple(f) for f in res.fills]


@pytest.mark.parametrize("capacity", [16, 4096])
@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.__name__)
def test_id_index_matches_reference(pattern, capacity):
    rng = random.Random(f"{pattern.__name__}-{capacity}")
    ids = pattern(rng, 1500)
    book, ref = OrderBook(capacity), ReferenceBook()
    submitted = []
    for step, order_id in enumerate(ids):
        # mostly passive orders (the book keeps ~hundreds of them), some crossing
        side = rng.choice([Side.BUY, Side.SELL])
        price = (rng.randint(90, 100) if side == Side.BUY else rng.randint(100, 110))
        if rng.random() < 0.1:
            price = 110 if side == Side.BUY else 90
        qty = rng.randint(1, 20)
        got, want = book.submit(order_id, side, price, qty), ref.submit(order_id, side, price, qty)
        assert (got.status, fills_of(got)) == (want.status, want.fills), (step, order_id)
        submitted.append(order_id)
        for _ in range(rng.choice([0, 0, 1, 2])):
            old = rng.choice(submitted)
            if rng.random() < 0.7:
                assert book.cancel(old) == (ref.cancel(old).cancels or [(0, 0)])[0][1]
            else:
                new_qty = rng.randint(1, 30)
                got, want = book.replace(old, new_qty, price), ref.replace(old, new_qty, price)
                assert (got.status, fills_of(got)) == (want.status, want.fills), (step, old)
        # a duplicate is refused wherever its id is kept
        dup = rng.choice(submitted)
        assert book.submit(dup, Side.BUY, 1, 1).reason_code == ref.submit(dup, Side.BUY, 1, 1).reason_code
        assert len(book) == len(ref.live)
        if step % 50 == 0 or step == len(ids) - 1:
            assert book.live_order_ids() == ref.live_order_ids()
            for probe in rng.sample(submitted, min(20, len(submitted))):
                assert (probe in book) == (probe in ref.live)
    # everything still live can be found and cancelled; then nothing is left
    for order_id in list(ref.live):
        assert book.cancel(order_id) == ref.cancel(order_id).cancels[0][1]
    assert len(book) == 0 and book.live_order_ids() == []
    assert all(order_id not in book for order_id in submitted)


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.__name__)
def test_id_index_batch_equals_per_call(pattern):
    """The same kind of stream through process() in several batches gives the per-call rows."""
    rng = random.Random(pattern.__name__)
    ids = pattern(rng, 1200)
    rows, submitted = [], []
    for order_id in ids:
        side = rng.choice([1, 2])
        price = rng.randint(90, 100) if side == 1 else rng.randint(100, 110)
        rows.append((OP_SUBMIT, order_id, side, price, rng.randint(1, 20), 2, 0, 0, 0, 0, 0, 0, 0))
        submitted.append(order_id)
        if rng.random() < 0.4:
            op = rng.choice([OP_CANCEL, OP_REPLACE])
            rows.append((op, rng.choice(submitted), 0, price, rng.randint(1, 30), 0, 0, 0, 0, 0, 0,
                         0, 0))
    cmds = np.array(rows, dtype=COMMAND_DTYPE)
    batch, single = OrderBook(16), OrderBook(16)
    got_fills, got_ended = [], []
    for start in range(0, len(cmds), 700):
        fills, ended = batch.process(cmds[start:start + 700])
        got_fills += [(int(r[0]) + start,) + tuple(r)[1:] for r in fills.tolist()]
        got_ended += [(int(r[0]) + start,) + tuple(r)[1:] for r in ended.tolist()]
    want_fills, want_ended = [], []
    for i, (op, order_id, side, price, qty, *_rest) in enumerate(rows):
        if op == OP_SUBMIT:
            res = single.submit(order_id, side, price, qty)
        elif op == OP_CANCEL:
            res = single.cancel_result(order_id)
        else:
            res = single.replace(order_id, qty, price)
        fills, ended = result_rows(i, op, order_id, qty, res)
        want_fills += fills
        want_ended += ended
    assert got_fills == want_fills
    assert got_ended == want_ended
    assert batch.live_order_ids() == single.live_order_ids()


def test_window_costs_one_slot_per_dense_order():
    """Dense ids stay in the window: the index costs about 4 bytes per order, not a hash."""
    book = OrderBook(capacity=10_000)
    for i in range(1, 10_001):
        book.submit(i, Side.BUY, 100 - i % 50, 1)
    usage = book.memory_usage()
    assert usage["live_orders"] == 10_000
    assert usage["live_index"] <= 16_384 * 4 + 64 * 4
    assert OrderBook.memory_bytes_per_order() == usage["pool_entry"] + 4
