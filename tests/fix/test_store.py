"""Message stores: MemoryStore and FileStore behave alike; FileStore survives kill -9."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from crossbook.fix.session import Application, BusinessReject, Session, TestClock
from crossbook.fix.store import FileStore, MemoryStore, store_name

from fix_sessionkit import Peer, out, settings


@pytest.fixture(params=["memory", "file", "file-batch"])
def store(request, tmp_path):
    if request.param == "memory":
        s = MemoryStore(5.0)
    else:
        s = FileStore(str(tmp_path), "FIX.4.4-A-B", now=5.0, batch=request.param == "file-batch")
    yield s
    s.close()


def test_set_get_ranges(store):
    for seq in (1, 2, 3, 5, 8):
        store.set(seq, b"msg%d" % seq)
    assert store.get(2, 5) == [(2, b"msg2"), (3, b"msg3"), (5, b"msg5")]
    assert store.get(6, 7) == []
    assert store.get(5, 1) == []
    assert [s for s, _ in store.get(1, 100)] == [1, 2, 3, 5, 8]


def test_sequence_numbers_and_reset(store):
    assert (store.get_next_sender_seq(), store.get_next_target_seq()) == (1, 1)
    store.incr_next_sender_seq()
    store.incr_next_sender_seq()
    store.set_next_target_seq(40)
    store.incr_next_target_seq()
    assert (store.get_next_sender_seq(), store.get_next_target_seq()) == (3, 41)
    assert store.creation_time() == 5.0
    store.set(1, b"x")
    store.reset(9.0)
    assert (store.get_next_sender_seq(), store.get_next_target_seq()) == (1, 1)
    assert store.get(1, 10) == [] and store.creation_time() == 9.0


def test_bad_sequence_numbers_are_refused(store):
    for bad in (0, -1, "3", 1.5, True):
        with pytest.raises(ValueError):
            store.set(bad, b"x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        store.set_next_sender_seq(0)


def test_file_store_reopens_with_everything(tmp_path):
    s = FileStore(str(tmp_path), "n", now=1.0)
    for seq in range(1, 51):
        s.set(seq, b"m" * seq)
        s.incr_next_sender_seq()
    s.set_next_target_seq(17)
    s.close()
    s = FileStore(str(tmp_path), "n", now=99.0)
    assert s.get_next_sender_seq() == 51 and s.get_next_target_seq() == 17
    assert s.get(10, 12) == [(10, b"m" * 10), (11, b"m" * 11), (12, b"m" * 12)]
    assert s.creation_time() == 1.0
    s.close()


def test_file_store_recovers_from_torn_append(tmp_path):
    s = FileStore(str(tmp_path), "n", now=1.0)
    for seq in range(1, 6):
        s.set(seq, b"message-%d" % seq)
    s.close()
    body = tmp_path / "n.body"
    data = body.read_bytes()
    body.write_bytes(data[:-4])  # the last message's bytes only half written
    with open(tmp_path / "n.index", "ab") as f:
        f.write(b"\x01\x02\x03")  # and a partial index record
    s = FileStore(str(tmp_path), "n")
    assert [q for q, _ in s.get(1, 10)] == [1, 2, 3, 4]
    # Next sender seq is past every stored message even though seqnums was never advanced.
    assert s.get_next_sender_seq() == 5
    s.set(5, b"again")
    assert s.get(5, 5) == [(5, b"again")]
    s.close()


def test_file_store_rejects_unsafe_names(tmp_path):
    with pytest.raises(ValueError):
        FileStore(str(tmp_path), "../escape")
    assert store_name("FIX.4.4", "A/B", "C D") == "FIX.4.4-A_B-C_D"


_WRITER = textwrap.dedent("""
    import sys
    from crossbook.fix.session import Session, TestClock
    from crossbook.fix.settings import SessionSettings
    from crossbook.fix.store import FileStore
    clock = TestClock()
    store = FileStore(sys.argv[1], "FIX.4.4-ISLD-TW", now=clock.now())
    session = Session(SessionSettings(begin_string="FIX.4.4", sender_comp_id="ISLD", target_comp_id="TW"),
                      store=store, clock=clock, validator=None)
    for i in range(1, 10_000_000):
        session.send(b"8", [(11, b"ORD%d" % i)])
        print(session.next_sender_seq - 1, flush=True)
