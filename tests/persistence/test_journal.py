"""SqliteJournal: logged (durable) before delivered, projected into SQLite in shared transactions,
recovery; OrderStore."""
from __future__ import annotations

import asyncio
import sqlite3

import pytest

from crossbook.oms.manager import Batch
from crossbook.persistence import OrderStore, SqliteJournal
from crossbook.persistence.log import iter_records, log_directory


def order_row(n: int, state: str = "new", account: str = "ACC1", symbol: str = "AAPL") -> dict:
    return {"order_id": f"O{n}", "seq": n, "session": "FIRM1", "account": account, "symbol": symbol,
            "state": state, "created_ns": n, "updated_ns": n * 10, "cum_qty": 0, "cl_ord_ids": [f"C{n}"]}


def exec_row(n: int, order: int) -> dict:
    return {"seq": n, "exec_id": f"X{n}", "order_id": f"O{order}", "account": "ACC1", "symbol": "AAPL", "ts": n}


def test_logged_before_delivery_projected_in_few_commits_and_recovered(tmp_path, projection):
    path = str(tmp_path / "j.db")
    delivered: list[int] = []
    seen_logged: list[bool] = []

    async def scenario():
        journal = SqliteJournal(path, projection=projection)
        assert journal.open().orders == []
        journal.start()
        log_dir = log_directory(path)
        read_up_to = [0]

        def on_durable(batch: Batch) -> None:
            n = batch.orders[next(iter(batch.orders))]["seq"]
            # Delivery happens only after the write: reading the log file back finds the batch.
            records = list(iter_records(log_dir, read_up_to[0]))
            seen_logged.append(len(records) == 1 and f'"order_id":"O{n}"'.encode() in records[0][0])
            read_up_to[0] = records[-1][1] if records else read_up_to[0]
            delivered.append(n)

        for n in range(1, 501):
            b = Batch()
            b.orders[f"O{n}"] = order_row(n, "filled" if n % 2 else "new")
            b.executions.append(exec_row(n, n))
            b.cl_ord_ids.append(("FIRM1", f"C{n}", f"O{n}"))
            b.risk_usage[0] = {"open_orders": n}
            b.meta["order_seq"] = str(n)
            journal.submit(b, on_durable)       # durable (and delivered) on return
            assert delivered[-1] == n
        await journal.wait_applied()
        store = OrderStore(path, catch_up=False)
        assert len(store.orders()) == 500       # the barrier: the store holds all of it now
        store.close()
        journal.close()
        return journal

    journal = asyncio.run(scenario())
    assert delivered == list(range(1, 501))            # in order
    assert all(seen_logged)
    assert journal.writes == 500                        # one log record per batch ...
    assert 1 <= journal.commits < 500                   # ... projected into SQLite in shared transactions
    state = SqliteJournal(path).open()
    assert [o["order_id"] for o in state.orders] == [f"O{n}" for n in range(1, 501)]
    assert len(state.cl_ord_ids) == 500 and state.meta["order_seq"] == "500"
    assert state.risk == {0: {"open_orders": 500}}

    store = OrderStore(path)
    assert len(store.orders(status="open")) == 250 and len(store.orders(status="done")) == 250
    assert [o["order_id"] for o in store.orders(since_ns=4990)] == ["O499", "O500"]
    assert store.order("O7")["state"] == "filled" and store.order("nope") is None
    assert [e["exec_id"] for e in store.executions(order_id="O3")] == ["X3"]
    with pytest.raises(ValueError, match="status"):
        store.orders(status="maybe")
    with pytest.raises(sqlite3.OperationalError):  # read-only
        store._conn.execute("DELETE FROM orders")
    store.close()


def test_order_store_needs_an_existing_database(tmp_path):
    with pytest.raises(FileNotFoundError, match="no order database"):
        OrderStore(str(tmp_path / "missing.db"))


def test_bad_synchronous_setting():
    with pytest.raises(ValueError, match="NORMAL or FULL"):
        SqliteJournal(":memory:", synchronous="sometimes")


def test_a_failed_commit_stops_acknowledgements(tmp_path, projection):
    path = str(tmp_path / "j.db")

    async def scenario():
        journal = SqliteJournal(path, projection=projection)
        journal.open()
        journal.start()
        bad = Batch()
        bad.orders["O1"] = {"order_id": "O1"}           # missing columns: the commit fails
        delivered = []
        journal.submit(bad, delivered.append)
        for _ in range(200):
            if journal.failed is not None:
                break
            await asyncio.sleep(0.01)
        assert journal.failed is not None and delivered == []
        with pytest.raises(RuntimeError, match="journal failed"):
            journal.submit(Batch(), delivered.append)
        journal.close()

    asyncio.run(scenario())
