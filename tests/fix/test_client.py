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
    format_order,
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


def test_status_requests_are_answered_by_status_reports_only():
    tracker, ids = OrderTracker(), ClOrdIdGenerator("T-")
    build_request(parse_command("buy 100 IBM 10"), tracker, ids, "FIX.4.4")
    tracker.on_execution_report(er(t11="T-1", t37="O1", t39="0", t150="0"))
    status = build_request(parse_command("status T-1"), tracker, ids, "FIX.4.4")
    assert status.key == "status T-1" and status.clordid == "T-1"
    assert tracker.unanswered == {"status T-1": "status"}
    # a late fill of the order carries its ClOrdID but is no answer to the status request
    tracker.on_execution_report(er(t11="T-1", t37="O1", t39="1", t150="F", t14="5"))
    assert tracker.unanswered == {"status T-1": "status"}
    # the status report may name any ClOrdID of the chain (or just the OrderID)
    tracker.on_execution_report(er(t37="O1", t39="1", t150="I"))
    assert not tracker.unanswered
    # FIX.4.2 status responses say so with ExecTransType=3
    build_request(parse_command("status O1"), tracker, ids, "FIX.4.2")
    tracker.on_execution_report(er(t11="T-1", t37="O1", t39="1", t150="1", t20="3"))
    assert not tracker.unanswered
    # an order the venue does not know: its Rejected report answers
    unknown = build_request(parse_command("status ZZ symbol=IBM side=buy"), tracker, ids,
                            "FIX.4.4")
    tracker.on_execution_report(er(t11="ZZ", t39="8", t150="8"))
    assert unknown.key == "status ZZ" and not tracker.unanswered
    # a BusinessMessageReject naming it by ClOrdID closes it too
    build_request(parse_command("status ZZ symbol=IBM side=buy"), tracker, ids, "FIX.4.4")
    tracker.on_business_reject(FieldView([(35, "j"), (379, "ZZ"), (380, "3")]))
    assert not tracker.unanswered


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


# ---------------------------------------------------------------- anything typed or received

from hypothesis import given, settings, strategies as st  # noqa: E402

WORDS = st.sampled_from(["send", "buy", "sell", "cancel", "replace", "status", "mass-cancel",
                         "orders", "help", "quit", "K1", "100", "-5", "1e400", "NaN", "IBM",
                         "limit", "market", "stop", "stop-limit", "qty=", "qty=5", "price=x",
                         "tif=gtd", "side=buy", "symbol=IBM", "35=D", "44=", "=", "'", "#",
                         "clordid=K1", "\x01", "9999999999999999999999=1", "text='a b'"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(WORDS, st.text(max_size=8)), max_size=8),
       st.sampled_from(["FIX.4.2", "FIX.4.4", "FIXT.1.1"]))
def test_any_line_is_a_command_or_a_value_error(words, begin):
    tracker, ids = OrderTracker(), ClOrdIdGenerator("K")
    build_request(parse_command("buy 100 IBM 10"), tracker, ids, begin)
    try:
        cmd = parse_command(" ".join(words))
        if cmd is not None and cmd.verb not in ("help", "quit", "orders"):
            request = build_request(cmd, tracker, ids, begin)
            assert all("\x01" not in v and v for _, v in request.fields)
    except ValueError as exc:
        assert str(exc)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([6, 11, 14, 20, 31, 32, 35, 37, 38, 39, 41, 44, 45,
                                           54, 55, 58, 60, 102, 150, 151, 372, 373, 379, 434,
                                           531, 533]),
                          st.one_of(st.sampled_from(["8", "9", "3", "j", "r", "K1", "K2", "x",
                                                     "", "1e999", "NaN", "-1"]),
                                    st.text(max_size=6))), max_size=14))
def test_any_received_message_prints_and_tracks_without_raising(pairs):
    tracker, ids = OrderTracker(), ClOrdIdGenerator("K")
    build_request(parse_command("buy 100 IBM 10"), tracker, ids, "FIX.4.4")
    build_request(parse_command("replace K1 qty=5"), tracker, ids, "FIX.4.4")
    view = FieldView(pairs)
    assert isinstance(format_message(view), str)
    is_rejection(view)
    tracker.on_execution_report(view)
    tracker.on_cancel_reject(view)
    tracker.on_business_reject(view)
    for order in tracker:
        format_order(order)


