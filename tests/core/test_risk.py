"""Pre-trade risk engine: every check with its numbers and text, usage accounting, replace,
snapshot/restore, daily reset, kill switches, the batch path and bad input.

The differential tests against the pure-Python reference are in test_risk_differential.py.
"""
import json
from decimal import Decimal

import numpy as np
import pytest

from crossbook.core import OrdType, Side
from crossbook.core.risk import (
    MAX_PRICE, MAX_QTY, NOTIONAL_TOLERANCE, RiskCode, RiskDecision, RiskEngine, RiskLimits,
)

BUY, SELL = int(Side.BUY), int(Side.SELL)
MKT, LMT, STP, STL = (int(OrdType.MARKET), int(OrdType.LIMIT), int(OrdType.STOP),
                      int(OrdType.STOP_LIMIT))
AAPL, ESZ6, SAP, EURUSD = 0, 1, 2, 3
ACC1, ACC2, ACC3 = 0, 1, 2
S1 = 0
SEC = 1_000_000_000


def make_engine(**limits):
    """AAPL at 150.00, ESZ6 at 5000.00 (x50), SAP in EUR at 120.00, EUR/USD at 1.08; ACC1 and
    ACC2 of firm 0 (FIRM1) and ACC3 of firm 1 (FIRM2, a EUR account); session S1 unlimited."""
    eng = RiskEngine()
    eng.set_fx_rate("EUR", "USD", "1.08")
    eng.set_instrument(AAPL, tick_size="0.01", symbol="AAPL", reference_price_ticks=15_000)
    eng.set_instrument(ESZ6, tick_size="0.25", multiplier=50, symbol="ESZ6",
                       reference_price_ticks=20_000)
    eng.set_instrument(SAP, tick_size="0.01", currency="EUR", symbol="SAP",
                       reference_price_ticks=12_000)
    eng.set_instrument(EURUSD, tick_size="0.00001", symbol="EUR/USD", reference_price_ticks=108_000)
    lim = RiskLimits(**limits)
    eng.set_account(ACC1, lim, firm=0, name="ACC1")
    eng.set_account(ACC2, lim, firm=0, name="ACC2")
    eng.set_account(ACC3, lim, firm=1, currency="EUR", name="ACC3")
    eng.set_firm_name(0, "FIRM1")
    eng.set_firm_name(1, "FIRM2")
    eng.set_session(S1, None, name="FIRM1")
    return eng


def decide(eng, account=ACC1, instrument=AAPL, side=BUY, ord_type=LMT, qty=100, price=15_000,
           session=S1, now=0):
    return eng.decide_new(account, instrument, session, side, ord_type, qty, price, now)


# ---- each check, its code and its text ---------------------------------------------------------

def test_accepts_within_limits():
    eng = make_engine(max_order_qty=1000, max_order_notional=1_000_000, collar_bps=500)
    d = decide(eng)
    assert d == RiskDecision(RiskCode.OK, "") and d.accepted
    assert eng.check_new(ACC1, AAPL, S1, BUY, LMT, 100, 15_000, 0) is RiskCode.OK


def test_max_order_qty():
    eng = make_engine(max_order_qty=1000)
    assert decide(eng, qty=1000).accepted
    d = decide(eng, qty=1001)
    assert d.code is RiskCode.MAX_ORDER_QTY
    assert d.text == "risk: max order quantity exceeded: 1,001 > limit 1,000 (account ACC1, AAPL)"


def test_max_order_notional_text_from_the_brief():
    eng = make_engine(max_order_notional=1_000_000)
    d = decide(eng, qty=8_000, price=15_625)     # 8,000 x 156.25 = 1,250,000.00
    assert d.code is RiskCode.MAX_ORDER_NOTIONAL
    assert d.text == ("risk: max order notional exceeded: 1,250,000.00 USD > limit "
                      "1,000,000.00 USD (account ACC1, AAPL)")


def test_notional_uses_multiplier_and_fx():
    # ESZ6: 2 x 5000.00 x 50 = 500,000 USD; SAP in a USD account: 1000 x 120.00 x 1.08
    eng = make_engine(max_order_notional=500_000)
    assert decide(eng, instrument=ESZ6, qty=2, price=20_000).accepted
    assert decide(eng, instrument=ESZ6, qty=2, price=20_001).code is RiskCode.MAX_ORDER_NOTIONAL
    eng.set_limits(ACC1, RiskLimits(max_order_notional=129_600))
    assert decide(eng, instrument=SAP, qty=1000, price=12_000).accepted
    d = decide(eng, instrument=SAP, qty=1001, price=12_000)
    assert d.text == ("risk: max order notional exceeded: 129,729.60 USD > limit 129,600.00 USD "
                      "(account ACC1, SAP)")
    # a EUR account values a USD instrument with the inverse rate: 1080 x 100.00 / 1.08
    eng.set_limits(ACC3, RiskLimits(max_order_notional=100_000))
    assert decide(eng, account=ACC3, qty=1080, price=10_000).accepted
    assert decide(eng, account=ACC3, qty=1081, price=10_000).code is RiskCode.MAX_ORDER_NOTIONAL


