"""Tests for the Cython FIX codec (crossbook.fix.codec).

Each fast piece is checked against a slow, obviously correct reference written here in plain
Python (frame scanning, field splitting, checksums, timestamps), on hand-picked cases and on
hypothesis-generated valid and mutated messages.
"""
from __future__ import annotations

import datetime as dt
import os
import random
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossbook.fix.codec import (
    DATA_FIELDS,
    DEFAULT_MAX_BODY_LENGTH,
    DecimalFormatError,
    ExecutionReportEncoder,
    FieldError,
    FieldErrorCode,
    Fields,
    FrameReader,
    FrameStatus,
    Garbled,
    GarbleReason,
    MessageEncoder,
    OffGridError,
    OrderMessage,
    decode_order,
    encode_message,
    find_frame,
    format_utc_timestamp,
    parse_utc_timestamp,
    split_fields,
    to_ticks,
    to_units,
)

SOH = b"\x01"
# CODEC_EXAMPLES raises the example count for a longer local fuzzing run.
HYPOTHESIS = settings(max_examples=int(os.environ.get("CODEC_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------
# Slow references
# ---------------------------------------------------------------------------------------------

def ref_checksum(data: bytes) -> int:
    return sum(data) % 256


def ref_frame(begin: bytes, body: bytes, *, body_length=None, checksum=None) -> bytes:
    """Wrap a body ("35=...<SOH>...<SOH>") into a frame, optionally with wrong 9 / 10."""
    n = len(body) if body_length is None else body_length
    head = b"8=" + begin + SOH + b"9=" + str(n).encode() + SOH
    cs = ref_checksum(head + body) if checksum is None else checksum
    return head + body + b"10=" + f"{cs:03d}".encode() + SOH


def ref_resync(buf: bytes) -> int:
    """Bytes to skip: up to the next b'8=FIX' after offset 0, keeping a partial one at the end."""
    for i in range(1, len(buf)):
        rest = buf[i:i + 5]
        if b"8=FIX".startswith(rest) if len(rest) < 5 else rest == b"8=FIX":
            return i
    return len(buf)


def ref_scan(buf: bytes, max_body=DEFAULT_MAX_BODY_LENGTH):
    """(status, end_or_skip, reason) following the rules in docs/fix-codec.md, byte by byte."""
    def garbled(reason):
        return (FrameStatus.GARBLED, ref_resync(buf), reason)

    need = (FrameStatus.NEED_MORE, 0, 0)
    if not buf:
        return need
    if not b"8=FIX".startswith(buf[:5]):
        return garbled(GarbleReason.NOT_FRAME_START)
    if len(buf) < 5:
        return need
    soh = 2
    while True:
        if soh >= len(buf):
            return need
        c = buf[soh]
        if c == 1:
            break
        if not 0x21 <= c <= 0x7E or c == ord("=") or soh - 2 >= 16:
            return garbled(GarbleReason.BAD_BEGIN_STRING)
        soh += 1
    i = soh + 1
    if buf[i:i + 2] != b"9="[: len(buf) - i]:
        return garbled(GarbleReason.MISSING_BODY_LENGTH)
    if len(buf) < i + 2:
        return need
    i += 2
    j = i
    while j < len(buf) and buf[j:j + 1].isdigit():
        if int(buf[i:j + 1]) > max_body:
            return garbled(GarbleReason.BODY_LENGTH_TOO_LARGE)
        if j + 1 - i > 10:
            return garbled(GarbleReason.BAD_BODY_LENGTH)
        j += 1
    if j == len(buf):
        return need
    if buf[j] != 1 or j == i or int(buf[i:j]) < 5:
        return garbled(GarbleReason.BAD_BODY_LENGTH)
    length = int(buf[i:j])
    start = j + 1
    if buf[start:start + 3] != b"35="[: len(buf) - start]:
        return garbled(GarbleReason.MISSING_MSG_TYPE)
    end = start + length
    # QuickFIX's rule: the message ends at the first "<SOH>10=" from the byte before `end`.
    window_end = end - 1 + max_body + 64
    k = buf.find(b"\x0110=", end - 1, min(len(buf), window_end + 4))
    if k < 0:
        return garbled(GarbleReason.BODY_LENGTH_MISMATCH) if len(buf) >= window_end + 4 else need
    trailer = k + 1
    soh = buf.find(SOH, trailer + 3, trailer + 3 + 9)
    if soh < 0:
        return garbled(GarbleReason.BAD_CHECKSUM_FIELD) if len(buf) >= trailer + 3 + 9 else need
    frame_end = soh + 1
    if trailer != end:
        return (FrameStatus.GARBLED, frame_end, GarbleReason.BODY_LENGTH_MISMATCH)
    value = buf[trailer + 3:soh]
    if len(value) != 3 or not value.isdigit():
        return (FrameStatus.GARBLED, frame_end, GarbleReason.BAD_CHECKSUM_FIELD)
    if int(value) != ref_checksum(buf[:end]):
        return (FrameStatus.GARBLED, frame_end, GarbleReason.CHECKSUM_MISMATCH)
    return (FrameStatus.COMPLETE, frame_end, 0)


def ref_split(data: bytes):
    """(pairs, error, complete) with the codec's rules, in plain Python.

    Structure errors stop the split and win; tag 0 and negative tags keep the field, and the
    first of them is the error reported when the rest splits.
    """
    pairs, i, pending, soft = [], 0, None, FieldErrorCode.OK

    def broken(code):
        return pairs, code, False

    while i < len(data):
        tag_start = i
        negative = data[i] == ord("-")
        if negative:
            i += 1
        tag = 0
        while i < len(data) and data[i] != ord("="):
            c = data[i]
            if not 48 <= c <= 57:
                return broken(FieldErrorCode.MISSING_EQUALS if c == 1 else FieldErrorCode.TAG_NOT_NUMERIC)
            if tag > 99_999_999:
                return broken(FieldErrorCode.TAG_TOO_LARGE)
            tag = tag * 10 + c - 48
            i += 1
        if i == len(data):
            return broken(FieldErrorCode.MISSING_EQUALS)
        if i == tag_start:
            return broken(FieldErrorCode.EMPTY_TAG)
        if negative and i == tag_start + 1:
            return broken(FieldErrorCode.TAG_NOT_NUMERIC)
        if tag == 0 and not soft:
            soft = FieldErrorCode.TAG_ZERO
        elif negative and tag and not soft:
            soft = FieldErrorCode.TAG_NEGATIVE
        tag = -tag if negative else tag
        start = i + 1
        if pending and pending[0] == tag:
            end = start + pending[1]
            if end >= len(data) or data[end] != 1:
                return broken(FieldErrorCode.DATA_LENGTH_MISMATCH)
        else:
            end = data.find(SOH, start)
            if end < 0:
                return broken(FieldErrorCode.UNTERMINATED)
        value = data[start:end]
        pairs.append((tag, value))
        pending = None
        if tag in DATA_FIELDS:
            if not value.isdigit() or len(value) > 10:
                return broken(FieldErrorCode.BAD_DATA_LENGTH)
            pending = (DATA_FIELDS[tag], int(value))
        i = end + 1
    return pairs, soft, True


def ref_timestamp(ns: int, precision: int) -> bytes:
    t = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=ns // 1000)
    text = t.strftime("%Y%m%d-%H:%M:%S")
    frac = f"{ns % 1_000_000_000:09d}"[:precision]
    return (text + ("." + frac if precision else "")).encode()


def nos_body(overrides: dict | None = None) -> bytes:
    fields = {
        35: "D", 34: "12", 49: "CLIENT01", 52: "20261125-08:15:00.123", 56: "CROSSBOOK",
        11: "ORD-1", 1: "ACC-7", 55: "ESZ6", 167: "FUT", 200: "202612", 15: "USD", 54: "1",
        38: "10", 40: "2", 44: "4512.25", 59: "6", 432: "20261231", 111: "5", 18: "G",
        100: "XCME", 60: "20261125-08:15:00.120", 126: "20261231-21:00:00",
    }
    fields.update(overrides or {})
    return b"".join(f"{t}={v}".encode() + SOH for t, v in fields.items() if v is not None)


NOS = ref_frame(b"FIX.4.4", nos_body())


# ---------------------------------------------------------------------------------------------
# find_frame
# ---------------------------------------------------------------------------------------------

def test_complete_frame_spans_the_whole_message():
    scan = find_frame(NOS)
    assert scan.status == FrameStatus.COMPLETE
    assert (scan.start, scan.end) == (0, len(NOS))
    assert scan.reason == ""


def test_frame_at_offset_in_bytearray_and_memoryview():
    buf = b"xx" + NOS + NOS
    for data in (buf, bytearray(buf), memoryview(buf)):
        scan = find_frame(data, 2 + len(NOS))
        assert scan.status == FrameStatus.COMPLETE
        assert (scan.start, scan.end) == (2 + len(NOS), len(buf))


def test_every_truncation_of_a_valid_frame_needs_more():
    for k in range(len(NOS)):
        assert find_frame(NOS[:k]).status == FrameStatus.NEED_MORE, NOS[:k]


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"9=5\x0135=0\x01", GarbleReason.NOT_FRAME_START),
        (b"8=FOO\x01", GarbleReason.NOT_FRAME_START),
        (b"8=FIX 4.2\x019=5\x01", GarbleReason.BAD_BEGIN_STRING),
        (b"8=FIX.4.4.XXXXXXXXXXXXXXXXXXX\x019=5\x01", GarbleReason.BAD_BEGIN_STRING),
        (b"8=FIX=4\x01", GarbleReason.BAD_BEGIN_STRING),
        (b"8=FIX.4.2\x0135=D\x01", GarbleReason.MISSING_BODY_LENGTH),
        (b"8=FIX.4.2\x019X5\x01", GarbleReason.MISSING_BODY_LENGTH),
        (b"8=FIX.4.2\x019=\x0135=D\x01", GarbleReason.BAD_BODY_LENGTH),
        (b"8=FIX.4.2\x019=1a\x0135=D\x01", GarbleReason.BAD_BODY_LENGTH),
        (b"8=FIX.4.2\x019=-5\x0135=D\x01", GarbleReason.BAD_BODY_LENGTH),
        (b"8=FIX.4.2\x019=4\x0135=D\x01", GarbleReason.BAD_BODY_LENGTH),
        (b"8=FIX.4.2\x019=00000000005\x01", GarbleReason.BAD_BODY_LENGTH),
        (b"8=FIX.4.2\x019=99999999999999999999", GarbleReason.BODY_LENGTH_TOO_LARGE),
        (b"8=FIX.4.2\x019=1048577", GarbleReason.BODY_LENGTH_TOO_LARGE),
        (b"8=FIX.4.2\x019=20\x0149=A\x01", GarbleReason.MISSING_MSG_TYPE),
    ],
)
def test_garbled_headers_are_reported_without_waiting_for_a_body(data, reason):
    scan = find_frame(data)
    assert scan.status == FrameStatus.GARBLED, scan
    assert scan.reason_code == reason
    assert scan.reason
    assert scan.skip == scan.end - scan.start >= 1
    assert (scan.status, scan.skip, scan.reason_code) == ref_scan(data)


