"""Pre-encoded bodies: ``codec.encode_stamped``, ``codec.format_sending_time``,
``codec.ReportInstrument`` and ``Session.send_encoded``, each against the path it replaces
(``messages.encode``, ``messages.format_timestamp``, the gateway's Decimal formatting,
``Session.send``): the same bytes, the same stored messages, the same session state."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings as hyp_settings, strategies as st

from crossbook.fix.codec import (MAX_STAMPED_EPOCH, ReportInstrument, encode_stamped, format_sending_time)
from crossbook.fix.framing import split_fields
from crossbook.fix.messages import encode, format_timestamp, to_bytes
from crossbook.fix.session import Application, DoNotSend, Session, TestClock
from crossbook.fix.store import FileStore, MemoryStore
from crossbook.model.orders import AVG_PX_EXTRA_DECIMALS, avg_px_text

from fix_sessionkit import Peer, settings

EPOCH_2026 = 1_764_061_200.0


def encoded(fields) -> bytes:
    return b"".join(b"%d=%s\x01" % (tag, to_bytes(value)) for tag, value in fields)


# -- SendingTime ---------------------------------------------------------------------------
@pytest.mark.parametrize("epoch", [
    0.0, 0.0004, 0.0005, 0.0015, 0.0025, 0.9994, 0.9995, 0.99951, 59.9999, EPOCH_2026, EPOCH_2026 + 0.5005,
    EPOCH_2026 + 0.0625, 951_782_400.999_5,  # 2000-02-29: a leap day, the carry into the next second
    4_102_444_799.9996, MAX_STAMPED_EPOCH - 0.5, 12_345,  # an int clock value, as a custom clock may give
])
@pytest.mark.parametrize("millis", [True, False])
def test_format_sending_time_is_format_timestamp(epoch, millis):
    assert format_sending_time(epoch, millis) == format_timestamp(epoch, millis)


@hyp_settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0.0, max_value=MAX_STAMPED_EPOCH, exclude_max=True, allow_nan=False), st.booleans())
def test_format_sending_time_any_epoch(epoch, millis):
    assert format_sending_time(epoch, millis) == format_timestamp(epoch, millis)


@pytest.mark.parametrize("epoch", [-0.001, MAX_STAMPED_EPOCH, float("inf"), float("nan")])
def test_format_sending_time_out_of_range_is_refused(epoch):
    with pytest.raises(ValueError, match="outside"):
        format_sending_time(epoch)


# -- encode_stamped ------------------------------------------------------------------------
BODIES = [
    [],
    [(37, b"O-1"), (11, b"C-1"), (17, b"X1"), (150, b"0"), (39, b"0"), (55, b"AAPL"), (54, b"1"), (151, b"100"),
     (14, b"0"), (6, b"0"), (60, b"20261125-09:00:00.123456")],
    [(58, b"")],                         # an empty value: written as given, as the reference does
    [(58, b"a\x01b")],                   # an SOH in a value: the same
    [(95, b"3"), (96, b"a\x01b"), (58, "\xe9t\xe9".encode("latin-1"))],
]
HEADERS = [None, [(97, b"Y")], [(43, b"Y"), (97, b"Y"), (122, b"20261125-08:59:59.000")],
           [(50, b"SUB"), (57, b"TSUB"), (115, b"ONBEHALF"), (128, b"DELIVER")], [(1, b"low"), (2, b"x")]]


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("header", HEADERS)
@pytest.mark.parametrize("begin", [b"FIX.4.2", b"FIX.4.4", b"FIXT.1.1"])
def test_encode_stamped_is_encode(begin, header, body):
    stamp = format_timestamp(EPOCH_2026 + 0.25)
    expected = encode(begin, b"8", [(34, 7), (49, b"CROSSBOOK"), (52, stamp), (56, b"FIRM1"), *(header or ())], body)
    assert encode_stamped(begin, b"8", 7, b"CROSSBOOK", stamp, True, b"FIRM1", encoded(body), header) == expected
    assert encode_stamped(begin, b"8", 7, b"CROSSBOOK", EPOCH_2026 + 0.25, True, b"FIRM1", encoded(body),
                          header) == expected


@pytest.mark.parametrize("header, error, match", [
    ([(56, b"X")], ValueError, "set by the session"),
    ([(9, b"1")], ValueError, "set by the session"),
    ([(97, b"Y"), (43, b"Y")], ValueError, "ascending"),
    ([(0, b"Y")], ValueError, "not a FIX tag"),
    ([(97, "Y")], TypeError, "must be bytes"),
    ([97], TypeError, "pairs"),
])
def test_encode_stamped_refuses_a_bad_header(header, error, match):
    with pytest.raises(error, match=match):
        encode_stamped(b"FIX.4.4", b"8", 1, b"S", b"20261125-09:00:00", False, b"T", b"", header)


def test_encode_stamped_refuses_a_time_out_of_range():
    with pytest.raises(ValueError, match="pass its text"):
        encode_stamped(b"FIX.4.4", b"8", 1, b"S", -1.0, False, b"T", b"", None)


# -- ReportInstrument prices ------------------------------------------------------------------
def reference_price(tick_size: Decimal):
    from crossbook.model.instruments import _EXACT
    return lambda ticks: format(_EXACT.multiply(tick_size, Decimal(ticks)), "f").encode()


TICKS = ["0.01", "0.25", "0.00001", "5", "1", "0.010", "0.00000001", "12.5", "1E+1", "1E-19", "0.0000000000000000001",
         "99999999999999999999"]


def instrument(tick: str) -> ReportInstrument:
    tick_size = Decimal(tick)
    return ReportInstrument(b"55=X\x01", tick_size, reference_price(tick_size),
                            lambda v, q: avg_px_text(v, q, tick_size), AVG_PX_EXTRA_DECIMALS)


@pytest.mark.parametrize("tick", TICKS)
def test_prices_are_the_decimal_texts(tick):
    inst, ref = instrument(tick), reference_price(Decimal(tick))
    for ticks in (1, 7, 23_000, 24_001, -5, 0, 10 ** 12, 2 ** 62, -(2 ** 63), 2 ** 64 + 3):
        assert inst.price_text(ticks) == ref(ticks), ticks


@hyp_settings(max_examples=200, deadline=None)
@given(st.sampled_from(TICKS), st.integers(-(2 ** 70), 2 ** 70))
def test_prices_any_ticks(tick, ticks):
    assert instrument(tick).price_text(ticks) == reference_price(Decimal(tick))(ticks)


@hyp_settings(max_examples=300, deadline=None)
@given(st.sampled_from(TICKS), st.integers(0, 2 ** 66), st.integers(1, 2 ** 40))
def test_avg_px_is_avg_px_text(tick, cum_value, cum_qty):
    assert instrument(tick).avg_px_text(cum_value, cum_qty) == avg_px_text(cum_value, cum_qty, Decimal(tick)).encode()


@pytest.mark.parametrize("cum_value, cum_qty", [(5, 2), (15, 2), (7, 2), (1, 3), (2, 3), (69_001, 3), (0, 5)])
def test_avg_px_rounds_half_to_even(cum_value, cum_qty):
    # 0.01 tick with 6 more places: 8 decimals; 5/2 ticks = 0.025 exactly, ...
    inst = ReportInstrument(b"", Decimal("0.0000000001"), str, lambda v, q: avg_px_text(v, q, Decimal("0.0000000001")))
    assert inst.avg_px_text(cum_value, cum_qty) == avg_px_text(cum_value, cum_qty, Decimal("0.0000000001")).encode()


def test_avg_px_refusals_are_the_reference_ones():
    inst = instrument("0.01")
    with pytest.raises(ValueError, match="cum_qty"):
        inst.avg_px_text(100, -1)
    with pytest.raises(TypeError, match="cum_value"):
        inst.avg_px_text(True, 1)


def test_report_instrument_checks_its_arguments():
    with pytest.raises(ValueError, match="positive Decimal"):
        ReportInstrument(b"", Decimal("0"), str, str)
    with pytest.raises(ValueError, match="positive Decimal"):
        ReportInstrument(b"", 0.01, str, str)
    with pytest.raises(TypeError, match="callables"):
        ReportInstrument(b"", Decimal("0.01"))
    unknown = ReportInstrument(b"55=ZZZ\x01")
    assert not unknown.known and unknown.fields == b"55=ZZZ\x01"
    with pytest.raises(ValueError, match="no prices"):
        unknown.price_text(1)


# -- Session.send_encoded ----------------------------------------------------------------------
class ToApp(Application):
    """Changes what it sends (the encoded path must hand it the fields, as send() does)."""

    def to_app(self, session, msg_type, body):
        body.append((58, b"seen by to_app"))
        if any(tag == 11 and value == b"DROP" for tag, value in body):
            raise DoNotSend()


def pair(tmp_path=None, application=None, logon=True, **kw):
    """Two sessions in the same state: one sends lists, the other encoded bodies."""
    sessions = []
    for name in ("list", "encoded"):
        clock = TestClock(EPOCH_2026)
        store = (MemoryStore(clock.now()) if tmp_path is None
                 else FileStore(str(tmp_path / name), "s", now=clock.now(), batch=True))
        s = Session(settings(**kw), store=store, clock=clock, application=application or Application())
        s.on_connected()
        peer = Peer(clock, begin=kw.get("begin_string", "FIX.4.4"))
        if logon:
            s.receive(peer.logon())
        sessions.append((s, peer, clock))
    return sessions


def sends(n: int):
    for i in range(n):
        body = [(37, b"O-%d" % i), (11, b"DROP" if i == 3 else b"C-%d" % i), (17, b"X%d" % i), (150, b"0"),
                (39, b"0"), (55, b"AAPL"), (54, b"1"), (38, b"100"), (151, b"100"), (14, b"0"), (6, b"0")]
        header = [(97, b"Y")] if i % 3 == 1 else ([(115, "ONBEHALF"), (43, True)] if i % 3 == 2 else ())
        yield body, header


def run_pair(sessions, n=8, advance=0.0003):
    results = []
    for kind, (s, peer, clock) in zip(("list", "encoded"), sessions):
        sent = []
        for body, header in sends(n):
            clock.advance(advance)
            if kind == "list":
                sent.append(s.send(b"8", list(body), header))
            else:
                sent.append(s.send_encoded(b"8", encoded(body), header))
        results.append((sent, s.data_to_send(), s.next_sender_seq, s.store.get(1, 1000)))
    return results


@pytest.mark.parametrize("begin", ["FIX.4.2", "FIX.4.4", "FIXT.1.1"])
@pytest.mark.parametrize("millis", [True, False])
def test_send_encoded_sends_and_stores_what_send_does(begin, millis):
    kw = {"begin_string": begin, "millisecond_timestamps": millis}
    if begin == "FIXT.1.1":
        kw["default_appl_ver_id"] = "9"
    listed, enc = run_pair(pair(**kw))
    assert listed == enc
    assert listed[2] == 10  # Logon answer + 8 reports: numbered on


def test_send_encoded_with_a_file_store(tmp_path):
    sessions = pair(tmp_path)
    listed, enc = run_pair(sessions)
    assert listed == enc
    for s, _, _ in sessions:
        s.store.close()
    reopened = [FileStore(str(tmp_path / name), "s") for name in ("list", "encoded")]
    assert reopened[0].get(1, 100) == reopened[1].get(1, 100) and len(reopened[0].get(1, 100)) == 9
    assert reopened[0].get_next_sender_seq() == reopened[1].get_next_sender_seq() == 10


def test_send_encoded_before_logon_stores_for_resend():
    sessions = pair(logon=False)
    listed, enc = run_pair(sessions, n=3)
    assert listed == enc and listed[1] == b"" and len(listed[3]) == 3


def test_send_encoded_with_to_app_takes_the_list_path():
    listed, enc = run_pair(pair(application=ToApp()))
    assert listed == enc
    assert listed[0][3] is False                      # DoNotSend: refused, as send() refuses it
    assert b"58=seen by to_app\x01" in listed[1]


def test_send_encoded_is_resent_like_send():
    sessions = pair()
    run_pair(sessions, n=4)
    answers = []
    for s, peer, clock in sessions:
        s.data_to_send()
        clock.advance(1.0)
        s.receive(peer.build(b"2", [(7, 2), (16, 0)]))
        answers.append(s.data_to_send())
    assert answers[0] == answers[1]
    frames = answers[1].split(b"8=FIX.4.4\x01")[1:]
    assert len(frames) == 4 and all(b"\x0143=Y\x01" in f and b"\x01122=" in f for f in frames)


def test_send_encoded_refuses_what_send_refuses():
    (s, _, _), _ = pair()
    with pytest.raises(ValueError, match="application messages"):
        s.send_encoded(b"0", b"")
    with pytest.raises(ValueError, match="application messages"):
        s.send_encoded(b"", b"")
    with pytest.raises(ValueError, match="set by the session"):
        s.send_encoded(b"8", b"37=1\x01", [(52, b"x")])
    with pytest.raises(TypeError, match="body must be bytes"):
        s.send_encoded(b"8", [(37, b"1")])


def test_send_encoded_with_a_clock_out_of_the_c_range():
    # A test clock before 1970 still gets the Python SendingTime text.
    results = []
    for kind in ("list", "encoded"):
        clock = TestClock(-100.25)
        s = Session(settings(check_latency=False), store=MemoryStore(0.0), clock=clock)
        s.on_connected()
        s.receive(Peer(clock).logon())
        s.data_to_send()
        if kind == "list":
            s.send(b"8", [(37, b"1")])
        else:
            s.send_encoded(b"8", b"37=1\x01")
        results.append(s.data_to_send())
    assert results[0] == results[1] and b"\x0152=19691231-23:58:" in results[0]


def test_split_fields_reads_back_an_encoded_body():
    body = [(37, b"O-1"), (95, b"3"), (96, b"a\x01b"), (58, b"x")]
    assert split_fields(encoded(body)) == body
