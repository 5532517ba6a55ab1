"""The compiled risk engine against the pure-Python reference, on random order streams.

A hypothesis state machine drives both engines with the same configuration and the same stream
of new orders (every order type, all sessions, accounts and instruments, clock jumps), fills
(partial and full, at other prices than the order's), cancels, replaces, limit changes, kill
switches, restrictions, reference price moves, new days, snapshot/restore round trips through
JSON and batches.  After every step the codes, every account's usage (floats bit for bit) and
the killed accounts must be equal.  A seeded stream then checks check_batch with open_accepted
against per-call checks on a long stream.
"""
import json
import random
from decimal import Decimal

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from crossbook.core.risk import RiskCode, RiskEngine, RiskLimits
from reference_risk import ReferenceRiskEngine

# (tick size, multiplier, currency, reference ticks)
INSTRUMENTS = [
    ("0.01", 1, "USD", 10_000),       # an equity at 100.00
    ("0.25", 50, "USD", 20_000),      # a future at 5000.00
    ("0.01", 1, "EUR", 5_000),        # a EUR equity at 50.00
    ("0.00001", 1, "USD", 108_000),   # EUR/USD at 1.08000
]
ACCOUNTS = [(0, "USD"), (0, "USD"), (1, "EUR")]   # (firm, currency)
SESSIONS = [(5, 3), (None, None), (1000, 2)]      # (rate per s, burst)
MS = 1_000_000
# price offsets from the reference in bps: random, plus exact collar edges (references are
# multiples of 10,000 ticks, so these land exactly on a 100 or 500 bps collar)
offsets = st.one_of(st.integers(-1600, 1600), st.sampled_from([-500, -100, 0, 100, 500]))
# clock steps in ms, including an exact token (200 ms at 5/s) and a clock that steps back
clock_steps = st.sampled_from([0, 0, 1, 50, 199, 200, 400, 5000, -300])

amounts = st.one_of(st.none(), st.sampled_from([0, 1000, 5000, 12_345, 50_000, 250_000]),
                    st.integers(0, 400_000).map(lambda c: Decimal(c) / 100))
limits_st = st.builds(
    RiskLimits,
    max_order_qty=st.one_of(st.none(), st.integers(0, 300)),
    max_order_notional=amounts,
    collar_bps=st.one_of(st.none(), st.sampled_from([0, 100, 500]), st.integers(0, 1500)),
    daily_credit_limit=amounts,
    max_position=st.one_of(st.none(), st.integers(0, 600)),
    max_open_orders=st.one_of(st.none(), st.integers(0, 8)),
    market_orders_allowed=st.booleans(),
)


def configure(engine):
    engine.set_fx_rate("EUR", "USD", "1.08")
    for i, (tick, mult, ccy, ref) in enumerate(INSTRUMENTS):
        engine.set_instrument(i, tick_size=tick, multiplier=mult, currency=ccy, symbol=f"I{i}",
                              reference_price_ticks=ref)
    for s, (rate, burst) in enumerate(SESSIONS):
        engine.set_session(s, rate, burst, name=f"S{s}")


