"""The journal's append-only log: where a batch becomes durable before its reports are sent.

Layout: a directory ``<database>.log/`` holding segment files ``<base>.seg`` and a ``lock``
file. A segment starts with a 16-byte header (magic ``CBJLOG01``, then the base position as
u64 little-endian) followed by records::

    u32 payload length | u32 CRC32 of the payload | payload

Positions are logical byte offsets over the whole log: the record area of segment ``base``
starts at position ``base``; a new segment's base is where the previous one ended. SQLite
records, in the same transaction as the rows, the position it has applied up to, so after a
crash the tail past it is exactly what the store lacks (docs/oms.md, "Durability").

A record is written with ONE ``writev`` (header and payload together, the GIL held: _logio); under
``synchronous=FULL`` an ``fdatasync`` follows. A write that did not complete (the process was
killed inside it, or the disk filled) leaves a *torn* record at the end of the last segment: its
length runs past the end of the file, or its CRC does not match and nothing follows it. The
reports of such a batch were never sent (they go out only after the write returns), so
recovery drops it. A bad record with more data after it is not a torn write but damage, and
recovery refuses to guess (:class:`LogCorrupt`).
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Iterator

from crossbook.persistence._logio import writev_held

log = logging.getLogger("crossbook.persistence")

MAGIC = b"CBJLOG01"
SEGMENT_HEADER = struct.Struct("<8sQ")
RECORD_HEADER = struct.Struct("<II")
SEGMENT_SUFFIX = ".seg"
#: A record larger than this is not something the journal writes: its length field is damage.
MAX_RECORD = 1 << 30


class LogCorrupt(RuntimeError):
    """The log is damaged somewhere other than a torn last write: refusing to guess what was
    acknowledged. The message names the file and the position."""


def log_directory(database: str) -> str:
    """Where the log of the SQLite database ``database`` lives."""
    return f"{database}.log"


def segment_path(directory: str, base: int) -> str:
    return os.path.join(directory, f"{base:020d}{SEGMENT_SUFFIX}")


def list_segments(directory: str) -> list[tuple[int, str]]:
    """(base, path) of every segment, oldest first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if name.endswith(SEGMENT_SUFFIX) and name[:-len(SEGMENT_SUFFIX)].isdigit():
            out.append((int(name[:-len(SEGMENT_SUFFIX)]), os.path.join(directory, name)))
    out.sort()
    return out


def segment_end(base: int, path: str) -> int:
    """Position just past the last byte of the segment (complete or not)."""
    return base + max(os.path.getsize(path) - SEGMENT_HEADER.size, 0)


def log_end(directory: str) -> int | None:
    """Position after the last byte written to the log, or None when there is no segment."""
    segments = list_segments(directory)
    if not segments:
        return None
    base, path = segments[-1]
    return segment_end(base, path)


@dataclass
class Torn:
    """A last write that never completed: where it starts and why it is not a record."""

    path: str
    position: int
    offset: int          # in the file
    size: int            # bytes dropped
    reason: str


@dataclass
class Scan:
    """Complete records past a position: ``records`` are (payload, end position)."""

    records: list[tuple[bytes, int]]
    end: int                     # position after the last complete record
    torn: Torn | None = None


def scan(directory: str, start: int) -> Scan:
    """Every complete record whose end lies past ``start`` (which must be a record boundary:
    SQLite's applied position). Raises LogCorrupt on damage other than a torn last write.
    Segments wholly below ``start`` are skipped, gaps between them too: the store holds them,
    and recovery deletes them."""
    segments = list_segments(directory)
    records: list[tuple[bytes, int]] = []
    end = start
    torn: Torn | None = None
    if segments and start < segments[0][0]:
        raise LogCorrupt(f"journal log {directory}: the store has applied up to position {start} but the "
                         f"oldest segment starts at {segments[0][0]}: records in between are missing")
    for i, (base, path) in enumerate(segments):
        last = i == len(segments) - 1
        with open(path, "rb") as f:
            data = f.read()
        if len(data) < SEGMENT_HEADER.size:
            if not last:
                raise LogCorrupt(f"journal log segment {path}: {len(data)}-byte header, and later segments follow")
            torn = Torn(path, base, 0, len(data), "segment header incomplete")
            break
        magic, header_base = SEGMENT_HEADER.unpack_from(data)
        if magic != MAGIC or header_base != base:
            raise LogCorrupt(f"journal log segment {path}: bad header (magic {magic!r}, base {header_base})")
        seg_end = base + len(data) - SEGMENT_HEADER.size
        if seg_end <= start:
            # Applied already, not yet deleted. A gap after it lies below the applied position
            # (nothing the store lacks is missing) unless the next segment starts past it.
            if not last and segments[i + 1][0] > start:
                raise LogCorrupt(f"journal log {directory}: segment {path} ends at {seg_end} but the next "
                                 f"starts at {segments[i + 1][0]}, past the applied position {start}: "
                                 f"records in between are missing")
            continue
        offset = SEGMENT_HEADER.size + max(start - base, 0)
        size = len(data)
        while offset < size:
            problem = None
            if size - offset < RECORD_HEADER.size:
                problem = f"record header incomplete ({size - offset} of {RECORD_HEADER.size} bytes)"
                record_end = size
            else:
                length, crc = RECORD_HEADER.unpack_from(data, offset)
                record_end = offset + RECORD_HEADER.size + length
                if length == 0 or length > MAX_RECORD:
                    problem = f"record length {length} is not one the journal writes"
                    # A zero-filled tail (a file extended but never written, after a power loss)
                    # is a torn write; anything else after a bad length is damage.
                    record_end = size if not data[offset:].strip(b"\0") else offset + RECORD_HEADER.size
                elif record_end > size:
                    problem = f"record of {length} bytes cut off after {size - offset - RECORD_HEADER.size}"
                    record_end = size
                else:
                    payload = data[offset + RECORD_HEADER.size:record_end]
                    if zlib.crc32(payload) != crc:
                        problem = "CRC mismatch"
            if problem is not None:
                if not last or record_end < size:
                    raise LogCorrupt(f"journal log segment {path}: {problem} at position "
                                     f"{base + offset - SEGMENT_HEADER.size} with {size - record_end} more "
                                     f"bytes after it: damage, not a torn last write")
                torn = Torn(path, base + offset - SEGMENT_HEADER.size, offset, size - offset, problem)
                break
            records.append((payload, base + record_end - SEGMENT_HEADER.size))
            offset = record_end
        end = base + offset - SEGMENT_HEADER.size
        if torn is not None:
            break
        if not last and segments[i + 1][0] != end:
            raise LogCorrupt(f"journal log {directory}: segment {path} ends at {end} but the next starts at "
                             f"{segments[i + 1][0]}")
    return Scan(records, end, torn)


