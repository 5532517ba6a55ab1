"""Bad input at the Python boundary of OrderBook: every case gives a REJECTED result with a reason
or a clear ValueError/TypeError, and leaves the book exactly as it was."""
import threading

import numpy as np
import pytest

from crossbook.core import (
    COMMAND_DTYPE, ENDED_DTYPE, FILL_DTYPE, MAX_PRICE, MAX_QTY, OP_CANCEL, OP_REPLACE, OP_SUBMIT,
    Cancel, Fill, OrderBook, OrderState, OrdType, Reason, Side, Status, STPMode, TimeInForce,
)

BUY, SELL = Side.BUY, Side.SELL


def snapshot(book):
    """Everything observable about a book's state."""
    ids = book.live_order_ids()
    return (
        book.depth(BUY, 1000), book.depth(SELL, 1000), book.best_bid(), book.best_ask(),
        len(book), book.last_price, ids, [book.order(i) for i in ids],
        [book.is_pending_stop(i) for i in ids],
    )


@pytest.fixture
def book():
    b = OrderBook()
    b.submit(1, SELL, 105, 10)
    b.submit(2, SELL, 106, 10, display_qty=3)
    b.submit(3, BUY, 100, 10, tif=TimeInForce.GTC, owner=7)
    b.submit(4, BUY, 99, 5, tif=TimeInForce.GTD, expire_time=50)
    b.submit(5, BUY, 101, 2)
    b.submit(6, SELL, 0, 2, ord_type=OrdType.MARKET)        # trades: last price 101
    b.submit(7, SELL, 0, 4, ord_type=OrdType.STOP, stop_price=90)
    return b


def assert_rejected(book, res, reason):
    assert res.status is Status.REJECTED
    assert res.reason_code is reason
    assert res.reason            # text for REJECTED
    assert res.fills == [] and res.cancels == []


@pytest.mark.parametrize("kwargs, field", [
    (dict(side=0), "side"), (dict(side=3), "side"), (dict(side=-1), "side"),
    (dict(side=257), "side"), (dict(ord_type=0), "ord_type"), (dict(ord_type=5), "ord_type"),
    (dict(tif=2), "tif"), (dict(tif=5), "tif"), (dict(tif=7), "tif"), (dict(tif=-1), "tif"),
    (dict(stp=4), "stp"), (dict(stp=-1), "stp"), (dict(stp=256), "stp"),
])
def test_unknown_enum_value_is_rejected_and_names_the_field(book, kwargs, field):
    before = snapshot(book)
    args = dict(order_id=100, side=BUY, price=105, qty=1)
    args.update(kwargs)
    res = book.submit(**args)
    assert_rejected(book, res, Reason.INVALID_ENUM)
    assert field in res.reason
    assert snapshot(book) == before
    # the id was not consumed: the same id is accepted afterwards
    assert book.submit(100, BUY, 50, 1).status is Status.RESTING


@pytest.mark.parametrize("qty", [0, -1, -(2 ** 63), MAX_QTY + 1])
def test_non_positive_or_huge_qty_is_rejected(book, qty):
    before = snapshot(book)
    assert_rejected(book, book.submit(100, BUY, 105, qty), Reason.INVALID_QTY)
    assert snapshot(book) == before


@pytest.mark.parametrize("price", [0, -5, MAX_PRICE + 1])
def test_bad_limit_price_is_rejected(book, price):
    before = snapshot(book)
    assert_rejected(book, book.submit(100, BUY, price, 1), Reason.INVALID_PRICE)
    assert_rejected(book, book.submit(101, BUY, price, 1, ord_type=OrdType.STOP_LIMIT,
                                      stop_price=10), Reason.INVALID_PRICE)
    assert snapshot(book) == before


def test_bad_stop_price_is_rejected(book):
    before = snapshot(book)
    for stop in (0, -3, MAX_PRICE + 1):
        assert_rejected(book, book.submit(100, BUY, 0, 1, ord_type=OrdType.STOP, stop_price=stop),
                        Reason.INVALID_STOP_PRICE)
    assert snapshot(book) == before


