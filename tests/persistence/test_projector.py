"""The journal's projection in a child process (crossbook.persistence.projector): the barrier,
a killed child restarted with nothing lost, SQLite failing in the child and recovering, a
backlog waking it early, a previous server's child delaying open(), and the log reader itself
(records across segments, in bounded pieces, damage refused)."""
from __future__ import annotations

import asyncio
import fcntl
import itertools
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_journal_log import batch  # noqa: E402
from crossbook.persistence import LogCorrupt, OrderStore, SqliteJournal  # noqa: E402
from crossbook.persistence import sqlite as journal_module  # noqa: E402
from crossbook.persistence.log import (  # noqa: E402
    RECORD_HEADER, SEGMENT_HEADER, LogWriter, list_segments, log_directory, scan,
)
from crossbook.persistence.projector import END, PROJECTOR_LOCK, LogTail, Shared  # noqa: E402
from crossbook.persistence.sqlite import (  # noqa: E402
    _CHILD_MAIN, _child_environment, applied_position, encode_record,
)


def stored_orders(path: str) -> list[str]:
    store = OrderStore(path, catch_up=False)
    try:
        return [o["order_id"] for o in store.orders()]
    finally:
        store.close()


def started_journal(path: str, **settings) -> SqliteJournal:
    """A process-projection journal at ``path``, opened and started (call on the running loop)."""
    journal = SqliteJournal(path, projection="process", **settings)
    journal.open()
    journal.start()
    return journal


