"""The journal: an append-only log is the durability point, SQLite (WAL) the queryable store.

``SqliteJournal.submit(batch, on_durable)`` runs on the event loop thread, once per
``OrderManager.flush``. It turns the batch into rows (orjson, once), writes them as ONE record to
the append-only log (crossbook.persistence.log: length + CRC32 framed, one ``os.writev``; an
``fdatasync`` too under ``synchronous=FULL``) and calls ``on_durable(batch)`` before returning:
the batch is durable, its ExecutionReports may go out. No thread hop, no SQLite on that path.

*Durable* means: under ``synchronous=NORMAL`` (default) the record's ``write()`` completed, so it
is in the OS page cache and survives a killed process (not a power loss); under ``FULL`` it was
also fdatasync'ed, which survives power loss at the cost of a disk flush per batch on the loop.

SQLite stays the queryable store (orders, executions, ClOrdIDs, risk usage, counters): a
*projection* applies the logged batches in large transactions (every ``projection_interval_s``,
or sooner when ``max_batch`` batches wait or a reader asks), and records in the same transaction
the log position it has applied (table ``log_state``). Segments the store has applied are
deleted (the writer starts a new one every ``rotate_bytes``), so the log stays bounded. WAL
checkpoints also run in the projection, after its commits.

The projection is either a thread of this process (``projection="thread"``: the loop hands it
the rows it encoded, and its Python work shares the loop's GIL) or a child process
(``projection="process"``, crossbook.persistence.projector, what the server runs: the loop only
writes the record and publishes the log's end in a shared mapped word; the child reads the
records back from the log, on the other core). Both apply with ``apply_items``.

Recovery (``open()``): the log tail past SQLite's applied position is applied first (a torn last
record, a write the process never finished and whose reports were therefore never sent, is
dropped with a warning), then the state is read back from SQLite exactly as before.

Readers never see less than what was reported: the running server's HTTP API waits for
``wait_applied()`` (the projection catches up with everything written so far) before querying;
``OrderStore`` (``crossbook orders`` without a server, Python callers) first applies the tail of a
log no live server holds (the lock is free once its server died), or waits for the live server's
projection to pass the log's end.

``OrderStore`` is the read side: its own read-only connection, safe beside a running server.
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import operator
import os
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from crossbook.persistence import projector as _projector
from crossbook.persistence._record import RecordScanner
from crossbook.persistence.log import (
    LogLock, LogWriter, drop_torn, list_segments, log_directory, log_end, scan,
)

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
-- How far into the journal log (crossbook.persistence.log) this store is: written in the same
-- transaction as the rows it covers.
CREATE TABLE IF NOT EXISTS log_state (
    id      INTEGER PRIMARY KEY CHECK (id = 0),
    applied INTEGER NOT NULL
);
"""

RISK_KEY_PREFIX = "risk_usage:"

_TERMINAL_STATES = frozenset(("filled", "canceled", "rejected", "expired"))

#: How often the projection checkpoints the WAL at most, and after how many of its commits.
CHECKPOINT_INTERVAL_S = 0.2
CHECKPOINT_MIN_COMMITS = 5
#: How long a server's open() waits for the log lock (a reader applying a tail holds it briefly).
LOCK_WAIT_S = 10.0
#: How long OrderStore waits for a live server's projection to reach the log's end.
READER_CATCH_UP_S = 5.0
#: Niceness the projection process adds to the server's (capped at 19; higher yields more). It is background
#: work: at the default priority its 1-3 ms bursts every projection interval preempted the loop
#: and the server's clients on a 2-core machine. At 20,000 orders/s offered with the benchmark
#: client on the same machine (two alternating rounds): p50 2.3-2.4 ms at 0, 0.33-1.5 ms at 10,
#: 0.33-0.36 ms at 19; p99 7.9-10 ms in all three. 10 keeps most of the gain while the store
#: still gets a fair share of a machine that is busy for long (19 left it 0.6-2 MB of log behind
#: at the end of a 20,000/s run); the log is durable either way. The child lowers its own
#: priority once it has caught up with the log after starting (Projector._lower_priority), so
#: its imports and a restart's catch-up are not starved.
PROJECTION_NICENESS = 10

# Column order = the parameter tuples' order (see _ORDER_KEYS / _EXECUTION_KEYS): the stored
# columns that are plain row values come first, picked by one itemgetter.
_UPSERT_ORDER = (
    "INSERT INTO orders(order_id, seq, session, account, symbol, state, created_ns, updated_ns, is_open, data)"
    " VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(order_id) DO UPDATE SET seq=excluded.seq, session=excluded.session,"
    " account=excluded.account, symbol=excluded.symbol, state=excluded.state, is_open=excluded.is_open,"
    " created_ns=excluded.created_ns, updated_ns=excluded.updated_ns, data=excluded.data")
_INSERT_EXECUTION = ("INSERT OR REPLACE INTO executions(seq, exec_id, order_id, account, symbol, ts, data)"
                     " VALUES (?,?,?,?,?,?,?)")
