"""Real QuickFIX (C++) clients against the OMS server over loopback, FIX.4.2 and 4.4.

* qf_initiator (tests/fix/interop) trades: see below;
* qf_oms_client (tests/e2e/interop) plays a script of every order message (D, G, H, F, AF, q;
  duplicate ClOrdID, unknown OrigClOrdID, off-tick price) and the test checks each answer.

Reuses the interop harness of tests/fix/interop (programs compiled at run time, cached by
source hash; skipped with the reason when g++ or libquickfix-dev is missing). qf_initiator
sends three limit orders (buy 100 @ 11.25, sell 200 @ 12.25, buy 300 @ 13.25): the third
crosses the second, so QuickFIX receives PendingNew/New for all, a fill for both sides, and
exchanges heartbeats and a clean logout with no Reject in either direction.
"""
from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import pytest

INTEROP = Path(__file__).resolve().parents[1] / "fix" / "interop"
sys.path.insert(0, str(INTEROP))
import qfharness  # noqa: E402

from omskit import make_config  # noqa: E402
from crossbook.app.server import Server  # noqa: E402

REASON = qfharness.missing_toolchain()
pytestmark = [pytest.mark.skipif(REASON is not None, reason=f"QuickFIX interop: {REASON}"), pytest.mark.slow]

IBM = [{"symbol": "IBM", "asset_class": "equity", "tick_size": "0.01", "lot_size": 1, "currency": "USD",
        "venues": ["VENUE-A", "VENUE-B"], "reference_price": "12.00"}]
FIRMS = [{"name": "QF", "accounts": [{"name": "QFACC", "limits": {"max_order_qty": 1000}}]}]
# HeartBtInt of the QuickFIX initiator that trades. Both ends drop a session after 2.4 x HeartBtInt
# of silence and QuickFIX checks its timers once a second, so 1 left about 1.4 s for a process
# stalled by a loaded machine (flaky); 2 leaves about 3.8 s, as in tests/fix/test_quickfix_interop.py.
HEARTBEAT = 2


@contextlib.asynccontextmanager
async def oms_with_quickfix_settings(tmp_path: Path, begin: str, heartbeat: int):
    """A started Server with session QFCLIENT (firm QF, ``begin``) and IBM, and the QuickFIX
    initiator settings file for that session; the server is stopped at the end."""
    server = Server(make_config(str(tmp_path / "var"), instruments=IBM, firms=FIRMS,
                                sessions=[{"comp_id": "QFCLIENT", "firm": "QF", "begin_string": begin}]))
    await server.start()
    try:
        settings = qfharness.write_settings(tmp_path / "qf.cfg", role="initiator", begin_string=begin,
                                            sender="QFCLIENT", target="CROSSBOOK", port=server.fix_port,
                                            log_dir=tmp_path / "qflog", heartbeat=heartbeat)
        yield server, settings
    finally:
        await server.stop()


@pytest.mark.parametrize("version,begin", [("4.2", "FIX.4.2"), ("4.4", "FIX.4.4")])
def test_quickfix_initiator_trades_with_the_oms(tmp_path, run, version, begin):
    binary = qfharness.build("qf_initiator")

    async def scenario():
        async with oms_with_quickfix_settings(tmp_path, begin, heartbeat=HEARTBEAT) as (server, settings):
            loop = asyncio.get_running_loop()
            code, log = await loop.run_in_executor(
                None, lambda: qfharness.run_initiator(binary, settings, orders=3, heartbeats=1, timeout=20,
                                                      symbol="IBM"))
            return code, log, {o.cl_ord_id: o for o in server.manager.orders.values()}

    code, log, orders = run(scenario(), timeout=120)
    result = log.line("RESULT ")
    assert code == 0 and result and result.startswith("RESULT ok"), str(log)
    assert not log.messages("RECV", "3") and not log.messages("RECV", "j") and not log.messages("SENT", "3")
    reports = log.messages("RECV", "8")
    by_order: dict[str, list[dict[int, str]]] = {}
    for r in reports:
        by_order.setdefault(r[11], []).append(r)
    assert [r[150] for r in by_order["QF-1"]] == ["A", "0"]
    fill = "2" if version == "4.2" else "F"
    assert [r[150] for r in by_order["QF-2"]] == ["A", "0", fill]
    partial = "1" if version == "4.2" else "F"
    assert [(r[150], r[39]) for r in by_order["QF-3"]] == [("A", "A"), ("0", "0"), (partial, "1")]
    trade = by_order["QF-3"][-1]
    assert (trade[32], trade[31], trade[14], trade[151], trade[6]) == ("200", "12.25", "200", "100", "12.25")
    if version == "4.2":
        assert all(r[20] == "0" for r in reports)
    assert len({r[17] for r in reports}) == len(reports)  # ExecIDs unique
    assert orders["QF-3"].cum_qty == 200 and orders["QF-2"].state.value == "filled"


