"""Fuzzing the framer and the session with mutated valid traffic: no exception escapes,
memory stays bounded, every byte is accounted for, and a session is never stuck."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from crossbook.fix.framing import Frame, FrameReader, Garbled, iter_frames
from crossbook.fix.session import DisconnectRequested, Session, TestClock
from crossbook.fix.store import MemoryStore

from fix_sessionkit import Peer, settings

FUZZ = hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def base_stream(clock: TestClock) -> tuple[bytes, bytes]:
    peer = Peer(clock)
    logon = peer.logon(hb=10)
    msgs = [
        peer.build(b"0"),
        peer.build(b"1", [(112, b"PING")]),
        peer.build(b"D", [(11, b"ID1"), (21, b"1"), (38, b"100"), (40, b"2"), (44, b"10.5"), (54, b"1"),
                          (55, b"ABC"), (60, b"20260101-00:00:00")]),
        peer.build(b"2", [(7, 1), (16, 0)]),
        peer.build(b"4", [(36, 9), (123, b"Y")]),
        peer.build(b"D", [(11, b"ID2"), (21, b"1"), (38, b"5"), (40, b"1"), (54, b"2"), (55, b"X"),
                          (60, b"20260101-00:00:00"), (386, 1), (336, b"S1")]),
        peer.build(b"F", [(11, b"ID3"), (41, b"ID2"), (54, b"2"), (55, b"X"), (60, b"20260101-00:00:00")]),
        peer.build(b"3", [(45, 2)]),
        peer.build(b"0", seq=3),
        peer.build(b"5", [(58, b"bye")]),
    ]
    return logon, b"".join(msgs)


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 40)),
    st.tuples(st.just("dup"), st.integers(0, 10_000), st.integers(1, 200)),
    st.tuples(st.just("tag"), st.integers(0, 10_000), st.sampled_from([b"9=99999999", b"35=", b"34=-5", b"=x",
                                                                         b"10=abc", b"8=FIX.4.4", b"34=999999",
                                                                         b"52=garbage", b"\x01\x01", b"x=1"])),
)


def mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op in ops:
        if not buf:
            break
        kind, pos = op[0], op[1] % len(buf)
        if kind == "flip":
            buf[pos] = op[2]
        elif kind in ("insert", "tag"):
            buf[pos:pos] = op[2]
        elif kind == "delete":
            del buf[pos:pos + op[2]]
        elif kind == "dup":
            buf[pos:pos] = buf[pos:pos + op[2]]
    return bytes(buf)


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in points + [len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


@FUZZ
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=20),
       max_body=st.sampled_from([64, 512, 1 << 20]))
def test_framer_accounts_for_every_byte_and_stays_bounded(data, cuts, max_body):
    reader = FrameReader(max_body_length=max_body)
    seen = bytearray()
    for part in chunks(data, cuts):
        reader.feed(part)
        for event in reader:
            seen += event.raw if isinstance(event, Frame) else event.skipped
            assert isinstance(event, (Frame, Garbled))
        assert reader.buffered <= 2 * max_body + 128  # drained: at most one partial frame
    tail = bytes(reader._buf)
    assert bytes(seen) + tail == data


@FUZZ
@given(ops=st.lists(mutation, max_size=8), cuts=st.lists(st.integers(0, 3000), max_size=12))
def test_framer_on_mutated_valid_traffic(ops, cuts):
    clock = TestClock()
    logon, stream = base_stream(clock)
    data = mutate(logon + stream, ops)
    reader = FrameReader()
    frames = []
    for part in chunks(data, cuts):
        reader.feed(part)
        frames += [e for e in reader if isinstance(e, Frame)]
    assert frames == [e for e in iter_frames(data) if isinstance(e, Frame)]  # chunking never changes the result


@FUZZ
@given(ops=st.lists(mutation, max_size=8), cuts=st.lists(st.integers(0, 3000), max_size=12),
       use_dictionary=st.booleans())
def test_session_survives_mutated_traffic_and_is_never_stuck(ops, cuts, use_dictionary):
    clock = TestClock()
    logon, stream = base_stream(clock)
    session = Session(settings(), store=MemoryStore(clock.now()), clock=clock,
                      validator="dictionary" if use_dictionary else None)
    session.on_connected()
    session.receive(logon)
    output = bytearray(session.data_to_send())
    for part in chunks(mutate(stream, ops), cuts):
        session.receive(part)
        output += session.data_to_send()
        clock.advance(0.01)
    # Everything we sent is a well-formed frame.
    assert all(isinstance(e, Frame) for e in iter_frames(bytes(output)))
    assert len(session._queue) <= 10_000
    # Never stuck: with the peer silent, the session heartbeats, tests, then gives up.
    for _ in range(40):
        clock.advance(1.0)
        session.on_timer()
        session.data_to_send()
    assert not session.connected
    assert any(isinstance(e, DisconnectRequested) for e in session.events())