_INSERT_CL_ORD_ID = "INSERT OR REPLACE INTO cl_ord_ids(session, cl_ord_id, order_id) VALUES (?,?,?)"
_INSERT_META = "INSERT OR REPLACE INTO meta(key, value) VALUES (?,?)"
_SET_APPLIED = "INSERT OR REPLACE INTO log_state(id, applied) VALUES (0, ?)"

# Record payload codecs (first byte): orjson cannot write integers beyond 64 bits and would read
# them back as floats, so a record that needed json.dumps says so and is read with json.loads.
_FAST, _EXACT = b"o", b"j"


def _dumps(value: Any) -> str:
    """JSON text of a stored value. orjson is ~5-10x faster than json.dumps; integer keys (the
    risk usage's positions per instrument) become strings as json.dumps makes them (without the
    option every risk usage fell back to json.dumps, ~2.5 us each, up to one per account per
    batch); integers beyond 64 bits, which orjson refuses, still go through json."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
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
    # 8 KiB pages for a store made now (no effect on an existing file, whose page size is fixed,
    # and it must come before WAL mode writes the header): the projection's rows (an order's
    # JSON is ~0.8 KB, an execution's ~0.45 KB) split and log fewer pages; replaying a
    # benchmark's batches cost 5.0-5.1 us per order instead of 5.6-5.8 with 4 KiB pages.
    conn.execute("PRAGMA page_size=8192")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


# A logged batch as the projection applies it: (end position, order params, execution params,
# ClOrdID triples, meta rows). Order params are the orders table's columns in _UPSERT_ORDER order.
_Item = tuple


#: The row keys stored in their own columns, in the statements' parameter order.
_ORDER_KEY_NAMES = ("order_id", "seq", "session", "account", "symbol", "state", "created_ns", "updated_ns")
_EXECUTION_KEY_NAMES = ("seq", "exec_id", "order_id", "account", "symbol", "ts")
_ORDER_KEYS = operator.itemgetter(*_ORDER_KEY_NAMES)
_EXECUTION_KEYS = operator.itemgetter(*_EXECUTION_KEY_NAMES)
#: Splits an orjson-written record into those parameters without decoding its rows into dicts
#: (crossbook.persistence._record; decode_record falls back to orjson for any other shape).
_scan_record = RecordScanner(_ORDER_KEY_NAMES, _EXECUTION_KEY_NAMES, _ORDER_KEY_NAMES.index("state"),
                             _TERMINAL_STATES, orjson.loads).scan


def _order_params(o: dict[str, Any], data: str) -> tuple:
    return _ORDER_KEYS(o) + (0 if o["state"] in _TERMINAL_STATES else 1, data)


def _execution_params(e: dict[str, Any], data: str) -> tuple:
    return _EXECUTION_KEYS(e) + (data,)


def encode_batch(batch) -> tuple[bytes, list[tuple], list[tuple], list[tuple], dict[str, Any]]:
    """A batch as one log record payload plus the parameters the projection binds. Raises
    ValueError when a row lacks a stored column (such a batch must never be acknowledged).

    Each row is encoded once: its JSON text is the stored ``data`` column, and the record is
    those texts joined and encoded in one step. Keeping orjson's ``bytes`` results alive instead
    (one per row until the join) cost about 3.5 us per row more than the encoding itself
    (allocator behaviour of its output buffers), three rows per resting order."""
    dumps = orjson.dumps
    exact = False
    order_json: list[str] = []
    orders: list[tuple] = []
    executions: list[tuple] = []
    exec_json: list[str] = []
    terminal = _TERMINAL_STATES
    order_keys, execution_keys = _ORDER_KEYS, _EXECUTION_KEYS
    try:
        for o in batch.orders.values():
            try:
                data = dumps(o).decode()
            except TypeError:  # an integer beyond 64 bits: json writes it exactly
                data = json.dumps(o)
                exact = True
            params = order_keys(o) + (0 if o["state"] in terminal else 1, data)
            if None in params:
                raise ValueError(f"order row {o.get('order_id')!r} has a null stored column")
            order_json.append(data)
            orders.append(params)
        for e in batch.executions:
            try:
                data = dumps(e).decode()
            except TypeError:
                data = json.dumps(e)
                exact = True
            params = execution_keys(e) + (data,)
            if None in params:
                raise ValueError(f"execution row {e.get('exec_id')!r} has a null stored column")
            exec_json.append(data)
            executions.append(params)
    except KeyError as exc:
        raise ValueError(f"a batch row lacks the stored column {exc}") from None
    cl_ord_ids = batch.cl_ord_ids
    meta: dict[str, Any] = dict(batch.meta) if batch.meta else {}
    if batch.risk_usage:
        for account, usage in batch.risk_usage.items():
            meta[f"{RISK_KEY_PREFIX}{account}"] = _dumps(usage)
    try:
        tail = dumps({"c": cl_ord_ids, "m": meta}).decode()
    except TypeError:
        tail = json.dumps({"c": cl_ord_ids, "m": meta})
    # Rows are encoded once, for the log and the store; the record is spliced from them.
    payload = "".join(('j{"o":[' if exact else 'o{"o":[', ",".join(order_json), '],"x":[',
                       ",".join(exec_json), "],", tail[1:])).encode()
    return payload, orders, executions, cl_ord_ids, meta


def encode_record(batch) -> bytes:
    """A batch as one log record payload, nothing else: what the loop does per batch when the
    projection runs in its own process, which decodes the record itself. The payload means the
    same as ``encode_batch``'s (one orjson call for the whole record instead of one per row and
    a splice: the rows' texts are not needed here). Raises ValueError when a row lacks a stored
    column or has it null, exactly as ``encode_batch`` (such a batch must never be acknowledged)."""
    orders = list(batch.orders.values())
    order_keys, execution_keys = _ORDER_KEYS, _EXECUTION_KEYS
    try:
        for o in orders:
            if None in order_keys(o):
                raise ValueError(f"order row {o.get('order_id')!r} has a null stored column")
        for e in batch.executions:
            if None in execution_keys(e):
                raise ValueError(f"execution row {e.get('exec_id')!r} has a null stored column")
    except KeyError as exc:
        raise ValueError(f"a batch row lacks the stored column {exc}") from None
    meta = batch.meta
    if batch.risk_usage:
        meta = dict(meta) if meta else {}
        for account, usage in batch.risk_usage.items():
            meta[f"{RISK_KEY_PREFIX}{account}"] = _dumps(usage)
    record = {"o": orders, "x": batch.executions, "c": batch.cl_ord_ids, "m": meta or {}}
    try:
        return b"o" + orjson.dumps(record)
    except TypeError:  # an integer beyond 64 bits: json writes it exactly, and says so
        return b"j" + json.dumps(record).encode()


def decode_record(payload: bytes) -> tuple[list[tuple], list[tuple], list[tuple], dict[str, Any]]:
    """A log record back into the projection's parameters (recovery, the projection process)."""
    if type(payload) is bytes:
        # The common case, an orjson record: the scanner slices each row's JSON text out of it
        # (what orjson.dumps of the decoded row writes) and converts only the stored columns.
        scanned = _scan_record(payload)
        if scanned is not None:
            orders, executions, cl_ord_ids, meta = scanned
            return orders, executions, [tuple(c) for c in orjson.loads(cl_ord_ids)], orjson.loads(meta)
    return _decode_record_general(payload)


