"""FIX message stores: sent messages by sequence number plus the two next sequence numbers.

The interface follows QuickFIX/J's ``MessageStore``. ``MemoryStore`` is for tests and
sessions that need no recovery; ``FileStore`` survives a process kill.

FileStore layout (one set of files per session, ``<dir>/<name>.*``):

* ``.body``    append-only: each sent message's raw bytes, back to back;
* ``.index``   append-only fixed 24-byte records ``(seq, offset, length)`` into ``.body``;
* ``.seqnums`` one fixed-width line ``SSSSSSSSSSSSSSSSSSSS TTTTTTTTTTTTTTTTTTTT``
  rewritten in place with ``pwrite`` (same length every time, so never half-old);
* ``.session`` the creation time (UTC epoch seconds), written at creation and on reset
  (replaced whole, by rename). A reset writes it first followed by `` resetting``, then empties
  the other files, then writes it alone; an open that finds the mark finishes the reset, so a
  kill inside ``reset()`` leaves the old numbering whole or the new one, never a mix.

Durability policy: every ``set``/``incr``/``set_next_*`` is handed to the kernel before
the call returns (unbuffered ``os.write``/``os.pwrite``), so a killed process (SIGKILL,
crash) loses nothing. ``fsync=True`` additionally calls ``os.fsync`` after each
write, which also survives power loss at a large cost per message; the default
(False) fsyncs only on ``flush()``/``close()``.

Batched writes (``batch=True``, what the FIX transports use): ``set``/``incr``/``set_next_*``
are held in memory until ``write_pending()``, which hands all of them to the kernel with one
``pwrite`` per file (body, index, sequence numbers, in that order, as unbatched writes are).
The sequence-number line is skipped when the only change since it was last written is the
sender number moving past messages just stored (``set(n)`` then ``incr_next_sender_seq()`` to
n + 1): the index already says so, and recovery takes the next sender number from it (below).
The :class:`~crossbook.fix.session.Session` calls ``write_pending()`` before any output leaves
it (``data_to_send``), before ``receive`` returns, and at once for a message it stores but does
not hand to a transport; so the promise above holds at every point another party (the peer,
the OMS journal) can observe: a killed process loses no message it sent and no inbound sequence
number it acted on. ``get``, ``refresh``, ``flush`` and ``close`` write pending data first.
A store used without a ``Session`` that calls ``write_pending()`` must keep ``batch=False``.

One exception, for an application that journals its own inbound mark (``Application.journals_inbound``,
the OMS gateway: the number after each message it handled rides in the journal batch that holds
what the message did, and a restart takes the store's target number from there): the session
counts such messages with ``incr_next_target_seq_journaled()``, and a batching store writes that
number only with its next sequence-number line, at ``write_deferred()`` (the session's timer, a
few times a second), ``refresh``, ``flush`` and ``close``, not at every read. That saves one
``pwrite`` per read on the order path; after a kill the line may trail the journal by those
messages, and the restart moves it forward to the journal's mark (``Server._rewind_inbound``).

Index records written lazily (batch, and not ``fsync``): a message the session stores with
``store_sent`` is a whole FIX frame carrying its own MsgSeqNum, so its index record is
implied by the body and ``write_pending`` writes only the body for it (one ``pwrite`` per
flush instead of two); the records follow with the next write that needs the index (a
``set()``, :data:`LAZY_INDEX_RECORDS` held back, ``write_deferred``, ``refresh``, ``flush``,
``close``).

Recovery on open: index records pointing past the end of ``.body`` (a torn append)
are dropped and both files truncated to the last whole record; then the body after the
last indexed message is read back frame by frame and indexed: only the frame boundaries
(BodyLength landing on a valid CheckSum) and the header's MsgSeqNum are read, never a full
split, so a frame holding what a split refuses (SOH in a Text) keeps its place and so does what
follows it. The body is truncated at the first bytes that are not a whole frame (a torn append). The next sender sequence number is at least one past the
highest stored message, because a message is stored before the sequence number is advanced.
"""
from __future__ import annotations

