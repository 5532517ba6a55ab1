"""Cancel (F) and cancel/replace (G) requests resent with PossDupFlag (43=Y) or PossResend (97=Y)
through the FIX gateway (a sans-IO FIX 4.4 session, the real order manager and in-process venue):
when their ClOrdID is already used on the session they are answered with the current status of
the order that ClOrdID belongs to (ExecutionReport ExecType I), as a resent NewOrderSingle is,
not processed again nor answered with a duplicate-ClOrdID OrderCancelReject a client could take
for the fate of its request. A repeat without either flag keeps that reject; a resent request
whose ClOrdID was never taken (its first copy lost, or refused) is handled as new."""
from __future__ import annotations

import asyncio
import contextlib

import pytest

from crossbook.app.config import load_config
from crossbook.app.server import SystemClock, build_risk
from crossbook.fix.messages import encode, format_timestamp
from crossbook.fix.session import Session, TestClock
from crossbook.fix.settings import SessionSettings
from crossbook.fix.store import MemoryStore
from crossbook.model.enums import CxlRejReason, CxlRejResponseTo, ExecType, OrdStatus
from crossbook.oms.gateway import FixGateway
from crossbook.oms.manager import OrderManager
from crossbook.oms.reports import CancelReject, ExecReport
from crossbook.venues import InProcessVenue

POSS_DUP = "PossDupFlag"
POSS_RESEND = "PossResend"


class Client:
    """One FIX 4.4 order-entry session (FIRM1) into a gateway over a real manager; what the
    manager sends back is recorded as outputs (ExecReport / CancelReject), in order."""

    def __init__(self, manager: OrderManager, cfg) -> None:
        self.manager = manager
        self.gateway = FixGateway(manager, cfg.instruments, cfg.directory)
        self.sent: list = []
        self._seen = 0   # outputs already returned by settle()
        manager.set_output_sink(self.sent.append)   # the outputs themselves, instead of the wire
        self.clock = TestClock()
        self.session = Session(SessionSettings(begin_string="FIX.4.4", sender_comp_id="CROSSBOOK",
                                               target_comp_id="FIRM1"),
                               store=MemoryStore(self.clock.now()), clock=self.clock, application=self.gateway)
        self.session.on_connected()
        self.seq = 0
        self.send(b"A", [(98, b"0"), (108, 30)])
        assert self.session.is_logged_on

    def send(self, msg_type: bytes, body: list, flag: str | None = None) -> None:
        self.seq += 1
        now = format_timestamp(self.clock.now())
        header = [(34, self.seq), (49, b"FIRM1"), (52, now), (56, b"CROSSBOOK")]
        if flag == POSS_DUP:
            header += [(43, b"Y"), (122, now)]
        elif flag == POSS_RESEND:
            header.append((97, b"Y"))
        self.session.receive(encode(b"FIX.4.4", msg_type, header, body))

    def new_order(self, cl: str, qty: int = 10, price: str = "229.00") -> None:
        self.send(b"D", [(11, cl.encode()), (1, b"ACC1"), (55, b"AAPL"), (54, b"1"), (38, b"%d" % qty),
                         (40, b"2"), (44, price.encode()), (59, b"0"), (60, format_timestamp(self.clock.now()))])

    def cancel(self, cl: str, orig: str, flag: str | None = None) -> None:
        self.send(b"F", [(41, orig.encode()), (11, cl.encode()), (55, b"AAPL"), (54, b"1"),
                         (60, format_timestamp(self.clock.now()))], flag)

    def replace(self, cl: str, orig: str, qty: object, price: str = "229.00", flag: str | None = None) -> None:
        self.send(b"G", [(41, orig.encode()), (11, cl.encode()), (55, b"AAPL"), (54, b"1"),
                         (60, format_timestamp(self.clock.now())), (38, str(qty).encode()), (40, b"2"),
                         (44, price.encode())], flag)

    async def settle(self) -> list:
        """Everything answered since the last call, once the venue and the journal are done."""
        before = self._seen
        await asyncio.sleep(0.01)
        await self.manager.drain()
        self._seen = len(self.sent)
        return self.sent[before:]


