"""The router's audit trail: every routing decision and every child order, stored and queryable.

One row per fact: the decision for a parent (policy, the market data seen, the plan), each child
sent (where, price, quantity, why), each child event (ack, fill, cancel, reject, replace), each
answer to the parent, venue up/down notices and reconciliation outcomes. The router records a
row as a tuple in the order of :data:`COLUMNS`; queries give dicts:

    {"seq", "ts", "router", "parent_id", "parent_cl", "event", "venue", "child_id", "qty", "price", "detail"}

``detail`` is a dict (stored as JSON). On the hot path the router may record the VenueEvent
itself, or an object with an ``audit_detail()`` method, as the detail: it is turned into a dict
only when written (on the writer thread) or queried, so routing does not pay for it. Two implementations of the same small interface
(:class:`AuditLog`): :class:`MemoryAuditLog` (tests, embedders) and :class:`SqliteAuditLog`, a
table in an SQLite file (WAL) written by one writer thread that commits everything queued
meanwhile in one transaction (group commit, the habit of crossbook.persistence.SqliteJournal), so
the event loop never waits for SQLite. ``record_durable`` is the write-ahead for children about
to leave for a venue process: their rows are appended to a small file beside the database in one
write before they are sent (docs/routing.md "Write-ahead for children"). ``crossbook.routing`` may not import
``crossbook.persistence`` (layout rule), hence its own small writer; the OMS's journal can
implement :class:`AuditLog` instead and receive the rows in its own batches.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
from collections import deque
from typing import Any, Protocol

import orjson

from crossbook.routing.venue import VenueEvent

__all__ = ["COLUMNS", "AuditLog", "MemoryAuditLog", "SqliteAuditLog", "detail_dict", "read_audit"]

log = logging.getLogger("crossbook.routing.audit")

SCHEMA = """
CREATE TABLE IF NOT EXISTS routing_audit (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    ts        INTEGER NOT NULL,
    router    TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    parent_cl TEXT NOT NULL,
    event     TEXT NOT NULL,
    venue     TEXT NOT NULL,
    child_id  TEXT NOT NULL,
    qty       INTEGER NOT NULL,
    price     INTEGER NOT NULL,
    detail    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS routing_audit_parent ON routing_audit(parent_id, seq);
CREATE INDEX IF NOT EXISTS routing_audit_parent_cl ON routing_audit(parent_cl, seq);
"""

#: The order of a recorded row's fields.
COLUMNS = ("ts", "router", "parent_id", "parent_cl", "event", "venue", "child_id", "qty", "price", "detail")
_COLUMNS = COLUMNS
_INSERT = f"INSERT INTO routing_audit({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_STOP = object()
#: Rows without a child that go ahead with the child rows written ahead after them (record_durable):
#: the parent's creation and decisions (they explain the children), and its end (a parent whose
#: children the trail shows finished but whose end row was lost would be routed again after a
#: restart: an order the venue expired back in the market).
_AHEAD_EVENTS = frozenset(("parent_new", "decision", "parent_ending", "parent_canceled", "parent_rejected"))


def detail_dict(detail: Any) -> dict[str, Any]:
    """A recorded detail as a dict: dicts as they are, a VenueEvent's fields, or ``audit_detail()``."""
    if detail is None:
        return {}
    if isinstance(detail, dict):
        return detail
    if isinstance(detail, VenueEvent):
        return {"cl": detail.venue_cl_ord_id, "orig": detail.orig_venue_cl_ord_id,
                "venue_order_id": detail.venue_order_id, "cum": detail.cum_qty, "leaves": detail.leaves_qty,
                "reason": detail.reason, "reason_code": detail.reason_code, "exec_id": detail.exec_id,
                "ord_status": detail.ord_status, "venue_ts": detail.ts}
    return detail.audit_detail()


def _detail_json(detail: Any) -> Any:
    """A recorded detail ready for orjson: its ``audit_json()`` (JSON made directly) when it has
    one, else :func:`detail_dict`."""
    made = getattr(detail, "audit_json", None)
    return orjson.Fragment(made()) if made is not None else detail_dict(detail)


def _as_dict(seq: int, row: tuple) -> dict[str, Any]:
    d = dict(zip(COLUMNS, row))
    d["seq"] = seq
    d["detail"] = detail_dict(d["detail"])
    return d


class AuditLog(Protocol):
    """Where the router's audit rows go."""

    def record(self, row: tuple) -> None:
        """Store one row (a tuple in the order of COLUMNS). Must not block the event loop; the
        row's detail must not be changed afterwards."""

    def query(self, parent_id: str) -> list[dict[str, Any]]:
        """Every row of one parent (by the router's parent id or its first ClOrdID), oldest first,
        including rows recorded but not yet committed."""

    def record_durable(self, rows: list[tuple]) -> None:
        """Store ``rows`` and return only once they, and every row about a child (``child_id``
        set) recorded before them, are as durable as the log can make them: the router calls it
        with the ``child_sent`` rows of children about to leave for a venue that outlives the
        process, right before sending them, and with the ``child_cancel_sent`` row of a cancel
        about to leave for such a venue (a restart must know the venue's CANCELED answers a
        cancel of ours, not the venue ending the child on its own). ``restore_parent`` adds up a parent's children from
        its child rows alone, so an earlier cancel or replace must survive with a new child;
        the ``parent_new`` and ``decision`` rows recorded before them must survive too (the
        trail explains every child that left), and so must a parent's end rows
        (``parent_ending``, ``parent_canceled``, ``parent_rejected``: a parent ended by its
        venue is not routed again after a restart); other rows without a child (answers to the
        parent) may still be lost in a crash, as any queued row. May block the caller for one
        write."""

    def close(self) -> None:
        """Make everything durable and release resources."""


class MemoryAuditLog:
    """Rows kept in a list (no durability)."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def record(self, row: tuple) -> None:
        self.rows.append(row)

    def record_durable(self, rows: list[tuple]) -> None:
        self.rows.extend(rows)   # nothing here outlives the process anyway

    def query(self, parent_id: str) -> list[dict[str, Any]]:
        return [_as_dict(i + 1, r) for i, r in enumerate(self.rows) if parent_id in (r[2], r[3])]

    def close(self) -> None:
        pass


class SqliteAuditLog:
    """The ``routing_audit`` table in the SQLite file ``path`` (created if needed, WAL).

    ``record`` queues the row for the writer thread, which commits all queued rows in one
    transaction (group commit). ``query`` waits until what was recorded before it is committed,
    then reads: it is for operators and tests, not the hot path. ``close`` commits the rest.
    The file can be the OMS's own database (a separate table) or a file of its own.

    ``record_durable`` (write-ahead for children leaving for a venue process) appends its rows,
    after every child row recorded before them and not yet committed nor written ahead, to a small
    file beside the database, ``<path>-ahead.<n>``, in one ``os.write`` (plus an ``fdatasync``
    under ``synchronous=FULL``), then queues them like any row. A write that fails is cut back
    off the file (``ftruncate`` to the size before it), so no fragment is left for the next
    write to be appended to; if even that fails, the log is failed and refuses further writes. An SQLite commit on
    the loop would cost 18-25 us and, at WAL checkpoints, milliseconds (fsync). The writer thread
    empties the file once everything written to it is committed; a file left by a killed process
    is read back into the table when the log is opened (rows already there are skipped, a torn
    last line, a write that never finished and whose children were never sent, is dropped, as
    is any line that is not a row, with a warning).
    Each open log holds its file under an exclusive ``flock``, so logs sharing a database (two
    routers, one ``audit_path``) never take each other's rows.
    """

    def __init__(self, path: str, *, synchronous: str = "NORMAL", max_batch: int = 4096) -> None:
        if not isinstance(path, str) or not path:
            raise ValueError(f"audit path must be a non-empty string, got {path!r}")
        if not isinstance(synchronous, str) or synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self.max_batch = max_batch
        self._fsync = synchronous.upper() == "FULL"
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        #: Rows read back from write-ahead files a killed process left (tests, monitoring).
        self.recovered = 0
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._conn.executescript(SCHEMA)
            self._ahead_fd, self.ahead_path = self._open_ahead()
        except BaseException:
            self._conn.close()   # a log that cannot open leaks nothing
            raise
        self._ahead_lock = threading.Lock()
        self._ahead_mark = 0        # rows recorded up to the last one written ahead
        self._ahead_size = 0        # bytes in the write-ahead file (only we write it)
        self._ahead_dirty = False   # the write-ahead file holds rows
        # Rows not yet committed, oldest first: ``_pending`` (queued) after ``_inflight`` (the
        # batch the writer thread is committing). The writer takes a batch under _ahead_lock,
        # so record_durable sees every uncommitted row exactly once.
        self._pending: deque = deque()
        self._inflight: list = []
        self._wake = threading.Event()
        self._recorded = 0
        self._committed = 0
        self._cond = threading.Condition()
        self.commits = 0
        self.failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="crossbook-routing-audit", daemon=True)
        self._thread.start()

    def record(self, row: tuple) -> None:
        if self.failed is not None:
            raise RuntimeError(f"routing audit log failed: {self.failed}")
        self._recorded += 1
        self._pending.append(row)   # the detail becomes JSON on the writer thread
        if not self._wake.is_set():
            self._wake.set()

    def record_durable(self, rows: list[tuple]) -> None:
        """Store ``rows``; on return they survive a killed process (a power loss too under
        ``synchronous=FULL``): appended to the write-ahead file in one write, and queued for the
        table after every row recorded before them. Raises (OSError, RuntimeError when the log
        has failed) if they could not be written: then nothing may be sent."""
        if self.failed is not None:
            raise RuntimeError(f"routing audit log failed: {self.failed}")
        with self._ahead_lock:
            # Child rows recorded before these and not yet committed go ahead of them (those
            # already in the file from an earlier call excepted): restore_parent adds up a
            # parent's children from its child rows alone. So do the parent's entry and the
            # decision that made the children (with its market data): the trail of every
            # child that left must explain it after a crash. So do a parent's end rows: a
            # trail whose child is done but whose parent never ended would be routed again
            # (an order its venue expired back in the market). Other rows without a child
            # (answers to the parent) are left to the writer thread. They are among the newest
            # `behind` uncommitted rows.
            pending = self._pending
            n = len(pending)
            behind = self._recorded - max(self._ahead_mark, self._recorded - len(self._inflight) - n)
            out = rows
            if behind > 0:
                if behind <= n:
                    earlier = [r for i in range(n - behind, n) if (r := pending[i])[6] or r[4] in _AHEAD_EVENTS]
                else:
                    inflight = self._inflight
                    earlier = [r for r in (*inflight[len(inflight) - (behind - n):], *pending)
                               if r is not _STOP and (r[6] or r[4] in _AHEAD_EVENTS)]
                if earlier:
                    out = earlier + rows
            # orjson: a decision row with two venues' 10-level books is ~1 KB of JSON, 12 us
            # with the json module on the loop, 1.5 us with orjson (same text, no spaces).
            data = b"".join([orjson.dumps([*r[:9], _detail_json(r[9])]) + b"\n" for r in out])
            fd = self._ahead_fd
            size = self._ahead_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if self._fsync:
                    os.fdatasync(fd)
            except BaseException as exc:
                # A part of a line left behind would merge with the next write's first line,
                # and recovery would drop that line (a child that was sent): cut it back off.
                try:
                    os.ftruncate(fd, size)
                except OSError as again:
                    log.error("routing audit %s: write-ahead failed (%s) and could not be cut back (%s): "
                              "the log refuses further writes", self.path, exc, again)
                    self.failed = again
                raise
            self._ahead_size = size + len(data)
            for row in rows:
                self.record(row)
            self._ahead_mark = self._recorded
            self._ahead_dirty = True

    def sync(self, timeout: float = 10.0) -> bool:
        """Wait until every row recorded so far is committed; False on timeout."""
        target = self._recorded
        with self._cond:
            return self._cond.wait_for(lambda: self._committed >= target or self.failed is not None, timeout)

    def query(self, parent_id: str) -> list[dict[str, Any]]:
        self.sync()
        return _select(self._conn, parent_id)

    def close(self) -> None:
        if self._thread is not None:
            self._pending.append(_STOP)
            self._wake.set()
            self._thread.join(10)
            self._thread = None
        if self._ahead_fd is not None:
            if self.failed is None and not self._pending:
                # Everything is in the table: the write-ahead file has nothing left to give. A
                # log opening meanwhile may have opened it: it checks the link count once it has
                # the lock (_take) and leaves an unlinked file alone.
                os.unlink(self.ahead_path)
            os.close(self._ahead_fd)   # releases the flock
            self._ahead_fd = None
        self._conn.close()

    # --------------------------------------------------------------------------------------------
    def _open_ahead(self) -> tuple[int, str]:
        """Read back every write-ahead file of this database no open log holds, and keep one
        (emptied, locked) as ours."""
        base = os.path.basename(self.path) + "-ahead."
        directory = os.path.dirname(os.path.abspath(self.path))
        mine: tuple[int, str] | None = None
        try:
            for name in sorted(os.listdir(directory)):
                if not name.startswith(base) or not name[len(base):].isdigit():
                    continue
                file = os.path.join(directory, name)
                try:
                    fd = os.open(file, os.O_RDWR | os.O_APPEND)
                except FileNotFoundError:
                    continue     # removed by the log that closed it since the listing
                if not _take(fd, file):
                    os.close(fd)     # an open log's (another router on the same database), or gone
                    continue
                try:
                    self._recover(file)
                    os.ftruncate(fd, 0)
                    if self._fsync:
                        os.fsync(fd)
                except BaseException:
                    os.close(fd)
                    raise
                if mine is None:
                    mine = (fd, file)
                else:
                    os.unlink(file)
                    os.close(fd)
            n = 0
            while mine is None:
                # O_EXCL: two logs opening at once never pick the same file; one that another
                # log takes (or removes) between our create and our lock is left to it.
                file = os.path.join(directory, f"{base}{n}")
                n += 1
                try:
                    fd = os.open(file, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    continue
                if _take(fd, file):
                    mine = (fd, file)
                else:
                    os.close(fd)
        except BaseException:
            if mine is not None:
                os.close(mine[0])
            raise
        return mine

    def _recover(self, file: str) -> None:
        """Insert the rows of a write-ahead file that the table does not hold (in file order)."""
        with open(file, "rb") as f:
            lines = f.read().split(b"\n")
        rows = []
        for i, line in enumerate(lines):
            if not line:
                continue
            try:
                row = _parse_row(line)
            except (ValueError, TypeError) as exc:
                # A torn last line (its write never finished, nothing was sent), or a line that
                # is not a row. A write that failed is cut back off the file, but a fragment from
                # an older process may still be followed by a whole line: resynchronise on it.
                row = _resync(line)
                if row is None:
                    log.warning("%s: line %d dropped (%s)", file, i + 1, exc)
                    continue
                log.warning("%s: line %d: a fragment before a whole row dropped (%s)", file, i + 1, exc)
            rows.append(row)
        conn = self._conn
        conn.execute("BEGIN")
        try:
            for row in rows:
                if conn.execute("SELECT 1 FROM routing_audit WHERE parent_id = ? AND ts = ? AND event = ? "
                                "AND child_id = ? AND qty = ? AND price = ? LIMIT 1",
                                (row[2], row[0], row[4], row[6], row[7], row[8])).fetchone() is None:
                    conn.execute(_INSERT, row)
                    self.recovered += 1
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if self.recovered:
            log.warning("routing audit %s: %d written-ahead rows read back from %s", self.path, self.recovered, file)

    def _write(self, rows: list[tuple]) -> None:
        n = len(rows)
        rows = [r[:9] + (orjson.dumps(detail_dict(r[9])).decode(),) for r in rows]
        conn = self._conn
        conn.execute("BEGIN")
        conn.executemany(_INSERT, rows)
        conn.execute("COMMIT")
        self.commits += 1
        with self._cond:
            self._committed += n
            self._cond.notify_all()
        with self._ahead_lock:
            self._inflight = []
            if self._ahead_dirty and self._committed >= self._ahead_mark:
                # Everything written ahead is in the table now: the file can be emptied.
                os.ftruncate(self._ahead_fd, 0)
                self._ahead_size = 0
                self._ahead_dirty = False

    def _run(self) -> None:
        pending, wake = self._pending, self._wake
        while True:
            wake.wait()
            # Cleared before taking: a row recorded after the take sets it again.
            wake.clear()
            while pending:
                rows = []
                with self._ahead_lock:   # record_durable reads _inflight + _pending as one
                    while pending and len(rows) < self.max_batch and pending[0] is not _STOP:
                        rows.append(pending.popleft())
                    self._inflight = rows
                if rows:
                    try:
                        self._write(rows)
                    except BaseException as exc:
                        log.exception("routing audit commit failed")
                        self.failed = exc
                        with self._cond:
                            self._cond.notify_all()
                        return
                if pending and pending[0] is _STOP:
                    pending.popleft()
                    return


def _take(fd: int, file: str) -> bool:
    """Lock the write-ahead file open at ``fd`` (named ``file``) for this log: False when another
    log holds it, or it is no longer that name's file (unlinked by a log that closed it after we
    opened it: rows written there would be lost)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    st = os.fstat(fd)
    try:
        named = os.stat(file)
    except FileNotFoundError:
        return False
    return st.st_nlink > 0 and (st.st_dev, st.st_ino) == (named.st_dev, named.st_ino)


