"""The reference framer: complete frames, garbled input, resynchronisation, bounded memory."""
from __future__ import annotations

import simplefix

from crossbook.fix.framing import Frame, FrameReader, Garbled, checksum, iter_frames, split_fields
from crossbook.fix.messages import encode

SOH = b"\x01"


def msg(body: list[tuple[int, bytes]], msg_type: bytes = b"0", seq: int = 2) -> bytes:
    return encode(b"FIX.4.4", msg_type, [(34, seq), (49, b"A"), (52, b"20260101-00:00:00"), (56, b"B")], body)


def with_checksum(prefix: bytes) -> bytes:
    return prefix + b"10=%03d\x01" % checksum(prefix)


def test_one_frame_round_trips_fields_in_wire_order():
    raw = msg([(112, b"HELLO")], b"1")
    [event] = iter_frames(raw)
    assert isinstance(event, Frame)
    assert event.raw == raw
    assert [t for t, _ in event.fields] == [8, 9, 35, 34, 49, 52, 56, 112, 10]
    assert dict(event.fields)[112] == b"HELLO"


def test_frames_fed_one_byte_at_a_time():
    stream = msg([], seq=2) + msg([(112, b"X")], b"1", seq=3) + msg([], seq=4)
    reader = FrameReader()
    out = []
    for i in range(len(stream)):
        reader.feed(stream[i:i + 1])
        out.extend(reader)
    assert [type(e) for e in out] == [Frame, Frame, Frame]
    assert b"".join(e.raw for e in out) == stream
    assert reader.buffered == 0


def test_simplefix_messages_frame_identically():
    m = simplefix.FixMessage()
    m.append_pair(8, "FIX.4.2")
    m.append_pair(35, "D")
    m.append_pair(34, 7)
    m.append_pair(49, "S")
    m.append_pair(56, "T")
    m.append_pair(11, "ORD-1")
    m.append_pair(55, "ABC")
    raw = m.encode()
    [event] = iter_frames(raw)
    parser = simplefix.FixParser()
    parser.append_buffer(raw)
    parsed = parser.get_message()
    assert isinstance(event, Frame)
    assert [(t, v) for t, v in event.fields] == [(int(t), v) for t, v in parsed.pairs]


def test_bad_checksum_is_garbled_and_next_frame_survives():
    good = msg([])
    bad = good[:-4] + (b"%03d" % ((checksum(good[:-7]) + 1) % 256)) + SOH
    events = iter_frames(bad + good)
    assert isinstance(events[0], Garbled) and "CheckSum" in events[0].reason
    assert isinstance(events[1], Frame) and events[1].raw == good


def test_short_body_length_is_garbled_up_to_its_checksum():
    good = msg([(112, b"HELLO")], b"1")
    short = with_checksum(b"8=FIX.4.4\x019=10\x0135=0\x0134=2\x0149=A\x0152=20260101-00:00:00\x0156=B\x01")
    events = iter_frames(short + good)
    assert isinstance(events[0], Garbled) and "BodyLength" in events[0].reason
    assert events[1] == Frame(good, split_fields(good))


def test_long_body_length_swallows_up_to_the_next_checksum_like_quickfix():
    first = msg([(112, b"A")], b"1", seq=4)
    second = msg([(112, b"B")], b"1", seq=5)
    third = msg([(112, b"C")], b"1", seq=6)
    body_len = int(first.split(SOH)[1][2:])
    too_long = first.replace(b"9=%d" % body_len, b"9=%d" % (body_len + 14), 1)
    reader = FrameReader()
    reader.feed(too_long)
    assert list(reader) == []  # waits: BodyLength says more bytes are coming
    reader.feed(second + third)
    events = list(reader)
    assert isinstance(events[0], Garbled) and events[0].skipped == too_long + second
    assert events[1] == Frame(third, split_fields(third))


def test_junk_before_begin_string_is_skipped():
    good = msg([])
    events = iter_frames(b"35=0\x01garbage" + b"\x01" + good)
    assert isinstance(events[0], Garbled)
    assert events[-1] == Frame(good, split_fields(good))


def test_msg_type_not_third_is_garbled():
    bad = with_checksum(b"8=FIX.4.4\x019=29\x0134=3\x0135=0\x0149=A\x0152=20260101-00:00:00\x0156=B\x01")
    good = msg([])
    events = iter_frames(bad + good)
    assert isinstance(events[0], Garbled) and "MsgType" in events[0].reason
    assert events[-1] == Frame(good, split_fields(good))


