"""The gateway's compiled ExecutionReport path (``execution_report_bytes`` + ``Session.send_encoded``)
against its reference (``execution_report_body`` + ``Session.send``): the same bytes on the wire
and in the FIX store, byte for byte, for every kind of report the gateway sends on FIX 4.2, 4.4
and FIXT (trades, statuses, rejects, amends, mass-status answers, PossResend; with and without
instrument, text, stop price, ...)."""
from __future__ import annotations

import tomllib
from decimal import Decimal

import pytest
from hypothesis import given, settings as hyp_settings, strategies as st

from crossbook.app.config import DEFAULT_CONFIG, parse_config
from crossbook.core import OrdType, Side, TimeInForce
from crossbook.fix.messages import to_bytes
from crossbook.fix.session import Session, TestClock
from crossbook.fix.settings import SessionSettings
from crossbook.fix.store import MemoryStore
from crossbook.model.enums import ExecType, OrdRejReason, OrdStatus
from crossbook.model.instruments import DEFAULT_INSTRUMENTS, InstrumentMaster
from crossbook.model.orders import Execution
from crossbook.oms.gateway import FixGateway
from crossbook.oms.reports import ExecReport

BEGIN_STRINGS = ("FIX.4.2", "FIX.4.4", "FIXT.1.1")
EXTRA_INSTRUMENTS = [
    # Tick sizes the defaults lack: whole ticks, very fine ticks, a trailing zero, a put option.
    {"symbol": "TICK5", "asset_class": "equity", "tick_size": "5", "lot_size": 1, "currency": "USD"},
    {"symbol": "SATS", "asset_class": "crypto", "tick_size": "0.00000001", "lot_size": 1, "currency": "USD",
     "multiplier": "0.001"},
    {"symbol": "ZERO", "asset_class": "equity", "tick_size": "0.010", "lot_size": 100, "currency": "EUR"},
    {"symbol": "MSFT", "asset_class": "option", "tick_size": "0.05", "lot_size": 1, "multiplier": "100",
     "currency": "USD", "maturity_month_year": "202703", "expiry": "2027-03-19", "strike": "412.5",
     "put_or_call": "put", "underlying": "MSFT"},
]


class _NoManager:
    """Report building needs no order manager: the gateway only registers its output sink."""

    def set_output_sink(self, send, store) -> None:
        pass


def make_gateway() -> FixGateway:
    cfg = parse_config(tomllib.loads(DEFAULT_CONFIG), "<test>")
    master = InstrumentMaster.from_config(DEFAULT_INSTRUMENTS + [{**e, "venues": ["VENUE-A"]} for e in EXTRA_INSTRUMENTS])
    return FixGateway(_NoManager(), master, cfg.directory)


GATEWAY = make_gateway()
SYMBOLS = [inst.key for inst in GATEWAY.instruments] + ["", "UNKNOWN", "AAPL 20991218 C1"]
latin1 = st.text(st.characters(max_codepoint=255, blacklist_categories=("Cs",)), max_size=12)
ids = st.one_of(st.just(""), latin1, st.from_regex(r"[A-Z0-9-]{1,12}", fullmatch=True))
counts = st.one_of(st.just(0), st.integers(1, 10 ** 6), st.integers(-5, 2 ** 70))
ticks = st.one_of(st.just(0), st.integers(1, 10 ** 7), st.integers(-(2 ** 64), 2 ** 64))

executions = st.builds(
    Execution,
    exec_id=st.from_regex(r"[XS][0-9]{1,8}(-O[0-9]{1,5})?", fullmatch=True),
    order_id=st.one_of(st.just("NONE"), st.from_regex(r"O[0-9]{1,8}", fullmatch=True), latin1),
    seq=st.integers(0, 10 ** 9), cl_ord_id=ids, orig_cl_ord_id=ids, exec_type=st.sampled_from(list(ExecType)),
    ord_status=st.sampled_from(list(OrdStatus)), symbol=st.sampled_from(SYMBOLS),
    side=st.one_of(st.sampled_from([0, 1, 2, Side.BUY, Side.SELL, True, 7, -1]), st.integers(-(2 ** 70), 2 ** 70)),
    qty=counts, price=ticks, last_qty=counts, last_px=ticks, cum_qty=st.one_of(st.just(0), st.integers(1, 10 ** 7)),
    leaves_qty=st.one_of(st.just(0), counts), cum_value=st.one_of(st.integers(0, 10 ** 13), st.integers(0, 2 ** 80)),
    venue=st.sampled_from(["VENUE-A", "VENUE-B", "", "é"]), text=st.one_of(st.just(""), latin1),
    reason=st.just(""), ord_rej_reason=st.integers(-1, 99), ts=st.integers(0, 2 ** 63 - 1),
    account=st.one_of(st.just(""), st.sampled_from(["ACC1", "ACC2"]), latin1), session=st.just("FIRM1"))

