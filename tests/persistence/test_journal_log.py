"""The journal log: durable on the loop, projected into SQLite later, recovered after kill -9.

Real files throughout; the crash tests kill a real process with SIGKILL in the middle of a stream
of batches and check that every batch it reported durable comes back."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from crossbook.oms.manager import Batch
from crossbook.persistence import LogCorrupt, OrderStore, SqliteJournal
from crossbook.persistence.log import (
    RECORD_HEADER, SEGMENT_HEADER, LogWriter, list_segments, log_directory,
)
from crossbook.persistence.sqlite import applied_position, encode_batch


def order_row(n: int, state: str = "new") -> dict:
    return {"order_id": f"O{n}", "seq": n, "session": "FIRM1", "account": "ACC1", "symbol": "AAPL",
            "state": state, "created_ns": n, "updated_ns": n, "cum_qty": 0, "cl_ord_ids": [f"C{n}"]}


def batch(n: int) -> Batch:
    b = Batch()
    b.orders[f"O{n}"] = order_row(n)
    b.executions.append({"seq": n, "exec_id": f"X{n}", "order_id": f"O{n}", "account": "ACC1", "symbol": "AAPL",
                         "ts": n, "session": "FIRM1"})
    b.risk_usage[0] = {"open_orders": n}
    b.meta["order_seq"] = str(n)
    return b


def write_log(path: str, count: int) -> list[tuple[int, str]]:
    """A database that has applied nothing, and a log of ``count`` batches (what a server killed
    before its projection ran leaves behind). Returns the segments."""
    journal = SqliteJournal(path)
    journal.open()
    journal.close()
    writer = LogWriter(log_directory(path), 0)
    for n in range(1, count + 1):
        writer.append(encode_batch(batch(n))[0])
    writer.close()
    return list_segments(log_directory(path))


def record_offsets(segment: str) -> list[int]:
    """File offsets at which the segment's records start."""
    data = open(segment, "rb").read()
    offsets, offset = [], SEGMENT_HEADER.size
    while offset < len(data):
        offsets.append(offset)
        offset += RECORD_HEADER.size + RECORD_HEADER.unpack_from(data, offset)[0]
    return offsets


def test_recovers_a_log_the_store_never_applied(tmp_path):
    path = str(tmp_path / "j.db")
    write_log(path, 10)
    assert OrderStore(path, catch_up=False).orders() == []     # the store alone lacks all of it
    journal = SqliteJournal(path)
    state = journal.open()
    assert [o["order_id"] for o in state.orders] == [f"O{n}" for n in range(1, 11)]
    assert state.meta == {"order_seq": "10"} and state.risk == {0: {"open_orders": 10}}
    assert [e["exec_id"] for e in state.recent_executions] == [f"X{n}" for n in range(1, 11)]
    assert sorted(state.cl_ord_ids) == sorted(("FIRM1", f"C{n}", f"O{n}") for n in range(1, 11))
    assert journal.recovered_records == 10
    assert list_segments(log_directory(path)) == []            # applied, so gone
    journal.close()
    assert len(SqliteJournal(path).open().orders) == 10         # and nothing applied twice


@pytest.mark.parametrize("cut", ["payload", "record_header", "zero_fill", "segment_header"])
def test_a_torn_last_record_is_dropped_and_said_so(tmp_path, caplog, cut, projection):
    path = str(tmp_path / "j.db")
    [(_, segment)] = write_log(path, 5)
    last = record_offsets(segment)[-1]
    size = os.path.getsize(segment)
    with open(segment, "r+b") as f:
        if cut == "payload":            # killed inside the write: the record's end never arrived
            f.truncate(size - 3)
        elif cut == "record_header":
            f.truncate(last + 5)
        elif cut == "zero_fill":        # length reached the disk, the data did not (power loss)
            f.truncate(last)
            f.seek(last)
            f.write(b"\0" * 300)
        else:
            f.truncate(7)
    expected = 0 if cut == "segment_header" else 4
    with caplog.at_level(logging.WARNING, logger="crossbook.persistence"):
        journal = SqliteJournal(path, projection=projection)
        state = journal.open()
    assert [o["order_id"] for o in state.orders] == [f"O{n}" for n in range(1, expected + 1)]
    assert any("torn last record" in r.getMessage() and "never finished" in r.getMessage() for r in caplog.records)

    async def more() -> None:             # the log goes on from there
        journal.start()
        journal.submit(batch(6), lambda _b: None)
        await journal.wait_applied()
        journal.close()

    asyncio.run(more())
    assert [o["order_id"] for o in SqliteJournal(path).open().orders][-1] == "O6"