def test_huge_body_length_is_refused_before_any_body_arrives():
    scan = find_frame(b"8=FIX.4.4\x019=999999999999\x01")
    assert scan.status == FrameStatus.GARBLED
    assert scan.reason_code == GarbleReason.BODY_LENGTH_TOO_LARGE


def test_max_body_length_is_configurable():
    frame = ref_frame(b"FIX.4.4", b"35=0\x01" + b"58=" + b"x" * 95 + SOH)  # body of 104 bytes
    assert find_frame(frame, max_body_length=104).status == FrameStatus.COMPLETE
    scan = find_frame(frame, max_body_length=103)
    assert scan.reason_code == GarbleReason.BODY_LENGTH_TOO_LARGE
    with pytest.raises(ValueError, match="max_body_length"):
        find_frame(frame, max_body_length=4)
    with pytest.raises(ValueError, match="max_body_length"):
        FrameReader(max_body_length=2**40)
    assert FrameReader(max_body_length=100).max_body_length == 100


def test_reader_feed_takes_only_bytes_like_objects():
    reader = FrameReader()
    with pytest.raises(TypeError):
        reader.feed("8=FIX.4.2")
    assert reader.buffered == 0


def test_too_short_body_length_drops_only_that_message():
    body = nos_body()
    for delta in (-1, -7, -30):
        bad = ref_frame(b"FIX.4.4", body, body_length=len(body) + delta)
        scan = find_frame(bad + NOS)
        assert scan.status == FrameStatus.GARBLED
        assert scan.reason_code == GarbleReason.BODY_LENGTH_MISMATCH
        assert scan.end == len(bad)
        assert find_frame(bad + NOS, scan.end).status == FrameStatus.COMPLETE


def test_too_long_body_length_swallows_the_next_message_like_quickfix():
    # The QuickFIX acceptance script 2m_BodyLengthValueNotCorrect expects exactly this: the
    # message runs to the next CheckSum, so the following message is dropped with it.
    body = nos_body()
    follower = ref_frame(b"FIX.4.4", b"35=0\x0134=2\x01")
    for delta in (1, 3, 20):
        bad = ref_frame(b"FIX.4.4", body, body_length=len(body) + delta)
        scan = find_frame(bad + follower + NOS)
        assert scan.status == FrameStatus.GARBLED
        assert scan.reason_code == GarbleReason.BODY_LENGTH_MISMATCH
        assert scan.end == len(bad) + len(follower)
        assert find_frame(bad + follower + NOS, scan.end).status == FrameStatus.COMPLETE


