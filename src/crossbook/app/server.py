"""The composition root of ``crossbook serve``: risk engine, venues, order manager, journal,
FIX acceptor, HTTP API, all on one event loop.

    server = Server(load_config())
    await server.start()          # restores from storage, resubmits open orders, listens
    ...
    await server.stop()           # logs sessions out, drains the journal, closes stores
"""
from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

from crossbook.app.config import ServerConfig
from crossbook.app.gcpolicy import YoungOnlyGC
from crossbook.core import OrdType, Side, TimeInForce
from crossbook.core.risk import RiskEngine
from crossbook.model.enums import OrderState
from crossbook.fix.settings import SessionSettings
from crossbook.fix.transport import Acceptor
from crossbook.oms.gateway import INBOUND_MARK, FixGateway
from crossbook.oms.manager import OrderManager
from crossbook.persistence import SqliteJournal
from crossbook.publish import EventBus
from crossbook.publish.dropcopy import DropCopyPublisher
from crossbook.routing.fix_venue import FixVenue
from crossbook.routing.router import build_router, durable_audit_path
from crossbook.routing.venue import VenueOrder
from crossbook.venues import InProcessVenue

log = logging.getLogger("crossbook.server")

GIL_SWITCH_INTERVAL_S = 0.0002


class SystemClock:
    """Wall clock for every component: ``now_ns()`` (OMS, venues, risk) and ``now()`` (FIX)."""

    @staticmethod
    def now_ns() -> int:
        return time.time_ns()

    @staticmethod
    def now() -> float:
        return time.time()


def build_risk(config: ServerConfig) -> RiskEngine:
    d = config.directory
    risk = RiskEngine(max_accounts=max(len(d.accounts), 1), max_instruments=max(len(config.instruments), 1),
                      max_sessions=max(len(d.sessions), 1), max_firms=max(len(d.firms), 1))
    for inst in config.instruments:
        risk.add_instrument(inst)
    for pair, rate in config.fx_rates.pairs().items():
        risk.set_fx_rate(pair[:3], pair[3:], rate)
    for firm in d.firms.values():
        risk.set_firm_name(firm.index, firm.name)
    for acc in d.accounts.values():
        risk.set_account(acc.index, config.limits[acc.name], firm=acc.firm_index, currency=acc.currency, name=acc.name)
        for key in config.restricted_by_account.get(acc.name, ()):
            risk.set_restricted(config.instruments.by_symbol(key).index, True, account=acc.index)
    for sess in d.sessions.values():
        risk.set_session(sess.index, sess.msg_rate_per_sec, name=sess.comp_id)
    for key in config.restricted:
        risk.set_restricted(config.instruments.by_symbol(key).index, True)
    return risk


