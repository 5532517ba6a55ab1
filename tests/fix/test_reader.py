"""The session's fast paths against their references, on valid and mutated traffic.

* ``reader.CodecFrameReader`` (Cython framing + splitting) against ``framing.FrameReader``;
* a whole ``Session`` with ``framer="codec"`` against one with ``framer="python"``;
* ``messages.encode`` (Cython encoder) against ``messages.encode_reference``;
* ``messages.parse_timestamp`` (compiled) against ``parse_timestamp_reference``.
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from crossbook.fix import framing
from crossbook.fix.messages import encode, encode_ordered_header, encode_reference, format_timestamp, \
    parse_timestamp, parse_timestamp_reference
from crossbook.fix.messages import Message
from crossbook.fix.reader import CodecFrameReader, make_frame_reader
from crossbook.fix.session import DisconnectRequested, LoggedOn, LoggedOut, AppMessageReceived, Session, TestClock
from crossbook.fix.store import MemoryStore

from fix_sessionkit import Peer, Recorder, base_stream, chunks, mutate, mutation, settings

EXAMPLES = int(os.environ.get("FIX_FUZZ_EXAMPLES", "150"))
FUZZ = hsettings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def events_of(reader, parts):
    """Frames, and the bytes dropped between them (junk that arrives in pieces may be reported
    in different slices by the two readers: consecutive drops are merged)."""
    out = []
    for part in parts:
        reader.feed(part)
        for event in reader:
            if isinstance(event, framing.Frame):
                out.append(("frame", event.raw, event.fields))
            elif out and out[-1][0] == "garbled":
                out[-1] = ("garbled", out[-1][1] + event.skipped)
            else:
                out.append(("garbled", event.skipped))
    # Every byte fed is in a frame, in a drop, or still buffered.
    assert sum(len(e[1]) for e in out) + reader.buffered == sum(map(len, parts))
    return out, reader.buffered


# Cases the codec cannot split itself, decided by the reference splitter.
ODD = [
    b"8=FIX.4.4\x019=%d\x0135=0\x010=1\x01",              # tag 0: kept, Rejected by the session
    b"8=FIX.4.4\x019=%d\x0135=0\x01-5=1\x01",             # negative tag: kept
    b"8=FIX.4.4\x019=%d\x0135=0\x013x=1\x01",             # not a tag: garbled
    b"8=FIX.4.4\x019=%d\x0135=0\x0195=ab\x0196=xy\x01",   # length field not digits: 96 is ordinary
    b"8=FIX.4.4\x019=%d\x0135=0\x0195=3\x0196=a\x01b\x01",  # data with SOH, right length
    b"8=FIX.4.4\x019=%d\x0135=0\x0195=9\x0196=a\x01b\x01",  # data length beyond the field
    b"8=FIX.4.4\x019=%d\x0135=0\x0110=000\x0158=x\x01",   # CheckSum before the end
    b"8=FIX.4.4\x019=%d\x0135=0\x0195=\x0196=z\x01",      # empty length field
    b"8=FIX.4.4\x019=%d\x0135=0\x010035=1\x01",           # leading zeros in a tag
    b"8=FIX.4.4\x019=%d\x0135=0\x011234567890=1\x01",     # 10-digit tag
]


def framed(template: bytes) -> bytes:
    body_start = template.index(b"\x0135=") + 1
    body = template[body_start:]
    head = template[:body_start].replace(b"%d", str(len(body)).encode())
    data = head + body
    return data + b"10=%03d\x01" % (sum(data) % 256)


@pytest.mark.parametrize("template", ODD)
def test_codec_reader_gives_the_reference_verdict_on_odd_fields(template):
    data = framed(template)
    ours, ref = events_of(CodecFrameReader(), [data]), events_of(framing.FrameReader(), [data])
    assert ours == ref


@FUZZ
@given(ops=st.lists(mutation, max_size=6), cuts=st.lists(st.integers(0, 3000), max_size=8))
def test_codec_reader_matches_the_reference_on_mutated_streams(ops, cuts):
    logon, stream = base_stream(TestClock())
    data = mutate(logon + stream, ops)
    parts = chunks(data, cuts)
    assert events_of(CodecFrameReader(), parts) == events_of(framing.FrameReader(), parts)


def messages_of(reader: CodecFrameReader, parts):
    """``events_of`` through ``next_message``: each Message as the frame it was made of, its
    first-value lookups checked against ``Message(fields, raw)``'s own."""
    out = []
    for part in parts:
        reader.feed(part)
        while (item := reader.next_message()) is not None:
            if isinstance(item, Message):
                assert item._count in (-1, len(item.fields))   # (the list is made on first read)
                assert item._first == Message(item.fields, item.raw)._first
                out.append(("frame", item.raw, item.fields))
            elif out and out[-1][0] == "garbled":
                out[-1] = ("garbled", out[-1][1] + item.skipped)
            else:
                out.append(("garbled", item.skipped))
    return out, reader.buffered


