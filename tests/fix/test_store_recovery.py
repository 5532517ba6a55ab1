"""FileStore recovery of framed messages whose index records were held back (``store_sent`` in a
batching store): recovery needs only the frame boundaries (BodyLength, CheckSum) and the MsgSeqNum
of each frame, never a full split, and only a torn append at the very end is cut off."""
from __future__ import annotations

import os

import pytest

from crossbook.fix.messages import encode
from crossbook.fix.store import FileStore


def _frame(seq: int, body: list | None = None) -> bytes:
    return encode(b"FIX.4.4", b"8", [(34, seq), (49, b"S"), (52, b"20240101-00:00:00"), (56, b"T")],
                  body if body is not None else [(58, b"x")])


def _abandon(store: FileStore) -> None:
    """What kill -9 leaves: nothing more is written (no index records, no sequence line)."""
    for fd in (store._body_fd, store._index_fd, store._seq_fd):
        os.close(fd)
    store._body_fd = store._index_fd = store._seq_fd = -1


def _held_back(tmp_path, sent: dict[int, bytes]) -> FileStore:
    s = FileStore(str(tmp_path), "t", now=1.0, batch=True)
    for seq, raw in sent.items():
        s.store_sent(seq, raw)
        s.write_pending()            # the body reaches the kernel; the transport then sends it
    assert os.path.getsize(tmp_path / "t.index") == 0   # every record held back
    return s


@pytest.mark.parametrize("tail", [b"8", b"8=", b"8=FI", b"\n", b"\x01"])
@pytest.mark.parametrize("held_back", [False, True], ids=["indexed", "held-back"])
def test_short_torn_tail_is_cut_at_open(tmp_path, tail, held_back):
    """1-4 stray bytes after the last message (a torn append): FileStore() raised ValueError
    (find_frame's max_body_length below 5), so the server could not start; they are cut off."""
    sent = {1: _frame(1), 2: _frame(2)}
    s = _held_back(tmp_path, sent)
    if held_back:
        _abandon(s)
    else:
        s.close()
    with open(tmp_path / "t.body", "ab") as f:
        f.write(tail)
    r = FileStore(str(tmp_path), "t", now=1.0)
    assert r.get(1, 9) == sorted(sent.items()) and r.get_next_sender_seq() == 3
    r.close()
    assert os.path.getsize(tmp_path / "t.body") == len(sent[1]) + len(sent[2])


def test_only_the_empty_tail_after_an_empty_body(tmp_path):
    with open(tmp_path / "t.body", "wb") as f:
        f.write(b"8=F")
    r = FileStore(str(tmp_path), "t", now=1.0)
    assert r.get(1, 9) == [] and r.get_next_sender_seq() == 1
    r.close()
    assert os.path.getsize(tmp_path / "t.body") == 0