def _decode_record_general(payload: bytes) -> tuple[list[tuple], list[tuple], list[tuple], dict[str, Any]]:
    """decode_record for any record: the whole record decoded, every row dumped again."""
    body = payload[1:]
    if payload[:1] == _EXACT:
        record = json.loads(body)
        orders = [_order_params(o, _dumps(o)) for o in record["o"]]
        executions = [_execution_params(e, _dumps(e)) for e in record["x"]]
    else:
        # Rows read back from JSON have string keys and 64-bit integers only (an exact record
        # is the other branch), so plain orjson.dumps writes what _dumps would, without its
        # option and fallback (about 15 % of the projection process's time at saturation).
        record = orjson.loads(body)
        dumps = orjson.dumps
        orders = [_order_params(o, dumps(o).decode()) for o in record["o"]]
        executions = [_execution_params(e, dumps(e).decode()) for e in record["x"]]
    return orders, executions, [tuple(c) for c in record["c"]], record["m"]


#: Rows per multi-row INSERT: the sizes a batch of rows is cut into, largest first, so a
#: handful of statement texts (cached by the connection) cover any count.
_ROW_CHUNKS = (256, 64, 16, 4, 1)
_multi_row_sql: dict[tuple[str, int], str] = {}


def _insert_rows(conn: sqlite3.Connection, sql: str, width: int, rows: list[tuple]) -> None:
    """Insert ``rows`` (``width`` values each) with ``sql`` (one ``VALUES (...)`` group, the
    ``ON CONFLICT`` clause after it) as multi-row statements, 256 rows per step.

    Why not ``executemany``: the sqlite3 module releases the GIL around each row's step and
    takes it back after, so with the event loop thread busy every row waited for a GIL switch
    interval, and at saturation the projection fell tens of MB of log behind. One statement per
    256 rows takes the GIL back once per 256 rows (and binds their values in one C loop)."""
    group = "(" + ",".join("?" * width) + ")"
    head, _, tail = sql.partition(group)
    i, n = 0, len(rows)
    chain = itertools.chain.from_iterable
    for size in _ROW_CHUNKS:
        if n - i < size:
            continue
        key = (sql, size)
        text = _multi_row_sql.get(key)
        if text is None:
            text = _multi_row_sql[key] = head + ",".join((group,) * size) + tail
        while n - i >= size:
            conn.execute(text, tuple(chain(rows[i:i + size])))
            i += size


