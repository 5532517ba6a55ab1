"""``crossbook orders``: orders as a readable table (or JSON), from a running server's HTTP API, or
straight from the database when no server answers (``OrderStore`` first applies the journal log's
tail a stopped or killed server left, so every acknowledged order shows).

The same query from Python: ``crossbook.app.orders.query_orders(status="open", account="ACC1")``.
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from crossbook.persistence.log import LogCorrupt


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status", choices=("open", "done", "all"), default="all")
    parser.add_argument("--account")
    parser.add_argument("--symbol", help="instrument key (AAPL, ESZ6, 'AAPL 20261218 C200' ...)")
    parser.add_argument("--since", help="epoch ns or ISO 8601 time: orders updated since then")
    parser.add_argument("--order", metavar="ORDER_ID", help="one order with its executions")
    parser.add_argument("--config", metavar="FILE", help="server config (storage dir, HTTP address, instruments)")
    parser.add_argument("--url", help="HTTP API base URL (default from the config: http://127.0.0.1:8080)")
    parser.add_argument("--db", metavar="FILE", help="read this database directly instead of asking a server")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def query_orders(*, status: str | None = None, account: str | None = None, symbol: str | None = None,
                 since: str | None = None, config: str | None = None, url: str | None = None,
                 db: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """Orders as JSON views and where they came from ("http://..." or the database path)."""
    from crossbook.app.config import load_config

    cfg = load_config(config)
    params = {k: v for k, v in (("status", status), ("account", account), ("symbol", symbol), ("since", since)) if v}
    if db is None:
        base = url or f"http://{cfg.http.host}:{cfg.http.port}"
        try:
            with urllib.request.urlopen(f"{base}/orders?{urllib.parse.urlencode(params)}", timeout=5) as resp:
                return json.loads(resp.read())["orders"], base
        except urllib.error.HTTPError as exc:
            raise ValueError(json.loads(exc.read()).get("error", str(exc))) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if url is not None:
                raise
    from crossbook.api.views import order_view, parse_since
    from crossbook.persistence import OrderStore

    path = db or cfg.storage.database
    store = OrderStore(path)
    try:
        rows = store.orders(status=None if status in (None, "all") else status, account=account, symbol=symbol,
                            since_ns=parse_since(since) if since else None)
    finally:
        store.close()
    return [order_view(r, cfg.instruments) for r in rows], path


def _one_order(args) -> int:
    from crossbook.app.config import load_config
    cfg = load_config(args.config)
    base = args.url or f"http://{cfg.http.host}:{cfg.http.port}"
    try:
        with urllib.request.urlopen(f"{base}/orders/{urllib.parse.quote(args.order)}", timeout=5) as resp:
            view = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        print(f"crossbook orders: {json.loads(exc.read()).get('error')}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        from crossbook.api.views import execution_view, order_view
        from crossbook.persistence import OrderStore
        try:
            store = OrderStore(args.db or cfg.storage.database)
        except (FileNotFoundError, LogCorrupt) as exc:
            print(f"crossbook orders: no server answered and {exc}", file=sys.stderr)
            return 1
        row = store.order(args.order)
        if row is None:
            print(f"crossbook orders: no order {args.order!r}", file=sys.stderr)
            return 1
        view = order_view(row, cfg.instruments)
        view["executions"] = [execution_view(e, cfg.instruments) for e in store.executions(order_id=args.order)]
        store.close()
    print(json.dumps(view, indent=1))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.order:
        return _one_order(args)
    try:
        orders, source = query_orders(status=args.status, account=args.account, symbol=args.symbol, since=args.since,
                                      config=args.config, url=args.url, db=args.db)
    except FileNotFoundError as exc:
        print(f"crossbook orders: no server answered and {exc}", file=sys.stderr)
        return 1
    except LogCorrupt as exc:  # the database's journal log is damaged: say where, guess nothing
        print(f"crossbook orders: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"crossbook orders: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(orders, indent=1))
        return 0
    from crossbook.api.views import format_table
    print(f"# {args.status} orders from {source}")
    print(format_table(orders))
    return 0