def test_a_body_length_with_no_checksum_in_reach_is_dropped_not_awaited():
    data = b"8=FIX.4.4\x019=10\x0135=0\x01" + b"58=" + b"x" * 300
    assert find_frame(data, max_body_length=1000).status == FrameStatus.NEED_MORE
    scan = find_frame(data, max_body_length=100)
    assert scan.status == FrameStatus.GARBLED
    assert scan.reason_code == GarbleReason.BODY_LENGTH_MISMATCH


def test_checksum_must_be_three_digits():
    frame = ref_frame(b"FIX.4.2", b"35=0\x0134=1\x01")
    for bad in (b"10=12\x01X", b"10=1A3\x01", b"10=1234\x01"):
        data = frame[: frame.index(b"10=")] + bad
        scan = find_frame(data)
        assert scan.status == FrameStatus.GARBLED
        assert scan.reason_code == GarbleReason.BAD_CHECKSUM_FIELD


def test_wrong_checksum_drops_exactly_that_frame():
    good = ref_frame(b"FIX.4.2", b"35=0\x0134=1\x01")
    bad = ref_frame(b"FIX.4.2", b"35=0\x0134=1\x01", checksum=(ref_checksum(good[:-7]) + 1) % 256)
    scan = find_frame(bad + good)
    assert scan.status == FrameStatus.GARBLED
    assert scan.reason_code == GarbleReason.CHECKSUM_MISMATCH
    assert scan.skip == len(bad)
    assert find_frame(bad + good, scan.end).status == FrameStatus.COMPLETE


def test_resync_keeps_a_partial_frame_start_at_the_end():
    scan = find_frame(b"garbage8=FI")
    assert scan.status == FrameStatus.GARBLED
    assert scan.skip == len(b"garbage")
    scan = find_frame(b"garbage8=F!x")
    assert scan.skip == len(b"garbage8=F!x")


def test_find_frame_rejects_bad_arguments():
    with pytest.raises(ValueError, match="offset"):
        find_frame(NOS, len(NOS) + 1)
    with pytest.raises(ValueError, match="offset"):
        find_frame(NOS, -1)
    with pytest.raises(TypeError):
        find_frame("8=FIX.4.2")


@st.composite
def mutated_frames(draw):
    """Valid frames with a few bytes replaced, inserted or deleted, and random tails."""
    body = draw(st.sampled_from([nos_body(), b"35=0\x0134=9\x0149=A\x0156=B\x01",
                                 nos_body({58: "hello 8=FIX.4.2 world"})]))
    data = bytearray(ref_frame(draw(st.sampled_from([b"FIX.4.2", b"FIX.4.4", b"FIXT.1.1"])), body))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["replace", "insert", "delete"]))
        pos = draw(st.integers(0, len(data) - 1))
        byte = draw(st.sampled_from([0, 1, ord("="), ord("8"), ord("9"), ord("1"), ord("0"),
                                     draw(st.integers(0, 255))]))
        if op == "replace":
            data[pos] = byte
        elif op == "insert":
            data.insert(pos, byte)
        elif len(data) > 1:
            del data[pos]
    return bytes(data) + draw(st.binary(max_size=40))


@HYPOTHESIS
@given(mutated_frames())
def test_find_frame_matches_the_reference_on_mutated_frames(data):
    scan = find_frame(data)
    expected = ref_scan(data)
    if scan.status == FrameStatus.COMPLETE:
        got = (scan.status, scan.end, 0)
    elif scan.status == FrameStatus.GARBLED:
        got = (scan.status, scan.skip, scan.reason_code)
    else:
        got = (scan.status, 0, 0)
    assert got == expected


@HYPOTHESIS
@given(st.binary(max_size=300))
def test_find_frame_matches_the_reference_on_random_bytes(data):
    scan = find_frame(data)
    status, n, reason = ref_scan(data)
    assert scan.status == status
    if status == FrameStatus.GARBLED:
        assert (scan.skip, scan.reason_code) == (n, reason)


# ---------------------------------------------------------------------------------------------
# FrameReader
# ---------------------------------------------------------------------------------------------

def drain(reader):
    return list(reader)


def test_reader_returns_frames_in_order_from_one_feed():
    frames = [ref_frame(b"FIX.4.4", nos_body({34: str(i)})) for i in range(1, 6)]
    reader = FrameReader()
    reader.feed(b"".join(frames))
    assert drain(reader) == frames
    assert reader.buffered == 0
    assert reader.next_event() is None


def test_reader_fed_byte_by_byte_gives_the_same_frames():
    frames = [NOS, ref_frame(b"FIX.4.2", b"35=0\x0134=2\x01"), NOS]
    reader = FrameReader()
    out = []
    for b in b"".join(frames):
        reader.feed(bytes([b]))
        out += drain(reader)
    assert out == frames


def test_reader_accepts_bytearray_and_memoryview():
    reader = FrameReader()
    reader.feed(bytearray(NOS[:50]))
    reader.feed(memoryview(NOS)[50:])
    assert drain(reader) == [NOS]


def test_reader_reports_junk_and_bad_frames_and_keeps_going():
    bad_sum = ref_frame(b"FIX.4.2", b"35=0\x0134=1\x01", checksum=0)
    stream = b"hello" + NOS + bad_sum + b"\x00\xff" + NOS
    reader = FrameReader()
    reader.feed(stream)
    events = drain(reader)
    assert events == [
        Garbled(GarbleReason.NOT_FRAME_START, b"hello"),
        NOS,
        Garbled(GarbleReason.CHECKSUM_MISMATCH, bad_sum),
        Garbled(GarbleReason.NOT_FRAME_START, b"\x00\xff"),
        NOS,
    ]
    assert "checksum" in events[2].reason.lower()
    assert "Garbled(" in repr(events[2])


def test_reader_refuses_huge_body_length_without_buffering():
    reader = FrameReader(max_body_length=4096)
    reader.feed(b"8=FIX.4.4\x019=4097\x01")
    event = reader.next_event()
    assert isinstance(event, Garbled)
    assert event.reason_code == GarbleReason.BODY_LENGTH_TOO_LARGE
    assert reader.buffered == 0


def test_reader_memory_stays_bounded_under_a_flood_of_junk():
    rng = random.Random(7)
    reader = FrameReader()
    fed = dropped = 0
    for _ in range(200):
        chunk = bytes(rng.getrandbits(8) for _ in range(4096))
        reader.feed(chunk)
        fed += len(chunk)
        for event in reader:
            assert isinstance(event, Garbled)
            dropped += len(event.data)
        assert reader.buffered <= 5        # at most a partial "8=FIX"
        assert reader.capacity <= 65536
    assert dropped + reader.buffered == fed


def test_reader_gives_memory_back_after_a_large_message():
    body = b"35=B\x01148=x\x0158=" + b"y" * 600_000 + SOH
    big = ref_frame(b"FIX.4.4", body)
    reader = FrameReader()
    reader.feed(big)
    assert reader.capacity >= len(big)
    assert drain(reader) == [big]
    assert reader.capacity < 100_000
    reader.feed(NOS)
    assert drain(reader) == [NOS]


