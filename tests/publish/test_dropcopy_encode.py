"""Drop copies on the gateway's compiled report path (``execution_report_bytes`` +
``Session.send_encoded``) against the field-list path they took before (``execution_report_body``
+ ``Session.send``, still used for a session object without ``send_encoded``): the same bytes on
each drop-copy session's wire and in its FIX store, byte for byte, sequence numbers included, for
every kind of order event (trades, amends, rejects, statuses; every instrument kind; orders of a
FIX 4.2 session, copied with FIX 4.4 semantics), logged on or not."""
from __future__ import annotations

import tomllib

import pytest
from hypothesis import given, settings as hyp_settings, strategies as st

from crossbook.app.config import DEFAULT_CONFIG, DropCopyConfig, parse_config
from crossbook.core import OrdType, TimeInForce
from crossbook.fix.session import Session, TestClock
from crossbook.fix.settings import SessionSettings
from crossbook.fix.store import MemoryStore
from crossbook.model.enums import ExecType, OrderState, OrdRejReason, OrdStatus
from crossbook.model.events import OrderEvent
from crossbook.model.instruments import DEFAULT_INSTRUMENTS, InstrumentMaster
from crossbook.model.orders import Execution, Order
from crossbook.oms.gateway import FixGateway
from crossbook.oms.reports import ExecReport
from crossbook.publish.dropcopy import COPY_BEGIN_STRING, DropCopyPublisher

CONFIG = parse_config(tomllib.loads(DEFAULT_CONFIG), "<test>")
MASTER = InstrumentMaster.from_config(DEFAULT_INSTRUMENTS + [
    # A put option and a tick size with a trailing zero, which the defaults lack.
    {"symbol": "MSFT", "asset_class": "option", "tick_size": "0.05", "lot_size": 1, "multiplier": "100",
     "currency": "USD", "maturity_month_year": "202703", "expiry": "2027-03-19", "strike": "412.5",
     "put_or_call": "put", "underlying": "MSFT", "venues": ["VENUE-A"]},
    {"symbol": "ZERO", "asset_class": "equity", "tick_size": "0.010", "lot_size": 100, "currency": "EUR",
     "venues": ["VENUE-A"]}])
# DCALL copies every firm; DC2 only FIRM2: an event goes to one or two sessions, encoded once.
COPY_SESSIONS = (DropCopyConfig("DCALL"), DropCopyConfig("DC2", ("FIRM2",)))


class _NoManager:
    """Report building needs no order manager: the gateway only registers its output sink."""

    def set_output_sink(self, send, store) -> None:
        pass


class ListSession(Session):
    """A session without the encoded path: the publisher sends it the field list (the old path)."""

    send_encoded = None


def copy_sessions(session_class, logged_on: bool):
    """A gateway holding the two drop-copy sessions, its publisher, and the shared clock."""
    clock = TestClock(1_764_061_200.25)
    gateway = FixGateway(_NoManager(), MASTER, CONFIG.directory)
    for cfg in COPY_SESSIONS:
        session = session_class(SessionSettings(begin_string="FIX.4.4", sender_comp_id="CROSSBOOK",
                                                target_comp_id=cfg.comp_id),
                                store=MemoryStore(clock.now()), clock=clock, application=gateway)
        session.on_connected()
        if logged_on:
            session.received_logon = session.sent_logon = True   # copies go out at once
        gateway.on_create(session)
    return gateway, DropCopyPublisher(None, gateway, CONFIG.directory, COPY_SESSIONS), clock


def outcome(fn):
    try:
        return fn()
    except Exception as exc:  # the two paths must fail alike, too
        return type(exc)


def publish(session_class, events, logged_on: bool = True):
    """What each drop-copy session sent and stored for ``events``, and the copy counts."""
    gateway, publisher, clock = copy_sessions(session_class, logged_on)
    results = []
    for event in events:
        clock.advance(0.0015)
        results.append(outcome(lambda: publisher.on_event(event)))
    sessions = [gateway.sessions[cfg.comp_id] for cfg in COPY_SESSIONS]
    return results, [(s.data_to_send(), s.store.get(1, 10_000), s.next_sender_seq) for s in sessions], \
        publisher.copies


