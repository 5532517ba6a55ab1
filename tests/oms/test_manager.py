"""OrderManager without FIX: real risk engine and in-process venue, journals that hold batches."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re


from crossbook.app.config import load_config
from crossbook.app.server import SystemClock, build_risk
from crossbook.core import OrdType, Side, TimeInForce
from crossbook.fix.messages import encode, format_timestamp
from crossbook.fix.session import Session, TestClock
from crossbook.fix.settings import SessionSettings
from crossbook.fix.store import FileStore, store_name
from crossbook.model.enums import ExecType, OrderState, OrdRejReason, OrdStatus
from crossbook.model.orders import CancelOrder, NewOrder
from crossbook.oms.gateway import FixGateway
from crossbook.oms.manager import Batch, OrderManager
from crossbook.oms.reports import CancelReject, ExecReport
from crossbook.publish import EventBus
from crossbook.routing.venue import VenueEvent, VenueEventKind
from crossbook.venues import InProcessVenue


class HoldingJournal:
    """Keeps batches until release(): nothing may be sent before."""

    def __init__(self) -> None:
        self.held: list[tuple[Batch, object]] = []

    def submit(self, batch, on_durable) -> None:
        self.held.append((batch, on_durable))

    def release(self) -> None:
        held, self.held = self.held, []
        for batch, on_durable in held:
            on_durable(batch)


def setup(journal=None):
    cfg = load_config(None, {"venues": [{"name": "VENUE-A"}, {"name": "VENUE-B"}]})
    clock = SystemClock()
    venues = {v.name: InProcessVenue(v.name, cfg.instruments, clock) for v in cfg.venues}
    manager = OrderManager(instruments=cfg.instruments, venues=venues, risk=build_risk(cfg),
                           directory=cfg.directory, clock=clock, journal=journal)
    return cfg, venues, manager


@contextlib.asynccontextmanager
async def running(journal=None):
    """setup() with the in-process venues started, and stopped again at the end."""
    cfg, venues, manager = setup(journal)
    for v in venues.values():
        await v.start()
    try:
        yield cfg, venues, manager
    finally:
        for v in venues.values():
            await v.stop()


def record_output(manager) -> list:
    """Everything the manager sends to its sessions, in order."""
    sent = []
    manager.set_output_sink(sent.append)
    return sent


def new(cfg, cl: str, side=Side.BUY, qty=10, price=22900, session="FIRM1", account="ACC1", tif=TimeInForce.DAY):
    return NewOrder(session=session, begin_string="FIX.4.4", cl_ord_id=cl, firm=session, account=account,
                    instrument_index=cfg.instruments.by_symbol("AAPL").index, side=int(side),
                    ord_type=int(OrdType.LIMIT), tif=int(tif), qty=qty, price=price)


def test_reports_wait_for_durability_and_subscribers_see_every_event():
    async def scenario():
        journal = HoldingJournal()
        async with running(journal) as (cfg, venues, m):
            sent = record_output(m)
            bus = EventBus(m)
            events, acc3 = [], []
            bus.subscribe(events.append)
            bus.subscribe(acc3.append, account="ACC3")
            q = bus.queue()
            m.new_order(new(cfg, "b1"))
            await asyncio.sleep(0.01)              # venue ack arrives
            assert sent == [] and events == []     # nothing before the journal says durable
            assert m.order("O1").state is OrderState.NEW
            journal.release()
            assert [o.execution.exec_type for o in sent] == [ExecType.PENDING_NEW, ExecType.NEW]
            m.new_order(new(cfg, "s1", side=Side.SELL, qty=4, session="FIRM2", account="ACC3"))
            await asyncio.sleep(0.01)
            journal.release()
            kinds = [(e.order.order_id, e.execution.exec_type, e.order.cum_qty) for e in events]
            assert kinds[-2:] in ([("O1", ExecType.TRADE, 4), ("O2", ExecType.TRADE, 4)],
                                  [("O2", ExecType.TRADE, 4), ("O1", ExecType.TRADE, 4)])
            assert all(e.order.account == "ACC3" for e in acc3) and len(acc3) == 3
            assert (await q.get(1)).execution.exec_id == "X1"
            # Snapshots: later changes do not alter an event already delivered.
            first_trade = next(e for e in events if e.order.order_id == "O1" and e.execution.exec_type is ExecType.TRADE)
            m.cancel_order(CancelOrder(session="FIRM1", cl_ord_id="c1", orig_cl_ord_id="b1"))
            await asyncio.sleep(0.01)
            journal.release()
            assert first_trade.order.state is OrderState.PARTIALLY_FILLED
            assert m.order("O1").state is OrderState.CANCELED and m.order("O1").cl_ord_id == "c1"
            assert isinstance(sent[-1], ExecReport) and sent[-1].execution.exec_type is ExecType.CANCELED
            q.close()

    asyncio.run(scenario())


def test_events_for_unknown_or_unexpected_orders_are_ignored_loudly(caplog):
    async def scenario():
        async with running() as (cfg, venues, m):
            sent = record_output(m)
            m.new_order(new(cfg, "b1"))
            await asyncio.sleep(0.01)
            with caplog.at_level(logging.WARNING, logger="crossbook.oms"):
                m.on_venue_event(VenueEvent(VenueEventKind.TRADE, "VENUE-A", "nope", "x", last_qty=1, last_px=1))
                # A REPLACED nobody asked for must not rewrite the order.
                m.on_venue_event(VenueEvent(VenueEventKind.REPLACED, "VENUE-A", "O1.1", "x"))
            assert "unknown order" in caplog.text and "REPLACED for order O1 in state new" in caplog.text
            assert m.order("O1").state is OrderState.NEW and m.order("O1").qty == 10
            # A duplicated venue trade (same exec id) is applied once.
            ev = VenueEvent(VenueEventKind.TRADE, "VENUE-A", "O1.1", "v1", last_qty=3, last_px=22900, exec_id="E-dup")
            m.on_venue_event(ev)
            m.on_venue_event(ev)
            assert m.order("O1").cum_qty == 3
            await m.drain()
            assert sum(1 for o in sent if isinstance(o, ExecReport) and o.execution.exec_type is ExecType.TRADE) == 1

    asyncio.run(scenario())


def test_duplicate_trades_are_recognised_per_venue():
    """An ExecID is unique within one venue only: the same ExecID from another venue is another
    trade (counted), a repeat from the same venue is not."""
    async def scenario():
        async with running() as (cfg, venues, m):
            sent = record_output(m)
            m.new_order(new(cfg, "a1"))
            m.new_order(new(cfg, "b1")._replace(ex_destination="VENUE-B"))
            await asyncio.sleep(0.01)
            a, b = m.order("O1"), m.order("O2")
            assert (a.venue, b.venue) == ("VENUE-A", "VENUE-B")
            for venue, order in (("VENUE-A", a), ("VENUE-B", b), ("VENUE-A", a), ("VENUE-B", b)):
                m.on_venue_event(VenueEvent(VenueEventKind.TRADE, venue, order.venue_cl_ord_id, "v", last_qty=2,
                                            last_px=22900, exec_id="SAME"))
            assert (a.cum_qty, b.cum_qty) == (2, 2)
            await m.drain()
            assert sum(1 for o in sent if isinstance(o, ExecReport) and o.execution.exec_type is ExecType.TRADE) == 2

    asyncio.run(scenario())


def test_cancel_of_pending_new_is_refused_with_broker_option():
    async def scenario():
        async with running() as (cfg, venues, m):
            sent = record_output(m)
            m.new_order(new(cfg, "b1"))
            m.cancel_order(CancelOrder(session="FIRM1", cl_ord_id="c1", orig_cl_ord_id="b1"))  # before the ack
            await m.drain()
            await asyncio.sleep(0.01)
            await m.drain()
            rej = [o for o in sent if isinstance(o, CancelReject)]
            assert len(rej) == 1 and rej[0].reason.value == 2 and "not yet acknowledged" in rej[0].text
            assert m.order("O1").state is OrderState.NEW

    asyncio.run(scenario())


def test_unsolicited_venue_cancel_is_reported_with_the_venue_reason():
    async def scenario():
        async with running() as (cfg, venues, m):
            sent = record_output(m)
            m.new_order(new(cfg, "b1"))
            await asyncio.sleep(0.01)
            venues["VENUE-A"].cancel_all()
            await asyncio.sleep(0.01)
            await m.drain()
            last = sent[-1].execution
            assert last.exec_type is ExecType.CANCELED and last.reason == "venue"
            assert last.text.startswith("canceled by venue VENUE-A")
            assert m.order("O1").state is OrderState.CANCELED
            assert m.risk.usage(0)["open_orders"] == 0

    asyncio.run(scenario())


def test_restart_finishes_pending_cancels_refuses_pending_replaces_and_resubmits():
    async def scenario():
        async with running() as (cfg, venues, m):
            m.new_order(new(cfg, "a"))
            m.new_order(new(cfg, "b"))
            m.new_order(new(cfg, "c"))
            await asyncio.sleep(0.01)
            m.cancel_order(CancelOrder(session="FIRM1", cl_ord_id="a-x", orig_cl_ord_id="a"))
            from crossbook.model.orders import ReplaceOrder
            m.replace_order(ReplaceOrder(session="FIRM1", cl_ord_id="b-r", orig_cl_ord_id="b", qty=20, price=22900))
            # Snapshot the state as the journal would have stored it, before the venue answers.
            rows = [m._row(o) for o in m.orders.values()]
            ids = [(s, c, o) for (s, c), o in m._by_cl_ord_id.items()]
            usage = {a: m.risk.usage(a) for a in (0,)}
            meta = {"order_seq": "3", "exec_seq": str(m._exec_seq)}

        async with running() as (cfg2, venues2, m2):
            sent = record_output(m2)
            m2.restore(rows, ids, meta, usage)
            assert m2.resubmit_open_orders() == 2
            await asyncio.sleep(0.01)
            await m2.drain()
            a, b, c = m2.order("O1"), m2.order("O2"), m2.order("O3")
            assert a.state is OrderState.CANCELED and a.cl_ord_id == "a-x"
            assert b.state is OrderState.NEW and b.qty == 10 and b.cl_ord_id == "b"
            assert c.state is OrderState.NEW
            kinds = [(type(o).__name__, getattr(o, "execution", None) and o.execution.exec_type) for o in sent]
            assert ("ExecReport", ExecType.CANCELED) in kinds and ("CancelReject", None) in kinds
            assert not any(k == ("ExecReport", ExecType.NEW) for k in kinds)  # resubmissions are silent
            book = venues2["VENUE-A"].order_book(cfg.instruments.by_symbol("AAPL"))
            assert len(book) == 2
            assert m2.risk.usage(0)["open_orders"] == 2
            assert m2._exec_seq > int(meta["exec_seq"]) and m2.find("FIRM1", "a") is a

    asyncio.run(scenario())


def test_kill_switch_catches_orders_still_pending_new():
    async def scenario():
        async with running() as (cfg, venues, m):
            sent = record_output(m)
            m.new_order(new(cfg, "b1"))
            assert m.kill("account", "ACC1") == 0         # nothing acknowledged yet
            await asyncio.sleep(0.01)
            await m.drain()
            assert m.order("O1").state is OrderState.CANCELED
            assert sent[-1].execution.text == "canceled by kill switch"

    asyncio.run(scenario())


def test_kill_switch_state_survives_a_restart():
    async def scenario():
        cfg, venues, m = setup(HoldingJournal())
        m.kill("firm", "FIRM2")
        m.kill("account", "ACC1")
        m.kill("account", "ACC1", on=False)
        m.flush()
        meta = m.journal.held[-1][0].meta
        cfg2, venues2, m2 = setup()
        m2.restore([], [], meta, {})
        assert m2.risk.kill_state() == {"global": False, "firms": [1], "accounts": []}
        assert m2._killed == frozenset({cfg.directory.accounts["ACC3"].index})

    asyncio.run(scenario())


def test_an_in_process_venue_ack_shares_the_commit_of_its_pending_new():
    """The flush waits one more loop hop, so the venue's answer to an order sent in this round
    joins the order's PendingNew batch: one commit per order instead of two in series."""
    async def scenario():
        journal = HoldingJournal()
        async with running(journal) as (cfg, venues, m):
            m.set_output_sink(lambda out: None)
            m.new_order(new(cfg, "b1"))
            await asyncio.sleep(0.01)
            assert [[e["exec_type"] for e in b.executions] for b, _ in journal.held] == [["A", "0"]]

    asyncio.run(scenario())