def test_a_crc_mismatch_in_the_last_record_is_a_torn_write(tmp_path, caplog):
    path = str(tmp_path / "j.db")
    [(_, segment)] = write_log(path, 5)
    with open(segment, "r+b") as f:
        f.seek(os.path.getsize(segment) - 2)
        f.write(b"#")
    with caplog.at_level(logging.WARNING, logger="crossbook.persistence"):
        state = SqliteJournal(path).open()
    assert len(state.orders) == 4
    assert any("CRC mismatch" in r.getMessage() for r in caplog.records)


def test_a_crc_mismatch_with_records_after_it_refuses_to_start(tmp_path):
    path = str(tmp_path / "j.db")
    [(_, segment)] = write_log(path, 5)
    second = record_offsets(segment)[1]
    with open(segment, "r+b") as f:
        f.seek(second + RECORD_HEADER.size + 10)
        f.write(b"#")
    damaged = open(segment, "rb").read()
    with pytest.raises(LogCorrupt, match=r"CRC mismatch at position \d+ with \d+ more bytes after it"):
        SqliteJournal(path).open()
    with pytest.raises(LogCorrupt):           # a reader refuses too, and leaves the log alone
        OrderStore(path)
    assert open(segment, "rb").read() == damaged
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 0
    conn.close()


def test_rotation_keeps_the_log_bounded(tmp_path, projection):
    path = str(tmp_path / "j.db")
    seen_segments = []

    async def scenario() -> SqliteJournal:
        journal = SqliteJournal(path, rotate_bytes=4096, projection_interval_s=0.005, projection=projection)
        journal.open()
        journal.start()
        for n in range(1, 401):
            journal.submit(batch(n), lambda _b: None)
            if n % 20 == 0:
                await journal.wait_applied()
                seen_segments.append(len(list_segments(log_directory(path))))
        await journal.wait_applied()
        await asyncio.sleep(0.05)
        seen_segments.append(len(list_segments(log_directory(path))))
        journal.close()
        return journal

    journal = asyncio.run(scenario())
    assert journal.writes == 400
    # 400 records of ~600 bytes are ~60 segments of 4 KiB; applied ones are deleted right away.
    assert max(seen_segments) <= 2 and seen_segments[-1] == 1
    assert list_segments(log_directory(path)) == []             # closed cleanly: all applied
    conn = sqlite3.connect(path)
    assert applied_position(conn) == journal._position and conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 400
    conn.close()


@pytest.mark.parametrize("synchronous, syncs", [("NORMAL", False), ("FULL", True)])
def test_full_syncs_every_write_normal_none(tmp_path, monkeypatch, synchronous, syncs, projection):
    calls = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (calls.append(fd), real(fd))[1])
    path = str(tmp_path / "j.db")

    async def scenario() -> SqliteJournal:
        journal = SqliteJournal(path, synchronous=synchronous, rotate_bytes=1 << 20, projection=projection)
        journal.open()
        assert journal._conn.execute("PRAGMA synchronous").fetchone()[0] == (2 if syncs else 1)
        journal.start()
        calls.clear()                 # the new segment's header sync does not count
        for n in range(1, 21):
            journal.submit(batch(n), lambda _b: None)
        if projection == "process":   # the child opens its connection with the same setting
            assert journal._child.args[journal._child.args.index("--synchronous") + 1] == synchronous
        journal.close()
        return journal

    asyncio.run(scenario())
    assert len(calls) == (20 if syncs else 0)


