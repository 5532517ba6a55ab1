"""Tests for ``crossbook client``.

The first half checks the socket-free pieces (command grammar, requests per FIX version,
ClOrdID chains, printing); the second half runs the real client as a subprocess against
real acceptors on loopback: ``crossbook fix-test-server`` and an in-process acceptor with a
small order-answering application.
"""
from __future__ import annotations

from decimal import Decimal

import pytest

from crossbook.fix.client import (
    ClOrdIdGenerator,
    FieldView,
    OrderTracker,
    build_request,
    format_message,
    is_rejection,
    parse_command,
)


def fields_of(request):
    return dict(request.fields)


def er(**tags):
    """An ExecutionReport FieldView from tag=value keywords (t11=... style)."""
    pairs = [(35, "8")] + [(int(k[1:]), v) for k, v in tags.items()]
    return FieldView(pairs)


# ---------------------------------------------------------------- grammar

def test_send_full_form_builds_limit_order_with_options():
    cmd = parse_command("send buy 100 AAPL limit 187.25 tif=day account=ACC1")
    assert (cmd.verb, cmd.side, cmd.quantity, cmd.symbol, cmd.ord_type, cmd.price) == (
        "send", "1", Decimal(100), "AAPL", "2", Decimal("187.25"))
    req = build_request(cmd, OrderTracker(), ClOrdIdGenerator("T-"), "FIX.4.4", now=0)
    assert req.msg_type == "D"
    assert req.clordid == "T-1"
    assert req.fields == (
        (1, "ACC1"), (11, "T-1"), (21, "1"), (38, "100"), (40, "2"), (44, "187.25"),
        (54, "1"), (55, "AAPL"), (59, "0"), (60, "19700101-00:00:00.000"))


@pytest.mark.parametrize("line, ord_type, price, stop", [
    ("sell 5 MSFT", "1", None, None),
    ("send sell 5 MSFT market", "1", None, None),
    ("buy 5 MSFT 10.5", "2", "10.5", None),
    ("buy 5 MSFT stop 9", "3", None, "9"),
    ("short 5 MSFT stop-limit 9 8.5", "4", "8.5", "9"),
])
def test_order_types(line, ord_type, price, stop):
    cmd = parse_command(line)
    req = fields_of(build_request(cmd, OrderTracker(), ClOrdIdGenerator("T-"), "FIX.4.2"))
    assert req[40] == ord_type
    assert req.get(44) == price
    assert req.get(99) == stop


def test_numeric_tags_pass_through_and_override():
    cmd = parse_command("buy 10 X 1.5 100=XNAS 21=3")
    req = build_request(cmd, OrderTracker(), ClOrdIdGenerator("T-"), "FIX.4.4")
    f = fields_of(req)
    assert f[100] == "XNAS"
    assert f[21] == "3"                              # overrode the default HandlInst
    assert [t for t, _ in req.fields].count(21) == 1


def test_quoted_text_and_comments():
    cmd = parse_command("buy 1 X text='hello world'  # trailing comment")
    assert cmd.option("text") == "hello world"
    assert parse_command("   ") is None
    assert parse_command("# only a comment") is None


@pytest.mark.parametrize("line, message", [
    ("send buy", "send needs QTY SYMBOL"),
    ("send hold 1 X", "side must be one of"),
    ("send buy -1 X", "quantity must be greater than zero"),
    ("send buy abc X", "quantity must be a number, got 'abc'"),
    ("send buy NaN X", "quantity must be a finite number"),
    ("send buy 1 X limit", "limit order takes one price"),
    ("send buy 1 X limit abc", "limit price must be a number, got 'abc'"),
    ("send buy 1 X stop-limit 9", "stop-limit order takes a stop price and a limit price"),
    ("send buy 1 X banana", "expected an order type"),
    ("send buy 1 X tif=never", "tif must be one of"),
    ("send buy 1 X tif=gtd", "tif=gtd needs expire="),
    ("send buy 1 X foo=1", "unknown option 'foo' for send"),
    ("send buy 1 X 35=D", "tag 35 is set by the session layer"),
    ("send buy 1 X 0=1", "tag number must be positive"),
    ("send buy 1 X 58=", "value of 58 is empty"),
    ("send buy 1 X =1", "has no name before '='"),
    ("send buy 1 X tif=day 100", "comes after key=value words"),
    ("send buy 1 'unterminated", "cannot split the line into words"),
    ("cancel", "cancel needs the ClOrdID"),
    ("cancel A B", "cancel takes one order reference"),
    ("replace A", "replace needs at least one change"),
    ("replace A qty=x", "qty must be a number"),
    ("replace A type=iceberg", "type must be one of"),
    ("status A side=up", "side must be one of"),
    ("mass-cancel A B", "mass-cancel takes at most one word"),
    ("orders now", "'orders' takes no arguments"),
    ("frobnicate", "unknown command 'frobnicate'"),
])
def test_bad_lines_name_the_problem(line, message):
    with pytest.raises(ValueError) as info:
        parse_command(line)
    assert message in str(info.value)


