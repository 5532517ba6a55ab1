"""The projection's faster record decoding (crossbook.persistence._record) stores exactly what the
decoding it replaced stored: a differential test against a verbatim copy of the projection of
commit 4b97696 (orjson.loads of the record, orjson.dumps of every row, one multi-row upsert per
chunk), over random streams of batches cut into random transactions, comparing every table row
by row, rowid included."""
from __future__ import annotations

import itertools
import json
import math
import sqlite3
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from crossbook.oms.manager import Batch
from crossbook.persistence import sqlite as sq
from crossbook.persistence._record import RecordScanner

# ----------------------------------------------------------------------------------------------
# The reference: decode_record and apply_items as they were at 4b97696 (copied, not imported,
# so that later changes to the module are measured against the behaviour the store had).

_TERMINAL = frozenset(("filled", "canceled", "rejected", "expired"))
_REF_UPSERT_ORDER = (
    "INSERT INTO orders(order_id, seq, session, account, symbol, state, created_ns, updated_ns, is_open, data)"
    " VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(order_id) DO UPDATE SET seq=excluded.seq, session=excluded.session,"
    " account=excluded.account, symbol=excluded.symbol, state=excluded.state, is_open=excluded.is_open,"
    " created_ns=excluded.created_ns, updated_ns=excluded.updated_ns, data=excluded.data")
_REF_INSERT_EXECUTION = ("INSERT OR REPLACE INTO executions(seq, exec_id, order_id, account, symbol, ts, data)"
                         " VALUES (?,?,?,?,?,?,?)")
_REF_INSERT_CL_ORD_ID = "INSERT OR REPLACE INTO cl_ord_ids(session, cl_ord_id, order_id) VALUES (?,?,?)"
_REF_INSERT_META = "INSERT OR REPLACE INTO meta(key, value) VALUES (?,?)"
_REF_SET_APPLIED = "INSERT OR REPLACE INTO log_state(id, applied) VALUES (0, ?)"
_REF_ORDER_KEYS = ("order_id", "seq", "session", "account", "symbol", "state", "created_ns", "updated_ns")
_REF_EXECUTION_KEYS = ("seq", "exec_id", "order_id", "account", "symbol", "ts")


def _ref_dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)


def _ref_order_params(o: dict, data: str) -> tuple:
    return tuple(o[k] for k in _REF_ORDER_KEYS) + (0 if o["state"] in _TERMINAL else 1, data)


def _ref_execution_params(e: dict, data: str) -> tuple:
    return tuple(e[k] for k in _REF_EXECUTION_KEYS) + (data,)


def reference_decode(payload: bytes):
    body = payload[1:]
    if payload[:1] == b"j":
        record = json.loads(body)
        orders = [_ref_order_params(o, _ref_dumps(o)) for o in record["o"]]
        executions = [_ref_execution_params(e, _ref_dumps(e)) for e in record["x"]]
    else:
        record = orjson.loads(body)
        orders = [_ref_order_params(o, orjson.dumps(o).decode()) for o in record["o"]]
        executions = [_ref_execution_params(e, orjson.dumps(e).decode()) for e in record["x"]]
    return orders, executions, [tuple(c) for c in record["c"]], record["m"]


def _ref_insert_rows(conn, sql: str, width: int, rows: list) -> None:
    group = "(" + ",".join("?" * width) + ")"
    head, _, tail = sql.partition(group)
    i, n = 0, len(rows)
    for size in (256, 64, 16, 4, 1):
        while n - i >= size:
            conn.execute(head + ",".join((group,) * size) + tail,
                         tuple(itertools.chain.from_iterable(rows[i:i + size])))
            i += size


def reference_apply(conn, items: list, applied: int) -> None:
    orders: dict = {}
    executions: list = []
    cl_ord_ids: list = []
    meta: dict = {}
    for _, o, x, c, m in items:
        for params in o:
            orders[params[0]] = params
        executions.extend(x)
        if c:
            cl_ord_ids.extend(c)
        if m:
            meta.update(m)
    conn.execute("BEGIN")
    try:
        if orders:
            _ref_insert_rows(conn, _REF_UPSERT_ORDER, 10, list(orders.values()))
        if executions:
            _ref_insert_rows(conn, _REF_INSERT_EXECUTION, 7, executions)
        if cl_ord_ids:
            conn.executemany(_REF_INSERT_CL_ORD_ID, cl_ord_ids)
        if meta:
            conn.executemany(_REF_INSERT_META, meta.items())
        conn.execute(_REF_SET_APPLIED, (applied,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


# ----------------------------------------------------------------------------------------------
# Random batches: awkward text (quotes, backslashes, control characters, non-ASCII), floats,
# integers up to 64 bits (beyond: the exact 'j' records), nested values, orders that come back in
# later batches (upserts), the columns' values in any JSON type orjson writes.

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 63), 2 ** 64 - 1),
                    st.floats(allow_nan=True, allow_infinity=True), _text)