@pytest.mark.parametrize("template", ODD)
def test_next_message_gives_the_frames_and_verdicts_of_next_event_on_odd_fields(template):
    data = framed(template)
    assert messages_of(CodecFrameReader(), [data]) == events_of(CodecFrameReader(), [data])


@FUZZ
@given(ops=st.lists(mutation, max_size=6), cuts=st.lists(st.integers(0, 3000), max_size=8))
def test_next_message_matches_next_event_on_mutated_streams(ops, cuts):
    logon, stream = base_stream(TestClock())
    parts = chunks(mutate(logon + stream, ops), cuts)
    assert messages_of(CodecFrameReader(), parts) == events_of(CodecFrameReader(), parts)


def test_make_frame_reader_names_and_checks():
    assert isinstance(make_frame_reader(), CodecFrameReader)
    assert isinstance(make_frame_reader(100, "python"), framing.FrameReader)
    with pytest.raises(ValueError, match="framer must be one of codec, python"):
        make_frame_reader(100, "rust")
    with pytest.raises(ValueError, match="max_body_length"):
        CodecFrameReader(0)
    with pytest.raises(TypeError, match="feed"):
        CodecFrameReader().feed("8=FIX")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="framer"):
        Session(settings(), framer="fast")


def session_trace(framer: str, parts: list[bytes], use_dictionary: bool):
    clock = TestClock()
    s = Session(settings(), store=MemoryStore(clock.now()), clock=clock, application=Recorder(),
                validator="dictionary" if use_dictionary else None, framer=framer)
    s.on_connected()
    trace = []
    for part in parts:
        s.receive(part)
        kinds = [type(e).__name__ for e in s.events() if isinstance(e, (LoggedOn, LoggedOut, AppMessageReceived,
                                                                          DisconnectRequested))]
        trace.append((s.data_to_send(), kinds, s.next_target_seq, s.next_sender_seq, s.connected))
    return trace


@FUZZ
@given(ops=st.lists(mutation, max_size=6), cuts=st.lists(st.integers(0, 3000), max_size=8),
       use_dictionary=st.booleans())
def test_session_behaves_the_same_with_either_framer(ops, cuts, use_dictionary):
    """Same answers, events, sequence numbers and connection state, chunk by chunk."""
    logon, stream = base_stream(TestClock())
    parts = chunks(mutate(logon + stream, ops), cuts)
    assert session_trace("codec", parts, use_dictionary) == session_trace("python", parts, use_dictionary)


def test_sessions_agree_on_a_clean_exchange():
    logon, stream = base_stream(TestClock())
    trace = session_trace("codec", [logon, stream], True)
    assert trace == session_trace("python", [logon, stream], True)
    assert trace[0][1] == ["LoggedOn"] and trace[-1][-1] is False  # logged on; the Logout ends it


values = st.one_of(st.binary(max_size=12), st.integers(-10**12, 10**12), st.booleans(),
                   st.text(max_size=6).filter(lambda t: all(ord(c) < 256 for c in t)))
tags = st.one_of(st.integers(1, 9999), st.sampled_from([8, 9, 10, 35, 95, 96, 212, 213, 0, -3]))


@FUZZ
@given(header=st.lists(st.tuples(st.sampled_from([34, 49, 52, 56, 115, 128, 43, 122, 8, 10]), values),
                       max_size=6),
       body=st.lists(st.tuples(tags, values), max_size=10))
def test_encode_matches_the_reference(header, body):
    try:
        expected = encode_reference(b"FIX.4.4", b"D", header, body)
    except (ValueError, TypeError) as exc:
        with pytest.raises(type(exc)):
            encode(b"FIX.4.4", b"D", header, body)
        return
    assert encode(b"FIX.4.4", b"D", header, body) == expected


@FUZZ
@given(seq=st.integers(1, 10**9), sender=st.binary(min_size=1, max_size=8), stamp=st.binary(max_size=24),
       body=st.lists(st.tuples(tags, values), max_size=10))
def test_encode_ordered_header_matches_encode(seq, sender, stamp, body):
    """The session's path for its own ascending header gives encode()'s bytes or its error."""
    header = [(34, seq), (49, sender), (52, stamp), (56, b"TW")]
    try:
        expected = encode(b"FIX.4.4", b"8", header, body)
    except (ValueError, TypeError) as exc:
        with pytest.raises(type(exc)):
            encode_ordered_header(b"FIX.4.4", b"8", header, body)
        return
    assert encode_ordered_header(b"FIX.4.4", b"8", header, body) == expected


