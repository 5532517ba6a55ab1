"""Fuzzing the framer and the session with mutated valid traffic: no exception escapes,
memory stays bounded, every byte is accounted for, and a session is never stuck."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from crossbook.fix.framing import Frame, FrameReader, Garbled, iter_frames
from crossbook.fix.session import DisconnectRequested, Session, TestClock
from crossbook.fix.store import MemoryStore

from fix_sessionkit import base_stream, chunks, mutate, mutation, settings

FUZZ = hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


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
