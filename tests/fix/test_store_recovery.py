"""FileStore recovery of framed messages whose index records were held back (``store_sent`` in a
batching store): recovery needs only the frame boundaries (BodyLength, CheckSum) and the MsgSeqNum
of each frame, never a full split, and only a torn append at the very end is cut off."""
from __future__ import annotations

import os
import random

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


# Frames that encode() and Session.send accept, with a correct BodyLength and CheckSum, that the
# splitter refuses or reads differently: recovery must keep each of them and what follows.
_AWKWARD_BODIES = {
    "soh-in-text": [(58, b"venue said: a\x01b")],
    "frame-inside-text": [(58, b"8=FIX.4.4\x019=5\x0135=0\x0110=000\x01")],
    "checksum-field-in-text": [(58, b"a\x0110=000\x01b")],
    "msgseqnum-in-text": [(58, b"a\x0134=1\x01")],
    "data-length-too-short": [(354, b"3"), (355, b"a\x01b\x01c"), (58, b"t")],
    "data-length-too-long": [(95, b"40"), (96, b"\x0110=123\x01"), (58, b"t")],
    "data-with-a-frame": [(95, b"26"), (96, b"8=FIX.4.4\x019=5\x0135=0\x0110=000\x01")],
    "repeated-tag": [(58, b"a"), (58, b"b")],
}


@pytest.mark.parametrize("body", list(_AWKWARD_BODIES.values()), ids=list(_AWKWARD_BODIES))
def test_held_back_frames_after_an_unsplittable_one_survive_a_kill(tmp_path, body):
    sent = {1: _frame(1), 2: _frame(2, body), 3: _frame(3), 4: _frame(4)}
    _abandon(_held_back(tmp_path, sent))
    r = FileStore(str(tmp_path), "t", now=1.0)
    try:
        # Before: the scan ended at 2 and cut the body there: 2-4 gap filled on a resend and
        # sent again under the same numbers with other content.
        assert r.get(1, 9) == sorted(sent.items())
        assert r.get_next_sender_seq() == 5
    finally:
        r.close()
    assert os.path.getsize(tmp_path / "t.index") == 4 * 24
    again = FileStore(str(tmp_path), "t", now=1.0)      # the records written by recovery agree
    assert again.get(1, 9) == sorted(sent.items()) and again.get_next_sender_seq() == 5
    again.close()


def test_a_whole_frame_without_a_msgseqnum_keeps_what_follows(tmp_path):
    """A whole frame recovery cannot number (not what a session stores) is left in the body
    without a record; the frames after it are still indexed and nothing is cut."""
    numberless = encode(b"FIX.4.4", b"0", [(49, b"S"), (56, b"T")], [(58, b"x")])
    s = FileStore(str(tmp_path), "t", now=1.0, batch=True)
    for seq, raw in ((1, _frame(1)), (2, numberless), (3, _frame(3))):
        s.store_sent(seq, raw)
        s.write_pending()
    _abandon(s)
    size = os.path.getsize(tmp_path / "t.body")
    r = FileStore(str(tmp_path), "t", now=1.0)
    assert r.get(1, 9) == [(1, _frame(1)), (3, _frame(3))] and r.get_next_sender_seq() == 4
    r.close()
    assert os.path.getsize(tmp_path / "t.body") == size


def test_held_back_frames_larger_than_the_default_frame_limit_are_recovered(tmp_path):
    big = _frame(2, [(58, b"y" * (1 << 20))])    # above the reader's default max_body_length
    sent = {1: _frame(1), 2: big, 3: _frame(3)}
    _abandon(_held_back(tmp_path, sent))
    r = FileStore(str(tmp_path), "t", now=1.0)
    assert r.get(1, 9) == sorted(sent.items()) and r.get_next_sender_seq() == 4
    r.close()


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


def _random_body(rng: random.Random) -> list:
    alphabet = [b"\x01", b"=", b"8=FIX.4.4", b"\x0110=", b"\x0134=", b"9=", b"35=", b"a", b"0", b"\xff"]
    text = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 12)))
    fields = [(58, text)]
    if rng.random() < 0.3:
        fields.insert(0, (95, b"%d" % rng.randrange(1, 30)))
        fields.insert(1, (96, text))
    return fields


@pytest.mark.parametrize("seed", range(12))
def test_random_frames_and_a_torn_last_append(tmp_path, seed):
    """Random Texts and data fields full of SOH, "10=", "34=" and frame starts, then the last
    flush torn at a random byte: every whole frame comes back, the torn one is cut, and the
    next sender number is one past the last whole frame."""
    rng = random.Random(seed)
    sent = {seq: _frame(seq, _random_body(rng)) for seq in range(1, rng.randrange(3, 30))}
    s = _held_back(tmp_path, sent)
    _abandon(s)
    last = max(sent)
    cut = rng.randrange(0, len(sent[last]))          # bytes of the last frame that arrived
    size = os.path.getsize(tmp_path / "t.body")
    os.truncate(tmp_path / "t.body", size - len(sent[last]) + cut)
    r = FileStore(str(tmp_path), "t", now=1.0)
    expected = sorted((q, m) for q, m in sent.items() if q != last)
    assert r.get(1, last) == expected and r.get_next_sender_seq() == last
    r.close()
    assert os.path.getsize(tmp_path / "t.body") == size - len(sent[last])
