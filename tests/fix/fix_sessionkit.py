"""Helpers for sans-IO session tests: a peer that writes messages and reads our answers."""
from __future__ import annotations

import asyncio

from hypothesis import strategies as st

from crossbook.fix.framing import Frame, iter_frames
from crossbook.fix.messages import Message, encode, format_timestamp
from crossbook.fix.session import Application, Session, TestClock
from crossbook.fix.settings import SessionSettings
from crossbook.fix.store import MemoryStore


class Peer:
    """The counterparty: builds messages with its own sequence numbers."""

    def __init__(self, clock: TestClock, begin: str = "FIX.4.4", sender: str = "TW", target: str = "ISLD") -> None:
        self.clock = clock
        self.begin = begin.encode()
        self.sender = sender.encode()
        self.target = target.encode()
        self.seq = 1

    def build(self, msg_type: bytes, body=(), seq: int | None = None, header=(), sending_time: float | None = None,
              millis: bool = False) -> bytes:
        if seq is None:
            seq = self.seq
            self.seq += 1
        t = self.clock.now() if sending_time is None else sending_time
        head = [(34, seq), (49, self.sender), (52, format_timestamp(t, millis)), (56, self.target), *header]
        return encode(self.begin, msg_type, head, list(body))

    def logon(self, hb: int = 30, extra=(), seq: int | None = None) -> bytes:
        body = [(98, b"0"), (108, hb), *extra]
        if self.begin == b"FIXT.1.1" and not any(t == 1137 for t, _ in extra):
            body.append((1137, b"9"))
        return self.build(b"A", sorted(body), seq=seq)


def settings(**kw) -> SessionSettings:
    base = dict(begin_string="FIX.4.4", sender_comp_id="ISLD", target_comp_id="TW")
    base.update(kw)
    return SessionSettings(**base)


class Recorder(Application):
    def __init__(self) -> None:
        self.received: list[Message] = []
        self.logons = 0
        self.logouts = 0

    def on_logon(self, session):
        self.logons += 1

    def on_logout(self, session):
        self.logouts += 1

    def from_app(self, session, message):
        self.received.append(message)


def make(validator=None, **kw):
    clock = TestClock()
    app = Recorder()
    store = MemoryStore(clock.now())
    s = Session(settings(**kw), store=store, clock=clock, application=app, validator=validator)
    s.on_connected()
    return s, Peer(clock, begin=kw.get("begin_string", "FIX.4.4")), clock, app


def out(session: Session) -> list[Message]:
    """Our answers, parsed (every one must be a well-formed frame)."""
    events = iter_frames(session.data_to_send())
    assert all(isinstance(e, Frame) for e in events), events
    return [Message(e.fields, e.raw) for e in events]


def logged_on(**kw):
    s, peer, clock, app = make(**kw)
    s.receive(peer.logon())
    [reply] = out(s)
    assert reply.msg_type == b"A"
    s.events()
    return s, peer, clock, app


# -- fuzzing helpers: valid traffic and byte-level mutations of it
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


# -- transport tests: applications and waiting
class Collect(Application):
    def __init__(self) -> None:
        self.messages: list[tuple[str, Message]] = []
        self.logons = 0
        self.logouts = 0

    def on_logon(self, session: Session) -> None:
        self.logons += 1

    def on_logout(self, session: Session) -> None:
        self.logouts += 1

    def from_app(self, session: Session, message: Message) -> None:
        self.messages.append((session.settings.target_comp_id, message))


class ExecutingVenue(Collect):
    """Answers every NewOrderSingle with an ExecutionReport on the same session."""

    def from_app(self, session: Session, message: Message) -> None:
        super().from_app(session, message)
        session.send(b"8", [(11, message[11]), (17, b"E1"), (37, b"O1"), (39, b"0"), (150, b"0"), (54, b"1"),
                            (55, message[55]), (14, b"0"), (151, b"100"), (6, b"0")])


async def until(predicate, timeout: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


ORDER = [(11, b"C1"), (21, b"1"), (38, b"100"), (40, b"1"), (54, b"1"), (55, b"ABC"), (60, b"20260101-00:00:00")]