def test_reports_not_marked_sent_are_sent_again_with_poss_resend():
    async def scenario():
        journal = HoldingJournal()
        async with running(journal) as (cfg, venues, m):
            m.set_output_sink(lambda out: None)
            m.new_order(new(cfg, "b1"))
            m.flush()                            # PendingNew in a batch of its own, before the venue answers
            await asyncio.sleep(0.01)
            m.flush()
            executions = [e for b, _ in journal.held for e in b.executions]
            assert [e["exec_type"] for e in executions] == ["A", "0"]
            assert len(journal.held) == 2
            first, *_ = journal.held
            journal.held = [first]
            journal.release()                    # only the PendingNew batch went out before the "crash"
            m.flush()
            meta = {**journal.held[-1][0].meta} if journal.held else {}
            meta.update({"order_seq": "1", "exec_seq": "2"})
            assert json.loads(meta["sent_exec_seq"]) == {"FIRM1": 1}
            async with running() as (cfg2, venues2, m2):
                sent = record_output(m2)
                m2.restore([m._row(m.order("O1"))], [("FIRM1", "b1", "O1")], meta, {}, executions)
                m2.resubmit_open_orders()
                await m2.drain()
                again = [o for o in sent if isinstance(o, ExecReport) and o.poss_resend]
                assert [o.execution.exec_id for o in again] == ["X2"]

    asyncio.run(scenario())


