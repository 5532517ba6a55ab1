"""SqliteJournal storage details that keep commits cheap: ClOrdIDs read back from order rows, risk
usage in meta (and from the older risk_usage table), checkpoints off the commit path (on the
projection thread, after its commits), and rows that orjson cannot encode still stored."""
from __future__ import annotations

import asyncio
import json
import sqlite3

from crossbook.oms.manager import Batch
from crossbook.persistence import OrderStore, SqliteJournal
from crossbook.persistence import sqlite as journal_module


def _row(n: int, cl_ord_ids: list[str], **extra) -> dict:
    return {"order_id": f"O{n}", "seq": n, "session": "FIRM1", "account": "ACC1", "symbol": "AAPL",
            "state": "new", "created_ns": n, "updated_ns": n, "cl_ord_ids": cl_ord_ids, **extra}


def _commit(path: str, batches: list[Batch], projection: str = "thread") -> SqliteJournal:
    async def scenario() -> SqliteJournal:
        journal = SqliteJournal(path, projection=projection)
        journal.open()
        journal.start()
        done = asyncio.Event()
        left = [len(batches)]

        def on_durable(_batch: Batch) -> None:
            left[0] -= 1
            if not left[0]:
                done.set()

        for batch in batches:
            journal.submit(batch, on_durable)
        await asyncio.wait_for(done.wait(), 30)
        journal.close()
        return journal

    return asyncio.run(scenario())


def test_cl_ord_ids_come_back_from_order_rows_and_risk_from_meta(tmp_path):
    path = str(tmp_path / "j.db")
    b = Batch()
    b.orders["O1"] = _row(1, ["C1", "C1-cancel"])
    b.orders["O2"] = _row(2, ["C2"], session="FIRM2")
    b.risk_usage[3] = {"open_orders": 2, "credit": 12345}
    b.meta["order_seq"] = "2"
    _commit(path, [b])
    state = SqliteJournal(path).open()
    assert sorted(state.cl_ord_ids) == [("FIRM1", "C1", "O1"), ("FIRM1", "C1-cancel", "O1"), ("FIRM2", "C2", "O2")]
    assert state.risk == {3: {"open_orders": 2, "credit": 12345}}
    assert state.meta == {"order_seq": "2"}              # risk entries are not meta for the caller
    store = OrderStore(path)
    assert store.risk_usage() == {3: {"open_orders": 2, "credit": 12345}}
    store.close()


def test_rows_of_the_older_tables_are_still_read(tmp_path):
    path = str(tmp_path / "j.db")
    SqliteJournal(path).open()                          # creates the schema
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO cl_ord_ids VALUES ('FIRM1', 'OLD', 'O9')")
    conn.execute("INSERT INTO risk_usage VALUES (1, ?)", (json.dumps({"open_orders": 7}),))
    conn.commit()
    conn.close()
    b = Batch()
    b.risk_usage[2] = {"open_orders": 1}
    _commit(path, [b])
    state = SqliteJournal(path).open()
    assert state.cl_ord_ids == [("FIRM1", "OLD", "O9")]
    assert state.risk == {1: {"open_orders": 7}, 2: {"open_orders": 1}}


def test_a_row_beyond_64_bit_integers_is_still_stored(tmp_path, projection):
    path = str(tmp_path / "j.db")
    b = Batch()
    b.orders["O1"] = _row(1, ["C1"], cum_value=10**30)
    _commit(path, [b], projection)
    assert SqliteJournal(path).open().orders[0]["cum_value"] == 10**30


def test_commits_do_not_checkpoint_the_projection_does_after_them(tmp_path, monkeypatch, projection):
    monkeypatch.setattr(journal_module, "CHECKPOINT_INTERVAL_S", 0.01)
    monkeypatch.setattr(journal_module, "CHECKPOINT_MIN_COMMITS", 5)
    path = str(tmp_path / "j.db")
    journal = SqliteJournal(path, projection=projection)   # (a child keeps the 0.2 s interval)
    journal.open()
    assert journal._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0

    async def scenario() -> None:
        journal.start()
        for n in range(1, 101):
            b = Batch()
            b.orders[f"O{n}"] = _row(n, [f"C{n}"])
            done = asyncio.Event()
            journal.submit(b, lambda _b: done.set())
            await asyncio.wait_for(done.wait(), 10)
            await journal.wait_applied(10)              # a reader's barrier: one commit each
        for _ in range(1000):                           # however busy the machine
            if journal.checkpoints:
                break
            await asyncio.sleep(0.01)
        journal.close()

    asyncio.run(scenario())
    assert journal.commits == 100 and journal.checkpoints > 0
    assert len(SqliteJournal(path).open().orders) == 100
