"""crossbook.model: plain typed data shared by every stage (instruments, orders, events, enums)."""