def test_reader_clear_drops_buffered_bytes():
    reader = FrameReader()
    reader.feed(NOS[:30])
    reader.clear()
    reader.feed(NOS)
    assert drain(reader) == [NOS]


@HYPOTHESIS
@given(st.lists(st.one_of(mutated_frames(), st.binary(max_size=64), st.just(NOS)), max_size=8),
       st.lists(st.integers(1, 97), min_size=1, max_size=8))
def test_reader_never_raises_and_accounts_for_every_byte(pieces, cuts):
    stream = b"".join(pieces)
    reader = FrameReader()
    events = []
    i = k = 0
    while i < len(stream):
        step = cuts[k % len(cuts)]
        reader.feed(stream[i:i + step])
        i += step
        k += 1
        events += drain(reader)
    consumed = 0
    for event in events:
        if isinstance(event, Garbled):
            assert len(event.data) >= 1
            consumed += len(event.data)
        else:
            # Every frame handed out is exactly one valid frame.
            assert ref_scan(event) == (FrameStatus.COMPLETE, len(event), 0)
            consumed += len(event)
    assert consumed + reader.buffered == len(stream)
    # Fed in one piece, the same stream gives the same frames and drops the same bytes between
    # them (junk may be reported in different slices when it arrives in pieces).
    whole = FrameReader()
    whole.feed(stream)
    assert merge_garbled(drain(whole)) == merge_garbled(events)


def merge_garbled(events):
    out = []
    for event in events:
        if isinstance(event, Garbled):
            if out and isinstance(out[-1], bytearray):
                out[-1] += event.data
            else:
                out.append(bytearray(event.data))
        else:
            out.append(event)
    return out


@HYPOTHESIS
@given(st.lists(st.one_of(mutated_frames(), st.just(NOS)), min_size=1, max_size=6))
def test_reader_agrees_with_the_pure_python_framer(pieces):
    """crossbook.fix.framing is the session layer's pure-Python framer (QuickFIX's rules).  On the
    same stream both must hand out the same messages; that framer also drops messages whose
    fields do not split or that carry CheckSum (10) before the end, which with the codec is the
    caller's check on ``split_fields``."""
    from crossbook.fix import framing

    stream = b"".join(pieces)
    ours = FrameReader()
    ours.feed(stream)
    accepted = []
    for event in ours:
        if isinstance(event, Garbled):
            continue
        fields = split_fields(event)
        if fields.complete and 10 not in fields.tags()[:-1]:
            accepted.append(event)
    theirs = framing.FrameReader()
    theirs.feed(stream)
    assert accepted == [e.raw for e in theirs if isinstance(e, framing.Frame)]


# ---------------------------------------------------------------------------------------------
# split_fields
# ---------------------------------------------------------------------------------------------

def test_split_gives_tags_and_values_in_order():
    fields = split_fields(NOS)
    assert fields.ok and fields.error == 0 and fields.error_position == -1
    expected, error, complete = ref_split(NOS)
    assert error == FieldErrorCode.OK and complete and fields.complete
    assert fields.pairs() == expected == list(fields)
    assert len(fields) == len(expected)
    assert fields.tags()[:3] == [8, 9, 35] and fields.tags()[-1] == 10


def test_lookup_by_tag_and_by_index():
    data = b"8=FIX.4.4\x019=5\x0135=E\x0173=2\x0111=A\x0111=B\x0110=000\x01"
    fields = split_fields(data)
    assert fields.get(35) == b"E"
    assert fields.get(999) is None and fields.get(999, b"-") == b"-"
    assert fields.get_all(11) == [b"A", b"B"]
    assert 73 in fields and 74 not in fields
    first = fields.find(11)
    assert fields.find(11, first + 1) == first + 1
    assert fields.find(11, first + 2) == -1
    assert fields.tag_at(first) == 11 and fields.value_at(first) == b"A"
    start, end = fields.span_at(first)
    assert data[start:end] == b"A"
    with pytest.raises(IndexError):
        fields.tag_at(len(fields))
    with pytest.raises(IndexError):
        fields.value_at(-1)


def test_split_does_not_copy_the_data():
    data = bytearray(NOS)
    fields = split_fields(data)
    assert fields.data is data
    # The spans point into the bytearray, which is held (locked against resizing) meanwhile.
    with pytest.raises(BufferError):
        data.extend(b"x")
    data[fields.span_at(fields.find(11))[0]] = ord("Z")
    assert fields.get(11) == b"ZRD-1"
    fields.release()
    data.extend(b"x")
    assert len(fields) == 0


def test_split_a_slice_and_reuse_the_object():
    buf = b"junk" + NOS + b"tail"
    fields = split_fields(buf, 4, 4 + len(NOS))
    assert fields.pairs() == ref_split(NOS)[0]
    other = ref_frame(b"FIX.4.2", b"35=0\x0134=3\x01")
    assert fields.parse(other) is True
    assert fields.pairs() == ref_split(other)[0]
    assert fields.parse(b"35=0\x01x=1\x01") is False
    assert fields.error == FieldErrorCode.TAG_NOT_NUMERIC
    with pytest.raises(ValueError, match="outside"):
        split_fields(NOS, 10, 5)
    with pytest.raises(ValueError, match="outside"):
        split_fields(NOS, 0, len(NOS) + 1)


def test_many_fields_grow_past_the_inline_storage():
    body = b"35=E\x0173=1\x01" + b"".join(b"11=%d\x01" % i for i in range(500))
    fields = split_fields(ref_frame(b"FIX.4.4", body))
    assert fields.ok
    assert fields.get_all(11) == [b"%d" % i for i in range(500)]


@pytest.mark.parametrize(
    "data, error, position",
    [
        (b"35=D\x01ab=1\x01", FieldErrorCode.TAG_NOT_NUMERIC, 5),
        (b"35=D\x011a=1\x01", FieldErrorCode.TAG_NOT_NUMERIC, 5),
        (b"35=D\x01--1=1\x01", FieldErrorCode.TAG_NOT_NUMERIC, 5),
        (b"35=D\x011-1=1\x01", FieldErrorCode.TAG_NOT_NUMERIC, 5),
        (b"35=D\x01=1\x01", FieldErrorCode.EMPTY_TAG, 5),
        (b"35=D\x01-=1\x01", FieldErrorCode.TAG_NOT_NUMERIC, 5),
        (b"35=D\x0112345678901=1\x01", FieldErrorCode.TAG_TOO_LARGE, 5),
        (b"35=D\x0155\x0154=1\x01", FieldErrorCode.MISSING_EQUALS, 5),
        (b"35=D\x0155", FieldErrorCode.MISSING_EQUALS, 5),
        (b"35=D\x0155=IBM", FieldErrorCode.UNTERMINATED, 5),
    ],
)
def test_split_errors_are_values_with_a_position(data, error, position):
    fields = split_fields(data)
    assert not fields.ok and not fields.complete
    assert fields.error == error and FieldErrorCode(error).breaks_structure
    assert fields.error_position == position
    assert fields.error_reason
    assert fields.pairs() == [(35, b"D")]       # what came before stays readable
    assert ref_split(data) == ([(35, b"D")], error, False)
    with pytest.raises(FieldError) as info:
        fields.raise_for_error()
    assert info.value.code == error and info.value.position == position


