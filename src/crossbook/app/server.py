"""The composition root of ``crossbook serve``: risk engine, venues, order manager, journal,
FIX acceptor, HTTP API, all on one event loop.

    server = Server(load_config())
    await server.start()          # restores from storage, resubmits open orders, listens
    ...
    await server.stop()           # logs sessions out, drains the journal, closes stores
"""
from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from pathlib import Path

from crossbook.app.config import ServerConfig
from crossbook.core.risk import RiskEngine
from crossbook.fix.settings import SessionSettings
from crossbook.fix.transport import Acceptor
from crossbook.oms.gateway import FixGateway
from crossbook.oms.manager import OrderManager
from crossbook.oms.validation import MemoValidator
from crossbook.persistence import SqliteJournal
from crossbook.publish import EventBus
from crossbook.venues import InProcessVenue

log = logging.getLogger("crossbook.server")

GIL_SWITCH_INTERVAL_S = 0.0002
GC_GEN0_THRESHOLD = 50_000


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
        self.journal = SqliteJournal(config.storage.database, synchronous=config.storage.synchronous)
        self.venues: dict[str, InProcessVenue] = {}
        self.manager: OrderManager | None = None
        self.gateway: FixGateway | None = None
        self.acceptor: Acceptor | None = None
        self.http = None
        self.bus: EventBus | None = None
        self._expiry_task: asyncio.Task | None = None
        self.restored_orders = 0
        self.resubmitted = 0

    def session_settings(self) -> list[SessionSettings]:
        fix = self.config.fix
        store_dir = self.config.storage.fix_store_dir
        Path(store_dir).mkdir(parents=True, exist_ok=True)
        return [SessionSettings(begin_string=s.begin_string, sender_comp_id=fix.comp_id, target_comp_id=s.comp_id,
                                heart_bt_int=fix.heartbeat_s, check_latency=fix.check_latency,
                                max_latency=float(fix.max_latency_s), reset_on_logon=fix.reset_on_logon,
                                store="file", file_store_path=store_dir, socket_accept_host=fix.host,
                                socket_accept_port=fix.port)
                for s in self.config.directory.sessions.values()]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # The journal's writer thread needs the GIL to commit, and every ExecutionReport waits for
        # that commit: with the default 5 ms switch interval a busy loop would hold reports back
        # for milliseconds. A short interval lets the writer in promptly.
        if sys.getswitchinterval() > GIL_SWITCH_INTERVAL_S:
            sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        state = self.journal.open()
        for vc in self.config.venues:
            self.venues[vc.name] = InProcessVenue(vc.name, self.config.instruments, self.clock, loop,
                                                  background=vc.background, latency_ns=vc.latency_us * 1000,
                                                  reject_ratio=vc.reject_ratio, seed=vc.seed)
        self.manager = OrderManager(instruments=self.config.instruments, venues=dict(self.venues), risk=self.risk,
                                    directory=self.config.directory, clock=self.clock, journal=self.journal)
        self.manager.restore(state.orders, state.cl_ord_ids, state.meta, state.risk, state.recent_executions)
        self.restored_orders = len(state.orders)
        self.bus = EventBus(self.manager)
        self.journal.start(loop)
        for venue in self.venues.values():
            await venue.start()
        self.resubmitted = self.manager.resubmit_open_orders()
        self.gateway = FixGateway(self.manager, self.config.instruments, self.config.directory)
        settings = self.session_settings()
        self.acceptor = Acceptor(settings, self.gateway, clock=self.clock, validator=MemoValidator(settings))
        await self.acceptor.start()
        if self.config.http.enabled:
            from crossbook.api.http import HttpApi
            self.http = HttpApi(self, self.config.http.host, self.config.http.port)
            await self.http.start()
        self._expiry_task = loop.create_task(self._expiry_loop())
        # Everything built so far (config, instruments, restored orders) lives for the whole run:
        # keep it out of the cyclic collector, and collect the young generation less often, so
        # a collection of a large heap does not stall orders for tens of milliseconds.
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_GEN0_THRESHOLD, 20, 100)

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
        for venue in self.venues.values():
            await venue.stop()
        if self.manager is not None:
            self.manager.flush()
            await self.manager.drain()
        self.journal.close()