import os
import re
import struct
from abc import ABC, abstractmethod
from typing import Callable

from crossbook.fix._codec import find_frame as _find_frame

_INDEX = struct.Struct("<QQQ")
_SEQ_LINE = 42  # "%020d %020d\n" is 20 + 1 + 20 + 1 bytes
#: Index records of framed messages (``store_sent``) a batching store may hold back: bounds the
#: body tail that recovery reads back (see the module docstring).
LAZY_INDEX_RECORDS = 256
_FRAME_COMPLETE = 0  # codec.FrameStatus.COMPLETE
# find_frame's bounds on max_body_length ("35=X<SOH>" is the smallest body; offsets are 32-bit).
_MIN_BODY_LENGTH, _MAX_BODY_LENGTH = 5, 0x7FFF0000
_RESETTING = b"resetting"  # after the creation time in .session: a reset() not finished yet


class MessageStore(ABC):
    """Sent messages and sequence numbers of one FIX session."""

    @abstractmethod
    def set(self, seq: int, raw: bytes) -> None:
        """Store the raw bytes of a sent message under its MsgSeqNum."""

    @abstractmethod
    def get(self, begin: int, end: int) -> list[tuple[int, bytes]]:
        """Stored messages with begin <= seq <= end, ascending."""

    @abstractmethod
    def get_next_sender_seq(self) -> int: ...

    @abstractmethod
    def get_next_target_seq(self) -> int: ...

    @abstractmethod
    def set_next_sender_seq(self, seq: int) -> None: ...

    @abstractmethod
    def set_next_target_seq(self, seq: int) -> None: ...

    def incr_next_sender_seq(self) -> None:
        self.set_next_sender_seq(self.get_next_sender_seq() + 1)

    def incr_next_target_seq(self) -> None:
        self.set_next_target_seq(self.get_next_target_seq() + 1)

    def incr_next_target_seq_journaled(self) -> None:
        """``incr_next_target_seq()`` for a message whose receipt the application records
        durably itself, together with what the message did (the OMS gateway's inbound mark in
        its journal batch, which a restart takes back from the journal). A batching store may
        then leave the number out of ``write_pending()``: it is written with the next
        sequence-number line, by ``write_deferred()``, ``refresh()``, ``flush()`` and ``close()``."""
        self.incr_next_target_seq()

    def store_sent(self, seq: int, raw: bytes) -> None:
        """A message just sent under the next sender number: ``set(seq, raw)`` then
        ``incr_next_sender_seq()``, in one call (a store may do both at once)."""
        self.set(seq, raw)
        self.incr_next_sender_seq()

    @abstractmethod
    def creation_time(self) -> float:
        """When the store was created or last reset (epoch seconds)."""

    @abstractmethod
    def reset(self, now: float) -> None:
        """Forget every message and set both sequence numbers to 1."""

    def refresh(self) -> None:
        """Reload from durable state (no-op for stores without one)."""

    def write_pending(self) -> None:
        """Hand writes held back by a batching store to the kernel (no-op for other stores)."""

    def write_deferred(self) -> None:
        """``write_pending()`` plus a next target number left out of it
        (``incr_next_target_seq_journaled``): a few times a second, so the store's own file
        trails the application's journal by a fraction of a second at most."""
        self.write_pending()

    def flush(self) -> None:
        """Make everything written so far durable."""

    def close(self) -> None:
        """Release resources; the store is unusable afterwards."""


def _check_seq(seq: object, what: str) -> int:
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ValueError(f"{what} must be a positive int, got {seq!r}")
    return seq