@pytest.mark.parametrize(
    "data, error, tag",
    [
        (b"35=0\x010=HI\x0134=3\x01", FieldErrorCode.TAG_ZERO, 0),
        (b"35=0\x01000=HI\x0134=3\x01", FieldErrorCode.TAG_ZERO, 0),
        (b"35=0\x01-0=HI\x0134=3\x01", FieldErrorCode.TAG_ZERO, 0),
        (b"35=0\x01-1=HI\x0134=3\x01", FieldErrorCode.TAG_NEGATIVE, -1),
        (b"35=0\x01-17=HI\x010=X\x0134=3\x01", FieldErrorCode.TAG_NEGATIVE, -17),
    ],
)
def test_invalid_tag_numbers_keep_the_message_readable(data, error, tag):
    # QuickFIX answers these with Reject "Invalid tag number" (acceptance script 14a_BadField),
    # which needs the rest of the message: the field is kept and flagged.
    fields = split_fields(data)
    assert fields.complete and not fields.ok
    assert (fields.error, fields.error_tag, fields.error_position) == (error, tag, 5)
    assert not FieldErrorCode(error).breaks_structure
    assert fields.get(34) == b"3" and fields.get(tag) == b"HI"
    assert (fields.pairs(), fields.error, fields.complete) == ref_split(data)


def test_a_structure_error_outranks_an_earlier_bad_tag():
    fields = split_fields(b"35=0\x010=HI\x01x=1\x01")
    assert not fields.complete
    assert fields.error == FieldErrorCode.TAG_NOT_NUMERIC
    assert fields.pairs() == [(35, b"0"), (0, b"HI")]


@pytest.mark.parametrize("length_tag, data_tag", sorted(DATA_FIELDS.items()))
def test_data_fields_may_contain_soh_and_equals(length_tag, data_tag):
    raw = b"a\x01b=c\x0110=123\x01"
    data = b"35=B\x01%d=%d\x01%d=%s\x0158=after\x01" % (length_tag, len(raw), data_tag, raw)
    fields = split_fields(data)
    assert fields.ok, fields.error_reason
    assert fields.get(data_tag) == raw
    assert fields.get(58) == b"after"
    assert fields.pairs() == ref_split(data)[0]


@pytest.mark.parametrize(
    "data, error, tag",
    [
        (b"35=B\x0195=x\x0196=abc\x01", FieldErrorCode.BAD_DATA_LENGTH, 95),
        (b"35=B\x0195=\x0196=abc\x01", FieldErrorCode.BAD_DATA_LENGTH, 95),
        (b"35=B\x0195=12345678901\x0196=abc\x01", FieldErrorCode.BAD_DATA_LENGTH, 95),
        (b"35=B\x0195=99\x0196=abc\x01", FieldErrorCode.DATA_LENGTH_MISMATCH, 96),
        (b"35=B\x0195=2\x0196=abc\x01", FieldErrorCode.DATA_LENGTH_MISMATCH, 96),
        (b"35=B\x0195=4\x0196=abc\x01", FieldErrorCode.DATA_LENGTH_MISMATCH, 96),
        (b"35=B\x0195=3\x0196=abc", FieldErrorCode.DATA_LENGTH_MISMATCH, 96),
    ],
)
def test_bad_data_lengths_are_errors(data, error, tag):
    fields = split_fields(data)
    assert (fields.error, fields.error_tag, fields.complete) == (error, tag, False)
    assert ref_split(data)[1:] == (error, False)


def test_a_length_field_without_its_data_field_is_not_an_error():
    fields = split_fields(b"35=B\x0195=1000\x0158=x\x01")
    assert fields.ok and fields.pairs() == [(35, b"B"), (95, b"1000"), (58, b"x")]


def test_a_data_field_without_its_length_ends_at_soh():
    fields = split_fields(b"35=B\x0196=ab\x0158=x\x01")
    assert fields.pairs() == [(35, b"B"), (96, b"ab"), (58, b"x")]


def test_integer_and_tick_getters():
    fields = split_fields(b"34=17\x0144=101.25\x0138=-3\x0158=abc\x01")
    assert fields.get_int(34) == 17
    assert fields.get_int(38) == -3
    assert fields.get_int(999) is None and fields.get_int(999, 0) == 0
    with pytest.raises(ValueError, match="tag 44"):
        fields.get_int(44)
    with pytest.raises(ValueError, match="tag 58"):
        fields.get_int(58)
    assert fields.get_ticks(44, 25, 2) == 405
    assert fields.get_units(44, 4) == 1012500
    with pytest.raises(OffGridError):
        fields.get_ticks(44, 10, 2)
    with pytest.raises(DecimalFormatError):
        fields.get_units(58, 2)
    assert fields.get_units(999, 2) is None


def printable_values():
    return st.binary(min_size=1, max_size=20).filter(lambda b: b"\x01" not in b)


@HYPOTHESIS
@given(st.binary(max_size=200))
def test_split_matches_the_reference_on_random_bytes(data):
    fields = split_fields(data)
    assert (fields.pairs(), fields.error, fields.complete) == ref_split(data)


# ---------------------------------------------------------------------------------------------
# Decimals and timestamps
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "value, tick, scale, ticks",
    [
        ("123.45", 1, 2, 12345), (b"123.450000", 1, 2, 12345), ("123", 1, 2, 12300),
        ("1.25", 25, 2, 5), ("-0.5", 5, 1, -1), ("0", 1, 0, 0), (".5", 5, 1, 1), ("7.", 1, 0, 7),
        ("0.0001", 1, 4, 1), ("-92233720368.54775807", 1, 8, -9223372036854775807),
        ("92233720368.54775807", 1, 8, 9223372036854775807),
    ],
)
def test_to_ticks_is_exact(value, tick, scale, ticks):
    assert to_ticks(value, tick, scale) == ticks
    text = value.decode() if isinstance(value, bytes) else value
    assert Decimal(text) == Decimal(ticks) * tick / Decimal(10) ** scale


@pytest.mark.parametrize("value, tick, scale", [("123.455", 1, 2), ("1.30", 25, 2), ("0.00001", 1, 4)])
def test_off_grid_prices_are_detected(value, tick, scale):
    with pytest.raises(OffGridError, match="tick"):
        to_ticks(value, tick, scale)


