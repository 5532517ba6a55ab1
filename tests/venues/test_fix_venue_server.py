"""The venue side of `crossbook venue`, in one process: VenueFixServer with a plain FIX client
(no crossbook extensions), the market data publisher message by message, and the config file."""
from __future__ import annotations

import asyncio
import time

import pytest

from crossbook.core import OrdType, Side, TimeInForce
from crossbook.fix.messages import Message
from crossbook.fix.session import Application, DoNotSend
from crossbook.fix.settings import SessionSettings
from crossbook.fix.transport import Initiator
from crossbook.model.instruments import DEFAULT_INSTRUMENTS, InstrumentMaster
from crossbook.routing.venue import VenueOrder
from crossbook.venues import InProcessVenue
from crossbook.venues.fixserver import REASON_CODE_TAG
from crossbook.venues.marketdata import MarketDataPublisher
from crossbook.venues.process import VenueConfigError, build_server, parse_venue_config

pytestmark = pytest.mark.timeout(60)

MASTER = InstrumentMaster.from_config(DEFAULT_INSTRUMENTS)
AAPL = MASTER.by_symbol("AAPL")


class Clock:
    def now_ns(self):
        return time.time_ns()


def config(**over):
    doc = {"venue": {"name": "VENUE-A", "port": 0}, "sessions": [{"comp_id": "PLAIN"}]}
    for k, v in over.items():
        doc[k] = v
    return doc


