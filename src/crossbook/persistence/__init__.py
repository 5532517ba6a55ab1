"""crossbook.persistence: durable storage of orders, executions and risk usage (SQLite, WAL, group commit)."""
from crossbook.persistence.sqlite import OPEN_STATES, OrderStore, RecoveredState, SqliteJournal

__all__ = ["OPEN_STATES", "OrderStore", "RecoveredState", "SqliteJournal"]
