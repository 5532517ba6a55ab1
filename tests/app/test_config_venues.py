"""Config of FIX venues, routers and drop copy (docs/config.md): defaults, wiring into the
instrument master, every error naming its key; and the restart path for orders at FIX venues."""
from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import pytest

from crossbook.app.config import DEFAULT_CONFIG, ConfigError, load_config, merge, parse_config

REPO = Path(__file__).resolve().parents[2]
FIX_A = {"name": "VENUE-A", "kind": "fix", "host": "127.0.0.1", "port": 9901, "target_comp_id": "VENUE-A"}


def config(**extra):
    data = tomllib.loads(DEFAULT_CONFIG)
    data = merge(data, {"storage": {"dir": "/srv/cb"}})
    data["venues"] = [dict(FIX_A), {"name": "VENUE-B"}]
    data.update(extra)
    return parse_config(data, "<test>")


def test_fix_venue_defaults_come_from_the_server_config():
    cfg = config()
    a, b = cfg.venues
    assert (a.kind, b.kind) == ("fix", "in_process")
    assert a.fix["sender_comp_id"] == "CROSSBOOK"
    assert a.fix["store_path"] == "/srv/cb/fix-venues/VENUE-A"
    assert b.fix is None


def test_embedded_default_stays_in_process():
    cfg = load_config(None)
    assert [(v.name, v.kind) for v in cfg.venues] == [("VENUE-A", "in_process"), ("VENUE-B", "in_process")]
    assert cfg.routers == () and cfg.drop_copies == ()


def test_example_configs_load():
    cfg = load_config(str(REPO / "docs/examples/serve-fix-venues.toml"))
    assert [v.kind for v in cfg.venues] == ["fix", "fix"]
    cfg = load_config(str(REPO / "docs/examples/serve-three-process.toml"))
    assert [r.name for r in cfg.routers] == ["SOR", "BEST"]
    assert [d.comp_id for d in cfg.drop_copies] == ["DC1"]


def test_routers_are_listed_on_their_instruments_and_can_be_an_instruments_default():
    cfg = config(routers=[{"name": "SOR", "policy": "sweep", "venues": ["VENUE-A", "VENUE-B"],
                           "instruments": ["AAPL"]},
                          {"name": "ONLY-B", "policy": "direct", "venues": ["VENUE-B"]}])
    aapl = cfg.instruments.by_symbol("AAPL")
    msft = cfg.instruments.by_symbol("MSFT")
    assert aapl.venues == ("VENUE-A", "VENUE-B", "SOR", "ONLY-B") and aapl.default_venue == "SOR"
    assert msft.default_venue == "VENUE-A" and "SOR" in msft.venues
    assert [i.key for i in cfg.instruments] == [i.key for i in load_config(None).instruments]  # same indices


def test_drop_copy_scopes():
    cfg = config(drop_copy=[{"comp_id": "DC1"}, {"comp_id": "DC2", "firms": ["FIRM1", "FIRM2"]},
                            {"comp_id": "DC3", "scope": "all"}])
    assert [(d.comp_id, d.firms) for d in cfg.drop_copies] == [("DC1", None), ("DC2", ("FIRM1", "FIRM2")),
                                                              ("DC3", None)]