class MemoryStore(MessageStore):
    """Everything in a dict; lost with the process."""

    def __init__(self, now: float = 0.0) -> None:
        self._messages: dict[int, bytes] = {}
        self._sender = 1
        self._target = 1
        self._created = now

    def set(self, seq: int, raw: bytes) -> None:
        self._messages[_check_seq(seq, "seq")] = bytes(raw)

    def get(self, begin: int, end: int) -> list[tuple[int, bytes]]:
        if end < begin:
            return []
        if end - begin < len(self._messages):
            return [(s, self._messages[s]) for s in range(begin, end + 1) if s in self._messages]
        return sorted((s, m) for s, m in self._messages.items() if begin <= s <= end)

    def get_next_sender_seq(self) -> int:
        return self._sender

    def get_next_target_seq(self) -> int:
        return self._target

    def set_next_sender_seq(self, seq: int) -> None:
        self._sender = _check_seq(seq, "next sender seq")

    def set_next_target_seq(self, seq: int) -> None:
        self._target = _check_seq(seq, "next target seq")

    def creation_time(self) -> float:
        return self._created

    def reset(self, now: float) -> None:
        self._messages.clear()
        self._sender = 1
        self._target = 1
        self._created = now


_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def store_name(begin_string: str, sender: str, target: str, qualifier: str = "") -> str:
    """File-name stem for a session: ``FIX.4.4-ISLD-TW44`` (unsafe characters replaced)."""
    name = f"{begin_string}-{sender}-{target}" + (f"-{qualifier}" if qualifier else "")
    return _SAFE_NAME.sub("_", name)