@contextlib.asynccontextmanager
async def client():
    cfg = load_config(None, {"venues": [{"name": "VENUE-A"}, {"name": "VENUE-B"}]})
    clock = SystemClock()
    venues = {v.name: InProcessVenue(v.name, cfg.instruments, clock) for v in cfg.venues}
    manager = OrderManager(instruments=cfg.instruments, venues=venues, risk=build_risk(cfg),
                           directory=cfg.directory, clock=clock)
    for v in venues.values():
        await v.start()
    try:
        yield Client(manager, cfg)
    finally:
        for v in venues.values():
            await v.stop()


def kinds(outputs: list) -> list:
    """Outputs as comparable tuples: (ExecType, OrdStatus, OrderID) / ("9", CxlRejReason)."""
    out = []
    for o in outputs:
        if isinstance(o, ExecReport):
            out.append((o.execution.exec_type, o.execution.ord_status, o.execution.order_id))
        elif isinstance(o, CancelReject):
            out.append(("9", o.reason))
        else:
            out.append(type(o).__name__)
    return out


async def order_canceled(c) -> None:
    """New order o1 (O1), then cancel c1 of it, both handled."""
    c.new_order("o1")
    await c.settle()
    c.cancel("c1", "o1")
    await c.settle()


async def order_replaced(c, qty, price: str = "229.00", flag: str | None = None) -> None:
    """New order o1 (O1), then replace r1 of it, which must be Pending Replace and Replaced."""
    c.new_order("o1")
    await c.settle()
    c.replace("r1", "o1", qty, price, flag)
    assert kinds(await c.settle()) == [(ExecType.PENDING_REPLACE, OrdStatus.PENDING_REPLACE, "O1"),
                                       (ExecType.REPLACED, OrdStatus.NEW, "O1")]


@pytest.mark.parametrize("flag", [POSS_DUP, POSS_RESEND])
def test_a_resent_cancel_already_done_gets_the_canceled_status(flag):
    async def scenario():
        async with client() as c:
            c.new_order("o1")
            assert kinds(await c.settle()) == [(ExecType.PENDING_NEW, OrdStatus.PENDING_NEW, "O1"),
                                               (ExecType.NEW, OrdStatus.NEW, "O1")]
            c.cancel("c1", "o1")
            assert kinds(await c.settle()) == [(ExecType.PENDING_CANCEL, OrdStatus.PENDING_CANCEL, "O1"),
                                               (ExecType.CANCELED, OrdStatus.CANCELED, "O1")]
            c.cancel("c1", "o1", flag)
            answers = await c.settle()
            # The cancel was done: the client hears Canceled, not "your cancel was rejected".
            assert kinds(answers) == [(ExecType.ORDER_STATUS, OrdStatus.CANCELED, "O1")]
            status = answers[0]
            assert status.status_request and status.order_qty == 10 and status.execution.leaves_qty == 0
            c.cancel("c1", "o1")            # the same ClOrdID without a flag: the client's error
            assert kinds(await c.settle()) == [("9", CxlRejReason.DUPLICATE_CL_ORD_ID)]
            assert len(c.manager.orders) == 1

    asyncio.run(scenario())


@pytest.mark.parametrize("flag", [POSS_DUP, POSS_RESEND])
def test_a_resent_replace_already_done_gets_the_replaced_orders_status(flag):
    async def scenario():
        async with client() as c:
            await order_replaced(c, 25, "228.50")
            venue_seq = c.manager.order("O1").venue_seq
            c.replace("r1", "o1", 25, "228.50", flag)
            answers = await c.settle()
            assert kinds(answers) == [(ExecType.ORDER_STATUS, OrdStatus.NEW, "O1")]
            ex = answers[0].execution
            # The order as the replace left it (not replaced a second time).
            assert (answers[0].order_qty, ex.leaves_qty, ex.price, ex.cl_ord_id) == (25, 25, 22_850, "r1")
            order = c.manager.order("O1")
            assert (order.cl_ord_ids, order.venue_seq) == (["o1", "r1"], venue_seq)   # nothing went to the venue
            c.replace("r1", "o1", 25, "228.50")
            assert kinds(await c.settle()) == [("9", CxlRejReason.DUPLICATE_CL_ORD_ID)]

    asyncio.run(scenario())