_extra = st.recursive(_scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(_text, inner, max_size=3)), max_leaves=6)
_column_text = st.one_of(st.sampled_from(["FIRM1", "ACC1", "AAPL", ""]), _text)
_column_int = st.one_of(st.integers(0, 10 ** 6), st.integers(10 ** 17, 2 ** 63 - 1), st.integers(-(2 ** 63), -1))
_column = st.one_of(_column_text, _column_int, st.floats(allow_nan=False, allow_infinity=False), st.booleans())
_state = st.sampled_from(["pending_new", "new", "partially_filled", "filled", "canceled", "rejected", "expired"])


@st.composite
def batches(draw) -> list[Batch]:
    order_ids = draw(st.lists(st.one_of(st.sampled_from(["O1", "O2", "O3"]), _text), min_size=1, max_size=6,
                              unique=True))
    out = []
    exec_seq = itertools.count(1)
    for _ in range(draw(st.integers(1, 12))):
        b = Batch()
        for order_id in draw(st.lists(st.sampled_from(order_ids), max_size=4)):
            row = {"order_id": order_id, "seq": draw(_column_int), "session": draw(_column_text),
                   "account": draw(_column), "symbol": draw(_column_text), "state": draw(_state),
                   "created_ns": draw(_column_int), "updated_ns": draw(_column)}
            for key, value in draw(st.dictionaries(_text, _extra, max_size=4)).items():
                row.setdefault(key, value)
            if draw(st.booleans()):   # column order inside a row is the writer's business
                row = dict(reversed(list(row.items())))
            b.orders[order_id] = row
            for _ in range(draw(st.integers(0, 2))):
                seq = next(exec_seq)
                execution = {"exec_id": f"X{seq}", "order_id": order_id, "seq": seq, "account": draw(_column),
                             "symbol": draw(_column_text), "ts": draw(_column_int), "text": draw(_text),
                             "price": draw(st.floats(allow_nan=False))}
                b.executions.append(execution)
        b.cl_ord_ids = draw(st.lists(st.tuples(_column_text, _text, st.sampled_from(order_ids)), max_size=2))
        b.meta = draw(st.dictionaries(st.sampled_from(["order_seq", "exec_seq", "sent_exec_seq", "k\"\\é"]), _text,
                                      max_size=3))
        b.risk_usage = draw(st.dictionaries(st.integers(0, 3), st.dictionaries(_text, _extra, max_size=2),
                                            max_size=2))
        out.append(b)
    return out


def _dump(conn) -> dict:
    return {table: [tuple(r) for r in conn.execute(f"SELECT rowid, * FROM {table} ORDER BY rowid")]
            for table in ("orders", "executions", "cl_ord_ids", "meta", "risk_usage", "log_state")}


def _new_store(path: str):
    conn = sq._connect(path)
    conn.executescript(sq.SCHEMA)
    return conn


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                  HealthCheck.function_scoped_fixture])
@given(stream=batches(), cuts=st.lists(st.integers(1, 12), max_size=4), thread_writer=st.booleans(),
       data=st.data())