# ======================================================================================
# The real client (a subprocess) against real acceptors on loopback
# ======================================================================================

import asyncio  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from crossbook.fix.messages import Message  # noqa: E402
from crossbook.fix.session import Application, Session, UnsupportedMessageType  # noqa: E402
from crossbook.fix.settings import SessionSettings  # noqa: E402
from crossbook.fix.transport import Acceptor  # noqa: E402

CLIENT = [sys.executable, "-m", "crossbook.app.cli", "client"]
ER_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} EXEC ")


def client_env(**extra: str) -> dict:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Venue(Application):
    """A small venue behind our acceptor: acks and half-fills limit orders, fills market
    orders at 100, cancels, replaces, answers status and mass cancel, rejects symbol REJECT."""

    def __init__(self) -> None:
        self.received: list[Message] = []         # application messages
        self.admin: list[Message] = []            # admin messages from the client
        self.logons = 0
        self.logouts = 0
        self.orders: dict[bytes, dict] = {}       # every ClOrdID of an order's chain -> order
        self._next = 0

    def on_logon(self, session: Session) -> None:
        self.logons += 1

    def on_logout(self, session: Session) -> None:
        self.logouts += 1

    def from_admin(self, session: Session, message: Message) -> None:
        self.admin.append(message)

    def admin_types(self) -> list[bytes]:
        return [m.msg_type for m in self.admin]

    def _id(self, prefix: str) -> bytes:
        self._next += 1
        return f"{prefix}{self._next}".encode()

    def _report(self, session: Session, order: dict, exec_type: bytes, status: bytes,
                clordid: bytes | None = None, orig: bytes | None = None, last=None,
                text: bytes | None = None) -> None:
        fix42 = session.settings.begin_string == "FIX.4.2"
        if fix42 and exec_type == b"F":
            exec_type = b"2" if order["cum"] >= order["qty"] else b"1"
        leaves = 0 if status in (b"2", b"4", b"8") else order["qty"] - order["cum"]
        avg = order["notional"] / order["cum"] if order["cum"] else 0
        body = [(6, f"{avg:g}"), (11, clordid or order["clordid"]), (14, str(order["cum"])),
                (17, self._id("E")), (37, order["order_id"]), (38, str(order["qty"])),
                (39, status), (40, order["ord_type"]), (54, order["side"]), (55, order["symbol"]),
                (150, exec_type), (151, str(leaves))]
        if fix42:
            body.append((20, b"0"))
        if last:
            body += [(31, last[1]), (32, str(last[0]))]
        if orig:
            body.append((41, orig))
        if order["price"]:
            body.append((44, order["price"]))
        if text:
            body.append((58, text))
        session.send(b"8", sorted(body))

    def from_app(self, session: Session, m: Message) -> None:
        self.received.append(m)
        t = m.msg_type
        if t == b"D":
            order = {"clordid": m[11], "order_id": self._id("O"), "symbol": m[55], "side": m[54],
                     "qty": int(m[38]), "price": m.get(44), "ord_type": m[40], "cum": 0,
                     "notional": 0.0}
            if m[55] == b"REJECT":
                self._report(session, order, b"8", b"8", text=b"unknown symbol")
                return
            self.orders[m[11]] = order
            self._report(session, order, b"0", b"0")
            fill = order["qty"] if order["price"] is None else order["qty"] // 2
            px = order["price"] or b"100"
            if fill:
                order["cum"] += fill
                order["notional"] += fill * float(px)
                order["closed"] = order["cum"] >= order["qty"]
                self._report(session, order, b"F", b"2" if fill == order["qty"] else b"1",
                             last=(fill, px))
        elif t in (b"F", b"G"):
            order = self.orders.get(m.get(41, b""))
            if order is None or order.get("closed"):
                session.send(b"9", [(11, m[11]), (37, b"NONE"), (39, b"8"), (41, m[41]),
                                    (58, b"Unknown order"), (102, b"1"),
                                    (434, b"1" if t == b"F" else b"2")])
                return
            self.orders[m[11]] = order
            orig, order["clordid"] = order["clordid"], m[11]
            if t == b"F":
                order["closed"] = True
                self._report(session, order, b"4", b"4", orig=orig)
            else:
                order["qty"] = int(m[38])
                order["price"] = m.get(44, order["price"])
                order["ord_type"] = m[40]
                self._report(session, order, b"5", b"1" if order["cum"] else b"0", orig=orig)
        elif t == b"H":
            order = self.orders.get(m[11])
            if order is None:
                raise UnsupportedMessageType()
            status = b"4" if order.get("closed") else (b"1" if order["cum"] else b"0")
            self._report(session, order, b"I", status)
        elif t == b"q":
            affected = 0
            for order in {id(o): o for o in self.orders.values()}.values():
                if not order.get("closed"):
                    order["closed"] = True
                    affected += 1
                    self._report(session, order, b"4", b"4")
            session.send(b"r", [(11, m[11]), (37, self._id("M")), (530, m[530]), (531, m[530]),
                                (533, str(affected))])
        else:
            raise UnsupportedMessageType()


