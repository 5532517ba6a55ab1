"""A slow, obviously correct pure-Python risk engine: the same checks as crossbook.core.risk.

Plain dicts and Python ints; notional arithmetic done with Python floats in the same order as the
compiled engine ((qty x price) x factor, sums in call order), so the two agree bit for bit, and
the collar compared with exact Python integers.  Used by the differential tests and as the
baseline of benchmarks/bench_risk.py.  Same configuration and usage API as RiskEngine (the
subset the tests drive), same check order (docs/risk.md).
"""
from __future__ import annotations

import math
from decimal import Decimal

from crossbook.core.risk import NOTIONAL_TOLERANCE, RiskCode, RiskLimits

BUY, SELL = 1, 2
MARKET, LIMIT, STOP, STOP_LIMIT = 1, 2, 3, 4
MSG = 1_000_000_000
TOL = 1.0 + NOTIONAL_TOLERANCE
INF = math.inf


class RefAccount:
    def __init__(self, firm, currency, limits):
        self.firm = firm
        self.currency = currency
        self.limits = limits
        self.killed = False
        self.open_orders = 0
        self.open_notional = 0.0
        self.filled_notional = 0.0
        self.restricted = set()
        self.position = {}     # instrument -> int
        self.open_buy = {}
        self.open_sell = {}


class RefBucket:
    def __init__(self, rate, burst):
        self.rate = rate
        self.capacity = burst * MSG
        self.tokens = self.capacity
        self.last = None

    def take(self, now):
        # Refill by the exact elapsed time, capped at the capacity.
        if self.last is None:
            self.last = now
        elif now > self.last:
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
            self.last = now
        if self.tokens >= MSG:
            self.tokens -= MSG
            return True
        return False


