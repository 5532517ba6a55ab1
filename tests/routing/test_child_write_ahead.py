"""Write-ahead for a router's children (SmartRouter._send_children_durably, AuditLog.record_durable):
a child leaving for a venue whose orders outlive the process (``outlives_process``: FixVenue) has
its ``child_sent`` row committed before it leaves; in-process venues keep the queued path. The
kill itself, with real processes: tests/e2e/test_router_write_ahead.py."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
import time

import pytest

from crossbook.app.server import SystemClock
from crossbook.core import OrdType, Side, TimeInForce
from crossbook.model.instruments import DEFAULT_INSTRUMENTS, InstrumentMaster
from crossbook.routing import router as router_module
from crossbook.routing.audit import MemoryAuditLog, SqliteAuditLog, read_audit
from crossbook.routing.router import SmartRouter
from crossbook.routing.venue import VenueEventKind as K, VenueOrder
from crossbook.venues import InProcessVenue

MASTER = InstrumentMaster.from_config(DEFAULT_INSTRUMENTS)
AAPL = MASTER.by_symbol("AAPL")


def _row(event: str, child: str = "", detail=None) -> tuple:
    parent = child.split(".")[0] if child else "P1"
    return (1, "SOR", parent, f"O{parent[1:]}.1", event, "VENUE-A", child, 10, 23000, detail or {})


def _until(pred, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_record_durable_writes_ahead_then_commits_in_order_and_empties_its_file(tmp_path):
    path = str(tmp_path / "audit.db")
    log = SqliteAuditLog(path)
    try:
        assert log.ahead_path == path + "-ahead.0"
        log.record(_row("parent_new"))
        log.record(_row("decision"))
        log.record_durable([_row("child_sent", "P1.1", {"mirror": True}), _row("child_sent", "P1.2")])
        log.record(_row("child_new", "P1.1"))
        assert log.sync()
        assert [(r["event"], r["child_id"], r["detail"]) for r in read_audit(path, "P1")] == [
            ("parent_new", "", {}), ("decision", "", {}), ("child_sent", "P1.1", {"mirror": True}),
            ("child_sent", "P1.2", {}), ("child_new", "P1.1", {})]
        # Everything written ahead is committed: the file is emptied (bounded).
        _until(lambda: os.path.getsize(log.ahead_path) == 0, "the write-ahead file emptied")
    finally:
        log.close()
    assert not os.path.exists(log.ahead_path)


class _Stalled:
    """The writer thread's connection once stalled: any statement waits until the test ends,
    then fails, so nothing recorded from the stall on is committed (a thread that has not run)."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def execute(self, *args):
        self.gate.wait(10)
        raise sqlite3.OperationalError("stalled by the test")

    executemany = execute


def _stall_writer(log: SqliteAuditLog) -> threading.Event:
    gate = threading.Event()
    log._real_conn, log._conn = log._conn, _Stalled(gate)
    return gate


def _die(log: SqliteAuditLog) -> None:
    """What a killed process leaves: the write-ahead file and its lock released, nothing flushed."""
    os.close(log._ahead_fd)
    log._ahead_fd = None


def test_rows_written_ahead_survive_a_death_before_their_commit(tmp_path):
    path = str(tmp_path / "audit.db")
    log = SqliteAuditLog(path)
    log.record_durable([_row("child_sent", "P0.1")])            # committed before the death
    assert log.sync()
    gate = _stall_writer(log)
    log.record(_row("parent_new"))                               # only queued: goes ahead with its child
    log.record(_row("parent_replaced", "", {"of": "P1"}))         # an answer to the parent: lost
    # (a parent's END rows go ahead with its children: test_router_settle_ends.py)
    log.record_durable([_row("child_sent", "P1.1", {"mirror": True}), _row("child_sent", "P1.2")])
    with open(log.ahead_path, "rb") as f:
        assert f.read().count(b"\n") >= 2                      # on file before record_durable returned
    _die(log)
    with open(log.ahead_path, "ab") as f:
        f.write(b'[1, "SOR", "P1", "O1.1", "child_se')           # a torn last write: never sent
    again = SqliteAuditLog(path)
    try:
        assert again.recovered == 3
        assert [(r["event"], r["child_id"]) for r in again.query("P1")] == [
            ("parent_new", ""), ("child_sent", "P1.1"), ("child_sent", "P1.2")]
        assert [r["event"] for r in again.query("P0")] == ["child_sent"]   # not duplicated
        assert again.query("P1")[1]["detail"] == {"mirror": True}
        assert os.path.getsize(again.ahead_path) == 0
    finally:
        again.close()
        gate.set()
        log._thread.join(5)
        log._real_conn.close()