class FileStore(MessageStore):
    """Durable store in ``directory`` under the stem ``name`` (see the module docstring)."""

    def __init__(self, directory: str, name: str, now: float = 0.0, fsync: bool = False,
                 batch: bool = False) -> None:
        if not name or _SAFE_NAME.search(name):
            raise ValueError(f"store name {name!r} must be non-empty and use only A-Z a-z 0-9 _ . -")
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.name = name
        self.fsync = fsync
        #: Hold writes until write_pending() (see the module docstring).
        self.batch = batch
        self._pending_body: list[bytes] = []
        self._pending_index: list[bytes] = []
        self._seq_dirty = False
        # The target number moved past messages the application journals itself (batch): the
        # line waits for a write that happens anyway, or for write_deferred() (see the docstring).
        self._target_deferred = False
        # A pending index record that must be written at the next write_pending (a set() of
        # bytes recovery could not index from the body); store_sent's framed ones may wait.
        self._index_required = False
        # The sender number moved only past stored messages since the line was written (batch).
        self._sender_implied = False
        self._last_set = 0      # seq of the last set(): an incr right after it is implied by the index
        self._max_stored = 0    # highest seq in the index (with pending records)
        base = os.path.join(directory, name)
        self._body_path = base + ".body"
        self._index_path = base + ".index"
        self._seq_path = base + ".seqnums"
        self._session_path = base + ".session"
        self._body_fd = self._index_fd = self._seq_fd = -1
        self._offsets: dict[int, tuple[int, int]] = {}
        self._open(now)

    # -- opening and recovery
    def _open(self, now: float) -> None:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0)
        self._body_fd = os.open(self._body_path, flags, 0o644)
        self._index_fd = os.open(self._index_path, flags, 0o644)
        self._seq_fd = os.open(self._seq_path, flags, 0o644)
        if os.path.exists(self._session_path):
            with open(self._session_path, "rb") as f:
                words = f.read().split()
            try:
                self._created = float(words[0]) if words else now
            except ValueError:
                self._created = now
            if words[1:] == [_RESETTING]:
                self._empty()     # a reset() killed after it began: finish it (see reset)
                self._write_session_time(self._created)
        else:
            self._write_session_time(now)
        self._load()

    def _load(self) -> None:
        body_size = os.fstat(self._body_fd).st_size
        index = _read_all(self._index_fd)
        whole = len(index) - len(index) % _INDEX.size
        offsets: dict[int, tuple[int, int]] = {}
        good = 0
        body_end = 0
        for pos in range(0, whole, _INDEX.size):
            seq, offset, length = _INDEX.unpack_from(index, pos)
            if offset + length > body_size or seq < 1:
                break  # torn append: the body bytes never made it
            offsets[seq] = (offset, length)
            good = pos + _INDEX.size
            body_end = max(body_end, offset + length)
        if good != len(index):
            os.ftruncate(self._index_fd, good)
        if body_end < body_size:
            # Framed messages whose index records were held back (store_sent): index them now.
            tail = os.pread(self._body_fd, body_size - body_end, body_end)
            records, used = _index_frames(tail, body_end, offsets)
            if records:
                _write_all(self._index_fd, records, good)
                good += len(records)
            body_end += used
        if body_end != body_size:
            os.ftruncate(self._body_fd, body_end)
        self._offsets = offsets
        self._max_stored = max(offsets) if offsets else 0
        self._body_size = body_end
        self._index_size = good
        sender, target = 1, 1
        line = _read_all(self._seq_fd)
        m = re.match(rb"^(\d{1,20}) (\d{1,20})\n", line)
        if m:
            sender, target = max(1, int(m.group(1))), max(1, int(m.group(2)))
        if offsets:
            sender = max(sender, max(offsets) + 1)
        self._sender, self._target = sender, target
        self._write_seqnums()

    # -- MessageStore
    def set(self, seq: int, raw: bytes) -> None:
        _check_seq(seq, "seq")
        self._check_open()
        raw = bytes(raw)
        offset = self._body_size
        if self.batch:
            # Sizes and offsets advance now, so later records and get() agree with the files
            # once write_pending() has put the bytes there.
            length = len(raw)
            self._pending_body.append(raw)
            self._pending_index.append(_INDEX.pack(seq, offset, length))
            self._body_size = offset + length
            self._index_size += _INDEX.size
            self._offsets[seq] = (offset, length)
            self._last_set = seq
            if seq > self._max_stored:
                self._max_stored = seq
            self._index_required = True
            return
        _write_all(self._body_fd, raw, offset)
        self._body_size += len(raw)
        _write_all(self._index_fd, _INDEX.pack(seq, offset, len(raw)), self._index_size)
        self._index_size += _INDEX.size
        self._offsets[seq] = (offset, len(raw))
        if self.fsync:
            os.fsync(self._body_fd)
            os.fsync(self._index_fd)

    def get(self, begin: int, end: int) -> list[tuple[int, bytes]]:
        if self._pending_body:
            self.write_pending()
        seqs = sorted(s for s in self._offsets if begin <= s <= end)
        out = []
        for s in seqs:
            offset, length = self._offsets[s]
            out.append((s, os.pread(self._body_fd, length, offset)))
        return out

    def get_next_sender_seq(self) -> int:
        return self._sender

    def get_next_target_seq(self) -> int:
        return self._target

    def set_next_sender_seq(self, seq: int) -> None:
        self._check_open()
        self._sender = _check_seq(seq, "next sender seq")
        if self.batch:
            self._seq_dirty = True
        else:
            self._write_seqnums()

    def set_next_target_seq(self, seq: int) -> None:
        self._check_open()
        self._target = _check_seq(seq, "next target seq")
        if self.batch:
            self._seq_dirty = True
        else:
            self._write_seqnums()

    def store_sent(self, seq: int, raw: bytes) -> None:
        """``set(seq, raw)`` then ``incr_next_sender_seq()``: twice per order on the OMS's hot
        path, so the batching case is one call with the same effects (records, offsets,
        pending writes, the implied-or-dirty sequence line), the rest the two calls.

        A ``raw`` starting ``8=`` is taken for the frame sent under ``seq`` (its MsgSeqNum is
        ``seq``, as for every message a ``Session`` stores): its index record may be held back,
        and recovery then indexes it under the MsgSeqNum it carries."""
        if not self.batch or type(seq) is not int or seq < 1 or type(raw) is not bytes or self._body_fd < 0:
            self.set(seq, raw)
            self.incr_next_sender_seq()
            return
        offset = self._body_size
        length = len(raw)
        self._pending_body.append(raw)
        self._pending_index.append(_INDEX.pack(seq, offset, length))
        self._body_size = offset + length
        self._index_size += _INDEX.size
        self._offsets[seq] = (offset, length)
        if seq > self._max_stored:
            self._max_stored = seq
        if raw[:2] != b"8=":
            self._index_required = True   # not a FIX frame: recovery could not index it
        self._sender = sender = self._sender + 1
        if seq == sender - 1:
            self._sender_implied = True   # the index records it (see write_pending)
        else:
            self._seq_dirty = True
        self._last_set = 0

    def incr_next_sender_seq(self) -> None:
        # Once per sent message: no re-validation of a number that is already valid.
        self._check_open()
        self._sender += 1
        if self.batch:
            if self._last_set == self._sender - 1:
                self._sender_implied = True   # the index records it (see write_pending)
            else:
                self._seq_dirty = True
            self._last_set = 0
        else:
            self._write_seqnums()

    def incr_next_target_seq(self) -> None:
        self._check_open()
        self._target += 1
        if self.batch:
            self._seq_dirty = True
        else:
            self._write_seqnums()

    def incr_next_target_seq_journaled(self) -> None:
        # Once per order on the OMS's hot path: one pwrite per read saved (see the base class).
        if not self.batch:
            self.incr_next_target_seq()
            return
        self._check_open()
        self._target += 1
        self._target_deferred = True

    def creation_time(self) -> float:
        return self._created

    def reset(self, now: float) -> None:
        """Forget every message and set both numbers to 1 under the creation time ``now``.

        Atomic across a kill: the new creation time is written first, marked as a reset in
        progress, and the open after a kill finishes the reset it finds marked. Otherwise a
        kill between the files would leave numbers at 1 under the old creation time (or the
        old numbers under the new one), which a restart takes for the old numbering and moves
        to the journal's mark of it (``Server._rewind_inbound``)."""
        self._drop_pending()
        self._write_session_time(now, resetting=True)
        self._empty()
        self._write_session_time(now)

    def _empty(self) -> None:
        os.ftruncate(self._index_fd, 0)
        os.ftruncate(self._body_fd, 0)
        self._offsets.clear()
        self._max_stored = 0
        self._body_size = self._index_size = 0
        self._sender = self._target = 1
        self._write_seqnums()
        if self.fsync:
            # On disk before the creation time loses its reset mark (power loss).
            for fd in (self._body_fd, self._index_fd):
                os.fsync(fd)

    def refresh(self) -> None:
        self.write_deferred()
        self._load()

    def write_pending(self) -> None:
        self._write_pending(False)

    def _write_pending(self, with_index: bool) -> None:
        if self._pending_body:
            body = b"".join(self._pending_body)
            body_at = self._body_size - len(body)
            self._pending_body.clear()
            # Body before index: a kill between the two leaves index records that recovery
            # drops as torn, never an index entry pointing at bytes that are not there.
            _write_all(self._body_fd, body, body_at)
            if self.fsync:
                os.fsync(self._body_fd)
        pending_index = self._pending_index
        if pending_index and (with_index or self._index_required or self.fsync
                              or len(pending_index) >= LAZY_INDEX_RECORDS):
            index = b"".join(pending_index)
            pending_index.clear()
            self._index_required = False
            _write_all(self._index_fd, index, self._index_size - len(index))
            if self.fsync:
                os.fsync(self._index_fd)
        # else: framed messages only, indexed from the body by recovery (module docstring).
        if self._seq_dirty or (self._sender_implied and self._sender != self._max_stored + 1):
            self._write_seqnums()   # (with the target number, deferred or not)
        # else: at most the sender number moved, to one past the highest stored message, which
        # is what recovery computes from the index and body just written: the line would say nothing new;
        # and the target number, if it moved, is in the application's journal (deferred).
        self._seq_dirty = self._sender_implied = False

    def write_deferred(self) -> None:
        if self._target_deferred:
            self._seq_dirty = True
        self._write_pending(True)

    def _check_open(self) -> None:
        # Checked here and not left to the write: a batching store writes later, where the
        # failure would no longer point at the caller that stored after close().
        if self._body_fd < 0:
            raise ValueError(f"FIX store {self.name!r} is closed")

    def _drop_pending(self) -> None:
        self._pending_body.clear()
        self._pending_index.clear()
        self._seq_dirty = self._sender_implied = self._target_deferred = self._index_required = False
        self._last_set = 0

    def flush(self) -> None:
        if self._body_fd >= 0:
            self.write_deferred()
        for fd in (self._body_fd, self._index_fd, self._seq_fd):
            if fd >= 0:
                os.fsync(fd)

    def close(self) -> None:
        if self._body_fd < 0:
            return
        self.flush()
        for fd in (self._body_fd, self._index_fd, self._seq_fd):
            os.close(fd)
        self._body_fd = self._index_fd = self._seq_fd = -1

    # -- helpers
    def _write_seqnums(self) -> None:
        self._target_deferred = False
        line = b"%020d %020d\n" % (self._sender, self._target)
        _write_all(self._seq_fd, line, 0)
        if self.fsync:
            os.fsync(self._seq_fd)

    def _write_session_time(self, now: float, resetting: bool = False) -> None:
        self._created = now
        tmp = self._session_path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(repr(float(now)).encode() + (b" " + _RESETTING if resetting else b""))
            f.flush()
            if self.fsync or not resetting:
                os.fsync(f.fileno())
        os.replace(tmp, self._session_path)


