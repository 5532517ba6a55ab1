"""Write-ahead in OrderManager: for a venue whose orders outlive the OMS (a FixVenue, or a router
that can reach one) the batch holding an order with its venue ClOrdID and the id counters is
durable before the NewOrderSingle (or a replace's new venue ClOrdID) is handed to the venue; an
in-process venue is called at once, as before. No network: the FixVenue's sending is replaced."""
from __future__ import annotations

import asyncio

from crossbook.app.config import load_config
from crossbook.app.server import SystemClock, build_risk
from crossbook.core import OrdType, Side, TimeInForce
from crossbook.model.enums import ExecType, OrderState
from crossbook.model.orders import NewOrder, ReplaceOrder
from crossbook.oms.manager import OrderManager, outlives_oms
from crossbook.routing.fix_venue import FixVenue
from crossbook.routing.router import SmartRouter
from crossbook.routing.venue import VenueEvent, VenueEventKind
from crossbook.venues import InProcessVenue

CFG = load_config(None, {"venues": [{"name": "VENUE-A"}, {"name": "VENUE-B"}]})


class RecordingJournal:
    """A same-thread journal (like SqliteJournal: on_durable inside submit) that notes in ``log``
    what each batch made durable; ``stalled``: batches are taken and never made durable."""

    def __init__(self, log: list) -> None:
        self.log = log
        self.stalled = False

    def submit(self, batch, on_durable) -> None:
        if self.stalled:
            return
        self.log.append(("durable", {oid: (r["state"], r["venue_cl_ord_id"], r["venue_seq"])
                                     for oid, r in batch.orders.items()}, dict(batch.meta)))
        on_durable(batch)


class SendlessFixVenue(FixVenue):
    """A FixVenue that is up and notes each request in ``log`` instead of sending it."""

    def __init__(self, name: str, log: list) -> None:
        super().__init__(name, CFG.instruments, host="127.0.0.1", port=9, sender_comp_id="CROSSBOOK",
                         target_comp_id=name, md_depth=0)
        self.log = log

    @property
    def is_up(self) -> bool:
        return True

    def new_order(self, order) -> None:
        self.log.append(("venue new", order.venue_cl_ord_id))

    def replace_order(self, venue_cl_ord_id, new_venue_cl_ord_id, qty, price) -> None:
        self.log.append(("venue replace", venue_cl_ord_id, new_venue_cl_ord_id, qty, price))


class LoggingInProcessVenue(InProcessVenue):
    def __init__(self, name: str, log: list) -> None:
        super().__init__(name, CFG.instruments, SystemClock())
        self.log = log

    def new_order(self, order) -> None:
        self.log.append(("venue new", order.venue_cl_ord_id))
        super().new_order(order)


def manager_with(venue_a, log: list) -> tuple[OrderManager, RecordingJournal, list]:
    journal = RecordingJournal(log)
    venues = {"VENUE-A": venue_a, "VENUE-B": InProcessVenue("VENUE-B", CFG.instruments, SystemClock())}
    m = OrderManager(instruments=CFG.instruments, venues=venues, risk=build_risk(CFG), directory=CFG.directory,
                     clock=SystemClock(), journal=journal)
    sent: list = []
    m.set_output_sink(lambda out: (sent.append(out), log.append(("report", out.execution.exec_type))))
    return m, journal, sent


def new(cl: str, qty: int = 10) -> NewOrder:
    return NewOrder(session="FIRM1", begin_string="FIX.4.4", cl_ord_id=cl, firm="FIRM1", account="ACC1",
                    instrument_index=CFG.instruments.by_symbol("AAPL").index, side=int(Side.BUY),
                    ord_type=int(OrdType.LIMIT), tif=int(TimeInForce.DAY), qty=qty, price=22900,
                    ex_destination="VENUE-A")