def test_verbs_and_aliases():
    assert parse_command("HELP").verb == "help"
    assert parse_command("?").verb == "help"
    for word in ("quit", "exit", "logout"):
        assert parse_command(word).verb == "quit"
    assert parse_command("mass_cancel IBM").symbol == "IBM"


# ---------------------------------------------------------------- requests and versions

def test_mass_cancel_all_and_by_symbol_and_not_on_fix42():
    tracker, ids = OrderTracker(), ClOrdIdGenerator("T-")
    all_orders = fields_of(build_request(parse_command("mass-cancel"), tracker, ids, "FIX.4.4"))
    assert all_orders[530] == "7" and 55 not in all_orders
    one = build_request(parse_command("mass-cancel IBM"), tracker, ids, "FIXT.1.1")
    assert one.msg_type == "q" and fields_of(one)[530] == "1" and fields_of(one)[55] == "IBM"
    with pytest.raises(ValueError, match="does not exist in FIX.4.2"):
        build_request(parse_command("mass-cancel"), tracker, ids, "FIX.4.2")


def test_cancel_replace_chain_follows_accepted_requests_only():
    tracker, ids = OrderTracker(), ClOrdIdGenerator("T-")
    build_request(parse_command("buy 100 IBM 10"), tracker, ids, "FIX.4.4")
    order = tracker.find("T-1")
    tracker.on_execution_report(er(t11="T-1", t37="O1", t39="0", t150="0", t14="0", t151="100"))
    assert tracker.find("O1") is order and order.ord_status == "0"

    # replace -> accepted: T-2 becomes the ClOrdID in force, new qty/price applied
    rep = build_request(parse_command("replace T-1 qty=200 price=11"), tracker, ids, "FIX.4.4")
    f = fields_of(rep)
    assert (rep.msg_type, f[11], f[41], f[37], f[38], f[44], f[21]) == (
        "G", "T-2", "T-1", "O1", "200", "11", "1")
    assert order.clordid == "T-1"                  # not yet: only on acceptance
    tracker.on_execution_report(er(t11="T-2", t41="T-1", t37="O1", t39="0", t150="5",
                                   t38="200", t151="200"))
    assert order.clordid == "T-2" and order.quantity == 200 and order.price == Decimal(11)
    assert order.chain == ["T-1", "T-2"]

    # cancel -> rejected: the order keeps T-2
    can = build_request(parse_command("cancel T-1"), tracker, ids, "FIX.4.4")
    assert fields_of(can)[41] == "T-2"             # any chain member finds the order
    assert tracker.unanswered == {"T-3": "cancel"}
    tracker.on_cancel_reject(FieldView([(35, "9"), (11, "T-3"), (41, "T-2"), (39, "0"),
                                        (434, "1"), (102, "0")]))
    assert order.clordid == "T-2" and not order.pending and not tracker.unanswered

    # cancel -> accepted: terminal; further requests refused locally
    build_request(parse_command("cancel O1"), tracker, ids, "FIX.4.4")
    tracker.on_execution_report(er(t11="T-4", t41="T-2", t37="O1", t39="4", t150="4"))
    assert order.clordid == "T-4" and order.is_terminal
    with pytest.raises(ValueError, match="already Canceled"):
        build_request(parse_command("replace T-4 qty=5"), tracker, ids, "FIX.4.4")
    # status is still allowed, and reuses the order's ClOrdID
    status = build_request(parse_command("status T-1"), tracker, ids, "FIX.4.4")
    assert status.msg_type == "H" and fields_of(status)[11] == "T-4"