def venue_settings(begin: str = "FIX.4.4", **kw) -> SessionSettings:
    extra = {"default_appl_ver_id": "9"} if begin == "FIXT.1.1" else {}
    extra["reset_on_logon"] = True
    extra.update(kw)
    return SessionSettings(begin_string=begin, sender_comp_id="VENUE", target_comp_id="FIRM",
                           **extra)


async def start_venue(settings: SessionSettings | None = None, ssl_context=None):
    venue = Venue()
    acceptor = Acceptor([settings or venue_settings()], venue, host="127.0.0.1", port=0,
                        ssl_context=ssl_context)
    await acceptor.start()
    return venue, acceptor


def flags(port: int, *extra: str, version: str = "4.4") -> list[str]:
    return ["--port", str(port), "--sender", "FIRM", "--target", "VENUE", "--fix-version",
            version, "--reset", "--clordid-prefix", "K", "--settle", "0.3", *extra]


async def client(*args: str, stdin: bytes | None = None, timeout: float = 40,
                 env: dict | None = None):
    """Run ``crossbook client`` to completion: (exit code, stdout lines, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *CLIENT, *args, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or client_env())
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    return proc.returncode, out.decode().splitlines(), err.decode()


def lines_with(lines: list[str], word: str) -> list[str]:
    return [ln for ln in lines if f" {word} " in f" {ln} "]


@pytest.mark.parametrize("version, begin", [("4.2", "FIX.4.2"), ("4.4", "FIX.4.4"),
                                            ("5.0SP2", "FIXT.1.1")])
def test_one_shot_order_gets_ack_and_fill(version, begin):
    async def main():
        venue, acceptor = await start_venue(venue_settings(begin))
        try:
            code, out, err = await client(
                *flags(acceptor.port, version=version), "send", "buy", "100", "AAPL", "limit",
                "187.25", "tif=day", "account=ACC1")
        finally:
            await acceptor.stop()
        assert code == 0, err
        sent = lines_with(out, "SENT")
        assert sent and sent[0].endswith(
            "SENT NewOrderSingle K1 BUY 100 AAPL @187.25 tif=DAY account=ACC1")
        reports = [ln for ln in out if ER_LINE.match(ln)]
        ack_name = "New/New"
        fill_name = "PartialFill/PartiallyFilled" if version == "4.2" else "Trade/PartiallyFilled"
        assert len(reports) == 2, out
        assert f" {ack_name} K1 BUY 100 AAPL @187.25 last=- cum=0 leaves=100 avg=0 " \
               in reports[0] + " "
        assert f" {fill_name} K1 BUY 100 AAPL @187.25 last=50@187.25 cum=50 leaves=50 " \
               "avg=187.25 " in reports[1] + " "
        assert out[-1].endswith("LOGOUT"), out        # the venue's Logout answer
        order = venue.received[0]
        assert (order[11], order[1], order[59], order[44]) == (b"K1", b"ACC1", b"0", b"187.25")
        assert venue.admin_types()[0] == b"A" and venue.admin_types()[-1] == b"5"
        assert venue.logouts == 1

    asyncio.run(main())


def test_one_shot_reject_and_exit_codes():
    async def main():
        venue, acceptor = await start_venue()
        try:
            rejected = await client(*flags(acceptor.port), "sell", "5", "REJECT")
            unknown = await client(*flags(acceptor.port), "cancel", "NOPE", "symbol=IBM",
                                   "side=buy", "qty=5")
            bad = await client(*flags(acceptor.port), "send", "buy", "0", "IBM")
        finally:
            await acceptor.stop()
        code, out, _ = rejected
        assert code == 1
        assert any(" EXEC Rejected/Rejected K1 SELL 5 REJECT MKT " in ln
                   and "text='unknown symbol'" in ln for ln in out), out
        code, out, _ = unknown
        assert code == 1
        assert any("CANCEL-REJECT K1 orig=NOPE for=cancel status=Rejected reason=UnknownOrder "
                   "text='Unknown order'" in ln for ln in out), out
        code, out, err = bad
        assert code == 2 and out == []
        assert "quantity must be greater than zero, got '0'" in err
        assert len(venue.received) == 2               # the bad command never connected

    asyncio.run(main())


def test_interactive_session_tracks_the_clordid_chain():
    script = b"""
