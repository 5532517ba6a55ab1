"""Message stores: MemoryStore and FileStore behave alike; FileStore survives kill -9."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from crossbook.fix.session import Session, TestClock
from crossbook.fix.store import FileStore, MemoryStore, store_name

from fix_sessionkit import Peer, out, settings


@pytest.fixture(params=["memory", "file"])
def store(request, tmp_path):
    if request.param == "memory":
        s = MemoryStore(5.0)
    else:
        s = FileStore(str(tmp_path), "FIX.4.4-A-B", now=5.0)
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


def test_file_store_survives_sigkill_and_answers_resend_after_restart(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    last = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            last = int(line)
            if last >= 300:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert last >= 300
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