@pytest.mark.parametrize("kwargs, reason", [
    (dict(display_qty=-1), Reason.INVALID_DISPLAY_QTY),
    (dict(display_qty=5), Reason.INVALID_DISPLAY_QTY),           # == qty
    (dict(display_qty=6), Reason.INVALID_DISPLAY_QTY),
    (dict(display_qty=1, tif=TimeInForce.IOC), Reason.INVALID_DISPLAY_QTY),
    (dict(display_qty=1, ord_type=OrdType.MARKET), Reason.INVALID_DISPLAY_QTY),
    (dict(display_qty=1, ord_type=OrdType.STOP_LIMIT, stop_price=3), Reason.INVALID_DISPLAY_QTY),
    (dict(post_only=True, tif=TimeInForce.FOK), Reason.INVALID_POST_ONLY),
    (dict(post_only=True, ord_type=OrdType.STOP, stop_price=3), Reason.INVALID_POST_ONLY),
    (dict(tif=TimeInForce.GTD, expire_time=0), Reason.INVALID_EXPIRE_TIME),
    (dict(post_only=True, price=105), Reason.POST_ONLY_WOULD_MATCH),
])
def test_invalid_combinations_are_rejected(book, kwargs, reason):
    before = snapshot(book)
    args = dict(order_id=100, side=BUY, price=50, qty=5)
    args.update(kwargs)
    assert_rejected(book, book.submit(**args), reason)
    assert snapshot(book) == before


def test_duplicate_id_of_live_order_is_rejected(book):
    before = snapshot(book)
    assert_rejected(book, book.submit(3, BUY, 10, 1), Reason.DUPLICATE_ID)
    assert_rejected(book, book.submit(7, SELL, 0, 1, ord_type=OrdType.STOP, stop_price=1),
                    Reason.DUPLICATE_ID)
    assert snapshot(book) == before


def test_duplicate_id_after_the_first_order_ended_is_rejected(book):
    # 5 was filled, 6 (market) ended, 1 gets cancelled now
    assert book.cancel(1) == 10
    before = snapshot(book)
    for oid in (1, 5, 6):
        assert_rejected(book, book.submit(oid, BUY, 10, 1), Reason.DUPLICATE_ID)
    assert snapshot(book) == before


@pytest.mark.parametrize("bad, exc", [
    (1.5, TypeError), ("7", TypeError), (None, TypeError), (b"1", TypeError),
    (2 ** 63, ValueError), (-(2 ** 63) - 1, ValueError), (10 ** 30, ValueError),
])
@pytest.mark.parametrize("field", ["order_id", "side", "price", "qty", "ord_type", "tif",
                                   "display_qty", "stop_price", "owner", "stp", "expire_time"])
def test_non_integer_or_out_of_range_argument_raises(book, bad, exc, field):
    before = snapshot(book)
    args = dict(order_id=100, side=BUY, price=50, qty=5)
    args[field] = bad
    with pytest.raises(exc, match=field):
        book.submit(**args)
    assert snapshot(book) == before


def test_numpy_integers_and_intenums_are_accepted(book):
    res = book.submit(np.int64(100), np.uint8(1), np.int32(50), np.int16(5))
    assert res.status is Status.RESTING
    assert book.order(100) == OrderState(BUY, 50, 5, 5, 5, 0)


def test_extreme_but_valid_values():
    book = OrderBook()
    big = MAX_QTY
    res = book.submit(2 ** 63 - 1, SELL, MAX_PRICE, big, owner=-(2 ** 63))
    assert res.status is Status.RESTING
    res = book.submit(-(2 ** 63), BUY, MAX_PRICE, big)       # smallest id is an id like others
    assert res.status is Status.FILLED and res.fills == [(2 ** 63 - 1, -(2 ** 63), MAX_PRICE, big)]
    assert_rejected(book, book.submit(-(2 ** 63), BUY, 1, 1), Reason.DUPLICATE_ID)