def test_an_order_to_a_fix_venue_is_durable_with_its_venue_id_before_it_is_sent():
    async def scenario():
        log: list = []
        m, _, _ = manager_with(SendlessFixVenue("VENUE-A", log), log)
        m.new_order(new("b1"))
        assert log == []                             # nothing leaves before the batch is durable
        m.note_meta("fix_next_in:FIRM1", "3 0.0")   # what the gateway notes after new_order returns
        # Then at once: the batch (order row with venue ClOrdID O1.1, the order counter and the
        # gateway's mark) is durable, then the NewOrderSingle goes, then the PendingNew report.
        assert log == [("durable", {"O1": ("pending_new", "O1.1", 1)},
                        {"fix_next_in:FIRM1": "3 0.0", "order_seq": "1", "exec_seq": "1"}),
                       ("venue new", "O1.1"), ("report", ExecType.PENDING_NEW)]

    asyncio.run(scenario())


async def new_at_fix_venue(log: list):
    """A manager whose order O1 (b1, 10) went to the FIX venue VENUE-A as O1.1 and is New there."""
    m, _, _ = manager_with(SendlessFixVenue("VENUE-A", log), log)
    m.new_order(new("b1"))
    m.on_venue_event(VenueEvent(VenueEventKind.NEW, "VENUE-A", "O1.1", "V1", leaves_qty=10))
    await m.drain()
    return m


def test_a_replace_at_a_fix_venue_is_durable_with_its_new_venue_id_before_it_is_sent():
    async def scenario():
        log: list = []
        m = await new_at_fix_venue(log)
        assert m.order("O1").state is OrderState.NEW
        log.clear()
        m.replace_order(ReplaceOrder(session="FIRM1", cl_ord_id="r1", orig_cl_ord_id="b1", qty=20, price=22800))
        assert log == []
        await asyncio.sleep(0)
        assert log[:2] == [("durable", {"O1": ("pending_replace", "O1.1", 2)}, {"exec_seq": "3"}),
                           ("venue replace", "O1.1", "O1.2", 20, 22800)]
        assert log[2:] == [("report", ExecType.PENDING_REPLACE)]

    asyncio.run(scenario())


def test_orders_to_a_fix_venue_in_one_loop_round_share_one_journal_record():
    """Without the gateway's mark (orders entered by other callers) the batch goes a loop hop
    later, with every order of the round."""
    async def scenario():
        log: list = []
        m, _, _ = manager_with(SendlessFixVenue("VENUE-A", log), log)
        for cl in ("b1", "b2", "b3"):
            m.new_order(new(cl))
        await asyncio.sleep(0)
        assert [e[0] for e in log] == ["durable", "venue new", "venue new", "venue new"] + ["report"] * 3
        assert sorted(log[0][1]) == ["O1", "O2", "O3"]
        assert [e[1] for e in log[1:4]] == ["O1.1", "O2.1", "O3.1"]

    asyncio.run(scenario())


def test_nothing_goes_to_a_fix_venue_while_the_journal_has_not_made_the_order_durable():
    async def scenario():
        log: list = []
        m, journal, sent = manager_with(SendlessFixVenue("VENUE-A", log), log)
        journal.stalled = True
        m.new_order(new("b1"))
        await asyncio.sleep(0.01)
        assert log == [] and sent == []
        assert m.order("O1").venue_cl_ord_id == "O1.1"   # chosen, stored with the batch that never came back

    asyncio.run(scenario())


def test_an_in_process_venue_is_called_at_once_and_shares_the_commit_with_its_ack():
    async def scenario():
        log: list = []
        venue = LoggingInProcessVenue("VENUE-A", log)
        await venue.start()
        try:
            m, _, _ = manager_with(venue, log)
            m.new_order(new("b1"))
            assert log == [("venue new", "O1.1")]      # no journal write before the venue call
            await m.drain()
            assert log[1:] == [("durable", {"O1": ("new", "O1.1", 1)}, {"order_seq": "1", "exec_seq": "2"}),
                               ("report", ExecType.PENDING_NEW), ("report", ExecType.NEW)]
        finally:
            await venue.stop()

    asyncio.run(scenario())


def test_which_venues_outlive_the_oms():
    log: list = []
    fix = SendlessFixVenue("VENUE-A", log)
    local = InProcessVenue("VENUE-B", CFG.instruments, SystemClock())
    assert outlives_oms(fix) and not outlives_oms(local)
    assert outlives_oms(SmartRouter("SOR", [local, fix]))
    assert not outlives_oms(SmartRouter("LOCAL", [local]))
    assert not outlives_oms(object())