def test_a_report_is_in_the_fix_store_before_the_journal_marks_it_sent(tmp_path):
    """The FIX store batches its writes until the connection next flushes, and the batch that
    carries the "sent" mark can be committed before that: a kill in between lost the reports
    for good (not in the FIX store, so no resend; marked sent, so no PossResend after the
    restart). The gateway writes them to the store before the mark is taken."""
    async def scenario():
        journal = HoldingJournal()
        async with running(journal) as (cfg, venues, m):
            gateway = FixGateway(m, cfg.instruments, cfg.directory)
            clock = TestClock()
            name = store_name("FIX.4.4", "CROSSBOOK", "FIRM1")
            session = Session(SessionSettings(begin_string="FIX.4.4", sender_comp_id="CROSSBOOK",
                                              target_comp_id="FIRM1"),
                              store=FileStore(str(tmp_path), name, now=clock.now(), batch=True),
                              clock=clock, application=gateway)
            session.on_connected()
            session.receive(encode(b"FIX.4.4", b"A", [(34, 1), (49, b"FIRM1"), (52, format_timestamp(clock.now())),
                                                      (56, b"CROSSBOOK")], [(98, b"0"), (108, 30)]))
            assert session.is_logged_on
            session.data_to_send()              # the Logon answer leaves (and is stored)
            m.new_order(new(cfg, "b1"))
            await asyncio.sleep(0.01)
            journal.release()                   # durable: reports handed to the session...
            m.flush()                           # ...and the mark journaled; no transport flushed yet
            [(batch, _)] = journal.held
            marked = json.loads(batch.meta["sent_exec_seq"])["FIRM1"]
            assert marked == 2
            # What a process killed now leaves behind: the store's files.
            body = (tmp_path / f"{name}.body").read_bytes()
            assert sorted(int(x) for x in re.findall(rb"\x0117=X(\d+)\x01", body)) == [1, 2]
            # A restart recovers the next sender number from those files (the store may take it
            # from its index rather than its sequence-number line): the reports are accounted for.
            kept = tmp_path / "after_kill"
            kept.mkdir()
            for path in tmp_path.glob(f"{name}.*"):
                (kept / path.name).write_bytes(path.read_bytes())
            reopened = FileStore(str(kept), name, now=clock.now(), batch=True)
            assert reopened.get_next_sender_seq() == 4   # Logon answer 1, PendingNew 2, New 3

    asyncio.run(scenario())