def _index_frames(tail: bytes, base: int, offsets: dict[int, tuple[int, int]]) -> tuple[bytes, int]:
    """Index records for the whole FIX frames at the start of ``tail`` (the body from offset
    ``base`` on), added to ``offsets``; and how many bytes the whole frames cover. Stops at the
    first bytes that are not a whole frame (BodyLength landing on a valid CheckSum): a torn append.

    Only the frame boundaries and the MsgSeqNum are read, never the fields: a frame the session
    sent may hold what a full split refuses (SOH in a Text, a data field whose length is off),
    and cutting the body there would lose it and every frame after it. A whole frame without a
    MsgSeqNum (not what a session stores) stays in the body without a record."""
    records = []
    pos = 0
    size = len(tail)
    # No frame in the tail is longer than the tail; a tail of a few torn bytes is below
    # find_frame's smallest bound, which would raise instead of reporting them as not a frame.
    max_body_length = min(max(size, _MIN_BODY_LENGTH), _MAX_BODY_LENGTH)
    while pos < size:
        scan = _find_frame(tail, pos, max_body_length)
        if scan.status != _FRAME_COMPLETE:
            break
        end = scan.end
        seq = _frame_seq(tail, pos, end)
        if seq:
            offsets[seq] = (base + pos, end - pos)
            records.append(_INDEX.pack(seq, base + pos, end - pos))
        pos = end
    return b"".join(records), pos


def _frame_seq(data: bytes, start: int, end: int) -> int:
    """MsgSeqNum (34) of the whole frame ``data[start:end]``, or 0 if it has none that is a
    positive number. The first ``<SOH>34=`` is the header's: BeginString and BodyLength hold
    no SOH, and the header comes before the body."""
    at = data.find(b"\x0134=", start, end)
    if at < 0:
        return 0
    value = data[at + 4:data.find(b"\x01", at + 4, end)]   # a whole frame ends with SOH
    if not value.isdigit() or len(value) > 18:
        return 0
    return int(value)


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0) if size else b""


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


StoreFactory = Callable[[str, str, str], MessageStore]
