"""The example configs of docs/venue-process.md: they load, the venue processes they describe start,
and an OMS-side FixVenue per venue logs on and sees the background liquidity as market data."""
from __future__ import annotations

import asyncio
import time
import tomllib
from pathlib import Path

import pytest

from crossbook.app.config import parse_config
from crossbook.model.instruments import DEFAULT_INSTRUMENTS, InstrumentMaster
from crossbook.routing.fix_venue import FixVenue
from crossbook.venues.process import load_venue_config
from venuekit import VenueProcess

pytestmark = pytest.mark.timeout(90)

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
MASTER = InstrumentMaster.from_config(DEFAULT_INSTRUMENTS)


def test_example_venue_configs_load():
    a = load_venue_config(str(EXAMPLES / "venue-a.toml"))
    b = load_venue_config(str(EXAMPLES / "venue-b.toml"))
    assert (a.name, a.port, a.comp_id, [s.comp_id for s in a.sessions]) == ("VENUE-A", 9901, "VENUE-A",
                                                                             ["CROSSBOOK", "DEMO"])
    assert a.sessions[0].reason_codes and not a.sessions[1].reason_codes
    assert (b.name, b.port, b.latency_us, b.reject_ratio) == ("VENUE-B", 9902, 200, 0.02)
    assert a.background is not None and b.background is not None


def test_example_server_config_names_the_example_venues():
    doc = tomllib.loads((EXAMPLES / "serve-fix-venues.toml").read_text())
    fix_tables = [v for v in doc["venues"] if v.get("kind") == "fix"]
    assert [v["name"] for v in fix_tables] == ["VENUE-A", "VENUE-B"]
    for table, venue_file in zip(fix_tables, ("venue-a.toml", "venue-b.toml")):
        fv = FixVenue.from_config(table, MASTER)
        vc = load_venue_config(str(EXAMPLES / venue_file))
        # The OMS side and the venue side agree on address and CompIDs.
        assert (fv.settings.socket_connect_port, fv.settings.target_comp_id) == (vc.port, vc.comp_id)
        assert fv.settings.sender_comp_id in [s.comp_id for s in vc.sessions]
    # Everything else is a valid server config (its venues as in-process ones until `crossbook serve`
    # builds FixVenues from kind = "fix" tables).
    doc["venues"] = [{"name": v["name"]} for v in doc["venues"]]
    cfg = parse_config(doc, "serve-fix-venues.toml")
    assert cfg.fix.comp_id == fix_tables[0]["sender_comp_id"]


def test_two_example_venues_run_and_stream_market_data(tmp_path):
    procs = []
    try:
        ports = []
        for name in ("venue-a.toml", "venue-b.toml"):
            venue = VenueProcess(EXAMPLES / name, port=0, cwd=tmp_path)
            procs.append(venue)
            ports.append(venue.port)

        async def main():
            venues = [FixVenue(n, MASTER, host="127.0.0.1", port=p, sender_comp_id="CROSSBOOK", target_comp_id=n,
                               store_path=str(tmp_path / "oms" / n), md_depth=5)
                      for n, p in zip(("VENUE-A", "VENUE-B"), ports)]
            for v in venues:
                v.set_event_sink(lambda ev: None)
                await v.start()
            try:
                for v in venues:
                    assert await v.wait_up(15), f"{v.name} did not log on"
                aapl = MASTER.by_symbol("AAPL")
                deadline = time.monotonic() + 15
                while not all((v.top_of_book(aapl) or (0,))[0] and v.top_of_book(aapl)[2] for v in venues):
                    assert time.monotonic() < deadline, [v.top_of_book(aapl) for v in venues]
                    await asyncio.sleep(0.05)
                for v in venues:
                    bid, bq, ask, aq = v.top_of_book(aapl)
                    assert 0 < bid < ask and bq > 0 and aq > 0            # two-sided around 230.00
                    assert 22000 < bid < 24000
            finally:
                for v in venues:
                    await v.stop()
        asyncio.run(main())
        # The venues' FIX stores went where the examples say, under the working directory.
        assert (tmp_path / "var" / "venue-a" / "FIX.4.4-VENUE-A-CROSSBOOK.seqnums").exists()
        assert (tmp_path / "var" / "venue-b" / "FIX.4.4-VENUE-B-CROSSBOOK.seqnums").exists()
    finally:
        for p in procs:
            p.stop()