class Client(Application):
    """A plain FIX 4.4 initiator that records what it receives."""

    def __init__(self, port):
        self.got: list[Message] = []
        self.init = Initiator(SessionSettings(begin_string="FIX.4.4", sender_comp_id="PLAIN", target_comp_id="VENUE-A",
                                              connection_type="initiator", socket_connect_host="127.0.0.1",
                                              socket_connect_port=port, reconnect_interval=0.2), self)

    def from_app(self, session, message):
        self.got.append(message)

    async def __aenter__(self):
        await self.init.start()
        assert await self.init.wait_logged_on(10)
        return self

    async def __aexit__(self, *exc):
        await self.init.stop()

    def send(self, mt, body):
        self.init.send(None, mt, body)

    async def wait(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while len(self.got) < n:
            assert time.monotonic() < deadline, f"got only {self.got}"
            await asyncio.sleep(0.01)
        return self.got


def nos(cl, side="1", qty=10, px="230.00", sym="AAPL", **extra):
    body = [(11, cl), (55, sym), (54, side), (60, "20261125-10:00:00.000"), (38, qty), (40, "2"), (44, px)]
    return body + list(extra.items())


def test_plain_client_orders_rejects_status_and_mass_status():
    async def main():
        srv = build_server(parse_venue_config(config()))
        await srv.start()
        try:
            async with Client(srv.port) as c:
                c.send("D", nos("K1", "2", 100, "233.00"))
                c.send("D", nos("K2", "2", 50, "232.00"))
                c.send("D", nos("K3", "1", 50, "232.00"))      # fills K2
                c.send("D", nos("BAD1", sym="ZZZ"))
                c.send("D", nos("BAD2", px="230.001"))
                got = await c.wait(7)
                reports = {(m[11], m[150]): m for m in got}
                new = reports[(b"K1", b"0")]
                assert new[39] == b"0" and new[151] == b"100" and new[37].startswith(b"VENUE-A-")
                fill = reports[(b"K2", b"F")]
                assert (fill[32], fill[31], fill[14], fill[151], fill[6], fill[39]) == (
                    b"50", b"232.00", b"50", b"0", b"232", b"2")
                unk = reports[(b"BAD1", b"8")]
                assert unk[103] == b"1" and b"unknown instrument" in unk[58] and unk[37] == b"NONE"
                off = reports[(b"BAD2", b"8")]
                assert off[103] == b"99" and b"not a multiple of the tick size" in off[58]
                # Plain clients do not get the crossbook reason-code tag (they would reject it).
                assert all(REASON_CODE_TAG not in m for m in got)
                c.got.clear()
                c.send("H", [(11, "K1"), (55, "AAPL"), (54, "2"), (790, "Q1")])
                st = (await c.wait(1))[0]
                assert (st[150], st[39], st[790], st[151]) == (b"I", b"0", b"Q1", b"100")
                c.got.clear()
                c.send("AF", [(584, "M1"), (585, "7")])
                ms = await c.wait(1)
                # Only K1 lives (K2 and K3 filled): one report, which is the last.
                assert len(ms) == 1 and (ms[0][11], ms[0][911], ms[0][912], ms[0][584]) == (b"K1", b"1", b"Y", b"M1")
                c.got.clear()
                c.send("F", [(41, "K1"), (11, "K1-c"), (55, "AAPL"), (54, "2"), (60, "20261125-10:00:00.000")])
                assert (await c.wait(1))[0][150] == b"4"
                c.got.clear()
                c.send("AF", [(584, "M2"), (585, "7")])
                empty = (await c.wait(1))[0]
                assert (empty[911], empty[912], empty[58]) == (b"0", b"Y", b"no orders")
                c.got.clear()
                c.send("F", [(41, "nope"), (11, "x-c"), (55, "AAPL"), (54, "2"), (60, "20261125-10:00:00.000")])
                rej = (await c.wait(1))[0]
                assert (rej[35], rej[434], rej[102], rej[58]) == (b"9", b"1", b"1", b"unknown order nope")
                c.got.clear()
                c.send("q", [(11, "mc"), (530, "7"), (60, "20261125-10:00:00.000")])
                br = (await c.wait(1))[0]
                assert (br[35], br[380]) == (b"j", b"3")
        finally:
            await srv.stop()
    asyncio.run(main())


def test_two_sessions_may_use_the_same_clordid():
    async def main():
        cfg = parse_venue_config(config(sessions=[{"comp_id": "PLAIN"}, {"comp_id": "OTHER"}]))
        srv = build_server(cfg)
        await srv.start()
        try:
            async with Client(srv.port) as c:
                c.send("D", nos("SAME", "2", 10, "231.00"))
                await c.wait(1)
                # The venue's own view: the two sessions' ids live apart.
                srv.venue.new_order(VenueOrder("OTHER\x1fSAME", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 10,
                                               23100))
                got = await c.wait(2)
                assert got[1][150] == b"F" and got[1][11] == b"SAME"
        finally:
            await srv.stop()
    asyncio.run(main())


def test_market_data_is_not_replayed_on_resend():
    srv = build_server(parse_venue_config(config()))
    session = next(iter(srv.acceptor.sessions.values()))
    with pytest.raises(DoNotSend):
        srv.to_app(session, b"X", [])
    srv.to_app(session, b"8", [])    # execution reports are resent


def test_fault_knobs_and_defaults_from_config():
    cfg = parse_venue_config(config(faults={"latency_us": 250, "reject_ratio": 0.25, "disconnect_after_messages": 7,
                                            "disconnect_repeat": True}, market_data={"max_depth": 4},
                                    background={"rate": 5, "seed": 3}))
    srv = build_server(cfg)
    assert srv.venue.latency_ns == 250_000 and srv.venue.reject_ratio == 0.25
    assert srv.disconnect_after == 7 and srv.disconnect_repeat and srv.md.max_depth == 4
    assert srv.venue.background_enabled
    assert [s.key() for s in cfg.session_settings()] == [("FIX.4.4", "VENUE-A", "PLAIN", "")]
    assert cfg.storage is None and cfg.session_settings()[0].store == "memory"


@pytest.mark.parametrize("doc, message", [
    ({"sessions": [{"comp_id": "X"}]}, "venue.name: required"),
    ({"venue": {"name": "V"}, "sessions": [{"comp_id": "X"}]}, "venue.port: required"),
    ({"venue": {"name": "VENUE-A", "port": 0}}, "sessions: at least one"),
    ({"venue": {"name": "VENUE-A", "port": 0}, "sessions": [{"comp_id": "X"}, {"comp_id": "X"}]},
     r"sessions\[1\]\.comp_id: duplicate"),
    ({"venue": {"name": "VENUE-A", "port": 0, "colour": 1}, "sessions": [{"comp_id": "X"}]}, "venue.colour: unknown"),
    ({"venue": {"name": "VENUE-A", "port": 70000}, "sessions": [{"comp_id": "X"}]}, "venue.port: must be"),
    ({"venue": {"name": "VENUE-A", "port": 0}, "sessions": [{"comp_id": "X"}], "faults": {"reject_ratio": 2}},
     "faults.reject_ratio"),
    ({"venue": {"name": "VENUE-A", "port": 0}, "sessions": [{"comp_id": "X"}], "background": {"rate": -1}},
     "background.rate"),
    ({"venue": {"name": "VENUE-Z", "port": 0}, "sessions": [{"comp_id": "X"}]}, "no instrument lists the venue"),
    ({"venue": {"name": "VENUE-A", "port": 0}, "sessions": [{"comp_id": "X"}], "market_data": {"max_depth": 0}},
     "market_data.max_depth"),
    ({"venue": {"name": "VENUE-A", "port": 0}, "sessions": [{"comp_id": "X"}],
      "instruments": [{"symbol": "A", "asset_class": "equity", "tick_size": 0.01, "venues": ["VENUE-A"]}]},
     r"instruments\[0\]\.tick_size"),
])
def test_config_errors_name_the_key(doc, message):
    with pytest.raises(VenueConfigError, match=message):
        parse_venue_config(doc)


# ------------------------------------------------------------------------------------------------
# Market data publisher, message by message
# ------------------------------------------------------------------------------------------------
def md_request(req, sub="1", depth=2, update="1", symbols=("AAPL",), types=("0", "1")):
    fields = [(262, req.encode()), (263, sub.encode()), (264, str(depth).encode()), (265, update.encode()),
              (267, str(len(types)).encode())]
    fields += [(269, t.encode()) for t in types]
    fields.append((146, str(len(symbols)).encode()))
    fields += [(55, s.encode()) for s in symbols]
    return Message(fields)


def entries(body, start):
    out, cur = [], None
    for tag, value in body:
        if tag == start:
            cur = {}
            out.append(cur)
        if cur is not None:
            cur[tag] = value
    return out


class MD:
    def __init__(self, conflate_s=0.0):
        self.venue = InProcessVenue("VENUE-A", MASTER, Clock())
        self.sent: list[tuple[object, bytes, list]] = []
        self.md = MarketDataPublisher(self.venue, MASTER, lambda s, mt, body: self.sent.append((s, mt, body)),
                                      max_depth=5, conflate_s=conflate_s)
        self.venue.set_event_sink(lambda ev: None)
        self.n = 0

    def order(self, side, qty, px):
        self.n += 1
        self.venue.new_order(VenueOrder(f"o{self.n}", AAPL, side, OrdType.LIMIT, TimeInForce.DAY, qty, px))
        return f"o{self.n}"

    async def settle(self):
        for _ in range(3):
            await asyncio.sleep(0)
        out, self.sent[:] = list(self.sent), []
        return out


def test_snapshot_then_incremental_new_change_delete_within_the_depth_window():
    async def main():
        h = MD()
        await h.venue.start()
        h.order(Side.SELL, 10, 23010)
        h.order(Side.SELL, 20, 23020)
        h.order(Side.SELL, 30, 23030)
        h.order(Side.BUY, 5, 22990)
        await h.settle()
        h.md.on_request("S1", md_request("R1", depth=2))
        (s, mt, body), = await h.settle()
        assert (s, mt) == ("S1", b"W") and (262, b"R1") in body and (55, "AAPL") in body
        snap = [(e[269], e[270], e[271]) for e in entries(body, 269)]
        assert snap == [(b"0", "229.90", 5), (b"1", "230.10", 10), (b"1", "230.20", 20)]
        # Take out the best ask: it is deleted, the third level enters the window.
        h.order(Side.BUY, 10, 23010)
        (s, mt, body), = await h.settle()
        assert mt == b"X"
        inc = [(e[279], e[269], e[270], e.get(271)) for e in entries(body, 279)]
        assert inc == [(b"2", b"1", "230.10", None), (b"0", b"1", "230.30", 30)]
        # A second order at a shown level: Change with the new size and count.
        h.order(Side.SELL, 5, 23020)
        (s, mt, body), = await h.settle()
        (e,) = entries(body, 279)
        assert (e[279], e[270], e[271], e[346]) == (b"1", "230.20", 25, 2)
        # A change beyond the window sends nothing.
        h.order(Side.SELL, 5, 23050)
        assert await h.settle() == []
        # Unsubscribe: nothing more.
        h.md.on_request("S1", md_request("R1", sub="2"))
        h.order(Side.BUY, 1, 22995)
        assert await h.settle() == [] and h.md.subscription_count == 0
        await h.venue.stop()
    asyncio.run(main())


def test_full_refresh_subscription_and_session_drop():
    async def main():
        h = MD()
        await h.venue.start()
        h.md.on_request("S1", md_request("R1", update="0", types=("0",)))
        (_, mt, body), = await h.settle()
        assert mt == b"W" and (268, 0) in body
        h.order(Side.BUY, 5, 22990)
        h.order(Side.SELL, 5, 23010)                       # offers are not subscribed
        (_, mt, body), = await h.settle()
        assert mt == b"W" and [(e[269], e[270]) for e in entries(body, 269)] == [(b"0", "229.90")]
        h.md.drop_session("S1")
        h.order(Side.BUY, 5, 22995)
        assert await h.settle() == []
        await h.venue.stop()
    asyncio.run(main())


@pytest.mark.parametrize("kw, reason, text", [
    ({"symbols": ("ZZZ",)}, b"0", "unknown instrument"),
    ({"sub": "7"}, b"4", "SubscriptionRequestType"),
    ({"update": "5"}, b"6", "MDUpdateType"),
    ({"types": ("2",)}, b"8", "MDEntryType"),
    ({"symbols": ()}, b"0", "no instrument"),
])
def test_market_data_request_rejects(kw, reason, text):
    async def main():
        h = MD()
        h.md.on_request("S1", md_request("R9", **kw))
        (_, mt, body), = h.sent
        assert mt == b"Y" and (262, b"R9") in body and (281, reason) in body
        assert text in dict(body)[58]
    asyncio.run(main())


def test_duplicate_subscription_id_is_rejected_and_snapshot_only_does_not_subscribe():
    async def main():
        h = MD()
        h.md.on_request("S1", md_request("R1"))
        h.md.on_request("S1", md_request("R1"))
        assert [mt for _, mt, _ in h.sent] == [b"W", b"Y"] and (281, b"1") in h.sent[1][2]
        h.md.on_request("S2", md_request("R1", sub="0"))      # another session may reuse the id
        assert h.sent[2][1] == b"W" and h.md.subscription_count == 1
    asyncio.run(main())


def test_the_publisher_listens_to_book_changes_only_while_something_is_subscribed():
    # With no subscriber the venue must do no market data work per order (no book-change callback).
    async def main():
        venue = InProcessVenue("VENUE-A", MASTER, Clock())
        venue.set_event_sink(lambda ev: None)
        calls = []
        add, remove = venue.add_book_listener, venue.remove_book_listener
        venue.add_book_listener = lambda f: (calls.append("add"), add(f))
        venue.remove_book_listener = lambda f: (calls.append("remove"), remove(f))
        sent = []
        md = MarketDataPublisher(venue, MASTER, lambda s, mt, body: sent.append((s, mt)), max_depth=5)
        await venue.start()
        assert calls == []
        md.on_request("S1", md_request("R0", sub="0"))            # a snapshot only
        assert sent == [("S1", b"W")] and calls == []
        md.on_request("S1", md_request("R1"))
        md.on_request("S2", md_request("R2"))
        assert calls == ["add"]
        sent.clear()
        venue.new_order(VenueOrder("o1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 5, 22990))
        for _ in range(3):
            await asyncio.sleep(0)
        assert sorted(sent) == [("S1", b"X"), ("S2", b"X")]
        md.on_request("S1", md_request("R1", sub="2"))
        assert calls == ["add"]                                  # R2 still subscribed
        md.drop_session("S2")
        assert calls == ["add", "remove"]
        sent.clear()
        venue.new_order(VenueOrder("o2", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 5, 22980))
        for _ in range(3):
            await asyncio.sleep(0)
        assert sent == []
        md.on_request("S1", md_request("R3"))                    # subscribing again works as before
        venue.new_order(VenueOrder("o3", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 5, 22995))
        for _ in range(3):
            await asyncio.sleep(0)
        assert sent[-1] == ("S1", b"X")
        md.close()
        assert calls == ["add", "remove", "add", "remove"]
        await venue.stop()
    asyncio.run(main())


def test_missing_field_without_validation_is_answered_not_fatal():
    async def main():
        srv = build_server(parse_venue_config(config(sessions=[{"comp_id": "PLAIN", "validate": False}])))
        await srv.start()
        try:
            async with Client(srv.port) as c:
                c.send("F", [(11, "x-c"), (54, "2")])               # no OrigClOrdID
                c.send("D", [(11, "K9"), (55, "AAPL"), (54, "2"), (40, "2"), (38, "5"), (44, "231.00")])
                got = await c.wait(2)
                br = got[0]
                assert (br[35], br[380], br[58]) == (b"j", b"5", b"Required tag missing (41)")
                assert got[1][35] == b"8" and got[1][150] == b"0"    # the session goes on
                assert c.init.session().is_logged_on
        finally:
            await srv.stop()
    asyncio.run(main())


def test_conflation_sends_the_book_as_it_is_at_the_end_of_the_interval():
    async def main():
        h = MD(conflate_s=0.05)
        await h.venue.start()
        h.md.on_request("S1", md_request("R1", depth=3))
        await h.settle()
        for k in range(5):                       # five changes in separate loop turns
            h.order(Side.SELL, 10, 23010 + k)
            await asyncio.sleep(0)
        cancel_me = h.order(Side.SELL, 10, 23100)
        await asyncio.sleep(0)
        h.venue.cancel_order(cancel_me, "c")
        assert await h.settle() == []            # nothing before the interval ends
        await asyncio.sleep(0.08)
        sent = await h.settle()
        assert len(sent) == 1 and sent[0][1] == b"X"
        news = [(e[279], e[270]) for e in entries(sent[0][2], 279)]
        assert news == [(b"0", "230.10"), (b"0", "230.11"), (b"0", "230.12")]   # top 3; 231.00 never shown
        h.order(Side.SELL, 10, 23000)
        await asyncio.sleep(0)                   # the change is seen: the subscription is dirty
        await asyncio.sleep(0)
        assert h.md._dirty
        h.md.on_request("S1", md_request("R1", sub="2"))
        await asyncio.sleep(0.08)
        assert await h.settle() == []            # unsubscribed while dirty: nothing
        h.md.close()
        await h.venue.stop()
    asyncio.run(main())


def test_conflation_knob_is_checked():
    with pytest.raises(ValueError, match="conflate_s"):
        MarketDataPublisher(InProcessVenue("VENUE-A", MASTER, Clock()), MASTER, lambda *a: None, conflate_s=-1)
    cfg = parse_venue_config(config(market_data={"conflate_ms": 25}))
    assert build_server(cfg).md.conflate_s == 0.025