def drop_torn(torn: Torn) -> None:
    """Cut a torn last write off its segment (the whole file when even its header is torn)."""
    if torn.offset == 0:
        os.unlink(torn.path)
        return
    with open(torn.path, "r+b") as f:
        f.truncate(torn.offset)
        os.fsync(f.fileno())


def iter_records(directory: str, start: int = 0) -> Iterator[tuple[bytes, int]]:
    """(payload, end position) of every complete record past ``start`` (tests, tools)."""
    yield from scan(directory, start).records


class LogWriter:
    """Appends records to the newest segment; the caller (the event loop thread) is the only
    writer. ``sync=True`` (storage.synchronous = FULL) adds an fdatasync per append."""

    def __init__(self, directory: str, position: int, *, sync: bool = False) -> None:
        self.directory = directory
        self.sync = sync
        self.base = position
        self.position = position
        self._fd = -1
        os.makedirs(directory, exist_ok=True)
        self._open_segment(position)

    @property
    def segment_bytes(self) -> int:
        return self.position - self.base

    def _open_segment(self, base: int) -> None:
        path = segment_path(self.directory, base)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        if os.fstat(fd).st_size == 0:
            os.write(fd, SEGMENT_HEADER.pack(MAGIC, base))
        elif os.fstat(fd).st_size != SEGMENT_HEADER.size:
            os.close(fd)
            raise LogCorrupt(f"journal log segment {path} already holds records past position {base}")
        if self.sync:
            os.fdatasync(fd)
            _fsync_directory(self.directory)  # the new file's name survives a power loss too
        self._fd = fd
        self.base = base
        self.path = path

    def append(self, payload: bytes) -> int:
        """Write one record; returns the position after it. On OSError the segment is cut back
        to where the record started (best effort) and the error propagates."""
        header = RECORD_HEADER.pack(len(payload), zlib.crc32(payload))
        want = RECORD_HEADER.size + len(payload)
        fd = self._fd
        written = writev_held(fd, header, payload)  # os.writev without handing the GIL over (_logio)
        try:
            while written < want:  # regular files write in full unless the disk fills; be exact anyway
                rest = (header + payload)[written:]
                n = os.write(fd, rest)
                if n == 0:
                    raise OSError(errno.ENOSPC, "journal log write made no progress")
                written += n
            if self.sync:
                os.fdatasync(fd)
        except OSError:
            try:
                os.ftruncate(fd, SEGMENT_HEADER.size + self.position - self.base)
            except OSError:
                pass
            raise
        self.position += want
        return self.position

    def rotate(self) -> tuple[int, int, str]:
        """Start a new segment at the current position; returns (base, end, path) of the one
        closed, which the projection deletes once the store has applied past its end."""
        closed = (self.base, self.position, self.path)
        os.close(self._fd)
        self._fd = -1
        self._open_segment(self.position)
        return closed

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LogLock:
    """Exclusive ``flock`` on ``<log>/lock``: held by the running server's journal for its whole
    life, and briefly by a reader applying a dead server's log tail. The kernel releases it when
    its holder dies, so ``kill -9`` leaves no stale lock."""

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, "lock")
        self._fd = -1

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def try_acquire(self) -> bool:
        if self._fd >= 0:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def acquire(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds (a reader may hold it for a moment); RuntimeError after."""
        deadline = time.monotonic() + timeout
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                raise RuntimeError(f"journal log {os.path.dirname(self.path)} is locked by another process "
                                   f"(is another server running on this storage directory?)")
            time.sleep(0.01)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1

    def __del__(self) -> None:
        self.release()
