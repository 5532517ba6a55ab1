"""SmartRouter: a Venue made of venues. The OMS sends it the client's (parent) order exactly as it
would to an exchange; the router cuts it into child orders on real venues (InProcessVenue,
FixVenue) by its policy, aggregates the children's events and answers upstream as one venue:

* ``NEW`` once (when the first child is acknowledged), ``TRADE`` per child fill (``exec_id``
  ``"<venue>:<child exec id>"``, ``last_px`` the child's price, the parent's exact cum/leaves),
  ``CANCELED`` once when the parent ends without a full fill, ``REJECTED`` when no child was ever
  accepted.
* Cancel and replace of the parent go to its live children; ``CANCELED`` / ``REPLACED`` /
  ``CANCEL_REJECTED`` / ``REPLACE_REJECTED`` come only when every child has answered. A replace
  down cuts children newest first; a replace up adds quantity by the policy.
* A venue that goes down: new orders go to the venues still up (BEST_PRICE, SWEEP) or are
  rejected (DIRECT); live children there are marked unknown and reconciled when it comes back
  (FixVenue reconciles itself on logon; in-process venues are asked ``order_status``), then the
  parent hears what really happened. Child fills are applied once (exec id idempotency).
* Every decision and child is written to the audit trail (crossbook.routing.audit), queryable
  with :meth:`SmartRouter.audit`.

docs/routing.md describes the whole behaviour and the configuration.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson

from crossbook.core import OrdType, Reason, Side, Status, TimeInForce
from crossbook.model.instruments import Instrument
from crossbook.routing.audit import AuditLog, MemoryAuditLog
from crossbook.routing.outbox import EventOutbox
from crossbook.routing.policies import (
    ChildPlan, Policy, VenueQuote, plan_best_price, plan_direct, plan_sweep,
)
from crossbook.routing.venue import Level, Venue, VenueEvent, VenueEventKind, VenueOrder, VenueReason
from crossbook.model.ids import base36

__all__ = ["RouterConfig", "SmartRouter", "build_router", "durable_audit_path", "load_routers"]

log = logging.getLogger("crossbook.routing.router")

_K = VenueEventKind
_RESTING, _PARTIAL, _FILLED, _CANCELLED, _REJECTED = (
    int(Status.RESTING), int(Status.PARTIALLY_FILLED), int(Status.FILLED), int(Status.CANCELLED),
    int(Status.REJECTED))
_DONE_STATUS = (_FILLED, _CANCELLED, _REJECTED)
# The values a VenueOrder's side, ord_type and tif may take (the enums' value maps, looked up once).
_SIDES, _ORD_TYPES, _TIFS = Side._value2member_map_, OrdType._value2member_map_, TimeInForce._value2member_map_
#: ``reason`` of FixVenue's STATUS closing its reconciliation of one order (crossbook.routing.fix_venue).
_RECONCILED = "reconciled after reconnect"
#: A taking child's unfilled rest cancelled by its venue: not the venue ending a resting order.
_REMAINDER_CODES = (int(Reason.IOC_REMAINDER), int(Reason.MARKET_REMAINDER), int(Reason.FOK_UNFILLABLE))
#: Prefix of the reason a parent ends with after a restart when the trail shows it ended before.
_ENDED_BEFORE = "ended before the restart: "


def _has_market_data(venue: Venue, instrument: Instrument) -> bool:
    """Whether ``venue``'s book of ``instrument`` is known (a FIX venue: its first snapshot since
    it logged on arrived); venues without ``market_data_ready`` always know their books."""
    ready = getattr(venue, "market_data_ready", None)
    return True if ready is None else bool(ready(instrument))


class _SystemClock:
    @staticmethod
    def now_ns() -> int:
        return time.time_ns()


# ================================================================================================
# Configuration
# ================================================================================================
@dataclass(frozen=True)
class RouterConfig:
    """One ``[[routers]]`` table: ``name`` (what ExDestination or an instrument's config names),
    ``policy``, ``venues`` (in order of preference; DIRECT uses the first), ``rest_venue`` (where a
    remainder rests; default the first venue), ``depth_levels`` (market data levels read per
    venue), ``watch_s`` (how often venues without up/down notices are checked), ``audit_path``
    (SQLite file of the audit trail; empty = in memory), ``instruments`` (listing keys whose
    orders go to this router when ExDestination names nothing: the per-instrument choice)."""

    name: str
    policy: Policy
    venues: tuple[str, ...]
    rest_venue: str = ""
    depth_levels: int = 10
    watch_s: float = 0.05
    audit_path: str = ""
    instruments: tuple[str, ...] = ()

    _KEYS = ("name", "policy", "venues", "rest_venue", "depth_levels", "watch_s", "audit_path", "instruments")

    @classmethod
    def from_config(cls, table: object, *, known_venues: Iterable[str] | None = None,
                    known_instruments: Iterable[str] | None = None, where: str = "routers[0]") -> RouterConfig:
        """From a TOML table; errors are ValueError naming the key (``routers[1].policy: ...``)."""
        if not isinstance(table, dict):
            raise ValueError(f"{where}: must be a table, got {type(table).__name__}")
        for k in table:
            if k not in cls._KEYS:
                raise ValueError(f"{where}.{k}: unknown key (known: {', '.join(cls._KEYS)})")
        name = table.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}.name: required, a non-empty string (got {name!r})")
        if "policy" not in table:
            raise ValueError(f"{where}.policy: required (direct, best_price, sweep, split)")
        policy = Policy.parse(table["policy"], f"{where}.policy")
        venues = table.get("venues")
        if (not isinstance(venues, list) or not venues
                or not all(isinstance(v, str) and v for v in venues)):
            raise ValueError(f"{where}.venues: required, a non-empty list of venue names (got {venues!r})")
        if len(set(venues)) != len(venues):
            raise ValueError(f"{where}.venues: a venue appears twice: {venues}")
        if policy is Policy.DIRECT and len(venues) != 1:
            raise ValueError(f"{where}.venues: a direct router routes to exactly one venue, got {venues}")
        known = set(known_venues) if known_venues is not None else None
        if known is not None:
            for v in venues:
                if v not in known:
                    raise ValueError(f"{where}.venues: {v!r} is not a configured venue "
                                     f"(venues: {', '.join(sorted(known))})")
            if name in known:
                raise ValueError(f"{where}.name: {name!r} is already a venue's name")
        rest = table.get("rest_venue", venues[0])
        if not isinstance(rest, str) or rest not in venues:
            raise ValueError(f"{where}.rest_venue: must be one of the router's venues {venues}, got {rest!r}")
        depth = table.get("depth_levels", 10)
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 1000:
            raise ValueError(f"{where}.depth_levels: an int from 1 to 1000, got {depth!r}")
        watch = table.get("watch_s", 0.05)
        if isinstance(watch, bool) or not isinstance(watch, (int, float)) or not 0 < watch <= 60:
            raise ValueError(f"{where}.watch_s: seconds in (0, 60], got {watch!r}")
        audit_path = table.get("audit_path", "")
        if not isinstance(audit_path, str):
            raise ValueError(f"{where}.audit_path: a file path string, got {audit_path!r}")
        insts = table.get("instruments", [])
        if not isinstance(insts, list) or not all(isinstance(i, str) and i for i in insts):
            raise ValueError(f"{where}.instruments: a list of instrument keys, got {insts!r}")
        if known_instruments is not None:
            known_i = set(known_instruments)
            for i in insts:
                if i not in known_i:
                    raise ValueError(f"{where}.instruments: unknown instrument {i!r}")
        return cls(name, policy, tuple(venues), rest, depth, float(watch), audit_path, tuple(insts))


def load_routers(tables: object, known_venues: Iterable[str], *, known_instruments: Iterable[str] | None = None,
                 where: str = "routers") -> tuple[RouterConfig, ...]:
    """Every ``[[routers]]`` table of a config (None or [] = no routers); names must be unique and
    an instrument may name at most one router."""
    if tables is None:
        return ()
    if not isinstance(tables, list):
        raise ValueError(f"{where}: must be a list of [[{where}]] tables, got {type(tables).__name__}")
    known = list(known_venues)
    known_i = list(known_instruments) if known_instruments is not None else None
    out = [RouterConfig.from_config(t, known_venues=known, known_instruments=known_i, where=f"{where}[{i}]")
           for i, t in enumerate(tables)]
    names = [r.name for r in out]
    claimed: dict[str, str] = {}
    for i, r in enumerate(out):
        if r.name in names[:i]:
            raise ValueError(f"{where}[{i}].name: router {r.name!r} is defined twice")
        for inst in r.instruments:
            if inst in claimed:
                raise ValueError(f"{where}[{i}].instruments: {inst!r} is already routed by {claimed[inst]!r}")
            claimed[inst] = r.name
    return tuple(out)


def build_router(config: RouterConfig, venues: dict[str, Venue], clock=None, *,
                 audit: AuditLog | None = None) -> SmartRouter:
    """A SmartRouter over the named venues (``venues``: every configured venue by name). The audit
    log is ``audit``, else an SqliteAuditLog at ``config.audit_path``, else in memory."""
    if audit is None and config.audit_path:
        from crossbook.routing.audit import SqliteAuditLog
        audit = SqliteAuditLog(config.audit_path)
    missing = [v for v in config.venues if v not in venues]
    if missing:
        raise ValueError(f"router {config.name}: venues not built: {missing}")
    return SmartRouter(config.name, [venues[v] for v in config.venues], config.policy, rest_venue=config.rest_venue,
                       clock=clock, audit=audit, depth_levels=config.depth_levels, watch_s=config.watch_s)


def durable_audit_path(config: RouterConfig, venues: dict[str, Venue], storage_dir: str) -> str:
    """Where the router's audit trail is kept: ``config.audit_path``; when that is empty and the
    router can send children to a venue that outlives this process (a venue process,
    ``outlives_process``), ``<storage_dir>/routing-audit.db``, because after a crash its
    children there must be found (``recover_parent``); else "" (in memory)."""
    if config.audit_path:
        return config.audit_path
    if any(getattr(venues.get(v), "outlives_process", False) is True for v in config.venues):
        return os.path.join(storage_dir, "routing-audit.db")
    return ""


_EVENT_ROW = {k: "child_" + k.name.lower() for k in VenueEventKind}


class _Decision:
    """Audit detail of a routing decision, made into a dict only when written or queried."""

    __slots__ = ("policy", "quotes", "up", "plan")

    def __init__(self, policy: Policy, quotes: list[VenueQuote], up: list[str], plan) -> None:
        self.policy, self.quotes, self.up, self.plan = policy, quotes, up, plan

    def audit_detail(self) -> dict:
        return self._detail([q.as_dict() for q in self.quotes])

    def audit_json(self) -> bytes:
        """``audit_detail()`` as JSON, made directly (the books' levels stay tuples, JSON arrays
        all the same): the decision goes ahead with its children on the loop (record_durable),
        3 us instead of 6 for two venues' 10-level books."""
        return orjson.dumps(self._detail([{"venue": q.venue, "bids": q.bids, "asks": q.asks} for q in self.quotes]))

    def _detail(self, market: list) -> dict:
        plan = self.plan
        return {"policy": self.policy.value, "market": market, "up": self.up,
                "note": plan.note, "killed": plan.killed, "rest": plan.rest,
                "children": [{"venue": c.venue, "qty": c.qty, "price": c.price, "why": c.why, "mirror": c.mirror,
                              "tif": None if c.mirror else int(c.tif)} for c in plan.children]}


class _ParentNew:
    __slots__ = ("order", "policy")

    def __init__(self, order: VenueOrder, policy: Policy) -> None:
        self.order, self.policy = order, policy

    def audit_detail(self) -> dict:
        o = self.order
        return {"side": int(o.side), "ord_type": int(o.ord_type), "tif": int(o.tif), "instrument": o.instrument.key,
                "stop_price": o.stop_price, "display_qty": o.display_qty, "post_only": o.post_only,
                "policy": self.policy.value}


# ================================================================================================
# Event taps: one sink per venue, shared by every router using it and the OMS
# ================================================================================================
class _Tap:
    """The single sink of one venue: events about a router's children go to that router, every
    other event (the OMS's own orders at the venue) goes on to the upstream sink unchanged."""

    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self.routers: list[SmartRouter] = []
        self.upstream: Callable[[VenueEvent], None] | None = None

    def __call__(self, ev: VenueEvent) -> None:
        for r in self.routers:
            child = r._child_of(ev)
            if child is not None:
                r._on_child_event(ev, child)
                # The venue calls its sink only from its own delivery callback (delivery rule 1),
                # never from inside a call the OMS made: the parent's events can go upstream now,
                # in this callback, rather than one loop turn later from the router's. A routed
                # order's answer then reaches the OMS in the turn a direct one's does, and joins
                # the same journal batch as the order's PendingNew.
                r._outbox.deliver_now()
                return
        if self.upstream is not None:
            self.upstream(ev)


_TAPS: dict[int, _Tap] = {}


def _tap_for(venue: Venue) -> _Tap:
    tap = _TAPS.get(id(venue))
    if tap is None or tap.venue is not venue:
        tap = _TAPS[id(venue)] = _Tap(venue)
    return tap


# ================================================================================================
# State
# ================================================================================================
class _Child:
    __slots__ = ("id", "cl", "parent", "venue", "seq", "qty", "price", "cum", "leaves", "acked", "done", "unknown",
                 "mirror", "requests", "want", "venue_order_id", "reason_code", "reason", "reconciling",
                 "aliases")

    def __init__(self, cid: str, parent: _Parent, venue: Venue, seq: int, qty: int, price: int, mirror: bool):
        self.id = cid
        self.cl = cid                   # latest id of the child's chain at the venue
        self.parent = parent
        self.venue = venue
        self.seq = seq
        self.qty = qty
        self.price = price
        self.cum = 0
        self.leaves = qty
        self.acked = False
        self.done = False
        self.unknown = False            # its venue went down while it was live
        self.reconciling = False        # an order_status is out for it (in-process venues)
        self.mirror = mirror            # carries the parent's own type/TIF (rests); else a taking IOC/FOK child
        self.requests: dict[str, tuple] = {}   # request id -> ("cancel",) | ("replace", qty, price)
        self.want: tuple | None = None  # a cancel/replace refused "venue down": sent again after reconciliation
        self.venue_order_id = ""
        self.reason_code = 0
        self.reason = ""
        self.aliases: list[str] = []    # every key it is registered under (ids, request ids)


class _Pending:
    __slots__ = ("kind", "req", "orig", "qty", "price", "waiting", "refused", "add")

    def __init__(self, kind: str, req: str, orig: str, qty: int = 0, price: int = 0, add: int = 0):
        self.kind = kind
        self.req = req
        self.orig = orig
        self.qty = qty
        self.price = price
        self.add = add
        self.waiting: set[str] = set()
        self.refused: list[str] = []


class _Recovery:
    """A parent taken back after a restart whose children from the previous run must be settled
    before it may route again (:meth:`SmartRouter.recover_parent`). ``seen``: per child id,
    ``[cum, value, reached]``: the audit trail's count, brought up to date by what its venue
    reports in this run (resend, reconciliation); ``out``: the cancel out per child;
    ``asked_before``: the children the previous runs sent a cancel for (``child_cancel_sent``
    in the trail): a cancel of one of them may be the answer to that request, not the venue
    ending it on its own."""

    __slots__ = ("oms_cum", "oms_value", "pending", "restored_pending", "seen", "out", "final", "retry",
                 "asked_before")

    def __init__(self, oms_cum: int, oms_value: int, pending: str, final: tuple[int, str] | None = None,
                 asked_before: frozenset[str] = frozenset()) -> None:
        self.oms_cum = oms_cum
        self.oms_value = oms_value
        self.pending = pending          # "cancel" | "replace" | "": what the OMS has in flight
        # What was in flight at the restart (a request deferred while settling is not: this run's
        # cancels of its children are in ``out``).
        self.restored_pending = pending
        # (reason code, text) when the parent must not route again once settled: it ended
        # before the restart (the trail says so) or it may execute only once (IOC, FOK, market).
        self.final = final
        self.seen: dict[str, list] = {}
        self.out: dict[str, str] = {}   # child id -> the cancel request out for it
        self.retry: dict[str, asyncio.TimerHandle] = {}   # child id -> its cancel sent again later
        self.asked_before = asked_before


class _Parent:
    __slots__ = ("id", "cl", "ids", "order", "qty", "price", "cum", "acked", "done", "children", "child_seq",
                 "wave", "may_rest", "pending", "ending", "rejects", "aliases", "retired", "recovery", "restored")

    def __init__(self, pid: str, order: VenueOrder):
        self.id = pid
        self.cl = order.venue_cl_ord_id
        self.ids = [order.venue_cl_ord_id]
        self.order = order
        self.qty = order.qty
        self.price = order.price
        self.cum = 0
        self.acked = False
        self.done = False
        self.children: list[_Child] = []
        self.child_seq = 0
        self.wave = False               # taking children out; the remainder is decided when they are done
        self.may_rest = False
        self.pending: _Pending | None = None
        self.ending: tuple[int, str] | None = None   # unsolicited end in progress: (reason code, text)
        self.rejects: list[str] = []
        self.aliases: list[str] = []    # every key it is registered under (chain ids, request ids)
        self.retired = False
        self.recovery: _Recovery | None = None   # taken back after a restart, children being settled
        self.restored = False           # taken back after a restart (recover_parent / restore_parent)

    @property
    def leaves(self) -> int:
        return 0 if self.done else self.qty - self.cum

    def live(self) -> list[_Child]:
        return [c for c in self.children if not c.done]

    def has_live(self) -> bool:
        """``bool(self.live())`` without building the list."""
        for c in self.children:
            if not c.done:
                return True
        return False

    def status(self) -> int:
        if self.cum >= self.qty:
            return _FILLED
        return _PARTIAL if self.cum else _RESTING


# ================================================================================================
# The router
# ================================================================================================
class SmartRouter:
    """A Venue that routes each (parent) order over ``venues`` by ``policy``.

    ``venues``: Venue objects in order of preference (ties in price go to the earlier one; DIRECT
    uses the first). ``rest_venue``: name of the venue where a remainder rests (default the
    first; when it is down, the first up venue listing the instrument). ``clock``: ``now_ns()``.
    ``audit``: an AuditLog (default in memory). ``depth_levels``: market data levels read per
    venue. ``watch_s``: how often venues without up/down notices (in-process ones) are checked.
    """

    #: Settling after a restart: a child still live at its venue after four refused cancels is
    #: cancelled again after this many seconds, doubling up to 60 s, for as long as it is live
    #: (its parent is never routed again meanwhile). Per instance, settable.
    recovery_retry_s = 1.0
    #: A parent settled after a restart whose leaves are to be routed again while none of its
    #: venues is up (FIX venues log on in the background after the server starts) waits this
    #: many seconds for one to come up before it ends "venue down". Per instance, settable.
    recovery_venue_wait_s = 10.0
    #: Once a venue is up, how long a settled parent waits more (seconds) for the other venues
    #: listing its instrument and for their first market data snapshot before it is routed.
    recovery_md_wait_s = 1.0
    #: A parent still settling this many seconds after the router started (a venue that does not
    #: come back, a child that does not answer) is reported: an error logged and a
    #: ``parent_settle_overdue`` row naming the children not settled, again after twice as
    #: long each time (up to an hour). It keeps settling: nothing is routed while a child may
    #: be live. Per instance, settable.
    recovery_alert_s = 30.0

    def __init__(self, name: str, venues: list[Venue], policy: Policy | str = Policy.SWEEP, *,
                 rest_venue: str = "", clock=None, audit: AuditLog | None = None, depth_levels: int = 10,
                 watch_s: float = 0.05, max_done_parents: int = 100_000) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"router name must be a non-empty string, got {name!r}")
        if not isinstance(venues, (list, tuple)) or not venues:
            raise ValueError("venues must be a non-empty list of Venue objects")
        for v in venues:
            if not isinstance(v, Venue):
                raise TypeError(f"venues must implement the Venue protocol, got {type(v).__name__}")
        names = [v.name for v in venues]
        if len(set(names)) != len(names):
            raise ValueError(f"a venue appears twice: {names}")
        self.policy = Policy.parse(policy)
        if self.policy is Policy.DIRECT and len(venues) != 1:
            raise ValueError(f"a direct router routes to exactly one venue, got {names}")
        if rest_venue and rest_venue not in names:
            raise ValueError(f"rest_venue {rest_venue!r} is not one of the router's venues {names}")
        if isinstance(max_done_parents, bool) or not isinstance(max_done_parents, int) or max_done_parents < 0:
            raise ValueError(f"max_done_parents must be an int >= 0, got {max_done_parents!r}")
        if isinstance(depth_levels, bool) or not isinstance(depth_levels, int) or depth_levels < 1:
            raise ValueError(f"depth_levels must be an int >= 1, got {depth_levels!r}")
        self.name = name
        self.venues: list[Venue] = list(venues)
        self._by_name = {v.name: v for v in venues}
        self._pref = {v.name: i for i, v in enumerate(venues)}
        self.rest_venue = rest_venue or names[0]
        # Where a remainder may rest, in order: the rest venue, then the others by preference.
        self._rest_candidates = [self._by_name[self.rest_venue]] + [v for v in venues if v.name != self.rest_venue]
        self.depth_levels = depth_levels
        self.watch_s = float(watch_s)
        self._clock = clock or _SystemClock()
        self._audit: AuditLog = audit if audit is not None else MemoryAuditLog()
        self._prefix = f"{name}-{base36(time.time_ns() // 1000)}-"
        self._ids = itertools.count(1)
        self._parents: dict[str, _Parent] = {}      # any id of a parent's chain (and its requests) -> parent
        self._by_pid: dict[str, _Parent] = {}
        self._children: dict[str, _Child] = {}      # any id of a child's chain and its requests -> child
        self._seen_exec: set[tuple[str, str]] = set()
        self._seen_order: deque[tuple[str, str]] = deque()
        self._max_seen = 1_000_000
        self._done_parents: deque[_Parent] = deque()
        # Settled parents waiting for a venue to come up before they route (_route_when_up).
        self._waiting: dict[str, tuple[_Parent, float, float | None]] = {}   # id -> (parent, deadline, grace)
        # Parents being settled: [parent, when to report it overdue (monotonic), wait so far].
        self._settling: dict[str, list] = {}
        self._max_done = max_done_parents
        self._outbox = EventOutbox(name, label="router")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._watch_task: asyncio.Task | None = None
        self._up_seen: dict[str, bool] = {}
        self._listening: set[str] = set()           # venues that tell us up/down themselves
        # Venues whose orders outlive this process (venue processes, ``outlives_process``:
        # FixVenue): children sent there are written ahead to the audit trail (_send_children_durably).
        self._outliving = frozenset(v.name for v in venues if getattr(v, "outlives_process", False) is True)
        # Market data read per book change, not per order (_quotes): each venue's book_version
        # method (None: no counter, read every time) and its quotes by listing key.
        self._book_versions = {v.name: getattr(v, "book_version", None) for v in venues}
        self._quote_cache: dict[str, dict[str, tuple[int, VenueQuote]]] = {v.name: {} for v in venues}
        #: Counters (tests, monitoring).
        self.children_sent = 0
        self.duplicate_execs_dropped = 0

    # ============================================================================================
    # Venue protocol
    # ============================================================================================
    def lists(self, instrument: Instrument) -> bool:
        return any(v.lists(instrument) for v in self.venues)

    def set_event_sink(self, sink: Callable[[VenueEvent], None]) -> None:
        """Install the upstream sink (the OMS's). The router also becomes the sink of its venues:
        events about orders that are not its children go on to ``sink`` unchanged."""
        self._outbox.set_sink(sink)
        self._install_taps()

    @property
    def is_up(self) -> bool:
        # Asked by the OMS for every order: a plain loop, no generator.
        if not self._started:
            return False
        for v in self.venues:
            if v.is_up:
                return True
        return False

    async def start(self) -> None:
        """Take over the venues' sinks (again: call after the OMS installed its sinks), start the
        venues (idempotent for both kinds), listen to up/down notices, start the watch task."""
        if self._started:
            return
        self._loop = self._outbox.loop = asyncio.get_running_loop()
        self._install_taps()
        for v in self.venues:
            add = getattr(v, "add_state_listener", None)
            if add is not None and v.name not in self._listening:
                add(self._on_venue_state)
                self._listening.add(v.name)
            await v.start()
            self._up_seen[v.name] = v.is_up
        self._started = True
        self._watch_task = self._loop.create_task(self._watch(), name=f"router {self.name} watch")
        for parent in list(self._by_pid.values()):
            if parent.recovery is not None:
                self._settling[parent.id] = [parent, time.monotonic() + self.recovery_alert_s, self.recovery_alert_s]
                # Taken back before the start with nothing left to ask a venue: settled now,
                # when events may go upstream and children may be routed.
                self._recovery_progress(parent)

    async def stop(self) -> None:
        """Stop routing (new orders are rejected "venue down"). The venues are shared with the
        OMS and stay up: their owner stops them."""
        self._started = False
        for parent in self._by_pid.values():
            if parent.recovery is not None:
                for handle in parent.recovery.retry.values():
                    handle.cancel()
                parent.recovery.retry.clear()
        task, self._watch_task = self._watch_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def new_order(self, order: VenueOrder) -> None:
        if not isinstance(order, VenueOrder):
            raise TypeError(f"new_order takes a VenueOrder, got {type(order).__name__}")
        cl = order.venue_cl_ord_id
        if not isinstance(cl, str) or not cl:
            raise ValueError(f"venue_cl_ord_id must be a non-empty string, got {cl!r}")
        # Plain ints (the OMS's case) pass at once; anything else gets the full check below.
        if not (type(order.qty) is int and type(order.price) is int and type(order.stop_price) is int
                and type(order.display_qty) is int and type(order.expire_time) is int):
            for what in ("qty", "price", "stop_price", "display_qty", "expire_time"):
                v = getattr(order, what)
                if isinstance(v, bool) or not isinstance(v, int):
                    # A contract violation by the caller (as with the venues): nothing changes.
                    raise TypeError(f"VenueOrder.{what} must be an int (units / ticks / ns), got {v!r}")
        if order.side not in _SIDES or order.ord_type not in _ORD_TYPES or order.tif not in _TIFS:
            for what, enum in (("side", Side), ("ord_type", OrdType), ("tif", TimeInForce)):
                if getattr(order, what) not in enum._value2member_map_:
                    raise ValueError(f"VenueOrder.{what} must be a {enum.__name__}, got {getattr(order, what)!r}")
        if order.qty <= 0:
            return self._outbox.push(self._reject(cl, Reason.INVALID_QTY,
                                                  f"quantity must be positive, got {order.qty}"))
        if cl in self._parents:
            return self._outbox.push(self._reject(cl, Reason.DUPLICATE_ID, f"duplicate venue_cl_ord_id {cl}"))
        inst = order.instrument
        if not self._started:
            return self._outbox.push(self._reject(cl, VenueReason.VENUE_DOWN,
                                                  f"venue down: {self.name} is not started"))
        listing = []
        up = []
        for v in self.venues:
            if v.lists(inst):
                listing.append(v)
                if v.is_up:
                    up.append(v)
        if not listing:
            key = getattr(inst, "key", inst)
            return self._outbox.push(self._reject(cl, VenueReason.NOT_LISTED,
                                                  f"{key} is not listed on any venue of {self.name}"))
        parent = _Parent(f"{self._prefix}{next(self._ids)}", order)
        self._alias_parent(cl, parent)
        self._by_pid[parent.id] = parent
        self._record(parent, "parent_new", qty=order.qty, price=order.price, detail=_ParentNew(order, self.policy))
        if self.policy is Policy.DIRECT and not up:
            return self._refuse_parent(parent, f"venue down: router {self.name} routes direct to {listing[0].name}, "
                                               f"which is down")
        if not up:
            return self._refuse_parent(parent, f"venue down: no venue of {self.name} is up for {inst.key} ("
                                       + ", ".join(v.name for v in listing) + " down)")
        self._route(parent, order.qty, up)
        self._maybe_retire(parent)

    def cancel_order(self, venue_cl_ord_id: str, cancel_cl_ord_id: str) -> None:
        kind = _K.CANCEL_REJECTED
        parent = self._parents.get(venue_cl_ord_id)
        if not self._started:
            return self._outbox.push(self._req_reject(kind, cancel_cl_ord_id, venue_cl_ord_id, parent,
                                                      VenueReason.VENUE_DOWN, f"venue down: {self.name} is not started"))
        if not isinstance(cancel_cl_ord_id, str) or not cancel_cl_ord_id:
            raise ValueError(f"cancel_cl_ord_id must be a non-empty string, got {cancel_cl_ord_id!r}")
        if parent is not None and parent.recovery is not None:
            return self._defer(parent, "cancel", cancel_cl_ord_id)
        problem = self._amend_problem(parent, venue_cl_ord_id, cancel_cl_ord_id, "cancel")
        if problem:
            return self._outbox.push(self._req_reject(kind, cancel_cl_ord_id, venue_cl_ord_id, parent, *problem))
        self._alias_parent(cancel_cl_ord_id, parent)
        parent.pending = _Pending("cancel", cancel_cl_ord_id, parent.cl)
        parent.may_rest = False
        self._record(parent, "parent_cancel_requested", detail={"request": cancel_cl_ord_id,
                                                                "live_children": [c.id for c in parent.live()]})
        for child in parent.live():
            self._cancel_child(child, parent.pending)
        self._progress(parent)

    def replace_order(self, venue_cl_ord_id: str, new_venue_cl_ord_id: str, qty: int, price: int) -> None:
        kind = _K.REPLACE_REJECTED
        new = new_venue_cl_ord_id
        parent = self._parents.get(venue_cl_ord_id)
        if not self._started:
            return self._outbox.push(self._req_reject(kind, new, venue_cl_ord_id, parent, VenueReason.VENUE_DOWN,
                                                      f"venue down: {self.name} is not started"))
        if not isinstance(new, str) or not new:
            raise ValueError(f"new_venue_cl_ord_id must be a non-empty string, got {new!r}")
        if isinstance(qty, bool) or not isinstance(qty, int) or isinstance(price, bool) or not isinstance(price, int):
            raise TypeError(f"qty and price must be ints (units, ticks), got {qty!r}, {price!r}")
        if parent is not None and parent.recovery is not None:
            return self._defer(parent, "replace", new)
        problem = self._amend_problem(parent, venue_cl_ord_id, new, "replace")
        if problem:
            return self._outbox.push(self._req_reject(kind, new, venue_cl_ord_id, parent, *problem))
        if qty <= 0:
            return self._outbox.push(self._req_reject(kind, new, venue_cl_ord_id, parent, Reason.INVALID_QTY,
                                                      f"quantity must be positive, got {qty}"))
        if not parent.acked:
            # As the OMS does for PendingNew: what to amend is not known until a venue has it.
            return self._outbox.push(self._req_reject(kind, new, venue_cl_ord_id, parent, 0,
                                                      "cannot replace: order not yet acknowledged by its venues"))
        self._alias_parent(new, parent)
        limit_type = parent.order.ord_type in (OrdType.LIMIT, OrdType.STOP_LIMIT)
        new_price = price if limit_type else parent.price
        old_leaves = parent.qty - parent.cum
        new_leaves = max(qty - parent.cum, 0)
        pend = parent.pending = _Pending("replace", new, parent.cl, qty, new_price)
        live = sorted(parent.live(), key=lambda c: c.seq)
        reduce = max(old_leaves - new_leaves, 0)
        unallocated = old_leaves - sum(c.leaves for c in live)
        cut_left = max(reduce - max(unallocated, 0), 0)
        targets: dict[str, int] = {c.id: c.leaves for c in live}
        for c in reversed(live):                      # newest first
            if cut_left <= 0:
                break
            cut = min(c.leaves, cut_left)
            targets[c.id] -= cut
            cut_left -= cut
        add = max(new_leaves - old_leaves, 0)
        grow = None
        if add and self.policy is not Policy.SWEEP:
            # Single-child policies grow their child; SWEEP routes the added quantity afresh after.
            grow = next((c for c in reversed(live) if c.mirror), None)
            if grow is not None:
                targets[grow.id] += add
                add = 0
        pend.add = add
        self._record(parent, "parent_replace_requested", qty=qty, price=new_price,
                     detail={"request": new, "old_leaves": old_leaves, "new_leaves": new_leaves,
                             "child_targets": targets, "add_by_policy": add})
        for c in live:
            target = targets[c.id]
            px = new_price if (c.mirror and limit_type) else c.price
            if target <= 0:
                self._cancel_child(c, pend)
            elif target != c.leaves or px != c.price:
                self._replace_child(c, pend, c.cum + target, px)
        self._progress(parent)

    def order_status(self, venue_cl_ord_id: str) -> None:
        parent = self._parents.get(venue_cl_ord_id)
        now = self._clock.now_ns()
        if parent is None:
            ev = VenueEvent(_K.STATUS, self.name, venue_cl_ord_id, "", reason=f"unknown order {venue_cl_ord_id}",
                            reason_code=int(Reason.UNKNOWN_ORDER), ts=now, ord_status=_REJECTED)
        else:
            status = _CANCELLED if parent.done and parent.cum < parent.qty else parent.status()
            ev = VenueEvent(_K.STATUS, self.name, parent.cl, parent.id, leaves_qty=parent.leaves, cum_qty=parent.cum,
                            ts=now, ord_status=status,
                            orig_venue_cl_ord_id=venue_cl_ord_id if venue_cl_ord_id != parent.cl else "")
        self._outbox.push(ev)

    def top_of_book(self, instrument: Instrument) -> tuple[int, int, int, int] | None:
        """The consolidated top of book of the up venues: best bid/ask and the displayed quantity
        summed over the venues showing that price."""
        if not self.lists(instrument):
            return None
        bids, asks = self.depth(instrument, 1)
        return (bids[0][0] if bids else 0, bids[0][1] if bids else 0, asks[0][0] if asks else 0,
                asks[0][1] if asks else 0)

    def depth(self, instrument: Instrument, levels: int = 10) -> tuple[list[Level], list[Level]]:
        """Consolidated depth of the up venues: levels merged by price, quantities and order counts summed."""
        bids: dict[int, list[int]] = {}
        asks: dict[int, list[int]] = {}
        for v in self.venues:
            if not v.is_up or not v.lists(instrument):
                continue
            vb, va = v.depth(instrument, levels)
            for book, side in ((bids, vb), (asks, va)):
                for px, qty, n in side:
                    lv = book.setdefault(px, [0, 0])
                    lv[0] += qty
                    lv[1] += n
        return ([(p, *bids[p]) for p in sorted(bids, reverse=True)[:levels]],
                [(p, *asks[p]) for p in sorted(asks)[:levels]])

    # ============================================================================================
    # Beyond the protocol
    # ============================================================================================
    def audit(self, parent_id: str) -> list[dict]:
        """The audit trail of one parent, oldest first: ``parent_id`` is the router's order id (the
        ``venue_order_id`` of its events) or any venue_cl_ord_id of its chain."""
        parent = self._parents.get(parent_id) or self._by_pid.get(parent_id)
        return self._audit.query(parent.id if parent is not None else parent_id)

    @property
    def audit_log(self) -> AuditLog:
        """Where the audit rows go; its owner closes it at shutdown (``router.audit_log.close()``)."""
        return self._audit

    def children_of(self, parent_id: str) -> list[dict]:
        """The parent's children as dicts (id, latest cl, venue, venue_order_id, qty, price, cum,
        leaves, done, unknown, mirror), oldest first; ``parent_id`` as for :meth:`audit`."""
        parent = self._parents.get(parent_id) or self._by_pid.get(parent_id)
        if parent is None:
            return []
        return [{"id": c.id, "cl": c.cl, "venue": c.venue.name, "venue_order_id": c.venue_order_id, "qty": c.qty, "price": c.price, "cum": c.cum,
                 "leaves": c.leaves, "done": c.done, "unknown": c.unknown, "mirror": c.mirror}
                for c in parent.children]

    def restore_parent(self, order: VenueOrder, cum_qty: int, ids: Iterable[str] = ()) -> bool:
        """After an OMS restart: take back a parent whose children were left live at venues that
        outlived the OMS (venue processes: FixVenue), instead of routing its leaves again. The
        parent's history is read from the audit trail, so this needs a persistent one
        (``audit_path``). ``order``: the parent as the OMS knows it now (its current
        venue_cl_ord_id, qty, price); ``cum_qty``: what it has filled; ``ids``: its earlier
        venue_cl_ord_ids (one of them names it in the trail).

        Its live children are registered with their venues' ``restore_order`` (so the venue
        reconciles them at logon and their fills reach the parent); the parent is acknowledged
        and continues: fills, cancel and replace as before the restart. Returns False and
        changes nothing when the trail does not know the parent, or its children that are still
        live at such venues do not hold exactly its leaves (rows lost in a crash, children at
        in-process venues, whose books died). The server uses :meth:`recover_parent`, which
        settles such a parent's children instead of leaving them live."""
        found = self._parent_from_trail(order, cum_qty, ids)
        if found is None:
            return False
        parent, rows, chain, children, seen_exec, values = found
        if not self._adoptable(children, order.qty - cum_qty):
            live = [c for c in children if not c.done]
            log.warning("router %s: parent %s not restored (children live: %s; leaves %d)",
                        self.name, parent.id, [(c.id, c.venue.name, c.leaves) for c in live], order.qty - cum_qty)
            return False
        self._adopt(parent, rows, chain, children, seen_exec, values, cum_qty, acked=True)
        return True

    def recover_parent(self, order: VenueOrder, cum_qty: int, ids: Iterable[str] = (), *, cum_value: int = 0,
                       acknowledged: bool = True, pending: str = "") -> bool:
        """After an OMS restart: take back the open parent ``order`` if any child of it from the
        previous run may still be live at a venue that outlived the process (a venue process:
        ``outlives_process``), or may have filled beyond what the OMS knows. Returns False (and
        changes nothing) when the audit trail holds no such child: nothing of it can be live,
        and the OMS routes it again (or finishes what it had in flight).

        ``cum_qty`` / ``cum_value``: what the OMS has reported filled (units; sum of qty x price
        in ticks). ``ids``: the parent's venue_cl_ord_ids, oldest first (ids after
        ``order.venue_cl_ord_id`` are requests the OMS had in flight and are not aliased).
        ``acknowledged``: the client has heard New. ``pending``: ``"cancel"`` or ``"replace"``
        when the OMS has that request in flight.

        If the parent can be rebuilt exactly (no request in flight, every child not known
        finished is at such a venue, their leaves are exactly the parent's and the trail's
        fills are the OMS's) it continues with its children (adopted, as :meth:`restore_parent`),
        acknowledged only once a venue confirms a child. Otherwise it is settled first: every
        child the trail does not show finished is registered with its venue (``restore_order``,
        reconciled at logon), the live ones are cancelled, their real fills are counted (the
        difference to ``cum_qty`` / ``cum_value`` is reported as TRADE events, CumQty and AvgPx
        exact), and only then: a parent whose children never reached a venue ends (REJECTED if
        never acknowledged, else CANCELED, with the reason); one with a request in flight gets
        a STATUS (``reason="reconciled after reconnect"``) so the OMS sends the request again,
        answered as usual (a cancel ends it with its fills, a replace is done or refused); any
        other parent is acknowledged, gets that STATUS and its leaves are routed afresh."""
        if not isinstance(order, VenueOrder):
            raise TypeError(f"recover_parent takes a VenueOrder, got {type(order).__name__}")
        if pending not in ("", "cancel", "replace"):
            raise ValueError(f"pending must be '', 'cancel' or 'replace', got {pending!r}")
        if isinstance(cum_value, bool) or not isinstance(cum_value, int) or cum_value < 0:
            raise ValueError(f"cum_value must be an int >= 0 (ticks x units), got {cum_value!r}")
        ids = list(ids)
        if order.venue_cl_ord_id in ids:
            ids = ids[:ids.index(order.venue_cl_ord_id)]
        found = self._parent_from_trail(order, cum_qty, ids)
        if found is None:
            return False
        parent, rows, chain, children, seen_exec, values = found
        ended = self._trail_end(rows)
        final = ended or self._executes_once(order)
        outliving = self._outliving
        at_risk = [c for c in children if not c.done and c.venue.name in outliving]
        trail_cum = sum(c.cum for c in children)
        if final is None:
            if not any(c.venue.name in outliving for c in children):
                return False     # only in-process children: their books died with the process
            if not at_risk and trail_cum <= cum_qty:
                return False     # nothing can be live, no fill is unreported: routed again as new
        elif not children and ended is None:
            # An IOC / FOK / market parent none of whose children was ever written: no venue
            # received any of it, so routing it now is its first and only execution.
            return False
        # else: ended before the restart, or it may execute once and a child of it left: the OMS
        # must not route it again (resubmit), it is settled here and finished with its fills.
        if (not pending and ended is None and trail_cum == cum_qty and at_risk
                and self._adoptable(children, order.qty - cum_qty)):
            self._adopt(parent, rows, chain, children, seen_exec, values, cum_qty, acked=bool(acknowledged))
            if not parent.acked and any(c.acked for c in children):
                # A venue acknowledged a child before the kill, the client did not hear it.
                parent.acked = True
                self._outbox.push(self._parent_event(parent, _K.NEW))
            return True
        parent.cum = cum_qty
        parent.acked = bool(acknowledged) or cum_qty > 0
        parent.restored = True
        parent.ids = list(dict.fromkeys([rows[0]["parent_cl"], *chain]))
        parent.children = children
        parent.child_seq = max((c.seq for c in children), default=0)
        rec = parent.recovery = _Recovery(cum_qty, cum_value, pending, final, frozenset(
            r["child_id"] for r in rows if r["event"] == "child_cancel_sent"))
        for key in parent.ids:
            self._alias_parent(key, parent)
        self._by_pid[parent.id] = parent
        o = order
        asked = []
        for c in children:
            if c.done or c.venue.name not in outliving:
                # Finished per the trail, or at an in-process venue (its book died with the
                # process): what the trail says is all there is.
                rec.seen[c.id] = [c.cum, values.get(c.id, 0), c.acked]
                c.done = True
                c.leaves = 0
                continue
            # From what the trail knows: the venue's resend (a contiguous run of the reports
            # missed) and its reconciliation's catch-up (one TRADE priced so that the value is
            # the venue's AvgPx x CumQty) bring the rest.
            value = values.get(c.id, 0)
            rec.seen[c.id] = [c.cum, value, c.acked]
            for key in dict.fromkeys((c.id, c.cl)):
                self._alias_child(key, c)
            c.unknown = True
            c.venue.restore_order(self._child_order(o, c), cum_qty=c.cum, venue_order_id=c.venue_order_id,
                                  acked=c.acked, notional=value)
            asked.append(c.id)
        self._record(parent, "parent_restored", qty=order.qty, price=order.price,
                     detail={"cum": cum_qty, "mode": "settle", "pending": pending, "asked": asked,
                             "trail_cum": trail_cum, "final": list(final) if final else None})
        if self._started:
            # Taken back by a running router (the server calls this before start(), which
            # registers the parents then).
            self._settling[parent.id] = [parent, time.monotonic() + self.recovery_alert_s, self.recovery_alert_s]
        self._recovery_progress(parent)
        return True

    def _parent_from_trail(self, order: VenueOrder, cum_qty: int, ids: Iterable[str]):
        """The parent named by ``order`` / ``ids`` in the audit trail with its children, or None."""
        if not isinstance(order, VenueOrder):
            raise TypeError(f"restore_parent takes a VenueOrder, got {type(order).__name__}")
        if isinstance(cum_qty, bool) or not isinstance(cum_qty, int) or not 0 <= cum_qty < order.qty:
            raise ValueError(f"cum_qty must be an int from 0 to the order's qty - 1, got {cum_qty!r}")
        chain = list(dict.fromkeys([*ids, order.venue_cl_ord_id]))
        if any(cl in self._parents for cl in chain):
            raise ValueError(f"router {self.name} already has a parent {order.venue_cl_ord_id}")
        # Every id of the chain: the order may have been routed under several router parents
        # (a restart whose recover_parent left it to the OMS, which routed it again under a new
        # id): the children of all of them are the order's.
        found: dict[int, dict] = {}
        for cl in chain:
            for r in self._audit.query(cl):
                if r["router"] == self.name:
                    found[r["seq"]] = r
        if not found:
            return None
        groups: dict[str, list[dict]] = {}
        for r in sorted(found.values(), key=lambda r: r["seq"]):
            groups.setdefault(r["parent_id"], []).append(r)
        rows = []
        for pid, group in groups.items():
            if self._same_order(order, group):
                rows.extend(group)
            else:
                log.warning("router %s: trail rows of parent %s (under %s) are of another order than %s: ignored",
                            self.name, pid, group[0]["parent_cl"], order.venue_cl_ord_id)
        if not rows:
            return None
        rows.sort(key=lambda r: r["seq"])
        # The newest parent's id: new children are numbered after every child found, so their
        # ids stay unique across the parents merged here.
        newest = next((r for r in reversed(rows) if r["event"] == "parent_new"), rows[-1])
        parent = _Parent(newest["parent_id"], order)
        children, seen_exec, values = self._children_from_audit(parent, rows)
        return parent, rows, chain, children, seen_exec, values

    @staticmethod
    def _same_order(order: VenueOrder, rows: list[dict]) -> bool:
        """Whether the trail rows of one router parent can be of ``order`` (a ClOrdID used again
        for another order: same instrument and side required, as its ``parent_new`` row says)."""
        for r in rows:
            if r["event"] == "parent_new":
                d = r["detail"] or {}
                inst = d.get("instrument")
                side = d.get("side")
                return ((inst is None or inst == order.instrument.key)
                        and (side is None or side == int(order.side)))
        return True     # its parent_new row was lost: nothing to tell it by

    @staticmethod
    def _trail_end(rows: list[dict]) -> tuple[int, str] | None:
        """(reason code, text) when the trail shows the parent ended (or ending: its children
        being cancelled on the router's or a venue's initiative) after its last routing, else
        None. A ``parent_new`` after an end row is a later routing of the same order."""
        end = None
        for r in rows:
            event = r["event"]
            if event == "parent_new":
                end = None
            elif event in ("parent_canceled", "parent_rejected", "parent_ending"):
                d = r["detail"] or {}
                code = d.get("reason_code", int(Reason.UNKNOWN_ORDER) if event == "parent_rejected" else 0)
                text = d.get("reason") or event
                # Ended in an earlier run already: one prefix, not one more at each restart.
                if not text.startswith(_ENDED_BEFORE):
                    text = _ENDED_BEFORE + text
                end = (int(code) if isinstance(code, int) else 0, text)
        return end

    @staticmethod
    def _executes_once(order: VenueOrder) -> tuple[int, str] | None:
        """(reason code, text) for an order that must never be routed a second time (IOC, FOK,
        market: it executes when it arrives, once), else None."""
        if order.ord_type == OrdType.MARKET:
            return int(Reason.MARKET_REMAINDER), "market order: not routed again after a restart"
        if order.tif == TimeInForce.IOC:
            return int(Reason.IOC_REMAINDER), "IOC: not routed again after a restart"
        if order.tif == TimeInForce.FOK:
            return int(Reason.FOK_UNFILLABLE), "FOK: not routed again after a restart"
        return None

    def _adoptable(self, children: list[_Child], leaves: int) -> bool:
        """Whether the parent can continue with ``children`` as they are: every child not known
        finished is at a venue that outlives this process (a venue process, which kept it and
        reconciles it: ``restore_order`` with the known fills), and they hold exactly
        ``leaves``. A child at an in-process venue died with the process's books (and that
        venue's ``restore_order`` re-enters an order, it does not take one back)."""
        live = [c for c in children if not c.done]
        outliving = self._outliving
        return bool(live) and all(c.venue.name in outliving for c in live) \
            and sum(c.leaves for c in live) == leaves

    def _adopt(self, parent: _Parent, rows: list[dict], chain: list[str], children: list[_Child], seen_exec: list,
               values: dict[str, int], cum_qty: int, acked: bool) -> None:
        """Continue ``parent`` with its live children as the trail leaves them (restore_parent)."""
        order = parent.order
        live = [c for c in children if not c.done]
        parent.cum = cum_qty
        parent.acked = acked
        parent.restored = True
        parent.ids = list(dict.fromkeys([rows[0]["parent_cl"], *chain]))
        parent.children = children
        parent.child_seq = max(c.seq for c in children)
        for key in parent.ids:
            self._alias_parent(key, parent)
        self._by_pid[parent.id] = parent
        for key in seen_exec:
            self._seen_exec.add(key)
            self._seen_order.append(key)
        for c in live:
            for key in dict.fromkeys((c.id, c.cl)):
                self._alias_child(key, c)
            # With the value of its known fills, so that fills the venue reports beyond them
            # (reconciliation's catch-up) are priced to make AvgPx exact.
            c.venue.restore_order(self._child_order(order, c), cum_qty=c.cum, venue_order_id=c.venue_order_id,
                                  acked=c.acked, notional=values.get(c.id, 0))
        self._record(parent, "parent_restored", qty=order.qty, price=order.price,
                     detail={"cum": cum_qty, "live_children": [c.id for c in live]})

    @staticmethod
    def _child_order(o: VenueOrder, c: _Child) -> VenueOrder:
        """The VenueOrder child ``c`` of parent order ``o`` is at its venue under (its latest id)."""
        if c.mirror:
            return VenueOrder(c.cl, o.instrument, o.side, o.ord_type, o.tif, c.qty, c.price, o.stop_price,
                              o.display_qty, o.post_only, o.expire_time, o.owner, o.stp)
        return VenueOrder(c.cl, o.instrument, o.side, OrdType.LIMIT, TimeInForce.IOC, c.qty, c.price,
                          owner=o.owner, stp=o.stp)

    def _children_from_audit(self, parent: _Parent, rows: list[dict]) -> tuple[list[_Child], list, dict[str, int]]:
        """The parent's children as its audit rows leave them (sent, acknowledged, filled,
        replaced, ended), the (venue, exec id) of every fill seen, and each child's filled value
        (sum of qty x price, ticks)."""
        children: dict[str, _Child] = {}
        replaces: dict[str, tuple[int, int]] = {}
        values: dict[str, int] = {}
        seen_exec = []
        for r in rows:
            event, cid, d = r["event"], r["child_id"], r["detail"] or {}
            if event == "child_sent":
                venue = self._by_name.get(r["venue"])
                if venue is not None:
                    children[cid] = _Child(cid, parent, venue, int(cid.rsplit(".", 1)[1]), r["qty"], r["price"],
                                           bool(d.get("mirror")))
                continue
            c = children.get(cid)
            if c is None:
                continue
            if d.get("venue_order_id"):
                c.venue_order_id = d["venue_order_id"]
            if event == "child_new":
                c.acked = True
            elif event == "child_trade":
                c.cum += r["qty"]
                values[cid] = values.get(cid, 0) + r["qty"] * r["price"]
                c.acked = True
                if d.get("exec_id"):
                    seen_exec.append((r["venue"], d["exec_id"]))
            elif event == "reconcile_fill":
                c.cum += r["qty"]
                values[cid] = values.get(cid, 0) + r["qty"] * r["price"]
                c.acked = True     # it filled: the venue had it
            elif event == "child_replace_sent":
                replaces[d.get("request", "")] = (r["qty"], r["price"])
            elif event == "child_replaced":
                new = d.get("cl", "")
                if new in replaces:
                    c.qty, c.price = max(replaces[new][0], c.cum), replaces[new][1]
                c.cl = new or c.cl
            elif event in ("child_canceled", "child_rejected"):
                c.done = True
            elif event == "child_status" and d.get("ord_status") in _DONE_STATUS:
                c.done = True
            elif event == "child_reconciled" and d.get("done"):
                c.done = True
        out = list(children.values())
        for c in out:
            c.leaves = 0 if c.done else max(c.qty - c.cum, 0)
            c.done = c.done or c.leaves == 0
        return out, seen_exec, values

    # ============================================================================================
    # Settling a parent taken back after a restart (recover_parent)
    # ============================================================================================
    def _on_recovery_event(self, ev: VenueEvent, child: _Child) -> None:
        """An event about a child of a parent being settled: count what the venue really did
        with it, cancel it once the venue says it is live, and finish settling when every child
        is done."""
        parent = child.parent
        rec = parent.recovery
        kind = ev.kind
        if kind != _K.TRADE:
            self._record(parent, _EVENT_ROW[kind], venue=ev.venue, child=child.id, qty=ev.leaves_qty,
                         price=ev.last_px, detail=ev)
        if ev.venue_order_id:
            child.venue_order_id = ev.venue_order_id
        seen = rec.seen[child.id]
        if kind == _K.TRADE:
            seen[2] = True
            # A fill already counted (in the trail, or by the catch-up before a late resend of
            # it: its CumQty is not above what is counted) is not counted twice.
            if not ev.cum_qty:
                counted = ev.last_qty
            else:
                # Normally exactly last_qty more; more than that only if reports before it are
                # missing from the trail too: those units are valued at this fill's price.
                counted = max(ev.cum_qty - seen[0], 0)
            # The trail gets a row for what was counted, nothing else: a later restart adds up
            # these rows (_children_from_audit), so a resent fill must not be there twice.
            self._record_counted(child, ev, counted, ev.last_px)
            seen[0] += counted
            seen[1] += counted * ev.last_px
            if ev.ord_status in _DONE_STATUS or (ev.cum_qty and ev.leaves_qty <= 0):
                self._child_done(child, 0, "")
        elif kind in (_K.NEW, _K.STOP_TRIGGERED):
            seen[2] = True
        elif kind == _K.REPLACED:
            # A replace of the previous run answered now (resend): the child goes on under the new id.
            seen[2] = True
            child.cl = ev.venue_cl_ord_id
            self._alias_child(ev.venue_cl_ord_id, child)
            if ev.ord_status in _DONE_STATUS or ev.leaves_qty <= 0:
                self._child_done(child, 0, "")
        elif kind == _K.REJECTED:
            self._recovery_lost(child, seen)
        elif kind == _K.CANCELED:
            if ev.reason_code == int(Reason.UNKNOWN_ORDER):
                self._recovery_lost(child, seen)
            else:
                seen[2] = True
                if ev.venue_cl_ord_id not in child.requests:
                    self._venue_ended(child, ev.reason_code, ev.reason, ev.venue)
                self._child_done(child, ev.reason_code, ev.reason)
        elif kind in (_K.CANCEL_REJECTED, _K.REPLACE_REJECTED):
            if rec.out.get(child.id) == ev.venue_cl_ord_id:
                del rec.out[child.id]
            if ev.reason_code != int(VenueReason.VENUE_DOWN) and not child.done:
                # Too late (it filled meanwhile: its fills come or came) or not known under
                # that id: the venue's status of the child decides.
                child.reconciling = True
                child.venue.order_status(child.cl)
            # VENUE_DOWN: the venue reconciles the child again at its next logon (a STATUS).
        elif kind == _K.STATUS:
            if not child.done and (ev.reason == _RECONCILED or child.reconciling):
                child.reconciling = False
                child.unknown = False
                if ev.reason_code == int(Reason.UNKNOWN_ORDER) and ev.ord_status in (_REJECTED, _CANCELLED):
                    self._recovery_lost(child, seen)
                else:
                    seen[2] = True
                    if ev.cum_qty > seen[0]:
                        # Filled beyond what its events said (a venue whose status carries no
                        # AvgPx): the rest at the child's limit, the best the venue can have given.
                        self._record_counted(child, ev, ev.cum_qty - seen[0], child.price)
                        seen[1] += (ev.cum_qty - seen[0]) * child.price
                        seen[0] = ev.cum_qty
                    if ev.ord_status in _DONE_STATUS:
                        if ev.ord_status == _CANCELLED:
                            self._venue_ended(child, ev.reason_code,
                                              "canceled at the venue (found by reconciliation)", ev.venue)
                        self._child_done(child, 0, "found finished by reconciliation")
                    elif child.id not in rec.out:
                        # Live at its venue: cancelled (its fills up to the cancel still count).
                        if len(child.requests) < 4:
                            self._cancel_recovering(child)
                        else:
                            self._retry_later(child)
        self._recovery_progress(parent)

    def _record_counted(self, child: _Child, ev: VenueEvent, qty: int, px: int) -> None:
        """The trail's row for ``qty`` units of ``child`` counted while settling (at ``px``):
        a ``child_trade`` when the event is a fill counted as reported, a ``reconcile_fill``
        when only part of it counts or the units come from a CumQty beyond the reports; no row
        when nothing counts (a fill already counted, resent)."""
        if qty <= 0:
            return
        if ev.kind == _K.TRADE and qty == ev.last_qty:
            self._record(child.parent, "child_trade", venue=ev.venue, child=child.id, qty=qty, price=px, detail=ev)
        else:
            self._record(child.parent, "reconcile_fill", venue=ev.venue, child=child.id, qty=qty, price=px,
                         detail={"exec_id": ev.exec_id, "kind": ev.kind.name, "last_qty": ev.last_qty,
                                 "cum_qty": ev.cum_qty, "why": "counted while settling after a restart"})

    def _defer(self, parent: _Parent, kind: str, request: str) -> None:
        """A cancel or replace for a parent still being settled: not acted on now (its children
        of the previous run are being cancelled anyway). The parent is then treated as having
        that request in flight: once settled it is not routed again, and its STATUS ("reconciled
        after reconnect") is when the OMS, which holds the order until then, sends the request
        again, answered as usual."""
        rec = parent.recovery
        if rec.pending != "cancel":
            rec.pending = kind
        self._record(parent, f"parent_{kind}_requested", detail={"request": request,
                                                                 "deferred": "until the parent is settled"})

    def _venue_ended(self, child: _Child, code: int, text: str, venue: str) -> None:
        """A child being settled was found cancelled: when the venue ended it on its own (not a
        cancel of ours, from this run or the previous ones, and not the unfilled rest of a
        taking IOC/FOK/market child) the parent ends with that reason once settled, as on the
        normal path (:meth:`_on_child_event`): its leaves are not routed again (an order its
        venue expired or cancelled for self-trade prevention back in the market). Not while the
        OMS had a cancel / replace in flight at the restart (``restored_pending``) and the cancel
        rows of this child's venue are not written ahead (an audit log without
        ``record_durable``): the router may then have cancelled the child for it before the kill,
        its ``child_cancel_sent`` row lost (queued, not committed), so the cancel may well be
        ours; the parent then ends in the STATUS on which the OMS sends its request again, which
        decides the parent (a venue's own end in that window is taken for the answer to the
        request: a pending replace routes the new leaves again). With the rows written ahead,
        ``asked_before`` is the whole truth; a request deferred during the settle
        (:meth:`_defer`) has no cancel of the previous run behind it."""
        rec = child.parent.recovery
        if (rec is None or rec.final is not None or not child.mirror or child.id in rec.out
                or child.id in rec.asked_before or code in _REMAINDER_CODES
                or rec.restored_pending and not self._cancel_rows_written_ahead(child)):
            return
        rec.final = (code, f"{venue}: {text}" if text else venue)

    def _cancel_rows_written_ahead(self, child: _Child) -> bool:
        """Whether a ``child_cancel_sent`` row of ``child`` survives a kill
        (:meth:`_record_cancel_sent`: a venue that outlives this process and an audit log
        with ``record_durable``)."""
        return (child.venue.name in self._outliving
                and getattr(self._audit, "record_durable", None) is not None)

    def _cancel_recovering(self, child: _Child) -> None:
        rid = f"{child.id}.c{len(child.requests) + 1}"
        child.requests[rid] = ("cancel",)
        child.parent.recovery.out[child.id] = rid
        self._alias_child(rid, child)
        self._record_cancel_sent(child, {"request": rid, "why": "settling a parent taken back after a restart"})
        child.venue.cancel_order(child.cl, rid)

    def _report_overdue(self, now: float) -> None:
        """Alert about parents settling for longer than ``recovery_alert_s`` (then twice as long
        each time): which children are not settled, at which venues, up or down."""
        for entry in list(self._settling.values()):
            parent, due, waited = entry
            if now < due or parent.recovery is None:
                continue
            open_children = [c for c in parent.children if not c.done]
            what = [{"child": c.id, "venue": c.venue.name, "venue_up": c.venue.is_up,
                     "cancel_out": c.id in parent.recovery.out} for c in open_children]
            log.error("router %s: parent %s (%s) still settling after %.3g s: children not settled %s; nothing is "
                      "routed and client requests wait until they are", self.name, parent.id, parent.cl, waited,
                      [(w["child"], w["venue"], "up" if w["venue_up"] else "down") for w in what])
            self._record(parent, "parent_settle_overdue", detail={"waited_s": waited, "children": what,
                                                                  "pending": parent.recovery.pending})
            entry[1], entry[2] = now + waited, min(waited * 2, 3600.0)

    def _retry_later(self, child: _Child) -> None:
        """A child still live at its venue after four refused cancels: the parent stays settling
        (never routed while a child of it is live: that would be two orders for the same
        leaves), its client requests stay deferred, and the cancel is sent again later, the
        wait doubling up to 60 s; an operator is alerted (log error) at each retry."""
        rec = child.parent.recovery
        if child.id in rec.retry:
            return
        n = len(child.requests)
        # The exponent is capped before the power: 2.0 ** 1024 overflows a float (OverflowError
        # inside the venue's event delivery, after ~17 h of refused cancels at the 60 s cap);
        # 2 ** 30 times any sane retry base is far past the cap.
        delay = min(self.recovery_retry_s * 2 ** min(n - 4, 30), 60.0)
        log.error("router %s: child %s of %s is still live at %s after %d cancels: cancelled again in %.3g s; "
                  "its parent is not routed again while it is live", self.name, child.id, child.parent.id,
                  child.venue.name, n, delay)
        self._record(child.parent, "child_cancel_retry", venue=child.venue.name, child=child.id,
                     detail={"cancels": n, "retry_in_s": delay})
        rec.retry[child.id] = self._loop.call_later(delay, self._retry_cancel, child)

    def _retry_cancel(self, child: _Child) -> None:
        rec = child.parent.recovery
        if rec is None:
            return
        rec.retry.pop(child.id, None)
        if not self._started or child.done or child.id in rec.out:
            return
        self._cancel_recovering(child)

    def _recovery_lost(self, child: _Child, seen: list) -> None:
        """The venue does not know the child (never received it, or lost it in a venue restart):
        what the trail says it filled (where the count started) is what it filled."""
        seen[2] = seen[2] or child.acked or seen[0] > 0
        self._child_done(child, int(Reason.UNKNOWN_ORDER), "not known at its venue after the restart")

    def _recovery_progress(self, parent: _Parent) -> None:
        if parent.recovery is None or not self._started or parent.has_live():
            return
        self._end_recovery(parent)

    def _end_recovery(self, parent: _Parent) -> None:
        """Every child of the previous run is done: report the fills the client has not heard of,
        then decide what is left (see :meth:`recover_parent`)."""
        rec, parent.recovery = parent.recovery, None
        self._settling.pop(parent.id, None)
        cum = sum(s[0] for s in rec.seen.values())
        value = sum(s[1] for s in rec.seen.values())
        reached = cum > 0 or any(s[2] for s in rec.seen.values())
        self._record(parent, "parent_settled", qty=cum, detail={
            "venue_cum": cum, "venue_value": value, "oms_cum": rec.oms_cum, "oms_value": rec.oms_value,
            "reached": reached, "pending": rec.pending})
        diff = cum - rec.oms_cum
        if diff > 0:
            # Fills the client never heard of: as few TRADEs as make CumQty and AvgPx exact
            # (value / qty rounded down, and one tick more for the remainder's units).
            extra = value - rec.oms_value
            px, rest = divmod(extra, diff)
            if px < 1:
                log.error("router %s: parent %s: fills found after the restart (%d for %d ticks) do not "
                          "match what the OMS reported (%d for %d): priced at the children's limit",
                          self.name, parent.id, cum, value, rec.oms_cum, rec.oms_value)
                px, rest = max(1, parent.price), 0
            venues = {c.venue.name for c in parent.children if rec.seen[c.id][0]}
            mkt = venues.pop() if len(venues) == 1 else ""
            for qty, price in ((diff - rest, px), (rest, px + 1)):
                if qty > 0 and not parent.done:
                    self._parent_fill(parent, qty, price, f"{parent.id}-SETTLED-{parent.cum + qty}", mkt)
        elif diff < 0:
            log.warning("router %s: parent %s: the venues report %d filled, the OMS %d: the OMS's count stands",
                        self.name, parent.id, cum, rec.oms_cum)
        if parent.done:
            return self._maybe_retire(parent)
        if not reached and (not rec.pending or rec.final is not None):
            # It never had a live child: no venue ever received what it routed.
            return self._finish_restored(parent)
        if rec.final is not None:
            # Ended before the restart, or executes once: finished with its fills, never routed
            # again (a second execution of the client's IOC minutes later would be a new order).
            if not parent.acked:
                parent.acked = True
                self._outbox.push(self._parent_event(parent, _K.NEW))
            self._finish(parent, *rec.final)
            return self._maybe_retire(parent)
        if not parent.acked:
            parent.acked = True
            self._outbox.push(self._parent_event(parent, _K.NEW))
        status = self._parent_event(parent, _K.STATUS)
        status.reason = _RECONCILED
        self._outbox.push(status)
        if rec.pending:
            return     # the OMS sends its request again (it holds the order until this STATUS)
        self._route_when_up(parent, time.monotonic() + self.recovery_venue_wait_s)

    def _route_when_up(self, parent: _Parent, deadline: float, grace: float | None = None) -> None:
        """Route the leaves of a settled parent once a venue that may take them is up, or at
        ``deadline`` (monotonic seconds) whatever the venues (then ended "venue down" as any
        order). At a restart the FIX venues are still logging on when the routers settle: the
        client's order must not be cancelled for that. Once one venue is up, the decision waits
        (at most ``recovery_md_wait_s``, ``grace`` the monotonic time that ends it) for every
        venue listing the instrument to be up with its first market data snapshot: a FIX
        venue just logged on has not sent its book yet, and the policy would read it empty
        and ignore the venues still logging on."""
        if parent.done or parent.pending is not None or parent.has_live():
            self._waiting.pop(parent.id, None)
            return self._maybe_retire(parent)    # a client request took it over meanwhile
        inst = parent.order.instrument
        listing = [v for v in self.venues if v.lists(inst)]
        up = [v for v in listing if v.is_up]
        now = time.monotonic()
        if now < deadline:
            if not up:
                if parent.id not in self._waiting:
                    self._record(parent, "parent_waiting_for_venue",
                                 detail={"wait_s": round(deadline - now, 3), "venues": [v.name for v in listing]})
                self._waiting[parent.id] = (parent, deadline, None)
                return
            if len(up) < len(listing) or not all(_has_market_data(v, inst) for v in up):
                if grace is None:
                    grace = now + self.recovery_md_wait_s
                if now < grace:
                    self._waiting[parent.id] = (parent, deadline, grace)
                    return
        self._waiting.pop(parent.id, None)
        leaves = parent.qty - parent.cum
        if leaves > 0:
            self._route(parent, leaves, up or None)
        self._maybe_retire(parent)

    def _release_waiting(self) -> None:
        """Settled parents waiting for a venue (:meth:`_route_when_up`): routed now if one is up
        or their wait is over."""
        for parent, deadline, grace in list(self._waiting.values()):
            self._route_when_up(parent, deadline, grace)

    def _finish_restored(self, parent: _Parent) -> None:
        text = ("the server restarted before the routed order reached a venue: "
                "no venue received it, nothing was filled")
        self._finish(parent, int(Reason.UNKNOWN_ORDER), text)
        self._maybe_retire(parent)

    def _parent_fill(self, parent: _Parent, qty: int, px: int, exec_id: str, last_mkt: str) -> None:
        """A fill of the parent not tied to one child event (fills found when settling)."""
        if not parent.acked:
            parent.acked = True
            self._outbox.push(self._parent_event(parent, _K.NEW))
        qty = min(qty, parent.qty - parent.cum)
        if qty <= 0:
            return
        parent.cum += qty
        ev = self._parent_event(parent, _K.TRADE)
        ev.last_qty, ev.last_px, ev.exec_id, ev.last_mkt = qty, px, f"{self.name}:{exec_id}", last_mkt
        ev.reason = "fill found after a restart"
        if parent.cum >= parent.qty:
            parent.done = True
            ev.leaves_qty = 0
        self._record(parent, "parent_fill_settled", qty=qty, price=px, detail={"exec_id": exec_id})
        self._outbox.push(ev)

    # ============================================================================================
    # Routing
    # ============================================================================================
    def _quotes(self, inst: Instrument, up: list[Venue]) -> list[VenueQuote]:
        """Each up venue's quote (its depth, ``depth_levels`` a side). A venue with a
        ``book_version(instrument)`` counter (InProcessVenue, FixVenue) is read again only when
        its book changed since the last read: its VenueQuote (immutable) is kept per listing
        key with the counter it was read at. Others are read every time."""
        out = []
        key = inst.key
        versions = self._book_versions
        for v in up:
            name = v.name
            version_of = versions[name]
            if version_of is not None:
                version = version_of(inst)
                cache = self._quote_cache[name]
                hit = cache.get(key)
                if hit is not None and hit[0] == version:
                    out.append(hit[1])
                    continue
                bids, asks = v.depth(inst, self.depth_levels)
                quote = VenueQuote(name, self._pref[name], tuple(bids), tuple(asks))
                cache[key] = (version, quote)
            else:
                bids, asks = v.depth(inst, self.depth_levels)
                quote = VenueQuote(name, self._pref[name], tuple(bids), tuple(asks))
            out.append(quote)
        return out

    def _route(self, parent: _Parent, qty: int, up: list[Venue] | None = None) -> None:
        """Decide and send children for ``qty`` of the parent (at entry, or added by a replace up)."""
        order = parent.order
        inst = order.instrument
        if up is None:
            up = [v for v in self.venues if v.lists(inst) and v.is_up]
        if not up:
            return self._end_parent(parent, int(VenueReason.VENUE_DOWN),
                                    f"venue down: no venue of {self.name} is up for {inst.key}")
        quotes = self._quotes(inst, up) if self.policy is not Policy.DIRECT else []
        if self.policy is Policy.DIRECT:
            plan = plan_direct(up[0].name, qty, parent.price)
        elif self.policy is Policy.BEST_PRICE:
            plan = plan_best_price(order.side, qty, parent.price, quotes)
        else:
            sweepable = (order.ord_type in (OrdType.LIMIT, OrdType.MARKET) and not order.post_only)
            plan = plan_sweep(order.side, order.ord_type, order.tif, qty, parent.price, quotes, sweepable=sweepable)
        if not plan.children and not plan.rest and not plan.killed:
            # Nothing displayed and the order may not rest: send it whole to the preferred venue
            # (market data can lag, liquidity can be hidden); it ends there as the venue decides.
            plan.children.append(ChildPlan(up[0].name, qty, parent.price, "nothing displayed: whole order to "
                                           f"preferred venue {up[0].name}", mirror=True))
        self._record(parent, "decision", qty=qty, price=parent.price,
                     detail=_Decision(self.policy, quotes, [v.name for v in up], plan))
        if plan.killed:
            parent.done = True
            if not parent.acked:
                parent.acked = True
                self._outbox.push(self._parent_event(parent, _K.NEW))
            return self._finish(parent, int(Reason.FOK_UNFILLABLE), plan.killed)
        parent.may_rest = plan.rest and parent.pending is None
        if plan.children and not plan.children[0].mirror:
            parent.wave = True
        if not plan.children:
            return self._rest(parent)
        by_name = self._by_name
        self._send_children(parent, [(by_name[cp.venue], cp) for cp in plan.children])

    def _rest(self, parent: _Parent) -> None:
        """Send what is left of the parent as one resting child (the rest venue, else the first up)."""
        qty = parent.qty - parent.cum
        for c in parent.children:
            if not c.done:
                qty -= c.leaves
        if qty <= 0:
            return
        inst = parent.order.instrument
        venue = next((v for v in self._rest_candidates if v.lists(inst) and v.is_up), None)
        if venue is None:
            return self._end_parent(parent, int(VenueReason.VENUE_DOWN),
                                    f"venue down: no venue of {self.name} is up to rest the remainder {qty}")
        why = "remainder rests at " + venue.name + ("" if venue.name == self.rest_venue
                                                   else f" ({self.rest_venue} down)")
        parent.may_rest = False
        self._send_children(parent, [(venue, ChildPlan(venue.name, qty, parent.price, why, mirror=True))])

    def _send_children(self, parent: _Parent, plans: list[tuple[Venue, ChildPlan]]) -> None:
        """Send the children of one decision; write-ahead when one of them leaves for a venue
        that outlives this process (:meth:`_send_children_durably`)."""
        outliving = self._outliving
        if outliving:
            for venue, _ in plans:
                if venue.name in outliving:
                    return self._send_children_durably(parent, plans)
        for venue, cp in plans:
            self._send_child(parent, venue, cp)

    def _send_children_durably(self, parent: _Parent, plans: list[tuple[Venue, ChildPlan]]) -> None:
        """Write-ahead for children that leave for a venue process (FixVenue): the venue keeps
        them when this process dies, so their ``child_sent`` rows (which child, where, how much,
        at what price) are committed in ONE write (``AuditLog.record_durable``) before any of
        them is sent. A kill after the send then leaves nothing at the venue that the trail does
        not hold: the restart takes every such child back (``restore_parent``), and those the
        kill stopped before they left are found unknown when the venue is asked at logon. If the
        trail cannot be written, nothing is sent: the children end as rejected."""
        made = []
        rows = []
        now = self._clock.now_ns()
        for venue, cp in plans:
            child, vo = self._make_child(parent, venue, cp)
            made.append((child, vo))
            rows.append((now, self.name, parent.id, parent.ids[0], "child_sent", venue.name, child.id, int(cp.qty),
                         int(vo.price), cp))
        try:
            write = getattr(self._audit, "record_durable", None)
            if write is not None:
                write(rows)
            else:   # an AuditLog from before record_durable: rows as usual, no write-ahead
                for row in rows:
                    self._audit.record(row)
        except Exception as exc:
            log.exception("router %s: audit trail not written: children of %s not sent", self.name, parent.id)
            text = f"not sent: the routing audit trail could not be written ({exc})"
            for child, _ in made:
                self._child_done(child, int(VenueReason.VENUE_DOWN), text)
                parent.rejects.append(f"{child.venue.name}: {text}")
            return self._progress(parent)
        self.children_sent += len(made)
        failed = False
        for child, vo in made:
            try:
                child.venue.new_order(vo)
            except Exception as exc:
                # One send failing must not keep the later children from leaving, nor leave this
                # one live in the parent with nothing at a venue (the parent would wait for it
                # forever): it ends as a child refused by a venue that is down does.
                log.exception("router %s: child %s of %s could not be sent to %s", self.name, child.id,
                              parent.id, child.venue.name)
                text = f"not sent: {child.venue.name} refused the order ({exc})"
                self._record(parent, "child_rejected", venue=child.venue.name, child=child.id,
                             detail={"reason": text, "reason_code": int(VenueReason.VENUE_DOWN)})
                self._child_done(child, int(VenueReason.VENUE_DOWN), text)
                parent.rejects.append(f"{child.venue.name}: {text}")
                failed = True
        if failed:
            self._progress(parent)

    def _make_child(self, parent: _Parent, venue: Venue, cp: ChildPlan) -> tuple[_Child, VenueOrder]:
        """A new child of ``parent`` for ``cp`` at ``venue``, registered, and its VenueOrder."""
        parent.child_seq += 1
        cid = f"{parent.id}.{parent.child_seq}"
        o = parent.order
        if cp.mirror:
            vo = VenueOrder(cid, o.instrument, o.side, o.ord_type, o.tif, cp.qty, parent.price, o.stop_price,
                            o.display_qty, o.post_only, o.expire_time, o.owner, o.stp)
        else:
            vo = VenueOrder(cid, o.instrument, o.side, OrdType.LIMIT, cp.tif, cp.qty, cp.price, owner=o.owner, stp=o.stp)
        child = _Child(cid, parent, venue, parent.child_seq, cp.qty, vo.price, cp.mirror)
        parent.children.append(child)
        self._alias_child(cid, child)
        return child, vo

    def _send_child(self, parent: _Parent, venue: Venue, cp: ChildPlan) -> None:
        child, vo = self._make_child(parent, venue, cp)
        cid = child.id
        self.children_sent += 1
        self._record(parent, "child_sent", venue=venue.name, child=cid, qty=cp.qty, price=vo.price, detail=cp)
        venue.new_order(vo)

    def _cancel_child(self, child: _Child, pend: _Pending | None) -> None:
        rid = f"{child.id}.c{len(child.requests) + 1}"
        child.requests[rid] = ("cancel",)
        self._alias_child(rid, child)
        if pend is not None:
            pend.waiting.add(rid)
        self._record_cancel_sent(child, {"request": rid})
        child.venue.cancel_order(child.cl, rid)

    def _replace_child(self, child: _Child, pend: _Pending | None, qty: int, price: int) -> None:
        rid = f"{child.id}.r{len(child.requests) + 1}"
        child.requests[rid] = ("replace", qty, price)
        self._alias_child(rid, child)
        if pend is not None:
            pend.waiting.add(rid)
        self._record(child.parent, "child_replace_sent", venue=child.venue.name, child=child.id, qty=qty, price=price,
                     detail={"request": rid})
        child.venue.replace_order(child.cl, rid, qty, price)

    # ============================================================================================
    # Child events
    # ============================================================================================
    def _child_of(self, ev: VenueEvent) -> _Child | None:
        """The child ``ev`` is about (by its id, else its orig id), when it is this router's child
        at the venue the event comes from; else None."""
        c = self._children.get(ev.venue_cl_ord_id)
        if c is None and ev.orig_venue_cl_ord_id:
            c = self._children.get(ev.orig_venue_cl_ord_id)
        return c if c is not None and c.venue.name == ev.venue else None

    def _on_child_event(self, ev: VenueEvent, child: _Child | None = None) -> None:
        if child is None:
            child = self._children.get(ev.venue_cl_ord_id)
            if child is None:
                child = self._children[ev.orig_venue_cl_ord_id]
        parent = child.parent
        if parent.recovery is not None:
            return self._on_recovery_event(ev, child)
        kind = ev.kind
        if kind == _K.TRADE:
            key = (ev.venue, ev.exec_id)
            if ev.exec_id and key in self._seen_exec:
                self.duplicate_execs_dropped += 1
                return
            if ev.exec_id:
                self._seen_exec.add(key)
                self._seen_order.append(key)
                if len(self._seen_order) > self._max_seen:
                    self._seen_exec.discard(self._seen_order.popleft())
        self._record(parent, _EVENT_ROW[kind], venue=ev.venue, child=child.id,
                     qty=ev.last_qty if kind == _K.TRADE else ev.leaves_qty, price=ev.last_px, detail=ev)
        if ev.venue_order_id:
            child.venue_order_id = ev.venue_order_id
        if kind == _K.NEW:
            child.acked = True
            if not parent.acked and not parent.done:
                parent.acked = True
                self._outbox.push(self._parent_event(parent, _K.NEW))
        elif kind == _K.TRADE:
            self._child_fill(child, ev.last_qty, ev.last_px, ev.exec_id, ev.leaves_qty)
        elif kind == _K.REJECTED:
            reason = ev.reason
            if parent.restored and ev.reason_code == int(Reason.UNKNOWN_ORDER):
                # Written ahead, then the process died before it left: the venue never had it.
                reason = "never received it: the server restarted before the routed order left"
            self._child_done(child, ev.reason_code, reason)
            parent.rejects.append(f"{ev.venue}: {reason}")
        elif kind == _K.CANCELED:
            requested = ev.venue_cl_ord_id in child.requests
            self._answered(child, ev.venue_cl_ord_id)
            self._child_done(child, ev.reason_code, ev.reason)
            if not requested and child.mirror and parent.ending is None \
                    and not parent.done and ev.reason_code not in _REMAINDER_CODES:
                # The venue ended a resting child on its own (end of day, expiry, self-trade
                # prevention, lost in a venue restart): the parent ends with the same reason.
                self._end_parent(parent, ev.reason_code, f"{ev.venue}: {ev.reason}" if ev.reason else ev.venue)
        elif kind == _K.REPLACED:
            req = child.requests.get(ev.venue_cl_ord_id)
            if req is not None and req[0] == "replace":
                child.qty, child.price = max(req[1], ev.cum_qty), req[2]
            child.cl = ev.venue_cl_ord_id
            child.cum = max(child.cum, ev.cum_qty)
            child.leaves = ev.leaves_qty
            self._answered(child, ev.venue_cl_ord_id)
            if ev.leaves_qty <= 0 or ev.ord_status in _DONE_STATUS:
                self._child_done(child, 0, "")
        elif kind in (_K.CANCEL_REJECTED, _K.REPLACE_REJECTED):
            req = child.requests.get(ev.venue_cl_ord_id)
            self._answered(child, ev.venue_cl_ord_id)
            if ev.reason_code == int(VenueReason.VENUE_DOWN) and not child.done:
                # Unreachable: the request is made again once the venue is back and reconciled.
                child.unknown = True
                child.want = req
                if ev.venue not in self._listening:
                    self._up_seen[ev.venue] = False   # so that the watch sees it come back and reconciles
            elif ev.reason_code not in (int(Reason.TOO_LATE), int(Reason.UNKNOWN_ORDER)) and parent.pending:
                parent.pending.refused.append(f"{ev.venue} refused the "
                                              f"{'cancel' if kind == _K.CANCEL_REJECTED else 'replace'} of child "
                                              f"{child.id}: {ev.reason}")
        elif kind == _K.STATUS:
            self._child_status(child, ev)
        elif kind == _K.STOP_TRIGGERED:
            if not parent.done:
                self._outbox.push(self._parent_event(parent, _K.STOP_TRIGGERED))
        self._progress(parent)

    def _child_fill(self, child: _Child, qty: int, px: int, exec_id: str, leaves: int | None) -> None:
        parent = child.parent
        child.cum += qty
        child.leaves = max(child.qty - child.cum, 0) if leaves is None else leaves
        if child.leaves <= 0:
            child.done = True
        if parent.done or qty <= 0:
            log.error("router %s: fill of %s on child %s of a finished parent ignored", self.name, qty, child.id)
            return
        if not parent.acked:
            parent.acked = True
            self._outbox.push(self._parent_event(parent, _K.NEW))
        qty = min(qty, parent.qty - parent.cum)
        parent.cum += qty
        ev = self._parent_event(parent, _K.TRADE)
        ev.last_qty, ev.last_px, ev.exec_id = qty, px, f"{child.venue.name}:{exec_id}"
        ev.last_mkt = child.venue.name   # the client's LastMkt (30): where it filled, not the router
        if parent.cum >= parent.qty:
            parent.done = True
            ev.leaves_qty = 0
        self._outbox.push(ev)

    def _child_done(self, child: _Child, code: int, text: str) -> None:
        child.done = True
        child.leaves = 0
        child.unknown = False
        child.want = None
        child.reason_code, child.reason = code, text

    def _answered(self, child: _Child, rid: str) -> None:
        pend = child.parent.pending
        if pend is not None:
            pend.waiting.discard(rid)

    def _child_status(self, child: _Child, ev: VenueEvent) -> None:
        """Reconciliation answers: FixVenue's own (reason RECONCILED, after its corrective events)
        or the answer to our order_status for an in-process venue."""
        if ev.reason == _RECONCILED:
            child.unknown = False
            parent = child.parent
            if ev.reason_code != int(Reason.UNKNOWN_ORDER) and not parent.acked and not parent.done:
                # A parent taken back before any venue acknowledged it (restore after a kill):
                # the venue has its child, so the client hears New now, not before.
                child.acked = parent.acked = True
                self._outbox.push(self._parent_event(parent, _K.NEW))
            if ev.ord_status in _DONE_STATUS and not child.done:
                self._child_done(child, ev.reason_code, ev.reason)
        elif child.reconciling:
            child.reconciling = False
            child.unknown = False
            if ev.reason_code == int(Reason.UNKNOWN_ORDER) and ev.ord_status == _REJECTED:
                if not child.done:
                    self._child_done(child, int(Reason.UNKNOWN_ORDER),
                                     f"order unknown at {ev.venue} after reconnect: it is no longer live")
            else:
                if ev.cum_qty > child.cum and not child.done:
                    # Fills the venue made while we could not hear it (events dropped): the
                    # missing quantity at the child's limit price, the best the venue can have given.
                    self._record(child.parent, "reconcile_fill", venue=ev.venue, child=child.id,
                                 qty=ev.cum_qty - child.cum, price=child.price,
                                 detail={"venue_cum": ev.cum_qty, "known_cum": child.cum,
                                         "note": "price of missed fills taken as the child's limit"})
                    self._child_fill(child, ev.cum_qty - child.cum, child.price,
                                     f"{ev.venue_order_id or child.id}-RECON-{ev.cum_qty}", ev.leaves_qty)
                if ev.ord_status in _DONE_STATUS and not child.done:
                    self._child_done(child, 0, "found finished by reconciliation")
        else:
            return
        self._record(child.parent, "child_reconciled", venue=ev.venue, child=child.id,
                     detail={"cum": child.cum, "done": child.done})
        if not child.done and child.want is not None:
            want, child.want = child.want, None
            pend = child.parent.pending
            if want[0] == "cancel":
                self._cancel_child(child, pend)
            else:
                self._replace_child(child, pend, want[1], want[2])

    # ============================================================================================
    # Venue up / down
    # ============================================================================================
    def _on_venue_state(self, name: str, up: bool, reason: str) -> None:
        if name not in self._by_name:
            return
        self._up_seen[name] = up
        self._venue_changed(self._by_name[name], up, reason)
        if up and self._waiting and self._started:
            self._release_waiting()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.watch_s)
            for v in self.venues:
                if v.name in self._listening:
                    continue
                up = v.is_up
                if up != self._up_seen.get(v.name, up):
                    self._up_seen[v.name] = up
                    try:
                        self._venue_changed(v, up, "up" if up else "down")
                    except Exception:
                        log.exception("router %s: handling venue %s %s failed", self.name, v.name,
                                      "up" if up else "down")
                self._up_seen[v.name] = up
            if self._waiting:
                try:
                    self._release_waiting()
                except Exception:
                    log.exception("router %s: routing parents that waited for a venue failed", self.name)
            if self._settling:
                self._report_overdue(time.monotonic())

    def _venue_changed(self, venue: Venue, up: bool, reason: str) -> None:
        touched = {}
        for child in list(self._children.values()):
            if child.venue is venue and not child.done and not child.parent.done:
                touched[child.id] = child
        for child in touched.values():
            if not up:
                child.unknown = True
                self._record(child.parent, "child_unknown", venue=venue.name, child=child.id,
                             detail={"reason": reason})
            elif child.unknown and venue.name not in self._listening:
                # A venue without its own reconciliation: ask it what became of the child.
                child.reconciling = True
                venue.order_status(child.cl)

    # ============================================================================================
    # Parent progress
    # ============================================================================================
    def _progress(self, parent: _Parent) -> None:
        self._advance(parent)
        self._maybe_retire(parent)

    def _advance(self, parent: _Parent) -> None:
        if parent.done:
            if parent.pending is not None and not parent.pending.waiting:
                self._answer_too_late(parent)
            return
        pend = parent.pending
        if pend is None and not parent.wave and parent.has_live():
            return   # the common case (a child event on a working parent): nothing to decide
        live = parent.live()
        if pend is not None:
            blocked = any(c.want is not None or c.unknown for c in live)
            if pend.waiting or blocked:
                return
            if pend.kind == "cancel":
                if live:
                    return  # children still live whose cancel was refused: they report on their own
                return self._finish(parent, int(Reason.USER_CANCEL), "cancelled on request")
            if parent.ending is not None:
                # The order ended at a venue while the replace was out: the replace is too late.
                if not live:
                    self._finish(parent, *parent.ending)
                return
            return self._complete_replace(parent)
        if parent.wave and not any(not c.mirror for c in live):
            # The taking children are done (resting children from before may still be live, e.g.
            # after a replace up): what is left rests now.
            parent.wave = False
            if parent.may_rest and parent.ending is None and parent.qty > parent.cum:
                self._rest(parent)
                if parent.done:
                    return
                live = parent.live()
        if live:
            return
        # No child is live.
        if parent.ending is not None:
            code, text = parent.ending
            return self._finish(parent, code, text)
        if parent.qty > parent.cum:
            last = next((c for c in reversed(parent.children) if c.reason_code), None)
            code = last.reason_code if last is not None else int(Reason.IOC_REMAINDER)
            if parent.order.ord_type == OrdType.MARKET and code == int(Reason.IOC_REMAINDER):
                code = int(Reason.MARKET_REMAINDER)
            text = last.reason if last is not None and last.reason else "remainder not routed"
            self._finish(parent, code, text)

    def _end_parent(self, parent: _Parent, code: int, text: str) -> None:
        """End the parent on the router's or a venue's initiative: cancel its live children first."""
        if parent.done or parent.ending is not None:
            return
        parent.ending = (int(code), text)
        parent.may_rest = False
        self._record(parent, "parent_ending", detail={"reason": text, "reason_code": int(code)})
        for child in parent.live():
            if not any(r[0] == "cancel" for r in child.requests.values()):
                self._cancel_child(child, None)
        if not parent.has_live():
            self._finish(parent, int(code), text)

    def _finish(self, parent: _Parent, code: int, text: str) -> None:
        """The parent ends without a full fill: REJECTED if nothing was ever accepted, else CANCELED
        (carrying the pending cancel's id when a cancel was asked for)."""
        parent.done = True
        pend = parent.pending
        if not parent.acked and parent.cum == 0:
            reason = "; ".join(parent.rejects) or text
            self._record(parent, "parent_rejected", detail={"reason": reason})
            self._outbox.push(VenueEvent(_K.REJECTED, self.name, parent.cl, "", reason=reason, reason_code=int(code),
                                         ts=self._clock.now_ns(), ord_status=_REJECTED))
            if pend is not None:
                parent.pending = None
                self._outbox.push(self._req_reject(_K.CANCEL_REJECTED if pend.kind == "cancel" else _K.REPLACE_REJECTED,
                                                   pend.req, pend.orig, parent, Reason.TOO_LATE,
                                                   f"too late to {pend.kind}: order rejected"))
            return
        ev = self._parent_event(parent, _K.CANCELED)
        ev.leaves_qty, ev.ord_status = 0, _CANCELLED
        if pend is not None and pend.kind == "cancel":
            ev.venue_cl_ord_id, ev.orig_venue_cl_ord_id = pend.req, pend.orig
            ev.reason, ev.reason_code = "cancelled on request", int(Reason.USER_CANCEL)
            parent.cl = pend.req
            parent.ids.append(pend.req)
            parent.pending = None
        else:
            ev.reason, ev.reason_code = text, int(code)
        self._record(parent, "parent_canceled", detail={"reason": ev.reason, "reason_code": ev.reason_code,
                                                        "cum": parent.cum})
        self._outbox.push(ev)
        if pend is not None and pend.kind == "replace":
            parent.pending = None
            self._outbox.push(self._req_reject(_K.REPLACE_REJECTED, pend.req, pend.orig, parent, Reason.TOO_LATE,
                                               "too late to replace: order already done"))

    def _answer_too_late(self, parent: _Parent) -> None:
        pend, parent.pending = parent.pending, None
        kind = _K.CANCEL_REJECTED if pend.kind == "cancel" else _K.REPLACE_REJECTED
        what = "cancel" if pend.kind == "cancel" else "replace"
        self._record(parent, f"parent_{what}_rejected", detail={"request": pend.req, "reason": "filled"})
        self._outbox.push(self._req_reject(kind, pend.req, pend.orig, parent, Reason.TOO_LATE,
                                           f"too late to {what}: order already filled"))

    def _complete_replace(self, parent: _Parent) -> None:
        pend, parent.pending = parent.pending, None
        if pend.refused:
            text = "; ".join(pend.refused)
            self._record(parent, "parent_replace_rejected", detail={"request": pend.req, "reason": text})
            self._outbox.push(self._req_reject(_K.REPLACE_REJECTED, pend.req, pend.orig, parent, 0, text))
            return
        parent.qty = max(pend.qty, parent.cum)
        parent.price = pend.price
        parent.cl = pend.req
        parent.ids.append(pend.req)
        ev = self._parent_event(parent, _K.REPLACED)
        ev.orig_venue_cl_ord_id = pend.orig
        if parent.cum >= parent.qty:
            parent.done = True
            ev.leaves_qty = 0
        self._record(parent, "parent_replaced", qty=parent.qty, price=parent.price, detail={"request": pend.req})
        self._outbox.push(ev)
        if parent.done:
            return
        missing = parent.qty - parent.cum - sum(c.leaves for c in parent.live())
        if missing > 0:
            self._route(parent, missing)
        elif not parent.has_live():
            self._progress(parent)

    # ============================================================================================
    # Upstream events
    # ============================================================================================
    def _parent_event(self, parent: _Parent, kind: VenueEventKind) -> VenueEvent:
        # Positional in VenueEvent's field order (kind, venue, ids, last_qty, last_px, leaves, cum,
        # reason, reason_code, exec_id, ts, orig id, ord_status): keywords cost more per event.
        cum = parent.cum
        return VenueEvent(kind, self.name, parent.cl, parent.id, 0, 0, parent.qty - cum, cum, "", 0, "",
                          self._clock.now_ns(), "",
                          _FILLED if cum >= parent.qty else _PARTIAL if cum else _RESTING)

    def _reject(self, cl: str, code: int, text: str) -> VenueEvent:
        return VenueEvent(_K.REJECTED, self.name, cl, "", reason=text, reason_code=int(code), ts=self._clock.now_ns(),
                          ord_status=_REJECTED)

    def _refuse_parent(self, parent: _Parent, text: str) -> None:
        parent.done = True
        self._record(parent, "parent_rejected", detail={"reason": text})
        self._outbox.push(self._reject(parent.cl, VenueReason.VENUE_DOWN, text))
        self._maybe_retire(parent)

    def _alias_parent(self, key: str, parent: _Parent) -> None:
        self._parents[key] = parent
        parent.aliases.append(key)

    def _alias_child(self, key: str, child: _Child) -> None:
        self._children[key] = child
        child.aliases.append(key)

    def _maybe_retire(self, parent: _Parent) -> None:
        """A finished parent with nothing outstanding is remembered for a while (status, late
        requests answered "too late"), then forgotten, oldest first, so memory stays bounded.
        Events arriving later for a forgotten child go on to the upstream sink unchanged."""
        if parent.retired or not parent.done or parent.pending is not None or parent.has_live():
            return
        parent.retired = True
        done = self._done_parents
        done.append(parent)
        while len(done) > self._max_done:
            old = done.popleft()
            for key in old.aliases:
                if self._parents.get(key) is old:
                    del self._parents[key]
            self._by_pid.pop(old.id, None)
            for child in old.children:
                for key in child.aliases:
                    if self._children.get(key) is child:
                        del self._children[key]

    def _req_reject(self, kind, cl: str, orig: str, parent: _Parent | None, code: int, text: str) -> VenueEvent:
        if parent is None:
            return VenueEvent(kind, self.name, cl, "", reason=text, reason_code=int(code), ts=self._clock.now_ns(),
                              orig_venue_cl_ord_id=orig, ord_status=_REJECTED)
        status = _CANCELLED if parent.done and parent.cum < parent.qty else parent.status()
        return VenueEvent(kind, self.name, cl, parent.id, leaves_qty=parent.leaves, cum_qty=parent.cum, reason=text,
                          reason_code=int(code), ts=self._clock.now_ns(), orig_venue_cl_ord_id=orig,
                          ord_status=status)

    def _amend_problem(self, parent: _Parent | None, orig: str, req: str, what: str) -> tuple[int, str] | None:
        if parent is None:
            return (int(Reason.UNKNOWN_ORDER), f"unknown order {orig}")
        if req in self._parents:
            return (int(Reason.DUPLICATE_ID), f"duplicate venue_cl_ord_id {req}")
        if parent.done:
            return (int(Reason.TOO_LATE), f"too late to {what}: order already "
                    + ("filled" if parent.cum >= parent.qty else "done"))
        if parent.pending is not None or parent.ending is not None:
            return (0, f"cannot {what}: a {parent.pending.kind if parent.pending else 'cancel'} of the order is "
                       f"still in progress at its venues")
        return None

    def _install_taps(self) -> None:
        for v in self.venues:
            tap = _tap_for(v)
            if self not in tap.routers:
                tap.routers.append(self)
            if self._outbox.sink is not None:
                tap.upstream = self._outbox.sink
            v.set_event_sink(tap)

    def _record_cancel_sent(self, child: _Child, detail: dict) -> None:
        """The ``child_cancel_sent`` row of a cancel about to leave. Written ahead
        (``AuditLog.record_durable``) when the child is at a venue that outlives this process:
        after a kill the venue still answers that cancel (its CANCELED resent, or "cancelled"
        found by reconciliation), and only this row tells a restart it was ours (``asked_before``)
        rather than the venue ending the child on its own, which would end the parent with the
        venue's reason and never route its leaves again. If the write-ahead fails the cancel
        still leaves (the client asked for it; the row is queued as usual): a restart then
        takes the cancel for the venue's, as before this row was written ahead."""
        parent = child.parent
        if child.venue.name in self._outliving:
            write = getattr(self._audit, "record_durable", None)
            if write is not None:
                row = (self._clock.now_ns(), self.name, parent.id, parent.ids[0], "child_cancel_sent",
                       child.venue.name, child.id, 0, 0, detail)
                try:
                    return write([row])
                except Exception:
                    log.exception("router %s: cancel of child %s not written ahead: sent anyway", self.name,
                                  child.id)
        self._record(parent, "child_cancel_sent", venue=child.venue.name, child=child.id, detail=detail)

    def _record(self, parent: _Parent, event: str, *, venue: str = "", child: str = "", qty: int = 0, price: int = 0,
                detail=None) -> None:
        try:
            self._audit.record((self._clock.now_ns(), self.name, parent.id, parent.ids[0], event, venue, child,
                                int(qty), int(price), detail))
        except Exception:
            log.exception("router %s: audit record failed", self.name)