class Server:
    """One OMS server process. ``fix_port`` / ``http_port`` are the bound ports after start()."""

    def __init__(self, config: ServerConfig, clock=None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.risk = build_risk(config)
        storage = config.storage
        self.journal = SqliteJournal(storage.database, synchronous=storage.synchronous, projection=storage.projection,
                                     projection_interval_s=storage.projection_interval_s,
                                     rotate_bytes=storage.log_segment_bytes)
        self.venues: dict[str, InProcessVenue | FixVenue] = {}
        self.routers: dict = {}                      # name -> SmartRouter (also in manager.venues)
        self.venue_states: dict[str, dict] = {}      # name -> {"kind", "up", "reason", "since_ns"}
        self.drop_copy: DropCopyPublisher | None = None
        self._audit_logs: list = []
        self.restored_remote = 0
        self.manager: OrderManager | None = None
        self.gateway: FixGateway | None = None
        self.acceptor: Acceptor | None = None
        self.http = None
        self.bus: EventBus | None = None
        self._expiry_task: asyncio.Task | None = None
        self._gc_policy = YoungOnlyGC()
        self.restored_orders = 0
        self.resubmitted = 0

    def session_settings(self) -> list[SessionSettings]:
        fix = self.config.fix
        store_dir = self.config.storage.fix_store_dir
        Path(store_dir).mkdir(parents=True, exist_ok=True)
        peers = [(s.begin_string, s.comp_id) for s in self.config.directory.sessions.values()]
        peers += [(d.begin_string, d.comp_id) for d in self.config.drop_copies]  # same acceptor, own stores
        return [SessionSettings(begin_string=begin, sender_comp_id=fix.comp_id, target_comp_id=comp_id,
                                heart_bt_int=fix.heartbeat_s, check_latency=fix.check_latency,
                                max_latency=float(fix.max_latency_s), reset_on_logon=fix.reset_on_logon,
                                store="file", file_store_path=store_dir, socket_accept_host=fix.host,
                                socket_accept_port=fix.port)
                for begin, comp_id in peers]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # The journal's projection thread (SQLite) needs the GIL too, and HTTP queries wait for it
        # (the store barrier): with the default 5 ms switch interval a busy loop would hold it
        # back for milliseconds. Reports no longer wait for it (the journal log is written on
        # the loop), so this only bounds how far the store trails.
        if sys.getswitchinterval() > GIL_SWITCH_INTERVAL_S:
            sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        state = self.journal.open()
        try:
            await self._start_after_journal(loop, state)
        except BaseException:
            # Release the journal's log lock, so a retry (or another server) can open the storage.
            self.journal.close()
            raise

    async def _start_after_journal(self, loop: asyncio.AbstractEventLoop, state) -> None:
        self._build_venues(loop)
        self.manager = OrderManager(instruments=self.config.instruments, venues={**self.venues, **self.routers},
                                    risk=self.risk, directory=self.config.directory, clock=self.clock,
                                    journal=self.journal)
        self.manager.restore(state.orders, state.cl_ord_ids, state.meta, state.risk, state.recent_executions)
        self.restored_orders = len(state.orders)
        self.bus = EventBus(self.manager)
        self.journal.start(loop)
        # The gateway and its sessions exist (not yet listening) before any venue or router
        # starts: from then on every durable batch has an output sink. Routers settling parents
        # at start (fills found after the restart), FIX venues reconciling at logon during the
        # wait below: their reports are journaled, and a batch delivered with no sink would be
        # journaled and never sent, the sent marks then moving past it (lost for good).
        self.gateway = FixGateway(self.manager, self.config.instruments, self.config.directory)
        if self.config.drop_copies:
            self.drop_copy = DropCopyPublisher(self.bus, self.gateway, self.config.directory, self.config.drop_copies)
            self.drop_copy.start()
        settings = self.session_settings()
        # The session's own dictionary validator: its compiled pass over a flat message (C) is now
        # cheaper than crossbook.oms.validation.MemoValidator's shape key (2.4 vs 3.0 us per
        # NewOrderSingle), with the same verdicts.
        self.acceptor = Acceptor(settings, self.gateway, clock=self.clock)
        # A durable batch's reports leave in the callback that made them durable (one write per
        # session), not a loop iteration later behind the reads queued meanwhile.
        self.manager.set_delivery_hooks(self.acceptor.hold_output, self.acceptor.release_output)
        # At the end of a read the in-process venues' answers to its orders are queued: the batch
        # is flushed right after them, one loop hop after the read instead of two.
        self.acceptor.after_read = self.manager.flush_soon
        self._rewind_inbound(state.meta)
        # Reports the last run journaled but never sent go out first (in the batch now open):
        # a report made below (router settling, FIX reconciliation) would otherwise be delivered
        # before them and move the session's sent mark past them; a kill before they followed
        # would lose them for good, and the client would see them after newer reports.
        self.manager.resend_owed_reports()
        self.restored_remote = self._restore_remote_orders()
        for venue in self.venues.values():
            await venue.start()
        for router in self.routers.values():
            await router.start()  # after the manager: the router takes over its venues' sinks
        # Routed orders sent again below need a venue logged on, else their router refuses them
        # "venue down" and the restart alone would end the client's order. Clients log on only
        # after (the acceptor listens below): none asks about an order not yet sent again.
        await self._await_routed_venues()
        self.resubmitted = self._resubmit()
        await self.acceptor.start()
        if self.config.http.enabled:
            from crossbook.api.http import HttpApi
            self.http = HttpApi(self, self.config.http.host, self.config.http.port)
            await self.http.start()
        self._expiry_task = loop.create_task(self._expiry_loop())
        # Everything built so far (config, instruments, restored orders) lives for the whole run,
        # and so do the orders entered later: freeze it now and each young collection's
        # survivors after it, so no collection meets a large heap and stalls orders for tens of
        # milliseconds (crossbook.app.gcpolicy).
        self._gc_policy.install()

    def _build_venues(self, loop: asyncio.AbstractEventLoop) -> None:
        """In-process and FIX venues from ``[[venues]]``, then the ``[[routers]]`` over them."""
        now = self.clock.now_ns()
        for i, vc in enumerate(self.config.venues):
            if vc.kind == "fix":
                Path(vc.fix["store_path"]).mkdir(parents=True, exist_ok=True)
                venue = FixVenue.from_config(vc.fix, self.config.instruments, where=f"venues[{i}]")
                venue.add_state_listener(self._on_venue_state)
                self.venue_states[vc.name] = {"kind": "fix", "up": False, "reason": "connecting", "since_ns": now}
            else:
                venue = InProcessVenue(vc.name, self.config.instruments, self.clock, loop,
                                       background=vc.background, latency_ns=vc.latency_us * 1000,
                                       reject_ratio=vc.reject_ratio, seed=vc.seed)
                self.venue_states[vc.name] = {"kind": "in_process", "up": True, "reason": "in process",
                                              "since_ns": now}
            self.venues[vc.name] = venue
        for rc in self.config.routers:
            audit = None
            audit_path = durable_audit_path(rc, self.venues, self.config.storage.dir)
            if audit_path:
                from crossbook.routing.audit import SqliteAuditLog
                audit = SqliteAuditLog(audit_path)
                self._audit_logs.append(audit)
            self.routers[rc.name] = build_router(rc, self.venues, self.clock, audit=audit)

    def _on_venue_state(self, name: str, up: bool, reason: str) -> None:
        """A FIX venue logged on or lost its session (FixVenue state listener)."""
        self.venue_states[name].update(up=up, reason=reason, since_ns=self.clock.now_ns())
        if up:
            log.info("venue %s UP: %s", name, reason)
        else:
            log.warning("venue %s DOWN: %s", name, reason)

    def venue_status(self) -> list[dict]:
        """Every venue and router: name, kind, up, and for FIX venues the last up/down reason."""
        out = []
        for name, venue in self.venues.items():
            out.append({"name": name, **self.venue_states[name], "up": bool(venue.is_up)})
        for name, router in self.routers.items():
            rc = next(r for r in self.config.routers if r.name == name)
            out.append({"name": name, "kind": "router", "up": bool(router.is_up), "policy": rc.policy.value,
                        "venues": list(rc.venues), "rest_venue": rc.rest_venue})
        return out

    def _restore_remote_orders(self) -> int:
        """After a restart: open orders at FIX venues are still there (the venue process kept
        them), so they are registered with ``FixVenue.restore_order`` (reconciled at logon)
        instead of being entered again by ``resubmit_open_orders``, which only re-enters orders
        at in-process venues (their books died with the process). Routed orders whose children
        rest at FIX venues are taken back by their router (``SmartRouter.recover_parent``)."""
        manager = self.manager
        count = 0
        self._routers_resubmitting = set()
        for order in manager.open_orders():
            venue = self.venues.get(order.venue)
            router = self.routers.get(order.venue)
            if router is not None:
                # A routed order whose children from the previous run may be live at venue
                # processes (or filled beyond what was journaled): the router takes it back from
                # its audit trail and settles it (recover_parent) before anything is routed
                # again; the order waits for the router's answer (New, fills, a STATUS after which
                # a pending cancel / replace is sent again). False: nothing of it can be live,
                # and resubmit_open_orders routes it again / finishes what was in flight.
                if order.venue_cl_ord_id and router.recover_parent(
                        self._venue_order(order), order.cum_qty,
                        [f"{order.order_id}.{k}" for k in range(1, order.venue_seq + 1)],
                        cum_value=order.cum_value, acknowledged=order.state is not OrderState.PENDING_NEW,
                        pending={OrderState.PENDING_CANCEL: "cancel",
                                 OrderState.PENDING_REPLACE: "replace"}.get(order.state, "")):
                    manager.hold_at_venue(order.order_id)
                    count += 1
                else:
                    self._routers_resubmitting.add(order.venue)
                continue
            if not isinstance(venue, FixVenue) or not order.venue_cl_ord_id:
                continue
            venue.restore_order(
                self._venue_order(order), cum_qty=order.cum_qty, venue_order_id=order.venue_order_id,
                # Not acknowledged yet: if the venue never got it, the client hears Rejected.
                acked=order.state is not OrderState.PENDING_NEW,
                # The value of its known fills: fills the reconciliation finds beyond them are
                # priced so that AvgPx comes out exact.
                notional=order.cum_value)
            # Live at its venue: the venue's events reach it, resubmit_open_orders leaves it alone.
            manager.hold_at_venue(order.order_id)
            count += 1
        return count

    async def _await_routed_venues(self, timeout_s: float = 5.0) -> None:
        """At start, before open routed orders are sent again (``_resubmit``): wait, at most
        ``timeout_s``, for the FIX venues of the routers holding them to log on (they connect in
        the background once started). A venue still down after that is left to the router (its
        policy's other venues, else "venue down", as for any order)."""
        names = getattr(self, "_routers_resubmitting", ())    # routers given orders to route again
        fix = {v.name: v for n in names for v in self.routers[n].venues if isinstance(v, FixVenue)}
        if not fix:
            return
        deadline = time.monotonic() + timeout_s
        while not all(v.is_up for v in fix.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        down = sorted(n for n, v in fix.items() if not v.is_up)
        if down:
            log.warning("routed orders sent again while venues are not logged on after %.1f s: %s",
                        timeout_s, ", ".join(down))

    def _venue_order(self, order) -> VenueOrder:
        """The VenueOrder the manager sent for ``order`` (its current id, quantity and price)."""
        inst = self.config.instruments.by_index(order.instrument_index)
        acc = self.config.directory.accounts[order.account]
        return VenueOrder(
            venue_cl_ord_id=order.venue_cl_ord_id, instrument=inst, side=Side(order.side),
            ord_type=OrdType(order.ord_type), tif=TimeInForce(order.tif), qty=order.qty, price=order.price,
            stop_price=order.stop_px, display_qty=order.display_qty, post_only=order.post_only,
            expire_time=order.expire_time, owner=acc.index + 1, stp=acc.stp)

    def _rewind_inbound(self, meta: dict[str, str]) -> None:
        """After a kill, a client session's FIX store may count messages as received whose orders
        never reached the journal (the store is written when a read is handled, the journal
        commits later). The gateway journals with each batch the number after the last message
        it holds (``INBOUND_MARK``); going back to it makes the session ask the client to resend
        the rest (PossDup), which are then handled for the first time. A mark from another
        numbering (the store was reset since: other creation time) is ignored. A mark ahead of
        the store moves it forward: the gateway's messages are counted in the store lazily
        (``Application.journals_inbound``), the journal is what says they were handled."""
        assert self.acceptor is not None
        for session in self.acceptor.sessions.values():
            raw = meta.get(INBOUND_MARK + session.settings.target_comp_id)
            if raw is None:
                continue
            try:
                mark_text, created_text = raw.split(" ", 1)
                mark, created = int(mark_text), float(created_text)
            except ValueError:
                log.warning("ignoring malformed journal mark %r for %s", raw, session.session_id)
                continue
            store = session.store
            stored = store.get_next_target_seq()
            if created != store.creation_time() or mark < 1 or mark == stored:
                continue
            if mark > stored:
                log.info("%s: next inbound MsgSeqNum %d -> %d from the journal", session.session_id, stored, mark)
            else:
                log.warning("%s: next inbound MsgSeqNum %d -> %d: what followed the last journaled message is "
                            "asked for again", session.session_id, stored, mark)
            store.set_next_target_seq(mark)
            store.write_pending()

    def _resubmit(self) -> int:
        """``resubmit_open_orders``: re-enters the orders at in-process venues and routers (the
        orders held at FIX venues by ``_restore_remote_orders`` stay where they are)."""
        return self.manager.resubmit_open_orders()

    @property
    def fix_port(self) -> int:
        return self.acceptor.port if self.acceptor else self.config.fix.port

    @property
    def http_port(self) -> int:
        return self.http.port if self.http else self.config.http.port

    async def _expiry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.expiry_check_s)
            try:
                self.manager.expire()
            except Exception:  # keep expiring later; a bug here must not stop the server
                log.exception("GTD expiry failed")

    async def stop(self) -> None:
        """Log every session out, stop venues, make everything durable, close stores."""
        if self._expiry_task is not None:
            self._expiry_task.cancel()
            await asyncio.gather(self._expiry_task, return_exceptions=True)
        if self.http is not None:
            await self.http.stop()
        if self.gateway is not None:
            self.gateway.stopping = True  # our own logouts must not trigger cancel-on-disconnect
        if self.acceptor is not None:
            await self.acceptor.stop(logout_grace=1.0)
        if self.drop_copy is not None:
            self.drop_copy.close()
        if self.manager is not None:
            # Venue requests waiting for their batch (write-ahead) leave before the venues stop.
            self.manager.flush()
        for router in self.routers.values():
            await router.stop()
        for venue in self.venues.values():
            await venue.stop()
        for audit in self._audit_logs:
            audit.close()
        if self.manager is not None:
            self.manager.flush()
            await self.manager.drain()
        self.journal.close()
        self._gc_policy.uninstall()