""")


def _sigkill_after(count: int, *python_args: str) -> int:
    """Run ``python <python_args>`` (a writer printing each sequence number it stored), SIGKILL it
    once it printed ``count``; the last number printed."""
    proc = subprocess.Popen([sys.executable, *python_args], stdout=subprocess.PIPE, text=True)
    last = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            last = int(line)
            if last >= count:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert last >= count
    return last


def test_file_store_survives_sigkill_and_answers_resend_after_restart(tmp_path):
    last = _sigkill_after(300, "-c", _WRITER, str(tmp_path))
    clock = TestClock()
    store = FileStore(str(tmp_path), "FIX.4.4-ISLD-TW", now=clock.now())
    resumed = store.get_next_sender_seq()
    assert resumed >= last + 1  # every acknowledged send survived, and the seqnum resumes past it
    session = Session(settings(), store=store, clock=clock, validator=None)
    session.on_connected()
    peer = Peer(clock)
    session.receive(peer.logon())
    [logon] = out(session)
    assert int(logon[34]) == resumed
    session.receive(peer.build(b"2", [(7, 1), (16, last)]))
    resent = out(session)
    assert [int(m[34]) for m in resent] == list(range(1, last + 1))
    assert all(m.msg_type == b"8" and m[43] == b"Y" and m[11] == b"ORD%d" % int(m[34]) for m in resent)
    store.close()


def _count_pwrites(monkeypatch) -> tuple[list[int], object, object]:
    """Make ``os.pwrite`` record the file descriptor of every call in a list (and write as
    usual). Returns the list, the counting pwrite and the real one, for a test to switch back
    (``monkeypatch.setattr(os, "pwrite", real)``) where writes are not its to count."""
    calls: list[int] = []
    real_pwrite = os.pwrite

    def counting_pwrite(fd, data, offset):
        calls.append(fd)
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", counting_pwrite)
    return calls, counting_pwrite, real_pwrite


def test_batched_file_store_writes_once_per_file_and_only_when_asked(tmp_path, monkeypatch):
    s = FileStore(str(tmp_path), "n", now=1.0, batch=True)
    calls, _, real_pwrite = _count_pwrites(monkeypatch)
    for seq in range(1, 21):
        s.set(seq, b"report-%d" % seq)
        s.incr_next_sender_seq()
        s.incr_next_target_seq()
    assert calls == []  # held in memory until write_pending()
    on_disk = FileStore(str(tmp_path), "n", now=1.0)
    assert on_disk.get_next_sender_seq() == 1 and on_disk.get(1, 20) == []
    on_disk.close()
    calls.clear()  # opening a store rewrites its sequence-number line: not ours to count
    s.write_pending()
    # One write each for the body, the index and the sequence numbers.
    assert sorted(calls) == sorted([s._body_fd, s._index_fd, s._seq_fd])
    s.write_pending()
    assert len(calls) == 3  # nothing pending: no writes
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    reopened = FileStore(str(tmp_path), "n", now=1.0)
    assert reopened.get_next_sender_seq() == 21 and reopened.get_next_target_seq() == 21
    assert reopened.get(1, 20) == [(q, b"report-%d" % q) for q in range(1, 21)]
    reopened.close()
    # get() sees pending messages (it writes them first); reset drops what is pending.
    s.set(21, b"late")
    assert s.get(21, 21) == [(21, b"late")]
    s.set(22, b"dropped")
    s.reset(2.0)
    s.close()
    reopened = FileStore(str(tmp_path), "n", now=3.0)
    assert reopened.get(1, 30) == [] and reopened.get_next_sender_seq() == 1
    reopened.close()
    with pytest.raises(ValueError, match="closed"):
        s.set(1, b"after close")  # refused at once, not at a later write_pending()
    with pytest.raises(ValueError, match="closed"):
        s.incr_next_target_seq()


def test_session_writes_a_batched_store_before_output_leaves_and_before_receive_returns(tmp_path):
    clock = TestClock()
    store = FileStore(str(tmp_path), "FIX.4.4-ISLD-TW", now=clock.now(), batch=True)
    session = Session(settings(), store=store, clock=clock, validator=None)
    session.on_connected()
    peer = Peer(clock)
    session.receive(peer.logon())
    # receive() returned: the inbound sequence number is on disk, though no output was taken yet.
    on_disk = FileStore(str(tmp_path), "FIX.4.4-ISLD-TW", now=clock.now())
    assert on_disk.get_next_target_seq() == 2
    on_disk.close()
    session.send(b"8", [(11, b"ORD1")])
    session.send(b"8", [(11, b"ORD2")])
    data = session.data_to_send()
    assert b"11=ORD2" in data
    on_disk = FileStore(str(tmp_path), "FIX.4.4-ISLD-TW", now=clock.now())
    assert on_disk.get_next_sender_seq() == 4  # logon response 1, reports 2 and 3
    assert data.endswith(b"".join(raw for _, raw in on_disk.get(2, 3)))  # the bytes that left
    on_disk.close()
    session.on_disconnected()
    # Not connected: a stored message is written at once (nothing would write it later).
    session.send(b"8", [(11, b"ORD3")])
    on_disk = FileStore(str(tmp_path), "FIX.4.4-ISLD-TW", now=clock.now())
    assert on_disk.get_next_sender_seq() == 5 and b"11=ORD3" in on_disk.get(4, 4)[0][1]
    on_disk.close()
    store.close()


_BATCH_WRITER = textwrap.dedent("""
    import sys
    from crossbook.fix.session import Session, TestClock
    from crossbook.fix.settings import SessionSettings
    from crossbook.fix.store import FileStore
    sys.path.insert(0, sys.argv[2])
    from fix_sessionkit import Peer
    clock = TestClock()
    store = FileStore(sys.argv[1], "FIX.4.4-ISLD-TW", now=clock.now(), batch=True)
    session = Session(SessionSettings(begin_string="FIX.4.4", sender_comp_id="ISLD", target_comp_id="TW"),
                      store=store, clock=clock, validator=None)
    session.on_connected()
    session.receive(Peer(clock).logon())
    session.data_to_send()
    for i in range(1, 10_000_000):
        for j in range(3):   # several reports per flush, as the OMS sends them
            session.send(b"8", [(11, b"ORD%d" % (3 * i + j))])
        session.data_to_send()   # what a transport writes to the socket: stored first
        print(session.next_sender_seq - 1, flush=True)