@pytest.mark.parametrize("value", ["", ".", "-", "1e5", "1.2.3", "+1", " 1", "1,5", "NaN",
                                   "99999999999999999999", "9223372036854775808"])
def test_malformed_decimals_are_refused(value):
    with pytest.raises(DecimalFormatError):
        to_units(value, 0)


def test_tick_arguments_are_checked():
    with pytest.raises(ValueError, match="tick_units"):
        to_ticks("1", 0, 2)
    with pytest.raises(ValueError, match="scale"):
        to_ticks("1", 1, 19)
    with pytest.raises(TypeError):
        to_ticks(1.5, 1, 2)


@HYPOTHESIS
@given(st.integers(0, 2**63 - 1), st.sampled_from([0, 3, 6, 9]))
def test_timestamps_format_like_datetime_and_parse_back(ns, precision):
    text = format_utc_timestamp(ns, precision)
    assert text == ref_timestamp(ns, precision)
    truncated = ns - ns % 10 ** (9 - precision)
    assert parse_utc_timestamp(text) == truncated
    assert parse_utc_timestamp(text.decode()) == truncated


@pytest.mark.parametrize("text", [
    "20261325-08:15:00", "20260230-08:15:00", "20261125-24:00:00", "20261125-08:60:00",
    "20261125-08:15:61", "20261125 08:15:00", "20261125-08-15:00", "20261125-08:15:00.12",
    "20261125-08:15:00,123", "2026112-08:15:00.123", "19691231-23:59:59", "2026112a-08:15:00",
    "20261125-08:15:00.12x",
])
def test_invalid_timestamps_are_refused(text):
    with pytest.raises(ValueError, match="UTCTimestamp"):
        parse_utc_timestamp(text)


def test_leap_day_and_leap_second_parse():
    assert parse_utc_timestamp("20240229-00:00:00") == 1709164800 * 10**9
    assert parse_utc_timestamp("20161231-23:59:60") == 1483228800 * 10**9


def test_timestamp_format_arguments_are_checked():
    with pytest.raises(ValueError, match="precision"):
        format_utc_timestamp(0, 4)
    with pytest.raises(ValueError, match="before 1970"):
        format_utc_timestamp(-1)


# ---------------------------------------------------------------------------------------------
# decode_order
# ---------------------------------------------------------------------------------------------

def test_new_order_single_fields():
    msg = decode_order(NOS)
    assert isinstance(msg, OrderMessage) and isinstance(msg, Fields)
    assert msg.ok, msg.error_reason
    assert (msg.begin_string, msg.msg_type, msg.msg_seq_num) == ("FIX.4.4", "D", 12)
    assert (msg.sender_comp_id, msg.target_comp_id) == ("CLIENT01", "CROSSBOOK")
    assert msg.sending_time == "20261125-08:15:00.123"
    assert msg.sending_time_ns == parse_utc_timestamp("20261125-08:15:00.123")
    assert msg.poss_dup is False and msg.poss_resend is False
    assert (msg.cl_ord_id, msg.orig_cl_ord_id, msg.account) == ("ORD-1", None, "ACC-7")
    assert (msg.symbol, msg.security_type, msg.maturity_month_year) == ("ESZ6", "FUT", "202612")
    assert (msg.currency, msg.side, msg.ord_type, msg.time_in_force) == ("USD", "1", "2", "6")
    assert (msg.order_qty, msg.price, msg.stop_px) == ("10", "4512.25", None)
    assert msg.price_ticks(25, 2) == 18049
    assert msg.stop_px_ticks(25, 2) is None
    assert msg.order_qty_units() == 10 and msg.order_qty_units(2) == 1000
    assert (msg.expire_date, msg.max_floor, msg.max_floor_units(), msg.exec_inst) == ("20261231", "5", 5, "G")
    assert msg.expire_time_ns == parse_utc_timestamp("20261231-21:00:00")
    assert (msg.ex_destination, msg.transact_time) == ("XCME", "20261125-08:15:00.120")
    assert msg.transact_time_ns == parse_utc_timestamp("20261125-08:15:00.120")
    assert msg.strike_price is None and msg.put_or_call is None and msg.text is None
    assert msg.get(55) == b"ESZ6"   # the generic view works too


def test_option_fields_and_poss_resend():
    msg = decode_order(ref_frame(b"FIX.4.2", nos_body(
        {167: "OPT", 202: "105.5", 201: "1", 97: "Y", 43: "Y", 122: "20261125-08:14:00",
           50: "DESK", 57: "GW", 115: "FIRM", 128: "VENUE", 58: "note"})))
    assert msg.ok, msg.error_reason
    assert (msg.strike_price, msg.strike_price_ticks(5, 1), msg.put_or_call) == ("105.5", 211, 1)
    assert msg.poss_resend is True and msg.poss_dup is True
    assert msg.orig_sending_time_ns == parse_utc_timestamp("20261125-08:14:00")
    assert (msg.sender_sub_id, msg.target_sub_id) == ("DESK", "GW")
    assert (msg.on_behalf_of_comp_id, msg.deliver_to_comp_id, msg.text) == ("FIRM", "VENUE", "note")


def test_cancel_and_replace_requests():
    cancel = decode_order(ref_frame(b"FIX.4.4", b"35=F\x0134=3\x0149=C\x0152=20261125-08:15:01\x01"
                                                b"56=X\x0141=ORD-1\x0111=ORD-2\x0137=X-9\x0155=ESZ6\x01"
                                                b"54=2\x0160=20261125-08:15:01\x01"))
    assert cancel.ok
    assert (cancel.msg_type, cancel.orig_cl_ord_id, cancel.cl_ord_id, cancel.order_id) == ("F", "ORD-1", "ORD-2", "X-9")
    replace = decode_order(ref_frame(b"FIX.4.4", nos_body({35: "G", 41: "ORD-2", 11: "ORD-3", 44: "4513", 38: "7"})))
    assert replace.ok
    assert (replace.msg_type, replace.orig_cl_ord_id, replace.cl_ord_id) == ("G", "ORD-2", "ORD-3")
    assert (replace.price_ticks(25, 2), replace.order_qty_units()) == (18052, 7)


def test_non_ascii_text_round_trips_through_latin1():
    utf8 = "café 東京".encode("utf-8")
    msg = decode_order(ref_frame(b"FIX.4.4", nos_body() + b"58=" + utf8 + SOH))
    assert msg.ok
    assert msg.text.encode("latin-1") == utf8