reports = st.builds(
    ExecReport, session=st.just("FIRM1"), execution=executions,
    ord_rej_reason=st.one_of(st.none(), st.sampled_from(list(OrdRejReason))),
    mass_status_req_id=st.one_of(st.just(""), ids), tot_num_reports=st.integers(-3, 50),
    last_rpt_requested=st.booleans(), status_request=st.booleans(), order_qty=counts,
    ord_type=st.sampled_from([0, 1, 2, 3, 4, OrdType.LIMIT, OrdType.STOP_LIMIT]), stop_px=ticks,
    tif=st.sampled_from([0, 1, 3, 4, 6, 2, 5, 99, TimeInForce.GTD]), poss_resend=st.booleans())


def reference_bytes(gateway: FixGateway, begin: str, report: ExecReport) -> bytes:
    """The list path's body as Session.send encodes it (bytes as they are, str as latin-1)."""
    return b"".join(b"%d=%s\x01" % (tag, to_bytes(value))
                    for tag, value in gateway.execution_report_body(begin, report))


def outcome(fn):
    try:
        return fn()
    except Exception as exc:  # the two paths must fail alike, too
        return type(exc)


@hyp_settings(max_examples=1500, deadline=None)
@given(st.sampled_from(BEGIN_STRINGS), reports)
def test_body_bytes_are_the_reference_bytes(begin, report):
    expected = outcome(lambda: reference_bytes(GATEWAY, begin, report))
    assert outcome(lambda: GATEWAY.execution_report_bytes(begin, report)) == expected


def typical(exec_type: ExecType, ord_status: OrdStatus, **kw) -> ExecReport:
    """Reports as the order manager makes them (see OrderManager._execution)."""
    ex = dict(exec_id="X17", order_id="O9", seq=17, cl_ord_id="C9", orig_cl_ord_id="", exec_type=exec_type,
              ord_status=ord_status, symbol="AAPL", side=1, qty=100, price=22_900, last_qty=0, last_px=0, cum_qty=0,
              leaves_qty=100, cum_value=0, venue="VENUE-A", text="", reason="", ord_rej_reason=-1,
              ts=1_764_061_200_123_456_789, account="ACC1", session="FIRM1")
    report = dict(order_qty=100, ord_type=int(OrdType.LIMIT), tif=0)
    rej = kw.pop("rej", None)   # the report's OrdRejReason, and the execution's code
    if rej is not None:
        report["ord_rej_reason"], ex["ord_rej_reason"] = rej, rej.value
    for key, value in kw.items():
        (ex if key in Execution._fields else report)[key] = value
    return ExecReport(session="FIRM1", execution=Execution(**ex), **report)


