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
    assert log.messages("RECV", "0"), "no Heartbeat from the peer"
    return numbers


@pytest.mark.parametrize("version", ["4.2", "4.4", "5.0SP2"])
def test_control_quickfix_initiator_to_quickfix_acceptor(version, qf_initiator, qf_acceptor,
                                                         tmp_path):
    begin, appl_ver = VERSIONS[version]
    port = qfharness.free_port()
    acc_cfg = qfharness.write_settings(tmp_path / "acc.cfg", role="acceptor", begin_string=begin,
                                       sender="ISLD", target="TW", port=port,
                                       log_dir=tmp_path / "acc-log",
                                       default_appl_ver_id=appl_ver)
    ini_cfg = qfharness.write_settings(tmp_path / "ini.cfg", role="initiator", begin_string=begin,
                                       sender="TW", target="ISLD", port=port, heartbeat=1,
                                       log_dir=tmp_path / "ini-log",
                                       default_appl_ver_id=appl_ver)
    with qfharness.QuickFixAcceptor(qf_acceptor, acc_cfg) as acceptor:
        code, log = qfharness.run_initiator(qf_initiator, ini_cfg, orders=3, heartbeats=2)
        acc_log = acceptor.stop()
    check_clean_initiator_run(code, log, orders=3)
    # The acceptor acked and part-filled each order: New + Trade reports per order.
    reports = log.messages("RECV", "8")
    assert [r[11] for r in reports] == ["QF-1", "QF-1", "QF-2", "QF-2", "QF-3", "QF-3"]
    assert len(acc_log.messages("RECV", "D")) == 3
    summary = qfharness.key_values(acc_log.line("SUMMARY "))
    assert int(summary["next_target"]) == len(log.messages("SENT")) + 1