class ReferenceRiskEngine:
    def __init__(self):
        self.accounts = {}
        self.instruments = {}        # index -> (tick_value Decimal, currency)
        self.reference = {}
        self.restricted = set()
        self.sessions = {}           # index -> RefBucket or None (unlimited)
        self.fx = {}
        self.killed_firms = set()
        self.global_killed = False

    # ---- configuration ----
    def set_instrument(self, index, *, tick_size, multiplier=1, currency="USD", symbol=None,
                       reference_price_ticks=0):
        self.instruments[index] = (Decimal(str(tick_size)) * Decimal(str(multiplier)), currency)
        if reference_price_ticks:
            self.reference[index] = reference_price_ticks

    def set_account(self, index, limits, *, firm=0, currency="USD", name=None):
        if index in self.accounts:
            acc = self.accounts[index]
            acc.firm, acc.currency, acc.limits = firm, currency, limits
        else:
            self.accounts[index] = RefAccount(firm, currency, limits)

    def set_limits(self, account, limits):
        self.accounts[account].limits = limits

    def set_fx_rate(self, from_ccy, to_ccy, rate):
        self.fx[(from_ccy, to_ccy)] = Decimal(str(rate))
        self.fx.pop((to_ccy, from_ccy), None)

    def set_session(self, index, msg_rate_per_sec, burst=None, *, name=None):
        self.sessions[index] = (None if msg_rate_per_sec is None else
                                RefBucket(msg_rate_per_sec, burst or msg_rate_per_sec))

    def set_reference_price(self, instrument, price_ticks):
        self.reference[instrument] = price_ticks

    def set_restricted(self, instrument, restricted=True, account=None):
        target = self.restricted if account is None else self.accounts[account].restricted
        (target.add if restricted else target.discard)(instrument)

    def kill(self, scope, index=None, on=True):
        if scope == "global":
            self.global_killed = on
        elif scope == "firm":
            (self.killed_firms.add if on else self.killed_firms.discard)(index)
        else:
            self.accounts[index].killed = on

    def killed_accounts(self):
        return sorted(a for a, acc in self.accounts.items()
                      if self.global_killed or acc.killed or acc.firm in self.killed_firms)

    def new_day(self):
        for acc in self.accounts.values():
            acc.filled_notional = 0.0

    # ---- helpers ----
    def factor(self, account, instrument):
        tick_value, iccy = self.instruments[instrument]
        accy = self.accounts[account].currency
        if iccy == accy:
            rate = Decimal(1)
        elif (iccy, accy) in self.fx:
            rate = self.fx[(iccy, accy)]
        elif (accy, iccy) in self.fx:
            rate = Decimal(1) / self.fx[(accy, iccy)]
        else:
            return None
        return float(tick_value * rate)

    def notional(self, account, instrument, qty, price):
        f = self.factor(account, instrument)
        return 0.0 if f is None else (float(qty) * float(price)) * f

    @staticmethod
    def limit(value):
        return INF if value is None else float(value)

    # ---- checks ----
    def gates(self, a, i, session, ord_type, now):
        rate_ok = True
        bucket = self.sessions.get(session) if session >= 0 else None
        if bucket is not None:
            rate_ok = bucket.take(now)
        acc = self.accounts[a]
        if self.global_killed:
            return RiskCode.KILL_GLOBAL
        if acc.firm in self.killed_firms:
            return RiskCode.KILL_FIRM
        if acc.killed:
            return RiskCode.KILL_ACCOUNT
        if not rate_ok:
            return RiskCode.MSG_RATE
        if i in self.restricted:
            return RiskCode.RESTRICTED_GLOBAL
        if i in acc.restricted:
            return RiskCode.RESTRICTED_ACCOUNT
        if ord_type in (MARKET, STOP) and not acc.limits.market_orders_allowed:
            return RiskCode.MARKET_NOT_ALLOWED
        return RiskCode.OK

    def order_checks(self, a, i, ord_type, qty, price):
        """(code, notional of the order at its risk price or 0.0 when no notional limit)."""
        lim = self.accounts[a].limits
        ref = self.reference.get(i, 0)
        if lim.max_order_qty is not None and qty > lim.max_order_qty:
            return RiskCode.MAX_ORDER_QTY, 0.0
        n = 0.0
        if lim.max_order_notional is not None or lim.daily_credit_limit is not None:
            f = self.factor(a, i)
            if f is None:
                return RiskCode.NO_FX_RATE, 0.0
            px = ref if ord_type == MARKET else price
            if px == 0:
                return RiskCode.NO_REFERENCE_PRICE, 0.0
            n = (float(qty) * float(px)) * f
            if n > self.limit(lim.max_order_notional) * TOL:
                return RiskCode.MAX_ORDER_NOTIONAL, n
        if lim.collar_bps is not None and ord_type != MARKET:
            if ref == 0:
                return RiskCode.NO_REFERENCE_PRICE, n
            if abs(price - ref) * 10000 > ref * lim.collar_bps:
                return RiskCode.PRICE_COLLAR, n
        return RiskCode.OK, n

    def check_new(self, a, i, session, side, ord_type, qty, price, now):
        code = self.gates(a, i, session, ord_type, now)
        if code:
            return code
        code, n = self.order_checks(a, i, ord_type, qty, price)
        if code:
            return code
        acc = self.accounts[a]
        lim = acc.limits
        if lim.max_open_orders is not None and acc.open_orders + 1 > lim.max_open_orders:
            return RiskCode.MAX_OPEN_ORDERS
        if (acc.open_notional + acc.filled_notional) + n > self.limit(lim.daily_credit_limit) * TOL:
            return RiskCode.DAILY_CREDIT
        if lim.max_position is not None:
            pos = acc.position.get(i, 0)
            if side == BUY:
                worst = pos + acc.open_buy.get(i, 0) + qty
            else:
                worst = -(pos - acc.open_sell.get(i, 0) - qty)
            if worst > lim.max_position:
                return RiskCode.MAX_POSITION
        return RiskCode.OK

    def check_replace(self, a, i, session, side, ord_type, new_qty, new_price, old_leaves,
                      old_price, cum_qty, now):
        code = self.gates(a, i, session, ord_type, now)
        if code:
            return code
        code, _ = self.order_checks(a, i, ord_type, new_qty, new_price)
        if code:
            return code
        acc = self.accounts[a]
        lim = acc.limits
        new_leaves = max(new_qty - cum_qty, 0)
        if lim.daily_credit_limit is not None:
            old_n = self.notional(a, i, old_leaves, old_price)
            px = self.reference.get(i, 0) if ord_type == MARKET else new_price
            new_n = self.notional(a, i, new_leaves, px)
            after = ((acc.open_notional - old_n) + new_n) + acc.filled_notional
            if new_n > old_n and after > float(lim.daily_credit_limit) * TOL:
                return RiskCode.DAILY_CREDIT
        if lim.max_position is not None and new_leaves > old_leaves:
            pos = acc.position.get(i, 0)
            if side == BUY:
                worst = pos + acc.open_buy.get(i, 0) - old_leaves + new_leaves
            else:
                worst = -(pos - (acc.open_sell.get(i, 0) - old_leaves + new_leaves))
            if worst > lim.max_position:
                return RiskCode.MAX_POSITION
        return RiskCode.OK

    def market_price(self, instrument):
        return self.reference.get(instrument, 0)

    # ---- usage ----
    def _open_side(self, acc, side):
        return acc.open_buy if side == BUY else acc.open_sell

    def on_open(self, a, i, side, qty, price):
        acc = self.accounts[a]
        acc.open_orders += 1
        acc.open_notional += self.notional(a, i, qty, price)
        book = self._open_side(acc, side)
        book[i] = book.get(i, 0) + qty

    def on_fill(self, a, i, side, qty, price, fill_price=None):
        acc = self.accounts[a]
        acc.open_notional = max(0.0, acc.open_notional - self.notional(a, i, qty, price))
        acc.filled_notional += self.notional(a, i, qty, price if fill_price is None else fill_price)
        book = self._open_side(acc, side)
        book[i] -= qty
        acc.position[i] = acc.position.get(i, 0) + (qty if side == BUY else -qty)

    def on_close(self, a, i, side, leaves, price):
        acc = self.accounts[a]
        acc.open_orders -= 1
        if acc.open_orders == 0:
            acc.open_notional = 0.0
        else:
            acc.open_notional = max(0.0, acc.open_notional - self.notional(a, i, leaves, price))
        book = self._open_side(acc, side)
        book[i] = book.get(i, 0) - leaves

    def on_replace(self, a, i, side, old_leaves, old_price, new_leaves, new_price):
        acc = self.accounts[a]
        acc.open_notional = max(0.0, (acc.open_notional - self.notional(a, i, old_leaves, old_price))
                                + self.notional(a, i, new_leaves, new_price))
        book = self._open_side(acc, side)
        book[i] = book.get(i, 0) + new_leaves - old_leaves

    def usage(self, a):
        acc = self.accounts[a]
        positions = {}
        for i in sorted(self.instruments):
            row = {"position": acc.position.get(i, 0), "open_buy": acc.open_buy.get(i, 0),
                   "open_sell": acc.open_sell.get(i, 0)}
            if any(row.values()):
                positions[i] = row
        return {"open_orders": acc.open_orders, "open_notional": acc.open_notional,
                "filled_notional": acc.filled_notional, "positions": positions}


__all__ = ["ReferenceRiskEngine", "RiskLimits"]
