"""The journal's projection: decoding logged records (what the projection process does per order
besides SQLite's own work) and the whole projection per order.

Baseline, in the same run: the general decoder (``orjson.loads`` of the record, ``orjson.dumps``
of every row again), which the projection used for every record before
``crossbook.persistence._record.RecordScanner``. The records are made the way the OMS makes them
(``encode_record`` of batches shaped like the server's: a resting order's row with its ClOrdID
list and 19-digit timestamps, its two executions, counters and risk usage), at one order per
batch (1,000 orders/s) and at 40 per batch (20,000 orders/s).

There is no issue target for this stage; the full-mode target is the gain measured when it was
written (2.0-2.4x, docs/oms.md "Durability"), with room for noise, and the short-mode floor
guards against the scanner silently falling back to the general path.
"""
from __future__ import annotations

import os
import tempfile

import pytest

from conftest import best_time
from crossbook.oms.manager import Batch
from crossbook.persistence import sqlite as sq

_TS = 1_795_621_688_271_268_698


def _order_row(n: int) -> dict:
    return {
        "order_id": f"O{n}", "seq": n, "session": "FIRM1", "begin_string": "FIX.4.4", "firm": "FIRM1",
        "account": "ACC1", "symbol": "AAPL", "instrument_index": 0, "side": 1 + n % 2, "ord_type": 2, "tif": 0,
        "qty": 100, "price": 22900 + n % 50, "stop_px": 0, "display_qty": 0, "post_only": False,
        "expire_time": 0, "cl_ord_id": f"B621687873-{n}", "orig_cl_ord_id": "", "venue": "VENUE-A",
        "venue_cl_ord_id": f"O{n}.1", "venue_order_id": f"VENUE-A-hoht7rac77-{n}", "venue_seq": 1,
        "state": "new", "cum_qty": 0, "leaves_qty": 100, "cum_value": 0, "text": "", "created_ns": _TS + n,
        "updated_ns": _TS + n + 28_843, "pending_cl_ord_id": "", "pending_kind": "", "pending_qty": 0,
        "pending_price": 0, "cl_ord_ids": [f"B621687873-{n}"], "risk_price": 22900 + n % 50,
    }


def _execution_row(seq: int, n: int, exec_type: str) -> dict:
    return {
        "exec_id": f"X{seq}", "order_id": f"O{n}", "seq": seq, "cl_ord_id": f"B621687873-{n}",
        "orig_cl_ord_id": "", "exec_type": exec_type, "ord_status": exec_type, "symbol": "AAPL",
        "side": 1 + n % 2, "qty": 100, "price": 22900 + n % 50, "last_qty": 0, "last_px": 0, "cum_qty": 0,
        "leaves_qty": 100, "cum_value": 0, "venue": "VENUE-A", "text": "", "reason": "", "ord_rej_reason": -1,
        "ts": _TS + seq, "account": "ACC1", "session": "FIRM1",
    }


def _records(orders: int, per_batch: int) -> list[bytes]:
    payloads = []
    for start in range(1, orders + 1, per_batch):
        b = Batch()
        for n in range(start, min(start + per_batch, orders + 1)):
            b.orders[f"O{n}"] = _order_row(n)
            b.executions += [_execution_row(2 * n - 1, n, "A"), _execution_row(2 * n, n, "0")]
        b.meta = {"fix_next_in:FIRM1": f"{n + 2} 1795621687.8719723", "order_seq": str(n),
                  "exec_seq": str(2 * n), "sent_exec_seq": '{"FIRM1": %d}' % (2 * n - 2)}
        b.risk_usage = {0: {"open_orders": n, "open_notional": 400429.0, "filled_notional": 0.0,
                            "positions": {0: {"position": 0, "open_buy": n // 2, "open_sell": n - n // 2}}}}
        payloads.append(sq.encode_record(b))
    return payloads


@pytest.mark.parametrize("per_batch", [1, 40], ids=["1-order-batches", "40-order-batches"])
def test_projection_decoding_against_the_general_decoder(bench_mode, bench_table, per_batch):
    orders = bench_mode.size(20_000, 2_000)
    payloads = _records(orders, per_batch)
    decode, general = sq.decode_record, sq._decode_record_general
    assert all(sq._scan_record(p) is not None for p in payloads)   # the scanner takes every record
    assert decode(payloads[-1]) == general(payloads[-1])
    scanner_s = best_time(lambda: [decode(p) for p in payloads], repeat=5)
    general_s = best_time(lambda: [general(p) for p in payloads], repeat=5)
    ratio = general_s / scanner_s
    table = "journal projection: decoding logged records (per order)"
    bench_table.add(table, f"RecordScanner, {per_batch}/batch", scanner_s / orders * 1e6, "us", f"{ratio:.2f}x")
    bench_table.add(table, f"general decoder, {per_batch}/batch", general_s / orders * 1e6, "us", "baseline")
    bench_mode.check_ratio(f"decoding {per_batch}-order batches, scanner vs general", ratio, target=1.6, floor=1.2)


def test_projection_per_order_with_sqlite(bench_mode, bench_table):
    """The projection's whole work per order (decode, one transaction per 400 orders as at
    20,000/s with a 20 ms interval, commit) against the same with the general decoder: the
    scanner's gain must survive SQLite's share of the work."""
    orders = bench_mode.size(20_000, 2_000)
    payloads = _records(orders, 40)
    chunk = 10   # records of 40 orders: 400 orders per transaction

    def project(decode) -> None:
        with tempfile.TemporaryDirectory() as directory:
            conn = sq._connect(os.path.join(directory, "bench.db"))
            try:
                conn.executescript(sq.SCHEMA)
                position = 0
                for i in range(0, len(payloads), chunk):
                    items = []
                    for p in payloads[i:i + chunk]:
                        position += len(p) + 8
                        items.append((position, *decode(p)))
                    sq.apply_items(conn, items, position)
            finally:
                conn.close()

    scanner_s = best_time(lambda: project(sq.decode_record), repeat=3)
    general_s = best_time(lambda: project(sq._decode_record_general), repeat=3)
    ratio = general_s / scanner_s
    table = "journal projection: decode + SQLite per order (400 orders per transaction)"
    bench_table.add(table, "with RecordScanner", scanner_s / orders * 1e6, "us", f"{ratio:.2f}x")
    bench_table.add(table, "with the general decoder", general_s / orders * 1e6, "us", "baseline")
    bench_mode.check_ratio("projection per order, scanner vs general decoder", ratio, target=1.15, floor=1.03)