def test_reports_whose_storing_failed_are_not_marked_sent():
    async def scenario():
        journal = HoldingJournal()
        async with running(journal) as (cfg, venues, m):
            sent = []

            def broken_store():
                raise OSError("disk full")

            m.set_output_sink(sent.append, broken_store)
            m.new_order(new(cfg, "b1"))
            await asyncio.sleep(0.01)
            journal.release()
            m.flush()
            assert len(sent) == 2
            assert all("sent_exec_seq" not in b.meta for b, _ in journal.held)
            m.set_output_sink(sent.append, lambda: None)
            m.cancel_order(CancelOrder(session="FIRM1", cl_ord_id="c1", orig_cl_ord_id="b1", order_id=""))
            await asyncio.sleep(0.01)
            journal.release()
            m.flush()
            assert json.loads(journal.held[-1][0].meta["sent_exec_seq"]) == {"FIRM1": 4}

    asyncio.run(scenario())


def test_orders_held_at_their_venue_are_not_entered_again_after_a_restart():
    """A remote venue (a venue process) outlives the server: hold_at_venue() keeps its orders out
    of resubmit_open_orders while the venue's events still reach them."""
    async def scenario():
        async with running() as (cfg, venues, m):
            m.new_order(new(cfg, "a"))
            m.new_order(new(cfg, "b"))
            await asyncio.sleep(0.01)
            await m.drain()
            rows = [m._row(o) for o in m.orders.values()]
            ids = [(s, c, o) for (s, c), o in m._by_cl_ord_id.items()]
            usage = {0: m.risk.usage(0)}
            meta = {"order_seq": "2", "exec_seq": str(m._exec_seq)}

        async with running() as (cfg2, venues2, m2):
            sent = record_output(m2)
            m2.restore(rows, ids, meta, usage)
            held = m2.hold_at_venue("O1")
            assert held is m2.order("O1")
            assert m2.resubmit_open_orders() == 1            # O2 only
            await asyncio.sleep(0.01)
            book = venues2["VENUE-A"].order_book(cfg.instruments.by_symbol("AAPL"))
            assert len(book) == 1
            assert [o.order_id for o in m2.open_orders()] == ["O1", "O2"]
            m2.on_venue_event(VenueEvent(VenueEventKind.TRADE, "VENUE-A", held.venue_cl_ord_id, "V9",
                                         last_qty=4, last_px=22900, leaves_qty=6, cum_qty=4, exec_id="E1"))
            await m2.drain()
            fills = [o.execution for o in sent if isinstance(o, ExecReport)
                     and o.execution.exec_type is ExecType.TRADE]
            assert [(e.order_id, e.last_qty, e.cum_qty) for e in fills] == [("O1", 4, 4)]
            for bad in ("O9", "O404"):
                try:
                    m2.hold_at_venue(bad)
                except ValueError as e:
                    assert bad in str(e)
                else:
                    raise AssertionError("hold_at_venue accepted an unknown order")

    asyncio.run(scenario())