def test_requests_for_orders_of_another_session():
    tracker, ids = OrderTracker(), ClOrdIdGenerator("T-")
    with pytest.raises(ValueError, match="unknown order 'X9'"):
        build_request(parse_command("cancel X9"), tracker, ids, "FIX.4.2")
    req = build_request(parse_command("cancel X9 symbol=IBM side=sell qty=10"), tracker, ids,
                        "FIX.4.2")
    assert fields_of(req) | {60: ""} == {11: "T-1", 38: "10", 41: "X9", 54: "2", 55: "IBM",
                                         60: ""}
    with pytest.raises(ValueError, match="qty= is required"):
        build_request(parse_command("replace X9 price=3 symbol=IBM side=buy"), tracker, ids,
                      "FIX.4.2")


def test_duplicate_explicit_clordid_refused():
    tracker, ids = OrderTracker(), ClOrdIdGenerator("T-")
    build_request(parse_command("buy 1 X clordid=MINE"), tracker, ids, "FIX.4.4")
    with pytest.raises(ValueError, match="'MINE' was already used"):
        build_request(parse_command("buy 1 X clordid=MINE"), tracker, ids, "FIX.4.4")


def test_generated_clordids_differ_between_runs():
    a = ClOrdIdGenerator(now_ms=1_700_000_000_000)
    b = ClOrdIdGenerator(now_ms=1_700_000_000_001)
    assert a.next() != b.next()
    assert a.next().endswith("-2")


# ---------------------------------------------------------------- printing

def test_execution_report_line_has_every_piece():
    line = format_message(FieldView.from_raw(
        "8=FIX.4.4\x0135=8\x016=11.25\x0111=QF-1\x0114=50\x0117=X2\x0131=11.25\x0132=50\x01"
        "37=O1\x0138=100\x0139=1\x0144=11.25\x0154=1\x0155=IBM\x0158=part\x01"
        "60=20261125-08:17:30.967\x01150=F\x01151=50\x01"))
    assert line == ("08:17:30.967 EXEC Trade/PartiallyFilled QF-1 BUY 100 IBM @11.25 "
                    "last=50@11.25 cum=50 leaves=50 avg=11.25 order=O1 text='part'")


def test_rejects_are_readable_and_recognised():
    cxl = FieldView.from_raw("35=9|11=T-3|41=T-2|39=0|434=2|102=1|58=Unknown order|")
    assert format_message(cxl) == ("- CANCEL-REJECT T-3 orig=T-2 for=replace status=New "
                                   "reason=UnknownOrder text='Unknown order'")
    rej = FieldView.from_raw("35=3|52=20261125-08:00:00.000|45=7|371=55|372=D|373=1|"
                             "58=Required tag missing|")
    assert format_message(rej) == ("08:00:00.000 SESSION-REJECT refseq=7 reftype=NewOrderSingle "
                                   "reftag=55 reason=RequiredTagMissing "
                                   "text='Required tag missing'")
    bmr = FieldView.from_raw("35=j|45=3|372=H|380=3|58=Unsupported Message Type|")
    assert "BUSINESS-REJECT refseq=3 reftype=OrderStatusRequest reason=UnsupportedMessageType" \
        in format_message(bmr)
    assert all(map(is_rejection, (cxl, rej, bmr)))
    assert is_rejection(er(t150="8", t39="8"))
    assert not is_rejection(er(t150="I", t39="8"))   # status of an order rejected earlier
    assert not is_rejection(er(t150="0", t39="0"))


def test_from_raw_never_raises_on_garbage():
    view = FieldView.from_raw(b"\xff\x00garbage=|=|35|abc=def\x01")
    assert view.msg_type == ""
    assert isinstance(format_message(view), str)
