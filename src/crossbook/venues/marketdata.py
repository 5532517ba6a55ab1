"""Market data of a venue over FIX: MarketDataRequest (V) in, snapshots (W) and incremental
refreshes (X) out, MarketDataRequestReject (Y) for what cannot be served.

A subscription names instruments (NoRelatedSym), a depth (MarketDepth 264: 0 = every level this
publisher serves, N = top N), the entry types (bids 0 / offers 1) and, for SubscriptionRequestType 1,
how updates come: MDUpdateType 1 (incremental: X messages with New / Change / Delete per price
level) or 0 (a full W snapshot each time the book changes). Every subscription starts with a W
snapshot per instrument. SubscriptionRequestType 2 with the same MDReqID ends it.

Levels are keyed by price: the subscriber keeps ``price -> (qty, orders)`` per side and, after
applying an X, holds exactly the top N levels the venue shows. A level that falls out of the
top N is sent as a Delete, one that enters as a New.

Prices go on the wire as decimals of the instrument's tick grid; inside they are ticks.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from crossbook.model.instruments import Instrument, InstrumentMaster

__all__ = ["MarketDataPublisher", "instrument_fields", "MAX_DEPTH_DEFAULT"]

log = logging.getLogger(__name__)

MAX_DEPTH_DEFAULT = 10

# MDReqRejReason (281)
REJ_UNKNOWN_SYMBOL = b"0"
REJ_DUPLICATE_ID = b"1"
REJ_UNSUPPORTED_SUBSCRIPTION = b"4"
REJ_UNSUPPORTED_DEPTH = b"5"
REJ_UNSUPPORTED_UPDATE_TYPE = b"6"
REJ_UNSUPPORTED_ENTRY_TYPE = b"8"

Send = Callable[[object, bytes, list], None]   # (session key, msg type, body)


def instrument_fields(inst: Instrument) -> list[tuple[int, str]]:
    """The FIX instrument block that names ``inst`` (Symbol, SecurityType and, for derivatives,
    MaturityMonthYear / PutOrCall / StrikePrice), in FIX 4.4 component order."""
    out: list[tuple[int, str]] = [(55, inst.symbol)]
    # FIX 4.4 knows no FXSPOT or CRYPTO SecurityType: FX spot is FOR, crypto goes without (the
    # symbol alone names it), as the OMS gateway writes them.
    st = "FOR" if inst.security_type == "FXSPOT" else inst.security_type
    if st != "CRYPTO":
        out.append((167, st))
    if inst.maturity_month_year:
        out.append((200, inst.maturity_month_year))
    if inst.put_or_call is not None:
        out.append((201, str(inst.put_or_call)))
    if inst.strike is not None:
        out.append((202, format(inst.strike, "f")))
    return out


@dataclass
class _Subscription:
    session: object
    req_id: bytes
    instruments: list[Instrument]
    depth: int
    incremental: bool
    bids: bool
    offers: bool
    # per instrument key: the levels last published, side -> {price: (qty, count)}
    shown: dict[str, tuple[dict[int, tuple[int, int]], dict[int, tuple[int, int]]]] = field(default_factory=dict)


class MarketDataPublisher:
    """Serves MarketDataRequests from a venue's books.

    ``venue`` is anything with ``depth(instrument, levels)`` and ``add_book_listener`` (an
    ``InProcessVenue``); ``send(session, msg_type, body)`` writes a message on a session.
    ``max_depth`` caps MarketDepth (and is what depth 0, "full book", means here).
    ``conflate_s``: 0 sends an update after every loop turn that changed a book; more sends at
    most one per subscription and instrument per that many seconds, with the state at its end
    (fewer messages and a smaller FIX store, at the cost of staleness).

    The publisher listens to the venue's book changes only while it has a subscription: with
    none, the venue does no market data work at all on an order (no book-change callback).
    """

    def __init__(self, venue, instruments: InstrumentMaster, send: Send, *, max_depth: int = MAX_DEPTH_DEFAULT,
                 conflate_s: float = 0.0):
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or not 1 <= max_depth <= 1000:
            raise ValueError(f"max_depth must be an int from 1 to 1000, got {max_depth!r}")
        if isinstance(conflate_s, bool) or not isinstance(conflate_s, (int, float)) or not 0 <= conflate_s <= 60:
            raise ValueError(f"conflate_s must be seconds from 0 to 60, got {conflate_s!r}")
        self.conflate_s = float(conflate_s)
        self._dirty: dict[tuple[int, str], tuple[_Subscription, Instrument]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._venue = venue
        self._master = instruments
        self._send = send
        self.max_depth = max_depth
        self._subs: dict[tuple[object, bytes], _Subscription] = {}
        self._by_key: dict[str, list[_Subscription]] = {}
        self._listening = False

    @property
    def subscription_count(self) -> int:
        return len(self._subs)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._subs.clear()
        self._by_key.clear()
        self._listen()

    def _listen(self) -> None:
        """Listen to the venue's book changes exactly while some subscription is live."""
        want = bool(self._subs)
        if want != self._listening:
            self._listening = want
            if want:
                self._venue.add_book_listener(self._on_books_changed)
            else:
                self._venue.remove_book_listener(self._on_books_changed)

    def drop_session(self, session: object) -> None:
        """The session logged out: its subscriptions end (a subscriber subscribes again on logon)."""
        for key in [k for k in self._subs if k[0] == session]:
            self._unsubscribe(self._subs.pop(key))
        self._listen()

    # -- requests ---------------------------------------------------------------------------
    def on_request(self, session: object, msg) -> None:
        """Handle one MarketDataRequest (a crossbook.fix Message)."""
        req_id = msg.get(262, b"")
        sub_type = msg.get(263, b"")
        if sub_type == b"2":
            sub = self._subs.pop((session, req_id), None)
            if sub is not None:
                self._unsubscribe(sub)
                self._listen()
            return  # FIX has no acknowledgement for an unsubscribe
        if sub_type not in (b"0", b"1"):
            return self._reject(session, req_id, REJ_UNSUPPORTED_SUBSCRIPTION,
                                f"SubscriptionRequestType {sub_type.decode('latin-1')!r} not supported (0, 1, 2)")
        if sub_type == b"1" and (session, req_id) in self._subs:
            return self._reject(session, req_id, REJ_DUPLICATE_ID,
                                f"MDReqID {req_id.decode('latin-1')} is already subscribed")
        depth = msg.get_int(264)
        if depth is None or depth < 0:
            return self._reject(session, req_id, REJ_UNSUPPORTED_DEPTH, "MarketDepth must be an integer >= 0")
        depth = self.max_depth if depth == 0 else min(depth, self.max_depth)
        update_type = msg.get(265, b"1")
        if sub_type == b"1" and update_type not in (b"0", b"1"):
            return self._reject(session, req_id, REJ_UNSUPPORTED_UPDATE_TYPE,
                                f"MDUpdateType {update_type.decode('latin-1')!r} not supported (0, 1)")
        types = {v for t, v in msg.fields if t == 269}
        if not types or types - {b"0", b"1"}:
            return self._reject(session, req_id, REJ_UNSUPPORTED_ENTRY_TYPE,
                                "MDEntryType must be 0 (bid) and/or 1 (offer)")
        instruments = []
        for entry in _related_symbols(msg):
            try:
                inst = self._master.resolve(entry.get(55, ""), entry.get(167), entry.get(200), entry.get(202),
                                            entry.get(201))
            except ValueError as e:
                return self._reject(session, req_id, REJ_UNKNOWN_SYMBOL, str(e))
            if not self._venue.lists(inst):
                return self._reject(session, req_id, REJ_UNKNOWN_SYMBOL, f"{inst.key} is not listed on this venue")
            instruments.append(inst)
        if not instruments:
            return self._reject(session, req_id, REJ_UNKNOWN_SYMBOL, "no instrument named (NoRelatedSym)")
        sub = _Subscription(session, req_id, instruments, depth, update_type == b"1", b"0" in types, b"1" in types)
        for inst in instruments:
            self._snapshot(sub, inst)
        if sub_type == b"1":
            self._subs[(session, req_id)] = sub
            for inst in instruments:
                self._by_key.setdefault(inst.key, []).append(sub)
            self._listen()

    def _unsubscribe(self, sub: _Subscription) -> None:
        for inst in sub.instruments:
            subs = self._by_key.get(inst.key)
            if subs and sub in subs:
                subs.remove(sub)

    def _reject(self, session, req_id: bytes, reason: bytes, text: str) -> None:
        self._send(session, b"Y", [(262, req_id), (281, reason), (58, text)])

    # -- publishing -------------------------------------------------------------------------
    def _levels(self, sub: _Subscription, inst: Instrument):
        bids, asks = self._venue.depth(inst, sub.depth)
        b = {px: (qty, n) for px, qty, n in bids} if sub.bids else {}
        a = {px: (qty, n) for px, qty, n in asks} if sub.offers else {}
        return b, a

    def _snapshot(self, sub: _Subscription, inst: Instrument) -> None:
        b, a = self._levels(sub, inst)
        sub.shown[inst.key] = (b, a)
        self._send_snapshot(sub, inst, b, a)

    def _send_snapshot(self, sub: _Subscription, inst: Instrument, b, a) -> None:
        entries: list[tuple[int, object]] = []
        n = 0
        for side, levels, best_first in ((b"0", b, True), (b"1", a, False)):
            for px in sorted(levels, reverse=best_first):
                qty, count = levels[px]
                entries += [(269, side), (270, _px(inst, px)), (271, qty), (346, count)]
                n += 1
        body: list[tuple[int, object]] = [(262, sub.req_id), *instrument_fields(inst), (268, n), *entries]
        self._send(sub.session, b"W", body)

    def _on_books_changed(self, keys: frozenset[str]) -> None:
        for key in keys:
            for sub in list(self._by_key.get(key, ())):
                inst = next(i for i in sub.instruments if i.key == key)
                if self.conflate_s:
                    # Conflation: the book's state when the interval ends, once, whatever happened in it.
                    self._dirty[(id(sub), key)] = (sub, inst)
                    continue
                self._publish(sub, inst)
        if self._dirty and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.conflate_s, self._flush_dirty)

    def _flush_dirty(self) -> None:
        self._timer = None
        dirty, self._dirty = self._dirty, {}
        for sub, inst in dirty.values():
            if self._subs.get((sub.session, sub.req_id)) is sub:
                self._publish(sub, inst)

    def _publish(self, sub: _Subscription, inst: Instrument) -> None:
        try:
            self._update(sub, inst)
        except Exception:
            log.exception("market data update for %s failed", inst.key)

    def _update(self, sub: _Subscription, inst: Instrument) -> None:
        b, a = self._levels(sub, inst)
        old_b, old_a = sub.shown.get(inst.key, ({}, {}))
        if b == old_b and a == old_a:
            return
        sub.shown[inst.key] = (b, a)
        if not sub.incremental:
            return self._send_snapshot(sub, inst, b, a)
        ident = instrument_fields(inst)
        entries: list[tuple[int, object]] = []
        n = 0
        for side, old, new in ((b"0", old_b, b), (b"1", old_a, a)):
            # Deletes first: a subscriber capping its copy at N levels never holds N + 1.
            for px in sorted(old.keys() - new.keys()):
                entries += [(279, b"2"), (269, side), *ident, (270, _px(inst, px))]
                n += 1
            for px in sorted(new):
                if px not in old:
                    action = b"0"
                elif new[px] != old[px]:
                    action = b"1"
                else:
                    continue
                qty, count = new[px]
                entries += [(279, action), (269, side), *ident, (270, _px(inst, px)), (271, qty), (346, count)]
                n += 1
        self._send(sub.session, b"X", [(262, sub.req_id), (268, n), *entries])


def _px(inst: Instrument, ticks: int) -> str:
    return format(inst.ticks_to_price(ticks), "f")


def _related_symbols(msg) -> list[dict[int, str]]:
    """The NoRelatedSym (146) entries of a V, each as {tag: text} (55 starts an entry)."""
    out: list[dict[int, str]] = []
    inside = False
    for tag, value in msg.fields:
        if tag == 146:
            inside = True
            continue
        if not inside:
            continue
        if tag == 55:
            out.append({55: value.decode("latin-1")})
        elif out and tag in (167, 200, 201, 202) and tag not in out[-1]:
            out[-1][tag] = value.decode("latin-1")
    return out