def test_a_held_order_acknowledged_by_its_venue_becomes_new():
    """hold_at_venue(acknowledged=True): a router took a journaled PENDING_NEW parent back with
    its children; the order is acknowledged (New) at once, as the router treats it."""
    async def scenario():
        log: list = []
        m, journal, sent = manager_with(SendlessFixVenue("VENUE-A", log), log)
        m.new_order(new("b1"))
        await asyncio.sleep(0)
        restarted, _, sent2 = manager_with(SendlessFixVenue("VENUE-A", []), [])
        restarted.restore([m._row(m.order("O1"))], [], {"order_seq": "1", "exec_seq": "1"}, {})
        order = restarted.hold_at_venue("O1", acknowledged=True)
        assert order.state is OrderState.NEW
        await restarted.drain()
        assert [o.execution.exec_type for o in sent2] == [ExecType.NEW]
        restarted.resubmit_open_orders()       # held: not sent again
        await restarted.drain()
        assert order.venue_seq == 1 and len(sent2) == 1

    asyncio.run(scenario())


def test_after_a_restart_the_ids_of_a_replace_journaled_before_it_left_reach_the_order():
    """An order restored PENDING_REPLACE (its replace's new venue ClOrdID O1.2 journaled before
    it left) and held at its venue: the venue's Replaced and then a fill under O1.2 both reach
    it. Before, only O1.1 was mapped again: the Replaced came through its OrigClOrdID, the fill
    under the new id was dropped as an event for an unknown order."""
    async def scenario():
        log: list = []
        m = await new_at_fix_venue(log)
        m.replace_order(ReplaceOrder(session="FIRM1", cl_ord_id="r1", orig_cl_ord_id="b1", qty=20, price=22800))
        await asyncio.sleep(0)
        stored = m._row(m.order("O1"))
        assert (stored["state"], stored["venue_cl_ord_id"], stored["venue_seq"]) == ("pending_replace", "O1.1", 2)

        restarted, _, sent = manager_with(SendlessFixVenue("VENUE-A", []), [])
        acc = CFG.directory.accounts["ACC1"].index
        restarted.restore([stored], [], {"order_seq": "1", "exec_seq": "3"}, {acc: m.risk.usage(acc)})
        restarted.hold_at_venue("O1")
        restarted.on_venue_event(VenueEvent(VenueEventKind.REPLACED, "VENUE-A", "O1.2", "V1", leaves_qty=20,
                                            orig_venue_cl_ord_id="O1.1"))
        restarted.on_venue_event(VenueEvent(VenueEventKind.TRADE, "VENUE-A", "O1.2", "V1", last_qty=20,
                                            last_px=22800, exec_id="E1"))
        await restarted.drain()
        order = restarted.order("O1")
        assert (order.state, order.qty, order.price, order.cum_qty) == (OrderState.FILLED, 20, 22800, 20)
        assert [o.execution.exec_type for o in sent] == [ExecType.REPLACED, ExecType.TRADE]

    asyncio.run(scenario())


class FailedJournal:
    """A journal that has failed: every submit is refused, as SqliteJournal's after a bad write."""

    def submit(self, batch, on_durable) -> None:
        raise RuntimeError("journal failed: disk full")


def test_a_failed_journal_refuses_the_batch_without_raising_into_the_client_session(caplog):
    """note_meta flushes a batch holding a write-ahead send inside the FIX read callback: a refused
    batch must not raise there (the transport would drop the client for it, again at every
    resend), nothing reaches the venue, and nothing is counted in flight (drain() would wait)."""
    import logging

    async def scenario():
        log: list = []
        m, _, sent = manager_with(SendlessFixVenue("VENUE-A", log), log)
        m.journal = FailedJournal()
        m.new_order(new("b1"))
        with caplog.at_level(logging.ERROR, logger="crossbook.oms"):
            m.note_meta("fix_next_in:FIRM1", "3 0.0")   # would raise RuntimeError before
        assert log == [] and sent == []                 # neither the venue nor the client hears
        assert m.in_flight == 0
        await m.drain(timeout=0.5)                      # returns: nothing is in flight
        assert any("journal refused a batch" in r.getMessage() for r in caplog.records)

    asyncio.run(scenario())