def test_random_stream_projects_to_the_same_store(tmp_path_factory, stream, cuts, thread_writer, data):
    """Records as either writer makes them (encode_record: the process mode; encode_batch: the
    thread mode), cut into transactions at random points, projected the new way and the old
    way: every value decodes to the same parameters, and both stores hold the same rows."""
    payloads = []
    for b in stream:
        try:
            payloads.append(sq.encode_batch(b)[0] if thread_writer else sq.encode_record(b))
        except ValueError:
            return  # a row the journal refuses (a null column): never logged, never projected
    items_new, items_ref, position = [], [], 0
    for payload in payloads:
        if data.draw(st.booleans()):   # the log reader may hand over whitespace-padded records
            payload = payload + b" \n"
        position += len(payload) + 8
        got, want = sq.decode_record(payload), reference_decode(payload)
        assert len(got[0]) == len(want[0]) and len(got[1]) == len(want[1])
        for got_rows, want_rows in zip(got[:2], want[:2]):
            for g, w in zip(got_rows, want_rows):
                assert len(g) == len(w) and all(_same_value(x, y) for x, y in zip(g, w)), (g, w)
        assert got[2:] == want[2:]
        items_new.append((position, *got))
        items_ref.append((position, *want))
    directory = tmp_path_factory.mktemp("stores")
    new, ref = _new_store(str(directory / "new.db")), _new_store(str(directory / "ref.db"))
    try:
        start = 0
        for cut in sorted(set(cuts)) + [len(items_new)]:
            if cut <= start or cut > len(items_new):
                continue
            sq.apply_items(new, items_new[start:cut], items_new[cut - 1][0])
            reference_apply(ref, items_ref[start:cut], items_ref[cut - 1][0])
            start = cut
        assert _dump(new) == _dump(ref)
    finally:
        new.close()
        ref.close()


def test_benchmark_shaped_records_take_the_scanner_and_decode_as_before():
    """A resting order's batch as the OMS writes it (order row with its ClOrdID list, two
    executions, counters, risk usage with integer keys), with 19-digit timestamps and escapes
    in the stored columns: the scanner handles it (no fallback) and matches the reference."""
    b = Batch()
    b.orders["O7"] = {"order_id": "O7", "seq": 7, "session": "FIRM\"1", "account": "AC\\C1", "symbol": "ÄAPL",
                      "state": "new", "created_ns": 1795621688271268698, "updated_ns": 1795621688271297541,
                      "price": 229.5, "cl_ord_ids": ["B1-7"], "text": "a\nb\u0001"}
    b.executions = [{"exec_id": f"X{n}", "order_id": "O7", "seq": n, "account": "AC\\C1", "symbol": "ÄAPL",
                     "ts": 1795621688271275067 + n, "last_px": 0.0} for n in (13, 14)]
    b.cl_ord_ids = [("FIRM\"1", "B1-7", "O7")]
    b.risk_usage = {0: {"positions": {0: {"open_buy": 1}}}}
    b.meta = {"order_seq": "7"}
    payload = sq.encode_record(b)
    assert sq._scan_record(payload) is not None
    assert sq.decode_record(payload) == reference_decode(payload)
    orders, executions, _, _ = sq.decode_record(payload)
    assert orders[0][:9] == ("O7", 7, "FIRM\"1", "AC\\C1", "ÄAPL", "new", 1795621688271268698,
                             1795621688271297541, 1)
    assert json.loads(orders[0][9]) == b.orders["O7"]
    assert [e[0] for e in executions] == [13, 14]


@pytest.mark.parametrize("payload", [
    b'o{"o":[{"order_id":"O1", "seq":1}],"x":[],"c":[],"m":{}}',     # whitespace inside a row
    b'o{"o":[[1,2]],"x":[],"c":[],"m":{}}',                         # a row that is not an object
    b'o{"o":[{"order_id":"O1"}],"x":[],"c":[],"m":{}}',              # a column missing
    b'o{"o":[],"x":[],"c":[],"m":{},"z":1}',                        # a key the record never has
    b'o{"o":[],"x":[],"c":[]}',                                     # one it always has, missing
    b'o{"o":[],"x":[],"c":[],"m":{}',                               # cut short
    b'o{"o":[{"order_id":null,"seq":1,"session":"s","account":"a","symbol":"y","state":"new",'
    b'"created_ns":1,"updated_ns":2}],"x":[],"c":[],"m":{}}',        # a null column
    b'j{"o":[],"x":[],"c":[],"m":{}}',                              # the exact codec
    b'o',
    b'',
])
def test_scanner_leaves_unexpected_shapes_to_the_general_decoder(payload):
    """Anything but the canonical shape is not the scanner's: it answers None, and decode_record
    then gives exactly what the general decoder gives, errors included."""
    assert sq._scan_record(payload) is None
    try:
        want = reference_decode(payload)
    except Exception as exc:  # noqa: BLE001 - the same exception type must come out of both
        with pytest.raises(type(exc)):
            sq.decode_record(payload)
    else:
        assert sq.decode_record(payload) == want