def script(version: str) -> tuple[str, int]:
    h = "21=1|" if version == "4.2" else ""
    lines = [
        f"SEND D 11=A1|{h}55=IBM|54=1|60=NOW|38=100|40=2|44=11.50", "WAIT 2",
        f"SEND G 41=A1|11=A2|{h}55=IBM|54=1|60=NOW|38=60|40=2|44=11.50", "WAIT 4",
        "SEND H 11=A2|55=IBM|54=1", "WAIT 5",
        f"SEND D 11=B1|{h}55=IBM|54=1|60=NOW|38=10|40=2|44=11.40", "WAIT 7",
        "SEND F 41=B1|11=B2|55=IBM|54=1|60=NOW|38=10", "WAIT 9",
        "SEND F 41=NOPE|11=B3|55=IBM|54=1|60=NOW|38=10", "WAIT 10",
        f"SEND D 11=A1|{h}55=IBM|54=1|60=NOW|38=5|40=2|44=11.50", "WAIT 11",
        f"SEND D 11=C1|{h}55=IBM|54=1|60=NOW|38=5|40=2|44=11.505", "WAIT 12",
    ]
    total = 12
    if version == "4.4":  # OrderMassStatusRequest and OrderMassCancelRequest exist from FIX 4.3
        lines += ["SEND AF 584=MS1|585=7", "WAIT 13", "SEND q 11=MC1|530=7|60=NOW", "WAIT 15"]
        total = 15
    return "\n".join(lines) + "\n", total


@pytest.mark.parametrize("version,begin", [("4.2", "FIX.4.2"), ("4.4", "FIX.4.4")])
def test_quickfix_client_every_order_message(tmp_path, run, version, begin):
    binary = qfharness.build("qf_oms_client", Path(__file__).resolve().parent / "interop")
    text, total = script(version)
    (tmp_path / "script.txt").write_text(text)

    async def scenario():
        async with oms_with_quickfix_settings(tmp_path, begin, heartbeat=30) as (server, settings):
            import subprocess
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(None, lambda: subprocess.run(
                [str(binary), "--config", str(settings), "--script", str(tmp_path / "script.txt"), "--timeout", "10"],
                capture_output=True, text=True, timeout=120))
            return result

    result = run(scenario(), timeout=180)
    log = qfharness.EventLog(result.stdout.splitlines())
    assert result.returncode == 0 and log.line("RESULT ok"), str(log) + result.stderr
    got = [m for m in log.messages("RECV") if m[35] not in ("0", "1", "2", "4", "5", "A")]
    assert len(got) == total, str(log)
    trade_or_status = "I" if version == "4.4" else None

    def check(m, **tags):
        for k, v in tags.items():
            assert m.get(int(k[1:])) == v, (k, v, m)

    check(got[0], t35="8", t11="A1", t150="A", t39="A")
    check(got[1], t35="8", t11="A1", t150="0", t39="0", t37="O1")
    check(got[2], t35="8", t11="A2", t41="A1", t150="E", t39="E")
    check(got[3], t35="8", t11="A2", t41="A1", t150="5", t39="0", t38="60", t151="60")
    if version == "4.4":
        check(got[4], t35="8", t11="A2", t150=trade_or_status, t39="0")
    else:
        check(got[4], t35="8", t11="A2", t150="0", t20="3", t39="0")
    check(got[7], t35="8", t11="B2", t41="B1", t150="6", t39="6")
    check(got[8], t35="8", t11="B2", t41="B1", t150="4", t39="4", t151="0")
    check(got[9], t35="9", t11="B3", t41="NOPE", t37="NONE", t102="1", t434="1")
    check(got[10], t35="8", t11="A1", t150="8", t39="8", t103="6", t37="NONE")
    check(got[11], t35="8", t11="C1", t150="8", t39="8", t103="99" if version == "4.4" else "0")
    if version == "4.4":
        check(got[12], t35="8", t11="A2", t150="I", t584="MS1", t911="1", t912="Y")
        check(got[13], t35="r", t11="MC1", t530="7", t531="7", t533="1")
        check(got[14], t35="8", t11="A2", t150="4", t39="4", t58="canceled by mass cancel")
    assert not log.messages("RECV", "3") and not log.messages("RECV", "j") and not log.messages("SENT", "3")
