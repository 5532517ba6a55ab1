"""Routing policies: pure functions from (parent order, venues' displayed market) to a plan.

No I/O and no state: the router (crossbook.routing.router) takes the market data snapshot, asks
the policy for a :class:`Plan`, records both in the audit trail and sends the children. Prices
are ticks, quantities units (docs/routing.md has the rules with examples).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from crossbook.core import OrdType, Side, TimeInForce

__all__ = ["ChildPlan", "Plan", "Policy", "VenueQuote", "plan_best_price", "plan_direct", "plan_sweep",
           "marketable_levels"]


class Policy(str, Enum):
    """How a router cuts a parent order. ``split`` is accepted as another name of ``sweep``."""

    DIRECT = "direct"          # everything to one venue
    BEST_PRICE = "best_price"  # everything to the venue showing the best price for the side
    SWEEP = "sweep"            # take displayed liquidity across venues best price first, rest the remainder

    @classmethod
    def parse(cls, value: object, where: str = "policy") -> Policy:
        if isinstance(value, Policy):
            return value
        if isinstance(value, str):
            v = value.strip().lower().replace("-", "_")
            if v == "split":
                return cls.SWEEP
            for p in cls:
                if p.value == v:
                    return p
        raise ValueError(f"{where}: unknown routing policy {value!r} (direct, best_price, sweep, split)")


class VenueQuote(NamedTuple):
    """What one up venue displays for an instrument, as the router saw it. Immutable; a named
    tuple rather than a frozen dataclass because the router makes one per venue per order (0.3 us
    to build instead of 0.8)."""

    venue: str
    preference: int                         # 0 = most preferred (the router's venue order)
    bids: tuple[tuple[int, int, int], ...]  # (price, displayed qty, orders), best first
    asks: tuple[tuple[int, int, int], ...]

    def opposite(self, side: Side) -> tuple[tuple[int, int, int], ...]:
        return self.asks if side == Side.BUY else self.bids

    def same(self, side: Side) -> tuple[tuple[int, int, int], ...]:
        return self.bids if side == Side.BUY else self.asks

    def as_dict(self) -> dict:
        return {"venue": self.venue, "bids": [list(lv) for lv in self.bids], "asks": [list(lv) for lv in self.asks]}


@dataclass(slots=True)
class ChildPlan:
    """One child order to send. ``mirror``: the child carries the parent's own order type, time in
    force, stop, display and post-only (a single-child route or the resting remainder);
    otherwise it is a LIMIT taking displayed liquidity with ``tif`` (IOC, or FOK under a FOK
    parent) at ``price``, the worst level it may reach."""

    venue: str
    qty: int
    price: int
    why: str
    mirror: bool = False
    tif: TimeInForce = TimeInForce.IOC

    def audit_detail(self) -> dict:
        # A mirror child carries the parent's own time in force.
        return {"why": self.why, "mirror": self.mirror, "tif": None if self.mirror else int(self.tif)}


@dataclass(slots=True)
class Plan:
    """The children to send now; ``rest`` whether what they leave unfilled may rest afterwards
    (at the rest venue); ``killed`` a reason when the parent ends at once with nothing sent."""

    children: list[ChildPlan] = field(default_factory=list)
    rest: bool = False
    killed: str = ""
    note: str = ""


def marketable_levels(side: Side, limit: int, market: bool, quotes: list[VenueQuote]) -> list[tuple[int, int, int, str]]:
    """Every displayed opposite level the parent may take, best price first, ties by venue
    preference: (price, qty, preference, venue)."""
    out = []
    buy = side == Side.BUY
    for q in quotes:
        for px, qty, _n in (q.asks if buy else q.bids):
            # Levels come best first: past the first one beyond the limit, none is acceptable.
            if not market and (px > limit if buy else px < limit):
                break
            if qty > 0 and px > 0:
                out.append((px, qty, q.preference, q.venue))
    if len(out) > 1:
        out.sort(key=(lambda t: (t[0], t[2])) if buy else (lambda t: (-t[0], t[2])))
    return out


def _can_rest(ord_type: OrdType, tif: TimeInForce) -> bool:
    # MARKET, IOC and FOK orders never rest: what they cannot take at once is cancelled.
    return ord_type != OrdType.MARKET and tif not in (TimeInForce.IOC, TimeInForce.FOK)


def plan_direct(venue: str, qty: int, price: int) -> Plan:
    """The whole order to ``venue`` as it is (one mirror child)."""
    return Plan([ChildPlan(venue, qty, price, f"direct to {venue}", mirror=True)], note="direct")


def plan_best_price(side: Side, qty: int, price: int, quotes: list[VenueQuote]) -> Plan:
    """The whole order to one venue: the best opposite price (lowest ask for a buy); when no venue
    shows the opposite side, the best same-side price (join the best bid for a buy); ties and an
    empty market go by preference."""
    if not quotes:
        raise ValueError("best_price needs at least one venue quote")
    with_opp = [q for q in quotes if q.opposite(side)]
    if with_opp:
        def key(q):
            px = q.opposite(side)[0][0]
            return (px if side == Side.BUY else -px, q.preference)
        best = min(with_opp, key=key)
        px = best.opposite(side)[0][0]
        why = f"best {'ask' if side == Side.BUY else 'bid'} {px} at {best.venue}"
    else:
        with_same = [q for q in quotes if q.same(side)]
        if with_same:
            def key2(q):
                px = q.same(side)[0][0]
                return (-px if side == Side.BUY else px, q.preference)
            best = min(with_same, key=key2)
            why = f"no {'offers' if side == Side.BUY else 'bids'} shown; best {'bid' if side == Side.BUY else 'ask'} " \
                  f"{best.same(side)[0][0]} at {best.venue}"
        else:
            best = min(quotes, key=lambda q: q.preference)
            why = f"empty books; preferred venue {best.venue}"
    return Plan([ChildPlan(best.venue, qty, price, why, mirror=True)], note="best_price")


def plan_sweep(side: Side, ord_type: OrdType, tif: TimeInForce, qty: int, price: int, quotes: list[VenueQuote],
               *, sweepable: bool = True) -> Plan:
    """Cut a marketable order across venues by displayed liquidity, best price first (ties by
    preference), one child per venue (a LIMIT at the worst level taken there, for the sum of
    the displayed quantity it takes). What the children leave rests afterwards when the parent
    may rest (not MARKET, IOC or FOK). FOK: only when the displayed liquidity at acceptable
    prices covers the whole quantity, else killed with no child sent.

    ``sweepable`` False (a stop, a post-only order): nothing is taken, the order rests as is.
    """
    can_rest = _can_rest(ord_type, tif)
    if not sweepable:
        return Plan([], rest=True, note="not sweepable: rests whole")
    market = ord_type == OrdType.MARKET
    levels = marketable_levels(side, price, market, quotes)
    shown = sum(lv[1] for lv in levels)
    if tif == TimeInForce.FOK and shown < qty:
        return Plan([], killed=f"FOK: displayed liquidity at acceptable prices is {shown}, below the quantity {qty}",
                    note="fok killed")
    left = qty
    per_venue: dict[str, list[int]] = {}   # venue -> [qty, worst price, best price, levels]
    order: list[str] = []
    for px, lv_qty, _pref, venue in levels:
        if left <= 0:
            break
        take = min(lv_qty, left)
        left -= take
        if venue not in per_venue:
            per_venue[venue] = [0, px, px, 0]
            order.append(venue)
        rec = per_venue[venue]
        rec[0] += take
        rec[1] = px
        rec[3] += 1
    child_tif = TimeInForce.FOK if tif == TimeInForce.FOK else TimeInForce.IOC
    children = [ChildPlan(v, per_venue[v][0], per_venue[v][1],
                          f"take {per_venue[v][0]} displayed on {per_venue[v][3]} level(s) "
                          f"{per_venue[v][2]}..{per_venue[v][1]}", tif=child_tif) for v in order]
    note = f"displayed at acceptable prices {shown}, taking {qty - left}"
    if left:
        note += f", remainder {left} " + ("rests after the sweep" if can_rest else "is not rested (" +
                                          ("MARKET" if market else tif.name) + ")")
    return Plan(children, rest=can_rest, note=note)