@pytest.mark.parametrize(
    "override, tag",
    [
        ({34: "abc"}, 34), ({34: "0"}, 34), ({34: "-4"}, 34), ({34: "1.5"}, 34), ({34: "1.0"}, 34),
        ({34: "+3"}, 34), ({34: "1234567890123456789"}, 34), ({201: "1.0"}, 201),
        ({54: "12"}, 54), ({40: ""}, 40), ({59: "01"}, 59), ({43: "X"}, 43), ({97: "yes"}, 97),
        ({44: "12,5"}, 44), ({38: "ten"}, 38), ({99: "1e3"}, 99), ({111: ""}, 111),
        ({202: "x"}, 202), ({201: "2"}, 201), ({52: "20261125-25:00:00"}, 52),
        ({60: "yesterday"}, 60), ({126: "20261131-00:00:00"}, 126), ({122: "x"}, 122),
    ],
)
def test_bad_typed_values_are_reported_with_their_tag(override, tag):
    msg = decode_order(ref_frame(b"FIX.4.4", nos_body(override)))
    assert msg.error == FieldErrorCode.BAD_VALUE
    assert msg.error_tag == tag
    assert msg.cl_ord_id == "ORD-1"    # still readable


def test_a_repeated_typed_tag_is_reported():
    frame = ref_frame(b"FIX.4.4", nos_body() + b"55=IBM\x01")
    msg = decode_order(frame)
    assert (msg.error, msg.error_tag) == (FieldErrorCode.DUPLICATE_TAG, 55)
    assert msg.symbol == "ESZ6"


def test_decode_order_passes_split_errors_through():
    msg = decode_order(b"8=FIX.4.4\x019=9\x0135=D\x01x=1\x0110=000\x01")
    assert msg.error == FieldErrorCode.TAG_NOT_NUMERIC
    assert msg.msg_type == "D"
    assert msg.cl_ord_id is None and msg.msg_seq_num is None


def test_order_message_can_be_reused():
    msg = decode_order(NOS)
    other = ref_frame(b"FIX.4.2", b"35=F\x0134=5\x0141=A\x0111=B\x01")
    assert msg.parse(other) is True
    assert (msg.msg_type, msg.msg_seq_num, msg.cl_ord_id, msg.symbol, msg.price) == ("F", 5, "B", None, None)


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------

def test_generic_encoder_computes_body_length_and_checksum():
    data = encode_message("FIX.4.4", "A", [(34, 1), (49, "ME"), (52, b"20261125-08:15:00"), (56, "YOU")],
                          [(98, 0), (108, 30), (141, True), (553, "user")])
    body = b"35=A\x0134=1\x0149=ME\x0152=20261125-08:15:00\x0156=YOU\x0198=0\x01108=30\x01141=Y\x01553=user\x01"
    assert data == ref_frame(b"FIX.4.4", body)
    assert find_frame(data).status == FrameStatus.COMPLETE


def test_encoder_value_types():
    data = encode_message(b"FIXT.1.1", b"8", [], [(44, Decimal("1.50")), (38, -7), (43, False), (58, "é")])
    assert split_fields(data).pairs()[2:-1] == [(35, b"8"), (44, b"1.50"), (38, b"-7"), (43, b"N"),
                                                 (58, "é".encode())]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(body=[(44, 1.5)]), TypeError, "tag 44"),
        (dict(body=[(58, "a\x01b")]), ValueError, "SOH"),
        (dict(body=[(58, "")]), ValueError, "empty"),
        (dict(body=[(10, "000")]), ValueError, "placed by the encoder"),
        (dict(header=[(9, 5)]), ValueError, "placed by the encoder"),
        (dict(body=[(0, "x")]), ValueError, "valid FIX tag"),
        (dict(body=[("55", "x")]), TypeError, "not an int"),
        (dict(body=[(55,)]), TypeError, "pairs"),
        (dict(body=[(96, b"a\x01b")]), ValueError, "SOH"),
        (dict(body=[(95, 2), (96, b"a\x01b")]), ValueError, "length tag 95 says 2"),
        (dict(begin_string="HTTP/1.1"), ValueError, "BeginString"),
        (dict(begin_string=44), TypeError, "begin_string"),
        (dict(msg_type=""), ValueError, "empty"),
    ],
)
def test_encoder_refuses_what_cannot_go_on_the_wire(kwargs, error, match):
    args = dict(begin_string="FIX.4.4", msg_type="0", header=[], body=[])
    args.update(kwargs)
    with pytest.raises(error, match=match):
        encode_message(**args)


def test_data_fields_with_soh_encode_after_their_length():
    raw = b"<x a='1'>\x01</x>"
    data = MessageEncoder().encode("FIX.4.4", "B", [], [(212, len(raw)), (213, raw), (58, "t")])
    assert split_fields(data).get(213) == raw


def test_encoder_buffer_grows_and_is_reused():
    enc = MessageEncoder(initial_capacity=16)
    big = enc.encode("FIX.4.4", "B", [], [(58, "x" * 100_000)])
    small = enc.encode("FIX.4.4", "0", [], [(34, 2)])
    assert find_frame(big).status == find_frame(small).status == FrameStatus.COMPLETE
    assert small == ref_frame(b"FIX.4.4", b"35=0\x0134=2\x01")


@st.composite
def messages(draw):
    begin = draw(st.sampled_from(["FIX.4.2", "FIX.4.4", "FIXT.1.1"]))
    msg_type = draw(st.sampled_from(["D", "F", "G", "8", "0", "AE", "U1"]))
    header = draw(st.lists(st.tuples(st.sampled_from([34, 49, 52, 56, 43, 115, 122]),
                                     printable_values()), max_size=6))
    body = []
    for _ in range(draw(st.integers(0, 25))):
        if draw(st.integers(0, 9)) == 0:
            length_tag, data_tag = draw(st.sampled_from(sorted(DATA_FIELDS.items())))
            raw = draw(st.binary(min_size=1, max_size=30))
            body += [(length_tag, len(raw)), (data_tag, raw)]
        else:
            tag = draw(st.integers(1, 99999).filter(
                lambda t: t not in (8, 9, 10, 35) and t not in DATA_FIELDS and t not in DATA_FIELDS.values()))
            body.append((tag, draw(st.one_of(printable_values(), st.integers(-10**12, 10**12)))))
    return begin, msg_type, header, body


def as_bytes(value):
    return str(value).encode() if isinstance(value, int) else value


@HYPOTHESIS
@given(st.lists(messages(), min_size=1, max_size=5), st.integers(1, 64))
def test_round_trip_encode_frame_split(msgs, chunk):
    encoded = [encode_message(*m) for m in msgs]
    stream = b"".join(encoded)
    reader = FrameReader()
    frames = []
    for i in range(0, len(stream), chunk):
        reader.feed(stream[i:i + chunk])
        frames += list(reader)
    assert frames == encoded
    for (begin, msg_type, header, body), frame in zip(msgs, frames):
        pairs = split_fields(frame).pairs()
        assert pairs[0] == (8, begin.encode())
        assert pairs[1] == (9, str(len(frame) - frame.index(b"35=") - 7).encode())
        assert pairs[2] == (35, msg_type.encode())
        assert pairs[3:-1] == [(t, as_bytes(v)) for t, v in header + body]
        assert pairs[-1] == (10, b"%03d" % ref_checksum(frame[:-7]))


