"""A plain-Python limit order book on sortedcontainers: the benchmark's interpreted baseline.

What a competent Python developer writes in an afternoon: one ``SortedDict`` of price levels per
side, each level an ``OrderedDict`` (FIFO with O(1) removal by id), and a dict of live orders.
It implements the crossbook semantics for the order types the benchmark stream uses (LIMIT and
MARKET orders with DAY/GTC/IOC, cancel, and cancel/replace with FIX total-quantity semantics and
the priority rules of ``shared/spec/matching.md``); anything else raises ``ValueError``, so it can
never silently disagree with crossbook on a stream it does not understand.

The method names follow ``crossbook.core.OrderBook`` so the benchmark drives both with the same
loop; results are plain tuples (fills as ``(maker_id, taker_id, price, qty)``).
"""
from __future__ import annotations

from collections import OrderedDict

from sortedcontainers import SortedDict

BUY, SELL = 1, 2
MARKET, LIMIT = 1, 2
DAY, GTC, IOC = 0, 1, 3


class Order:
    __slots__ = ("order_id", "side", "price", "qty", "leaves")

    def __init__(self, order_id: int, side: int, price: int, qty: int):
        self.order_id = order_id
        self.side = side
        self.price = price
        self.qty = qty        # total ordered (FIX OrderQty), filled = qty - leaves
        self.leaves = qty

    @property
    def filled(self) -> int:
        return self.qty - self.leaves


class SortedBook:
    """Price-time priority book; bids keyed by negated price so both sides iterate best first."""

    def __init__(self):
        self._levels = {BUY: SortedDict(), SELL: SortedDict()}
        self._orders: dict[int, Order] = {}
        self._seen: set[int] = set()   # ids are unique for the life of the book, as in crossbook

    def __len__(self) -> int:
        return len(self._orders)

    # ---- commands ----------------------------------------------------------------------------

    def submit(self, order_id, side, price, qty, ord_type=LIMIT, tif=DAY):
        """Returns ``(fills, rested_qty)``; fills as (maker_id, taker_id, price, qty) tuples.
        A rejected order returns ``None``."""
        if side not in (BUY, SELL) or ord_type not in (MARKET, LIMIT) or tif not in (DAY, GTC, IOC):
            raise ValueError(f"SortedBook supports LIMIT/MARKET with DAY/GTC/IOC only: {side, ord_type, tif}")
        if qty <= 0 or (ord_type == LIMIT and price <= 0) or order_id in self._seen:
            return None
        self._seen.add(order_id)
        order = Order(order_id, side, price, qty)
        fills = self._match(order, ord_type == MARKET)
        if order.leaves and ord_type == LIMIT and tif != IOC:
            self._rest(order)
            return fills, order.leaves
        return fills, 0

    def cancel(self, order_id) -> int:
        order = self._orders.pop(order_id, None)
        if order is None:
            return 0
        self._unlink(order)
        return order.leaves

    def replace(self, order_id, qty, price):
        """FIX cancel/replace: ``qty`` is the new total. Returns fills made on re-entry (a list),
        or None for an unknown order."""
        order = self._orders.get(order_id)
        if order is None:
            return None
        filled = order.qty - order.leaves
        if qty <= filled:
            self.cancel(order_id)
            return []
        new_leaves = qty - filled
        if price == order.price and new_leaves <= order.leaves:
            order.qty = qty
            order.leaves = new_leaves
            return []
        # Price change or size up: priority lost, re-enters as new and may trade.
        self._unlink(order)
        del self._orders[order_id]
        order.qty = qty
        order.leaves = new_leaves
        order.price = price
        fills = self._match(order, False)
        if order.leaves:
            self._rest(order)
        return fills

    # ---- queries -----------------------------------------------------------------------------

    def best_bid(self):
        return self._best(BUY)

    def best_ask(self):
        return self._best(SELL)

    def depth(self, side, levels):
        out = []
        for key, level in self._levels[side].items():
            if len(out) == levels:
                break
            out.append((abs(key), sum(o.leaves for o in level.values()), len(level)))
        return out

    def order(self, order_id):
        return self._orders.get(order_id)

    # ---- internals ---------------------------------------------------------------------------

    def _best(self, side):
        book = self._levels[side]
        if not book:
            return None
        key, level = book.peekitem(0)
        return abs(key), sum(o.leaves for o in level.values())

    def _match(self, taker: Order, is_market: bool):
        fills = []
        opposite = self._levels[SELL if taker.side == BUY else BUY]
        while taker.leaves and opposite:
            key, level = opposite.peekitem(0)
            price = abs(key)
            if not is_market and (price > taker.price if taker.side == BUY else price < taker.price):
                break
            while taker.leaves and level:
                maker = next(iter(level.values()))
                traded = min(maker.leaves, taker.leaves)
                maker.leaves -= traded
                taker.leaves -= traded
                fills.append((maker.order_id, taker.order_id, price, traded))
                if not maker.leaves:
                    level.popitem(last=False)
                    del self._orders[maker.order_id]
            if not level:
                del opposite[key]
        return fills

    def _rest(self, order: Order):
        key = -order.price if order.side == BUY else order.price
        book = self._levels[order.side]
        level = book.get(key)
        if level is None:
            level = book[key] = OrderedDict()
        level[order.order_id] = order
        self._orders[order.order_id] = order

    def _unlink(self, order: Order):
        key = -order.price if order.side == BUY else order.price
        book = self._levels[order.side]
        level = book[key]
        del level[order.order_id]
        if not level:
            del book[key]