def test_cancel_unknown_or_done_returns_zero_and_changes_nothing(book):
    before = snapshot(book)
    assert book.cancel(12345) == 0
    assert book.cancel(5) == 0              # filled earlier
    assert snapshot(book) == before
    r = book.cancel_result(12345)
    assert r.status is Status.REJECTED and r.reason_code is Reason.UNKNOWN_ORDER
    r = book.cancel_result(5)
    assert r.status is Status.REJECTED and r.reason_code is Reason.TOO_LATE
    with pytest.raises(TypeError, match="order_id"):
        book.cancel("1")
    assert snapshot(book) == before


@pytest.mark.parametrize("oid, qty, price, reason", [
    (999, 5, 100, Reason.UNKNOWN_ORDER),
    (5, 5, 100, Reason.TOO_LATE),
    (3, 0, 100, Reason.INVALID_QTY),
    (3, -4, 100, Reason.INVALID_QTY),
    (3, MAX_QTY + 1, 100, Reason.INVALID_QTY),
    (3, 5, 0, Reason.INVALID_PRICE),
    (3, 5, -100, Reason.INVALID_PRICE),
])
def test_bad_replace_is_rejected_and_book_unchanged(book, oid, qty, price, reason):
    before = snapshot(book)
    assert_rejected(book, book.replace(oid, qty, price), reason)
    assert snapshot(book) == before


def test_replace_argument_types(book):
    before = snapshot(book)
    with pytest.raises(TypeError, match="qty"):
        book.replace(3, 2.0, 100)
    with pytest.raises(ValueError, match="price"):
        book.replace(3, 2, 2 ** 64)
    assert snapshot(book) == before


def test_query_arguments(book):
    with pytest.raises(ValueError, match="side"):
        book.depth(3, 5)
    with pytest.raises(ValueError, match="levels"):
        book.depth(BUY, -1)
    with pytest.raises(TypeError, match="side"):
        book.depth("BUY", 1)
    assert book.depth(BUY, 0) == []
    assert book.order(424242) is None
    with pytest.raises(TypeError, match="now"):
        book.expire(1.5)


def commands(n):
    return np.zeros(n, COMMAND_DTYPE)


@pytest.mark.parametrize("arg, exc, match", [
    ([(1, 1, 1, 100, 1, 2, 0, 0, 0, 0, 0, 0, 0)], TypeError, "numpy array"),
    (np.zeros(3, np.int64), TypeError, "unstructured"),
    (np.zeros(2, [("op", "u1"), ("order_id", "i8")]), TypeError, "missing field"),
    (np.zeros(2, [(f, "f8") for f in COMMAND_DTYPE.names]), TypeError, "dtype float64"),
    (np.zeros((2, 2), COMMAND_DTYPE), ValueError, "one-dimensional"),
])
def test_process_wrong_input_raises_and_changes_nothing(book, arg, exc, match):
    before = snapshot(book)
    with pytest.raises(exc, match=match):
        book.process(arg)
    assert snapshot(book) == before


def test_process_accepts_an_equivalent_packed_dtype(book):
    packed = np.dtype([(f, COMMAND_DTYPE.fields[f][0]) for f in COMMAND_DTYPE.names])
    assert packed != COMMAND_DTYPE
    cmds = np.zeros(1, packed)
    cmds[0] = (OP_SUBMIT, 100, BUY, 50, 3, OrdType.LIMIT, 0, 0, 0, 0, 0, 0, 0)
    fills, ended = book.process(cmds)
    assert len(fills) == 0 and len(ended) == 0
    assert book.order(100) == OrderState(BUY, 50, 3, 3, 3, 0)


def test_process_rejects_out_of_range_values_in_a_wider_dtype(book):
    dt = np.dtype([(f, "i8") for f in COMMAND_DTYPE.names])
    cmds = np.zeros(1, dt)
    cmds["side"] = 300
    before = snapshot(book)
    with pytest.raises(ValueError, match="side"):
        book.process(cmds)
    assert snapshot(book) == before