def test_scanner_arguments_are_checked():
    with pytest.raises(ValueError, match="state_index"):
        RecordScanner(("a", "b"), ("c",), 2, frozenset(), orjson.loads)
    with pytest.raises(ValueError, match="keys"):
        RecordScanner((), ("c",), 0, frozenset(), orjson.loads)
    with pytest.raises(ValueError, match="empty key"):
        RecordScanner(("a", ""), ("c",), 0, frozenset(), orjson.loads)
    with pytest.raises(TypeError):
        RecordScanner(("a",), ("c",), 0, frozenset(), orjson.loads).scan("o{}")


@pytest.mark.parametrize("offset", range(0, 18))
def test_quotes_and_backslashes_at_every_offset_of_a_word(offset):
    """The scanner looks at string bytes 8 at a time: an escaped quote, an escaped backslash, a
    closing quote and non-ASCII text at each position within and across those 8-byte words still
    end (or do not end) the string where JSON says."""
    pad = "x" * offset
    b = Batch()
    for n, text in enumerate((pad + '"', pad + "\\", pad + '\\"', pad + "é\"\\", pad, pad + "\u0007")):
        b.orders[f"O{n}"] = {"order_id": f"O{n}", "seq": n, "session": text, "account": pad + "A",
                             "symbol": text + pad, "state": "new", "created_ns": n, "updated_ns": n,
                             "text": text * 3}
    payload = sq.encode_record(b)
    assert sq._scan_record(payload) is not None
    assert sq.decode_record(payload) == reference_decode(payload)


@pytest.mark.parametrize("number", [
    # As orjson writes them (the only writer of 'o' records) ...
    *(orjson.dumps(v).decode() for v in (0, 7, -7, 1795621688271268698, 2 ** 63 - 1, 2 ** 63, 10 ** 19 - 1,
                                         2 ** 64 - 1, -(2 ** 63), -1e5, 1.5, 1e20, -0.0, True)),
    # ... and text it never writes, which orjson refuses.
    "00", "-01", "-",
])
def test_column_numbers_convert_as_orjson_reads_them(number):
    """Integer columns are converted in C up to 19 digits: int where orjson gives int (up to
    2**64 - 1, down to -2**63), anything else as orjson reads it, and what orjson refuses
    (leading zeros, a bare minus) goes to the general path and fails there as it always did."""
    payload = (b'o{"o":[{"order_id":"a","seq":' + number.encode() + b',"session":"s","account":"a",'
               b'"symbol":"y","state":"new","created_ns":1,"updated_ns":2}],"x":[],"c":[],"m":{}}')
    try:
        want = reference_decode(payload)
    except Exception as exc:  # noqa: BLE001 - the same exception type must come out of both
        assert sq._scan_record(payload) is None
        with pytest.raises(type(exc)):
            sq.decode_record(payload)
        return
    got = sq.decode_record(payload)
    assert got == want and type(got[0][0][1]) is type(want[0][0][1])


_SAMPLE = sq.encode_record(Batch(orders={"O1": {"order_id": "O1", "seq": 1, "session": "S\\\"", "account": "A",
                                                "symbol": "é", "state": "new", "created_ns": 1795621688271268698,
                                                "updated_ns": 2, "xs": [1, {"k": "]}"}]}},
                                 executions=[{"seq": 2, "exec_id": "X2", "order_id": "O1", "account": "A",
                                              "symbol": "é", "ts": 3}],
                                 cl_ord_ids=[("S", "C1", "O1")], meta={"order_seq": "1"}))


@settings(max_examples=300, deadline=None)
@given(cut=st.integers(0, len(_SAMPLE)), flips=st.lists(st.tuples(st.integers(0, len(_SAMPLE) - 1),
                                                                   st.integers(0, 255)), max_size=3))
def test_damaged_records_never_crash_the_scanner(cut, flips):
    """Records cut short or with bytes changed (what a damaged log could hold were it not for the
    CRC) never crash the scanner, which checks every index against the end before reading: it
    answers rows, None, or an ordinary exception, and decode_record only ordinary exceptions."""
    damaged = bytearray(_SAMPLE[:cut])
    for at, value in flips:
        if at < len(damaged):
            damaged[at] = value
    payload = bytes(damaged)
    try:
        sq._scan_record(payload)
    except (ValueError, UnicodeDecodeError):
        pass
    try:
        sq.decode_record(payload)
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError):
        pass
