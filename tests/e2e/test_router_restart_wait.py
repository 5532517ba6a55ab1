"""Server start after a kill: reports made while the server waits for its routers' FIX venues to
log on reach the FIX gateway (docs/routing.md "After an OMS restart").

Server._await_routed_venues waits (up to 5 s) for the FIX venues of routers holding orders to
route again. Routers settle parents as they start (fills found after the restart) and FIX venues
reconcile at logon during that wait: those reports are journaled, and must be handed to the
gateway, not delivered with no output sink (journaled, never sent, the sent marks then moving
past them so no later restart sends them either). A review found them dropped; this test failed
then.
"""
from __future__ import annotations

import asyncio
import sqlite3

import pytest

import omskit


def _new(server, cl: str, qty: int) -> None:
    from crossbook.core import OrdType, Side, TimeInForce
    from crossbook.model.orders import NewOrder
    aapl = server.config.instruments.by_symbol("AAPL")
    server.manager.new_order(NewOrder(session="FIRM1", begin_string="FIX.4.4", cl_ord_id=cl, firm="FIRM1",
                                      account="ACC1", instrument_index=aapl.index, side=int(Side.BUY),
                                      ord_type=int(OrdType.LIMIT), tif=int(TimeInForce.DAY), qty=qty,
                                      price=22000, ex_destination="SOR"))


@pytest.mark.parametrize("wait", ["venue_down", "no_wait"])
def test_a_fill_found_at_router_start_reaches_the_gateway_while_the_server_waits_for_venues(tmp_path, monkeypatch,
                                                                                              wait):
    """Run 1 routes O1 and O2 (in-process venues). The trail then knows more than the OMS journal:
    O1's child filled 4 and was cancelled; O2's trail is lost (routed again at the start). Run 2:
    VENUE-A is a venue process that is not up, so the start waits for it ("venue_down"; "no_wait":
    the wait skipped, the control). O1 is settled at router start: its TRADE 4 must be handed to
    the gateway (journaled CumQty 4 and sent)."""
    from crossbook.app.server import Server
    from crossbook.oms import gateway as gw
    from crossbook.oms.manager import ExecReport

    audit_path = str(tmp_path / "audit.db")
    sent: list = []
    real_send = gw.FixGateway.send_output

    def spy(self, output):
        sent.append(output)
        return real_send(self, output)

    async def main():
        data = omskit.test_config_dict(str(tmp_path))
        data["http"] = {"enabled": False}
        data["routers"] = [{"name": "SOR", "policy": "best_price", "venues": ["VENUE-A", "VENUE-B"],
                            "audit_path": audit_path}]
        first = Server(omskit.parse_config(data, "<t>"))
        await first.start()
        _new(first, "o1", 10)
        _new(first, "o2", 10)
        await omskit.until(lambda: first.manager.order("O2").state.value == "new", "both acknowledged")
        await first.manager.drain()
        await first.stop()
        db = sqlite3.connect(audit_path)
        (pid, pcl, child), = db.execute("SELECT parent_id, parent_cl, child_id FROM routing_audit "
                                        "WHERE parent_cl='O1.1' AND event='child_sent'").fetchall()
        for ev, qty, px in (("child_trade", 4, 22000), ("child_canceled", 0, 0)):
            db.execute("INSERT INTO routing_audit(ts, router, parent_id, parent_cl, event, venue, child_id, qty, "
                       "price, detail) VALUES (1, 'SOR', ?, ?, ?, 'VENUE-A', ?, ?, ?, '{}')",
                       (pid, pcl, ev, child, qty, px))
        db.execute("DELETE FROM routing_audit WHERE parent_cl='O2.1'")
        db.commit()
        db.close()
        # Run 2: VENUE-A is a venue process now, not up (nothing listens at port 1).
        data["venues"] = [{"name": "VENUE-A", "kind": "fix", "host": "127.0.0.1", "port": 1,
                           "target_comp_id": "VENUE-A", "reconnect_min_s": 60, "reconnect_max_s": 60},
                          {"name": "VENUE-B"}]
        monkeypatch.setattr(gw.FixGateway, "send_output", spy)
        if wait == "no_wait":
            async def _no_wait(self, timeout_s=5.0):
                return None
            monkeypatch.setattr(Server, "_await_routed_venues", _no_wait)
        else:
            monkeypatch.setattr(Server._await_routed_venues, "__defaults__", (0.3,))   # the wait, shorter
        second = Server(omskit.parse_config(data, "<t>"))
        try:
            await second.start()
            await second.manager.drain()
            o1 = second.manager.order("O1")
            assert o1.cum_qty == 4            # journaled: the OMS counted the fill found at start
            trades = [o for o in sent if isinstance(o, ExecReport) and o.execution.order_id == "O1"
                      and getattr(o.execution.exec_type, "value", o.execution.exec_type) == "F"]
            assert [t.execution.last_qty for t in trades] == [4], \
                "the client's fill report was journaled but never handed to the gateway"
            # O2 was routed again (to VENUE-B, up) and is live.
            assert second.manager.order("O2").state.value == "new"
        finally:
            await second.stop()

    omskit.runner(main(), 60)