_FIELD_TYPES = (int, str, str, str, str, str, str, int, int)


def _parse_row(line: bytes) -> tuple:
    """One write-ahead line as a row for the table; ValueError/TypeError naming what is wrong."""
    row = json.loads(line)
    if not isinstance(row, list):
        raise TypeError(f"a {type(row).__name__}, not a row")
    if len(row) != len(COLUMNS):
        raise ValueError(f"{len(row)} fields, not {len(COLUMNS)}")
    for name, kind, value in zip(COLUMNS, _FIELD_TYPES, row):
        if not isinstance(value, kind) or isinstance(value, bool):
            raise TypeError(f"{name} is {value!r}, not {kind.__name__}")
    row[9] = json.dumps(row[9])
    return tuple(row)


def _resync(line: bytes) -> tuple | None:
    """The whole row at the end of ``line`` when it starts with a fragment of an unfinished
    write: the first ``[`` after which the rest parses as a row; None if there is none."""
    at = line.find(b"[", 1)
    while at > 0:
        try:
            return _parse_row(line[at:])
        except (ValueError, TypeError):
            at = line.find(b"[", at + 1)
    return None


def _select(conn: sqlite3.Connection, parent_id: str) -> list[dict[str, Any]]:
    cur = conn.execute("SELECT seq, ts, router, parent_id, parent_cl, event, venue, child_id, qty, price, detail "
                       "FROM routing_audit WHERE parent_id = ? OR parent_cl = ? ORDER BY seq", (parent_id, parent_id))
    out = []
    for seq, ts, router, pid, pcl, event, venue, child, qty, price, detail in cur:
        out.append({"seq": seq, "ts": ts, "router": router, "parent_id": pid, "parent_cl": pcl, "event": event,
                    "venue": venue, "child_id": child, "qty": qty, "price": price, "detail": json.loads(detail)})
    return out


def read_audit(path: str, parent_id: str) -> list[dict[str, Any]]:
    """Read one parent's audit rows straight from a database file (e.g. from another process)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no routing audit database at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return _select(conn, parent_id)
    finally:
        conn.close()
