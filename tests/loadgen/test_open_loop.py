"""The open-loop schedule does not hide stalls (coordinated omission), counts add up, and the
generator refuses non-loopback targets. The peer is a small acceptor on crossbook.fix.transport."""
from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest

from crossbook.fix.session import Application
from crossbook.fix.settings import SessionSettings
from crossbook.fix.transport import Acceptor, install_uvloop
from crossbook.loadgen import LoadConfig, LoadRun, OrderMix, SessionSpec, SymbolSpec
from crossbook.loadgen.wire import LoadSessionError

SYMBOL = SymbolSpec("AAPL", Decimal("0.01"), 23000, 1)


class StallingVenue(Application):
    """Answers D/F/G like an exchange would (one report each); blocks its event loop once,
    for ``stall_s``, when the ``stall_at``-th order arrives."""

    def __init__(self, stall_at: int | None = None, stall_s: float = 0.2, reject_every: int = 0) -> None:
        self.stall_at = stall_at
        self.stall_s = stall_s
        self.reject_every = reject_every
        self.orders = 0
        self.stalled_at_ns = 0

    def from_app(self, session, message) -> None:
        mt = message.msg_type
        self.orders += 1
        if self.orders == self.stall_at:
            self.stalled_at_ns = time.monotonic_ns()
            time.sleep(self.stall_s)  # the whole loop stops: the generator's sends stop too
        cl = message[11]
        common = [(54, message[54]), (55, message[55])]
        if mt == b"D":
            if self.reject_every and self.orders % self.reject_every == 0:
                body = [(37, b"NONE"), (11, cl), (17, b"X%d" % self.orders), (150, b"8"), (39, b"8"), *common,
                        (151, b"0"), (14, b"0"), (6, b"0")]
            else:
                ioc = message.get(59) == b"3"
                body = [(37, cl), (11, cl), (17, b"X%d" % self.orders), (150, b"F" if ioc else b"0"),
                        (39, b"2" if ioc else b"0"), *common, (151, b"0" if ioc else message[38]),
                        (14, message[38] if ioc else b"0"), (6, message[44] if ioc else b"0")]
        elif mt == b"F":
            body = [(37, message[41]), (11, cl), (41, message[41]), (17, b"X%d" % self.orders), (150, b"4"),
                    (39, b"4"), *common, (151, b"0"), (14, b"0"), (6, b"0")]
        else:
            body = [(37, message[41]), (11, cl), (41, message[41]), (17, b"X%d" % self.orders), (150, b"5"),
                    (39, b"0"), *common, (151, message[38]), (14, b"0"), (6, b"0")]
        session.send(b"8", body)


def _acceptor(app: Application, comp_ids=("LG1",)) -> Acceptor:
    settings = [SessionSettings(begin_string="FIX.4.4", sender_comp_id="VENUE", target_comp_id=c,
                                socket_accept_host="127.0.0.1", socket_accept_port=0) for c in comp_ids]
    return Acceptor(settings, app, host="127.0.0.1", port=0)


def _config(port: int = 9878, **kw) -> LoadConfig:
    base = dict(sessions=(SessionSpec("LG1", "FIX.4.4", "ACC1"),), symbols=(SYMBOL,), port=port,
                target_comp_id="VENUE", rate=500.0, duration_s=1.2, timeout_s=5.0, drain_s=3.0)
    base.update(kw)
    return LoadConfig(**base)


def _run(coro, timeout: float = 60.0):
    install_uvloop()
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def _with_acceptor(app: Application, config_kw: dict, comp_ids=("LG1",)):
    acceptor = _acceptor(app, comp_ids)
    await acceptor.start()
    try:
        run = LoadRun(_config(acceptor.port, **config_kw))
        await run.connect()
        return await run.run()
    finally:
        await acceptor.stop(logout_grace=0.5)


@pytest.mark.parametrize("poll", [False, True], ids=["timerfd", "polled"])
def test_a_stall_shows_in_every_message_scheduled_during_it(poll):
    # 500/s for 1.2 s; the 200th order (t ~ 0.4 s) blocks the loop for 200 ms. About 100 messages
    # are scheduled inside the stall; measured from their intended times, about half of them wait
    # 100 ms or more. Measured from the actual write (what a closed-loop client would see) almost
    # none do, because they were written after the stall and answered at once.
    venue = StallingVenue(stall_at=200, stall_s=0.2)
    report = _run(_with_acceptor(venue, dict(mix=OrderMix(passive=0, marketable=1, cancel=0, replace=0), poll=poll)))
    counts = report.counts["marketable"]
    assert counts.sent == 600 and counts.acked == 600 and counts.rejected == counts.timed_out == 0
    ack = report.histograms["marketable.ack"]
    service = report.histograms["marketable.service"]
    slow, slow_service = ack.count_at_or_above(100_000_000), service.count_at_or_above(100_000_000)
    detail = f"ack {ack!r}, service {service!r}, >=100ms: {slow} vs {slow_service}"
    assert ack.max >= 180_000_000, detail               # the stalled order itself, and the first ones queued
    assert slow >= 35, detail                           # ~50 expected: every slot in the first half of the stall
    assert ack.count_at_or_above(10_000_000) >= 70, detail  # ~95 expected
    assert ack.value_at_percentile(99.0) >= 100_000_000, detail
    assert slow_service <= 10 and slow >= 4 * slow_service, detail
    assert report.histograms["send_lag"].count_at_or_above(100_000_000) >= 35  # the generator saw it too
    # The stall is in the timeline's worst second, not smeared away.
    assert max(row["ack_max_us"] for row in report.timeline) >= 180_000