def _lost_on_the_way(venue, *names):
    """Requests ``names`` of ``venue`` vanish (the server died before they left it)."""
    for name in names:
        setattr(venue, name, lambda *args, **kwargs: None)


def _restart_held_at(venues, cfg, m, rows=None):
    """A second manager over the same (surviving) venues, restored from ``m``'s state (or the
    order ``rows`` given) with every open order held at its venue, as `crossbook serve` does for
    FIX venues."""
    rows = rows if rows is not None else [m._row(o) for o in m.orders.values()]
    ids = [(s, c, o) for (s, c), o in m._by_cl_ord_id.items()]
    meta = {"order_seq": str(m._order_seq), "exec_seq": str(m._exec_seq)}
    for venue in venues.values():   # the new process reaches the venue again
        for name in ("new_order", "cancel_order", "replace_order"):
            vars(venue).pop(name, None)
    m2 = OrderManager(instruments=cfg.instruments, venues=venues, risk=build_risk(cfg), directory=cfg.directory,
                      clock=SystemClock())
    sent = record_output(m2)
    m2.restore(rows, ids, meta, {0: m.risk.usage(0)})
    for order in m2.open_orders():
        m2.hold_at_venue(order.order_id)
    assert m2.resubmit_open_orders() == 0
    return m2, sent