help
buy 100 IBM limit 10
replace K1 qty=300 price=10.5
status K1
cancel K1 text='no longer needed'
cancel K2
orders
buy 7 MSFT 3
mass-cancel
frobnicate
send buy 1
replace K9
quit
"""

    async def main():
        venue, acceptor = await start_venue()
        try:
            return venue, await client(*flags(acceptor.port), stdin=script)
        finally:
            await acceptor.stop()

    venue, (code, out, err) = asyncio.run(main())
    assert code == 0, err
    reports = [ln for ln in out if ER_LINE.match(ln)]
    assert [ln.split()[2:4] for ln in reports] == [
        ["New/New", "K1"], ["Trade/PartiallyFilled", "K1"],
        ["Replaced/PartiallyFilled", "K2"], ["OrderStatus/PartiallyFilled", "K2"],
        ["Canceled/Canceled", "K3"],
        ["New/New", "K4"], ["Trade/PartiallyFilled", "K4"], ["Canceled/Canceled", "K4"]]
    assert "orig=K1" in reports[2] and " 300 IBM @10.5 " in reports[2]
    # Piped commands run one after the other, so the second cancel (of K2, which the
    # accepted cancel K3 ended) is refused locally and uses no ClOrdID.
    assert "error: order K2 is already Canceled" in err
    # the cancel went out with OrigClOrdID = the ClOrdID in force after the replace
    cancel = next(m for m in venue.received if m.msg_type == b"F")
    assert (cancel[11], cancel[41], cancel[58]) == (b"K3", b"K2", b"no longer needed")
    status = next(m for m in venue.received if m.msg_type == b"H")
    assert status[11] == b"K2"
    listing = [ln for ln in out if ln.startswith("K3 ")]
    assert listing == ["K3 order=O1 BUY 300 IBM LMT @10.5 status=Canceled cum=50 leaves=0 "
                       "avg=10 chain=K1>K2>K3"]
    assert any("MASS-CANCEL-REPORT K5 response=CancelAll affected=1" in ln for ln in out), out
    assert "Commands (one per line" in "\n".join(out)
    assert "error: unknown command 'frobnicate'" in err
    assert "error: send needs SYMBOL (usage" in err
    assert "error: replace needs at least one change" in err
    assert "Traceback" not in err
    assert venue.admin_types()[-1] == b"5"


def test_ctrl_c_logs_out_cleanly():
    async def main():
        venue, acceptor = await start_venue()
        proc = await asyncio.create_subprocess_exec(
            *CLIENT, *flags(acceptor.port), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=client_env())
        try:
            seen = []
            while True:
                line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
                assert line, f"client ended early: {seen}"
                seen.append(line)
                if line.startswith("logged on to"):
                    break
            proc.stdin.write(b"buy 10 IBM 5\n")
            await proc.stdin.drain()
            while not any(ln.startswith("K1 ") or " EXEC Trade/" in ln for ln in seen):
                seen.append((await asyncio.wait_for(proc.stdout.readline(), 20)).decode())
            proc.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(proc.wait(), 20)
            rest = (await proc.stdout.read()).decode().splitlines()
            err = (await proc.stderr.read()).decode()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await acceptor.stop()
        assert code == 0, err
        assert "interrupted: logging out" in err
        assert rest and rest[-1].endswith("LOGOUT"), rest      # the venue's answer arrived
        assert venue.admin_types()[-1] == b"5"                 # and it saw our Logout
        assert venue.logouts == 1 and venue.logons == 1

    asyncio.run(main())


def test_logon_failures_are_reported_not_raised():
    async def main():
        venue, acceptor = await start_venue(venue_settings(username="u", password="secret"))
        port = acceptor.port
        try:
            wrong_password = await client(*flags(port, "--username", "u", "--password", "bad"),
                                          "status", "X", "symbol=I", "side=buy")
            unknown_compid = await client("--port", str(port), "--sender", "WHO", "--target",
                                          "VENUE", "--reset", "status", "X", "symbol=I",
                                          "side=buy")
            good = await client(*flags(port, "--username", "u", "--password", "secret"),
                                "buy", "1", "IBM")
            from_env = await client(*flags(port, "--username", "u"), "buy", "1", "IBM",
                                    env=client_env(CROSSBOOK_FIX_PASSWORD="secret"))
        finally:
            await acceptor.stop()
        closed = await client("--port", str(port), "--sender", "FIRM", "--target", "VENUE",
                              "buy", "1", "IBM")
        code, out, err = wrong_password
        assert code == 4 and "logon refused: 'Invalid Username or Password'" not in err
        assert "could not log on" in err and "Invalid Username or Password" in err, err
        code, out, err = unknown_compid
        assert code == 4 and "could not log on" in err and "Traceback" not in err
        assert err.rstrip().endswith("(FIX.4.4): connection closed"), err   # closed without a reply
        assert good[0] == 0, good
        assert from_env[0] == 0, from_env
        code, out, err = closed
        assert code == 4 and "connect failed: Connection refused" in err and "Traceback" not in err, err
        # One attempt only: the reason is reported, the client does not retry in silence.
        assert err.count("could not log on") == 1, err

    asyncio.run(main())


def test_silent_acceptor_is_reported_as_a_logon_timeout():
    """A counterparty that takes the connection and never answers the Logon: the engine's
    logon timeout ends the attempt and the client prints why (from the Initiator's API)."""
    async def main():
        held = []

        async def hold(reader, writer):
            held.append(writer)
            await reader.read()

        server = await asyncio.start_server(hold, "127.0.0.1", 0)
        try:
            return await client(*flags(server.sockets[0].getsockname()[1], "--logon-timeout", "1"),
                                "buy", "1", "IBM")
        finally:
            for w in held:
                w.close()
            server.close()
            await server.wait_closed()

    code, out, err = asyncio.run(main())
    assert code == 4, (out, err)
    assert "could not log on" in err and "timed out waiting for logon response" in err, err


def test_usage_errors():
    def run(*args):
        r = subprocess.run([*CLIENT, *args], capture_output=True, text=True, timeout=60)
        return r.returncode, r.stderr

    code, err = run("--sender", "A", "send", "buy", "1", "X")
    assert code == 2 and "missing --port, --target" in err
    code, err = run("--port", "1", "--sender", "A", "--target", "B", "--fix-version", "4.3")
    assert code == 2 and "--fix-version must be one of 4.2, 4.4, 5.0, 5.0SP1, 5.0SP2" in err
    code, err = run("--port", "1", "--sender", "A", "--target", "B", "buy", "1", "X", "--raw")
    assert code == 2 and "options must come before the command: --raw" in err
    code, err = run("--port", "1", "--sender", "A", "--target", "B", "--tls-cert", "c.pem")
    assert code == 2 and "--tls-cert and --tls-key go together" in err
    code, err = run("--config", "/nonexistent.cfg")
    assert code == 2 and "cannot read settings file /nonexistent.cfg" in err
    code, err = run("--port", "1", "--sender", "A", "--target", "B", "orders")
    assert code == 2 and "'orders' is only meaningful at the prompt" in err
    # help needs no counterparty (nothing listens on port 1)
    helped = subprocess.run([*CLIENT, "--port", "1", "--sender", "A", "--target", "B", "help"],
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and helped.stdout.startswith("Commands (one per line")


def test_config_file_and_raw_output(tmp_path):
    async def main():
        venue, acceptor = await start_venue()
        cfg = tmp_path / "client.cfg"
        cfg.write_text(f"""
[default]
ConnectionType=initiator
SocketConnectHost=127.0.0.1
SocketConnectPort={acceptor.port}
HeartBtInt=1
ResetOnLogon=Y

[session venue]
BeginString=FIX.4.4
SenderCompID=FIRM
TargetCompID=VENUE

[session other]
BeginString=FIX.4.2
SenderCompID=FIRM
TargetCompID=ELSEWHERE
""")
        try:
            ambiguous = await client("--config", str(cfg), "buy", "1", "IBM")
            good = await client("--config", str(cfg), "--session", "VENUE", "--raw",
                                "--clordid-prefix", "R", "--settle", "1.5", "buy", "2", "IBM", "3")
        finally:
            await acceptor.stop()
        return ambiguous, good

    ambiguous, (code, out, err) = asyncio.run(main())
    assert ambiguous[0] == 2 and "several initiator sessions (VENUE, ELSEWHERE)" in ambiguous[2]
    assert code == 0, err
    raw_sent = [ln for ln in out if ln.startswith("  > ")]
    raw_received = [ln for ln in out if ln.startswith("  < ")]
    assert raw_sent[0].startswith("  > 8=FIX.4.4|9=") and "|35=D|34=2|49=FIRM|" in raw_sent[0]
    assert "|11=R1|" in raw_sent[0] and raw_sent[0].endswith("|")
    types = [re.search(r"\|35=(\w)\|", ln).group(1) for ln in raw_received]
    assert types[0] == "A" and types.count("8") == 2 and types[-1] == "5"
    # HeartBtInt=1 from the file: the venue's heartbeats show in raw mode
    assert "0" in types


def test_session_rejects_both_ways():
    """An invalid field from us gets the venue's Reject; an invalid report from the venue
    gets ours. Both are printed; the one-shot exit code says the request was refused."""
    class SloppyVenue(Venue):
        def from_app(self, session, m):
            if m.get(55) == b"BROKEN":   # an ExecutionReport without ExecType: invalid
                session.send(b"8", [(6, b"0"), (11, m[11]), (14, b"0"), (17, b"E"), (37, b"O"),
                                    (39, b"0"), (54, b"1"), (55, b"BROKEN"), (151, b"1")])
                return
            super().from_app(session, m)

    async def main():
        venue = SloppyVenue()
        acceptor = Acceptor([venue_settings()], venue, host="127.0.0.1", port=0)
        await acceptor.start()
        try:
            ours_bad = await client(*flags(acceptor.port), "buy", "1", "IBM", "59=Z")
            theirs_bad = await client(*flags(acceptor.port, "--timeout", "2"), "buy", "1",
                                      "BROKEN")
        finally:
            await acceptor.stop()
        return venue, ours_bad, theirs_bad

    venue, (code, out, err), (code2, out2, err2) = asyncio.run(main())
    assert code == 1, (out, err)
    assert any("SESSION-REJECT refseq=2 reftype=NewOrderSingle reftag=59 "
               "reason=ValueIncorrectForTag" in ln for ln in out), out
    assert code2 == 3, (out2, err2)                     # the report never became an answer
    assert any(" SENT SESSION-REJECT refseq=2 reftype=ExecutionReport reftag=150 "
               "reason=RequiredTagMissing" in ln for ln in out2), out2
    assert "no answer to K1 within 2s" in err2
    rejects = [m for m in venue.admin if m.msg_type == b"3"]
    assert len(rejects) == 1 and rejects[0][371] == b"150"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_with_a_self_signed_certificate(tmp_path):
    import ssl
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)

    async def main():
        venue, acceptor = await start_venue(ssl_context=server)
        try:
            trusted = await client(*flags(acceptor.port, "--tls-ca", str(cert)), "buy", "1", "IBM")
            untrusted = await client(*flags(acceptor.port, "--tls", "--logon-timeout", "3"),
                                     "buy", "1", "IBM")
            unchecked = await client(*flags(acceptor.port, "--tls-insecure"), "buy", "1", "IBM")
        finally:
            await acceptor.stop()
        return venue, trusted, untrusted, unchecked

    venue, (code, out, err), (code2, _, err2), unchecked = asyncio.run(main())
    assert code == 0, err
    assert any(" EXEC Trade/Filled K1 BUY 1 IBM " in ln for ln in out), out
    assert code2 == 4 and "CERTIFICATE_VERIFY_FAILED" in err2, err2
    assert unchecked[0] == 0, unchecked
    assert len(venue.received) == 2


def _start_test_server():
    proc = subprocess.Popen([sys.executable, "-m", "crossbook.app.cli", "fix-test-server",
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=client_env())
    line = proc.stdout.readline()
    match = re.search(r"listening on [\d.]+:(\d+)", line)
    if not match:
        proc.kill()
        raise AssertionError(f"fix-test-server did not start: {line!r} {proc.stderr.read()}")
    return proc, int(match.group(1))


@pytest.mark.parametrize("version, sender", [("4.2", "TW42"), ("4.4", "TW44"),
                                             ("5.0SP2", "TW50SP2")])
def test_against_fix_test_server(version, sender):
    proc, port = _start_test_server()
    try:
        base = ["--port", str(port), "--sender", sender, "--target", "ISLD", "--fix-version",
                version, "--clordid-prefix", "T", "--settle", "0.2"]
        echo = subprocess.run([*CLIENT, *base, "--raw", "send", "sell", "10", "IBM", "limit", "99.5"],
                              capture_output=True, text=True, timeout=60)
        # On FIXT the server's BusinessMessageReject carries DefaultApplVerID(1137), as
        # QuickFIX's does, although no FIX.5.0 dictionary defines it for 35=j; the client
        # validates and must take it without a Reject.
        refused = subprocess.run([*CLIENT, *base, "--raw", "status", "ABC", "symbol=IBM",
                                  "side=sell"], capture_output=True, text=True, timeout=60)
        piped = subprocess.run([*CLIENT, *base], input="buy 1 IBM\nbuy 2 IBM 3\n",
                               capture_output=True, text=True, timeout=60)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert echo.returncode == 0, echo.stderr
    assert any(" ORDER-ECHO T1 SELL 10 IBM @99.5" in ln for ln in echo.stdout.splitlines())
    # ResetOnLogon at the server: the Logon answer carries 34=1 and the echo 34=2
    raw_in = [ln for ln in echo.stdout.splitlines() if ln.startswith("  < ")]
    assert "|35=A|34=1|" in raw_in[0] and "|35=D|34=2|" in raw_in[1] and "|35=5|34=3|" in raw_in[2]
    assert refused.returncode == 1
    assert "BUSINESS-REJECT refseq=2 reftype=OrderStatusRequest reason=UnsupportedMessageType" \
        in refused.stdout
    assert "SENT SESSION-REJECT" not in refused.stdout, refused.stdout
    if version.startswith("5"):
        assert any(ln.startswith("  < ") and "|35=j|" in ln and "|1137=9|" in ln
                   for ln in refused.stdout.splitlines()), refused.stdout
    assert piped.returncode == 0, piped.stderr
    assert [ln.split()[1:3] for ln in piped.stdout.splitlines() if "ORDER-ECHO" in ln] == [
        ["ORDER-ECHO", "T1"], ["ORDER-ECHO", "T2"]]


def test_peer_logout_ends_the_client():
    class ClosingVenue(Venue):
        def from_app(self, session, m):
            if m.get(55) == b"BYE":
                session.logout("closing time")
                return
            super().from_app(session, m)

    async def main():
        venue = ClosingVenue()
        acceptor = Acceptor([venue_settings()], venue, host="127.0.0.1", port=0)
        await acceptor.start()
        try:
            one_shot = await client(*flags(acceptor.port), "buy", "1", "BYE")
            piped = await client(*flags(acceptor.port), stdin=b"buy 1 IBM\nbuy 1 BYE\nbuy 2 IBM\n")
        finally:
            await acceptor.stop()
        return one_shot, piped

    (code, out, err), (code2, out2, err2) = asyncio.run(main())
    assert code == 1, (out, err)
    assert any(ln.endswith("LOGOUT text='closing time'") for ln in out), out
    assert "session ended: peer logged out: 'closing time'" in err
    assert code2 == 1, (out2, err2)
    assert "session ended: peer logged out: 'closing time'" in err2
    assert not any(" SENT NewOrderSingle K3 " in ln for ln in out2), out2   # stopped there
    assert "Traceback" not in err + err2


def test_sequence_numbers_persist_with_store(tmp_path):
    """Without --reset, sequence numbers continue across runs only with --store; a
    memory-store client starting again at 1 is logged out by the venue (too low)."""
    async def main():
        venue, acceptor = await start_venue(venue_settings(reset_on_logon=False))
        base = ["--port", str(acceptor.port), "--sender", "FIRM", "--target", "VENUE",
                "--settle", "0.2", "--raw"]
        store = ["--store", str(tmp_path / "store")]
        try:
            first = await client(*base, *store, "--clordid-prefix", "A", "buy", "1", "IBM")
            second = await client(*base, *store, "--clordid-prefix", "B", "buy", "1", "IBM")
            forgetful = await client(*base, "--clordid-prefix", "C", "buy", "1", "IBM")
        finally:
            await acceptor.stop()
        return first, second, forgetful

    first, second, forgetful = asyncio.run(main())
    assert first[0] == 0 and second[0] == 0, (first, second)
    sent_seqs = [int(re.search(r"\|34=(\d+)\|", ln).group(1))
                 for ln in first[1] + second[1] if ln.startswith("  > ")]
    assert sent_seqs == [2, 5]            # Logon 1, order 2, Logout 3; Logon 4, order 5
    assert any(" LOGON heartbeat=30s" in ln for ln in second[1])
    code, out, err = forgetful
    assert code == 4, (out, err)
    assert "MsgSeqNum too low, expecting 7 but received 1" in err
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    bad = subprocess.run([*CLIENT, *flags(1), "--store", str(not_a_dir), "buy", "1", "IBM"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "File exists" in bad.stderr and "Traceback" not in bad.stderr


def test_terminal_prompt_and_ctrl_c():
    """At a terminal: a prompt after each command's output, and Ctrl-C logs out."""
    import pty
    import select

    async def main():
        venue, acceptor = await start_venue()
        master, slave = pty.openpty()
        proc = await asyncio.create_subprocess_exec(
            *CLIENT, *flags(acceptor.port), stdin=slave, stdout=slave, stderr=slave,
            env=client_env(), start_new_session=True)
        os.close(slave)
        loop = asyncio.get_running_loop()
        screen = ""

        def read_some() -> str:
            ready, _, _ = select.select([master], [], [], 0.2)
            try:
                return os.read(master, 4096).decode() if ready else ""
            except OSError:  # the child closed the terminal
                return ""

        async def until(text: str, after: int = 0) -> int:
            nonlocal screen
            deadline = loop.time() + 20
            while text not in screen[after:]:
                assert loop.time() < deadline, f"no {text!r} in:\n{screen}"
                screen += await loop.run_in_executor(None, read_some)
            return screen.index(text, after) + len(text)

        try:
            at = await until("crossbook> ")
            os.write(master, b"buy 10 IBM 5\n")
            at = await until("crossbook> ", at)
            os.write(master, b"nonsense\n")
            at = await until("crossbook> ", at)
            proc.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(proc.wait(), 20)
            screen += await loop.run_in_executor(None, read_some)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            os.close(master)
            await acceptor.stop()
        return code, screen, venue

    code, screen, venue = asyncio.run(main())
    assert code == 0, screen
    prompts = screen.split("crossbook> ")
    # the order's ack and fill print before the next prompt; the error before the third
    assert "EXEC New/New K1" in prompts[1] and "EXEC Trade/PartiallyFilled K1" in prompts[1]
    assert "error: unknown command 'nonsense'" in prompts[2]
    assert "interrupted: logging out" in prompts[3] and "LOGOUT" in prompts[3]
    assert venue.admin_types()[-1] == b"5"
