"""A small, slow, obviously correct order book written straight from shared/spec/matching.md.

It exists to be compared with the compiled ``crossbook.core.OrderBook`` on random streams
(tests/core/test_book_differential.py).  Clarity over speed everywhere: price levels are plain
lists in dicts, the FOK check is a dry run of the real matching on a deep copy of the book, and
every rule is one obvious piece of code.  Where the spec is silent it makes the choices written in
docs/core.md ("Choices where the spec is silent").
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from crossbook.core import OrdType, Reason, Side, Status, STPMode, TimeInForce

MAX_QTY = 1 << 40
MAX_PRICE = 1 << 53
VALID_TIFS = {0, 1, 3, 4, 6}
RESTING_TIFS = {TimeInForce.DAY, TimeInForce.GTC, TimeInForce.GTD}


@dataclass
class RefOrder:
    id: int
    side: int
    price: int
    qty: int
    leaves: int
    ord_type: int
    tif: int
    display: int
    stop_price: int
    owner: int
    stp: int
    post_only: bool
    expire_time: int
    visible: int = 0
    pending: bool = False        # a stop waiting for its trigger

    @property
    def filled(self):
        return self.qty - self.leaves

    @property
    def is_market(self):
        return self.ord_type in (OrdType.MARKET, OrdType.STOP)


@dataclass
class RefResult:
    order_id: int
    status: Status
    reason_code: Reason = Reason.NONE
    filled_qty: int = 0
    leaves_qty: int = 0
    fills: list = field(default_factory=list)       # (maker_id, taker_id, price, qty)
    cancels: list = field(default_factory=list)     # (order_id, qty, Reason)


class ReferenceBook:
    def __init__(self):
        self.levels = {Side.BUY: {}, Side.SELL: {}}    # side -> price -> [RefOrder] (FIFO)
        self.stops: list[RefOrder] = []                # pending stops, arrival order
        self.live: dict[int, RefOrder] = {}
        self.seen: set[int] = set()
        self.last = 0
        self.fills: list = []
        self.cancels: list = []
        self.ended_how: dict[int, Reason] = {}         # id -> how it ended during this op

    # ---- market data -----------------------------------------------------------------------
    def level_prices(self, side):
        """Prices of a side, best first."""
        return sorted(self.levels[side], reverse=(side == Side.BUY))

    def depth(self, side, n):
        out = []
        for p in self.level_prices(side)[:n]:
            queue = self.levels[side][p]
            out.append((p, sum(o.visible for o in queue), len(queue)))
        return out

    def best_bid(self):
        d = self.depth(Side.BUY, 1)
        return d[0][:2] if d else None

    def best_ask(self):
        d = self.depth(Side.SELL, 1)
        return d[0][:2] if d else None

    def order(self, order_id):
        o = self.live.get(order_id)
        if o is None:
            return None
        return (Side(o.side), o.price, o.qty, o.leaves, 0 if o.pending else o.visible, o.filled)

    def live_order_ids(self):
        ids = []
        for side in (Side.BUY, Side.SELL):
            for p in self.level_prices(side):
                ids += [o.id for o in self.levels[side][p]]
        return ids + [o.id for o in self.stops]

    # ---- helpers ---------------------------------------------------------------------------
    def _begin(self):
        self.fills, self.cancels, self.ended_how = [], [], {}

    def _end(self, o, reason):
        """The order is out of the book; report its leaves as cancelled."""
        self.cancels.append((o.id, o.leaves, reason))
        self.ended_how[o.id] = reason
        self.live.pop(o.id, None)

    def _remove_resting(self, o):
        queue = self.levels[o.side][o.price]
        queue.remove(o)
        if not queue:
            del self.levels[o.side][o.price]

    def _acceptable(self, o, price):
        if o.is_market:
            return True
        return price <= o.price if o.side == Side.BUY else price >= o.price

    def _best_opposite(self, o):
        opp = Side.SELL if o.side == Side.BUY else Side.BUY
        prices = self.level_prices(opp)
        return (opp, prices[0]) if prices else (opp, None)

    def _would_match(self, side, price):
        opp = Side.SELL if side == Side.BUY else Side.BUY
        prices = self.level_prices(opp)
        if not prices:
            return False
        return prices[0] <= price if side == Side.BUY else prices[0] >= price

    def _match(self, o):
        """Rule 1-3, 7, 8.  Returns False when STP cancelled the incoming order."""
        while o.leaves > 0:
            opp, price = self._best_opposite(o)
            if price is None or not self._acceptable(o, price):
                return True
            queue = self.levels[opp][price]
            maker = queue[0]
            if o.stp != STPMode.NONE and maker.owner == o.owner:
                if o.stp in (STPMode.CANCEL_MAKER, STPMode.CANCEL_BOTH):
                    self._remove_resting(maker)
                    self._end(maker, Reason.STP_MAKER)
                if o.stp in (STPMode.CANCEL_TAKER, STPMode.CANCEL_BOTH):
                    self._end(o, Reason.STP_TAKER)
                    return False
                continue
            q = min(o.leaves, maker.visible)
            self.fills.append((maker.id, o.id, price, q))
            self.last = price
            o.leaves -= q
            maker.leaves -= q
            maker.visible -= q
            if maker.visible == 0:
                queue.pop(0)
                if maker.leaves > 0:          # iceberg refresh: new slice at the back
                    maker.visible = min(maker.display, maker.leaves)
                    queue.append(maker)
                else:
                    self.live.pop(maker.id)
                    self.ended_how[maker.id] = Reason.NONE
                if not queue:
                    del self.levels[opp][price]
        return True

    def _fok_fillable(self, o):
        """Rule 5 as a dry run: match a copy of the order against a copy of the book."""
        trial = copy.deepcopy(self)
        t = copy.deepcopy(o)
        trial._begin()
        trial._match(t)
        return t.leaves == 0 and t.id not in trial.ended_how

    def _enter(self, o):
        """An order entering the book: match, then rest or cancel the remainder (rule 6)."""
        if o.tif == TimeInForce.FOK and not self._fok_fillable(o):
            self._end(o, Reason.FOK_UNFILLABLE)
            return
        if not self._match(o):
            return
        if o.leaves == 0:
            self.live.pop(o.id, None)
            self.ended_how[o.id] = Reason.NONE
        elif o.is_market:
            self._end(o, Reason.MARKET_REMAINDER)
        elif o.tif in (TimeInForce.IOC, TimeInForce.FOK):
            self._end(o, Reason.IOC_REMAINDER)
        else:
            o.visible = min(o.display, o.leaves) if o.display else o.leaves
            self.levels[o.side].setdefault(o.price, []).append(o)
            self.live[o.id] = o

    def _triggered(self, s):
        return self.last >= s.stop_price if s.side == Side.BUY else self.last <= s.stop_price

    def _run_stops(self):
        """Rule 9: elected stops enter one at a time in the order they were elected (arrival
        order among those elected together); each entry can elect more."""
        if self.last == 0:
            return
        elected = []
        while True:
            for s in list(self.stops):
                if self._triggered(s):
                    self.stops.remove(s)
                    s.pending = False
                    elected.append(s)
            if not elected:
                return
            self._enter(elected.pop(0))

    def _status_of(self, oid):
        o = self.live.get(oid)
        if o is not None:
            if o.pending:
                return Status.STOP_PENDING, Reason.NONE, o.filled, o.leaves
            return (Status.PARTIALLY_FILLED if o.filled else Status.RESTING), Reason.NONE, \
                o.filled, o.leaves
        how = self.ended_how[oid]
        return (Status.FILLED if how in (Reason.NONE, Reason.REPLACED_TO_FILLED)
                else Status.CANCELLED), how, None, 0

    def _result(self, oid, filled_at_end):
        status, reason, filled, leaves = self._status_of(oid)
        return RefResult(oid, status, reason, filled if filled is not None else filled_at_end(),
                         leaves, self.fills, self.cancels)

    # ---- commands --------------------------------------------------------------------------
    def validate(self, side, price, qty, ord_type, tif, display_qty, stop_price, stp,
                 post_only, expire_time):
        if side not in (1, 2) or ord_type not in (1, 2, 3, 4) or tif not in VALID_TIFS \
                or stp not in (0, 1, 2, 3):
            return Reason.INVALID_ENUM
        if qty <= 0 or qty > MAX_QTY:
            return Reason.INVALID_QTY
        if ord_type in (OrdType.LIMIT, OrdType.STOP_LIMIT) and not 0 < price <= MAX_PRICE:
            return Reason.INVALID_PRICE
        if ord_type in (OrdType.STOP, OrdType.STOP_LIMIT) and not 0 < stop_price <= MAX_PRICE:
            return Reason.INVALID_STOP_PRICE
        resting_limit = ord_type == OrdType.LIMIT and tif in RESTING_TIFS
        if display_qty != 0 and (display_qty < 0 or display_qty >= qty or not resting_limit):
            return Reason.INVALID_DISPLAY_QTY
        if post_only and not resting_limit:
            return Reason.INVALID_POST_ONLY
        if tif == TimeInForce.GTD and expire_time <= 0:
            return Reason.INVALID_EXPIRE_TIME
        return None

    def submit(self, order_id, side, price, qty, ord_type=OrdType.LIMIT, tif=TimeInForce.DAY,
               display_qty=0, stop_price=0, owner=0, stp=STPMode.NONE, post_only=False,
               expire_time=0):
        self._begin()
        reason = self.validate(side, price, qty, ord_type, tif, display_qty, stop_price, stp,
                               post_only, expire_time)
        if reason is None and order_id in self.seen:
            reason = Reason.DUPLICATE_ID
        if reason is None and post_only and self._would_match(side, price):
            reason = Reason.POST_ONLY_WOULD_MATCH
        if reason is not None:
            return RefResult(order_id, Status.REJECTED, reason)
        self.seen.add(order_id)
        o = RefOrder(order_id, side, price if ord_type in (OrdType.LIMIT, OrdType.STOP_LIMIT)
                     else 0, qty, qty, ord_type, tif, display_qty, stop_price, owner, stp,
                     bool(post_only), expire_time if tif == TimeInForce.GTD else 0)
        if ord_type in (OrdType.STOP, OrdType.STOP_LIMIT):
            o.pending = True
            self.stops.append(o)
            self.live[o.id] = o
        else:
            self._enter(o)
        self._run_stops()
        return self._result(order_id, lambda: o.qty - o.leaves)

    def cancel(self, order_id, reason=Reason.USER_CANCEL):
        self._begin()
        o = self.live.get(order_id)
        if o is None:
            why = Reason.TOO_LATE if order_id in self.seen else Reason.UNKNOWN_ORDER
            return RefResult(order_id, Status.REJECTED, why)
        if o.pending:
            self.stops.remove(o)
        else:
            self._remove_resting(o)
        self._end(o, reason)
        return RefResult(order_id, Status.CANCELLED, reason, o.filled, 0, self.fills,
                         self.cancels)

    def replace(self, order_id, qty, price):
        self._begin()
        o = self.live.get(order_id)
        if o is None:
            why = Reason.TOO_LATE if order_id in self.seen else Reason.UNKNOWN_ORDER
            return RefResult(order_id, Status.REJECTED, why)
        if not 0 < qty <= MAX_QTY:
            return RefResult(order_id, Status.REJECTED, Reason.INVALID_QTY)
        if o.ord_type == OrdType.STOP:
            price = 0
        elif not 0 < price <= MAX_PRICE:
            return RefResult(order_id, Status.REJECTED, Reason.INVALID_PRICE)
        filled = o.filled
        if o.post_only and not o.pending and price != o.price and qty > filled \
                and self._would_match(o.side, price):
            return RefResult(order_id, Status.REJECTED, Reason.POST_ONLY_WOULD_MATCH)
        if qty <= filled:                                   # ends: leaves cancelled
            if o.pending:
                self.stops.remove(o)
            else:
                self._remove_resting(o)
            self._end(o, Reason.REPLACED_TO_FILLED)
            return RefResult(order_id, Status.FILLED, Reason.REPLACED_TO_FILLED, filled, 0,
                             self.fills, self.cancels)
        new_leaves = qty - filled
        if o.pending:
            if price != o.price or new_leaves > o.leaves:   # loses its place among stops
                self.stops.remove(o)
                self.stops.append(o)
            o.qty, o.leaves, o.price = qty, new_leaves, price
        elif price == o.price and new_leaves <= o.leaves:   # in place, priority kept
            o.qty, o.leaves = qty, new_leaves
            o.visible = min(o.visible, new_leaves)
        else:                                               # re-enters as if new
            self._remove_resting(o)
            del self.live[o.id]
            o.qty, o.leaves, o.price = qty, new_leaves, price
            self._enter(o)
        self._run_stops()
        return self._result(order_id, lambda: o.qty - o.leaves)

    def _sweep(self, hit, reason):
        self._begin()
        victims = [self.live[i] for i in self.live_order_ids() if hit(self.live[i])]
        for o in victims:
            if o.pending:
                self.stops.remove(o)
            else:
                self._remove_resting(o)
            self._end(o, reason)
        return self.cancels

    def end_of_day(self):
        return self._sweep(lambda o: o.tif == TimeInForce.DAY, Reason.END_OF_DAY)

    def expire(self, now):
        return self._sweep(lambda o: o.tif == TimeInForce.GTD and o.expire_time <= now,
                           Reason.EXPIRED)