def test_process_bad_rows_become_ended_rows_with_reasons(book):
    before = snapshot(book)
    c = commands(8)
    c["op"] = OP_SUBMIT
    c["ord_type"] = OrdType.LIMIT
    c["price"] = 50
    c["qty"] = 5
    c["side"] = BUY
    c["order_id"] = np.arange(200, 208)
    c[0]["op"] = 9                       # unknown op
    c[1]["side"] = 0
    c[2]["qty"] = -3
    c[3]["order_id"] = 3                 # duplicate (live)
    c[4]["order_id"] = 5                 # duplicate (done)
    c[5]["op"] = OP_CANCEL
    c[5]["order_id"] = 4242              # unknown
    c[6]["op"] = OP_REPLACE
    c[6]["order_id"] = 5                 # done
    c[7]["tif"] = 9
    fills, ended = book.process(c)
    assert fills.dtype == FILL_DTYPE and ended.dtype == ENDED_DTYPE
    assert len(fills) == 0
    assert ended.tolist() == [
        (0, 200, 5, Reason.INVALID_ENUM), (1, 201, 5, Reason.INVALID_ENUM),
        (2, 202, -3, Reason.INVALID_QTY), (3, 3, 5, Reason.DUPLICATE_ID),
        (4, 5, 5, Reason.DUPLICATE_ID), (5, 4242, 0, Reason.UNKNOWN_ORDER),
        (6, 5, 5, Reason.TOO_LATE), (7, 207, 5, Reason.INVALID_ENUM),
    ]
    assert snapshot(book) == before


def test_process_empty_batch(book):
    before = snapshot(book)
    fills, ended = book.process(commands(0))
    assert fills.shape == (0,) and ended.shape == (0,)
    assert snapshot(book) == before


def test_process_non_contiguous_view(book):
    c = commands(4)
    c["op"] = OP_SUBMIT
    c["order_id"] = [300, 301, 302, 303]
    c["side"] = BUY
    c["price"] = 60
    c["qty"] = 1
    c["ord_type"] = OrdType.LIMIT
    fills, ended = book.process(c[::2])
    assert 300 in book and 302 in book and 301 not in book


def test_results_are_namedtuple_like(book):
    res = book.submit(100, BUY, 106, 12)
    maker, taker, price, qty = res.fills[0]
    assert res.fills[0] == Fill(1, 100, 105, 10) == (1, 100, 105, 10)
    assert (maker, taker, price, qty) == (1, 100, 105, 10)
    oid, q, why = book.submit(101, BUY, 1, 1, tif=TimeInForce.IOC).cancels[0]
    assert (oid, q, why) == (101, 1, Reason.IOC_REMAINDER)
    assert isinstance(book.end_of_day()[0], Cancel)


def test_memory_figures():
    assert OrderBook.memory_bytes_per_order() <= 96
    b = OrderBook(capacity=10_000)
    usage = b.memory_usage()
    assert usage["pool"] >= 10_000 * usage["pool_entry"]
    assert usage["live_orders"] == 0


def test_capacity_grows_past_the_hint():
    b = OrderBook(capacity=16)
    for i in range(5000):
        side, price = (BUY, 1000 - i % 50) if i % 2 else (SELL, 2000 + i % 70)
        assert b.submit(i, side, price, 1).status is Status.RESTING
    assert len(b) == 5000
    assert b.memory_usage()["pool"] >= 5000 * 80
    for i in range(0, 5000, 3):
        assert b.cancel(i) == 1
    assert len(b) == 5000 - len(range(0, 5000, 3))
    for i in range(5000):
        assert (i in b) == (i % 3 != 0)


def test_other_calls_refused_while_process_runs_in_another_thread():
    # process() releases the GIL; a second caller must get a clean error, not a corrupted book
    b = OrderBook()
    c = commands(200_000)
    c["op"] = OP_SUBMIT
    c["order_id"] = np.arange(len(c))
    c["side"] = np.where(np.arange(len(c)) % 2, BUY, SELL)
    c["price"] = np.where(np.arange(len(c)) % 2, 100, 101) + (np.arange(len(c)) % 7)
    c["qty"] = 3
    c["ord_type"] = OrdType.LIMIT
    errors = []
    done = threading.Event()

    calls = [lambda: b.submit(-1, BUY, 1, 1), lambda: b.depth(BUY, 5), lambda: b.order(7),
             lambda: b.best_ask(), lambda: 5 in b, lambda: b.live_order_ids(),
             lambda: b.cancel(3)]

    def poke():
        k = 0
        while not done.is_set():
            try:
                calls[k % len(calls)]()
            except RuntimeError as e:
                errors.append(str(e))
            k += 1

    t = threading.Thread(target=poke)
    t.start()
    try:
        b.process(c)
    finally:
        done.set()
        t.join()
    # calls landed before or after the batch, or were refused with a clear message
    assert all("busy" in e for e in errors)
    bid, ask = b.best_bid(), b.best_ask()
    assert bid is None or ask is None or bid[0] < ask[0]
    assert len(b) == len(b.live_order_ids())


