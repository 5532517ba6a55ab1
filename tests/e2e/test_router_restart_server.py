"""The server's part of a restart with orders at venue processes (Server._restore_remote_orders
and the start-up around it), for the cases a review found wrong:

* an order sent direct to a FIX venue is taken back with the value of its known fills
  (``FixVenue.restore_order(notional=)``), so fills the reconciliation finds beyond them are
  priced for an exact AvgPx (before: valued as if the known fills were worth 0);
* a routed order the router cannot take back from its trail is routed again (resubmit) only
  once its FIX venue has logged on (before: refused "venue down" at once, so the restart alone
  rejected the client's order).
"""
from __future__ import annotations

from functools import partial

import pytest

import omskit
from omskit import KillRig, reports
from test_router_restart import ARMED_SERVE, _killed_after_an_armed_new_order, _order, restart_body

until = partial(omskit.until, timeout=omskit.PROCESS_WAIT_S)


def test_a_direct_order_at_a_fix_venue_is_taken_back_with_the_value_of_its_fills(tmp_path):
    from crossbook.app.server import Server
    from crossbook.core import OrdType, Side, TimeInForce
    from crossbook.model.orders import NewOrder
    from crossbook.routing.fix_venue import FixVenue

    def new(server, firm, account, cl, side, qty):
        aapl = server.config.instruments.by_symbol("AAPL")
        server.manager.new_order(NewOrder(session=firm, begin_string="FIX.4.4", cl_ord_id=cl, firm=firm,
                                          account=account, instrument_index=aapl.index, side=int(side),
                                          ord_type=int(OrdType.LIMIT), tif=int(TimeInForce.DAY), qty=qty,
                                          price=22000, ex_destination="VENUE-A"))

    async def main():
        data = omskit.test_config_dict(str(tmp_path))
        data["http"] = {"enabled": False}
        first = Server(omskit.parse_config(data, "<t>"))
        await first.start()
        new(first, "FIRM1", "ACC1", "buy", Side.BUY, 10)
        new(first, "FIRM2", "ACC3", "sell", Side.SELL, 4)
        await until(lambda: first.manager.order("O1").cum_qty == 4, "4 of O1 filled")
        await first.manager.drain()
        await first.stop()
        # Second run: VENUE-A is a venue process now (nothing listens: it stays down).
        data["venues"] = [{"name": "VENUE-A", "kind": "fix", "host": "127.0.0.1", "port": 1,
                           "target_comp_id": "VENUE-A", "reconnect_min_s": 60, "reconnect_max_s": 60},
                          {"name": "VENUE-B"}]
        second = Server(omskit.parse_config(data, "<t>"))
        await second.start()
        try:
            fv = second.venues["VENUE-A"]
            assert isinstance(fv, FixVenue)
            order = second.manager.order("O1")
            assert (order.cum_qty, order.cum_value) == (4, 4 * 22000)
            tracked = fv._orders[order.venue_cl_ord_id]
            assert (tracked.cum, tracked.notional) == (4, 4 * 22000)
        finally:
            await second.stop()

    omskit.runner(main(), 30)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_routed_order_sent_again_at_a_restart_waits_for_its_fix_venue_to_log_on(tmp_path, run):
    rig = KillRig.start(tmp_path, ARMED_SERVE % "child_held", restart_body)
    cl = _killed_after_an_armed_new_order(rig, run, "SOR")
    # The trail is lost with the server's files (or was never kept): the router cannot take the
    # order back, the OMS routes it again at start (resubmit_open_orders).
    for path in tmp_path.glob("audit.db*"):
        path.unlink()
    with rig.restarted():
        async def after_restart() -> None:
            async with rig.firm1_after_restart() as peer:
                await until(lambda: any(m.get(39) in (b"0", b"4", b"8") for m in reports(peer, cl)), f"{cl} answered")
                got = [(m.get(150), m.get(39)) for m in reports(peer, cl) if m.get(150) != b"A"]
                assert got == [(b"0", b"0")], [(m.get(150), m.get(39), m.get(58)) for m in reports(peer, cl)]

        run(after_restart(), timeout=90)
        assert _order(rig, cl)["state"] == "new"
        assert rig.seller_takes(run, "229.00") == 10      # its one child works at VENUE-A