TYPICAL = {
    "pending new": typical(ExecType.PENDING_NEW, OrdStatus.PENDING_NEW),
    "new": typical(ExecType.NEW, OrdStatus.NEW),
    "partial fill": typical(ExecType.TRADE, OrdStatus.PARTIALLY_FILLED, last_qty=30, last_px=22_899, cum_qty=30,
                            leaves_qty=70, cum_value=30 * 22_899),
    "fill, odd average": typical(ExecType.TRADE, OrdStatus.FILLED, last_qty=1, last_px=22_901, cum_qty=3,
                                 leaves_qty=0, cum_value=22_900 * 2 + 22_901),
    "replaced": typical(ExecType.REPLACED, OrdStatus.NEW, cl_ord_id="C10", orig_cl_ord_id="C9", qty=200, order_qty=200),
    "pending cancel": typical(ExecType.PENDING_CANCEL, OrdStatus.PENDING_CANCEL, cl_ord_id="C11", orig_cl_ord_id="C9"),
    "canceled": typical(ExecType.CANCELED, OrdStatus.CANCELED, cl_ord_id="C11", orig_cl_ord_id="C9", leaves_qty=0,
                        text="canceled by the client"),
    "rejected, unknown symbol": typical(ExecType.REJECTED, OrdStatus.REJECTED, symbol="NOPE", price=0, leaves_qty=0,
                                        rej=OrdRejReason.UNKNOWN_SYMBOL,
                                        text="unknown instrument 'NOPE'"),
    "rejected, incorrect quantity": typical(ExecType.REJECTED, OrdStatus.REJECTED, leaves_qty=0,
                                            rej=OrdRejReason.INCORRECT_QUANTITY,
                                            text="OrderQty (38) 1.5 must be a positive whole number"),
    "duplicate ClOrdID": ExecReport("FIRM1", Execution(
        "X3", "NONE", 3, "C9", "", ExecType.REJECTED, OrdStatus.REJECTED, "AAPL", 2, 0, 0, 0, 0, 0, 0, 0, "",
        "duplicate ClOrdID 'C9' on this session", "duplicate", 6, 1_764_061_200_000_000_000, "ACC1", "FIRM1"),
        OrdRejReason.DUPLICATE_ORDER),
    "status": typical(ExecType.ORDER_STATUS, OrdStatus.NEW, exec_id="S4-O9", status_request=True),
    "status, stop limit": typical(ExecType.ORDER_STATUS, OrdStatus.NEW, ord_type=int(OrdType.STOP_LIMIT),
                                  stop_px=23_100, tif=int(TimeInForce.GTD), status_request=True),
    "status, unknown order": ExecReport("FIRM1", Execution(
        "S5-NONE", "NONE", 0, "C404", "", ExecType.ORDER_STATUS, OrdStatus.REJECTED, "", 0, 0, 0, 0, 0, 0, 0, 0, "",
        "unknown order: ClOrdID 'C404'", "unknown", -1, 1_764_061_200_000_000_000, "", "FIRM1"),
        status_request=True),
    "mass status, last": typical(ExecType.ORDER_STATUS, OrdStatus.PARTIALLY_FILLED, cum_qty=10, leaves_qty=90,
                                 cum_value=10 * 22_900, mass_status_req_id="MS1", tot_num_reports=3,
                                 last_rpt_requested=True, status_request=True),
    "mass status, none open": ExecReport("FIRM1", Execution(
        "S6-NONE", "NONE", 0, "", "", ExecType.ORDER_STATUS, OrdStatus.REJECTED, "", 0, 0, 0, 0, 0, 0, 0, 0, "",
        "no open orders", "unknown", -1, 1_764_061_200_000_000_000, "", "FIRM1"),
        mass_status_req_id="MS2", tot_num_reports=0, last_rpt_requested=True, status_request=True),
    "PossResend after a restart": typical(ExecType.NEW, OrdStatus.NEW, poss_resend=True),
    "market order, future": typical(ExecType.NEW, OrdStatus.NEW, symbol="ESZ6", ord_type=int(OrdType.MARKET), price=0),
    "stop order, option": typical(ExecType.NEW, OrdStatus.NEW, symbol="AAPL 20261218 C200",
                                  ord_type=int(OrdType.STOP), price=0, stop_px=3_300, tif=int(TimeInForce.GTC)),
    "fx fill": typical(ExecType.TRADE, OrdStatus.FILLED, symbol="EUR/USD", qty=1000, price=108_000, last_qty=1000,
                       last_px=107_999, cum_qty=1000, leaves_qty=0, cum_value=1000 * 107_999, order_qty=1000),
    "crypto, latin-1 text": typical(ExecType.CANCELED, OrdStatus.CANCELED, symbol="BTC-USD", text="annulé à 9h",
                                    leaves_qty=0),
    "expired": typical(ExecType.EXPIRED, OrdStatus.EXPIRED, leaves_qty=0, tif=int(TimeInForce.GTD)),
    "triggered": typical(ExecType.TRIGGERED, OrdStatus.NEW, ord_type=int(OrdType.STOP_LIMIT), stop_px=22_950),
}


class ListSession(Session):
    """A session without the encoded path: the gateway sends it the field list."""

    send_encoded = None


def sessions(session_class, begin: str):
    clock = TestClock(1_764_061_200.25)
    gateway = make_gateway()
    kw = {"default_appl_ver_id": "9"} if begin == "FIXT.1.1" else {}
    session = session_class(SessionSettings(begin_string=begin, sender_comp_id="CROSSBOOK", target_comp_id="FIRM1",
                                            **kw), store=MemoryStore(clock.now()), clock=clock, application=gateway)
    session.on_connected()
    session.received_logon = session.sent_logon = True   # logged on: reports go out at once
    return gateway, session, clock


@pytest.mark.parametrize("begin", BEGIN_STRINGS)
def test_typical_reports_on_the_wire_and_in_the_store(begin):
    results = []
    for session_class in (ListSession, Session):
        gateway, session, clock = sessions(session_class, begin)
        for report in TYPICAL.values():
            clock.advance(0.0015)
            gateway.send_output(report)
        gateway.store_outputs()
        results.append((session.data_to_send(), session.store.get(1, 100), session.next_sender_seq))
    assert results[0] == results[1]
    wire, stored, next_seq = results[1]
    assert next_seq == len(TYPICAL) + 1 and len(stored) == len(TYPICAL)
    assert wire.count(b"\x0197=Y\x01") == 1     # the PossResend one