# ---- order ids: any int64, duplicates caught whatever the id pattern ------------------------------

def test_duplicate_ids_are_caught_across_sparse_dense_and_negative_ids():
    # ids first land in the hash set (below the dense window, far away, negative), then dense ids
    # make the bitmap window grow over some of them: every earlier id must stay a duplicate
    book = OrderBook(capacity=16)
    used = []
    early = [1000, 5, 3, 10 ** 12, -7, 2 ** 62, 1001, 999]
    for i, oid in enumerate(early):
        assert book.submit(oid, BUY, 100 + i, 1).status is Status.RESTING
        used.append(oid)
    for oid in range(1002, 200_000, 3):
        assert book.submit(oid, SELL, 10_000, 1).status is Status.RESTING
        used.append(oid)
    for oid in used[:20] + used[-20:] + early:
        assert book.submit(oid, SELL, 20_000, 1).reason_code is Reason.DUPLICATE_ID
    for oid in (1003, 4, 6, 10 ** 12 + 1, -8, 200_001):      # never used: accepted
        assert book.submit(oid, SELL, 20_000, 1).status is Status.RESTING


def test_random_ids_against_a_python_set():
    rng = np.random.default_rng(7)
    ids = rng.integers(-(2 ** 63), 2 ** 63 - 1, size=20_000, dtype=np.int64)
    ids = np.concatenate([ids, ids[rng.integers(0, len(ids), 2_000)]])      # some repeats
    rng.shuffle(ids)
    book, seen = OrderBook(capacity=16), set()
    for oid in ids.tolist():
        res = book.submit(oid, BUY, 100, 1)
        assert (res.reason_code is Reason.DUPLICATE_ID) == (oid in seen)
        seen.add(oid)
    assert len(book) == len(seen)
    for oid in list(seen)[::3]:
        assert book.cancel(oid) == 1
        assert oid not in book
    assert len(book) == len(seen) - len(list(seen)[::3])


def test_many_ids_with_the_same_hash_home():
    # 40 ids that share their home slot in a 128-slot index: probe distances pass the 5-bit
    # saturation point of the index's distance tags, and lookups and deletions must still work
    golden, bits = 0x9E3779B97F4A7C15, 7
    home = lambda oid: ((oid * golden) % 2 ** 64) >> (64 - bits)
    same = [oid for oid in range(1, 200_000) if home(oid) == 5][:40]
    assert len(same) == 40
    book = OrderBook(capacity=64)
    for oid in same:
        assert book.submit(oid, SELL, 200 + oid % 7, 1).status is Status.RESTING
    assert all(oid in book for oid in same)
    rng = np.random.default_rng(3)
    order = rng.permutation(len(same)).tolist()
    for k, i in enumerate(order):
        assert book.cancel(same[i]) == 1
        for j in order[k + 1:]:
            assert same[j] in book
        assert same[i] not in book
    assert len(book) == 0


@pytest.mark.parametrize("capacity, exc", [(-1, ValueError), (2 ** 26, ValueError),
                                           (2 ** 70, ValueError), (1.5, TypeError),
                                           ("10", TypeError)])
def test_bad_capacity_raises(capacity, exc):
    with pytest.raises(exc, match="capacity"):
        OrderBook(capacity=capacity)


def test_small_capacities_still_work():
    for cap in (0, 1, 16):
        b = OrderBook(capacity=cap)
        for i in range(100):
            b.submit(i, BUY, 100 - i % 10, 1)
        assert len(b) == 100