# ---------------------------------------------------------------------------------------------
# ExecutionReportEncoder
# ---------------------------------------------------------------------------------------------

T0 = parse_utc_timestamp("20261125-08:15:00.123456")


def fill(enc, **overrides):
    args = dict(order_id="X-1", exec_id="E-1", exec_type="F", ord_status="2", symbol="ESZ6",
                side="1", leaves_qty=0, cum_qty=10, avg_px=451225, cl_ord_id="ORD-1",
                order_qty=10, price=451225, last_qty=10, last_px=451225, account="ACC-7",
                transact_time_ns=T0)
    args.update(overrides)
    return enc.encode(7, T0, **args)


def test_execution_report_fix44():
    enc = ExecutionReportEncoder("FIX.4.4", "CROSSBOOK", "CLIENT01", price_scale=2)
    data = fill(enc, text="filled", last_mkt="XCME", ord_type="2", time_in_force="0", currency="USD",
                security_type="FUT", ex_destination="XCME", orig_cl_ord_id="ORD-0", exec_ref_id="E-0",
                stop_px=451200, ord_rej_reason=None, extra=[(851, 1)])
    assert find_frame(data).status == FrameStatus.COMPLETE
    assert split_fields(data).pairs()[2:-1] == [
        (35, b"8"), (34, b"7"), (49, b"CROSSBOOK"), (52, b"20261125-08:15:00.123"), (56, b"CLIENT01"),
        (37, b"X-1"), (11, b"ORD-1"), (41, b"ORD-0"), (17, b"E-1"), (19, b"E-0"), (150, b"F"),
        (39, b"2"), (1, b"ACC-7"), (55, b"ESZ6"), (167, b"FUT"), (54, b"1"), (38, b"10"),
        (40, b"2"), (44, b"4512.25"), (99, b"4512"), (59, b"0"), (15, b"USD"), (100, b"XCME"),
        (32, b"10"), (31, b"4512.25"), (30, b"XCME"), (151, b"0"), (14, b"10"), (6, b"4512.25"),
        (60, b"20261125-08:15:00.123"), (58, b"filled"), (851, b"1"),
    ]
    with pytest.raises(ValueError, match="ExecTransType"):
        fill(enc, exec_trans_type="0")


def test_execution_report_fix42_has_exec_trans_type_and_optional_header():
    enc = ExecutionReportEncoder("FIX.4.2", "CROSSBOOK", "CLIENT01", sender_sub_id="S", target_sub_id="T",
                                 on_behalf_of_comp_id="OBO", deliver_to_comp_id="DTC", timestamp_precision=6)
    data = fill(enc, price=None, last_px=None, avg_px="0", ord_rej_reason=3, exec_type="8", ord_status="8",
                poss_dup=True, poss_resend=True, orig_sending_time_ns=T0 - 10**9)
    fields = split_fields(data)
    assert fields.tags()[:17] == [8, 9, 35, 34, 49, 50, 52, 56, 57, 115, 128, 43, 97, 122, 37, 11, 17]
    assert fields.get(20) == b"0" and fields.get(103) == b"3"
    assert fields.get(52) == b"20261125-08:15:00.123456"
    assert fields.get(122) == b"20261125-08:14:59.123456"
    assert fields.get(43) == b"Y" and fields.get(97) == b"Y"
    assert 44 not in fields and 31 not in fields
    assert fill(enc, exec_trans_type="3").count(b"\x0120=3\x01") == 1


@pytest.mark.parametrize(
    "value, scale, text",
    [(12345, 2, b"123.45"), (12300, 2, b"123"), (12340, 2, b"123.4"), (-5, 4, b"-0.0005"),
     (0, 4, b"0"), (-9223372036854775808, 2, b"-92233720368547758.08"),
     (9223372036854775807, 18, b"9.223372036854775807"), (7, 0, b"7"),
     ("12.50", 2, b"12.50"), (b"-3", 2, b"-3"), (Decimal("1E+2"), 2, b"100")],
)
def test_fixed_point_prices_are_formatted_exactly(value, scale, text):
    enc = ExecutionReportEncoder("FIX.4.4", "A", "B", price_scale=scale)
    assert split_fields(fill(enc, price=value)).get(44) == text


def test_quantities_use_their_own_scale():
    enc = ExecutionReportEncoder("FIX.4.4", "A", "B", price_scale=2, qty_scale=3)
    fields = split_fields(fill(enc, order_qty=1500, cum_qty=250, leaves_qty=1250))
    assert (fields.get(38), fields.get(14), fields.get(151)) == (b"1.5", b"0.25", b"1.25")


@pytest.mark.parametrize(
    "overrides, error, match",
    [
        (dict(price=1.5), TypeError, "tag 44"),
        (dict(price="1.2.3"), ValueError, "tag 44"),
        (dict(symbol="A\x01B"), ValueError, "tag 55"),
        (dict(text=""), ValueError, "tag 58"),
        (dict(poss_dup=True), ValueError, "orig_sending_time_ns"),
        (dict(transact_time_ns=-1), ValueError, "before 1970"),
        (dict(order_id=None), TypeError, "tag 37"),
    ],
)
def test_execution_report_refuses_bad_values(overrides, error, match):
    enc = ExecutionReportEncoder("FIX.4.4", "A", "B", price_scale=2)
    with pytest.raises(error, match=match):
        fill(enc, **overrides)


def test_execution_report_encoder_arguments_are_checked():
    with pytest.raises(ValueError, match="BeginString"):
        ExecutionReportEncoder("4.4", "A", "B")
    with pytest.raises(ValueError, match="sender_comp_id"):
        ExecutionReportEncoder("FIX.4.4", "", "B")
    with pytest.raises(ValueError, match="price_scale"):
        ExecutionReportEncoder("FIX.4.4", "A", "B", price_scale=19)
    with pytest.raises(ValueError, match="precision"):
        ExecutionReportEncoder("FIX.4.4", "A", "B", timestamp_precision=2)
    enc = ExecutionReportEncoder("FIX.4.4", "A", "B")
    with pytest.raises(ValueError, match="msg_seq_num"):
        enc.encode(0, T0, order_id="1", exec_id="1", exec_type="0", ord_status="0", symbol="S",
                   side="1", leaves_qty=1, cum_qty=0, avg_px=0)


def test_execution_report_decodes_back():
    enc = ExecutionReportEncoder("FIX.4.4", "CROSSBOOK", "CLIENT01", price_scale=2)
    msg = decode_order(fill(enc))
    assert msg.ok
    assert (msg.msg_type, msg.msg_seq_num, msg.sending_time_ns) == ("8", 7, T0 - T0 % 10**6)
    assert (msg.cl_ord_id, msg.order_id, msg.price_ticks(1, 2)) == ("ORD-1", "X-1", 451225)


def test_fields_repr_shows_pairs_and_errors():
    assert "35=D" in repr(split_fields(NOS))
    assert "error" in repr(split_fields(b"x=1\x01"))
