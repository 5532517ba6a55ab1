"""JSON views of stored orders and executions: ticks become decimal price strings, enums names.

Shared by the HTTP API and ``crossbook orders`` (which may read the database without a server).
"""
from __future__ import annotations

import datetime as _dt
from typing import Any

from crossbook.model.instruments import InstrumentMaster
from crossbook.model.orders import avg_px_text

_SIDE = {1: "buy", 2: "sell"}
_ORD_TYPE = {1: "market", 2: "limit", 3: "stop", 4: "stop_limit"}
_TIF = {0: "day", 1: "gtc", 3: "ioc", 4: "fok", 6: "gtd"}


def iso(ns: int) -> str:
    return _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_since(text: str) -> int:
    """``since`` as epoch ns: an integer (ns) or an ISO 8601 time (UTC if no offset)."""
    text = text.strip()
    if text.isdigit():
        return min(int(text), _INT64_MAX)
    try:
        t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"since must be epoch nanoseconds or an ISO 8601 time, got {text!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return min(int(t.timestamp() * 1_000_000) * 1000, _INT64_MAX)


_INT64_MAX = (1 << 63) - 1


def _price(instruments: InstrumentMaster, symbol: str, ticks: int) -> str | None:
    inst = instruments.by_symbol(symbol) if symbol else None
    if inst is None or not ticks:
        return None
    return format(inst.ticks_to_price(ticks), "f")


def _avg(instruments: InstrumentMaster, symbol: str, cum_value: int, cum_qty: int) -> str | None:
    inst = instruments.by_symbol(symbol) if symbol else None
    if inst is None or not cum_qty:
        return None
    return avg_px_text(cum_value, cum_qty, inst.tick_size)


def order_view(row: dict[str, Any], instruments: InstrumentMaster) -> dict[str, Any]:
    sym = row["symbol"]
    return {
        "order_id": row["order_id"], "cl_ord_id": row["cl_ord_id"], "orig_cl_ord_id": row.get("orig_cl_ord_id", ""),
        "session": row["session"], "firm": row.get("firm", ""), "account": row["account"], "symbol": sym,
        "side": _SIDE.get(row["side"], str(row["side"])), "ord_type": _ORD_TYPE.get(row["ord_type"], str(row["ord_type"])),
        "time_in_force": _TIF.get(row["tif"], str(row["tif"])), "qty": row["qty"],
        "price": _price(instruments, sym, row["price"]), "stop_px": _price(instruments, sym, row.get("stop_px", 0)),
        "display_qty": row.get("display_qty", 0), "post_only": bool(row.get("post_only")),
        "venue": row.get("venue", ""), "venue_order_id": row.get("venue_order_id", ""),
        "state": row["state"], "cum_qty": row["cum_qty"], "leaves_qty": row["leaves_qty"],
        "avg_px": _avg(instruments, sym, row["cum_value"], row["cum_qty"]), "text": row.get("text", ""),
        "created": iso(row["created_ns"]), "updated": iso(row["updated_ns"]),
        "cl_ord_ids": row.get("cl_ord_ids", []),
    }


def execution_view(row: dict[str, Any], instruments: InstrumentMaster) -> dict[str, Any]:
    sym = row["symbol"]
    return {
        "exec_id": row["exec_id"], "order_id": row["order_id"], "cl_ord_id": row["cl_ord_id"],
        "orig_cl_ord_id": row["orig_cl_ord_id"], "exec_type": row["exec_type"], "ord_status": row["ord_status"],
        "account": row["account"], "symbol": sym, "side": _SIDE.get(row["side"], str(row["side"])),
        "qty": row["qty"], "price": _price(instruments, sym, row["price"]), "last_qty": row["last_qty"],
        "last_px": _price(instruments, sym, row["last_px"]), "cum_qty": row["cum_qty"],
        "leaves_qty": row["leaves_qty"], "avg_px": _avg(instruments, sym, row["cum_value"], row["cum_qty"]),
        "venue": row["venue"], "text": row["text"], "reason": row["reason"], "time": iso(row["ts"]),
    }


def format_table(orders: list[dict[str, Any]]) -> str:
    """A readable fixed-width table of order views (``crossbook orders``)."""
    columns = [("order_id", "ORDER"), ("cl_ord_id", "CLORDID"), ("account", "ACCOUNT"), ("symbol", "SYMBOL"),
               ("side", "SIDE"), ("ord_type", "TYPE"), ("qty", "QTY"), ("price", "PRICE"), ("cum_qty", "FILLED"),
               ("leaves_qty", "LEAVES"), ("avg_px", "AVG PX"), ("state", "STATE"), ("venue", "VENUE"),
               ("updated", "UPDATED")]
    rows = [[("" if o.get(k) is None else str(o.get(k))) for k, _ in columns] for o in orders]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, (_, h) in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for (_, h), w in zip(columns, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    lines.append(f"({len(orders)} order{'s' if len(orders) != 1 else ''})")
    return "\n".join(lines)
