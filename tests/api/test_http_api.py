"""The HTTP JSON API against a real Server: queries, run-time risk limits, kill switch, end of day."""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from omskit import make_config  # noqa: E402
from fixpeer import FixPeer  # noqa: E402
from crossbook.app.server import Server  # noqa: E402


async def request(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = json.dumps(body).encode() if body is not None else b""
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(data)}\r\n\r\n"
                 .encode() + data)
    raw = await reader.read()
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


def test_http_api(tmp_path, run):
    async def scenario():
        server = Server(make_config(str(tmp_path)))
        await server.start()
        port = server.http_port
        try:
            async with FixPeer(server.fix_port, "FIRM1") as a, FixPeer(server.fix_port, "FIRM2") as b:
                cl = a.new_order(qty=100, price="230.00")
                await a.expect_exec("A", "A")
                await a.expect_exec("0", "0")
                b.new_order(side="2", qty=30, price="230.00")
                await a.expect_exec("F", "1")
                other = a.new_order(symbol="MSFT", qty=5, price="419.50", extra=[(1, "ACC2")])
                await a.expect_exec("A", "A", t11=other)
                await a.expect_exec("0", "0", t11=other)
                await b.drain()
                await server.manager.drain()

                status, got = await request(port, "GET", "/orders?status=open&account=ACC1")
                assert status == 200 and [o["cl_ord_id"] for o in got["orders"]] == [cl]
                order = got["orders"][0]
                assert order["cum_qty"] == 30 and order["leaves_qty"] == 70 and order["avg_px"] == "230"
                assert order["price"] == "230.00" and order["state"] == "partially_filled"
                status, got = await request(port, "GET", "/orders?status=done")
                assert status == 200 and [o["account"] for o in got["orders"]] == ["ACC3"]
                status, got = await request(port, "GET", "/orders?symbol=MSFT")
                assert [o["cl_ord_id"] for o in got["orders"]] == [other]
                status, got = await request(port, "GET", "/orders?since=2999-01-01T00:00:00Z")
                assert got["orders"] == []
                status, got = await request(port, "GET", f"/orders/{order['order_id']}")
                assert status == 200 and [e["exec_type"] for e in got["executions"]] == ["A", "0", "F"]
                assert got["executions"][2]["last_px"] == "230.00" and got["executions"][2]["last_qty"] == 30
                status, got = await request(port, "GET", "/orders/O999")
                assert status == 404 and "O999" in got["error"]
                status, got = await request(port, "GET", "/orders?status=bogus")
                assert status == 400 and "status" in got["error"]
                status, got = await request(port, "GET", "/executions?account=ACC3")
                assert status == 200 and [e["exec_type"] for e in got["executions"]] == ["A", "0", "F"]

                # Run-time risk limit change: the next order sees it.
                status, got = await request(port, "PATCH", "/risk/limits/ACC1", {"max_order_qty": 10})
                assert status == 200 and got["max_order_qty"] == 10 and got["collar_bps"] == 1000
                rej = a.new_order(qty=11, price="230.00")
                msg = await a.expect_exec("8", "8", t11=rej)
                assert b"11 > limit 10" in msg[58]
                status, got = await request(port, "PATCH", "/risk/limits/ACC1", {"max_order_qty": "x"})
                assert status == 400 and "max_order_qty" in got["error"]
                status, got = await request(port, "GET", "/risk/limits/NOPE")
                assert status == 404
                status, usage = await request(port, "GET", "/risk/usage")
                assert usage["ACC1"]["open_orders"] == 1 and usage["ACC1"]["positions"]["0"]["position"] == 30

                # Kill switch for the firm: both open orders of FIRM1 are canceled.
                status, got = await request(port, "POST", "/kill", {"scope": "firm", "name": "FIRM1"})
                assert status == 200 and got["canceled"] == 2 and got["firms"] == ["FIRM1"]
                canceled = [await a.expect_exec("4", "4") for _ in range(2)]
                assert {m[11] for m in canceled} == {cl.encode(), other.encode()}
                status, got = await request(port, "POST", "/kill", {"scope": "firm", "name": "FIRM1", "on": False})
                assert got["firms"] == []
                status, got = await request(port, "POST", "/kill", {"scope": "firm", "name": "NOPE"})
                assert status == 404

                # End of day: DAY orders expire (ExecType C), GTC ones stay.
                day = a.new_order(qty=5, price="229.00")
                gtc = a.new_order(qty=5, price="229.00", extra=[(59, "1")])
                for _ in range(4):
                    await a.expect("8")
                status, got = await request(port, "POST", "/eod")
                assert status == 200 and got["venues"] == 2
                await a.expect_exec("C", "C", t11=day, t58="DAY order expired at end of day")
                await a.quiet(0.3)
                status, got = await request(port, "GET", "/orders?status=open&account=ACC1")
                assert [o["cl_ord_id"] for o in got["orders"]] == [gtc]
                status, got = await request(port, "GET", "/nowhere")
                assert status == 404
        finally:
            await server.stop()
    run(scenario())


def test_gtd_order_expires(tmp_path, run):
    async def scenario():
        server = Server(make_config(str(tmp_path), oms={"expiry_check_s": 0.05}))
        await server.start()
        try:
            async with FixPeer(server.fix_port, "FIRM1") as a:
                import datetime as dt
                soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(milliseconds=300)).strftime("%Y%m%d-%H:%M:%S.%f")[:-3]
                cl = a.new_order(qty=5, price="229.00", extra=[(59, "6"), (126, soon)])
                await a.expect_exec("A", "A", t11=cl)
                await a.expect_exec("0", "0", t11=cl)
                await a.expect_exec("C", "C", t11=cl, timeout=5, t58="GTD order expired")
        finally:
            await server.stop()
    run(scenario())
