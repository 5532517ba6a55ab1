"""crossbook.persistence: durable storage of orders, executions and risk usage (an append-only
journal log on the event loop, projected into SQLite (WAL) for queries and recovery)."""
from crossbook.persistence.log import LogCorrupt
from crossbook.persistence.sqlite import OPEN_STATES, OrderStore, RecoveredState, SqliteJournal

__all__ = ["LogCorrupt", "OPEN_STATES", "OrderStore", "RecoveredState", "SqliteJournal"]