def test_logs_sharing_a_database_keep_their_own_write_ahead_files(tmp_path):
    path = str(tmp_path / "audit.db")
    first = SqliteAuditLog(path)
    gate = _stall_writer(first)
    first.record_durable([_row("child_sent", "P1.1")])
    second = SqliteAuditLog(path)        # e.g. a second router with the same audit_path
    try:
        assert second.ahead_path != first.ahead_path
        assert second.recovered == 0     # the first one's file is held: not taken
        assert os.path.getsize(first.ahead_path) > 0
    finally:
        second.close()
        _die(first)
        gate.set()
        first._thread.join(5)
        first._real_conn.close()


def test_record_durable_refuses_once_the_log_has_failed(tmp_path):
    log = SqliteAuditLog(str(tmp_path / "audit.db"))
    try:
        log.record((None,) + _row("child_sent", "P1.1")[1:])     # ts NOT NULL: the commit fails
        assert log.sync()
        assert isinstance(log.failed, sqlite3.IntegrityError)
        with pytest.raises(RuntimeError, match="routing audit log failed"):
            log.record_durable([_row("child_sent", "P1.2")])
    finally:
        log.close()


class ProcessVenue(InProcessVenue):
    """An in-process venue standing for a venue process (``outlives_process``), which notes at
    each of the router's new_order which child_sent rows would survive a kill at that moment:
    those in the table and those in the audit log's write-ahead file."""

    outlives_process = True

    def __init__(self, *args, path: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.path = path
        self.rows_at_send: list[list[str]] = []

    def new_order(self, order: VenueOrder) -> None:
        if order.venue_cl_ord_id.startswith("SOR-"):   # not the test's own liquidity
            self.rows_at_send.append(_durable_children(self.path))
        super().new_order(order)


def _durable_children(path: str) -> list[str]:
    # The file first: a row leaves it only once committed, so it is in one of the two reads.
    with open(path + "-ahead.0", "rb") as f:
        ahead = [json.loads(line) for line in f.read().splitlines()]
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        ids = [c for (c,) in conn.execute("SELECT child_id FROM routing_audit WHERE event = 'child_sent' ORDER BY seq")]
    finally:
        conn.close()
    return sorted(set(ids) | {row[6] for row in ahead if row[4] == "child_sent"})


class SpyAudit(MemoryAuditLog):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fail = fail
        self.durable_calls: list[list[str]] = []

    def record_durable(self, rows: list[tuple]) -> None:
        self.durable_calls.append([r[4] for r in rows])
        if self.fail:
            raise OSError("disk full")
        super().record_durable(rows)


async def _venues(path: str, venue_a=None):
    """VENUE-A (a ProcessVenue, or the ``venue_a`` class given) and in-process VENUE-B, started."""
    a = (venue_a or ProcessVenue)("VENUE-A", MASTER, SystemClock(), path=path)
    b = InProcessVenue("VENUE-B", MASTER, SystemClock())
    await a.start()
    await b.start()
    # Liquidity at both: a buy for 50 sweeps 20 at A and 20 at B, the remainder rests at A.
    a.new_order(VenueOrder("mkA", AAPL, Side.SELL, OrdType.LIMIT, TimeInForce.DAY, 20, 23000))
    b.new_order(VenueOrder("mkB", AAPL, Side.SELL, OrdType.LIMIT, TimeInForce.DAY, 20, 23000))
    await asyncio.sleep(0.01)
    return a, b


@contextlib.asynccontextmanager
async def _sweep_router(tmp_path, venue_a=None):
    """A started sweeping router "SOR" over _venues() with a SQLite audit trail; yields it, the
    audit, venue A and the list of the router's upward events, and takes it all down after."""
    path = str(tmp_path / "audit.db")
    audit = SqliteAuditLog(path)
    a, b = await _venues(path, venue_a)
    router = SmartRouter("SOR", [a, b], "sweep", audit=audit, watch_s=0.01)
    up = []
    router.set_event_sink(up.append)
    await router.start()
    yield router, audit, a, up
    await router.stop()
    audit.close()
    await a.stop()
    await b.stop()
    for v in (a, b):
        router_module._tap_for(v).routers.remove(router)


async def _settle(pred, what: str) -> None:
    for _ in range(500):
        if pred():
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"timed out waiting for {what}")