def order_for(ex: Execution, session: str = "FIRM1", account: str = "ACC1", **kw) -> Order:
    fields = dict(order_id=ex.order_id, seq=ex.seq, session=session, begin_string="FIX.4.4", firm=session,
                  account=account, symbol=ex.symbol, instrument_index=0, side=ex.side, ord_type=int(OrdType.LIMIT),
                  tif=int(TimeInForce.DAY), qty=ex.qty, price=ex.price, cl_ord_id=ex.cl_ord_id,
                  state=OrderState.NEW, cum_qty=ex.cum_qty, leaves_qty=ex.leaves_qty, cum_value=ex.cum_value)
    fields.update(kw)
    return Order(**fields)


def typical(exec_type: ExecType, ord_status: OrdStatus, session: str = "FIRM1", order=None, **kw) -> OrderEvent:
    """An event as the order manager publishes it (see OrderManager._execution)."""
    account = {"FIRM1": "ACC1", "FIRM2": "ACC2", "FIRM42": "ACC42"}[session]
    ex = dict(exec_id="X17", order_id="O9", seq=17, cl_ord_id="C9", orig_cl_ord_id="", exec_type=exec_type,
              ord_status=ord_status, symbol="AAPL", side=1, qty=100, price=22_900, last_qty=0, last_px=0, cum_qty=0,
              leaves_qty=100, cum_value=0, venue="VENUE-A", text="", reason="", ord_rej_reason=-1,
              ts=1_764_061_200_123_456_789, account=account, session=session)
    ex.update(kw)
    execution = Execution(**ex)
    return OrderEvent(execution, order_for(execution, session, account, **(order or {})))


EVENTS = {
    "pending new": typical(ExecType.PENDING_NEW, OrdStatus.PENDING_NEW),
    "new, FIRM2": typical(ExecType.NEW, OrdStatus.NEW, "FIRM2", side=2),
    "partial fill": typical(ExecType.TRADE, OrdStatus.PARTIALLY_FILLED, last_qty=30, last_px=22_899, cum_qty=30,
                            leaves_qty=70, cum_value=30 * 22_899),
    "fill, odd average, FIRM2": typical(ExecType.TRADE, OrdStatus.FILLED, "FIRM2", last_qty=1, last_px=22_901,
                                        cum_qty=3, leaves_qty=0, cum_value=22_900 * 2 + 22_901),
    "fill of a FIX 4.2 session's order": typical(ExecType.TRADE, OrdStatus.FILLED, "FIRM42", last_qty=100,
                                                 last_px=22_900, cum_qty=100, leaves_qty=0, cum_value=100 * 22_900,
                                                 order={"begin_string": "FIX.4.2"}),
    "replaced": typical(ExecType.REPLACED, OrdStatus.NEW, cl_ord_id="C10", orig_cl_ord_id="C9", qty=200,
                        order={"qty": 200}),
    "pending replace": typical(ExecType.PENDING_REPLACE, OrdStatus.PENDING_REPLACE, cl_ord_id="C10",
                               orig_cl_ord_id="C9"),
    "pending cancel": typical(ExecType.PENDING_CANCEL, OrdStatus.PENDING_CANCEL, cl_ord_id="C11", orig_cl_ord_id="C9"),
    "canceled, latin-1 text": typical(ExecType.CANCELED, OrdStatus.CANCELED, cl_ord_id="C11", orig_cl_ord_id="C9",
                                      leaves_qty=0, text="annulé à 9h"),
    "rejected, unknown symbol": typical(ExecType.REJECTED, OrdStatus.REJECTED, symbol="NOPE", price=0, leaves_qty=0,
                                        ord_rej_reason=int(OrdRejReason.UNKNOWN_SYMBOL),
                                        text="unknown instrument 'NOPE'", order={"instrument_index": -1}),
    "rejected, risk, FIRM2": typical(ExecType.REJECTED, OrdStatus.REJECTED, "FIRM2", leaves_qty=0,
                                     ord_rej_reason=int(OrdRejReason.ORDER_EXCEEDS_LIMIT),
                                     text="risk: max_order_qty: 100 > 50"),
    "rejected by the venue, broker option": typical(ExecType.REJECTED, OrdStatus.REJECTED, leaves_qty=0,
                                                    ord_rej_reason=0, text="venue VENUE-A rejected: post only"),
    "a reason no OrdRejReason has": typical(ExecType.REJECTED, OrdStatus.REJECTED, leaves_qty=0, ord_rej_reason=77),
    "market order, future": typical(ExecType.NEW, OrdStatus.NEW, symbol="ESZ6", price=0,
                                    order={"ord_type": int(OrdType.MARKET), "price": 0}),
    "stop limit, GTD": typical(ExecType.NEW, OrdStatus.NEW, order={"ord_type": int(OrdType.STOP_LIMIT),
                                                                   "stop_px": 23_100, "tif": int(TimeInForce.GTD)}),
    "triggered stop, option": typical(ExecType.TRIGGERED, OrdStatus.NEW, symbol="AAPL 20261218 C200", price=0,
                                      order={"ord_type": int(OrdType.STOP), "stop_px": 3_300,
                                             "tif": int(TimeInForce.GTC)}),
    "put option fill": typical(ExecType.TRADE, OrdStatus.FILLED, symbol="MSFT", price=900, last_qty=100,
                               last_px=900, cum_qty=100, leaves_qty=0, cum_value=90_000),
    "fx fill": typical(ExecType.TRADE, OrdStatus.FILLED, symbol="EUR/USD", qty=1000, price=108_000, last_qty=1000,
                       last_px=107_999, cum_qty=1000, leaves_qty=0, cum_value=1000 * 107_999, order={"qty": 1000}),
    "crypto, IOC": typical(ExecType.CANCELED, OrdStatus.CANCELED, symbol="BTC-USD", leaves_qty=0,
                           order={"tif": int(TimeInForce.IOC)}),
    "trailing-zero tick": typical(ExecType.NEW, OrdStatus.NEW, symbol="ZERO", price=123_450),
    "expired": typical(ExecType.EXPIRED, OrdStatus.EXPIRED, leaves_qty=0, order={"tif": int(TimeInForce.GTD)}),
    "done for day": typical(ExecType.EXPIRED, OrdStatus.DONE_FOR_DAY, leaves_qty=0),
    "no ClOrdID, no account": typical(ExecType.CANCELED, OrdStatus.CANCELED, cl_ord_id="", account="",
                                      leaves_qty=0),
}


