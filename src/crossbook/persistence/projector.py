"""The journal's SQLite projection in a process of its own (``storage.projection = "process"``).

Why a process: the projection's Python work (decoding records, binding rows, the sqlite3
module's steps) holds the GIL. As a thread beside the event loop it cost the server about 12 %
of its capacity at saturation, and a GIL hand-off could stall the loop for milliseconds. The
machine the OMS targets has two cores: a child process applies the log on the other one and
never touches the loop's GIL.

How the two processes talk (docs/oms.md, "Durability"):

* A small file ``<log>/projection``, mapped by both (:class:`Shared`): the parent publishes the
  log's end after every record it wrote (one atomic store, no system call), the child the
  position its SQLite store has applied. The child only reads records before the published end,
  so it never sees a half-written one.
* A *wake* pipe, parent -> child: a byte makes the child apply now instead of at its next
  interval (a reader's barrier, a large backlog, close). End of file on it means the parent
  died (``kill -9``): the child exits, also in the middle of a backlog (it looks between its
  transactions); the parent's restart applies the log tail itself.
* A *report* pipe, child -> parent, which the parent's event loop watches (``add_reader``):
  one text line per event the parent must hear about: ``S <applied>`` (started), ``A <applied>``
  (applied past what a waiting reader asked for, or recovered from an error), ``E <text>``
  (applying fails; it retries). End of file means the child died: the parent logs it, reports
  it in ``projection_error`` and starts a new one (applying is idempotent from SQLite's applied
  position, and the log holds everything).

The child holds an exclusive ``flock`` on ``<log>/projector.lock`` for its life: a new server's
``open()`` (or a reader applying a dead server's tail) first waits for a previous server's
child to be gone, so two writers never apply the same tail at once.

:class:`crossbook.persistence.sqlite.SqliteJournal` runs it as ``python -c "...projector import
main..." DB LOGDIR --wake-fd N --report-fd M ...`` (``-c`` rather than ``-m``: the package
imports this module first, and ``-m`` would then run a second copy of it). Its imports are persistence,
the standard library and orjson only, so it starts in about 0.1 s.
"""
from __future__ import annotations

import argparse
import errno
import fcntl
import logging
import mmap
import os
import select
import signal
import sqlite3
import sys
import time
import zlib

from crossbook.persistence._logio import SharedWords
from crossbook.persistence.log import (
    MAGIC, MAX_RECORD, RECORD_HEADER, SEGMENT_HEADER, LogCorrupt, list_segments, segment_path,
)

log = logging.getLogger("crossbook.persistence")

#: Slots of the shared file: written by the parent (END, STOP, WANTED) or the child (the rest).
END, STOP, WANTED, APPLIED, COMMITS, CHECKPOINTS = range(6)
SHARED_WORDS = 8
SHARED_FILE = "projection"
PROJECTOR_LOCK = "projector.lock"
#: At most this many payload bytes per SQLite transaction (bounds the child's memory when it
#: has a backlog: it reads the log in pieces of this size).
MAX_TRANSACTION_BYTES = 8 << 20


class Shared:
    """The mapped file ``<log>/projection``: :data:`SHARED_WORDS` words (see the slot names)."""

    def __init__(self, directory: str, *, create: bool) -> None:
        self.path = os.path.join(directory, SHARED_FILE)
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT | os.O_TRUNC if create else 0)
        fd = os.open(self.path, flags, 0o644)
        try:
            if create:
                os.ftruncate(fd, mmap.PAGESIZE)  # zero-filled: end 0, nothing wanted, no stop
            self._map = mmap.mmap(fd, mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self.words = SharedWords(self._map, SHARED_WORDS)

    def close(self, *, unlink: bool = False) -> None:
        if self.words is not None:
            self.words.release()
            self.words = None
            self._map.close()
        if unlink:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def wait_for_projector_exit(directory: str, timeout: float) -> None:
    """Wait (up to ``timeout`` s) until no projection process of an earlier server is running
    on the log ``directory`` (its ``flock`` is free); RuntimeError after that."""
    path = os.path.join(directory, PROJECTOR_LOCK)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # never had a projection process
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"journal log {directory}: a projection process is still running "
                                       f"after {timeout:.1f} s (a previous server's child that did not exit)")
                time.sleep(0.005)
                continue
            return  # closing the descriptor below drops it again
    finally:
        os.close(fd)


