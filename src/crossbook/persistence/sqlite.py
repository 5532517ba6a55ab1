"""SQLite (WAL) storage of orders, executions, ClOrdIDs, risk usage and counters.

``SqliteJournal`` is the order manager's journal: batches go to one writer thread which commits
everything that queued up meanwhile in ONE transaction (group commit), then tells the event loop
(``call_soon_threadsafe``) that those batches are durable; only then are their ExecutionReports
sent. The loop never waits for the disk.

Durability: WAL with ``synchronous=NORMAL`` (default) survives a killed process (the commit is in
the WAL file in the OS page cache before the reports go out); ``synchronous=FULL`` also fsyncs
each group commit, surviving power loss at a higher latency.

Cost per commit (docs/oms.md, "The hot path"): rows are JSON-encoded with orjson on the writer
thread; orders are upserted (an update touches only the indexes whose columns changed, where
INSERT OR REPLACE deletes and re-inserts every index entry); and WAL checkpoints (which fsync the
WAL and the database under ``synchronous=NORMAL``) run on a checkpointer thread with its own
connection, never inside a commit that reports are waiting for.

``OrderStore`` is the read side (HTTP API, ``crossbook orders``, Python callers): its own
connection, safe beside a running writer (WAL readers do not block the writer).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

log = logging.getLogger("crossbook.persistence")

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id   TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL,
    session    TEXT NOT NULL,
    account    TEXT NOT NULL,
    symbol     TEXT NOT NULL,
    state      TEXT NOT NULL,
    is_open    INTEGER NOT NULL,
    created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    data       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_open ON orders(is_open, seq);
CREATE INDEX IF NOT EXISTS orders_account ON orders(account, seq);
CREATE TABLE IF NOT EXISTS executions (
    seq      INTEGER PRIMARY KEY,
    exec_id  TEXT NOT NULL,        -- "X<seq>": unique through seq (no index of its own to update)
    order_id TEXT NOT NULL,
    account  TEXT NOT NULL,
    symbol   TEXT NOT NULL,
    ts       INTEGER NOT NULL,
    data     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_order ON executions(order_id, seq);
-- ClOrdIDs also ride in their order's row (data.cl_ord_ids), which is what the order manager
-- writes; this table keeps those written by earlier versions and by other callers.
CREATE TABLE IF NOT EXISTS cl_ord_ids (
    session   TEXT NOT NULL,
    cl_ord_id TEXT NOT NULL,
    order_id  TEXT NOT NULL,
    PRIMARY KEY (session, cl_ord_id)
);
-- Risk usage is now stored in meta under "risk_usage:<account>" (one table less per commit);
-- rows here are from earlier versions and are read at start.
CREATE TABLE IF NOT EXISTS risk_usage (
    account INTEGER PRIMARY KEY,
    data    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

_STOP = object()

RISK_KEY_PREFIX = "risk_usage:"

_TERMINAL_STATES = frozenset(("filled", "canceled", "rejected", "expired"))

#: How often the checkpointer looks at the WAL, and how many commits make a checkpoint worth it.
CHECKPOINT_INTERVAL_S = 0.2
CHECKPOINT_MIN_COMMITS = 50

_UPSERT_ORDER = (
    "INSERT INTO orders(order_id, seq, session, account, symbol, state, is_open, created_ns, updated_ns, data)"
    " VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(order_id) DO UPDATE SET seq=excluded.seq, session=excluded.session,"
    " account=excluded.account, symbol=excluded.symbol, state=excluded.state, is_open=excluded.is_open,"
    " created_ns=excluded.created_ns, updated_ns=excluded.updated_ns, data=excluded.data")
_INSERT_EXECUTION = ("INSERT OR REPLACE INTO executions(seq, exec_id, order_id, account, symbol, ts, data)"
                     " VALUES (?,?,?,?,?,?,?)")
_INSERT_CL_ORD_ID = "INSERT OR REPLACE INTO cl_ord_ids(session, cl_ord_id, order_id) VALUES (?,?,?)"
_INSERT_META = "INSERT OR REPLACE INTO meta(key, value) VALUES (?,?)"


def _dumps(value: Any) -> str:
    """JSON text of a stored row. orjson is ~10x faster than json.dumps; it refuses integers
    beyond 64 bits, which json still writes (a row must never fail to store over that)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