@pytest.mark.parametrize("tick,mult,fx", [("0.01", 1, None), ("0.25", 50, None),
                                          ("0.00001", 1, None), ("0.01", 100, None),
                                          ("0.01", 1, "1.08"), ("0.05", 10, "0.9137"),
                                          ("0.001", 1, "149.37")])
def test_notional_exactly_at_the_limit_passes(tick, mult, fx):
    """Limits set to the exact decimal notional pass; one cent more requested is rejected."""
    rng = np.random.default_rng(7)
    eng = RiskEngine()
    ccy = "USD" if fx is None else "XYZ"
    if fx is not None:
        eng.set_fx_rate("XYZ", "USD", fx)
    eng.set_instrument(0, tick_size=tick, multiplier=mult, currency=ccy)
    eng.set_account(0, RiskLimits())
    rate = Decimal(1) if fx is None else Decimal(fx)
    for qty, price in zip(rng.integers(1, 5000, 300).tolist(), rng.integers(1, 10**7, 300).tolist()):
        exact = qty * price * Decimal(tick) * mult * rate
        eng.set_limits(0, RiskLimits(max_order_notional=exact, daily_credit_limit=exact))
        assert eng.check_new(0, 0, -1, BUY, LMT, qty, price, 0) is RiskCode.OK, (qty, price, exact)
        below = exact - max(Decimal("0.01"), exact * Decimal(10 * NOTIONAL_TOLERANCE))
        eng.set_limits(0, RiskLimits(max_order_notional=below))
        assert eng.check_new(0, 0, -1, BUY, LMT, qty, price, 0) is RiskCode.MAX_ORDER_NOTIONAL


def test_price_collar_bps_both_sides_and_edges():
    eng = make_engine(collar_bps=500)          # 5% of 150.00 = 7.50
    assert decide(eng, price=15_750).accepted
    assert decide(eng, price=14_250).accepted
    assert decide(eng, price=15_751).code is RiskCode.PRICE_COLLAR
    d = decide(eng, side=SELL, price=14_249)
    assert d.code is RiskCode.PRICE_COLLAR
    assert d.text == ("risk: price collar breached: price 142.49 is 5.01% from reference 150.00 "
                      "> limit 5.00% (500 bps) (account ACC1, AAPL)")
    # the reference moves with the last trade
    eng.set_reference_price(AAPL, 16_000)
    assert decide(eng, price=15_751).accepted
    # stops and stop-limits are collared on their price; market orders are not collared
    assert decide(eng, ord_type=STP, price=10_000).code is RiskCode.PRICE_COLLAR
    assert decide(eng, ord_type=STL, price=10_000).code is RiskCode.PRICE_COLLAR
    assert decide(eng, ord_type=MKT, price=0).accepted


