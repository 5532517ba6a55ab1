"""FixVenue against real `crossbook venue` processes over loopback FIX.

Every test starts the venue as a subprocess (port 0, its FIX stores in tmp_path), connects a
FixVenue (a FileStore of its own), and checks the VenueEvents as the OMS would receive them: the
order lifecycle, market data, a venue killed with -9 and restarted (its books are gone, the
orders come back as canceled), the disconnect-after-N knob and SIGUSR1 with sequence numbers
continuing, and reconciliation of a fill that happened while the session was down.
"""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crossbook.core import OrdType, Reason, Side, Status, TimeInForce
from crossbook.fix.messages import Message
from crossbook.fix.framing import split_fields
from crossbook.model.instruments import DEFAULT_INSTRUMENTS, InstrumentMaster
from crossbook.routing.fix_venue import RECONCILED, FixVenue
from crossbook.routing.venue import Venue, VenueEvent, VenueEventKind as K, VenueOrder, VenueReason
import venuekit

pytestmark = pytest.mark.timeout(120)

MASTER = InstrumentMaster.from_config(DEFAULT_INSTRUMENTS)
AAPL = MASTER.by_symbol("AAPL")
FX = MASTER.by_symbol("EUR/USD")
OPT = MASTER.by_symbol("AAPL 20261218 C200")


def venue_config(tmp: Path, *, port: int = 0, faults: str = "", sessions=("CROSSBOOK",), extra: str = "") -> Path:
    """VENUE-A's config: FIX stores in ``tmp/store``, the file ``tmp/venue-a.toml``."""
    return venuekit.venue_config(tmp, "VENUE-A", port=port, faults=faults, sessions=sessions, extra=extra,
                                 storage="store", filename="venue-a.toml")


class Recorder:
    """The OMS's side: a FixVenue whose sink and state listener record everything."""

    def __init__(self, port: int, tmp: Path, *, sender="CROSSBOOK", md_depth=5, reconnect_min_s=0.05,
                 reconnect_max_s=0.4):
        self.venue = FixVenue("VENUE-A", MASTER, host="127.0.0.1", port=port, sender_comp_id=sender,
                              target_comp_id="VENUE-A", store_path=str(tmp / f"oms-{sender}"), md_depth=md_depth,
                              reconnect_min_s=reconnect_min_s, reconnect_max_s=reconnect_max_s)
        self.events: list[VenueEvent] = []
        self.states: list[tuple[bool, str]] = []
        self.venue.set_event_sink(self.events.append)
        self.venue.add_state_listener(lambda name, up, reason: self.states.append((up, reason)))
        self._n = 0

    async def __aenter__(self):
        await self.venue.start()
        assert await self.venue.wait_up(15), "FixVenue did not log on"
        return self

    async def __aexit__(self, *exc):
        await self.venue.stop()

    def order(self, side, qty, price, *, inst=AAPL, ord_type=OrdType.LIMIT, tif=TimeInForce.DAY, cl=None, **kw):
        self._n += 1
        cl = cl or f"O{self._n}"
        self.venue.new_order(VenueOrder(cl, inst, side, ord_type, tif, qty, price, **kw))
        return cl

    async def wait(self, pred, timeout=10.0, what="condition"):
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; events: {self.events}; states: {self.states}")
            await asyncio.sleep(0.01)

    def of(self, cl, kind=None):
        return [e for e in self.events if (e.venue_cl_ord_id == cl or e.orig_venue_cl_ord_id == cl)
                and (kind is None or e.kind == kind)]

    async def wait_event(self, cl, kind, n=1, timeout=10.0):
        await self.wait(lambda: len(self.of(cl, kind)) >= n, timeout, f"{n} {kind.name} for {cl}")
        return self.of(cl, kind)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 100))


# ------------------------------------------------------------------------------------------------
def test_fix_venue_implements_the_protocol():
    fv = FixVenue("VENUE-A", MASTER, host="127.0.0.1", port=1, sender_comp_id="X", target_comp_id="Y")
    assert isinstance(fv, Venue)
    assert fv.lists(AAPL) and not fv.is_up
    assert fv.top_of_book(AAPL) == (0, 0, 0, 0)