def apply_items(conn: sqlite3.Connection, items: list, applied: int) -> None:
    """Apply logged batches to the store in ONE transaction, with the log position they reach."""
    orders: dict[str, tuple] = {}
    executions: list[tuple] = []
    cl_ord_ids: list[tuple] = []
    meta: dict[str, Any] = {}
    for _, o, x, c, m in items:
        for params in o:
            orders[params[0]] = params   # an order changed in several batches is written once
        executions.extend(x)
        if c:
            cl_ord_ids.extend(c)
        if m:
            meta.update(m)
    conn.execute("BEGIN")
    try:
        if orders:
            _insert_rows(conn, _UPSERT_ORDER, 10, list(orders.values()))
        if executions:
            _insert_rows(conn, _INSERT_EXECUTION, 7, executions)
        if cl_ord_ids:
            conn.executemany(_INSERT_CL_ORD_ID, cl_ord_ids)
        if meta:
            conn.executemany(_INSERT_META, meta.items())
        conn.execute(_SET_APPLIED, (applied,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def applied_position(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT applied FROM log_state WHERE id = 0").fetchone()
    return int(row[0]) if row else 0


def recover(conn: sqlite3.Connection, directory: str, *, chunk: int = 4096) -> tuple[int, int]:
    """Apply the log tail past the store's applied position (caller holds the log lock), drop a
    torn last record, delete the segments the store now covers. Returns (records applied,
    position reached)."""
    start = applied_position(conn)
    result = scan(directory, start)
    items: list = []
    for payload, end in result.records:
        items.append((end, *decode_record(payload)))
        if len(items) >= chunk:
            apply_items(conn, items, end)
            items = []
    if items:
        apply_items(conn, items, items[-1][0])
    if result.torn is not None:
        t = result.torn
        log.warning("journal log %s: dropped a torn last record at position %d (%d bytes, %s): a write the "
                    "process never finished, so none of its reports were sent", t.path, t.position, t.size,
                    t.reason)
        drop_torn(t)
    if result.records:
        log.info("journal log %s: applied %d record(s) the store lacked, up to position %d", directory,
                 len(result.records), result.end)
    for base, path in list_segments(directory):  # everything is in the store now
        os.unlink(path)
    return len(result.records), max(result.end, start)


def _read_state(conn: sqlite3.Connection) -> RecoveredState:
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
    return state


class _SharedCount:
    """A journal count (commits, checkpoints) that the projection child keeps in the shared
    words while it runs; read from there then, and from the journal's own ``_<name>``
    otherwise (thread projection, or after the child's last values were copied back)."""

    def __init__(self, word: int) -> None:
        self._word = word

    def __set_name__(self, owner: type, name: str) -> None:
        self._own = "_" + name

    def __get__(self, journal: Any, owner: type | None = None) -> Any:
        if journal is None:
            return self
        words = journal._words
        return words.load(self._word) if words is not None else getattr(journal, self._own)

    def __set__(self, journal: Any, value: int) -> None:
        setattr(journal, self._own, value)


class SqliteJournal:
    """Log-first journal with a SQLite projection (module docstring). ``open()`` (recovers,
    returns what to restore), ``start()`` on the event loop, ``submit()`` per batch (durable on
    return), ``wait_applied()`` before reading the store, ``close()`` at shutdown.

    ``projection`` says where the log is applied to SQLite: ``"thread"`` (default: a thread of
    this process, which shares the GIL with the loop) or ``"process"`` (a child process,
    crossbook.persistence.projector; what the server runs). Both apply the same records with
    the same code; only the loop's share of the work and who holds the GIL differ.

    ``commits`` counts the projection's SQLite transactions, ``writes`` the log records."""

    def __init__(self, path: str, *, synchronous: str = "NORMAL", max_batch: int = 4096,
                 projection_interval_s: float = 0.02, rotate_bytes: int = 64 << 20,
                 projection: str = "thread") -> None:
        if not isinstance(synchronous, str) or synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be a positive integer, got {max_batch!r}")
        if not isinstance(projection_interval_s, (int, float)) or not 0 < projection_interval_s <= 60:
            raise ValueError(f"projection_interval_s must be in (0, 60], got {projection_interval_s!r}")
        if not isinstance(rotate_bytes, int) or rotate_bytes < 4096:
            raise ValueError(f"rotate_bytes must be an integer >= 4096, got {rotate_bytes!r}")
        if projection not in ("thread", "process"):
            raise ValueError(f"projection must be 'thread' or 'process', got {projection!r}")
        self.path = path
        self.synchronous = synchronous.upper()
        self.max_batch = max_batch
        self.projection_interval_s = float(projection_interval_s)
        self.rotate_bytes = rotate_bytes
        self.projection = projection
        self.log_dir = log_directory(path)
        self._lock: LogLock | None = None
        self._writer: LogWriter | None = None
        self._conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Loop -> projection: logged items; deque appends/pops are atomic under the GIL.
        self._pending: collections.deque = collections.deque()
        self._closed_segments: collections.deque = collections.deque()  # (base, end, path)
        self._wake = threading.Event()
        self._stopping = False
        self._waiters: list[tuple[int, asyncio.Future]] = []
        self._waiters_lock = threading.Lock()
        self._position = 0        # end of the log written so far (loop thread)
        self._applied = 0         # end of what the store has applied (projection thread)
        # Process mode (crossbook.persistence.projector): the child, the words shared with it
        # (None in thread mode: submit() checks that), the pipes, the restart schedule.
        self._child: subprocess.Popen | None = None
        self._shared = None
        self._words = None
        self._wake_w = -1
        self._report_r = -1
        self._report_buf = b""
        self._since_wake = 0
        self._restarts = 0
        self._restart_handle: asyncio.TimerHandle | None = None
        self._restarting = False  # from a child's death until its successor reports it started
        self._child_started_at = 0.0
        self._commits = 0
        self._checkpoints = 0
        self.child_restarts = 0
        self.writes = 0
        self.recovered_records = 0
        self.failed: BaseException | None = None
        self.projection_error: BaseException | None = None

    commits = _SharedCount(_projector.COMMITS)
    checkpoints = _SharedCount(_projector.CHECKPOINTS)

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> RecoveredState:
        """Create the database if needed, apply the log tail it lacks, read back the saved state.
        Takes the log lock (held until close()): one server per storage directory."""
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        if self._lock is None:
            self._lock = LogLock(self.log_dir)
            self._lock.acquire(LOCK_WAIT_S)
            # A killed server's projection process may still be finishing a transaction.
            try:
                _projector.wait_for_projector_exit(self.log_dir, LOCK_WAIT_S)
            except BaseException:
                self._lock.release()
                self._lock = None
                raise
        if self._conn is None:
            conn = _connect(self.path, self.synchronous)
            conn.executescript(SCHEMA)
            # WAL checkpoints run on the projection thread after its commits (module docstring).
            conn.execute("PRAGMA wal_autocheckpoint=0")
            self._conn = conn
        self.recovered_records, self._position = recover(self._conn, self.log_dir)
        self._applied = self._position
        return _read_state(self._conn)

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Open a fresh log segment and start the projection (thread or process)."""
        if self._conn is None:
            self.open()
        self._loop = loop or asyncio.get_running_loop()
        self._writer = LogWriter(self.log_dir, self._position, sync=self.synchronous == "FULL")
        self._stopping = False
        if self.projection == "process":
            # The child is the store's only writer from now on.
            self._conn.close()
            self._conn = None
            self._shared = _projector.Shared(self.log_dir, create=True)
            self._words = self._shared.words
            self._words.store(_projector.END, self._position)
            self._words.store(_projector.APPLIED, self._applied)
            self._spawn_child()
            return
        self._thread = threading.Thread(target=self._project, name="crossbook-projection", daemon=True)
        self._thread.start()

    def submit(self, batch, on_durable: Callable[[Any], None]) -> None:
        """Log ``batch`` (one record, on the calling loop thread) and call ``on_durable(batch)``
        before returning. A batch that cannot be stored, or a failed write, stops the journal:
        nothing is acknowledged from then on (later submits raise RuntimeError)."""
        if self.failed is not None:
            raise RuntimeError(f"journal failed: {self.failed}")
        writer = self._writer
        if writer is None:
            raise RuntimeError("journal not started: call start() first")
        words = self._words
        try:
            if words is not None:   # process mode: the child decodes the record itself
                end = writer.append(encode_record(batch))
            else:
                payload, orders, executions, cl_ord_ids, meta = encode_batch(batch)
                end = writer.append(payload)
        except (ValueError, TypeError, OSError) as exc:  # the OMS must stop acknowledging
            log.exception("journal write failed: nothing is acknowledged from now on")
            self.failed = exc
            return
        self._position = end
        self.writes += 1
        if words is not None:
            words.store(_END, end)  # the child may read up to here (a store, no system call)
            self._since_wake += 1
            if self._since_wake >= self.max_batch:
                self._wake_child()  # a large backlog: do not wait for the interval
        else:
            pending = self._pending
            pending.append((end, orders, executions, cl_ord_ids, meta))
            if len(pending) == self.max_batch:
                self._wake.set()  # a large backlog: do not wait for the interval
        if writer.segment_bytes >= self.rotate_bytes:
            try:
                closed = writer.rotate()
                if words is None:  # the child finds closed segments itself (LogTail)
                    self._closed_segments.append(closed)
            except OSError as exc:  # this batch is logged; the next one has nowhere to go
                log.exception("journal log rotation failed: nothing more is acknowledged")
                self.failed = exc
        on_durable(batch)

    async def wait_applied(self, timeout: float = 5.0) -> None:
        """Return once the store holds everything logged so far (a reader's barrier: a query
        after it sees every report already sent). RuntimeError if the projection is failing,
        TimeoutError after ``timeout`` seconds."""
        target = self._position
        words = self._words
        if words is not None:
            self._applied = max(self._applied, words.load(_projector.APPLIED))
        if self._applied >= target:
            return
        # A projection process that died is being restarted: wait for the new one instead.
        if self.projection_error is not None and not self._restarting:
            raise RuntimeError(f"journal projection failing: {self.projection_error}")
        if self._thread is None and words is None:
            raise RuntimeError("journal not started")
        future = asyncio.get_running_loop().create_future()
        with self._waiters_lock:
            self._waiters.append((target, future))
        if words is not None:
            self._want_child()
        else:
            self._wake.set()
        await asyncio.wait_for(future, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Apply everything logged, stop the projection, delete the applied log, close."""
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            self._thread.join(timeout)
            self._thread = None
        if self._words is not None:
            self._stop_child(timeout)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            if self._applied == self._position:
                for _, path in list_segments(self.log_dir):  # all applied: nothing to recover
                    os.unlink(path)
        if self._conn is not None:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass
            self._conn.close()
            self._conn = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __del__(self) -> None:
        # A journal dropped without close(): end of file on the wake pipe ends its projection
        # process as a dead server's would (the next open() applies what it had not). Its
        # report pipe is closed too, and the child is reaped once it exits (no zombie).
        report_r = getattr(self, "_report_r", -1)
        if report_r >= 0:
            loop = self._loop
            if loop is not None and not loop.is_closed():
                try:
                    loop.remove_reader(report_r)
                except Exception:  # a loop being torn down: nothing to unregister from
                    pass
        for name in ("_wake_w", "_report_r"):
            fd = getattr(self, name, -1)
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, -1)
        child = getattr(self, "_child", None)
        if child is not None and child.poll() is None:
            # It exits within one transaction of the end of file; never block a collection
            # (which may run on the event loop) for that long.
            try:
                threading.Thread(target=_reap_child, args=(child,), name="crossbook-projection-reaper",
                                 daemon=True).start()
            except RuntimeError:  # interpreter shutdown: no new threads; init reaps it after us
                pass

    # ------------------------------------------------------------------ projection process
    def _spawn_child(self) -> None:
        """Start crossbook.persistence.projector with its two pipes; the loop watches the report
        pipe (one line per event, end of file when the child dies)."""
        wake_r, wake_w = os.pipe()
        report_r, report_w = os.pipe()
        os.set_blocking(wake_w, False)      # a wake byte must never block the loop
        args = [sys.executable, "-c", _CHILD_MAIN, self.path, self.log_dir, "--wake-fd", str(wake_r),
                "--report-fd", str(report_w), "--synchronous", self.synchronous,
                "--interval", repr(self.projection_interval_s), "--max-batch", str(self.max_batch),
                "--niceness", str(PROJECTION_NICENESS)]
        try:
            # stderr stays the server's (the child logs there); stdout is not its to write.
            child = subprocess.Popen(args, pass_fds=(wake_r, report_w), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, env=_child_environment())
        except BaseException:
            for fd in (wake_r, wake_w, report_r, report_w):
                os.close(fd)
            raise
        os.close(wake_r)
        os.close(report_w)
        self._child, self._wake_w, self._report_r, self._report_buf = child, wake_w, report_r, b""
        self._child_started_at = time.monotonic()
        self._since_wake = 0
        if self._loop is not None and not self._loop.is_closed():
            self._loop.add_reader(report_r, self._on_report)

    def _wake_child(self) -> None:
        self._since_wake = 0
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"w")
            except BlockingIOError:  # the pipe is full of wake bytes: it is awake anyway
                pass
            except OSError:          # the child is gone; _on_report restarts it
                pass

    def _want_child(self) -> None:
        """Ask the child to report once it has applied the lowest target a reader waits for."""
        with self._waiters_lock:
            lowest = min((t for t, f in self._waiters if not f.done()), default=0)
        self._words.store(_projector.WANTED, lowest)
        if lowest:
            self._wake_child()

    def _on_report(self) -> None:
        try:
            data = os.read(self._report_r, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._child_died()
            return
        lines = (self._report_buf + data).split(b"\n")
        self._report_buf = lines.pop()
        for line in lines:
            kind, _, rest = line.decode(errors="replace").partition(" ")
            if kind in ("S", "A"):
                if kind == "S":
                    self._restarting = False
                if kind == "S" and self.projection_error is not None:
                    log.warning("journal projection process restarted (pid %d); it applies from position %s",
                                self._child.pid if self._child else -1, rest)
                self.projection_error = None
                self._applied = max(self._applied, int(rest))
            elif kind == "E":
                self.projection_error = RuntimeError(rest)
                log.error("journal projection process: %s (it retries; the log keeps every batch)", rest)
        self._release_waiters_here()

    def _release_waiters_here(self) -> None:
        """Resolve the waiters the store now covers (on the loop), and ask for the rest."""
        if not self._waiters:
            if self._words is not None:
                self._words.store(_projector.WANTED, 0)  # nobody waits: no more reports
            return
        applied = max(self._applied, self._words.load(_projector.APPLIED)) if self._words else self._applied
        self._applied = applied
        with self._waiters_lock:
            ready = [f for t, f in self._waiters if t <= applied]
            self._waiters = [(t, f) for t, f in self._waiters if t > applied and not f.done()]
        _resolve(ready)
        if self._words is not None:
            self._want_child()  # the lowest target still waited for, or 0

    def _close_child_pipes(self) -> None:
        if self._report_r >= 0:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._report_r)
            os.close(self._report_r)
            self._report_r = -1
        if self._wake_w >= 0:
            os.close(self._wake_w)
            self._wake_w = -1

    def _child_died(self) -> None:
        child = self._child
        self._close_child_pipes()
        self._child = None
        code = None
        if child is not None:
            try:
                code = child.wait(1.0)   # its report pipe closed as it exited: this is immediate
            except subprocess.TimeoutExpired:
                child.kill()
                code = child.wait()
        self.projection_error = RuntimeError(f"the journal projection process exited (code {code})")
        self._restarting = True
        lived = time.monotonic() - self._child_started_at
        # Restart at once after a long life; back off when it dies again right after starting.
        self._restarts = self._restarts + 1 if lived < 1.0 else 0
        delay = 0.0 if not self._restarts else min(0.1 * 2 ** (self._restarts - 1), 5.0)
        log.error("journal projection process (pid %s) exited with code %s; restarting it in %.1f s "
                  "(nothing is lost: the log holds every batch)", child.pid if child else "?", code, delay)
        assert self._loop is not None
        self._restart_handle = self._loop.call_later(delay, self._restart_child)

    def _restart_child(self) -> None:
        self._restart_handle = None
        if self._words is None or self._child is not None:
            return
        try:
            self._spawn_child()
        except OSError as exc:
            log.error("cannot start the journal projection process: %s; trying again in 5 s", exc)
            self.projection_error = exc
            self._restart_handle = self._loop.call_later(5.0, self._restart_child)
            return
        self.child_restarts += 1
        if self._waiters:
            self._want_child()

    def _stop_child(self, timeout: float) -> None:
        """close(): the child applies everything logged, checkpoints and exits; joined with a
        timeout (then killed: the log keeps what it had not applied, for the next open())."""
        words = self._words
        if self._restart_handle is not None:
            self._restart_handle.cancel()
            self._restart_handle = None
        child = self._child
        if child is None and self._applied < self._position:
            try:  # it died and its restart is still pending: one more run to apply the rest
                self._spawn_child()
                child = self._child
            except OSError as exc:
                log.error("cannot start the journal projection process to apply the rest: %s (the "
                          "next open() applies it)", exc)
                child = None
        if child is not None:
            words.store(_projector.STOP, 1)
            self._wake_child()
            _wait_or_kill(child, timeout, "journal projection process (pid %d) did not finish in %.1f s; "
                          "killed (the log keeps what it had not applied)")
            self._child = None
        self._close_child_pipes()
        self._applied = max(self._applied, words.load(_projector.APPLIED))
        self._commits = words.load(_projector.COMMITS)
        self._checkpoints = words.load(_projector.CHECKPOINTS)
        self._words = None
        self._shared.close(unlink=True)
        self._shared = None
        with self._waiters_lock:
            waiters, self._waiters = self._waiters, []
        for _, f in waiters:
            if not f.done():
                f.set_exception(RuntimeError("journal closed"))

    # ------------------------------------------------------------------ projection thread
    def _project(self) -> None:
        conn = self._conn
        assert conn is not None
        pending = self._pending
        last_checkpoint = time.monotonic()
        checkpoint_commits = self.commits
        backoff = 0.0
        retry: list = []
        while True:
            self._wake.wait(backoff or self.projection_interval_s)
            self._wake.clear()
            stopping = self._stopping
            items = retry
            while pending:
                items.append(pending.popleft())
            if items:
                try:
                    apply_items(conn, items, items[-1][0])
                except Exception as exc:  # the log holds them: keep them and try again
                    if self.projection_error is None:
                        log.exception("journal projection to SQLite failed; retrying (the log keeps every batch)")
                    self.projection_error = exc
                    retry = items
                    backoff = min(max(backoff * 2, 0.05), 2.0)
                    if stopping:
                        return
                    continue
                if self.projection_error is not None:
                    log.warning("journal projection to SQLite recovered")
                self.projection_error = None
                backoff = 0.0
                retry = []
                self._applied = items[-1][0]
                self.commits += 1
                self._drop_applied_segments()
            self._release_waiters()
            # Checkpoint once enough commits piled up, also in a quiet round after them.
            now = time.monotonic()
            if (self.commits - checkpoint_commits >= CHECKPOINT_MIN_COMMITS
                    and now - last_checkpoint >= CHECKPOINT_INTERVAL_S):
                checkpoint_commits, last_checkpoint = self.commits, now
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error:  # busy or locked: a later round tries again
                    log.debug("WAL checkpoint skipped", exc_info=True)
            if stopping and not pending:
                return

    def _drop_applied_segments(self) -> None:
        closed = self._closed_segments
        while closed and closed[0][1] <= self._applied:
            _, _, path = closed.popleft()
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def _release_waiters(self) -> None:
        if not self._waiters:
            return
        applied = self._applied
        with self._waiters_lock:
            ready = [f for t, f in self._waiters if t <= applied]
            self._waiters = [(t, f) for t, f in self._waiters if t > applied]
        if ready and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(_resolve, ready)
            except RuntimeError:  # loop closed during shutdown
                pass


_END = _projector.END
#: What the projection process runs (``-c``, not ``-m``: see crossbook.persistence.projector).
_CHILD_MAIN = "import sys; from crossbook.persistence.projector import main; sys.exit(main())"


def _child_environment() -> dict[str, str]:
    """The server's environment, with the directory this crossbook package was imported from
    first on PYTHONPATH: the projection process runs the same code as the server, however the
    server found it (an installed copy, a source tree on sys.path)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


#: How long a dropped journal's reaper waits for its projection process to exit before killing
#: it (it exits after the transaction it is in; killing it is safe, the log keeps everything).
REAP_WAIT_S = 30.0


def _reap_child(child: subprocess.Popen) -> None:
    _wait_or_kill(child, REAP_WAIT_S, "journal projection process (pid %d) did not exit %.0f s after its "
                  "journal was dropped; killed (the log keeps what it had not applied)")


def _wait_or_kill(child: subprocess.Popen, timeout: float, message: str) -> None:
    # A projection process that has not exited within timeout is killed (safe: the log keeps
    # all it had not applied) and reaped; message takes the pid and the timeout.
    try:
        child.wait(timeout)
    except subprocess.TimeoutExpired:
        log.error(message, child.pid, timeout)
        child.kill()
        child.wait()


def _resolve(futures: list) -> None:
    for f in futures:
        if not f.done():
            f.set_result(None)


OPEN_STATES = ("pending_new", "new", "partially_filled", "pending_cancel", "pending_replace")


class OrderStore:
    """Read-only queries over a journal database (also while a server writes to it).

        >>> store = OrderStore("var/crossbook.db")          # doctest: +SKIP
        >>> store.orders(status="open", account="ACC1")     # doctest: +SKIP

    With ``catch_up`` (default), opening first makes the store hold every batch in its journal
    log, so every acknowledged order shows: when no live server holds the log (it was stopped or
    killed), the reader takes the log lock and applies the tail itself, as the server's own
    restart would; when a live server holds it, the reader waits (up to ``READER_CATCH_UP_S``)
    for that server's projection to reach the log's end. The running server's HTTP API passes
    ``catch_up=False`` and waits on ``SqliteJournal.wait_applied()`` before each query instead.
    """

    def __init__(self, path: str, *, catch_up: bool = True) -> None:
        if not os.path.exists(path):
            raise FileNotFoundError(f"no order database at {path}")
        self.path = path
        if catch_up:
            catch_up_log(path)
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


def catch_up_log(path: str, timeout: float = READER_CATCH_UP_S) -> None:
    """Make the database at ``path`` hold everything in its journal log (see OrderStore)."""
    directory = log_directory(path)
    end = log_end(directory)
    if end is None:
        return  # no log: the store is complete
    try:
        lock = LogLock(directory)
        acquired = lock.try_acquire()
    except OSError as exc:  # e.g. a read-only copy of the storage directory
        log.warning("%s: cannot lock its journal log (%s); orders in the log's tail will not show", path, exc)
        return
    if acquired:
        try:
            # A killed server's projection process may still be finishing a transaction.
            _projector.wait_for_projector_exit(directory, LOCK_WAIT_S)
        except RuntimeError as exc:
            lock.release()
            log.warning("%s: %s; orders in its journal log's tail may not show", path, exc)
            return
        try:
            conn = _connect(path)
            try:
                conn.executescript(SCHEMA)
                recover(conn, directory)
            finally:
                conn.close()
        except (OSError, sqlite3.Error) as exc:
            log.warning("%s: cannot apply its journal log's tail (%s); orders in it will not show", path, exc)
        finally:
            lock.release()
        return
    # A live server: its projection applies what it logged within its interval.
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                applied = applied_position(conn)
            except sqlite3.OperationalError:  # log_state not created yet: the server is starting
                applied = 0
            if applied >= end:
                return
            if time.monotonic() >= deadline:
                log.warning("%s: the running server's store is at log position %d of %d after %.1f s; "
                            "showing what it holds", path, applied, end, timeout)
                return
            time.sleep(0.005)
    finally:
        conn.close()