def test_collar_on_huge_prices_does_not_overflow():
    eng = RiskEngine()
    eng.set_instrument(0, tick_size="0.01", reference_price_ticks=MAX_PRICE // 2)
    eng.set_account(0, RiskLimits(collar_bps=10_000))   # 100%
    assert eng.check_new(0, 0, -1, BUY, LMT, 1, MAX_PRICE, 0) is RiskCode.OK
    eng.set_limits(0, RiskLimits(collar_bps=9_999))
    assert eng.check_new(0, 0, -1, BUY, LMT, 1, MAX_PRICE, 0) is RiskCode.PRICE_COLLAR


def test_no_reference_price():
    eng = make_engine(collar_bps=500)
    eng.set_reference_price(AAPL, 0)
    d = decide(eng)
    assert d.code is RiskCode.NO_REFERENCE_PRICE
    assert d.text == ("risk: no reference price for AAPL, needed to check the price collar "
                      "(account ACC1)")
    # market orders need a reference only to be valued against a notional limit
    eng.set_limits(ACC1, RiskLimits())
    assert decide(eng, ord_type=MKT, price=0).accepted
    eng.set_limits(ACC1, RiskLimits(daily_credit_limit=1_000_000))
    d = decide(eng, ord_type=MKT, price=0)
    assert d.code is RiskCode.NO_REFERENCE_PRICE and "a market order" in d.text


def test_market_orders_valued_at_the_reference():
    eng = make_engine(max_order_notional=15_000)
    assert eng.market_price(AAPL) == 15_000
    assert decide(eng, ord_type=MKT, qty=100, price=0).accepted        # 100 x 150.00
    d = decide(eng, ord_type=MKT, qty=101, price=0)
    assert d.code is RiskCode.MAX_ORDER_NOTIONAL and "15,150.00 USD" in d.text


def test_market_orders_allowed_or_not():
    eng = make_engine(market_orders_allowed=False)
    d = decide(eng, ord_type=MKT, price=0)
    assert d.code is RiskCode.MARKET_NOT_ALLOWED
    assert d.text == ("risk: market orders not allowed: market orders are not allowed for "
                      "account ACC1")
    assert decide(eng, ord_type=STP, price=15_000).code is RiskCode.MARKET_NOT_ALLOWED
    assert decide(eng, ord_type=STL, price=15_000).accepted
    assert decide(eng, ord_type=LMT).accepted


def test_no_fx_rate():
    eng = RiskEngine()
    eng.set_instrument(0, tick_size="0.01", currency="JPY", symbol="7203")
    eng.set_account(0, RiskLimits(max_order_notional=10**6), name="ACC1")
    eng.set_account(1, RiskLimits(max_order_qty=10), name="ACC2")
    assert eng.missing_fx_rates() == [("USD", "JPY")]
    d = eng.decide_new(0, 0, -1, BUY, LMT, 1, 100, 0)
    assert d.code is RiskCode.NO_FX_RATE
    assert d.text == ("risk: no FX rate from JPY to USD to value 7203 for the notional limits "
                      "of account ACC1")
    # an account without notional limits does not need the rate
    assert eng.check_new(1, 0, -1, BUY, LMT, 1, 100, 0) is RiskCode.OK
    eng.set_fx_rate("USD", "JPY", "150")
    assert eng.missing_fx_rates() == []
    assert eng.check_new(0, 0, -1, BUY, LMT, 1000, 15_000, 0) is RiskCode.OK


def test_max_open_orders():
    eng = make_engine(max_open_orders=2)
    for _ in range(2):
        assert decide(eng).accepted
        eng.on_open(ACC1, AAPL, BUY, 100, 15_000)
    d = decide(eng)
    assert d.code is RiskCode.MAX_OPEN_ORDERS
    assert d.text == "risk: max open orders exceeded: 3 > limit 2 (2 open) (account ACC1)"
    assert decide(eng, account=ACC2).accepted         # per account
    eng.on_close(ACC1, AAPL, BUY, 100, 15_000)
    assert decide(eng).accepted


def test_daily_credit_counts_open_and_filled():
    eng = make_engine(daily_credit_limit=100_000)
    eng.on_open(ACC1, AAPL, BUY, 400, 15_000)          # 60,000 open
    eng.on_fill(ACC1, AAPL, BUY, 200, 15_000, 14_000)  # 30,000 open, 28,000 filled
    u = eng.usage(ACC1)
    assert (u["open_notional"], u["filled_notional"]) == (30_000.0, 28_000.0)
    assert decide(eng, qty=280, price=15_000).accepted            # 42,000 -> exactly 100,000
    d = decide(eng, qty=281, price=15_000)
    assert d.code is RiskCode.DAILY_CREDIT
    assert d.text == ("risk: daily credit limit exceeded: 100,150.00 USD > limit 100,000.00 USD "
                      "(open 30,000.00 USD + filled 28,000.00 USD + order 42,150.00 USD) "
                      "(account ACC1)")
    # sells use credit too (gross notional)
    assert decide(eng, side=SELL, qty=281, price=15_000).code is RiskCode.DAILY_CREDIT


def test_new_day_resets_filled_notional_only():
    eng = make_engine(daily_credit_limit=100_000)
    eng.on_open(ACC1, AAPL, BUY, 600, 15_000)
    eng.on_fill(ACC1, AAPL, BUY, 500, 15_000)
    assert decide(eng, qty=100).code is RiskCode.DAILY_CREDIT     # 15k open + 75k filled + 15k
    eng.new_day()
    u = eng.usage(ACC1)
    assert u["filled_notional"] == 0.0 and u["open_notional"] == 15_000.0
    assert u["open_orders"] == 1 and u["positions"][AAPL]["position"] == 500
    assert decide(eng, qty=100).accepted


def test_max_position_worst_case_counts_open_orders():
    eng = make_engine(max_position=1000)
    eng.on_open(ACC1, AAPL, BUY, 300, 15_000)
    eng.on_fill(ACC1, AAPL, BUY, 300, 15_000)
    eng.on_close(ACC1, AAPL, BUY, 0, 15_000)           # long 300
    eng.on_open(ACC1, AAPL, BUY, 200, 15_000)          # + 200 open buys
    assert decide(eng, qty=500).accepted               # 300 + 200 + 500 = 1000
    d = decide(eng, qty=501)
    assert d.code is RiskCode.MAX_POSITION
    assert d.text == ("risk: max position exceeded: worst-case long 1,001 > limit 1,000 "
                      "(position 300, open buys 200, order 501) (account ACC1, AAPL)")
    # short side: -(300 - 0 - qty) <= 1000  <=>  qty <= 1300
    assert decide(eng, side=SELL, qty=1300).accepted
    eng.on_open(ACC1, AAPL, SELL, 100, 15_000)
    d = decide(eng, side=SELL, qty=1201)
    assert d.code is RiskCode.MAX_POSITION
    assert d.text == ("risk: max position exceeded: worst-case short 1,001 > limit 1,000 "
                      "(position 300, open sells 100, order 1,201) (account ACC1, AAPL)")
    # per instrument
    assert decide(eng, instrument=ESZ6, qty=1000, price=20_000).accepted


def test_message_rate_token_bucket_with_injected_time():
    eng = make_engine()
    eng.set_session(S1, 10, 5, name="FIRM1")           # 10/s, burst 5
    t = 1_000 * SEC
    assert [decide(eng, now=t).code for _ in range(6)] == [RiskCode.OK] * 5 + [RiskCode.MSG_RATE]
    d = decide(eng, now=t)
    assert d.text == ("risk: message rate exceeded: session FIRM1 is over 10 messages/s "
                      "(burst 5) (account ACC1)")
    # refused messages count too: the next token arrives 100 ms later, not earlier
    assert decide(eng, now=t + 99_999_999).code is RiskCode.MSG_RATE
    assert decide(eng, now=t + 100_000_000).accepted
    assert decide(eng, now=t + 100_000_000).code is RiskCode.MSG_RATE
    # a clock that steps back refills nothing
    assert decide(eng, now=t).code is RiskCode.MSG_RATE
    # a long pause refills to the burst, not beyond (and does not overflow)
    later = t + 10**15
    assert [decide(eng, now=later).code for _ in range(6)] == [RiskCode.OK] * 5 + [RiskCode.MSG_RATE]
    # session -1 is not throttled; sessions are independent
    eng.set_session(1, 10, name="FIRM2")
    assert decide(eng, session=-1, now=later).accepted
    assert decide(eng, session=1, now=later).accepted


def test_message_rate_counts_messages_rejected_by_other_checks():
    eng = make_engine(max_order_qty=10)
    eng.set_session(S1, 1, 2)
    assert decide(eng, qty=11).code is RiskCode.MAX_ORDER_QTY
    assert decide(eng, qty=11).code is RiskCode.MAX_ORDER_QTY
    assert decide(eng, qty=1).code is RiskCode.MSG_RATE


def test_restricted_instruments_global_and_per_account():
    eng = make_engine()
    eng.set_restricted(AAPL)
    d = decide(eng)
    assert d.code is RiskCode.RESTRICTED_GLOBAL
    assert d.text == ("risk: restricted instrument: AAPL is restricted for all accounts "
                      "(account ACC1)")
    eng.set_restricted(AAPL, False)
    eng.set_restricted(AAPL, True, account=ACC2)
    assert decide(eng).accepted
    d = decide(eng, account=ACC2)
    assert d.code is RiskCode.RESTRICTED_ACCOUNT
    assert d.text == "risk: restricted instrument: AAPL is restricted for account ACC2"
    assert decide(eng, account=ACC2, instrument=ESZ6, price=20_000).accepted


def test_kill_switches_and_killed_accounts():
    eng = make_engine()
    assert eng.killed_accounts() == []
    eng.kill("account", ACC2)
    assert decide(eng, account=ACC2).text == ("risk: kill switch on for account ACC2: new orders "
                                              "blocked")
    assert decide(eng).accepted
    assert eng.killed_accounts() == [ACC2]
    eng.kill("firm", 0)
    d = decide(eng)
    assert d.code is RiskCode.KILL_FIRM
    assert d.text == "risk: kill switch on for firm FIRM1: new orders blocked (account ACC1)"
    assert eng.killed_accounts() == [ACC1, ACC2]
    assert decide(eng, account=ACC3, price=15_000).accepted
    eng.kill("global")
    assert decide(eng, account=ACC3).code is RiskCode.KILL_GLOBAL
    assert eng.killed_accounts() == [ACC1, ACC2, ACC3]
    assert eng.kill_state() == {"global": True, "firms": [0], "accounts": [ACC2]}
    eng.kill("global", on=False)
    eng.kill("firm", 0, on=False)
    assert eng.killed_accounts() == [ACC2]
    # a kill switch also blocks replaces
    eng.on_open(ACC2, AAPL, BUY, 100, 15_000)
    assert eng.check_replace(ACC2, AAPL, S1, BUY, LMT, 50, 15_000, 100, 15_000, 0, 0) \
        is RiskCode.KILL_ACCOUNT


def test_check_order_is_documented_order():
    """Kill switches first, then rate, restriction, market, qty, notional, collar, open orders,
    credit, position: the first failing check is reported."""
    eng = make_engine(max_order_qty=10, max_order_notional=100, collar_bps=0, max_open_orders=0,
                      daily_credit_limit=0, max_position=0, market_orders_allowed=False)
    eng.set_session(S1, 1, 1)
    eng.set_restricted(AAPL, True)
    eng.set_restricted(AAPL, True, account=ACC1)
    eng.kill("global")
    eng.kill("firm", 0)
    eng.kill("account", ACC1)
    order = [("kill global", lambda: eng.kill("global", on=False), RiskCode.KILL_GLOBAL),
             ("kill firm", lambda: eng.kill("firm", 0, on=False), RiskCode.KILL_FIRM),
             ("kill account", lambda: eng.kill("account", ACC1, on=False), RiskCode.KILL_ACCOUNT),
             ("rate", lambda: eng.set_session(S1, None), RiskCode.MSG_RATE),
             ("restricted", lambda: eng.set_restricted(AAPL, False), RiskCode.RESTRICTED_GLOBAL),
             ("restricted acc", lambda: eng.set_restricted(AAPL, False, ACC1),
              RiskCode.RESTRICTED_ACCOUNT)]
    decide(eng, ord_type=MKT, qty=20, price=0)          # takes the one token
    for _, release, code in order:
        assert decide(eng, ord_type=MKT, qty=20, price=0).code is code
        release()
    steps = [(RiskCode.MARKET_NOT_ALLOWED, dict(market_orders_allowed=True)),
             (RiskCode.MAX_ORDER_QTY, dict(max_order_qty=None)),
             (RiskCode.MAX_ORDER_NOTIONAL, dict(max_order_notional=None)),
             (RiskCode.MAX_OPEN_ORDERS, dict(max_open_orders=None)),
             (RiskCode.DAILY_CREDIT, dict(daily_credit_limit=None)),
             (RiskCode.MAX_POSITION, dict(max_position=None))]
    for code, change in steps:
        assert decide(eng, ord_type=MKT, qty=20, price=0).code is code
        eng.set_limits(ACC1, eng.limits(ACC1).replace(**change))
    assert decide(eng, ord_type=MKT, qty=20, price=0).accepted
    # the collar comes after the order notional and before open orders
    eng.set_limits(ACC1, RiskLimits(collar_bps=0, max_open_orders=0, max_order_notional=1))
    assert decide(eng, price=15_001).code is RiskCode.MAX_ORDER_NOTIONAL
    eng.set_limits(ACC1, RiskLimits(collar_bps=0, max_open_orders=0))
    assert decide(eng, price=15_001).code is RiskCode.PRICE_COLLAR
    assert decide(eng, price=15_000).code is RiskCode.MAX_OPEN_ORDERS


# ---- replace ---------------------------------------------------------------------------------

def test_replace_releases_the_old_orders_usage():
    eng = make_engine(daily_credit_limit=30_000, max_position=200, max_open_orders=1)
    eng.on_open(ACC1, AAPL, BUY, 100, 15_000)                     # 15,000 open, 1 open order
    # the same order twice its size fits once its own usage is released; no open-order check
    assert eng.check_replace(ACC1, AAPL, S1, BUY, LMT, 200, 15_000, 100, 15_000, 0, 0) \
        is RiskCode.OK
    assert eng.check_replace(ACC1, AAPL, S1, BUY, LMT, 201, 14_900, 100, 15_000, 0, 0) \
        is RiskCode.MAX_POSITION
    d = eng.decide_replace(ACC1, AAPL, S1, BUY, LMT, 200, 15_001, 100, 15_000, 0, 0)
    assert d.code is RiskCode.DAILY_CREDIT
    assert d.text == ("risk: daily credit limit exceeded: 30,002.00 USD > limit 30,000.00 USD "
                      "(open 15,000.00 USD - replaced 15,000.00 USD + filled 0.00 USD + order "
                      "30,002.00 USD) (account ACC1)")
    # cum_qty: a new total of 200 after 60 filled leaves 140 open
    eng.on_fill(ACC1, AAPL, BUY, 60, 15_000)
    assert eng.check_replace(ACC1, AAPL, S1, BUY, LMT, 200, 14_000, 40, 15_000, 60, 0) \
        is RiskCode.OK
    d = eng.decide_replace(ACC1, AAPL, S1, BUY, LMT, 201, 14_000, 40, 15_000, 60, 0)
    assert d.text == ("risk: max position exceeded: worst-case long 201 > limit 200 (position "
                      "60, open buys 0, order 141) (account ACC1, AAPL)")
    eng.on_replace(ACC1, AAPL, BUY, 40, 15_000, 140, 14_000)
    u = eng.usage(ACC1)
    assert u["open_orders"] == 1 and u["positions"][AAPL]["open_buy"] == 140
    assert u["open_notional"] == 140 * 140.0


def test_replace_that_does_not_increase_usage_passes_lowered_limits():
    eng = make_engine()
    eng.on_open(ACC1, AAPL, BUY, 500, 15_000)
    eng.set_limits(ACC1, RiskLimits(daily_credit_limit=10_000, max_position=100))
    assert decide(eng, qty=1).code is RiskCode.DAILY_CREDIT
    # down in size and price: passes although still above both limits
    assert eng.check_replace(ACC1, AAPL, S1, BUY, LMT, 400, 14_900, 500, 15_000, 0, 0) \
        is RiskCode.OK
    # up in price only: more credit, rejected
    assert eng.check_replace(ACC1, AAPL, S1, BUY, LMT, 400, 15_100, 500, 15_000, 0, 0) \
        is RiskCode.OK  # 400 x 151 = 60,400 < 75,000 released
    assert eng.check_replace(ACC1, AAPL, S1, BUY, LMT, 500, 15_001, 500, 15_000, 0, 0) \
        is RiskCode.DAILY_CREDIT
    # order-level checks always apply to the new order
    eng.set_limits(ACC1, RiskLimits(max_order_qty=300))
    assert eng.check_replace(ACC1, AAPL, S1, BUY, LMT, 400, 15_000, 500, 15_000, 0, 0) \
        is RiskCode.MAX_ORDER_QTY


# ---- usage accounting, snapshot, restore -----------------------------------------------------

def test_usage_lifecycle_and_float_residue():
    eng = make_engine()
    eng.on_open(ACC1, EURUSD, BUY, 1_000_000, 108_123)
    eng.on_open(ACC1, AAPL, SELL, 70, 15_013)
    eng.on_fill(ACC1, EURUSD, BUY, 333_333, 108_123, 108_120)
    eng.on_fill(ACC1, AAPL, SELL, 70, 15_013, 15_020)
    eng.on_close(ACC1, AAPL, SELL, 0, 15_013)
    u = eng.usage(ACC1)
    assert u["open_orders"] == 1
    assert u["positions"] == {AAPL: {"position": -70, "open_buy": 0, "open_sell": 0},
                              EURUSD: {"position": 333_333, "open_buy": 666_667, "open_sell": 0}}
    assert u["filled_notional"] == pytest.approx(333_333 * 1.0812 + 70 * 150.20, rel=1e-12)
    assert u["open_notional"] == pytest.approx(666_667 * 1.08123, rel=1e-12)
    eng.on_close(ACC1, EURUSD, BUY, 666_667, 108_123)
    u = eng.usage(ACC1)
    # nothing open: exactly zero, whatever residue the float sums left
    assert u["open_orders"] == 0 and u["open_notional"] == 0.0
    assert u["positions"][EURUSD] == {"position": 333_333, "open_buy": 0, "open_sell": 0}


def test_snapshot_restore_through_json():
    eng = make_engine()
    eng.on_open(ACC1, AAPL, BUY, 100, 15_000)
    eng.on_open(ACC3, ESZ6, SELL, 3, 20_000)
    eng.on_fill(ACC3, ESZ6, SELL, 1, 20_000)
    snap = json.loads(json.dumps(eng.snapshot()))       # keys become strings
    fresh = make_engine()
    fresh.restore(snap)
    assert fresh.snapshot() == eng.snapshot()
    # restoring replaces what was there
    fresh.restore_usage(ACC1, {"open_orders": 0, "open_notional": 0, "filled_notional": "12.5",
                               "positions": {}})
    assert fresh.usage(ACC1) == {"open_orders": 0, "open_notional": 0.0, "filled_notional": 12.5,
                                 "positions": {}}


@pytest.mark.parametrize("usage,exc,match", [
    ([], TypeError, "usage must be a dict"),
    ({"open_orders": 0, "open_notional": 0, "filled_notional": 0}, ValueError, "missing 'positions'"),
    ({"open_orders": -1, "open_notional": 0, "filled_notional": 0, "positions": {}},
     ValueError, "open_orders"),
    ({"open_orders": 0, "open_notional": float("nan"), "filled_notional": 0, "positions": {}},
     ValueError, "open_notional"),
    ({"open_orders": 0, "open_notional": 0, "filled_notional": "x", "positions": {}},
     ValueError, "filled_notional"),
    ({"open_orders": 0, "open_notional": 0, "filled_notional": 0, "positions": {"99": {}}},
     ValueError, "unknown instrument 99"),
    ({"open_orders": 0, "open_notional": 0, "filled_notional": 0,
      "positions": {"0": {"open_buy": -5}}}, ValueError, "open_buy"),
])
def test_restore_rejects_bad_usage_and_changes_nothing(usage, exc, match):
    eng = make_engine()
    eng.on_open(ACC1, AAPL, BUY, 100, 15_000)
    before = eng.usage(ACC1)
    with pytest.raises(exc, match=match):
        eng.restore_usage(ACC1, usage)
    assert eng.usage(ACC1) == before


def test_usage_calls_refuse_impossible_releases():
    eng = make_engine()
    with pytest.raises(ValueError, match="no open orders"):
        eng.on_close(ACC1, AAPL, BUY, 0, 15_000)
    eng.on_open(ACC1, AAPL, BUY, 100, 15_000)
    with pytest.raises(ValueError, match="fill of 101 exceeds the open buy quantity 100"):
        eng.on_fill(ACC1, AAPL, BUY, 101, 15_000)
    with pytest.raises(ValueError, match="open sell quantity 0"):
        eng.on_close(ACC1, AAPL, SELL, 1, 15_000)
    assert eng.usage(ACC1)["positions"][AAPL]["open_buy"] == 100


# ---- batch path ------------------------------------------------------------------------------

def test_check_batch_matches_per_call_and_validates_rows():
    eng = make_engine(max_order_qty=500, collar_bps=300, max_open_orders=3)
    eng.set_session(S1, 100, 4)
    twin = make_engine(max_order_qty=500, collar_bps=300, max_open_orders=3)
    twin.set_session(S1, 100, 4)
    rows = [(ACC1, AAPL, S1, BUY, LMT, 100, 15_000), (ACC1, AAPL, S1, BUY, LMT, 600, 15_000),
            (ACC2, AAPL, S1, SELL, LMT, 10, 16_000), (ACC2, AAPL, -1, SELL, MKT, 10, 0),
            (ACC1, AAPL, S1, BUY, LMT, 1, 15_000), (ACC1, AAPL, S1, BUY, LMT, 1, 15_000)]
    cols = [np.array(c) for c in zip(*rows)]
    codes = eng.check_batch(*cols, 5)
    assert codes.dtype == np.uint8
    assert [twin.check_new(*r, 5) for r in rows] == codes.tolist()
    assert codes.tolist() == [0, int(RiskCode.MAX_ORDER_QTY), int(RiskCode.PRICE_COLLAR), 0, 0,
                              int(RiskCode.MSG_RATE)]
    # open_accepted: later rows see earlier accepted rows' usage
    eng2 = make_engine(max_open_orders=2)
    c = eng2.check_batch(*[np.array([v] * 3) for v in (ACC1, AAPL, -1, BUY, LMT, 1, 15_000, 0)],
                         open_accepted=True)
    assert c.tolist() == [0, 0, int(RiskCode.MAX_OPEN_ORDERS)]
    assert eng2.usage(ACC1)["open_orders"] == 2
    # a bad row names itself and changes nothing (not even the session tokens)
    eng3 = make_engine()
    eng3.set_session(S1, 1, 1)
    bad = [np.array(c) for c in zip(*(rows[:1] + [(ACC1, 42, S1, BUY, LMT, 1, 15_000)]))]
    with pytest.raises(ValueError, match="row 1: unknown instrument 42"):
        eng3.check_batch(*bad, 0)
    assert eng3.check_new(*rows[0], 0) is RiskCode.OK
    with pytest.raises(ValueError, match="qty has length 1, expected 6"):
        eng3.check_batch(*cols[:5], np.array([1]), cols[6][:2], 0)
    with pytest.raises(TypeError, match="price_ticks must be an integer array"):
        eng3.check_batch(*cols[:6], cols[6].astype(float), 0)
    empty = eng3.check_batch(*[np.array([], dtype=np.int64)] * 7, 0)
    assert empty.shape == (0,)


# ---- configuration and bad input -------------------------------------------------------------

def test_arrays_grow_and_keep_state():
    eng = RiskEngine(max_accounts=1, max_instruments=1, max_sessions=1, max_firms=1)
    eng.set_instrument(0, tick_size="0.01", reference_price_ticks=100)
    eng.set_account(0, RiskLimits(max_position=10))
    eng.on_open(0, 0, BUY, 5, 100)
    eng.set_restricted(0, True, account=0)
    for k in range(1, 70):
        eng.set_instrument(k, tick_size="0.01", reference_price_ticks=100)
        eng.set_account(k, RiskLimits(), firm=k)
        eng.set_session(k, 5)
    assert eng.usage(0)["positions"] == {0: {"position": 0, "open_buy": 5, "open_sell": 0}}
    assert eng.check_new(0, 0, 69, BUY, LMT, 1, 100, 0) is RiskCode.RESTRICTED_ACCOUNT
    assert eng.check_new(0, 69, 69, BUY, LMT, 11, 100, 0) is RiskCode.MAX_POSITION
    assert eng.check_new(69, 69, 69, BUY, LMT, 11, 100, 0) is RiskCode.OK
    eng.kill("firm", 68)
    assert eng.killed_accounts() == [68]


def test_set_account_again_changes_config_and_keeps_usage():
    eng = make_engine()
    eng.on_open(ACC1, AAPL, BUY, 100, 15_000)
    eng.set_account(ACC1, RiskLimits(max_open_orders=1), firm=1, currency="EUR", name="ACC1")
    assert eng.account_firm(ACC1) == 1
    assert eng.usage(ACC1)["open_orders"] == 1
    assert decide(eng).code is RiskCode.MAX_OPEN_ORDERS


class _Inst:
    index, symbol, tick_size, multiplier, currency = 5, "BTC-USD", Decimal("0.01"), Decimal(1), "USD"
    reference_price = Decimal("65000.00")

    def price_to_ticks(self, price):
        return int(Decimal(price) / self.tick_size)


def test_add_instrument_from_an_instrument_master_entry():
    eng = make_engine(max_order_notional=65_000)
    eng.add_instrument(_Inst())
    assert eng.reference_price(5) == 6_500_000
    assert decide(eng, instrument=5, qty=1, price=6_500_000).accepted
    assert decide(eng, instrument=5, qty=2, price=6_500_000).text.endswith("(account ACC1, BTC-USD)")


def test_risk_limits_validation_and_from_dict():
    lim = RiskLimits.from_dict({"max_order_qty": 10, "collar_pct": "2.5",
                                "daily_credit_limit": "1000000.50"})
    assert lim.collar_bps == 250 and lim.daily_credit_limit == Decimal("1000000.50")
    with pytest.raises(ValueError, match=r"accounts.ACC1.max_qty: unknown risk limit"):
        RiskLimits.from_dict({"max_qty": 1}, where="accounts.ACC1")
    with pytest.raises(ValueError, match="collar_pct: 2.555 is not a whole number"):
        RiskLimits.from_dict({"collar_pct": "2.555"})
    with pytest.raises(ValueError, match="not both"):
        RiskLimits.from_dict({"collar_pct": 1, "collar_bps": 100})
    with pytest.raises(TypeError, match="limits.max_open_orders must be an integer"):
        RiskLimits.from_dict({"max_open_orders": "5"})
    with pytest.raises(ValueError, match="max_position must be >= 0"):
        RiskLimits(max_position=-1)
    with pytest.raises(ValueError, match="max_order_notional must be a finite amount"):
        RiskLimits(max_order_notional="inf")
    with pytest.raises(TypeError, match="market_orders_allowed must be a bool"):
        RiskLimits(market_orders_allowed=1)
    with pytest.raises(TypeError, match="max_order_qty must be an integer"):
        RiskLimits(max_order_qty=True)


@pytest.mark.parametrize("args,exc,match", [
    ((9, AAPL, S1, BUY, LMT, 1, 15_000, 0), ValueError, "unknown account 9"),
    ((ACC1, 9, S1, BUY, LMT, 1, 15_000, 0), ValueError, "unknown instrument 9"),
    ((ACC1, AAPL, 7, BUY, LMT, 1, 15_000, 0), ValueError, "unknown session 7"),
    ((ACC1, AAPL, -2, BUY, LMT, 1, 15_000, 0), ValueError, "unknown session -2"),
    ((ACC1, AAPL, S1, 3, LMT, 1, 15_000, 0), ValueError, "side must be 1"),
    ((ACC1, AAPL, S1, BUY, 5, 1, 15_000, 0), ValueError, "ord_type must be 1..4"),
    ((ACC1, AAPL, S1, BUY, LMT, 0, 15_000, 0), ValueError, "qty must be in 1.."),
    ((ACC1, AAPL, S1, BUY, LMT, MAX_QTY + 1, 15_000, 0), ValueError, "qty must be in 1.."),
    ((ACC1, AAPL, S1, BUY, LMT, 1, 0, 0), ValueError, "price_ticks must be in 1.."),
    ((ACC1, AAPL, S1, BUY, MKT, 1, -1, 0), ValueError, "price_ticks must be in 0.."),
    ((ACC1, AAPL, S1, BUY, LMT, 1.5, 15_000, 0), TypeError, "qty must be an integer, got float"),
    ((ACC1, AAPL, S1, BUY, LMT, 1, "150", 0), TypeError, "price_ticks must be an integer"),
    ((ACC1, AAPL, S1, BUY, LMT, 1, 15_000, 2**70), ValueError, "now_ns out of int64 range"),
])
def test_check_new_bad_input(args, exc, match):
    eng = make_engine()
    with pytest.raises(exc, match=match):
        eng.check_new(*args)


def test_config_bad_input():
    eng = make_engine()
    with pytest.raises(ValueError, match="tick_size must be a positive"):
        eng.set_instrument(9, tick_size="0")
    with pytest.raises(ValueError, match="currency must be a currency code"):
        eng.set_instrument(9, tick_size="0.01", currency="")
    with pytest.raises(TypeError, match="limits must be a RiskLimits"):
        eng.set_account(5, {"max_order_qty": 1})
    with pytest.raises(ValueError, match="msg_rate_per_sec must be in 1.."):
        eng.set_session(0, 0)
    with pytest.raises(ValueError, match="kill scope must be one of"):
        eng.kill("desk", 0)
    with pytest.raises(ValueError, match="needs an index"):
        eng.kill("firm")
    with pytest.raises(ValueError, match="unknown account 7"):
        eng.kill("account", 7)
    with pytest.raises(ValueError, match="FX rate from USD to itself"):
        eng.set_fx_rate("USD", "usd", 1)
    with pytest.raises(ValueError, match="rate must be a positive"):
        eng.set_fx_rate("GBP", "USD", "-1")
    with pytest.raises(ValueError, match="price_ticks must be in 0.."):
        eng.set_reference_price(AAPL, -5)
    with pytest.raises(ValueError, match="instrument index must be in"):
        eng.set_instrument(-1, tick_size="0.01")
    with pytest.raises(ValueError, match="max_accounts must be in"):
        RiskEngine(max_accounts=0)
    with pytest.raises(ValueError, match="old_leaves must be in"):
        eng.check_replace(ACC1, AAPL, S1, BUY, LMT, 1, 15_000, -1, 15_000, 0, 0)


def test_check_batch_releases_the_gil_and_guards_the_engine():
    """While a batch runs in another thread, this thread gets to run (the GIL is released) and
    every call on the engine is refused with RuntimeError instead of racing the batch."""
    import threading

    eng = make_engine()
    n = 2_000_000
    cols = [np.full(n, v, dtype=np.int64) for v in (ACC1, AAPL, S1, BUY, LMT, 100, 15_000, 0)]
    for _attempt in range(5):
        started = threading.Event()
        result = {}

        def run():
            started.set()
            result["codes"] = eng.check_batch(*cols)

        t = threading.Thread(target=run)
        t.start()
        started.wait()
        refused = False
        while t.is_alive() and not refused:
            try:
                eng.check_new(ACC1, AAPL, -1, BUY, LMT, 1, 15_000, 0)
            except RuntimeError as exc:
                assert "check_batch" in str(exc)
                refused = True
        t.join()
        assert (result["codes"] == 0).all()
        if refused:
            break
    assert refused, "never ran while check_batch was running"
    # and once the batch returned, the engine answers again
    assert eng.check_new(ACC1, AAPL, -1, BUY, LMT, 1, 15_000, 0) is RiskCode.OK
