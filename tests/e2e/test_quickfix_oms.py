"""A real QuickFIX (C++) initiator trading with the OMS server over loopback, FIX.4.2 and 4.4.

Reuses the interop harness of tests/fix/interop (programs compiled at run time, cached by
source hash; skipped with the reason when g++ or libquickfix-dev is missing). qf_initiator
sends three limit orders (buy 100 @ 11.25, sell 200 @ 12.25, buy 300 @ 13.25): the third
crosses the second, so QuickFIX receives PendingNew/New for all, a fill for both sides, and
exchanges heartbeats and a clean logout with no Reject in either direction.
"""
from __future__ import annotations

import asyncio
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


@pytest.mark.parametrize("version,begin", [("4.2", "FIX.4.2"), ("4.4", "FIX.4.4")])
def test_quickfix_initiator_trades_with_the_oms(tmp_path, run, version, begin):
    binary = qfharness.build("qf_initiator")

    async def scenario():
        server = Server(make_config(str(tmp_path / "var"), instruments=IBM, firms=FIRMS,
                                    sessions=[{"comp_id": "QFCLIENT", "firm": "QF", "begin_string": begin}]))
        await server.start()
        try:
            settings = qfharness.write_settings(tmp_path / "qf.cfg", role="initiator", begin_string=begin,
                                                sender="QFCLIENT", target="CROSSBOOK", port=server.fix_port,
                                                log_dir=tmp_path / "qflog", heartbeat=1)
            loop = asyncio.get_running_loop()
            code, log = await loop.run_in_executor(
                None, lambda: qfharness.run_initiator(binary, settings, orders=3, heartbeats=1, timeout=20,
                                                      symbol="IBM"))
            return code, log, {o.cl_ord_id: o for o in server.manager.orders.values()}
        finally:
            await server.stop()

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