def _reconciled(order, **kw) -> VenueEvent:
    """FixVenue's STATUS closing the reconciliation of ``order`` (live, nothing filled)."""
    from crossbook.routing.fix_venue import RECONCILED
    return VenueEvent(VenueEventKind.STATUS, order.venue, order.venue_cl_ord_id, order.venue_order_id,
                      leaves_qty=order.leaves_qty, cum_qty=order.cum_qty, reason=RECONCILED,
                      ord_status=kw.get("ord_status", 0), reason_code=kw.get("reason_code", 0))


def test_cancel_and_replace_lost_at_a_restart_are_sent_again_on_reconciliation():
    """A cancel and a replace pending at a venue that never got them (the server died first):
    the venue's reconciliation STATUS shows the orders live, so the requests go out again and the
    client gets its Canceled and Replaced."""
    from crossbook.model.orders import ReplaceOrder

    async def scenario():
        async with running() as (cfg, venues, m):
            a = m.new_order(new(cfg, "a"))
            b = m.new_order(new(cfg, "b"))
            c = m.new_order(new(cfg, "c"))
            await asyncio.sleep(0.01)
            await m.drain()
            _lost_on_the_way(venues["VENUE-A"], "cancel_order", "replace_order")
            m.cancel_order(CancelOrder(session="FIRM1", cl_ord_id="a-x", orig_cl_ord_id="a"))
            m.replace_order(ReplaceOrder(session="FIRM1", cl_ord_id="b-r", orig_cl_ord_id="b", qty=20, price=22800))
            await asyncio.sleep(0.01)
            await m.drain()
            assert (a.state, b.state) == (OrderState.PENDING_CANCEL, OrderState.PENDING_REPLACE)

            m2, sent = _restart_held_at(venues, cfg, m)
            for oid in ("O1", "O2", "O3"):
                m2.on_venue_event(_reconciled(m2.order(oid)))
            await asyncio.sleep(0.01)
            await m2.drain()
            a2, b2, c2 = m2.order("O1"), m2.order("O2"), m2.order("O3")
            assert (a2.state, a2.cl_ord_id) == (OrderState.CANCELED, "a-x")
            assert (b2.state, b2.cl_ord_id, b2.qty, b2.price) == (OrderState.NEW, "b-r", 20, 22800)
            assert c2.state is OrderState.NEW
            reports = [(o.execution.cl_ord_id, o.execution.exec_type) for o in sent if isinstance(o, ExecReport)]
            assert reports == [("a-x", ExecType.CANCELED), ("b-r", ExecType.REPLACED)]
            book = venues["VENUE-A"].order_book(cfg.instruments.by_symbol("AAPL"))
            assert len(book) == 2                      # c, and b at its new size (a is gone)
            # A second STATUS (e.g. after another reconnect) sends nothing again.
            m2.on_venue_event(_reconciled(b2))
            await asyncio.sleep(0.01)
            await m2.drain()
            assert len([o for o in sent if isinstance(o, (ExecReport, CancelReject))]) == 2

    asyncio.run(scenario())


def test_order_live_at_its_venue_but_never_acknowledged_here_is_acknowledged_on_reconciliation():
    """The venue acknowledged the order but the server died before storing it (stored PendingNew):
    the reconciliation STATUS shows it live, and the client gets its New."""
    async def scenario():
        async with running() as (cfg, venues, m):
            m.new_order(new(cfg, "p"))
            rows = [m._row(o) for o in m.orders.values()]     # stored before the venue's ack
            await asyncio.sleep(0.01)
            await m.drain()
            m2, sent = _restart_held_at(venues, cfg, m, rows)
            order = m2.order("O1")
            assert order.state is OrderState.PENDING_NEW
            m2.on_venue_event(_reconciled(order))
            await m2.drain()
            assert order.state is OrderState.NEW
            assert [o.execution.exec_type for o in sent if isinstance(o, ExecReport)] == [ExecType.NEW]

    asyncio.run(scenario())