@dataclass
class RecoveredState:
    """What a restart needs (see OrderManager.restore)."""

    orders: list[dict[str, Any]] = field(default_factory=list)
    cl_ord_ids: list[tuple[str, str, str]] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    risk: dict[int, dict[str, Any]] = field(default_factory=dict)
    recent_executions: list[dict[str, Any]] = field(default_factory=list)  # may not have been sent


def _connect(path: str, synchronous: str = "NORMAL") -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class SqliteJournal:
    """Group-commit journal on a writer thread. ``open()`` (creates the schema, returns what to
    restore), ``start()`` on the event loop, ``submit()`` per batch, ``close()`` at shutdown."""

    def __init__(self, path: str, *, synchronous: str = "NORMAL", max_batch: int = 4096) -> None:
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        self.path = path
        self.synchronous = synchronous.upper()
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: sqlite3.Connection | None = None
        self._checkpointer: threading.Thread | None = None
        self._stopping = threading.Event()
        self.commits = 0
        self.checkpoints = 0
        self.failed: BaseException | None = None

    def open(self) -> RecoveredState:
        """Create the database if needed and read back the saved state."""
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        conn = _connect(self.path, self.synchronous)
        conn.executescript(SCHEMA)
        # The checkpointer thread does this work, outside the commits (module docstring).
        conn.execute("PRAGMA wal_autocheckpoint=0")
        state = RecoveredState()
        state.orders = [json.loads(d) for (d,) in conn.execute("SELECT data FROM orders ORDER BY seq")]
        cl_ord_ids = {tuple(r): None for r in conn.execute("SELECT session, cl_ord_id, order_id FROM cl_ord_ids")}
        for o in state.orders:
            for cl in o.get("cl_ord_ids") or ():
                cl_ord_ids[(o["session"], cl, o["order_id"])] = None
        state.cl_ord_ids = list(cl_ord_ids)
        state.risk = {int(a): json.loads(d) for a, d in conn.execute("SELECT account, data FROM risk_usage")}
        for key, value in conn.execute("SELECT key, value FROM meta"):
            if key.startswith(RISK_KEY_PREFIX):
                state.risk[int(key[len(RISK_KEY_PREFIX):])] = json.loads(value)
            else:
                state.meta[key] = value
        # Executions past the lowest "sent up to" mark of any session that has executions: the
        # order manager sends again those its sessions may not have received.
        sent = {k: int(v) for k, v in json.loads(state.meta.get("sent_exec_seq", "{}")).items()}
        sessions = [s for (s,) in conn.execute("SELECT DISTINCT json_extract(data, '$.session') FROM executions")]
        floor = min((sent.get(s, 0) for s in sessions), default=0)
        state.recent_executions = [json.loads(d) for (d,) in
                                   conn.execute("SELECT data FROM executions WHERE seq > ? ORDER BY seq", (floor,))]
        self._conn = conn
        return state

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if self._conn is None:
            self.open()
        self._loop = loop or asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="crossbook-journal", daemon=True)
        self._thread.start()
        self._stopping.clear()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="crossbook-checkpoint", daemon=True)
        self._checkpointer.start()

    def submit(self, batch, on_durable: Callable[[Any], None]) -> None:
        if self.failed is not None:
            raise RuntimeError(f"journal failed: {self.failed}")
        self._queue.put((batch, on_durable))

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, stop the writer thread, close the database."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None
        if self._checkpointer is not None:
            self._stopping.set()
            self._checkpointer.join(timeout)
            self._checkpointer = None
        if self._conn is not None:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass
            self._conn.close()
            self._conn = None

    # -- checkpointer thread
    def _checkpoint_loop(self) -> None:
        """Copy committed WAL pages into the database now and then (PASSIVE: never blocks the
        writer), so the WAL stays short and is reused from its start."""
        conn = _connect(self.path, self.synchronous)
        try:
            done = self.commits
            while not self._stopping.wait(CHECKPOINT_INTERVAL_S):
                if self.commits - done < CHECKPOINT_MIN_COMMITS:
                    continue
                done = self.commits
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error:  # busy or locked: the next round tries again
                    log.debug("WAL checkpoint skipped", exc_info=True)
        finally:
            conn.close()

    # -- writer thread
    def _run(self) -> None:
        conn = self._conn
        assert conn is not None and self._loop is not None
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is _STOP:
                break
            items = [item]
            while len(items) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                items.append(nxt)
            try:
                self._write(conn, [b for b, _ in items])
            except BaseException as exc:  # the OMS must stop acknowledging: nothing more is durable
                log.exception("journal commit failed")
                self.failed = exc
                return
            self.commits += 1
            try:
                self._loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # loop closed during shutdown
                return

    @staticmethod
    def _write(conn: sqlite3.Connection, batches: list) -> None:
        orders: dict[str, dict[str, Any]] = {}
        executions: list[tuple] = []
        cl_ord_ids: list[tuple[str, str, str]] = []
        risk: dict[int, dict[str, Any]] = {}
        meta: dict[str, str] = {}
        for b in batches:
            orders.update(b.orders)
            executions.extend((e["seq"], e["exec_id"], e["order_id"], e["account"], e["symbol"], e["ts"],
                               _dumps(e)) for e in b.executions)
            cl_ord_ids.extend(b.cl_ord_ids)
            risk.update(b.risk_usage)
            meta.update(b.meta)
        conn.execute("BEGIN")
        try:
            if orders:
                conn.executemany(_UPSERT_ORDER, [
                    (o["order_id"], o["seq"], o["session"], o["account"], o["symbol"], o["state"],
                     0 if o["state"] in _TERMINAL_STATES else 1, o["created_ns"], o["updated_ns"], _dumps(o))
                    for o in orders.values()])
            if executions:
                conn.executemany(_INSERT_EXECUTION, executions)
            if cl_ord_ids:
                conn.executemany(_INSERT_CL_ORD_ID, cl_ord_ids)
            rows = list(meta.items())
            if risk:
                rows += [(f"{RISK_KEY_PREFIX}{a}", _dumps(u)) for a, u in risk.items()]
            if rows:
                conn.executemany(_INSERT_META, rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _deliver(items: list) -> None:
    for batch, on_durable in items:
        on_durable(batch)


OPEN_STATES = ("pending_new", "new", "partially_filled", "pending_cancel", "pending_replace")


class OrderStore:
    """Read-only queries over a journal database (also while a server writes to it).

        >>> store = OrderStore("var/crossbook.db")          # doctest: +SKIP
        >>> store.orders(status="open", account="ACC1")     # doctest: +SKIP
    """

    def __init__(self, path: str) -> None:
        if not os.path.exists(path):
            raise FileNotFoundError(f"no order database at {path}")
        self.path = path
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout=5000")

    def close(self) -> None:
        self._conn.close()

    def orders(self, *, status: str | None = None, account: str | None = None, symbol: str | None = None,
               since_ns: int | None = None, limit: int = 10000) -> list[dict[str, Any]]:
        """Orders (as stored rows), oldest first. ``status``: open, done or None (all)."""
        if status not in (None, "", "open", "done", "all"):
            raise ValueError(f"status must be open, done or all, got {status!r}")
        sql = "SELECT data FROM orders WHERE 1=1"
        args: list[Any] = []
        if status == "open":
            sql += " AND is_open = 1"
        elif status == "done":
            sql += " AND is_open = 0"
        if account:
            sql += " AND account = ?"
            args.append(account)
        if symbol:
            sql += " AND symbol = ?"
            args.append(symbol)
        if since_ns is not None:
            sql += " AND updated_ns >= ?"
            args.append(since_ns)
        sql += " ORDER BY seq LIMIT ?"
        args.append(int(limit))
        return [json.loads(d) for (d,) in self._conn.execute(sql, args)]

    def order(self, order_id: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT data FROM orders WHERE order_id = ?", (order_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def executions(self, *, order_id: str | None = None, account: str | None = None, symbol: str | None = None,
                   since_ns: int | None = None, limit: int = 10000) -> list[dict[str, Any]]:
        sql = "SELECT data FROM executions WHERE 1=1"
        args: list[Any] = []
        for column, value in (("order_id", order_id), ("account", account), ("symbol", symbol)):
            if value:
                sql += f" AND {column} = ?"
                args.append(value)
        if since_ns is not None:
            sql += " AND ts >= ?"
            args.append(since_ns)
        sql += " ORDER BY seq LIMIT ?"
        args.append(int(limit))
        return [json.loads(d) for (d,) in self._conn.execute(sql, args)]

    def risk_usage(self) -> dict[int, dict[str, Any]]:
        usage = {int(a): json.loads(d) for a, d in self._conn.execute("SELECT account, data FROM risk_usage")}
        for key, value in self._conn.execute("SELECT key, value FROM meta WHERE key >= ? AND key < ?",
                                             (RISK_KEY_PREFIX, RISK_KEY_PREFIX[:-1] + ";")):
            usage[int(key[len(RISK_KEY_PREFIX):])] = json.loads(value)
        return usage
