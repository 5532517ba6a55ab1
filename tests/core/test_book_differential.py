"""The compiled OrderBook against the pure-Python reference book, on random streams.

A hypothesis state machine drives every kind of message (all order types and TIFs, icebergs,
stops, STP modes, post-only, replace, cancel, end of day, expiry, and some invalid input) through
three books at once: the compiled book per call, the compiled book through one-row process()
batches, and the reference.  After every step it compares results, fills, ended orders, statuses,
depth and order state, and checks the invariants of the spec.  Seeded streams then check that a
whole batch gives exactly the per-call results, and that the same stream gives the same trades.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from crossbook.core import (
    COMMAND_DTYPE, OP_CANCEL, OP_END_OF_DAY, OP_EXPIRE, OP_REPLACE, OP_SUBMIT, OrderBook,
    OrdType, Reason, Side, Status, TimeInForce,
)
from reference_book import ReferenceBook

PRICES = st.integers(95, 105)
QTYS = st.integers(1, 20)


def result_rows(i, op, order_id, qty, res):
    """The (fills, ended) rows process() must give for one per-call result."""
    fills = [(i,) + tuple(f) for f in res.fills]
    if res.status is Status.REJECTED:
        return fills, [(i, order_id, 0 if op == OP_CANCEL else qty, int(res.reason_code))]
    return fills, [(i, c[0], c[1], int(c[2])) for c in res.cancels]


def command(op, order_id=0, side=0, price=0, qty=0, ord_type=0, tif=0, display_qty=0,
            stop_price=0, owner=0, stp=0, post_only=0, expire_time=0):
    c = np.zeros(1, COMMAND_DTYPE)
    c[0] = (op, order_id, side, price, qty, ord_type, tif, display_qty, stop_price, owner, stp,
            int(post_only), expire_time)
    return c


class BookComparison(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.book = OrderBook(capacity=16)        # small: exercises pool and index growth
        self.batch = OrderBook()
        self.ref = ReferenceBook()
        self.next_id = 1
        self.ids = []                 # every id ever submitted (accepted or not)
        self.side_of = {}
        self.qty_of = {}
        self.filled = {}              # from the fills seen
        self.bought = self.sold = 0

    # ---- helpers ---------------------------------------------------------------------------
    def check_result(self, res, ref):
        assert res.status is ref.status, (res, ref)
        assert res.reason_code is ref.reason_code, (res, ref)
        assert res.fills == ref.fills
        assert res.cancels == ref.cancels
        if res.status is not Status.REJECTED:
            assert (res.filled_qty, res.leaves_qty) == (ref.filled_qty, ref.leaves_qty)
        if res.status in (Status.REJECTED, Status.CANCELLED):
            assert res.reason
        self.account(res.fills)

    def account(self, fills):
        for maker, taker, price, qty in fills:
            assert qty > 0
            assert self.side_of[maker] != self.side_of[taker], "a fill needs a buyer and a seller"
            for oid in (maker, taker):
                self.filled[oid] = self.filled.get(oid, 0) + qty
                assert self.filled[oid] <= self.qty_of[oid]
                if self.side_of[oid] == Side.BUY:
                    self.bought += qty
                else:
                    self.sold += qty

    def check_batch(self, op, order_id, qty, res, **fields):
        fills, ended = self.batch.process(command(op, order_id, qty=qty, **fields))
        want_fills, want_ended = result_rows(0, op, order_id, qty, res)
        assert fills.tolist() == want_fills
        assert ended.tolist() == want_ended

    def pick_id(self, data):
        if self.ids and data.draw(st.integers(0, 9)) < 8:
            return data.draw(st.sampled_from(self.ids))
        return data.draw(st.sampled_from([10 ** 9, -5, self.next_id + 1000]))

    # ---- rules -----------------------------------------------------------------------------
    @rule(data=st.data(),
          side=st.sampled_from([Side.BUY, Side.SELL] * 20 + [0, 3]),
          ord_type=st.sampled_from([OrdType.LIMIT] * 12 + [OrdType.MARKET] * 2
                                   + [OrdType.STOP] * 2 + [OrdType.STOP_LIMIT] * 3 + [7]),
          tif=st.sampled_from([TimeInForce.DAY] * 4 + [TimeInForce.GTC] * 3
                              + [TimeInForce.IOC, TimeInForce.FOK, TimeInForce.GTD] * 2 + [2]),
          price=PRICES, qty=QTYS, owner=st.integers(0, 2), stp=st.sampled_from([0] * 5 + [1, 2, 3, 5]),
          post_only=st.sampled_from([False] * 8 + [True]))
    def submit(self, data, side, ord_type, tif, price, qty, owner, stp, post_only):
        if data.draw(st.integers(0, 29)) == 0 and self.ids:
            order_id = data.draw(st.sampled_from(self.ids))          # duplicate
        else:
            order_id = self.next_id
            self.next_id += 1
        if data.draw(st.integers(0, 39)) == 0:
            qty = data.draw(st.sampled_from([0, -1]))
        if data.draw(st.integers(0, 39)) == 0:
            price = data.draw(st.sampled_from([0, -3]))
        display = 0
        if data.draw(st.integers(0, 3)) == 0:
            display = data.draw(st.integers(1, 8))
        stop_price = data.draw(PRICES) if ord_type in (OrdType.STOP, OrdType.STOP_LIMIT) else 0
        expire = data.draw(st.integers(0, 10)) if tif == TimeInForce.GTD else 0
        args = dict(order_id=order_id, side=side, price=price, qty=qty, ord_type=ord_type,
                    tif=tif, display_qty=display, stop_price=stop_price, owner=owner, stp=stp,
                    post_only=post_only, expire_time=expire)
        if order_id not in self.ids:
            self.ids.append(order_id)
        res = self.book.submit(**args)
        ref = self.ref.submit(**args)
        if res.status is not Status.REJECTED:       # the id is now taken by this order
            self.side_of[order_id] = side
            self.qty_of[order_id] = qty
        self.check_result(res, ref)
        del args["order_id"], args["qty"]
        self.check_batch(OP_SUBMIT, order_id, qty, res, **args)

    @rule(data=st.data(), as_result=st.booleans())
    def cancel(self, data, as_result):
        order_id = self.pick_id(data)
        ref = self.ref.cancel(order_id)
        if as_result:
            res = self.book.cancel_result(order_id)
            self.check_result(res, ref)
        else:
            qty = self.book.cancel(order_id)
            assert qty == (ref.cancels[0][1] if ref.status is Status.CANCELLED else 0)
            res = ref
        self.check_batch(OP_CANCEL, order_id, 0, res)

    @rule(data=st.data(), qty=st.integers(-1, 25), price=PRICES)
    def replace(self, data, qty, price):
        order_id = self.pick_id(data)
        o = self.book.order(order_id)
        if o is not None and data.draw(st.booleans()):
            price = o.price                          # same price: in place or leaves increased
            qty = data.draw(st.integers(max(1, o.filled - 1), o.qty + 3))
        res = self.book.replace(order_id, qty, price)
        ref = self.ref.replace(order_id, qty, price)
        if res.status is not Status.REJECTED and order_id in self.qty_of:
            self.qty_of[order_id] = max(qty, self.qty_of[order_id])
        self.check_result(res, ref)
        self.check_batch(OP_REPLACE, order_id, qty, res, price=price)

    @rule()
    def end_of_day(self):
        got = self.book.end_of_day()
        assert got == self.ref.end_of_day()
        fills, ended = self.batch.process(command(OP_END_OF_DAY))
        assert len(fills) == 0
        assert ended.tolist() == [(0, c[0], c[1], int(c[2])) for c in got]

    @rule(now=st.integers(0, 12))
    def expire(self, now):
        got = self.book.expire(now)
        assert got == self.ref.expire(now)
        fills, ended = self.batch.process(command(OP_EXPIRE, expire_time=now))
        assert len(fills) == 0
        assert ended.tolist() == [(0, c[0], c[1], int(c[2])) for c in got]

    # ---- after every step --------------------------------------------------------------------
    @invariant()
    def same_state(self):
        for b in (self.book, self.batch):
            assert b.depth(Side.BUY, 100) == self.ref.depth(Side.BUY, 100)
            assert b.depth(Side.SELL, 100) == self.ref.depth(Side.SELL, 100)
            assert b.best_bid() == self.ref.best_bid()
            assert b.best_ask() == self.ref.best_ask()
            assert b.last_price == self.ref.last
            assert b.live_order_ids() == self.ref.live_order_ids()
            assert len(b) == len(self.ref.live)
        for oid in self.ids:
            state = self.book.order(oid)
            assert state == self.ref.order(oid)
            assert self.batch.order(oid) == state
            assert self.book.is_pending_stop(oid) == (oid in self.ref.live
                                                      and self.ref.live[oid].pending)

    @invariant()
    def never_crossed_at_rest(self):
        bid, ask = self.book.best_bid(), self.book.best_ask()
        if bid and ask:
            assert bid[0] < ask[0]

    @invariant()
    def filled_plus_leaves_is_qty(self):
        for oid in self.book.live_order_ids():
            o = self.book.order(oid)
            assert o.filled + o.leaves == o.qty
            assert o.leaves > 0
            assert o.filled == self.filled.get(oid, 0)
            assert 0 <= o.displayed <= o.leaves

    @invariant()
    def bought_equals_sold(self):
        assert self.bought == self.sold


TestBookComparison = BookComparison.TestCase
TestBookComparison.settings = settings(
    max_examples=int(os.environ.get("CROSSBOOK_HYPOTHESIS_EXAMPLES", "250")), stateful_step_count=80, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# ---- seeded streams --------------------------------------------------------------------------

def random_stream(seed, n, id_space=None):
    """A mixed stream of every command kind as a COMMAND_DTYPE array (deterministic in seed)."""
    rng = np.random.default_rng(seed)
    c = np.zeros(n, COMMAND_DTYPE)
    op = rng.choice([OP_SUBMIT, OP_CANCEL, OP_REPLACE, OP_END_OF_DAY, OP_EXPIRE], size=n,
                    p=[0.70, 0.17, 0.11, 0.005, 0.015])
    c["op"] = op
    ids = np.arange(1, n + 1)
    ref_ids = rng.integers(1, np.maximum(ids, 2))          # an earlier id, for cancel/replace
    c["order_id"] = np.where(op == OP_SUBMIT, ids, ref_ids)
    dup = (op == OP_SUBMIT) & (rng.random(n) < 0.01)
    c["order_id"][dup] = ref_ids[dup]
    c["side"] = rng.choice([1, 2], size=n)
    c["price"] = rng.integers(990, 1011, size=n)
    c["qty"] = rng.integers(1, 60, size=n)
    c["ord_type"] = rng.choice([1, 2, 3, 4], size=n, p=[0.06, 0.80, 0.06, 0.08])
    c["tif"] = rng.choice([0, 1, 3, 4, 6], size=n, p=[0.4, 0.3, 0.12, 0.08, 0.1])
    c["display_qty"] = np.where(rng.random(n) < 0.15, rng.integers(1, 20, size=n), 0)
    c["stop_price"] = rng.integers(990, 1011, size=n)
    c["owner"] = rng.integers(0, 4, size=n)
    c["stp"] = rng.choice([0, 1, 2, 3], size=n, p=[0.7, 0.1, 0.1, 0.1])
    c["post_only"] = rng.random(n) < 0.05
    c["expire_time"] = np.where(op == OP_EXPIRE, np.arange(n) // 50,
                                np.arange(n) // 50 + rng.integers(0, 5, size=n))
    return c


def run_per_call(book, cmds):
    """Drive the per-call API with a command array; return the rows process() must give."""
    fills, ended = [], []
    for i, row in enumerate(cmds.tolist()):
        (op, oid, side, price, qty, ot, tif, disp, stop, owner, stp, post, exp) = row
        if op == OP_SUBMIT:
            res = book.submit(oid, side, price, qty, ot, tif, disp, stop, owner, stp, bool(post),
                              exp)
        elif op == OP_CANCEL:
            res = book.cancel_result(oid)
        elif op == OP_REPLACE:
            res = book.replace(oid, qty, price)
        else:
            got = book.end_of_day() if op == OP_END_OF_DAY else book.expire(exp)
            ended += [(i, c[0], c[1], int(c[2])) for c in got]
            continue
        f, e = result_rows(i, op, oid, qty, res)
        fills += f
        ended += e
    return fills, ended


def book_state(book):
    ids = book.live_order_ids()
    return (book.depth(Side.BUY, 10 ** 6), book.depth(Side.SELL, 10 ** 6), book.last_price,
            ids, [book.order(i) for i in ids])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batch_process_gives_exactly_the_per_call_results(seed):
    cmds = random_stream(seed, 20_000)
    per_call = OrderBook()
    want_fills, want_ended = run_per_call(per_call, cmds)
    batch = OrderBook()
    fills, ended = batch.process(cmds)
    assert len(want_fills) > 1000 and len(want_ended) > 1000      # the stream does trade
    assert fills.tolist() == want_fills
    assert ended.tolist() == want_ended
    assert book_state(batch) == book_state(per_call)


def test_batch_split_into_chunks_gives_the_same_results():
    cmds = random_stream(11, 10_000)
    whole_f, whole_e = OrderBook().process(cmds)
    book = OrderBook()
    parts_f, parts_e = [], []
    for start in range(0, len(cmds), 777):
        f, e = book.process(cmds[start:start + 777])
        f["cmd_index"] += start
        e["cmd_index"] += start
        parts_f.append(f)
        parts_e.append(e)
    assert np.concatenate(parts_f).tolist() == whole_f.tolist()
    assert np.concatenate(parts_e).tolist() == whole_e.tolist()


@pytest.mark.parametrize("seed", [5, 6])
def test_seeded_stream_matches_the_reference(seed):
    cmds = random_stream(seed, 3000)
    book, ref = OrderBook(capacity=16), ReferenceBook()
    for row in cmds.tolist():
        (op, oid, side, price, qty, ot, tif, disp, stop, owner, stp, post, exp) = row
        if op == OP_SUBMIT:
            args = (oid, side, price, qty, ot, tif, disp, stop, owner, stp, bool(post), exp)
            res, want = book.submit(*args), ref.submit(*args)
        elif op == OP_CANCEL:
            res, want = book.cancel_result(oid), ref.cancel(oid)
        elif op == OP_REPLACE:
            res, want = book.replace(oid, qty, price), ref.replace(oid, qty, price)
        elif op == OP_END_OF_DAY:
            assert book.end_of_day() == ref.end_of_day()
            continue
        else:
            assert book.expire(exp) == ref.expire(exp)
            continue
        assert (res.status, res.reason_code, res.fills, res.cancels) == \
            (want.status, want.reason_code, want.fills, want.cancels), row
    assert book.depth(Side.BUY, 1000) == ref.depth(Side.BUY, 1000)
    assert book.depth(Side.SELL, 1000) == ref.depth(Side.SELL, 1000)
    assert book.live_order_ids() == ref.live_order_ids()


def test_determinism_same_stream_same_trades():
    cmds = random_stream(42, 30_000)
    runs = [OrderBook(capacity=cap).process(cmds) for cap in (16, 1024, 100_000)]
    for fills, ended in runs[1:]:
        assert np.array_equal(fills, runs[0][0])
        assert np.array_equal(ended, runs[0][1])
    assert len(runs[0][0]) > 1000
    # the per-call path too, twice
    a, b = OrderBook(), OrderBook()
    assert run_per_call(a, cmds[:5000]) == run_per_call(b, cmds[:5000])