class SyncJournal:
    """A journal that makes each batch durable inside submit() (a same-thread group write): it
    calls on_durable before submit returns, which the journal contract allows."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.in_submit = False

    def submit(self, batch, on_durable) -> None:
        assert not self.in_submit, "submit re-entered from on_durable"
        self.batches.append(batch)
        self.in_submit = True
        try:
            on_durable(batch)
        finally:
            self.in_submit = False


def _lifecycle(journal):
    """New order, ack, client cancel, a second order filled by a third: the outputs and batches."""
    async def scenario():
        async with running(journal) as (cfg, venues, m):
            sent = record_output(m)
            m.new_order(new(cfg, "b1"))
            await asyncio.sleep(0.01)
            m.cancel_order(CancelOrder(session="FIRM1", cl_ord_id="b1c", orig_cl_ord_id="b1"))
            m.new_order(new(cfg, "s1", side=Side.SELL, qty=10, price=23000))
            await asyncio.sleep(0.01)
            m.new_order(new(cfg, "b2", qty=4, price=23000, account="ACC2"))  # ACC1 would self-trade
            await asyncio.sleep(0.01)
            await m.drain()
            assert m.in_flight == 0
            return ([(type(o).__name__, o.execution.exec_id, o.execution.exec_type, o.execution.cum_qty)
                     for o in sent], m, sent)

    return asyncio.run(scenario())


def test_a_journal_that_is_durable_inside_submit_gives_the_same_reports_and_marks():
    """The journal may call on_durable synchronously inside submit(): every report goes out once,
    in the same order, with the same ExecIDs as with a journal that answers on a later loop
    iteration, and the mark of what was sent rides with a following batch."""
    sync = SyncJournal()
    sync_sent, m, reports = _lifecycle(sync)
    memory_sent, _, _ = _lifecycle(None)
    assert sync_sent == memory_sent
    assert [kind for _, _, kind, _ in sync_sent] == [
        ExecType.PENDING_NEW, ExecType.NEW, ExecType.PENDING_CANCEL, ExecType.PENDING_NEW, ExecType.CANCELED,
        ExecType.NEW, ExecType.PENDING_NEW, ExecType.NEW, ExecType.TRADE, ExecType.TRADE]
    stored = [e["exec_id"] for b in sync.batches for e in b.executions]
    assert stored == [exec_id for _, exec_id, _, _ in sync_sent]   # each journaled once, in order
    marks = [json.loads(b.meta["sent_exec_seq"]) for b in sync.batches if "sent_exec_seq" in b.meta]
    assert marks and marks == sorted(marks, key=lambda mk: mk["FIRM1"])
    assert all(b.meta.get("sent_exec_seq") != json.dumps({"FIRM1": max(int(e["seq"]) for e in b.executions)})
               for b in sync.batches if b.executions)   # a batch never carries the mark of its own reports
    assert sync.batches[-1].meta["exec_seq"] == str(m._exec_seq)
    # The journal's rows are exactly the records' to_row(), keys in the same order.
    rows = [e for b in sync.batches for e in b.executions]
    assert [list(r.items()) for r in rows] == [list(o.execution.to_row().items()) for o in reports]
    last_rows = {oid: row for b in sync.batches for oid, row in b.orders.items()}
    for oid, row in last_rows.items():
        expected = m.order(oid).to_row()
        expected["risk_price"] = m._risk_price.get(oid, 0)
        assert list(row.items()) == list(expected.items())


def test_commands_issued_while_reports_are_delivered_inside_submit_go_to_the_next_batch():
    """A sink that acts on a report (here: cancels the order it was told is New) runs inside the
    journal's submit() when the journal is synchronous: the cancel must land in a fresh batch that
    is flushed and delivered in turn, not in the batch being made durable, and not be lost."""
    async def scenario():
        journal = SyncJournal()
        async with running(journal) as (cfg, venues, m):
            sent = []

            def sink(out):
                sent.append(out)
                if isinstance(out, ExecReport) and out.execution.exec_type is ExecType.NEW:
                    m.cancel_order(CancelOrder(session="FIRM1", cl_ord_id="b1c", orig_cl_ord_id="b1"))

            m.set_output_sink(sink)
            m.new_order(new(cfg, "b1"))
            await asyncio.sleep(0.01)
            await m.drain()
            assert [o.execution.exec_type for o in sent] == [
                ExecType.PENDING_NEW, ExecType.NEW, ExecType.PENDING_CANCEL, ExecType.CANCELED]
            assert m.order("O1").state is OrderState.CANCELED and m.in_flight == 0
            per_batch = [[e["exec_type"] for e in b.executions] for b in journal.batches]
            # The cancel is journaled after the batch whose delivery caused it (with the venue's
            # answer, which joins it as the ack joined the PendingNew), each execution once.
            assert [b for b in per_batch if b] == [["A", "0"], ["6", "4"]]

    asyncio.run(scenario())


def test_a_venue_reject_keeps_ord_rej_reason_broker_option_in_its_stored_execution():
    """OrdRejReason 0 (broker option) is a value, not "none": the stored execution keeps it, so a
    report sent again after a restart still carries 103=0 (it was once stored as -1, "none")."""
    async def scenario():
        journal = HoldingJournal()
        async with running(journal) as (cfg, venues, m):
            sent = record_output(m)
            venues["VENUE-A"].reject_ratio = 1.0
            m.new_order(new(cfg, "r1"))
            await asyncio.sleep(0.01)
            m.flush()
            rows = [r for batch, _ in journal.held for r in batch.executions if r["exec_type"] == "8"]
            journal.release()
            rejects = [o for o in sent if o.execution.exec_type is ExecType.REJECTED]
            assert len(rejects) == 1 and rejects[0].execution.reason == "venue"
            assert rejects[0].execution.ord_rej_reason == 0
            assert [r["ord_rej_reason"] for r in rows] == [0]

    asyncio.run(scenario())


def test_a_resent_order_already_held_gets_its_status_and_a_new_duplicate_is_rejected(tmp_path):
    """NewOrderSingle with PossDupFlag=Y (or PossResend=Y) whose ClOrdID the session already used:
    an ExecutionReport with ExecType I and the order's current status, no second order. Without
    either flag the same ClOrdID is a duplicate and rejected (103=6)."""
    async def scenario():
        async with running() as (cfg, venues, m):
            gateway = FixGateway(m, cfg.instruments, cfg.directory)
            sent = record_output(m)   # the reports themselves, instead of the gateway's sink
            clock = TestClock()
            session = Session(SessionSettings(begin_string="FIX.4.4", sender_comp_id="CROSSBOOK",
                                              target_comp_id="FIRM1"),
                              store=FileStore(str(tmp_path), store_name("FIX.4.4", "CROSSBOOK", "FIRM1"),
                                              now=clock.now(), batch=True),
                              clock=clock, application=gateway)
            session.on_connected()
            session.receive(encode(b"FIX.4.4", b"A", [(34, 1), (49, b"FIRM1"), (52, format_timestamp(clock.now())),
                                                      (56, b"CROSSBOOK")], [(98, b"0"), (108, 30)]))
            assert session.is_logged_on
            body = [(11, b"r1"), (1, b"ACC1"), (55, b"AAPL"), (54, b"1"), (38, b"10"), (40, b"2"),
                    (44, b"229.00"), (59, b"0"), (60, format_timestamp(clock.now()))]

            def order(seq: int, extra_header=(), extra_body=()):
                header = [(34, seq), (49, b"FIRM1"), (52, format_timestamp(clock.now())), (56, b"CROSSBOOK"),
                          *extra_header]
                session.receive(encode(b"FIX.4.4", b"D", header, [*body, *extra_body]))

            order(2)
            await asyncio.sleep(0.01)
            await m.drain()
            assert [o.execution.exec_type for o in sent] == [ExecType.PENDING_NEW, ExecType.NEW]
            order(3, extra_header=[(43, b"Y"), (122, format_timestamp(clock.now()))])
            order(4, extra_header=[(97, b"Y")])
            order(5)
            await asyncio.sleep(0.01)
            await m.drain()
            later = [(o.execution.exec_type, o.execution.ord_status, o.execution.order_id, o.ord_rej_reason)
                     for o in sent[2:]]
            assert later[:2] == [(ExecType.ORDER_STATUS, OrdStatus.NEW, "O1", None)] * 2, later
            assert later[2][0] is ExecType.REJECTED and later[2][3] is OrdRejReason.DUPLICATE_ORDER, later
            assert len(m.orders) == 1

    asyncio.run(scenario())