@pytest.mark.parametrize("name", list(TYPICAL))
@pytest.mark.parametrize("begin", BEGIN_STRINGS)
def test_typical_report_bodies(begin, name):
    report = TYPICAL[name]
    assert GATEWAY.execution_report_bytes(begin, report) == reference_bytes(GATEWAY, begin, report)


def test_fix42_layout():
    # What the version rules give (read against the FIX 4.2 specification, not just the reference).
    body = GATEWAY.execution_report_bytes("FIX.4.2", TYPICAL["fill, odd average"])
    assert body.startswith(b"37=O9\x0111=C9\x0117=X17\x0120=0\x01150=2\x0139=2\x01")
    assert b"\x016=229.00333333\x01" in body
    status = GATEWAY.execution_report_bytes("FIX.4.2", TYPICAL["status"])
    assert b"\x0120=3\x01150=0\x0139=0\x01" in status
    reject = GATEWAY.execution_report_bytes("FIX.4.2", TYPICAL["rejected, incorrect quantity"])
    assert b"\x01103=0\x01" in reject      # 13 does not exist on 4.2


def test_instrument_fields_follow_the_master():
    body = GATEWAY.execution_report_bytes("FIX.4.4", TYPICAL["stop order, option"])
    assert b"\x0155=AAPL\x01167=OPT\x01200=202612\x01201=1\x01202=200\x01" in body
    assert b"\x0199=33.00\x01" in body and b"\x0144=" not in body
    unknown = GATEWAY.execution_report_bytes("FIX.4.4", TYPICAL["rejected, unknown symbol"])
    assert b"\x0155=NOPE\x0154=1\x01" in unknown and b"\x0144=" not in unknown and unknown.count(b"\x016=0\x01") == 1


def test_unencodable_text_fails_alike():
    report = typical(ExecType.REJECTED, OrdStatus.REJECTED, text="refusé \u20ac")
    with pytest.raises(UnicodeEncodeError):
        reference_bytes(GATEWAY, "FIX.4.4", report)
    with pytest.raises(UnicodeEncodeError):
        GATEWAY.execution_report_bytes("FIX.4.4", report)


def test_report_that_is_not_an_exec_report_is_a_type_error():
    with pytest.raises(TypeError, match="ExecReport"):
        GATEWAY.execution_report_bytes("FIX.4.4", ("FIRM1",))
    with pytest.raises(TypeError, match="Execution"):
        GATEWAY.execution_report_bytes("FIX.4.4", TYPICAL["new"]._replace(execution=("X1",)))
    with pytest.raises(ValueError, match="exec_type"):
        GATEWAY.execution_report_bytes("FIX.4.4", typical("NEW", OrdStatus.NEW))


def test_unknown_symbols_are_remembered_within_bounds():
    gateway = make_gateway()
    for i in range(10_050):
        gateway.execution_report_bytes("FIX.4.4", typical(ExecType.REJECTED, OrdStatus.REJECTED, symbol=f"Z{i}"))
    assert len(gateway._compiled_instruments) <= 10_000
    # Known instruments are always kept.
    gateway.execution_report_bytes("FIX.4.4", TYPICAL["fx fill"])
    assert "EUR/USD" in gateway._compiled_instruments


def test_encoder_needs_the_fields_it_reads():
    from crossbook.fix.codec import ExecutionReportBodyEncoder
    with pytest.raises(ValueError, match="'tif'"):
        ExecutionReportBodyEncoder("FIX.4.4", ExecReport._fields[:-2], Execution._fields, {}, {}, (), {}, dict.get)
    with pytest.raises(ValueError, match="'order_id'"):
        ExecutionReportBodyEncoder("FIX.4.4", ExecReport._fields, ("exec_id",), {}, {}, (), {}, dict.get)
    with pytest.raises(TypeError, match="callable"):
        ExecutionReportBodyEncoder("FIX.4.4", ExecReport._fields, Execution._fields, {}, {}, (), {}, None)


def test_price_text_matches_the_gateway_memo():
    gateway = make_gateway()
    inst = gateway.instruments.by_symbol("ESZ6")
    compiled = gateway._compiled_instrument("ESZ6")
    for t in (1, 24_001, 24_000, 3):
        assert compiled.price_text(t) == gateway._price_text(inst, t)
    assert compiled.fields == b"55=ESZ6\x01167=FUT\x01200=202612\x01"
    assert Decimal(compiled.price_text(24_001).decode()) == Decimal("6000.25")
