"""Interoperability with a real QuickFIX engine (Debian's libquickfix-dev 1.15).

* a QuickFIX initiator logs on to our acceptor, sends NewOrderSingles, gets answers,
  exchanges heartbeats and logs out (FIX.4.2, FIX.4.4, FIX.5.0SP2);
* ``crossbook client`` logs on to a QuickFIX acceptor and trades an order through its
  whole life (new, fill, replace, status, cancel, mass cancel);
* a QuickFIX-to-QuickFIX run of the same programs is the control: if it fails, the
  harness is broken, not our engine.

The C++ programs live in tests/fix/interop/ and are compiled at run time (cached by
source hash); the tests skip with the reason when g++ or libquickfix-dev is missing.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "interop"))
import qfharness  # noqa: E402

REASON = qfharness.missing_toolchain()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"QuickFIX interop: {REASON}")

# HeartBtInt of the QuickFIX initiators. Both ends drop a session after 2.4 x HeartBtInt of
# silence and QuickFIX checks its timers once a second, so HeartBtInt=1 left about 1.4 s for
# a process stalled by a loaded machine (the flaky failures); 2 leaves about 3.8 s.
HEARTBEAT = 2
# Heartbeats the QuickFIX initiator waits for (from the peer / sent itself) before logging
# out: conditions, so the assertions about heartbeats never depend on the timers' phase.
HEARTBEATS_RECEIVED = 1
HEARTBEATS_SENT = 1

VERSIONS = {  # name -> (BeginString, DefaultApplVerID for QuickFIX settings)
    "4.2": ("FIX.4.2", None),
    "4.4": ("FIX.4.4", None),
    "5.0SP2": ("FIXT.1.1", "FIX.5.0SP2"),
}


@pytest.fixture(scope="module")
def qf_initiator():
    return qfharness.build("qf_initiator")


@pytest.fixture(scope="module")
def qf_acceptor():
    return qfharness.build("qf_acceptor")


def check_clean_initiator_run(code: int, log: qfharness.EventLog, orders: int) -> dict:
    """What every successful qf_initiator run must show; returns its RESULT numbers."""
    result = log.line("RESULT ")
    assert code == 0 and result and result.startswith("RESULT ok"), str(log)
    numbers = qfharness.key_values(result)
    sent = log.messages("SENT")
    received = log.messages("RECV")
    # Sequence numbers: every message QuickFIX sent/accepted is numbered 1, 2, 3 ... with no
    # gap, and QuickFIX's own counters agree (ResetOnLogon=Y on both sides).
    assert [int(m[34]) for m in sent] == list(range(1, len(sent) + 1)), str(log)
    assert [int(m[34]) for m in received] == list(range(1, len(received) + 1)), str(log)
    assert int(numbers["next_sender"]) == len(sent) + 1
    assert int(numbers["next_target"]) == len(received) + 1
    assert not log.messages("RECV", "3") and not log.messages("RECV", "j"), str(log)
    assert not log.messages("SENT", "3"), str(log)
    assert len(log.messages("SENT", "D")) == orders
    assert log.messages("RECV", "A") and log.messages("RECV", "5")
    assert len(log.messages("RECV", "0")) >= HEARTBEATS_RECEIVED, "no Heartbeat from the peer"
    assert len(log.messages("SENT", "0")) >= HEARTBEATS_SENT, str(log)
    return numbers


@pytest.mark.parametrize("version", ["4.2", "4.4", "5.0SP2"])
def test_control_quickfix_initiator_to_quickfix_acceptor(version, qf_initiator, qf_acceptor,
                                                         tmp_path):
    begin, appl_ver = VERSIONS[version]
    acceptor, port = qfharness.start_acceptor(qf_acceptor, lambda port: qfharness.write_settings(
        tmp_path / "acc.cfg", role="acceptor", begin_string=begin, sender="ISLD", target="TW",
        port=port, log_dir=tmp_path / "acc-log", default_appl_ver_id=appl_ver))
    ini_cfg = qfharness.write_settings(tmp_path / "ini.cfg", role="initiator", begin_string=begin,
                                       sender="TW", target="ISLD", port=port, heartbeat=HEARTBEAT,
                                       log_dir=tmp_path / "ini-log",
                                       default_appl_ver_id=appl_ver)
    with acceptor:
        code, log = qfharness.run_initiator(qf_initiator, ini_cfg, orders=3,
                                            heartbeats=HEARTBEATS_RECEIVED,
                                            sent_heartbeats=HEARTBEATS_SENT)
        acc_log = acceptor.stop()
    check_clean_initiator_run(code, log, orders=3)
    # The acceptor acked and part-filled each order: New + Trade reports per order.
    reports = log.messages("RECV", "8")
    assert [r[11] for r in reports] == ["QF-1", "QF-1", "QF-2", "QF-2", "QF-3", "QF-3"]
    assert len(acc_log.messages("RECV", "D")) == 3
    summary = qfharness.key_values(acc_log.line("SUMMARY "))
    assert int(summary["next_target"]) == len(log.messages("SENT")) + 1


# ---------------------------------------------------------------- QuickFIX initiator -> our acceptor

import asyncio  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402

from crossbook.fix.settings import SessionSettings  # noqa: E402
from crossbook.fix.testserver import AcceptanceTestApplication  # noqa: E402
from crossbook.fix.transport import Acceptor  # noqa: E402

OUR_VERSIONS = {  # name -> (BeginString, counterparty CompID of fix-test-server, ApplVerID digit)
    "4.2": ("FIX.4.2", "TW42", None),
    "4.4": ("FIX.4.4", "TW44", None),
    "5.0SP2": ("FIXT.1.1", "TW50SP2", "9"),
}


class RecordingTestApplication(AcceptanceTestApplication):
    """The fix-test-server application, recording what our side saw and sent."""

    def __init__(self) -> None:
        super().__init__()
        self.app_in: list = []
        self.admin_in: list[bytes] = []
        self.admin_out: list[bytes] = []
        self.logons = 0
        self.logouts = 0

    def on_logon(self, session) -> None:
        self.logons += 1

    def on_logout(self, session) -> None:
        self.logouts += 1
        super().on_logout(session)

    def from_admin(self, session, message) -> None:
        self.admin_in.append(message.msg_type)

    def to_admin(self, session, msg_type, body) -> None:
        self.admin_out.append(msg_type)

    def from_app(self, session, message) -> None:
        self.app_in.append(message)
        super().from_app(session, message)


def initiator_settings(tmp_path, version: str, port: int) -> Path:
    begin, compid, _ = OUR_VERSIONS[version]
    appl = VERSIONS[version][1]
    return qfharness.write_settings(tmp_path / "ini.cfg", role="initiator", begin_string=begin,
                                    sender=compid, target="ISLD", port=port, heartbeat=HEARTBEAT,
                                    log_dir=tmp_path / "ini-log", default_appl_ver_id=appl)


@pytest.mark.parametrize("version", ["4.2", "4.4", "5.0SP2"])
def test_quickfix_initiator_to_our_acceptor(version, qf_initiator, tmp_path):
    """In-process acceptor (fix-test-server's settings and application) so that our side's
    view can be checked too: what it received, what it sent, its sequence numbers."""
    begin, compid, appl = OUR_VERSIONS[version]
    orders = 4

    async def main():
        app = RecordingTestApplication()
        settings = SessionSettings(begin_string=begin, sender_comp_id="ISLD",
                                   target_comp_id=compid, default_appl_ver_id=appl,
                                   reset_on_logon=True, socket_accept_host="127.0.0.1",
                                   socket_accept_port=0)
        acceptor = Acceptor([settings], app)
        await acceptor.start()
        try:
            cfg = initiator_settings(tmp_path, version, acceptor.port)
            code, log = await asyncio.get_running_loop().run_in_executor(
                None, lambda: qfharness.run_initiator(qf_initiator, cfg, orders=orders,
                                                      heartbeats=HEARTBEATS_RECEIVED,
                                                      sent_heartbeats=HEARTBEATS_SENT))
            session = acceptor.session()
            return app, code, log, session.next_sender_seq, session.next_target_seq
        finally:
            await acceptor.stop()

    app, code, log, our_next_sender, our_next_target = asyncio.run(main())
    numbers = check_clean_initiator_run(code, log, orders)
    # QuickFIX got every order echoed back (fix-test-server's `at` application)
    echoes = log.messages("RECV", "D")
    assert [e[11] for e in echoes] == [f"QF-{n}" for n in range(1, orders + 1)]
    assert all(e[49] == "ISLD" and e[56] == compid for e in echoes)
    if appl:
        logon = log.messages("RECV", "A")[0]
        assert logon[1137] == appl
    # our side: every order arrived, QuickFIX's heartbeats and Logout too, no Reject sent
    assert [m[11] for m in app.app_in] == [f"QF-{n}".encode() for n in range(1, orders + 1)]
    assert app.admin_in[0] == b"A" and app.admin_in[-1] == b"5"
    assert app.admin_in.count(b"0") >= HEARTBEATS_SENT
    assert b"3" not in app.admin_out and b"j" not in app.admin_out
    assert app.logons == 1 and app.logouts == 1
    # both sides agree on the sequence numbers at the end
    assert our_next_target == int(numbers["next_sender"])
    assert our_next_sender == int(numbers["next_target"])


@pytest.mark.parametrize("version", ["4.2", "4.4"])
def test_quickfix_initiator_to_fix_test_server_command(version, qf_initiator, tmp_path):
    """The same exchange against the real `crossbook fix-test-server` process."""
    server = subprocess.Popen([sys.executable, "-m", "crossbook.app.cli", "fix-test-server",
                               "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        line = server.stdout.readline()
        match = re.search(r"listening on [\d.]+:(\d+)", line)
        assert match, f"fix-test-server did not start: {line!r}"
        cfg = initiator_settings(tmp_path, version, int(match.group(1)))
        code, log = qfharness.run_initiator(qf_initiator, cfg, orders=3,
                                            heartbeats=HEARTBEATS_RECEIVED,
                                            sent_heartbeats=HEARTBEATS_SENT)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)
    check_clean_initiator_run(code, log, orders=3)
    assert len(log.messages("RECV", "D")) == 3


# ---------------------------------------------------------------- crossbook client -> QuickFIX acceptor

CLIENT = [sys.executable, "-m", "crossbook.app.cli", "client"]
SESSION_REJECT_SENT = " SENT SESSION-REJECT "


def start_qf_acceptor(binary, tmp_path, version: str):
    begin, appl = VERSIONS[version]
    return qfharness.start_acceptor(binary, lambda port: qfharness.write_settings(
        tmp_path / "acc.cfg", role="acceptor", begin_string=begin, sender="QFVENUE",
        target="CROSSBOOK", port=port, log_dir=tmp_path / "acc-log",
        default_appl_ver_id=appl))


def client_flags(port: int, version: str, settle: float = 0.5) -> list[str]:
    return ["--port", str(port), "--sender", "CROSSBOOK", "--target", "QFVENUE",
            "--fix-version", version, "--reset", "--clordid-prefix", "X", "--heartbeat", "5",
            "--settle", str(settle)]


def check_quickfix_acceptor_saw_clean_session(acc_log: qfharness.EventLog) -> dict[str, int]:
    received = acc_log.messages("RECV")
    sent = acc_log.messages("SENT")
    assert [int(m[34]) for m in received] == list(range(1, len(received) + 1)), str(acc_log)
    assert [int(m[34]) for m in sent] == list(range(1, len(sent) + 1)), str(acc_log)
    assert not acc_log.messages("SENT", "3") and not acc_log.messages("SENT", "j"), str(acc_log)
    assert received[0][35] == "A" and received[-1][35] == "5"
    summary = qfharness.key_values(acc_log.line("SUMMARY "))
    assert int(summary["next_target"]) == len(received) + 1
    assert int(summary["next_sender"]) == len(sent) + 1
    return {"received": len(received), "sent": len(sent)}


@pytest.mark.parametrize("version", ["4.2", "4.4", "5.0SP2"])
def test_our_client_to_quickfix_acceptor_one_shot(version, qf_acceptor, tmp_path):
    acceptor, port = start_qf_acceptor(qf_acceptor, tmp_path, version)
    with acceptor:
        # One-shot mode logs out after --settle seconds without a message once the order is
        # answered (its New report); the fill QuickFIX writes right after must arrive inside
        # that quiet period, so it is generous here: a loaded machine can hold either
        # process for a good part of a second between the two reports.
        result = subprocess.run([*CLIENT, *client_flags(port, version, settle=3.0), "--raw", "send", "buy",
                                 "100", "IBM", "limit", "25.5", "tif=day", "account=A1"],
                                capture_output=True, text=True, timeout=60)
        acc_log = acceptor.stop()
    out = result.stdout.splitlines()
    assert result.returncode == 0, (result.stdout, result.stderr, str(acc_log))
    assert not any(SESSION_REJECT_SENT in ln for ln in out), out   # QuickFIX's reports validate
    reports = [ln for ln in out if " EXEC " in ln]
    fill = "PartialFill" if version == "4.2" else "Trade"
    assert len(reports) == 2, out
    assert " EXEC New/New X1 BUY 100 IBM @25.5 last=- cum=0 leaves=100 avg=0 order=O1" in reports[0]
    assert (f" EXEC {fill}/PartiallyFilled X1 BUY 100 IBM @25.5 last=50@25.5 cum=50 leaves=50 "
            "avg=25.5 order=O1") in reports[1]
    assert out[-2].endswith("LOGOUT"), out
    # what QuickFIX saw: Logon, our order with every field, Logout; nothing rejected
    check_quickfix_acceptor_saw_clean_session(acc_log)
    order = acc_log.messages("RECV", "D")
    assert len(order) == 1
    assert {k: order[0][k] for k in (1, 11, 21, 38, 40, 44, 54, 55, 59)} == {
        1: "A1", 11: "X1", 21: "1", 38: "100", 40: "2", 44: "25.5", 54: "1", 55: "IBM", 59: "0"}
    assert len(acc_log.messages("SENT", "8")) == 2


def test_our_client_drives_an_order_life_on_quickfix(qf_acceptor, tmp_path):
    """Interactive (piped) session on FIX.4.4: new, replace, status, cancel, a refused cancel,
    a rejected order and a mass cancel, all answered by QuickFIX."""
    script = "\n".join([
        "buy 200 MSFT limit 50",          # X1: New + fill 100
        "replace X1 qty=300 price=50.5",  # X2: Replaced
        "status X2",                      # status report
        "cancel X1",                      # X3: Canceled (OrigClOrdID X2)
        "cancel X3",                      # refused locally: already canceled
        "cancel GHOST symbol=MSFT side=buy qty=1",  # X4: QuickFIX answers OrderCancelReject
        "sell 10 REJECT",                 # X5: Rejected
        "sell 40 IBM 99",                 # X6: New + fill 20
        "mass-cancel IBM",                # X7: Canceled X6, then the report
        "orders",
        "quit",
    ]) + "\n"
    acceptor, port = start_qf_acceptor(qf_acceptor, tmp_path, "4.4")
    with acceptor:
        result = subprocess.run([*CLIENT, *client_flags(port, "4.4")], input=script,
                                capture_output=True, text=True, timeout=90)
        acc_log = acceptor.stop()
    out = result.stdout.splitlines()
    assert result.returncode == 0, (result.stdout, result.stderr, str(acc_log))
    assert not any(SESSION_REJECT_SENT in ln for ln in out), out
    answers = [ln.split()[1:4] for ln in out
               if " EXEC " in ln or " CANCEL-REJECT " in ln or " MASS-CANCEL-REPORT " in ln]
    assert answers == [
        ["EXEC", "New/New", "X1"], ["EXEC", "Trade/PartiallyFilled", "X1"],
        ["EXEC", "Replaced/PartiallyFilled", "X2"],
        ["EXEC", "OrderStatus/PartiallyFilled", "X2"],
        ["EXEC", "Canceled/Canceled", "X3"],
        ["CANCEL-REJECT", "X4", "orig=GHOST"],
        ["EXEC", "Rejected/Rejected", "X5"],
        ["EXEC", "New/New", "X6"], ["EXEC", "Trade/PartiallyFilled", "X6"],
        ["EXEC", "Canceled/Canceled", "X6"],
        ["MASS-CANCEL-REPORT", "X7", "response=CancelSecurity"],
    ], out
    assert "error: order X3 is already Canceled" in result.stderr
    listing = [ln for ln in out if ln.startswith("X3 ")]
    assert listing == ["X3 order=O1 BUY 300 MSFT LMT @50.5 status=Canceled cum=100 leaves=0 "
                       "avg=50 chain=X1>X2>X3"], out
    counts = check_quickfix_acceptor_saw_clean_session(acc_log)
    assert [m[35] for m in acc_log.messages("RECV") if m[35] not in "A015"] == [
        "D", "G", "H", "F", "F", "D", "D", "q"]
    replace = acc_log.messages("RECV", "G")[0]
    assert (replace[11], replace[41], replace[38], replace[44]) == ("X2", "X1", "300", "50.5")
    cancel = acc_log.messages("RECV", "F")[0]
    assert (cancel[11], cancel[41]) == ("X3", "X2")
    assert counts["sent"] >= 13