@pytest.mark.parametrize("poll", [False, True], ids=["timerfd", "polled"])
def test_without_a_stall_latencies_stay_small_and_counts_add_up(poll):
    venue = StallingVenue(reject_every=10)
    report = _run(_with_acceptor(venue, dict(rate=400.0, duration_s=1.0, seed=3, poll=poll)))
    total = report.total
    assert total.sent == 400 and report.planned == 400
    for name, c in report.counts.items():
        assert c.sent == c.acked + c.rejected + c.timed_out, name
    assert total.timed_out == 0 and total.rejected > 0    # every 10th NewOrderSingle is rejected
    assert report.counts["cancel"].acked > 0 and report.counts["replace"].acked > 0
    assert report.histograms["all.ack"].count == total.acked
    assert report.histograms["rejected"].count == total.rejected
    assert report.cleanup_sent == report.cleanup_answered
    assert report.achieved_rate == pytest.approx(400, rel=0.25)  # loose: the machine is shared
    assert sum(row["sent"] for row in report.timeline) == 400


def test_unanswered_requests_time_out_and_the_run_still_ends():
    class Silent(Application):
        def from_app(self, session, message) -> None:
            pass  # accepts, never answers

    started = time.monotonic()
    report = _run(_with_acceptor(Silent(), dict(rate=200.0, duration_s=0.5, timeout_s=0.3, drain_s=0.5)))
    assert time.monotonic() - started < 10
    total = report.total
    assert total.sent == 100 and total.timed_out == 100 and total.acked == total.rejected == 0


def test_a_count_bounded_run_sends_exactly_that_many_over_several_sessions():
    venue = StallingVenue()
    report = _run(_with_acceptor(venue, dict(sessions=(SessionSpec("LG1", "FIX.4.4"), SessionSpec("LG2", "FIX.4.4")),
                                             duration_s=None, count=150, rate=1000.0),
                                 comp_ids=("LG1", "LG2")))
    assert report.total.sent == 150 and report.sessions == 2 and report.total.acked + report.total.rejected == 150


def test_logon_failure_is_a_clear_error():
    venue = StallingVenue()

    async def scenario():
        acceptor = _acceptor(venue, ("SOMEONE-ELSE",))
        await acceptor.start()
        try:
            run = LoadRun(_config(acceptor.port, logon_timeout_s=2.0))
            await run.connect()
        finally:
            await acceptor.stop(logout_grace=0.2)

    with pytest.raises(LoadSessionError, match="LG1|logon"):
        _run(scenario())


@pytest.mark.parametrize("host", ["10.0.0.1", "example.com", "0.0.0.0"])
def test_only_loopback_targets_unless_allowed(host):
    with pytest.raises(ValueError, match="loopback"):
        _config(9878, host=host)
    assert _config(9878, host=host, allow_remote=True).host == host
    assert _config(9878, host="localhost").host == "localhost"


@pytest.mark.parametrize("kw, match", [
    (dict(rate=0), "rate"), (dict(duration_s=None, count=None), "end by itself"), (dict(lots=(3, 1)), "lots"),
    (dict(arrival="bursty"), "arrival"), (dict(port=70000), "port"), (dict(sessions=()), "session"),
    (dict(passive_ticks=(1, 30000)), "too low"), (dict(count=2.5), "count"), (dict(poll="yes"), "poll"),
])
def test_bad_configs_name_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        _config(**{"port": 9878, **kw})


def test_mix_parsing():
    assert OrderMix.parse("passive=1, marketable=3") == OrderMix(1, 3, 0, 0)
    assert OrderMix.parse("cancel=1").cumulative() == (0.0, 0.0, 1.0)
    for bad, match in (("passive", "name=share"), ("foo=1", "name=share"), ("cancel=x", "mix.cancel"),
                       ("passive=0", "positive"), ("passive=-1", "non-negative")):
        with pytest.raises(ValueError, match=match):
            OrderMix.parse(bad)


def test_a_timer_that_cannot_be_armed_ends_the_run_with_that_error(monkeypatch):
    # timerfd_settime failing mid-run (after the first slots) must end the run with the OSError;
    # before, the error went to the loop's exception handler and the run waited forever.
    from crossbook.loadgen.slot_timer import SlotTimer
    if not SlotTimer.available():
        pytest.skip("SlotTimer needs Linux timerfd")
    real_arm = SlotTimer.arm
    calls = []

    def arm(self, at_ns):
        calls.append(at_ns)
        if len(calls) == 20:
            raise OSError(22, "timerfd_settime failed (injected)")
        return real_arm(self, at_ns)

    monkeypatch.setattr(SlotTimer, "arm", arm)
    started = time.monotonic()
    with pytest.raises(OSError, match="injected"):
        _run(_with_acceptor(StallingVenue(), dict(rate=200.0, duration_s=1.0, poll=False)), timeout=20.0)
    assert len(calls) == 20 and time.monotonic() - started < 15
