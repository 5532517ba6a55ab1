"""`crossbook orders --db` over a journal log: the tail a killed server left shows, and a damaged
log is reported by file and position instead of a traceback."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "persistence"))

from test_journal_log import RECORD_HEADER, record_offsets, write_log  # noqa: E402
from crossbook.app import orders  # noqa: E402
from crossbook.oms.manager import Batch  # noqa: E402
from crossbook.persistence import SqliteJournal  # noqa: E402
from crossbook.persistence.log import LogWriter, log_directory  # noqa: E402
from crossbook.persistence.sqlite import encode_batch  # noqa: E402


def args(db: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    orders.add_arguments(parser)
    return parser.parse_args(["--db", db, "--json"])


def test_orders_from_a_log_the_store_never_applied(tmp_path, capsys):
    path = str(tmp_path / "crossbook.db")
    journal = SqliteJournal(path)
    journal.open()
    journal.close()
    writer = LogWriter(log_directory(path), 0)     # what a server killed before its projection left
    for n in (1, 2):
        b = Batch()
        b.orders[f"O{n}"] = {"order_id": f"O{n}", "seq": n, "session": "FIRM1", "account": "ACC1",
                             "symbol": "AAPL", "state": "new", "created_ns": n, "updated_ns": n, "cl_ord_id": f"C{n}",
                             "side": 1, "ord_type": 2, "tif": 0, "qty": 10, "price": 23000, "cum_qty": 0,
                             "leaves_qty": 10, "cum_value": 0, "cl_ord_ids": [f"C{n}"]}
        writer.append(encode_batch(b)[0])
    writer.close()
    assert orders.run(args(path)) == 0
    shown = capsys.readouterr().out
    assert '"order_id": "O2"' in shown and '"price": "230.00"' in shown


def test_a_damaged_log_is_named_not_a_traceback(tmp_path, capsys):
    path = str(tmp_path / "crossbook.db")
    [(_, segment)] = write_log(path, 3)
    with open(segment, "r+b") as f:
        f.seek(record_offsets(segment)[0] + RECORD_HEADER.size + 5)
        f.write(b"#")
    assert orders.run(args(path)) == 1
    err = capsys.readouterr().err
    assert "CRC mismatch at position 0" in err and segment in err