class LogTail:
    """Reads the journal log's complete records from the store's applied position up to an end
    the writer published, across segments, in bounded pieces. ``read()`` moves a cursor;
    ``advance()`` (after the records are committed) makes it the position and deletes the
    segments now wholly applied; ``rewind()`` (after a failed commit) goes back to it."""

    def __init__(self, directory: str, position: int) -> None:
        self.directory = directory
        self.position = position
        self.cursor = position
        self._fd = -1
        self._base = 0
        self._path = ""
        self._closed: list[tuple[int, str]] = []   # (end, path) of segments read to their end
        # Segments an earlier projection applied but was stopped before deleting.
        segments = list_segments(directory)
        for (_, path), (next_base, _) in zip(segments, segments[1:]):
            if next_base <= position:
                _unlink(path)

    def _open_at(self, position: int, *, exact: bool) -> None:
        segments = [s for s in list_segments(self.directory) if s[0] <= position]
        if not segments or (exact and segments[-1][0] != position):
            raise LogCorrupt(f"journal log {self.directory}: no segment holds position {position}")
        base, path = segments[-1]
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        header = os.pread(fd, SEGMENT_HEADER.size, 0)
        if len(header) < SEGMENT_HEADER.size or SEGMENT_HEADER.unpack(header) != (MAGIC, base):
            os.close(fd)
            raise LogCorrupt(f"journal log segment {path}: bad header")
        self._close_fd()
        self._fd, self._base, self._path = fd, base, path

    def _close_fd(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def read(self, end: int, max_records: int, max_bytes: int = MAX_TRANSACTION_BYTES) -> list[tuple[bytes, int]]:
        """(payload, end position) of the complete records from the cursor, up to ``end`` (a
        record boundary the writer published), at most ``max_records`` of them and about
        ``max_bytes`` of payload. Raises LogCorrupt on a record that is not what was written."""
        out: list[tuple[bytes, int]] = []
        if self.cursor >= end:
            return out
        if self._fd < 0:
            self._open_at(self.cursor, exact=False)
        total = 0
        header = RECORD_HEADER
        crc32 = zlib.crc32
        while self.cursor < end and len(out) < max_records and total < max_bytes:
            offset = SEGMENT_HEADER.size + self.cursor - self._base
            want = min(end - self.cursor, max_bytes - total)
            data = os.pread(self._fd, want, offset)
            if not data:  # this segment is complete; the next one starts where it ended
                self._closed.append((self.cursor, self._path))
                self._open_at(self.cursor, exact=True)
                continue
            size, i = len(data), 0
            while size - i >= header.size and len(out) < max_records:
                length, crc = header.unpack_from(data, i)
                if length == 0 or length > MAX_RECORD:
                    raise LogCorrupt(f"journal log segment {self._path}: record length {length} at position "
                                     f"{self.cursor + i}")
                stop = i + header.size + length
                if stop > size:
                    break
                payload = data[i + header.size:stop]
                if crc32(payload) != crc:
                    raise LogCorrupt(f"journal log segment {self._path}: CRC mismatch at position {self.cursor + i}")
                out.append((payload, self.cursor + stop))
                i = stop
            if i == 0:
                if out:
                    break  # the budget is spent; the next read starts at this record
                if size == want and size >= header.size and self.cursor + size < end:
                    # One record larger than what was left of the budget: read exactly it.
                    length = header.unpack_from(data, 0)[0]
                    max_bytes = total + header.size + length
                    continue
                raise LogCorrupt(f"journal log segment {self._path}: the segment ends inside the record at "
                                 f"position {self.cursor}, before the published end {end}")
            self.cursor += i
            total += i
        return out

    def advance(self) -> None:
        """The records read so far are in the store: delete the segments they finished."""
        self.position = self.cursor
        while self._closed and self._closed[0][0] <= self.position:
            _unlink(self._closed.pop(0)[1])

    def rewind(self) -> None:
        """Go back to the position (the commit failed): the next read starts there again."""
        self._close_fd()
        # Segments that end past the position are read again (and listed again when finished);
        # one ending exactly at it is not (the reader reopens at the next segment, whose base is
        # the position), so it must stay listed: forgetting it left it on disk below a gap once
        # later segments were deleted, and scan() refused such a log at the next start.
        self._closed = [(end, path) for end, path in self._closed if end <= self.position]
        self.cursor = self.position

    def close(self) -> None:
        self._close_fd()


def _parent_gone(wake: select.poll) -> bool:
    """Whether the wake pipe's write end is closed (the parent died), without waiting and
    without reading: wake bytes still in the pipe are left for the next wait."""
    return any(events & (select.POLLHUP | select.POLLERR) for _, events in wake.poll(0))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class Projector:
    """The child's loop: wait for a wake byte or the interval, apply what the parent published
    in transactions of at most ``max_batch`` records, report, checkpoint."""

    def __init__(self, database: str, log_dir: str, *, synchronous: str, interval_s: float, max_batch: int,
                 wake_fd: int, report_fd: int, niceness: int = 0) -> None:
        self.database = database
        #: Added to this process's niceness once it has caught up with the log for the first time
        #: (see :meth:`_lower_priority`); 0 leaves the priority alone.
        self.niceness = niceness
        self.log_dir = log_dir
        self.synchronous = synchronous
        self.interval_s = interval_s
        self.max_batch = max_batch
        self.wake_fd = wake_fd
        self.report_fd = report_fd

    def report(self, line: str) -> None:
        try:
            os.write(self.report_fd, line.encode() + b"\n")
        except BrokenPipeError:
            pass  # the parent is gone; the wake pipe's end of file says so next
        except BlockingIOError:
            # The parent's loop is not reading (it only asks while a reader waits, so this is a
            # loop that stopped): never block on it; the applied position is in the shared file.
            pass

    def _lower_priority(self) -> None:
        """Become background work, now that start-up is over. Importing and the first catch-up
        after a restart run at the server's priority: at +10 on a busy 2-core machine they took
        4-8 s instead of 1-1.5 s, and a reader of the store (HTTP ``/orders``, ``crossbook
        orders``) waited that long for it. Raising one's own niceness needs no privilege (taking
        it back would), so it happens once, here."""
        if self.niceness <= 0:
            return
        try:
            os.setpriority(os.PRIO_PROCESS, 0, min(19, os.getpriority(os.PRIO_PROCESS, 0) + self.niceness))
        except OSError:  # not permitted here: the default priority
            log.debug("journal projection process keeps its priority", exc_info=True)

    def run(self) -> int:
        # Local import: sqlite.py imports this module's names lazily, not the other way round.
        from crossbook.persistence import sqlite as store

        os.set_blocking(self.report_fd, False)
        lock_fd = os.open(os.path.join(self.log_dir, PROJECTOR_LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)  # an earlier child of this server may still be exiting
        shared = Shared(self.log_dir, create=False)
        words = shared.words
        conn = store._connect(self.database, self.synchronous)
        conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run here, after commits
        tail = LogTail(self.log_dir, store.applied_position(conn))
        words.store(APPLIED, tail.position)
        self.report(f"S {tail.position}")
        last_checkpoint = time.monotonic()
        checkpoint_commits = words.load(COMMITS)
        failing = False
        started = False   # caught up with the log once (then the priority drops)
        backoff = 0.0
        decode, apply_items = store.decode_record, store.apply_items
        # poll, not select: the fds keep the parent's numbers (pass_fds), and a server with many
        # sockets open hands over numbers >= FD_SETSIZE (1024), which select() refuses.
        wake = select.poll()
        wake.register(self.wake_fd, select.POLLIN)
        try:
            while True:
                ready = wake.poll((backoff or self.interval_s) * 1000.0)
                if ready:
                    try:
                        woken = os.read(self.wake_fd, 4096)
                    except InterruptedError:
                        woken = b"?"
                    if not woken:
                        return 0  # the parent died: its restart applies the rest
                stopping = words.load(STOP) != 0     # read before END: END is final once STOP is set
                end = words.load(END)
                try:
                    while tail.cursor < end:
                        records = tail.read(end, self.max_batch)
                        items = [(position, *decode(payload)) for payload, position in records]
                        apply_items(conn, items, items[-1][0])
                        tail.advance()
                        words.store(COMMITS, words.load(COMMITS) + 1)
                        words.store(APPLIED, tail.position)
                        if tail.cursor < end and _parent_gone(wake):
                            # An orphan with a backlog must not hold projector.lock past the new
                            # server's wait for it (LOCK_WAIT_S): that server's open() applies
                            # the rest from the log.
                            return 0
                except Exception as exc:  # the log keeps every batch: read them again later
                    tail.rewind()
                    if not failing:
                        log.exception("journal projection process: applying to SQLite failed; retrying")
                        self.report(f"E {type(exc).__name__}: {exc}".replace("\n", " "))
                    failing = True
                    backoff = min(max(backoff * 2, 0.05), 2.0)
                    if stopping:
                        return 1
                    continue
                if not started:
                    started = True
                    self._lower_priority()
                if failing:
                    log.warning("journal projection process: applying to SQLite recovered")
                    self.report(f"A {tail.position}")
                    failing, backoff = False, 0.0
                wanted = words.load(WANTED)
                if wanted and tail.position >= wanted:
                    self.report(f"A {tail.position}")
                commits = words.load(COMMITS)
                now = time.monotonic()
                if stopping or (commits - checkpoint_commits >= store.CHECKPOINT_MIN_COMMITS
                                and now - last_checkpoint >= store.CHECKPOINT_INTERVAL_S):
                    checkpoint_commits, last_checkpoint = commits, now
                    try:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                        words.store(CHECKPOINTS, words.load(CHECKPOINTS) + 1)
                    except sqlite3.Error:  # busy or locked: a later round tries again
                        log.debug("WAL checkpoint skipped", exc_info=True)
                if stopping:
                    self.report(f"A {tail.position}")
                    return 0
        finally:
            tail.close()
            conn.close()
            shared.close()
            os.close(lock_fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crossbook.persistence.projector",
                                     description="Apply a crossbook journal log to its SQLite store "
                                                 "(started by the server; not for direct use).")
    parser.add_argument("database")
    parser.add_argument("log_dir")
    parser.add_argument("--wake-fd", type=int, required=True)
    parser.add_argument("--report-fd", type=int, required=True)
    parser.add_argument("--synchronous", choices=("NORMAL", "FULL"), default="NORMAL")
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--max-batch", type=int, default=4096)
    parser.add_argument("--niceness", type=int, default=0,
                        help="added to this process's niceness once it has caught up with the log")
    args = parser.parse_args(argv)
    if not 0 < args.interval <= 60 or args.max_batch < 1:
        parser.error("--interval must be in (0, 60] and --max-batch positive")
    # Ctrl-C in a terminal, or a service manager's SIGTERM to every process of the service,
    # reach this child too: the server decides when it stops (close() applies everything
    # first; the server's death ends it by end of file), so neither signal is for us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s projector[{os.getpid()}] %(levelname)s %(message)s")
    try:
        return Projector(args.database, args.log_dir, synchronous=args.synchronous, interval_s=args.interval,
                         max_batch=args.max_batch, wake_fd=args.wake_fd, report_fd=args.report_fd,
                         niceness=args.niceness).run()
    except KeyboardInterrupt:
        return 1
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            return 0
        raise


if __name__ == "__main__":
    sys.exit(main())