def test_a_resent_request_is_answered_before_its_fields_are_checked():
    """The first copy was handled: the status answers it whatever the copy carries (here an
    OrderQty a replace would refuse, and an OrigClOrdID that is no longer the order's)."""
    async def scenario():
        async with client() as c:
            c.new_order("o1")
            await c.settle()
            c.replace("r1", "o1", 30)
            await c.settle()
            c.replace("r1", "o1", "1.5", flag=POSS_RESEND)
            assert kinds(await c.settle()) == [(ExecType.ORDER_STATUS, OrdStatus.NEW, "O1")]
            c.cancel("r1", "o1", POSS_DUP)     # a ClOrdID of the chain, reused by an F
            assert kinds(await c.settle()) == [(ExecType.ORDER_STATUS, OrdStatus.NEW, "O1")]
            assert c.manager.order("O1").qty == 30

    asyncio.run(scenario())


def test_a_resent_request_names_the_order_its_cl_ord_id_belongs_to():
    async def scenario():
        async with client() as c:
            c.new_order("o1")
            c.new_order("o2", qty=20)
            await c.settle()
            c.cancel("c2", "o2")
            await c.settle()
            # Sent again naming o1 by mistake: c2 belongs to O2, whose status answers.
            c.cancel("c2", "o1", POSS_RESEND)
            assert kinds(await c.settle()) == [(ExecType.ORDER_STATUS, OrdStatus.CANCELED, "O2")]
            assert c.manager.order("O1").ord_status is OrdStatus.NEW

    asyncio.run(scenario())


@pytest.mark.parametrize("flag", [POSS_DUP, POSS_RESEND])
def test_a_resent_request_whose_first_copy_never_arrived_is_handled(flag):
    async def scenario():
        async with client() as c:
            await order_replaced(c, 15, flag=flag)
            c.cancel("c1", "r1", flag)
            assert kinds(await c.settle()) == [(ExecType.PENDING_CANCEL, OrdStatus.PENDING_CANCEL, "O1"),
                                               (ExecType.CANCELED, OrdStatus.CANCELED, "O1")]

    asyncio.run(scenario())


def test_a_resent_request_whose_first_copy_was_refused_is_refused_again():
    """A refused request takes no ClOrdID (the manager keeps only accepted ones): its resent
    copy is handled again and meets the same answer, not a status that would read as accepted."""
    async def scenario():
        async with client() as c:
            await order_canceled(c)
            c.replace("r1", "o1", 20)
            first = await c.settle()
            assert kinds(first) == [("9", CxlRejReason.TOO_LATE_TO_CANCEL)]
            assert first[0].response_to is CxlRejResponseTo.REPLACE
            c.replace("r1", "o1", 20, flag=POSS_RESEND)
            assert kinds(await c.settle()) == [("9", CxlRejReason.TOO_LATE_TO_CANCEL)]
            assert c.manager.find("FIRM1", "r1") is None

    asyncio.run(scenario())


def test_an_unflagged_known_cl_ord_id_with_a_poss_dup_of_n_is_a_duplicate():
    """Only Y counts: PossDupFlag=N / PossResend=N are plain messages."""
    async def scenario():
        async with client() as c:
            await order_canceled(c)
            c.seq += 1
            now = format_timestamp(c.clock.now())
            c.session.receive(encode(b"FIX.4.4", b"F", [(34, c.seq), (49, b"FIRM1"), (52, now), (56, b"CROSSBOOK"),
                                                        (43, b"N"), (97, b"N")],
                                     [(41, b"o1"), (11, b"c1"), (55, b"AAPL"), (54, b"1"), (60, now)]))
            assert kinds(await c.settle()) == [("9", CxlRejReason.DUPLICATE_CL_ORD_ID)]

    asyncio.run(scenario())
