"""Reports the previous run journaled but never sent (owed, ``OrderManager._unsent``) go out at a
restart before anything the start itself reports (a router settling a parent, a FIX venue's
reconciliation): otherwise a start report moves the session's sent mark past them, and a kill
before they are sent loses them for good (the next restart only resends reports above the mark),
and without a kill they reach the client after the same order's newer reports."""
from __future__ import annotations

import asyncio
import json
import sqlite3

import omskit


class Killed(Exception):
    pass


def _new(server, cl, qty):
    from crossbook.model.orders import NewOrder
    aapl = server.config.instruments.by_symbol("AAPL")
    server.manager.new_order(NewOrder(session="FIRM1", begin_string="FIX.4.4", cl_ord_id=cl, firm="FIRM1",
                                      account="ACC1", instrument_index=aapl.index, side=1, ord_type=2, tif=0,
                                      qty=qty, price=22000, ex_destination="SOR"))


def _config(tmp_path, audit_path):
    data = omskit.test_config_dict(str(tmp_path))
    data["http"] = {"enabled": False}
    data["routers"] = [{"name": "SOR", "policy": "best_price", "venues": ["VENUE-A", "VENUE-B"],
                        "audit_path": audit_path}]
    return data


def _o1_filled_o2_lost(audit_path):
    """Between the runs: O1's child traded 4 and was cancelled at the venue (the router settles
    O1 at its start, a TRADE report), O2's trail is lost (routed again after the venue wait)."""
    db = sqlite3.connect(audit_path)
    (pid, pcl, child), = db.execute("SELECT parent_id, parent_cl, child_id FROM routing_audit "
                                    "WHERE parent_cl='O1.1' AND event='child_sent'").fetchall()
    for ev, qty in (("child_trade", 4), ("child_canceled", 0)):
        db.execute("INSERT INTO routing_audit(ts, router, parent_id, parent_cl, event, venue, child_id, qty, "
                   "price, detail) VALUES (1, 'SOR', ?, ?, ?, 'VENUE-A', ?, ?, 22000, '{}')",
                   (pid, pcl, ev, child, qty))
    db.execute("DELETE FROM routing_audit WHERE parent_cl='O2.1'")
    db.commit()
    db.close()


def _venue_a_down(data):
    # VENUE-A a FIX venue that never logs on: the start waits for it (_await_routed_venues).
    data["venues"] = [{"name": "VENUE-A", "kind": "fix", "host": "127.0.0.1", "port": 1,
                       "target_comp_id": "VENUE-A", "reconnect_min_s": 60, "reconnect_max_s": 60},
                      {"name": "VENUE-B"}]


def _owed(database, order_id):
    from crossbook.persistence import SqliteJournal
    j = SqliteJournal(database)
    st = j.open()
    j.close()
    sent = {k: int(v) for k, v in json.loads(st.meta.get("sent_exec_seq", "{}")).items()}
    return [e["seq"] for e in st.recent_executions
            if e["seq"] > sent.get(e["session"], 0) and e["order_id"] == order_id], sent


def _spy_gateway(monkeypatch):
    from crossbook.oms import gateway as gw
    sent: list = []
    real_send = gw.FixGateway.send_output

    def spy(self, output):
        sent.append(output)
        return real_send(self, output)

    monkeypatch.setattr(gw.FixGateway, "send_output", spy)
    return sent


def _reports_of(sent, order_id):
    from crossbook.oms.manager import ExecReport
    return [(o.execution.seq, o.execution.cum_qty, o.poss_resend)
            for o in sent if isinstance(o, ExecReport) and o.execution.order_id == order_id]


def test_owed_reports_survive_a_kill_during_the_start_wait(tmp_path, monkeypatch):
    from crossbook.app.server import Server

    audit_path = str(tmp_path / "audit.db")

    async def main():
        data = _config(tmp_path, audit_path)
        first = Server(omskit.parse_config(data, "<t>"))
        await first.start()
        _new(first, "o1", 10)
        await omskit.until(lambda: first.manager.order("O1").state.value == "new", "o1 acked")
        await first.manager.drain()
        # O2's reports are journaled but never reach the client (a kill between commit and delivery).
        first.manager._outputs_sink = None
        _new(first, "o2", 10)
        await omskit.until(lambda: first.manager.order("O2").state.value == "new", "o2 acked")
        await first.manager.drain()
        await first.stop()
        _o1_filled_o2_lost(audit_path)
        database = first.config.storage.database
        owed_before, _ = _owed(database, "O2")
        assert owed_before, "setup: O2's reports are owed to the client"

        _venue_a_down(data)

        async def wait_then_killed(self, timeout_s=5.0):
            # Inside the start's venue wait: O1's settled TRADE is delivered, the mark committed...
            await asyncio.sleep(0.3)
            await self.manager.drain()
            self.manager.flush()
            await self.manager.drain()
            raise Killed()      # ... and the process dies before the open orders are sent again

        monkeypatch.setattr(Server, "_await_routed_venues", wait_then_killed)
        delivered = _spy_gateway(monkeypatch)
        second = Server(omskit.parse_config(data, "<t>"))
        try:
            await second.start()
        except Killed:
            pass
        await second.stop()
        owed_after, sent = _owed(database, "O2")
        handed = [seq for seq, _, possresend in _reports_of(delivered, "O2") if possresend]
        # Nothing lost: each owed report either reached the gateway (its FIX store) in run 2 or
        # is still owed, so the next restart sends it.
        lost = [s for s in owed_before if s not in owed_after and s not in handed]
        assert not lost, (f"O2's reports {lost} were never sent, yet the next restart would not send them "
                          f"(FIRM1 sent mark {sent.get('FIRM1')})")
        assert _reports_of(delivered, "O1"), "setup: the router settled O1 at its start"

    omskit.runner(main(), 60)


def test_an_owed_report_goes_out_before_the_same_orders_later_reports(tmp_path, monkeypatch):
    """O1's New was journaled but never sent. Run 2 settles O1 at router start (TRADE 4, handed
    to the gateway during the venue wait): the owed New must reach the client before that fill,
    not after it as a PossResend New with CumQty 0."""
    from crossbook.app.server import Server

    audit_path = str(tmp_path / "audit.db")

    async def main():
        data = _config(tmp_path, audit_path)
        first = Server(omskit.parse_config(data, "<t>"))
        await first.start()
        first.manager._outputs_sink = None        # O1's reports journaled, never delivered
        _new(first, "o1", 10)
        _new(first, "o2", 10)     # O2: its trail is lost below, so the start waits to route it again
        await omskit.until(lambda: first.manager.order("O2").state.value == "new", "acked")
        await first.manager.drain()
        await first.stop()
        _o1_filled_o2_lost(audit_path)
        _venue_a_down(data)
        delivered = _spy_gateway(monkeypatch)
        monkeypatch.setattr(Server._await_routed_venues, "__defaults__", (0.3,))
        second = Server(omskit.parse_config(data, "<t>"))
        try:
            await second.start()
            await second.manager.drain()
        finally:
            await second.stop()
        o1 = _reports_of(delivered, "O1")
        assert any(not possresend for *_, possresend in o1), f"setup: O1 settled with a fill at start: {o1}"
        assert any(possresend for *_, possresend in o1), f"setup: O1's owed reports were sent again: {o1}"
        seqs = [s for s, *_ in o1]
        assert seqs == sorted(seqs), f"O1's reports reach the client out of order: {o1}"

    omskit.runner(main(), 60)