def test_bad_settings_are_named():
    for kwargs, word in (({"projection_interval_s": 0}, "projection_interval_s"), ({"rotate_bytes": 10}, "rotate_bytes"),
                         ({"max_batch": 0}, "max_batch"), ({"synchronous": 2}, "synchronous"),
                         ({"projection": "fork"}, "projection")):
        with pytest.raises(ValueError, match=word):
            SqliteJournal(":memory:", **kwargs)


def test_a_reader_waits_for_a_live_servers_projection(tmp_path, projection):
    path = str(tmp_path / "j.db")

    async def scenario() -> None:
        journal = SqliteJournal(path, projection_interval_s=0.3, projection=projection)
        journal.open()
        journal.start()
        journal.submit(batch(1), lambda _b: None)
        assert OrderStore(path, catch_up=False).order("O1") is None   # not projected yet
        # Another reader (crossbook orders --db) while the server holds the log: it waits.
        store = await asyncio.to_thread(OrderStore, path)
        assert store.order("O1")["state"] == "new"
        store.close()
        journal.close()

    asyncio.run(scenario())


CHILD = textwrap.dedent("""
    import asyncio, sys
    sys.path[:0] = {paths!r}
    from crossbook.oms.manager import Batch
    from crossbook.persistence import SqliteJournal

    path, interval, rotate, projection = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

    async def main():
        journal = SqliteJournal(path, projection_interval_s=interval, rotate_bytes=rotate, projection=projection)
        journal.open()
        journal.start()
        if journal._child is not None:     # the projection process: it must not outlive us
            sys.stdout.write(f"P {{journal._child.pid}}\\n")
        n = 0
        while True:
            n += 1
            b = Batch()
            b.orders[f"O{{n}}"] = {{"order_id": f"O{{n}}", "seq": n, "session": "FIRM1", "account": "ACC1",
                                   "symbol": "AAPL", "state": "new", "created_ns": n, "updated_ns": n,
                                   "cl_ord_ids": [f"C{{n}}"]}}
            b.executions.append({{"seq": n, "exec_id": f"X{{n}}", "order_id": f"O{{n}}", "account": "ACC1",
                                  "symbol": "AAPL", "ts": n, "session": "FIRM1"}})
            b.risk_usage[0] = {{"open_orders": n}}
            b.meta["order_seq"] = str(n)
            # What a report would say goes out only once the batch is durable.
            journal.submit(b, lambda _b, n=n: sys.stdout.write(f"{{n}}\\n") and sys.stdout.flush())
            if n % 25 == 0:
                await asyncio.sleep(0)

    asyncio.run(main())
""")