@pytest.mark.parametrize("logged_on", [True, False], ids=["logged on", "logged out (stored for resend)"])
def test_copies_on_the_wire_and_in_the_stores(logged_on):
    reference = publish(ListSession, EVENTS.values(), logged_on)
    compiled = publish(Session, EVENTS.values(), logged_on)
    assert compiled == reference
    results, per_session, copies = compiled
    assert results == [None] * len(EVENTS)
    firm2 = sum(e.order.session == "FIRM2" for e in EVENTS.values())
    assert copies == {"DCALL": len(EVENTS), "DC2": firm2}
    (wire_all, stored_all, next_all), (wire_2, stored_2, next_2) = per_session
    assert (len(stored_all), next_all, len(stored_2), next_2) == (len(EVENTS), len(EVENTS) + 1, firm2, firm2 + 1)
    sent_all, sent_2 = (b"".join(raw for _, raw in stored) for stored in (stored_all, stored_2))
    assert (wire_all, wire_2) == ((sent_all, sent_2) if logged_on else (b"", b""))


def test_a_copy_is_the_fix44_report_with_the_copy_sessions_header():
    """What the compiled path sends, read against the spec (not only against the old path)."""
    gateway, publisher, clock = copy_sessions(Session, True)
    event = EVENTS["fill of a FIX 4.2 session's order"]
    publisher.on_event(event)
    ((seq, raw),) = gateway.sessions["DCALL"].store.get(1, 1)
    assert seq == 1
    assert raw.startswith(b"8=FIX.4.4\x01")
    head = raw[:raw.index(b"\x0137=") + 1]   # the header ends where the body's OrderID starts
    body = raw[len(head):]
    assert b"\x0135=8\x0134=1\x0149=CROSSBOOK\x0152=" in head and head.endswith(b"\x0156=DCALL\x01797=Y\x01")
    # FIX 4.4 semantics for a 4.2 session's order: ExecType F, no ExecTransType (20).
    assert b"\x01150=F\x0139=2\x01" in body and b"\x0120=" not in body
    report = ExecReport("FIRM42", event.execution, None, order_qty=100, ord_type=int(OrdType.LIMIT), stop_px=0,
                        tif=int(TimeInForce.DAY))
    expected = gateway.execution_report_bytes(COPY_BEGIN_STRING, report)
    assert body == expected + b"10=%03d\x01" % (sum(raw[:-7]) % 256)


