"""Reading your writes over HTTP: a query made right after an ExecutionReport arrived sees what it
reported, although the journal's projection into SQLite runs later (the store barrier)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from omskit import make_config  # noqa: E402
from fixpeer import FixPeer  # noqa: E402
from test_http_api import request  # noqa: E402
from crossbook.app.server import Server  # noqa: E402
from crossbook.persistence import OrderStore  # noqa: E402


def test_a_query_right_after_a_report_sees_it(tmp_path, run):
    async def scenario():
        server = Server(make_config(str(tmp_path)))
        # The projection would apply the batch only in 30 s: only the barrier can make it visible.
        server.journal.projection_interval_s = 30.0
        await server.start()
        try:
            async with FixPeer(server.fix_port, "FIRM1") as a:
                cl = a.new_order(qty=7, price="230.00")
                ack = await a.expect_exec("A", "A")
                order_id = ack[37].decode()
                raw = OrderStore(server.config.storage.database, catch_up=False)
                assert raw.order(order_id) is None          # reported, durable in the log, not in SQLite yet
                raw.close()
                status, got = await request(server.http_port, "GET", f"/orders/{order_id}")
                assert status == 200 and got["cl_ord_id"] == cl and got["qty"] == 7
                assert [e["exec_type"] for e in got["executions"]][:1] == ["A"]
                status, got = await request(server.http_port, "GET", "/executions")
                assert status == 200 and ack[17].decode() in [e["exec_id"] for e in got["executions"]]
                await a.expect_exec("0", "0")
                status, got = await request(server.http_port, "GET", "/orders?status=open")
                assert status == 200 and [(o["order_id"], o["state"]) for o in got["orders"]] == [(order_id, "new")]
        finally:
            await server.stop()

    run(scenario())