def test_non_numeric_tag_is_garbled_but_negative_tag_is_a_field():
    garbled = with_checksum(b"8=FIX.4.4\x019=28\x0135=0\x0134=2\x014garbled9=TW\x0156=B\x01")
    events = iter_frames(garbled)
    assert any(isinstance(e, Garbled) for e in events)
    negative = msg([(-1, b"HI")])
    [frame] = iter_frames(negative)
    assert isinstance(frame, Frame) and (-1, b"HI") in frame.fields


def test_huge_body_length_is_refused_without_buffering_it():
    reader = FrameReader(max_body_length=4096)
    reader.feed(b"8=FIX.4.4\x019=999999999\x0135=0\x01" + b"x" * 100)
    events = list(reader)
    assert events and isinstance(events[0], Garbled)
    reader.feed(b"y" * 100_000)
    list(reader)
    assert reader.buffered <= 8


def test_never_ending_frame_is_bounded():
    reader = FrameReader(max_body_length=1000)
    reader.feed(b"8=FIX.4.4\x019=10\x0135=0\x01")
    for _ in range(50):
        reader.feed(b"z" * 100)
        list(reader)
    assert reader.buffered <= 1000 + 200


def test_data_field_may_contain_soh():
    raw = msg([(95, b"5"), (96, b"a\x01b\x01c")], b"B")
    [frame] = iter_frames(raw)
    assert isinstance(frame, Frame)
    assert (96, b"a\x01b\x01c") in frame.fields


def test_feed_rejects_non_bytes():
    import pytest
    with pytest.raises(TypeError):
        FrameReader().feed("8=FIX")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FrameReader(max_body_length=0)


def test_reference_and_cython_framers_find_the_same_frames():
    """The compiled codec's FrameReader must agree with this reference on mutated traffic."""
    import pytest
    from hypothesis import HealthCheck, given, settings, strategies as st

    codec = pytest.importorskip("crossbook.fix.codec", reason="Cython codec not built (make build)")
    from crossbook.fix.session import TestClock
    from fix_sessionkit import base_stream, chunks, mutate, mutation

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(ops=st.lists(mutation, max_size=6), cuts=st.lists(st.integers(0, 3000), max_size=8))
    def check(ops, cuts):
        logon, stream = base_stream(TestClock())
        data = mutate(logon + stream, ops)
        ours, theirs = FrameReader(), codec.FrameReader()
        a, b = [], []
        for part in chunks(data, cuts):
            ours.feed(part)
            theirs.feed(part)
            a += [e.raw for e in ours if isinstance(e, Frame)]
            b += [bytes(e) for e in theirs if not isinstance(e, codec.Garbled)]
        assert a == b

    check()


def _reference_split(data: bytes) -> list[tuple[int, bytes]] | None:
    """Field splitting written the slow, obvious way (None = syntax error)."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    prev: tuple[int, bytes] | None = None
    lengths = {96: 95, 213: 212, 89: 93, 91: 90}
    while pos < len(data):
        eq = data.find(b"=", pos)
        if eq < 0:
            return None
        text = data[pos:eq]
        digits = text[1:] if text[:1] == b"-" else text
        if not (0 < len(digits) <= 9 and digits.isdigit()) or b"\x01" in text:
            return None
        tag = int(text)
        if tag in lengths and prev is not None and prev[0] == lengths[tag] and prev[1].isdigit():
            end = eq + 1 + int(prev[1])
            if end >= len(data) or data[end] != 1:
                return None
        else:
            end = data.find(b"\x01", eq + 1)
            if end < 0:
                return None
        out.append((tag, data[eq + 1:end]))
        prev = out[-1]
        pos = end + 1
    return out


def test_split_fields_matches_the_obvious_version():
    from hypothesis import given, settings, strategies as st
    from crossbook.fix.framing import FieldSyntaxError

    token = st.sampled_from([b"8=FIX.4.4", b"35=D", b"95=3", b"96=a\x01b", b"96=abc", b"-1=x", b"x=1", b"=",
                             b"12", b"1=", b"212=1", b"213=\x01", b"0=0", b"55=A=B", b"9999999999=1"])

    @settings(max_examples=400, deadline=None)
    @given(parts=st.lists(token, max_size=8), terminated=st.booleans())
    def check(parts, terminated):
        data = b"\x01".join(parts) + (b"\x01" if terminated and parts else b"")
        expected = _reference_split(data)
        try:
            got = split_fields(data)
        except FieldSyntaxError:
            got = None
        assert got == expected

    check()