class RiskComparison(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        # tiny initial sizes: configuration must grow every array and keep what it held
        self.eng = RiskEngine(max_accounts=1, max_instruments=1, max_sessions=1, max_firms=1)
        self.ref = ReferenceRiskEngine()
        self.now = 1_000 * MS
        self.orders = []      # [account, instrument, side, ord_type, qty, cum, leaves, risk price]

    def both(self, method, *args):
        a = getattr(self.eng, method)(*args)
        b = getattr(self.ref, method)(*args)
        return a, b

    @initialize(limits=st.lists(limits_st, min_size=3, max_size=3))
    def setup(self, limits):
        configure(self.eng)
        configure(self.ref)
        for a, ((firm, ccy), lim) in enumerate(zip(ACCOUNTS, limits)):
            self.eng.set_account(a, lim, firm=firm, currency=ccy, name=f"A{a}")
            self.ref.set_account(a, lim, firm=firm, currency=ccy)

    # ---- orders ----
    @rule(a=st.integers(0, 2), i=st.integers(0, 3), s=st.integers(-1, 2), side=st.sampled_from([1, 2]),
          ord_type=st.sampled_from([1, 2, 2, 2, 3, 4]), qty=st.integers(1, 250),
          offset_bps=offsets, dt_ms=clock_steps)
    def new_order(self, a, i, s, side, ord_type, qty, offset_bps, dt_ms):
        self.now += dt_ms * MS
        ref = self.ref.reference.get(i, 0) or INSTRUMENTS[i][3]
        price = 0 if ord_type == 1 else max(1, ref + ref * offset_bps // 10_000)
        code, expected = self.both("check_new", a, i, s, side, ord_type, qty, price, self.now)
        assert code is expected, (code, expected)
        if code is RiskCode.OK:
            text = self.eng.explain(code, a, i, side, ord_type, qty, price, s)
            assert text == ""
            risk_price = self.eng.market_price(i) if ord_type == 1 else price
            assert risk_price == (self.ref.market_price(i) if ord_type == 1 else price)
            self.both("on_open", a, i, side, qty, risk_price)
            self.orders.append([a, i, side, ord_type, qty, 0, qty, risk_price])
        else:
            text = self.eng.explain(code, a, i, side, ord_type, qty, price, s)
            assert text.startswith("risk: ")

    @precondition(lambda self: self.orders)
    @rule(k=st.integers(0, 1000), part=st.floats(0.05, 1.0), px_bps=st.integers(-300, 300))
    def fill(self, k, part, px_bps):
        o = self.orders[k % len(self.orders)]
        a, i, side, _, _, _, leaves, price = o
        if leaves == 0:
            return
        qty = max(1, min(leaves, int(leaves * part)))
        base = price or INSTRUMENTS[i][3]
        fill_px = max(1, base + base * px_bps // 10_000)
        self.both("on_fill", a, i, side, qty, price, fill_px)
        o[5] += qty
        o[6] -= qty
        if o[6] == 0:
            self.both("on_close", a, i, side, 0, price)
            self.orders.remove(o)

    @precondition(lambda self: self.orders)
    @rule(k=st.integers(0, 1000))
    def cancel(self, k):
        o = self.orders.pop(k % len(self.orders))
        self.both("on_close", o[0], o[1], o[2], o[6], o[7])

    @precondition(lambda self: self.orders)
    @rule(k=st.integers(0, 1000), s=st.integers(-1, 2), dq=st.integers(-100, 150),
          dp_bps=st.integers(-800, 800), dt_ms=clock_steps)
    def replace(self, k, s, dq, dp_bps, dt_ms):
        self.now += dt_ms * MS
        o = self.orders[k % len(self.orders)]
        a, i, side, ord_type, qty, cum, leaves, price = o
        new_qty = max(1, qty + dq)
        if ord_type == 1:
            new_price = 0
        else:
            new_price = max(1, price + price * dp_bps // 10_000)
        code, expected = self.both("check_replace", a, i, s, side, ord_type, new_qty, new_price,
                                   leaves, price, cum, self.now)
        assert code is expected, (code, expected)
        text = self.eng.explain(code, a, i, side, ord_type, new_qty, new_price, s,
                                replace=(leaves, price, cum))
        assert (text == "") == (code is RiskCode.OK)
        if code is not RiskCode.OK:
            return
        new_leaves = max(0, new_qty - cum)
        risk_price = self.eng.market_price(i) if ord_type == 1 else new_price
        self.both("on_replace", a, i, side, leaves, price, new_leaves, risk_price)
        o[4], o[6], o[7] = new_qty, new_leaves, risk_price
        if new_leaves == 0:
            self.both("on_close", a, i, side, 0, risk_price)
            self.orders.remove(o)

    # ---- controls ----
    @rule(a=st.integers(0, 2), lim=limits_st)
    def change_limits(self, a, lim):
        self.both("set_limits", a, lim)

    @rule(scope=st.sampled_from(["global", "firm", "firm", "account", "account"]),
          index=st.integers(0, 2), on=st.booleans())
    def kill(self, scope, index, on):
        if scope == "firm":
            index %= 2
        self.both("kill", scope, index, on)

    @rule(i=st.integers(0, 3), restricted=st.booleans(), a=st.one_of(st.none(), st.integers(0, 2)))
    def restrict(self, i, restricted, a):
        self.both("set_restricted", i, restricted, a)

    @rule(i=st.integers(0, 3), move_bps=st.integers(-1000, 1000), clear=st.booleans())
    def reference(self, i, move_bps, clear):
        ref = INSTRUMENTS[i][3]
        self.both("set_reference_price", i, 0 if clear and move_bps % 7 == 0 else
                  ref + ref * move_bps // 10_000)

    @rule()
    def new_day(self):
        self.both("new_day")

    @rule()
    def snapshot_restore(self):
        # what the OMS does after a crash: usage persisted as JSON, restored into a new engine
        snap = json.loads(json.dumps(self.eng.snapshot()))
        fresh = RiskEngine()
        configure(fresh)
        for a, (firm, ccy) in enumerate(ACCOUNTS):
            fresh.set_account(a, self.eng.limits(a), firm=firm, currency=ccy, name=f"A{a}")
        fresh.restore(snap)
        for a in range(3):
            assert fresh.usage(a) == self.eng.usage(a)
        self.eng.restore(snap)

    @rule(rows=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3), st.integers(-1, 2),
                                  st.sampled_from([1, 2]), st.sampled_from([1, 2, 3, 4]),
                                  st.integers(1, 250), offsets, clock_steps),
                         min_size=1, max_size=12),
          apply=st.booleans())
    def batch(self, rows, apply):
        cols = [[] for _ in range(8)]
        for a, i, s, side, ot, qty, off, dt in rows:
            self.now += dt * MS
            ref = self.ref.reference.get(i, 0) or INSTRUMENTS[i][3]
            price = 0 if ot == 1 else max(1, ref + ref * off // 10_000)
            for col, v in zip(cols, (a, i, s, side, ot, qty, price, self.now)):
                col.append(v)
        codes = self.eng.check_batch(*(np.array(c, dtype=np.int64) for c in cols),
                                     open_accepted=apply)
        for k, row in enumerate(zip(*cols)):
            expected = self.ref.check_new(*row)
            assert codes[k] == expected, (k, row, codes[k], expected)
            if apply and expected is RiskCode.OK:
                a, i, s, side, ot, qty, price, _ = row
                risk_price = self.ref.market_price(i) if ot == 1 else price
                self.ref.on_open(a, i, side, qty, risk_price)
                self.orders.append([a, i, side, ot, qty, 0, qty, risk_price])

    # ---- invariants ----
    @invariant()
    def same_usage(self):
        for a in self.ref.accounts:
            assert self.eng.usage(a) == self.ref.usage(a), a
        assert self.eng.killed_accounts() == self.ref.killed_accounts()

    @invariant()
    def open_orders_match_stream(self):
        for a in self.ref.accounts:
            assert self.eng.usage(a)["open_orders"] == sum(1 for o in self.orders if o[0] == a)


TestRiskComparison = RiskComparison.TestCase
TestRiskComparison.settings = settings(max_examples=150, stateful_step_count=80, deadline=None,
                                       suppress_health_check=[HealthCheck.too_slow])


def test_seeded_stream_batch_matches_per_call_and_reference():
    """A long seeded stream: one check_batch(open_accepted=True) gives, row for row, what
    per-call check_new + on_open gives, and the reference agrees; usage ends equal."""
    rng = random.Random(20261125)
    batch, per_call, ref = RiskEngine(), RiskEngine(), ReferenceRiskEngine()
    limits = RiskLimits(max_order_qty=400, max_order_notional=40_000, collar_bps=800,
                        daily_credit_limit=2_000_000, max_position=3_000, max_open_orders=300)
    # account 1 runs out of open orders first, account 2 out of credit
    per_account = [limits, limits.replace(max_open_orders=40, max_position=None),
                   limits.replace(daily_credit_limit=300_000, max_position=None)]
    for eng in (batch, per_call, ref):
        configure(eng)
        for a, (firm, ccy) in enumerate(ACCOUNTS):
            eng.set_account(a, per_account[a], firm=firm, currency=ccy)
    n = 20_000
    now = 0
    rows = []
    for _ in range(n):
        now += rng.choice((0, 1, 2, 5)) * MS
        i = rng.randrange(4)
        ot = rng.choice((1, 2, 2, 2, 3, 4))
        ref_px = INSTRUMENTS[i][3]
        price = 0 if ot == 1 else ref_px + ref_px * rng.randint(-1000, 1000) // 10_000
        rows.append((rng.randrange(3), i, rng.randrange(-1, 3), rng.choice((1, 2)), ot,
                     rng.randint(1, 500), price, now))
    cols = [np.array(c, dtype=np.int64) for c in zip(*rows)]
    codes = batch.check_batch(*cols, open_accepted=True)
    for k, row in enumerate(rows):
        c1 = per_call.check_new(*row)
        c2 = ref.check_new(*row)
        assert codes[k] == c1 == c2, (k, row, codes[k], c1, c2)
        if c1 is RiskCode.OK:
            risk_price = per_call.market_price(row[1]) if row[4] == 1 else row[6]
            per_call.on_open(row[0], row[1], row[3], row[5], risk_price)
            ref.on_open(row[0], row[1], row[3], row[5], risk_price)
    for a in range(3):
        assert batch.usage(a) == per_call.usage(a) == ref.usage(a)
    # the stream exercises most checks
    seen = {RiskCode(int(c)) for c in np.unique(codes)}
    assert {RiskCode.OK, RiskCode.MSG_RATE, RiskCode.MAX_ORDER_QTY, RiskCode.MAX_ORDER_NOTIONAL,
            RiskCode.PRICE_COLLAR, RiskCode.MAX_OPEN_ORDERS, RiskCode.DAILY_CREDIT,
            RiskCode.MAX_POSITION} <= seen, seen