async def until(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_the_barrier_makes_the_store_current_however_long_the_interval(tmp_path, projection):
    path = str(tmp_path / "j.db")

    async def scenario() -> None:
        journal = SqliteJournal(path, projection=projection, projection_interval_s=30.0)
        journal.open()
        journal.start()
        try:
            for n in range(1, 4):
                journal.submit(batch(n), lambda _b: None)
            assert stored_orders(path) == []            # logged, not projected: 30 s to go
            await journal.wait_applied(10)
            assert stored_orders(path) == ["O1", "O2", "O3"]
            journal.submit(batch(4), lambda _b: None)
            await asyncio.gather(journal.wait_applied(10), journal.wait_applied(10))
            assert stored_orders(path)[-1] == "O4"
        finally:
            journal.close()

    asyncio.run(scenario())


def test_a_killed_projection_process_is_restarted_and_nothing_is_lost(tmp_path, caplog):
    path = str(tmp_path / "j.db")

    async def scenario() -> SqliteJournal:
        journal = started_journal(path, rotate_bytes=4096)
        for n in range(1, 201):
            journal.submit(batch(n), lambda _b: None)
        await journal.wait_applied(10)
        first = journal._child.pid
        os.kill(first, signal.SIGKILL)
        for n in range(201, 401):                        # reports keep flowing meanwhile
            journal.submit(batch(n), lambda _b: None)
        await until(lambda: journal.projection_error is not None, "the death to be noticed")
        assert "exited (code -9)" in str(journal.projection_error)
        await journal.wait_applied(10)                   # waits for the new child, does not fail
        assert journal._child.pid != first and journal.child_restarts == 1
        assert journal.projection_error is None
        assert len(stored_orders(path)) == 400
        journal.close()
        return journal

    with caplog.at_level(logging.WARNING, logger="crossbook.persistence"):
        journal = asyncio.run(scenario())
    assert any(r.levelno == logging.ERROR and "projection process" in r.getMessage() and "exited" in r.getMessage()
               for r in caplog.records)
    assert list_segments(log_directory(path)) == []     # closed cleanly: everything applied
    assert len(SqliteJournal(path).open().orders) == 400 and journal.writes == 400


def test_the_projection_process_runs_at_background_priority(tmp_path):
    """Its bursts must not preempt the loop: it gets PROJECTION_NICENESS once it has caught up
    with the log after starting (a restarted child too)."""
    from crossbook.persistence.sqlite import PROJECTION_NICENESS
    path = str(tmp_path / "j.db")

    async def scenario() -> None:
        journal = started_journal(path)
        try:
            base = os.getpriority(os.PRIO_PROCESS, 0)
            first = journal._child.pid
            journal.submit(batch(0), lambda _b: None)
            await journal.wait_applied(10)
            assert os.getpriority(os.PRIO_PROCESS, first) == min(19, base + PROJECTION_NICENESS) > base
            os.kill(first, signal.SIGKILL)
            journal.submit(batch(1), lambda _b: None)
            await journal.wait_applied(10)               # served by the restarted child
            assert journal._child.pid != first
            assert os.getpriority(os.PRIO_PROCESS, journal._child.pid) == min(19, base + PROJECTION_NICENESS)
        finally:
            journal.close()

    asyncio.run(scenario())


def test_close_right_after_the_child_died_still_applies_everything(tmp_path):
    path = str(tmp_path / "j.db")

    async def scenario() -> None:
        journal = started_journal(path, projection_interval_s=30.0)
        for n in range(1, 51):
            journal.submit(batch(n), lambda _b: None)
        child = journal._child
        os.kill(child.pid, signal.SIGKILL)
        await until(lambda: journal._child is None, "the death to be noticed")
        journal.close()                                  # its restart was pending: close runs one

    asyncio.run(scenario())
    assert len(stored_orders(path)) == 50
    assert list_segments(log_directory(path)) == []


def test_sqlite_failing_in_the_child_is_reported_and_recovers(tmp_path, caplog):
    path = str(tmp_path / "j.db")

    async def scenario() -> None:
        journal = started_journal(path, projection_interval_s=30.0)
        try:
            journal.submit(batch(1), lambda _b: None)
            await journal.wait_applied(10)
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("DROP TABLE orders")           # the child's next commit fails
            journal.submit(batch(2), lambda _b: None)
            with pytest.raises(asyncio.TimeoutError):
                await journal.wait_applied(0.5)
            await until(lambda: journal.projection_error is not None, "the failure report")
            assert "no such table" in str(journal.projection_error)
            with pytest.raises(RuntimeError, match="projection failing"):
                await journal.wait_applied(1)            # a reader hears it at once (HTTP: 503)
            other.executescript(journal_module.SCHEMA)   # the disk is fine again
            other.close()
            await until(lambda: journal.projection_error is None, "the recovery report")
            await journal.wait_applied(10)
            assert stored_orders(path) == ["O2"]         # O1 went with the dropped table
        finally:
            journal.close()

    with caplog.at_level(logging.ERROR, logger="crossbook.persistence"):
        asyncio.run(scenario())
    assert any("no such table" in r.getMessage() for r in caplog.records)


def test_a_backlog_of_max_batch_records_wakes_the_child_early(tmp_path):
    path = str(tmp_path / "j.db")

    async def scenario() -> None:
        journal = started_journal(path, projection_interval_s=30.0, max_batch=50)
        try:
            for n in range(1, 50):
                journal.submit(batch(n), lambda _b: None)
            await asyncio.sleep(0.3)
            assert stored_orders(path) == []             # below the backlog: the interval rules
            journal.submit(batch(50), lambda _b: None)
            conn = sqlite3.connect(path)
            await until(lambda: applied_position(conn) == journal._position, "the early projection")
            conn.close()
        finally:
            journal.close()

    asyncio.run(scenario())


def test_open_waits_for_a_previous_servers_projection_process(tmp_path, monkeypatch):
    path = str(tmp_path / "j.db")
    directory = log_directory(path)
    os.makedirs(directory)
    fd = os.open(os.path.join(directory, PROJECTOR_LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)          # what a killed server's child still holds
    monkeypatch.setattr(journal_module, "LOCK_WAIT_S", 0.2)
    with pytest.raises(RuntimeError, match="projection process is still running"):
        SqliteJournal(path).open()
    monkeypatch.setattr(journal_module, "LOCK_WAIT_S", 10.0)
    threading.Timer(0.3, os.close, (fd,)).start()   # it exits
    started = time.monotonic()
    journal = SqliteJournal(path)
    journal.open()
    assert time.monotonic() - started >= 0.2
    journal.close()


# ---------------------------------------------------------------------------------- LogTail
def write_records(directory: str, count: int, rotate: int) -> tuple[list[bytes], int]:
    """``count`` records (payloads of growing size) written as the journal does, rotating at
    ``rotate`` bytes; returns the payloads and the end position."""
    writer = LogWriter(directory, 0)
    payloads = []
    for n in range(1, count + 1):
        payloads.append(encode_record(batch(n)) + b" " * (n * 7))
        writer.append(payloads[-1])
        if writer.segment_bytes >= rotate:
            writer.rotate()
    writer.close()
    return payloads, writer.position


@pytest.mark.parametrize("max_bytes", [1 << 20, 900, 10])
def test_log_tail_reads_every_record_across_segments_in_bounded_pieces(tmp_path, max_bytes):
    directory = str(tmp_path / "log")
    payloads, end = write_records(directory, 60, rotate=4096)
    assert len(list_segments(directory)) > 5
    tail = LogTail(directory, 0)
    got: list[bytes] = []
    ends: list[int] = []
    while tail.cursor < end:
        records = tail.read(end, max_records=7, max_bytes=max_bytes)
        assert 1 <= len(records) <= 7      # a record larger than the budget still comes whole
        size = sum(len(p) + RECORD_HEADER.size for p, _ in records)
        assert size <= max_bytes or len(records) == 1  # the budget bounds memory
        got += [p for p, _ in records]
        ends += [e for _, e in records]
        tail.advance()
    assert got == payloads and ends == sorted(set(ends)) and ends[-1] == end
    # Every segment it finished is deleted; the one the writer would append to stays.
    assert [base for base, _ in list_segments(directory)] == [list_segments(directory)[-1][0]]
    tail.close()


def test_log_tail_stops_at_the_published_end_and_rewinds_after_a_failed_commit(tmp_path):
    directory = str(tmp_path / "log")
    payloads, end = write_records(directory, 30, rotate=4096)
    tail = LogTail(directory, 0)
    some = tail.read(end, max_records=12)
    middle = some[-1][1]
    tail.rewind()                                     # the commit failed: read them again
    assert tail.read(middle, max_records=100) == some  # nothing past the published end
    tail.advance()
    rest = tail.read(end, max_records=100)
    assert [p for p, _ in some + rest] == payloads
    tail.close()
    # A new reader (a restarted child) at the applied position deletes the segments an earlier
    # one finished but was killed before deleting.
    directory = str(tmp_path / "again")
    write_records(directory, 30, rotate=4096)
    before = [base for base, _ in list_segments(directory)]
    LogTail(directory, middle).close()
    bases = [base for base, _ in list_segments(directory)]
    assert bases[0] <= middle and (len(bases) == 1 or bases[1] > middle)
    assert bases == [base for base in before if base >= bases[0]] and len(bases) < len(before)


@pytest.mark.parametrize("damage", ["crc", "length", "cut"])
def test_log_tail_refuses_a_record_that_is_not_what_was_written(tmp_path, damage):
    directory = str(tmp_path / "log")
    _, end = write_records(directory, 5, rotate=1 << 20)
    [(_, segment)] = list_segments(directory)
    second = SEGMENT_HEADER.size + RECORD_HEADER.size + RECORD_HEADER.unpack_from(
        open(segment, "rb").read(), SEGMENT_HEADER.size)[0]
    with open(segment, "r+b") as f:
        if damage == "crc":
            f.seek(second + RECORD_HEADER.size + 3)
            f.write(b"#")
        elif damage == "length":
            f.seek(second)
            f.write(b"\0\0\0\0")
        else:
            f.truncate(os.path.getsize(segment) - 5)
    tail = LogTail(directory, 0)
    with pytest.raises(LogCorrupt, match="CRC mismatch|record length 0|ends inside the record"):
        while tail.cursor < end:
            tail.read(end, max_records=100)
    tail.close()


def test_the_projection_process_imports_neither_numba_nor_the_oms():
    """It starts fast (persistence, the standard library and orjson only)."""
    import subprocess

    code = ("import sys; from crossbook.persistence.projector import main; "
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in ('numba', 'numpy', 'crossbook'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    modules = out.split()
    assert "crossbook.persistence.projector" in modules
    assert not [m for m in modules if m.startswith(("numba", "numpy", "crossbook.oms", "crossbook.core"))], modules


def test_the_child_reports_only_while_a_reader_waits(tmp_path):
    """Its commits reach the loop as a report line only for a waiting reader (no wake-up of the
    loop per projection round otherwise)."""
    from crossbook.persistence.projector import WANTED

    path = str(tmp_path / "j.db")

    async def scenario() -> None:
        journal = started_journal(path, projection_interval_s=0.005)
        try:
            loop = asyncio.get_running_loop()
            lines: list[bytes] = []
            fd = journal._report_r

            def counting() -> None:
                before = journal._report_buf
                journal._on_report()
                lines.append(before)

            loop.remove_reader(fd)
            loop.add_reader(fd, counting)
            journal.submit(batch(1), lambda _b: None)
            await journal.wait_applied(10)
            assert journal._words.load(WANTED) == 0
            reports = len(lines)
            assert reports >= 1                          # the start, the barrier's answer
            for n in range(2, 40):
                journal.submit(batch(n), lambda _b: None)
                await asyncio.sleep(0.01)                # several projection rounds, no reader
            conn = sqlite3.connect(path)
            await until(lambda: applied_position(conn) == journal._position, "the projection")
            conn.close()
            await asyncio.sleep(0.05)
            assert len(lines) == reports
        finally:
            journal.close()

    asyncio.run(scenario())


def test_the_child_runs_the_same_crossbook_as_the_server():
    import crossbook
    from crossbook.persistence.sqlite import _child_environment

    first = _child_environment()["PYTHONPATH"].split(os.pathsep)[0]
    assert Path(first, "crossbook", "__init__.py").resolve() == Path(crossbook.__file__).resolve()


def test_a_journal_dropped_without_close_ends_its_projection_process(tmp_path):
    import gc

    path = str(tmp_path / "j.db")

    async def scenario() -> int:
        journal = started_journal(path)
        journal.submit(batch(1), lambda _b: None)
        child = journal._child
        report = os.readlink(f"/proc/self/fd/{journal._report_r}")      # "pipe:[inode]"
        asyncio.get_running_loop().remove_reader(journal._report_r)     # the loop let go of it
        del journal                      # no close(): only the wake pipe's end can stop the child
        gc.collect()
        # The journal closed its end of the report pipe too ...
        assert report not in [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                              if os.path.exists(f"/proc/self/fd/{fd}")]
        # ... and reaps the child (its entry disappears; without a reap it stays a zombie). The
        # test never waits for it itself: child.returncode is what the reaper stored.
        for _ in range(1000):
            if not os.path.exists(f"/proc/{child.pid}"):
                return child.returncode
            await asyncio.sleep(0.01)
        child.kill()
        child.wait()
        raise AssertionError("the projection process outlived its journal or was never reaped")

    assert asyncio.run(scenario()) == 0
    reopened = SqliteJournal(path)
    assert [o["order_id"] for o in reopened.open().orders] == ["O1"]     # the next open() applies it
    reopened.close()


def test_sigint_and_sigterm_to_the_group_leave_the_stop_to_the_server(tmp_path):
    """A Ctrl-C or a service manager's SIGTERM reaches the child too; the server's close() must
    still find it running, so everything is applied and the log deleted."""
    path = str(tmp_path / "j.db")

    async def scenario() -> None:
        journal = started_journal(path, projection_interval_s=30.0)
        journal.submit(batch(1), lambda _b: None)
        await journal.wait_applied(10)                  # it runs (its handlers are set)
        for sig in (signal.SIGINT, signal.SIGTERM):
            os.kill(journal._child.pid, sig)
        journal.submit(batch(2), lambda _b: None)
        await asyncio.sleep(0.1)
        assert journal._child is not None and journal._child.poll() is None
        journal.close()
        assert journal.child_restarts == 0

    asyncio.run(scenario())
    assert stored_orders(path) == ["O1", "O2"] and list_segments(log_directory(path)) == []


# ------------------------------------------------------------- review findings (defects)
def test_a_rewind_at_a_segment_boundary_still_deletes_the_finished_segment(tmp_path):
    """The failed transaction started exactly where a segment ends (caught up right after a
    rotation): after the rewind the reader reopens at the next segment, and the finished one
    must still be deleted once applied (it was left below a gap, which scan() refused)."""
    directory = str(tmp_path / "log")
    _, end = write_records(directory, 60, rotate=4096)
    bases = [base for base, _ in list_segments(directory)]
    assert len(bases) > 3
    boundary = bases[1]
    tail = LogTail(directory, 0)
    while tail.cursor < boundary:                      # applied up to the first segment's end
        tail.read(boundary, max_records=100)
        tail.advance()
    assert tail.position == boundary and [b for b, _ in list_segments(directory)] == bases
    failed = tail.read(end, max_records=3)             # into the next segment; the commit fails
    assert failed and failed[0][1] > boundary
    tail.rewind()
    assert tail.read(end, max_records=3) == failed     # read again, now committed
    while tail.cursor < end:
        tail.read(end, max_records=100)
        tail.advance()
    tail.close()
    assert [b for b, _ in list_segments(directory)] == [bases[-1]]   # no segment left behind
    assert scan(directory, end).records == []


def test_scan_skips_applied_segments_with_a_gap_below_the_applied_position(tmp_path):
    """A log an older projection left as [A, gap, current] opens when the gap lies below what
    the store has applied; a gap past it is still refused (records the store lacks)."""
    directory = str(tmp_path / "log")
    payloads, end = write_records(directory, 60, rotate=4096)
    segments = list_segments(directory)
    for _, path in segments[1:-2]:
        os.unlink(path)                                # the middle went, the first stayed
    kept = segments[-2][0]
    result = scan(directory, kept)                     # the store applied up to the gap's end
    ends = list(itertools.accumulate(RECORD_HEADER.size + len(p) for p in payloads))
    assert result.torn is None and result.end == end
    assert [p for p, _ in result.records] == [p for p, e in zip(payloads, ends) if e > kept]
    with pytest.raises(LogCorrupt, match="records in between are missing"):
        scan(directory, segments[1][0])                # applied only up to where the gap starts


def test_a_failed_commit_right_after_a_rotation_leaves_a_log_that_reopens_after_a_crash(tmp_path):
    """End to end: the child catches up exactly to a segment's end, its next commit fails and
    recovers, more segments are written and applied; then the server dies (kill -9 of its
    process: the lock, the child and the pipes go). The restart and a reader both open the log."""
    path = str(tmp_path / "j.db")

    async def scenario() -> tuple[int, int]:
        journal = started_journal(path, rotate_bytes=4096, projection_interval_s=0.01)
        n = 0
        while len(list_segments(log_directory(path))) == 1:
            n += 1
            journal.submit(batch(n), lambda _b: None)
        await journal.wait_applied(10)                 # applied exactly to the first segment's end
        assert journal._applied == journal._writer.base
        before = n                                     # the dropped table takes these
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("DROP TABLE orders")             # the next commit fails
        for _ in range(3):
            n += 1
            journal.submit(batch(n), lambda _b: None)
        await until(lambda: journal.projection_error is not None, "the failure report")
        other.executescript(journal_module.SCHEMA)
        other.close()
        await until(lambda: journal.projection_error is None, "the recovery report")
        for _ in range(200):                           # several more segments
            n += 1
            journal.submit(batch(n), lambda _b: None)
        await journal.wait_applied(10)
        bases = [b for b, _ in list_segments(log_directory(path))]
        assert bases == [journal._writer.base], bases  # every applied segment deleted
        # The server is killed: its child sees end of file, the kernel drops the lock.
        child = journal._child
        asyncio.get_running_loop().remove_reader(journal._report_r)
        journal._close_child_pipes()
        assert child.wait(10) == 0
        journal._child = None
        journal._writer.close()
        journal._lock.release()
        journal._shared.close()
        journal._words = journal._shared = journal._writer = journal._lock = None
        return n, before

    n, before = asyncio.run(scenario())
    store = OrderStore(path)                           # catch_up: applies a dead server's tail
    assert len(store.orders()) == n - before
    store.close()
    reopened = SqliteJournal(path)
    assert len(reopened.open().orders) == n - before
    reopened.close()


def test_the_child_waits_on_descriptors_above_1024(tmp_path):
    """A server with many sockets open hands the child pipe numbers >= 1024 (pass_fds keeps the
    numbers), which select() refuses: the child crash-looped and the store stopped advancing."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1400
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip(f"the hard RLIMIT_NOFILE is {hard}: cannot open descriptors beyond 1024 here")
    path = str(tmp_path / "j.db")
    held: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want) if soft != resource.RLIM_INFINITY else soft, hard))
    try:
        while not held or held[-1] < 1100:             # what a busy server's sockets look like
            held.append(os.open(os.devnull, os.O_RDONLY))
            assert len(held) < want

        async def scenario() -> None:
            journal = started_journal(path)
            try:
                assert journal._wake_w > 1024 and journal._report_r > 1024
                journal.submit(batch(1), lambda _b: None)
                await journal.wait_applied(10)
                assert journal.child_restarts == 0 and journal.projection_error is None
                journal.submit(batch(2), lambda _b: None)
                await journal.wait_applied(10)
            finally:
                journal.close()

        asyncio.run(scenario())
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert stored_orders(path) == ["O1", "O2"]


def test_an_orphaned_child_stops_between_transactions_of_a_backlog(tmp_path):
    """The server died while its child had a backlog: the child must exit after the transaction
    it is in (it holds projector.lock, which the new server waits for only LOCK_WAIT_S), not
    apply the whole backlog first; the new server's open() applies the rest."""
    path = str(tmp_path / "j.db")
    first = SqliteJournal(path)
    first.open()                                       # the store and its schema
    first.close()
    directory = log_directory(path)
    writer = LogWriter(directory, 0)
    count = 2000
    for n in range(1, count + 1):
        writer.append(encode_record(batch(n)))
    writer.close()
    shared = Shared(directory, create=True)
    shared.words.store(END, writer.position)
    wake_r, wake_w = os.pipe()
    report_r, report_w = os.pipe()
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", _CHILD_MAIN, path, directory, "--wake-fd", str(wake_r),
                              "--report-fd", str(report_w), "--interval", "60", "--max-batch", "1"],
                             pass_fds=(wake_r, report_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             env=_child_environment())
    os.close(wake_r)
    os.close(report_w)
    try:
        assert os.read(report_r, 100).startswith(b"S 0")   # it started and waits (60 s interval)
        os.write(wake_w, b"w")                         # a backlog: apply now ...
        os.close(wake_w)                               # ... and the server dies right after
        code = child.wait(60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(report_r)
        shared.close(unlink=True)
    assert code == 0
    conn = sqlite3.connect(path)
    applied = applied_position(conn)
    conn.close()
    assert 0 < applied < writer.position               # one record per transaction: it stopped early
    reopened = SqliteJournal(path)
    assert len(reopened.open().orders) == count        # the restart applies the rest
    reopened.close()
