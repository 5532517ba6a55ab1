"""Helpers for sans-IO session tests: a peer that writes messages and reads our answers."""
from __future__ import annotations

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
