"""FileStore.reset() killed at any point: the reopened store is either the old numbering whole
(old creation time, old sequence numbers) or the new one whole (new creation time, 1 and 1, no
messages), never numbers at 1 under the old creation time, which a restart would take for the
old numbering (``Server._rewind_inbound`` moves it to the journal's old mark)."""
from __future__ import annotations

import os

import pytest

from crossbook.fix.messages import encode
from crossbook.fix.store import FileStore

_MUTATING = ("ftruncate", "pwrite", "replace", "fsync")


class _Killed(BaseException):
    """The process dies here: nothing after it runs (not an Exception, so nothing catches it)."""


def _frame(seq: int) -> bytes:
    return encode(b"FIX.4.4", b"8", [(34, seq), (49, b"S"), (52, b"20240101-00:00:00"), (56, b"T")], [(58, b"x")])


def _old_numbering(directory: str, fsync: bool) -> FileStore:
    s = FileStore(directory, "FIRM1", now=100.0, batch=True, fsync=fsync)
    for seq in (1, 2, 3):
        s.store_sent(seq, _frame(seq))
    s.set_next_target_seq(42)
    s.write_deferred()
    return s


def _abandon(store: FileStore) -> None:
    for fd in (store._body_fd, store._index_fd, store._seq_fd):
        if fd >= 0:
            os.close(fd)
    store._body_fd = store._index_fd = store._seq_fd = -1


def _kill_at(monkeypatch, kill_at: int) -> list[str]:
    """Make the ``kill_at``-th file-changing call (0-based) raise _Killed before it runs."""
    calls: list[str] = []
    for name in _MUTATING:
        real = getattr(os, name)

        def wrapper(*args, _real=real, _name=name):
            if len(calls) == kill_at:
                raise _Killed(_name)
            calls.append(_name)
            return _real(*args)

        monkeypatch.setattr(os, name, wrapper)
    return calls


@pytest.mark.parametrize("fsync", [False, True], ids=["nosync", "fsync"])
def test_a_reset_killed_anywhere_is_all_old_or_all_new(tmp_path, monkeypatch, fsync):
    outcomes = []
    for kill_at in range(64):
        directory = str(tmp_path / str(kill_at))
        s = _old_numbering(directory, fsync)
        calls = _kill_at(monkeypatch, kill_at)
        try:
            s.reset(200.0)
            finished = True
        except _Killed:
            finished = False
        monkeypatch.undo()
        _abandon(s)
        r = FileStore(directory, "FIRM1", now=300.0, batch=True)
        state = (r.creation_time(), r.get_next_sender_seq(), r.get_next_target_seq())
        messages = [q for q, _ in r.get(1, 99)]
        r.close()
        if state[0] == 100.0:
            assert not finished
            # The reset did not happen: the old numbering (messages may be gone, numbers not).
            assert state[1:] == (4, 42), f"killed at call {kill_at} ({calls}): {state}"
            assert messages in ([1, 2, 3], []), f"killed at call {kill_at}: {messages}"
        else:
            assert state == (200.0, 1, 1) and messages == [], f"killed at call {kill_at} ({calls}): {state} {messages}"
        outcomes.append(state[0])
        if finished:
            break
    else:
        pytest.fail("reset() never finished")
    assert outcomes[0] == 100.0 and outcomes[-1] == 200.0


def test_a_finished_reset_reopens_new_and_keeps_working(tmp_path):
    s = _old_numbering(str(tmp_path), False)
    s.reset(200.0)
    s.store_sent(1, _frame(1))
    s.close()
    r = FileStore(str(tmp_path), "FIRM1", now=300.0)
    assert (r.creation_time(), r.get_next_sender_seq(), r.get_next_target_seq()) == (200.0, 2, 1)
    assert r.get(1, 9) == [(1, _frame(1))]
    r.close()
    assert (tmp_path / "FIRM1.session").read_bytes() == b"200.0"