timestamp_text = st.one_of(
    st.builds(lambda t, ms: format_timestamp(t, ms), st.floats(0, 4e9), st.booleans()),
    st.builds(lambda a, b: a + b, st.sampled_from([b"20260101-00:00:00", b"20261231-23:59:60", b"20260230-10:00:00",
                                                   b"2026010-00:00:00", b"20260101-24:00:00"]),
              st.sampled_from([b"", b".", b".1", b".123456789", b".1234567890", b"\n", b".5\n", b"x", b".1a"])),
    st.binary(max_size=30),
)


@FUZZ
@given(st.lists(timestamp_text, min_size=1, max_size=20))
def test_parse_timestamp_matches_the_reference(texts):
    for text in texts:
        assert parse_timestamp(text) == parse_timestamp_reference(text), text


@pytest.mark.parametrize("text", [
    b"20231114-22:13:20", b"20231114-22:13:20.0", b"20231114-22:13:20.999999999", b"20231114-22:13:20.1234567891",
    b"20261231-23:59:60", b"20261231-23:59:60.5", b"20261231-23:59:61", b"20261231-23:59:99", b"20240229-12:00:00",
    b"20230229-12:00:00", b"19000101-00:00:00.001", b"00010101-00:00:00", b"00000101-00:00:00", b"99991231-23:59:59.9",
    b"20260101-24:00:00", b"20260101-23:60:00", b"20261301-00:00:00", b"20260001-00:00:00", b"20260100-00:00:00",
    b"2026010a-00:00:00", b"20260101 00:00:00", b"20260101-00:00:00.", b"20260101-00:00:00,5", b"20260101-00:00",
    b"", b"+2026010-00:00:00", b"20260101-00:00:00.00000000000",
])
def test_parse_timestamp_edges(text):
    assert parse_timestamp(text) == parse_timestamp_reference(text)
    assert repr(parse_timestamp(text)) == repr(parse_timestamp_reference(text))   # the same float


@hsettings(max_examples=1000, deadline=None)
@given(st.from_regex(rb"\A[0-9]{8}-[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{0,10})?\Z"))
def test_parse_timestamp_any_digits(text):
    assert repr(parse_timestamp(text)) == repr(parse_timestamp_reference(text))


def test_parse_timestamp_takes_bytes_only():
    with pytest.raises(TypeError):
        parse_timestamp("20231114-22:13:20")
    with pytest.raises(TypeError):
        parse_timestamp_reference("20231114-22:13:20")


def test_timestamp_text_cache_follows_the_clock():
    assert format_timestamp(1_700_000_000.25) == b"20231114-22:13:20.250"
    assert format_timestamp(1_700_000_001.0) == b"20231114-22:13:21.000"
    assert format_timestamp(1_700_000_000.9996) == b"20231114-22:13:21.000"   # rounds into the next second
    assert format_timestamp(1_600_000_000.0, millis=False) == b"20200913-12:26:40"
    assert parse_timestamp(b"20231114-22:13:20.250") == 1_700_000_000.25
    assert parse_timestamp(b"20231114-22:13:20\n") is None


@pytest.mark.parametrize("width, accepted", [(9, True), (10, False), (12, False)])
def test_both_framers_agree_on_zero_padded_body_lengths(width, accepted):
    """BodyLength may carry leading zeros up to 9 characters; 10 or more is garbled for both
    framers (the codec once accepted 10 characters where framing.py refused them)."""
    body = b"35=0\x0149=A\x0156=B\x0134=2\x0152=20261125-09:00:00.000\x01"
    head = b"8=FIX.4.4\x019=" + str(len(body)).encode().rjust(width, b"0") + b"\x01"
    raw = head + body
    raw += b"10=%03d\x01" % (sum(raw) % 256)
    verdicts = []
    for reader in (framing.FrameReader(), CodecFrameReader()):
        reader.feed(raw)
        events = list(reader)
        verdicts.append([type(e).__name__ for e in events])
    assert verdicts[0] == verdicts[1] == (["Frame"] if accepted else ["Garbled"]), verdicts


def test_message_seq_num_is_get_int_34():
    """``Message.seq_num``'s shortcut for plain digits gives what ``get_int(34)`` gives for every
    shape of MsgSeqNum (absent, signed, padded, too long, not a number)."""
    from crossbook.fix.messages import Message
    for value in (None, b"", b"1", b"0007", b"-3", b"+3", b"12a", b" 1", b"9" * 18, b"9" * 19, "١".encode(),
                  b"\xd9\xa0"):
        fields = [(8, b"FIX.4.4"), (35, b"0")] + ([(34, value)] if value is not None else [])
        m = Message(fields)
        assert m.seq_num == m.get_int(34), value
    assert Message([(34, b"0042")]).seq_num == 42