""")


def test_batched_file_store_survives_sigkill_after_output_left(tmp_path):
    kit = os.path.dirname(os.path.abspath(__file__))
    last = _sigkill_after(300, "-c", _BATCH_WRITER, str(tmp_path), kit)
    store = FileStore(str(tmp_path), "FIX.4.4-ISLD-TW", now=0.0)
    assert store.get_next_sender_seq() >= last + 1
    assert store.get_next_target_seq() == 2
    stored = store.get(2, last)
    assert [q for q, _ in stored] == list(range(2, last + 1))  # every report that left is there
    assert all(b"35=8\x01" in raw for _, raw in stored)
    store.close()


def test_batched_store_skips_the_sequence_line_when_the_index_implies_it(tmp_path, monkeypatch):
    """Sending only (set n, then the sender number to n + 1): body and index are written, the
    sequence-number line is not, and a reopened store still resumes past every message. Any other
    change (target number, sender set by hand, a sender advance without a stored message) writes it."""
    s = FileStore(str(tmp_path), "n", now=1.0, batch=True)
    s.incr_next_target_seq()
    s.write_pending()
    calls, counting_pwrite, real_pwrite = _count_pwrites(monkeypatch)
    for seq in (1, 2, 3):
        s.set(seq, b"report-%d" % seq)
        s.incr_next_sender_seq()
    s.write_pending()
    assert sorted(calls) == sorted([s._body_fd, s._index_fd])
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    reopened = FileStore(str(tmp_path), "n", now=1.0)
    assert reopened.get_next_sender_seq() == 4 and reopened.get_next_target_seq() == 2
    reopened.close()

    monkeypatch.setattr(os, "pwrite", counting_pwrite)
    for change in (s.incr_next_target_seq, lambda: s.set_next_sender_seq(9), s.incr_next_sender_seq):
        calls.clear()
        change()
        s.write_pending()
        assert calls == [s._seq_fd], change
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    s.close()
    reopened = FileStore(str(tmp_path), "n", now=1.0)
    assert reopened.get_next_sender_seq() == 10 and reopened.get_next_target_seq() == 3
    assert reopened.get(1, 3) == [(q, b"report-%d" % q) for q in (1, 2, 3)]
    reopened.close()


@pytest.mark.parametrize("batch", [False, True])
def test_store_sent_is_set_then_incr_byte_for_byte(tmp_path, batch):
    """``store_sent`` (the session's one call per sent message) leaves the same files, numbers,
    pending writes and recovery as ``set`` + ``incr_next_sender_seq``, including a sender number
    moved by hand in between (the sequence line must then be written) and a bytearray value."""
    def steps(s, fused):
        for seq, raw in ((1, b"a" * 30), (2, b"bb"), (3, bytearray(b"ccc"))):
            s.store_sent(seq, raw) if fused else (s.set(seq, raw), s.incr_next_sender_seq())
        s.set_next_sender_seq(10)
        s.write_pending()
        for seq in (10, 11):
            s.store_sent(seq, b"x%d" % seq) if fused else (s.set(seq, b"x%d" % seq), s.incr_next_sender_seq())
        s.store_sent(5, b"old") if fused else (s.set(5, b"old"), s.incr_next_sender_seq())
        s.write_pending()

    seen = []
    for fused in (False, True):
        d = tmp_path / ("fused" if fused else "plain")
        s = FileStore(str(d), "S", now=5.0, batch=batch)
        steps(s, fused)
        state = (s.get_next_sender_seq(), s.get(1, 20))
        s.close()
        files = {p.name: p.read_bytes() for p in sorted(d.iterdir())}
        r = FileStore(str(d), "S", now=6.0, batch=batch)
        seen.append((state, files, r.get_next_sender_seq(), r.get(1, 20)))
        r.close()
    assert seen[0] == seen[1]
    assert seen[1][0][0] == 13
    mem = MemoryStore(5.0)
    mem.store_sent(1, b"m")
    assert (mem.get_next_sender_seq(), mem.get(1, 1)) == (2, [(1, b"m")])
    with pytest.raises(ValueError):
        FileStore(str(tmp_path / "bad"), "S", batch=batch).store_sent(0, b"z")


def test_journaled_target_number_waits_for_a_line_written_anyway_or_write_deferred(tmp_path, monkeypatch):
    """``incr_next_target_seq_journaled`` (a message the application journals itself): a batching
    store leaves it out of ``write_pending`` (no pwrite per read), writes it with any sequence line
    it writes anyway, and at ``write_deferred``, ``refresh``, ``flush`` and ``close``; an unbatched
    store writes it at once."""
    def on_disk_target(name: str) -> int:
        reopened = FileStore(str(tmp_path), name, now=1.0)
        try:
            return reopened.get_next_target_seq()
        finally:
            reopened.close()

    s = FileStore(str(tmp_path), "j", now=1.0, batch=True)
    calls, _, real_pwrite = _count_pwrites(monkeypatch)
    for _ in range(3):
        s.incr_next_target_seq_journaled()
        s.write_pending()
    assert calls == [] and s.get_next_target_seq() == 4 and on_disk_target("j") == 1
    calls.clear()   # (opening a store rewrites its line: not ours to count)
    s.write_deferred()
    assert calls == [s._seq_fd] and on_disk_target("j") == 4
    calls.clear()
    s.write_deferred()
    assert calls == []   # nothing deferred any more: no write
    # A line written for another reason carries the deferred number too.
    s.incr_next_target_seq_journaled()
    s.set_next_sender_seq(7)
    s.write_pending()
    assert on_disk_target("j") == 5
    for ender in (s.refresh, s.flush, s.close):
        s.incr_next_target_seq_journaled()
        expected = s.get_next_target_seq()
        ender()
        assert on_disk_target("j") == expected, ender
    assert on_disk_target("j") == 8
    # reset() drops a deferred number with everything else.
    s = FileStore(str(tmp_path), "j", now=1.0, batch=True)
    s.incr_next_target_seq_journaled()
    s.reset(2.0)
    s.write_deferred()
    assert on_disk_target("j") == 1
    s.close()
    monkeypatch.setattr(os, "pwrite", real_pwrite)

    plain = FileStore(str(tmp_path), "p", now=1.0)
    plain.incr_next_target_seq_journaled()
    assert on_disk_target("p") == 2
    plain.close()
    memory = MemoryStore()
    memory.incr_next_target_seq_journaled()
    memory.write_deferred()
    assert memory.get_next_target_seq() == 2


class _Journaling(Application):
    journals_inbound = True

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def from_app(self, session, message):
        self.received.append(message[11])


class _Refusing(_Journaling):
    def from_app(self, session, message):
        raise BusinessReject(0, "no")


@pytest.mark.parametrize("application", [Application, _Journaling, _Refusing])
def test_session_counts_journaled_messages_lazily_and_everything_else_at_once(tmp_path, application):
    """An application that journals its inbound mark (``journals_inbound``) has its messages
    counted with ``incr_next_target_seq_journaled``: not written when ``receive`` returns, but by
    the next timer tick or a disconnect. Admin messages, and an application message it refused
    (a BusinessMessageReject went out: nothing of it is in its journal), are written at once, as
    for any other application."""
    clock = TestClock()
    store = FileStore(str(tmp_path), "FIX.4.4-ISLD-TW", now=clock.now(), batch=True)
    app = application()
    session = Session(settings(), store=store, clock=clock, application=app, validator=None)
    session.on_connected()
    peer = Peer(clock)

    def on_disk() -> int:
        reopened = FileStore(str(tmp_path), "FIX.4.4-ISLD-TW", now=clock.now())
        try:
            return reopened.get_next_target_seq()
        finally:
            reopened.close()

    session.receive(peer.logon())
    session.data_to_send()
    assert on_disk() == 2
    session.receive(b"".join(peer.build(b"D", [(11, b"C%d" % i)]) for i in range(3)))
    session.data_to_send()
    assert session.next_target_seq == 5
    lazy = application is _Journaling
    assert on_disk() == (2 if lazy else 5)
    if lazy:
        assert app.received == [b"C0", b"C1", b"C2"]
    session.on_timer()
    assert on_disk() == 5
    session.receive(peer.build(b"D", [(11, b"C3")]))
    assert on_disk() == (5 if lazy else 6)
    session.receive(peer.build(b"0"))   # a Heartbeat: the application does not see it
    assert on_disk() == 7
    session.receive(peer.build(b"D", [(11, b"C4")]))
    session.on_disconnected()
    assert on_disk() == 8
    store.close()


def _frame(seq: int, text: bytes = b"x") -> bytes:
    from crossbook.fix.messages import encode
    return encode(b"FIX.4.4", b"8", [(34, seq), (49, b"S"), (52, b"20240101-00:00:00"), (56, b"T")], [(58, text)])


def test_framed_messages_are_indexed_lazily_and_recovered_from_the_body(tmp_path, monkeypatch):
    """``store_sent`` of FIX frames: ``write_pending`` writes the body only (one pwrite per flush);
    the index records follow with ``write_deferred`` / ``flush`` / ``close``, a ``set()``, or
    LAZY_INDEX_RECORDS held back. A store opened before they were written (a kill) indexes the
    frames from the body; bytes that are not a frame still get their record at once."""
    import crossbook.fix.store as store_module

    s = FileStore(str(tmp_path), "z", now=1.0, batch=True)
    calls, counting_pwrite, real_pwrite = _count_pwrites(monkeypatch)
    for seq in (1, 2, 3):
        s.store_sent(seq, _frame(seq))
        s.write_pending()
    assert calls == [s._body_fd] * 3
    assert os.path.getsize(tmp_path / "z.index") == 0
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    # What a kill now leaves: the reopened store finds all three in the body, and indexes them.
    killed = FileStore(str(tmp_path), "z", now=1.0)
    assert killed.get(1, 9) == [(q, _frame(q)) for q in (1, 2, 3)] and killed.get_next_sender_seq() == 4
    killed.close()
    assert os.path.getsize(tmp_path / "z.index") == 3 * 24
    monkeypatch.setattr(os, "pwrite", counting_pwrite)
    calls.clear()
    s.store_sent(4, _frame(4))
    s.write_deferred()
    assert calls == [s._body_fd, s._index_fd]
    calls.clear()
    s.store_sent(5, b"not a frame")       # recovery could not index it from the body
    s.write_pending()
    assert calls == [s._body_fd, s._index_fd]
    calls.clear()
    s.store_sent(6, _frame(6))
    s.set(7, _frame(7))                   # set(): written with its record, and those before it
    s.incr_next_sender_seq()
    s.write_pending()
    assert calls == [s._body_fd, s._index_fd]
    calls.clear()
    monkeypatch.setattr(store_module, "LAZY_INDEX_RECORDS", 3)
    for seq in (8, 9, 10):
        s.store_sent(seq, _frame(seq))
        s.write_pending()
    assert calls == [s._body_fd, s._body_fd, s._body_fd, s._index_fd]
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    s.store_sent(11, _frame(11))
    s.close()
    reopened = FileStore(str(tmp_path), "z", now=1.0)
    expected = [(q, _frame(q)) for q in range(1, 12)]
    expected[4] = (5, b"not a frame")
    assert reopened.get(1, 20) == expected and reopened.get_next_sender_seq() == 12
    reopened.close()
    assert os.path.getsize(tmp_path / "z.index") == 11 * 24


@pytest.mark.parametrize("tail", [b"8=FIX.4.4\x019=", b"junk", b"8=FIX.4.4\x019=5\x0135=0\x0110=000\x01"])
def test_recovery_indexes_whole_frames_and_truncates_a_torn_tail(tmp_path, tail):
    """After the last indexed message: whole frames are indexed; a torn frame, junk, or a frame
    whose CheckSum is wrong (the last case) ends the scan and is cut off with what follows."""
    s = FileStore(str(tmp_path), "t", now=1.0, batch=True)
    s.set(1, b"indexed")
    s.incr_next_sender_seq()
    for seq in (2, 3):
        s.store_sent(seq, _frame(seq, b"y" * seq))
    s.write_pending()
    with open(tmp_path / "t.body", "ab") as f:
        f.write(tail + _frame(4))
    for fd in (s._body_fd, s._index_fd, s._seq_fd):   # abandoned as by a kill: nothing more written
        os.close(fd)
    s._body_fd = s._index_fd = s._seq_fd = -1
    reopened = FileStore(str(tmp_path), "t", now=1.0)
    assert reopened.get(1, 9) == [(1, b"indexed"), (2, _frame(2, b"yy")), (3, _frame(3, b"yyy"))]
    assert reopened.get_next_sender_seq() == 4
    reopened.close()
    assert os.path.getsize(tmp_path / "t.body") == len(b"indexed") + len(_frame(2, b"yy")) + len(_frame(3, b"yyy"))