def test_children_for_a_venue_process_are_in_the_trail_before_they_leave(tmp_path):
    async def main():
        async with _sweep_router(tmp_path) as (router, audit, a, up):
            router.new_order(VenueOrder("O1.1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 50, 23000))
            await _settle(lambda: any(e.kind == K.TRADE and e.cum_qty == 40 for e in up if e.venue == "SOR"),
                          "both takers filled")
            kids = router.children_of("O1.1")
            assert [(k["venue"], k["qty"]) for k in kids] == [("VENUE-A", 20), ("VENUE-B", 20), ("VENUE-A", 10)]
            # At each send to A, its child's row (and every child row before it) was in the file.
            assert a.rows_at_send == [[kids[0]["id"], kids[1]["id"]],
                                      [kids[0]["id"], kids[1]["id"], kids[2]["id"]]]

    asyncio.run(asyncio.wait_for(main(), 30))


def test_in_process_venues_keep_the_queued_path_and_a_failed_write_sends_nothing(tmp_path):
    async def main():
        a, b = await _venues(str(tmp_path / "unused.db"))
        spy = SpyAudit()
        only_b = SmartRouter("ONLYB", [b], "direct", audit=spy, watch_s=0.01)
        up_b = []
        only_b.set_event_sink(up_b.append)
        await only_b.start()
        only_b.new_order(VenueOrder("O2.1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 5, 22000))
        await _settle(lambda: any(e.kind == K.NEW for e in up_b if e.venue == "ONLYB"), "New at B")
        assert spy.durable_calls == []                          # no venue process: nothing to write ahead
        assert "child_sent" in [r[4] for r in spy.rows]

        failing = SpyAudit(fail=True)
        to_a = SmartRouter("TOA", [a], "direct", audit=failing, watch_s=0.01)
        up_a = []
        to_a.set_event_sink(up_a.append)
        await to_a.start()
        before = a.top_of_book(AAPL)
        to_a.new_order(VenueOrder("O3.1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 5, 22000))
        await _settle(lambda: any(e.venue == "TOA" for e in up_a), "an answer for O3.1")
        assert failing.durable_calls == [["child_sent"]]
        assert a.top_of_book(AAPL) == before                   # the child never left
        [ev] = [e for e in up_a if e.venue == "TOA"]
        assert ev.kind == K.REJECTED and "audit trail could not be written" in ev.reason
        for r in (only_b, to_a):
            await r.stop()
        await a.stop()
        await b.stop()
        for v, r in ((b, only_b), (a, to_a)):
            router_module._tap_for(v).routers.remove(r)

    asyncio.run(asyncio.wait_for(main(), 30))


# ------------------------------------------------------------------------------------------------
# Failed writes, earlier rows, concurrent opens, bad files, a send that raises
# ------------------------------------------------------------------------------------------------
def _ahead_lines(path: str) -> list[list]:
    with open(path, "rb") as f:
        return [json.loads(line) for line in f.read().splitlines()]


def _reopen_after_death(log: SqliteAuditLog, gate: threading.Event, path: str, check) -> None:
    _die(log)
    again = SqliteAuditLog(path)
    try:
        check(again)
    finally:
        again.close()
        gate.set()
        log._thread.join(5)
        log._real_conn.close()


def test_a_write_that_fails_halfway_is_cut_back_and_the_next_row_survives(tmp_path, monkeypatch):
    path = str(tmp_path / "audit.db")
    log = SqliteAuditLog(path)
    gate = _stall_writer(log)
    log.record_durable([_row("child_sent", "P1.1")])
    size = os.path.getsize(log.ahead_path)
    real_write, calls = os.write, []

    def disk_full(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:len(data) // 2]))   # part of the line reaches the file
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(OSError, match="No space"):
        log.record_durable([_row("child_sent", "P2.1")])          # not sent by the router
    monkeypatch.setattr(os, "write", real_write)
    assert len(calls) == 2 and os.path.getsize(log.ahead_path) == size   # no fragment left
    assert log.failed is None
    log.record_durable([_row("child_sent", "P3.1")])              # sent: must survive a kill

    def check(again):
        assert [r["child_id"] for r in again.query("P3")] == ["P3.1"]
        assert again.query("P2") == []
        assert again.recovered == 2

    _reopen_after_death(log, gate, path, check)


def test_a_failed_write_that_cannot_be_cut_back_fails_the_log(tmp_path, monkeypatch):
    log = SqliteAuditLog(str(tmp_path / "audit.db"))
    try:
        def broken(*args):
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "write", broken)
        monkeypatch.setattr(os, "ftruncate", broken)
        with pytest.raises(OSError, match="Input/output"):
            log.record_durable([_row("child_sent", "P1.1")])
        monkeypatch.undo()
        assert isinstance(log.failed, OSError)
        with pytest.raises(RuntimeError, match="routing audit log failed"):
            log.record_durable([_row("child_sent", "P1.2")])
    finally:
        log.close()


def test_recovery_keeps_a_whole_row_written_after_an_old_fragment(tmp_path):
    path = str(tmp_path / "audit.db")
    whole = json.dumps([5, "SOR", "P1", "O1.1", "child_sent", "VENUE-A", "P1.1", 10, 23000, {"mirror": True}])
    with open(path + "-ahead.0", "wb") as f:
        f.write(b'[4, "SOR", "P9", "O9.1", "child_se' + whole.encode() + b"\n")
    log = SqliteAuditLog(path)
    try:
        assert log.recovered == 1
        assert [(r["child_id"], r["detail"]) for r in log.query("P1")] == [("P1.1", {"mirror": True})]
        assert log.query("P9") == []
    finally:
        log.close()


def test_rows_recorded_before_a_write_ahead_are_written_with_it_in_order(tmp_path):
    # restore_parent adds up a parent's children from every child row: a cancel recorded before
    # the write-ahead of a new child must survive with it, or the leaves no longer add up. The
    # decision that made the child (and the parent's entry) survives with it too: the trail
    # explains every child that left. Other rows without a child (answers to the parent) are
    # left to the writer thread.
    path = str(tmp_path / "audit.db")
    log = SqliteAuditLog(path)
    gate = _stall_writer(log)
    log.record_durable([_row("child_sent", "P1.1")])
    _until(lambda: log._inflight, "the writer thread holding its batch")   # taken, never committed
    log.record(_row("child_canceled", "P1.1"))
    log.record(_row("parent_replaced"))                             # an answer to the parent: not ahead
    log.record(_row("decision"))                                    # why P1.2 is sent: ahead with it
    log.record(_row("child_replace_sent", "P0.1"))                  # another parent's child row
    log.record_durable([_row("child_sent", "P1.2")])
    log.record(_row("child_new", "P1.2"))                          # after: not written yet
    # Each row once, in the order recorded; the in-flight one was already on file.
    assert [(r[4], r[6]) for r in _ahead_lines(log.ahead_path)] == [
        ("child_sent", "P1.1"), ("child_canceled", "P1.1"), ("decision", ""), ("child_replace_sent", "P0.1"),
        ("child_sent", "P1.2")]

    def check(again):
        assert [(r["event"], r["child_id"]) for r in again.query("P1")] == [
            ("child_sent", "P1.1"), ("child_canceled", "P1.1"), ("decision", ""), ("child_sent", "P1.2")]
        assert [r["event"] for r in again.query("P0")] == ["child_replace_sent"]

    _reopen_after_death(log, gate, path, check)


def test_rows_in_the_writers_batch_are_written_ahead(tmp_path):
    path = str(tmp_path / "audit.db")
    log = SqliteAuditLog(path)
    gate = _stall_writer(log)
    log.record(_row("child_replace_sent", "P1.1"))
    _until(lambda: log._inflight, "the writer thread holding its batch")
    log.record(_row("child_replaced", "P1.1"))
    log.record_durable([_row("child_sent", "P1.2")])
    assert [r[4] for r in _ahead_lines(log.ahead_path)] == ["child_replace_sent", "child_replaced", "child_sent"]
    _reopen_after_death(log, gate, path, lambda again: None)


def test_a_log_opening_does_not_adopt_a_file_a_closing_log_just_removed(tmp_path, monkeypatch):
    path = str(tmp_path / "audit.db")
    first = SqliteAuditLog(path)
    real_open = os.open

    def open_then_first_closes(file, flags, *args):
        fd = real_open(file, flags, *args)
        if file == first.ahead_path and not flags & os.O_CREAT and first._ahead_fd is not None:
            first.close()      # unlinks its file and releases the lock after we opened it
        return fd

    monkeypatch.setattr(os, "open", open_then_first_closes)
    second = SqliteAuditLog(path)
    monkeypatch.undo()
    try:
        assert os.fstat(second._ahead_fd).st_nlink == 1
        assert os.stat(second.ahead_path).st_ino == os.fstat(second._ahead_fd).st_ino
        second.record_durable([_row("child_sent", "P1.1")])
        # The file first: a row leaves it only once committed, so it is in one of the two reads.
        on_file = [r[6] for r in _ahead_lines(second.ahead_path)]
        assert on_file == ["P1.1"] or [r["child_id"] for r in second.query("P1")] == ["P1.1"]
    finally:
        second.close()


def test_a_log_opening_skips_a_file_removed_since_the_listing(tmp_path, monkeypatch):
    path = str(tmp_path / "audit.db")
    real_listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda d: [*real_listdir(d), "audit.db-ahead.7"])
    log = SqliteAuditLog(path)
    monkeypatch.undo()
    try:
        assert log.ahead_path == path + "-ahead.0"
    finally:
        log.close()


def test_two_logs_creating_a_file_at_once_take_different_numbers(tmp_path, monkeypatch):
    import fcntl
    path = str(tmp_path / "audit.db")
    real_open = os.open
    rival = []

    def rival_first(file, flags, *args):
        if flags & os.O_CREAT and not rival:
            # Another log creates and locks the same name between our listing and our create.
            fd = real_open(file, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            rival.append(fd)
        return real_open(file, flags, *args)

    monkeypatch.setattr(os, "open", rival_first)
    log = SqliteAuditLog(path)
    monkeypatch.undo()
    try:
        assert log.ahead_path == path + "-ahead.1"
    finally:
        log.close()
        os.close(rival[0])


def test_lines_that_are_not_rows_are_dropped_and_the_log_opens(tmp_path, caplog):
    path = str(tmp_path / "audit.db")
    good = [5, "SOR", "P1", "O1.1", "child_sent", "VENUE-A", "P1.1", 10, 23000, {}]
    with open(path + "-ahead.0", "w") as f:
        for bad in (42, "text", {"a": 1}, [1, 2], [None, *good[1:]], [5, "SOR", "P1", "O1.1", "child_sent",
                                                                    "VENUE-A", "P1.1", "ten", 23000, {}]):
            f.write(json.dumps(bad) + "\n")
        f.write(json.dumps(good) + "\n")
    with caplog.at_level("WARNING", logger="crossbook.routing.audit"):
        log = SqliteAuditLog(path)
    try:
        assert log.recovered == 1
        assert [r["child_id"] for r in log.query("P1")] == ["P1.1"]
        assert sum("dropped" in r.getMessage() for r in caplog.records) == 6
    finally:
        log.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_a_log_that_cannot_recover_leaks_nothing_and_the_next_open_recovers(tmp_path, monkeypatch):
    from crossbook.routing import audit as audit_module
    path = str(tmp_path / "audit.db")
    with open(path + "-ahead.0", "w") as f:
        f.write(json.dumps([5, "SOR", "P1", "O1.1", "child_sent", "VENUE-A", "P1.1", 10, 23000, {}]) + "\n")
    SqliteAuditLog(path + ".warm").close()   # sqlite's own first-use fds out of the count
    before = _open_fds()
    monkeypatch.setattr(audit_module, "_INSERT", "INSERT INTO no_such_table VALUES (1)")
    with pytest.raises(sqlite3.OperationalError):
        SqliteAuditLog(path)
    monkeypatch.undo()
    assert _open_fds() == before
    log = SqliteAuditLog(path)                # the file is still there, the database not locked
    try:
        assert log.recovered == 1
    finally:
        log.close()


class RaisingVenue(ProcessVenue):
    """A venue process whose new_order raises for the first ``fail`` of the router's children."""

    def __init__(self, *args, fail: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fail = fail

    def new_order(self, order: VenueOrder) -> None:
        if order.venue_cl_ord_id.startswith("SOR-") and self.fail > 0:
            self.fail -= 1
            raise ConnectionResetError("transport lost (injected)")
        super().new_order(order)


def test_a_child_whose_send_raises_ends_and_the_other_children_still_leave(tmp_path):
    async def main():
        async with _sweep_router(tmp_path, RaisingVenue) as (router, audit, a, up):
            # The sweep sends 20 to A (raises) and 20 to B in one decision.
            router.new_order(VenueOrder("O1.1", AAPL, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 50, 23000))
            await _settle(lambda: any(e.kind == K.TRADE and e.cum_qty == 20 for e in up if e.venue == "SOR"),
                          "B's child filled")
            kids = router.children_of("O1.1")
            assert (kids[0]["venue"], kids[0]["qty"], kids[0]["done"], kids[0]["leaves"]) == ("VENUE-A", 20, True, 0)
            assert (kids[1]["venue"], kids[1]["qty"], kids[1]["cum"]) == ("VENUE-B", 20, 20)
            # The parent is not left waiting for A's child: its remainder (30) goes on to rest at A,
            # where it takes the 20 the failed child would have, and 10 rest.
            await _settle(lambda: any(e.kind == K.TRADE and e.cum_qty == 40 for e in up if e.venue == "SOR"),
                          "the remainder filled at A")
            kids = router.children_of("O1.1")
            assert [(k["venue"], k["qty"], k["leaves"], k["done"]) for k in kids[2:]] == [("VENUE-A", 30, 10, False)]
            [rejected] = [r for r in audit.query("O1.1") if r["event"] == "child_rejected"]
            assert rejected["child_id"] == kids[0]["id"] and "transport lost" in rejected["detail"]["reason"]

    asyncio.run(asyncio.wait_for(main(), 30))