def kill_mid_stream(path: str, interval: float, rotate: int, count: int,
                    projection: str = "thread") -> tuple[int, int | None]:
    """Run a journal in its own process, SIGKILL it after ``count`` durable batches; returns the
    highest batch it reported durable and the pid of its projection process (None: a thread)."""
    code = CHILD.format(paths=[p for p in sys.path if p])
    proc = subprocess.Popen([sys.executable, "-c", code, path, str(interval), str(rotate), projection],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last, projector = 0, None
    try:
        for line in proc.stdout:
            if line.startswith("P "):
                projector = int(line[2:])
                continue
            last = int(line)
            if last >= count:
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.kill()
        rest, err = proc.communicate(timeout=30)
    for line in rest.splitlines():      # reported before the kill landed
        if line.strip().isdigit():
            last = max(last, int(line))
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    assert (projector is not None) == (projection == "process")
    return last, projector


def gone_within(pid: int, seconds: float) -> bool:
    """Whether process ``pid`` (a grandchild: not ours to reap) has exited within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":   # exited, waiting for init
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("interval", [60.0, 0.005], ids=["never_projected", "partly_projected"])
def test_kill_9_mid_stream_loses_no_durable_batch(tmp_path, interval, projection):
    path = str(tmp_path / "j.db")
    last, projector = kill_mid_stream(path, interval, rotate=16384, count=3000, projection=projection)
    if projector is not None:   # the parent's death (end of file on its wake pipe) ends the child
        assert gone_within(projector, 10), f"projection process {projector} outlived its killed parent"
    segments = list_segments(log_directory(path))
    conn = sqlite3.connect(path)
    projected = conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
    conn.close()
    if interval == 60.0:
        assert projected == 0 and len(segments) > 10     # all of it only in the (rotated) log
    # `crossbook orders` without a server: the reader applies the dead server's tail.
    store = OrderStore(path)
    ids = {o["order_id"] for o in store.orders()}
    assert {f"O{n}" for n in range(1, last + 1)} <= ids
    assert len(store.executions()) == len(ids)
    store.close()
    assert list_segments(log_directory(path)) == []
    # The server's own restart finds the same, with counters and risk usage at least as far.
    journal = SqliteJournal(path)
    state = journal.open()
    assert len(state.orders) == len(ids) and int(state.meta["order_seq"]) >= last
    assert state.risk[0]["open_orders"] == int(state.meta["order_seq"])
    journal.close()


def test_a_failed_rotation_acknowledges_the_logged_batch_and_stops(tmp_path, monkeypatch, projection):
    path = str(tmp_path / "j.db")

    async def scenario() -> int:
        journal = SqliteJournal(path, rotate_bytes=4096, projection=projection)
        journal.open()
        journal.start()
        delivered = []
        monkeypatch.setattr(journal._writer, "_open_segment",
                            lambda base: (_ for _ in ()).throw(OSError(28, "No space left on device")))
        n = 0
        while journal.failed is None:
            n += 1
            journal.submit(batch(n), lambda b: delivered.append(b))
        assert len(delivered) == n                   # the batch that filled the segment is logged
        with pytest.raises(RuntimeError, match="journal failed: .*No space"):
            journal.submit(batch(n + 1), delivered.append)
        journal.close()
        return n

    acknowledged = asyncio.run(scenario())
    assert len(SqliteJournal(path).open().orders) == acknowledged


@pytest.mark.parametrize("count", [1, 5, 341, 600])
def test_projection_multi_row_statements_store_what_row_by_row_stores(tmp_path, count):
    """apply_items writes rows with multi-row INSERTs cut into 256/64/16/4/1-row statements: the
    store holds exactly what one statement per row gives, including an order changed in a later
    batch of the same transaction (the later row wins) and the counts that need every size."""
    from crossbook.persistence import sqlite as sq

    batches = [batch(n) for n in range(1, count + 1)]
    later = Batch()  # the first order again, filled, in a later batch of the same transaction
    later.orders["O1"] = order_row(1, state="filled")
    later.executions.append({"seq": count + 1, "exec_id": f"X{count + 1}", "order_id": "O1", "account": "ACC1",
                             "symbol": "AAPL", "ts": count + 1, "session": "FIRM1"})
    batches.append(later)
    items, position = [], 0
    for b in batches:
        payload, orders, executions, cl_ord_ids, meta = encode_batch(b)
        position += len(payload)
        items.append((position, orders, executions, cl_ord_ids, meta))

    def dump(conn):
        return ([tuple(r) for r in conn.execute("SELECT * FROM orders ORDER BY order_id")],
                [tuple(r) for r in conn.execute("SELECT * FROM executions ORDER BY seq")],
                sorted(conn.execute("SELECT * FROM meta")), applied_position(conn))

    fast = sq._connect(str(tmp_path / "fast.db"))
    fast.executescript(sq.SCHEMA)
    sq.apply_items(fast, items, position)
    reference = sq._connect(str(tmp_path / "reference.db"))
    reference.executescript(sq.SCHEMA)
    reference.execute("BEGIN")
    for _, orders, executions, _, meta in items:
        reference.executemany(sq._UPSERT_ORDER, orders)
        reference.executemany(sq._INSERT_EXECUTION, executions)
        reference.executemany(sq._INSERT_META, meta.items())
    reference.execute(sq._SET_APPLIED, (position,))
    reference.execute("COMMIT")
    got, want = dump(fast), dump(reference)
    assert got == want
    assert len(got[0]) == count and len(got[1]) == count + 1
    assert [r for r in got[0] if r[0] == "O1"][0][6] == 0   # is_open of the later, filled row