def test_a_copy_is_encoded_once_by_the_compiled_path(monkeypatch):
    """One compiled encode per event, shared by every copy session; the field list is built only
    for a session object without send_encoded."""
    calls = []
    for session_class in (Session, ListSession):
        gateway, publisher, clock = copy_sessions(session_class, True)
        for name in ("execution_report_bytes", "execution_report_body"):
            def counted(begin, report, _method=getattr(gateway, name), _name=name):
                calls.append(_name)
                return _method(begin, report)
            monkeypatch.setattr(gateway, name, counted)
        publisher.on_event(EVENTS["new, FIRM2"])      # to DCALL and DC2
        assert publisher.copies == {"DCALL": 1, "DC2": 1}
    assert calls == ["execution_report_bytes", "execution_report_body"]


def test_an_event_of_an_uncopied_firm_sends_nothing_to_a_scoped_session():
    gateway, publisher, clock = copy_sessions(Session, True)
    publisher.on_event(EVENTS["new, FIRM2"])
    publisher.on_event(EVENTS["pending new"])
    assert publisher.copies == {"DCALL": 2, "DC2": 1}
    assert gateway.sessions["DC2"].next_sender_seq == 2


def test_an_unencodable_text_fails_alike_and_sends_nothing():
    event = typical(ExecType.REJECTED, OrdStatus.REJECTED, leaves_qty=0, text="refusé \u20ac")
    reference = publish(ListSession, [event, EVENTS["new, FIRM2"]])
    assert publish(Session, [event, EVENTS["new, FIRM2"]]) == reference
    results, per_session, copies = reference
    assert results == [UnicodeEncodeError, None] and copies == {"DCALL": 1, "DC2": 1}


latin1 = st.text(st.characters(max_codepoint=255, blacklist_categories=("Cs",)), max_size=10)
ids = st.one_of(st.just(""), latin1, st.from_regex(r"[A-Z0-9-]{1,10}", fullmatch=True))
counts = st.one_of(st.just(0), st.integers(1, 10 ** 6), st.integers(-5, 2 ** 66))
ticks = st.one_of(st.just(0), st.integers(1, 10 ** 7), st.integers(-(2 ** 63), 2 ** 63))
SYMBOLS = [inst.key for inst in MASTER] + ["", "UNKNOWN"]


@st.composite
def events(draw):
    session = draw(st.sampled_from(["FIRM1", "FIRM2", "FIRM42", "GONE"]))
    ex = draw(st.builds(
        Execution, exec_id=st.from_regex(r"[XS][0-9]{1,8}", fullmatch=True),
        order_id=st.one_of(st.just("NONE"), st.from_regex(r"O[0-9]{1,8}", fullmatch=True)),
        seq=st.integers(0, 10 ** 9), cl_ord_id=ids, orig_cl_ord_id=ids, exec_type=st.sampled_from(list(ExecType)),
        ord_status=st.sampled_from(list(OrdStatus)), symbol=st.sampled_from(SYMBOLS),
        side=st.sampled_from([0, 1, 2, 7]), qty=counts, price=ticks, last_qty=counts, last_px=ticks,
        cum_qty=st.one_of(st.just(0), st.integers(1, 10 ** 7)), leaves_qty=counts,
        cum_value=st.integers(0, 2 ** 70), venue=st.sampled_from(["VENUE-A", "", "é"]),
        text=st.one_of(st.just(""), latin1),
        reason=st.just(""), ord_rej_reason=st.integers(-1, 99), ts=st.integers(0, 2 ** 63 - 1),
        account=st.sampled_from(["", "ACC1", "ACC2", "ACC42"]), session=st.just(session)))
    order = order_for(ex, session, draw(st.sampled_from(["ACC1", "ACC2", "ACC42", "NOBODY"])),
                      qty=draw(counts), ord_type=draw(st.sampled_from([0, 1, 2, 3, 4])),
                      tif=draw(st.sampled_from([0, 1, 3, 4, 6, 2, 99])), stop_px=draw(ticks))
    return OrderEvent(ex, order)


@hyp_settings(max_examples=250, deadline=None)
@given(st.lists(events(), min_size=1, max_size=4), st.booleans())
def test_any_events_same_bytes(batch, logged_on):
    assert publish(Session, batch, logged_on) == publish(ListSession, batch, logged_on)