@pytest.mark.parametrize("extra, key", [
    ({"venues": [{**FIX_A, "port": "x"}, {"name": "VENUE-B"}]}, "venues[0].port"),
    ({"venues": [{**FIX_A, "hots": "x"}, {"name": "VENUE-B"}]}, "venues[0].hots"),
    ({"venues": [{k: v for k, v in FIX_A.items() if k != "target_comp_id"}, {"name": "VENUE-B"}]},
     "venues[0].target_comp_id"),
    ({"venues": [{**FIX_A, "kind": "tcp"}, {"name": "VENUE-B"}]}, "venues[0].kind"),
    ({"venues": [{**FIX_A, "md_depth": -1}, {"name": "VENUE-B"}]}, "venues[0].md_depth"),
    ({"venues": [dict(FIX_A), {"name": "VENUE-B"}, {**FIX_A, "name": "VENUE-C", "port": 1}]}, "venues[2].name"),
    ({"routers": [{"name": "SOR", "policy": "fastest", "venues": ["VENUE-A"]}]}, "routers[0].policy"),
    ({"routers": [{"name": "SOR", "policy": "sweep", "venues": ["VENUE-Z"]}]}, "routers[0].venues"),
    ({"routers": [{"name": "VENUE-A", "policy": "sweep", "venues": ["VENUE-B"]}]}, "routers[0].name"),
    ({"routers": [{"name": "D", "policy": "direct", "venues": ["VENUE-A", "VENUE-B"]}]}, "routers[0].venues"),
    ({"routers": {"name": "SOR"}}, "routers"),
    ({"drop_copy": [{"comp_id": "FIRM1"}]}, "drop_copy[0].comp_id"),
    ({"drop_copy": [{"comp_id": "CROSSBOOK"}]}, "drop_copy[0].comp_id"),
    ({"drop_copy": [{"comp_id": "DC"}, {"comp_id": "DC"}]}, "drop_copy[1].comp_id"),
    ({"drop_copy": [{"comp_id": "DC", "firms": ["NOPE"]}]}, "drop_copy[0].firms"),
    ({"drop_copy": [{"comp_id": "DC", "scope": "all", "firms": ["FIRM1"]}]}, "drop_copy[0].firms"),
    ({"drop_copy": [{"comp_id": "DC", "scope": "some"}]}, "drop_copy[0].scope"),
    ({"drop_copy": [{"comp_id": "DC", "begin_string": "FIX.4.2"}]}, "drop_copy[0].begin_string"),
    ({"drop_copy": [{"comp_id": "DC", "colour": "red"}]}, "drop_copy[0].colour"),
    ({"drop_copy": "DC"}, "drop_copy"),
])
def test_bad_values_name_the_key(extra, key):
    with pytest.raises(ConfigError) as info:
        config(**extra)
    assert info.value.key == key, str(info.value)


def test_restart_restores_orders_at_fix_venues_instead_of_entering_them_again(tmp_path):
    """An open order at a FIX venue, stored by a previous run: after a restart the server registers
    it with FixVenue.restore_order (reconciled at logon) and does not send a new order."""
    from crossbook.app.server import Server
    from crossbook.routing.fix_venue import FixVenue

    async def main():
        data = tomllib.loads(DEFAULT_CONFIG)
        data = merge(data, {"fix": {"port": 0}, "http": {"enabled": False}, "storage": {"dir": str(tmp_path)}})
        data["venues"] = [{"name": "VENUE-A"}, {"name": "VENUE-B"}]
        first = Server(parse_config(data, "<t>"))
        await first.start()
        from crossbook.model.orders import NewOrder
        from crossbook.core import OrdType, Side, TimeInForce
        aapl = first.config.instruments.by_symbol("AAPL")
        for venue in ("VENUE-A", "VENUE-B"):
            first.manager.new_order(NewOrder(session="FIRM1", begin_string="FIX.4.4", cl_ord_id=f"c-{venue}",
                                             firm="FIRM1", account="ACC1", instrument_index=aapl.index,
                                             side=int(Side.BUY), ord_type=int(OrdType.LIMIT),
                                             tif=int(TimeInForce.DAY), qty=10, price=22000, ex_destination=venue))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if all(o.venue_order_id for o in first.manager.open_orders()):
                break
        await first.manager.drain()
        await first.stop()
        # Second run: VENUE-A is now a FIX venue (nothing listens on its port; it stays down).
        data["venues"] = [{**FIX_A, "port": 1, "reconnect_min_s": 60, "reconnect_max_s": 60}, {"name": "VENUE-B"}]
        second = Server(parse_config(data, "<t>"))
        await second.start()
        try:
            fv = second.venues["VENUE-A"]
            assert isinstance(fv, FixVenue)
            assert second.restored_remote == 1 and second.resubmitted == 1      # only B's order re-entered
            tracked = fv._orders["O1.1"]
            assert (tracked.qty, tracked.price, tracked.acked) == (10, 22000, True)
            assert second.manager.order("O1").venue_cl_ord_id == "O1.1"      # not a new child id
            assert second.manager.order("O2").venue_cl_ord_id == "O2.2"      # re-entered at the in-process B
            assert {v["name"]: (v["kind"], v["up"]) for v in second.venue_status()} == {
                "VENUE-A": ("fix", False), "VENUE-B": ("in_process", True)}
        finally:
            await second.stop()

    asyncio.run(asyncio.wait_for(main(), 30))