def test_requests_before_start_are_answered_venue_down():
    async def main():
        fv = FixVenue("VENUE-A", MASTER, host="127.0.0.1", port=1, sender_comp_id="X", target_comp_id="Y")
        events = []
        fv.set_event_sink(events.append)
        fv.new_order(VenueOrder("A1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 10, 23000))
        fv.cancel_order("A1", "A2")
        fv.replace_order("A1", "A3", 20, 23000)
        assert events == []                       # never re-entrant
        await asyncio.sleep(0)
        assert [e.kind for e in events] == [K.REJECTED, K.CANCEL_REJECTED, K.REPLACE_REJECTED]
        assert all(e.reason_code == VenueReason.VENUE_DOWN for e in events)
        assert events[0].reason == "venue down: VENUE-A is not started"
    run(main())


def test_bad_constructor_arguments_are_named():
    with pytest.raises(ValueError, match="port"):
        FixVenue("V", MASTER, host="h", port=0, sender_comp_id="X", target_comp_id="Y")
    with pytest.raises(ValueError, match="reconnect_max_s"):
        FixVenue("V", MASTER, host="h", port=1, sender_comp_id="X", target_comp_id="Y", reconnect_min_s=2,
                 reconnect_max_s=1)
    with pytest.raises(ValueError, match=r"venues\[1\]\.port"):
        FixVenue.from_config({"name": "V", "host": "h", "port": "x", "sender_comp_id": "A", "target_comp_id": "B"},
                             MASTER, where="venues[1]")
    with pytest.raises(ValueError, match=r"venues\[0\]\.prot: unknown key"):
        FixVenue.from_config({"name": "V", "prot": 1}, MASTER)


def test_ack_fill_partial_fill_and_exec_id_idempotency(tmp_path, venue_proc):
    vp = venue_proc(venue_config(tmp_path))

    async def main():
        async with Recorder(vp.port, tmp_path) as r:
            sell = r.order(Side.SELL, 100, 23000)
            new = (await r.wait_event(sell, K.NEW))[0]
            assert new.venue_order_id.startswith("VENUE-A-") and new.leaves_qty == 100 and new.ord_status == 0
            buy = r.order(Side.BUY, 40, 23005)
            await r.wait_event(buy, K.TRADE)
            await r.wait_event(sell, K.TRADE)
            tb = r.of(buy, K.TRADE)[0]
            ts = r.of(sell, K.TRADE)[0]
            # Fill at the maker's price, both sides reported, exec ids unique.
            assert (tb.last_qty, tb.last_px, tb.cum_qty, tb.leaves_qty, tb.ord_status) == (40, 23000, 40, 0, 2)
            assert (ts.last_qty, ts.last_px, ts.cum_qty, ts.leaves_qty, ts.ord_status) == (40, 23000, 40, 60, 1)
            assert ts.venue_order_id == new.venue_order_id
            assert tb.exec_id and ts.exec_id and tb.exec_id != ts.exec_id
            # The order entered the book: a buy at a better price than the rest fills it up.
            buy2 = r.order(Side.BUY, 60, 23000)
            await r.wait_event(sell, K.TRADE, 2)
            last = r.of(sell, K.TRADE)[-1]
            assert (last.cum_qty, last.leaves_qty, last.ord_status) == (100, 0, 2)
            await r.wait_event(buy2, K.TRADE)
            # Idempotency: the same ExecutionReport again (as a resend would bring it) is dropped.
            # Take the venue's report from its file store (raw messages appended one after another).
            n = len(r.events)
            body = (tmp_path / "store" / "FIX.4.4-VENUE-A-CROSSBOOK.body").read_bytes()
            frames = [b"8=FIX" + f for f in body.split(b"8=FIX")[1:]]
            trade = next(Message(split_fields(f)) for f in frames
                         if b"\x01150=F\x01" in f and f"\x0111={sell}\x01".encode() in f)
            r.venue.from_app(r.venue.session, trade)
            await asyncio.sleep(0.05)
            assert len(r.events) == n and r.venue.duplicate_execs_dropped == 1
    run(main())


def test_cancel_replace_status_and_rejects(tmp_path, venue_proc):
    vp = venue_proc(venue_config(tmp_path))

    async def main():
        async with Recorder(vp.port, tmp_path) as r:
            a = r.order(Side.SELL, 100, 23100)
            oid = (await r.wait_event(a, K.NEW))[0].venue_order_id
            # Replace: FIX semantics, new id, same venue order id.
            r.venue.replace_order(a, "A-r1", 150, 23110)
            rep = (await r.wait_event("A-r1", K.REPLACED))[0]
            assert (rep.orig_venue_cl_ord_id, rep.venue_order_id, rep.leaves_qty, rep.ord_status) == (a, oid, 150, 0)
            r.venue.order_status("A-r1")
            st = (await r.wait_event("A-r1", K.STATUS))[0]
            assert (st.leaves_qty, st.cum_qty, st.ord_status, st.venue_order_id) == (150, 0, 0, oid)
            # The replaced order rests at its new price in the venue's market data.
            await r.wait(lambda: r.venue.top_of_book(AAPL)[2:] == (23110, 150), what="ask 231.10 x 150")
            r.venue.cancel_order("A-r1", "A-c1")
            c = (await r.wait_event("A-c1", K.CANCELED))[0]
            assert (c.orig_venue_cl_ord_id, c.reason_code, c.ord_status) == ("A-r1", Reason.USER_CANCEL, 4)
            r.venue.cancel_order("A-r1", "A-c2")
            cr = (await r.wait_event("A-c2", K.CANCEL_REJECTED))[0]
            assert cr.reason_code == Reason.TOO_LATE and cr.reason.startswith("too late to cancel")
            r.venue.replace_order("nope", "B-r1", 10, 23000)
            rr = (await r.wait_event("B-r1", K.REPLACE_REJECTED))[0]
            assert rr.reason_code == Reason.UNKNOWN_ORDER and rr.reason == "unknown order nope"
            r.venue.order_status("ghost")
            st = (await r.wait_event("ghost", K.STATUS))[0]
            assert st.reason_code == Reason.UNKNOWN_ORDER and st.ord_status == 8 and st.venue_order_id == ""
            # Rejects: off-lot at the venue, post-only that would match, duplicate id locally.
            f = r.order(Side.BUY, 1500, 108000, inst=FX)
            rej = (await r.wait_event(f, K.REJECTED))[0]
            assert rej.reason_code == VenueReason.INVALID_LOT and "lot size 1000" in rej.reason
            r.order(Side.SELL, 10, 23200)
            p = r.order(Side.BUY, 10, 23200, post_only=True)
            assert (await r.wait_event(p, K.REJECTED))[0].reason_code == Reason.POST_ONLY_WOULD_MATCH
            r.venue.new_order(VenueOrder(a, AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 1, 23000))
            assert (await r.wait_event(a, K.REJECTED))[0].reason_code == Reason.DUPLICATE_ID
            # IOC remainder is cancelled by the venue, and an option (instrument fields) trades.
            i = r.order(Side.BUY, 30, 23200, tif=TimeInForce.IOC)
            await r.wait_event(i, K.CANCELED)
            assert r.of(i, K.TRADE)[0].last_qty == 10
            assert r.of(i, K.CANCELED)[0].reason_code == Reason.IOC_REMAINDER
            o1 = r.order(Side.SELL, 2, 3250, inst=OPT)
            o2 = r.order(Side.BUY, 2, 3250, inst=OPT)
            assert (await r.wait_event(o2, K.TRADE))[0].last_px == 3250
            assert (await r.wait_event(o1, K.TRADE))[0].ord_status == 2
    run(main())


def test_market_data_snapshot_and_incrementals_follow_the_book(tmp_path, venue_proc):
    vp = venue_proc(venue_config(tmp_path))

    async def main():
        async with Recorder(vp.port, tmp_path, md_depth=3) as r:
            fv = r.venue
            await r.wait(lambda: fv.top_of_book(AAPL) == (0, 0, 0, 0), what="empty book")
            for k, px in enumerate((23010, 23020, 23030, 23040)):
                r.order(Side.SELL, 10 * (k + 1), px)
            b = r.order(Side.BUY, 5, 22990)
            await r.wait(lambda: fv.top_of_book(AAPL) == (22990, 5, 23010, 10), what="top of book")
            # Top 3 only: the 4th ask level is not shown.
            await r.wait(lambda: fv.depth(AAPL, 10)[1] == [(23010, 10, 1), (23020, 20, 1), (23030, 30, 1)],
                         what="three ask levels")
            # A trade takes out the best ask: the 4th level enters the window.
            r.order(Side.BUY, 10, 23010)
            await r.wait(lambda: fv.depth(AAPL, 10)[1] == [(23020, 20, 1), (23030, 30, 1), (23040, 40, 1)],
                         what="ask window moved")
            r.venue.cancel_order(b, "b-c")
            await r.wait(lambda: fv.top_of_book(AAPL)[:2] == (0, 0), what="bid gone")
            r.order(Side.SELL, 7, 23020)
            await r.wait(lambda: fv.depth(AAPL, 1)[1] == [(23020, 27, 2)], what="two orders at 230.20")
            # Another instrument's book is separate.
            assert fv.top_of_book(FX) == (0, 0, 0, 0)
    run(main())


def test_kill_9_and_restart_reconciles_live_orders_as_canceled(tmp_path, venue_proc):
    cfg = venue_config(tmp_path)
    vp = venue_proc(cfg)
    port = vp.port

    async def main():
        async with Recorder(port, tmp_path) as r:
            live = r.order(Side.SELL, 100, 23300)
            await r.wait_event(live, K.NEW)
            partial = r.order(Side.SELL, 50, 23200)
            await r.wait_event(partial, K.NEW)
            r.order(Side.BUY, 20, 23200)
            await r.wait_event(partial, K.TRADE)
            done = r.order(Side.BUY, 5, 23000)
            r.venue.cancel_order(done, "done-c")
            await r.wait_event("done-c", K.CANCELED)
            seq_out = r.venue.session.next_sender_seq
            vp.kill()                                                        # kill -9
            await r.wait(lambda: not r.venue.is_up, what="down")
            assert r.states[-1][0] is False
            r.order(Side.BUY, 1, 23000, cl="while-down")
            down = (await r.wait_event("while-down", K.REJECTED))[0]
            assert down.reason_code == VenueReason.VENUE_DOWN and down.reason == "venue down: VENUE-A is disconnected"
            n_before = len(r.events)
            venue_proc(cfg, port=port)                                     # same port, same stores
            await r.wait(lambda: r.venue.is_up, timeout=20, what="reconnected")
            # Both live orders are gone with the venue's books: CANCELED (unknown order), then STATUS.
            for cl, cum in ((live, 0), (partial, 20)):
                c = (await r.wait_event(cl, K.CANCELED))[0]
                assert c.reason_code == Reason.UNKNOWN_ORDER and "restarted" in c.reason and c.cum_qty == cum
                st = (await r.wait_event(cl, K.STATUS))[0]
                assert st.reason == RECONCILED and st.ord_status == Status.CANCELLED
            # Nothing about the finished order, nothing doubled.
            later = r.events[n_before:]
            assert not [e for e in later if e.venue_cl_ord_id in (done, "done-c")]
            assert not [e for e in later if e.kind == K.TRADE]
            # Sequence numbers continued on both sides (no reset), and trading goes on.
            assert r.venue.session.next_sender_seq > seq_out
            assert r.venue.logons == 2
            again = r.order(Side.SELL, 10, 23100)
            await r.wait_event(again, K.NEW)
    run(main())


def test_disconnect_after_n_messages_then_reconnect_with_sequence_numbers_continuing(tmp_path, venue_proc):
    vp = venue_proc(venue_config(tmp_path, faults="disconnect_after_messages = 3"))

    async def main():
        async with Recorder(vp.port, tmp_path, md_depth=0) as r:
            seq0 = r.venue.session.next_sender_seq
            cls = [r.order(Side.SELL, 10, 23100 + k) for k in range(3)]
            await r.wait(lambda: r.venue.logons == 2, timeout=15, what="dropped and logged on again")
            for cl in cls:
                await r.wait_event(cl, K.NEW)
                await r.wait_event(cl, K.STATUS)             # reconciliation after the reconnect
            assert [s[0] for s in r.states] == [True, False, True]
            # Each order acknowledged exactly once; our numbers went on from where they were.
            assert all(len(r.of(cl, K.NEW)) == 1 for cl in cls)
            assert all(r.of(cl, K.STATUS)[0].reason == RECONCILED and r.of(cl, K.STATUS)[0].ord_status == 0
                       for cl in cls)
            assert r.venue.session.next_sender_seq >= seq0 + 3 + 1 + 3   # 3 orders, Logon, 3 status requests
            x = r.order(Side.BUY, 10, 23100)
            await r.wait_event(x, K.TRADE)
    run(main())


def test_sigusr1_drop_and_fill_while_down_is_delivered_once(tmp_path, venue_proc):
    vp = venue_proc(venue_config(tmp_path, sessions=("CROSSBOOK", "OTHER")))

    async def main():
        async with Recorder(vp.port, tmp_path, reconnect_min_s=1.5, reconnect_max_s=2.0) as r, \
                Recorder(vp.port, tmp_path, sender="OTHER", md_depth=0) as other:
            mine = r.order(Side.SELL, 100, 23100)
            await r.wait_event(mine, K.NEW)
            vp.signal(signal.SIGUSR1)                           # drops both sessions
            await r.wait(lambda: not r.venue.is_up, what="down")
            await other.wait(lambda: other.venue.logons == 2, what="other back")
            # While we are away, another member lifts 60 of our offer.
            t = other.order(Side.BUY, 60, 23100)
            await other.wait_event(t, K.TRADE)
            await r.wait(lambda: r.venue.is_up, timeout=15, what="reconnected")
            trade = (await r.wait_event(mine, K.TRADE))[0]
            assert (trade.last_qty, trade.last_px, trade.cum_qty, trade.leaves_qty) == (60, 23100, 60, 40)
            st = (await r.wait_event(mine, K.STATUS))[0]
            assert (st.reason, st.cum_qty, st.leaves_qty, st.ord_status) == (RECONCILED, 60, 40, 1)
            await asyncio.sleep(0.2)
            assert len(r.of(mine, K.TRADE)) == 1                # resent once, reconciled, not doubled
            assert not r.of(mine, K.CANCELED)
    run(main())


def test_venue_command_rejects_a_bad_config(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[venue]\nname = "VENUE-A"\nport = 0\n[[sessions]]\ncomp_id = "X"\n[faults]\nlatency = 5\n')
    p = subprocess.run([sys.executable, "-m", "crossbook.app.cli", "venue", "--config", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert "faults.latency: unknown key" in p.stderr


def test_venue_command_stops_cleanly_on_sigterm(tmp_path, venue_proc):
    vp = venue_proc(venue_config(tmp_path))
    assert vp.stop() == 0
    assert any("stopped" in line for line in vp.lines)
    assert (tmp_path / "store" / "FIX.4.4-VENUE-A-CROSSBOOK.seqnums").exists()


def _back_with_a_reset_session(port: int, tmp: Path, order: VenueOrder, **restore) -> Recorder:
    """The OMS back after a restart with a reset session (ResetSeqNumFlag: the venue resends
    nothing, a fresh store in ``tmp``/fresh) that takes ``order`` back before it logs on
    (``restore_order(order, **restore)``), so its state is found by reconciliation only."""
    r = Recorder(port, tmp / "fresh")
    r.venue = FixVenue("VENUE-A", MASTER, host="127.0.0.1", port=port, sender_comp_id="CROSSBOOK",
                       target_comp_id="VENUE-A", reset_on_logon=True, md_depth=0)
    r.venue.set_event_sink(r.events.append)
    r.venue.restore_order(order, **restore)
    return r


def test_oms_restart_restore_order_and_session_reset_reconciliation(tmp_path, venue_proc):
    vp = venue_proc(venue_config(tmp_path))

    async def main():
        async with Recorder(vp.port, tmp_path) as r:
            resting = r.order(Side.SELL, 50, 23200)
            oid = (await r.wait_event(resting, K.NEW))[0].venue_order_id
        # The OMS process "restarts" with the same store: sequence numbers continue, the venue
        # resends nothing new, and restore_order (before start) asks about the open order.
        r2 = Recorder(vp.port, tmp_path)
        r2.venue.restore_order(VenueOrder(resting, AAPL, Side.SELL, OrdType.LIMIT, TimeInForce.DAY, 50, 23200),
                               venue_order_id=oid)
        async with r2:
            st = (await r2.wait_event(resting, K.STATUS))[0]
            assert (st.reason, st.leaves_qty, st.ord_status, st.venue_order_id) == (RECONCILED, 50, 0, oid)
            # Someone else fills 20 while we are gone ...
            taker = r2.order(Side.BUY, 20, 23200, cl="T1")
            await r2.wait_event(taker, K.TRADE)
            await r2.wait_event(resting, K.TRADE)
        # ... and this time the OMS comes back with a reset session (ResetSeqNumFlag): no resend,
        # so the fill is only found by reconciliation, as one TRADE with a stable exec id.
        r3 = _back_with_a_reset_session(
            vp.port, tmp_path, VenueOrder(resting, AAPL, Side.SELL, OrdType.LIMIT, TimeInForce.DAY, 50, 23200),
            venue_order_id=oid)
        async with r3:
            tr = (await r3.wait_event(resting, K.TRADE))[0]
            assert (tr.last_qty, tr.last_px, tr.cum_qty, tr.leaves_qty, tr.ord_status) == (20, 23200, 20, 30, 1)
            assert tr.exec_id == f"{oid}-RECON-20"
            st = (await r3.wait_event(resting, K.STATUS))[0]
            assert (st.reason, st.cum_qty, st.leaves_qty) == (RECONCILED, 20, 30)
            assert r3.venue.session.next_sender_seq < 10          # the session was reset
    run(main())


def test_in_process_server_knobs_stop_trigger_and_bounded_memory():
    """The server in this process (no subprocess): reject ratio, latency, a stop's trigger over FIX,
    and finished orders forgotten beyond max_done_orders on both sides."""
    from crossbook.venues.process import build_server, parse_venue_config

    async def main():
        doc = {"venue": {"name": "VENUE-A", "port": 0}, "sessions": [{"comp_id": "CROSSBOOK", "reason_codes": True}],
               "faults": {"reject_ratio": 1.0, "latency_us": 20_000}}
        srv = build_server(parse_venue_config(doc))
        srv._max_done = 2
        await srv.start()
        fv = FixVenue("VENUE-A", MASTER, host="127.0.0.1", port=srv.port, sender_comp_id="CROSSBOOK",
                      target_comp_id="VENUE-A", md_depth=0, max_done_orders=2)
        events: list[VenueEvent] = []
        fv.set_event_sink(events.append)
        await fv.start()
        try:
            assert await fv.wait_up(10)
            t0 = time.monotonic()
            fv.new_order(VenueOrder("R1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 10, 23000))
            while not events:
                await asyncio.sleep(0.002)
            assert time.monotonic() - t0 >= 0.02                 # the latency knob held the answer
            assert events[0].kind == K.REJECTED and events[0].reason_code == VenueReason.SIMULATED_REJECT
            srv.venue.reject_ratio = 0.0
            srv.venue.latency_ns = 0
            events.clear()
            fv.new_order(VenueOrder("Z1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 10, 0))   # no price
            while not events:
                await asyncio.sleep(0.002)
            assert events[0].kind == K.REJECTED and events[0].reason_code == Reason.INVALID_PRICE
            assert "0.00" in events[0].reason
            events.clear()
            fv.new_order(VenueOrder("S1", AAPL, Side.BUY, OrdType.STOP, TimeInForce.DAY, 10, 0, stop_price=23050))
            fv.new_order(VenueOrder("M1", AAPL, Side.SELL, OrdType.LIMIT, TimeInForce.DAY, 20, 23050))
            fv.new_order(VenueOrder("M2", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 5, 23050))
            deadline = time.monotonic() + 10
            while not [e for e in events if e.venue_cl_ord_id == "S1" and e.kind == K.TRADE]:
                assert time.monotonic() < deadline, events
                await asyncio.sleep(0.01)
            kinds = [e.kind for e in events if e.venue_cl_ord_id == "S1"]
            assert kinds == [K.NEW, K.STOP_TRIGGERED, K.TRADE]
            # R1, Z1 (rejected), M2 and S1 (filled) finished, M1 lives on (15 of 20): the connector
            # remembers the last 2 finished orders only, the server likewise.
            assert [t.ids[0] for t in fv._done] == ["M2", "S1"]
            assert "R1" not in fv._orders and "Z1" not in fv._orders and "M1" in fv._orders and "S1" in fv._orders
            assert len(srv._done) == 2 and all(o.finished for o in srv._done)
        finally:
            await fv.stop()
            await srv.stop()
    run(main())


def test_reconnect_backs_off_exponentially_and_resets_after_logon(tmp_path, venue_proc):
    import socket
    with socket.socket() as s:          # a port with nobody listening (yet)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main():
        fv = FixVenue("VENUE-A", MASTER, host="127.0.0.1", port=port, sender_comp_id="CROSSBOOK",
                      target_comp_id="VENUE-A", md_depth=0, reconnect_min_s=0.05, reconnect_max_s=0.4,
                      store_path=str(tmp_path / "oms"))
        states = []
        fv.add_state_listener(lambda name, up, why: states.append((up, why)))
        await fv.start()
        await asyncio.sleep(1.2)
        attempts = fv._initiator.connect_attempts
        # 0.05 + 0.1 + 0.2 + 0.4 + 0.4 ... : about 5 tries in 1.2 s (a fixed 0.05 s would make ~20).
        assert 3 <= attempts <= 8 and fv._initiator.delay == 0.4
        vp = venue_proc(venue_config(tmp_path), port=port)
        assert await fv.wait_up(5)
        assert fv._initiator.delay == 0.05 and states == [(True, f"logged on to 127.0.0.1:{port}")]
        vp.kill()
        await asyncio.sleep(0.3)
        await fv.stop()
        assert states[-1] == (False, "disconnected: connection closed") and not fv.is_up
        with pytest.raises(RuntimeError, match="stopped"):
            await fv.start()
    run(main())


def test_resend_replays_only_unanswered_order_entry():
    from crossbook.fix.session import DoNotSend

    async def main():
        fv = FixVenue("VENUE-A", MASTER, host="127.0.0.1", port=1, sender_comp_id="CROSSBOOK",
                      target_comp_id="VENUE-A", md_depth=0)
        fv._up = fv._started = True            # as if logged on: requests go to the session store
        fv.new_order(VenueOrder("W1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 1, 23000))
        fv.new_order(VenueOrder("W2", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 1, 23000))
        fv._awaiting.discard("W2")              # W2 was answered
        s = fv.session
        fv.to_app(s, b"D", [(11, b"W1")])       # still unanswered: replayed
        for mt, body in ((b"D", [(11, b"W2")]), (b"H", [(11, b"W1")]), (b"V", [(262, b"x")])):
            with pytest.raises(DoNotSend):
                fv.to_app(s, mt, body)
        # What was actually stored: two NewOrderSingles with the right prices and ids.
        stored = [raw for _, raw in s.store.get(1, 10)]
        assert len(stored) == 2 and b"\x0111=W1\x01" in stored[0] and b"\x0144=230.00\x01" in stored[0]
    run(main())


def test_resend_after_a_gap_at_logon_replays_this_connections_status_and_market_data_requests():
    """A venue that sees a gap at our Logon asks for everything from the gap on, including the
    reconciliation's OrderStatusRequests and the MarketDataRequests sent right after the Logon:
    those of the current connection go again (else the reconciliation is never answered); older
    ones are gap-filled."""
    from crossbook.fix.session import DoNotSend

    async def main():
        fv = FixVenue("VENUE-A", MASTER, host="127.0.0.1", port=1, sender_comp_id="CROSSBOOK",
                      target_comp_id="VENUE-A", md_depth=5)
        fv._up = fv._started = True            # as if logged on: requests go to the session store
        fv.restore_order(VenueOrder("W1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 5, 23000))
        fv._subscribe_market_data()            # what on_logon sends, then the reconciliation
        fv._reconcile()
        s = fv.session
        stored = [raw for _, raw in s.store.get(1, 100)]
        status = [r for r in stored if b"\x0135=H\x01" in r]
        md = [r for r in stored if b"\x0135=V\x01" in r]
        assert status and md
        req = status[-1].split(b"\x01790=")[1].split(b"\x01")[0]
        md_req = md[0].split(b"\x01262=")[1].split(b"\x01")[0]
        fv.to_app(s, b"H", [(11, b"W1"), (790, req)])          # replayed
        fv.to_app(s, b"V", [(262, md_req)])                    # replayed
        for mt, body in ((b"H", [(11, b"W1"), (790, b"R999")]), (b"V", [(262, b"VENUE-A-old-0")])):
            with pytest.raises(DoNotSend):                     # an earlier connection's: gap-filled
                fv.to_app(s, mt, body)
    run(main())


def test_restore_order_with_known_fills_prices_the_catch_up_for_an_exact_avg_px(tmp_path, venue_proc):
    """A router taking back a child after an OMS restart knows part of its fills (its audit
    trail): ``restore_order(cum_qty=, notional=)``. The reconciliation's TRADE for the rest is
    priced from the venue's AvgPx minus that value (before: as if the known fills were worth 0,
    here 46400 instead of 23200)."""
    vp = venue_proc(venue_config(tmp_path))

    async def main():
        async with Recorder(vp.port, tmp_path) as r:
            resting = r.order(Side.SELL, 50, 23200)
            oid = (await r.wait_event(resting, K.NEW))[0].venue_order_id
            taker = r.order(Side.BUY, 20, 23200, cl="T1")
            await r.wait_event(taker, K.TRADE)
            await r.wait_event(resting, K.TRADE)
        r3 = _back_with_a_reset_session(
            vp.port, tmp_path, VenueOrder(resting, AAPL, Side.SELL, OrdType.LIMIT, TimeInForce.DAY, 50, 23200),
            cum_qty=10, venue_order_id=oid, notional=10 * 23200)
        async with r3:
            tr = (await r3.wait_event(resting, K.TRADE))[0]
            assert (tr.last_qty, tr.last_px, tr.cum_qty, tr.leaves_qty) == (10, 23200, 20, 30)
            st = (await r3.wait_event(resting, K.STATUS))[0]
            assert (st.reason, st.cum_qty) == (RECONCILED, 20)
    run(main())


def test_fills_found_by_reconciliation_at_several_prices_are_reported_with_an_exact_value(tmp_path, venue_proc):
    """The venue made fills we never heard of at two prices (7 @ 22995, 6 @ 22997: value 298947
    ticks, AvgPx 229.959230...). Reported as one TRADE at a rounded price they were worth 13 x
    22996 = 298948, one tick too much (before); now two TRADEs one tick apart whose value is
    exactly the venue's, the last with the stable exec id (a later reconciliation adds nothing)."""
    vp = venue_proc(venue_config(tmp_path))

    async def main():
        async with Recorder(vp.port, tmp_path) as r:
            r.order(Side.SELL, 7, 22995, cl="S1")
            r.order(Side.SELL, 6, 22997, cl="S2")
            await r.wait_event("S2", K.NEW)
            buy = r.order(Side.BUY, 50, 23000)
            await r.wait_event(buy, K.TRADE, n=2)
            oid = r.of(buy, K.TRADE)[0].venue_order_id
            assert sum(e.last_qty * e.last_px for e in r.of(buy, K.TRADE)) == 7 * 22995 + 6 * 22997
        # Back with a reset session and nothing of those fills known: found by reconciliation only.
        r3 = _back_with_a_reset_session(
            vp.port, tmp_path, VenueOrder(buy, AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 50, 23000),
            venue_order_id=oid)
        async with r3:
            st = (await r3.wait_event(buy, K.STATUS))[0]
            assert (st.reason, st.cum_qty, st.leaves_qty) == (RECONCILED, 13, 37)
            trades = r3.of(buy, K.TRADE)
            assert [(e.last_qty, e.last_px, e.cum_qty, e.leaves_qty) for e in trades] == [
                (1, 22995, 1, 49), (12, 22996, 13, 37)]
            assert sum(e.last_qty * e.last_px for e in trades) == 7 * 22995 + 6 * 22997
            assert trades[-1].exec_id == f"{oid}-RECON-13" and trades[0].exec_id != trades[-1].exec_id
            # Asked again: nothing more.
            r3.venue._send_status(buy, reconcile=True)
            await r3.wait_event(buy, K.STATUS, n=2)
            assert len(r3.of(buy, K.TRADE)) == 2
    run(main())
