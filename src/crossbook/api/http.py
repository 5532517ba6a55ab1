"""HTTP JSON API of the server, a small HTTP/1.1 server on the server's own event loop.

No framework: the API is a handful of JSON routes, and a dependency-free asyncio server keeps
it on the same loop as the order manager (run-time risk changes and the kill switch are plain
calls, no locks). Reads come from the SQLite database through a read-only connection (WAL), so
they never block the journal's projection; before each read the request waits for the journal's
barrier (``SqliteJournal.wait_applied``: the store holds everything logged so far), so a query
made after a report went out sees it. docs/http-api.md lists the routes.
"""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from crossbook.api.views import execution_view, order_view, parse_since
from crossbook.persistence import OrderStore

log = logging.getLogger("crossbook.api")

MAX_BODY = 1 << 20
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
            500: "Internal Server Error", 503: "Service Unavailable"}
#: How long a query waits for the journal's projection before answering 503.
STORE_BARRIER_S = 5.0


def _reads_store(target: str) -> bool:
    """Routes answered from the SQLite store (orders, executions)."""
    path = target.split("?", 1)[0].strip("/")
    return path == "orders" or path.startswith("orders/") or path == "executions"


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class HttpApi:
    """Routes over a running ``Server`` (its manager, risk engine, config and database)."""

    def __init__(self, server, host: str, port: int) -> None:
        self.server = server
        self.host = host
        self._port = port
        self._srv: asyncio.AbstractServer | None = None
        self._store: OrderStore | None = None
        self._clients: set[asyncio.Task] = set()

    @property
    def port(self) -> int:
        if self._srv is not None and self._srv.sockets:
            return self._srv.sockets[0].getsockname()[1]
        return self._port

    async def start(self) -> None:
        # The server's journal holds the log: wait_applied() before each read replaces the catch-up.
        self._store = OrderStore(self.server.config.storage.database, catch_up=False)
        self._srv = await asyncio.start_server(self._on_client, self.host, self._port)

    async def stop(self) -> None:
        if self._srv is not None:
            self._srv.close()
            for task in list(self._clients):
                task.cancel()
            await asyncio.gather(*self._clients, return_exceptions=True)
            await self._srv.wait_closed()
            self._srv = None
        if self._store is not None:
            self._store.close()
            self._store = None

    # ------------------------------------------------------------------ HTTP/1.1
    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, asyncio.LimitOverrunError,
                        ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    await self._write(writer, 400, {"error": "malformed request line"}, False)
                    return
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0") or 0)
                if length > MAX_BODY:
                    await self._write(writer, 413, {"error": "body too large"}, False)
                    return
                body = await reader.readexactly(length) if length else b""
                keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
                try:
                    if method == "GET" and _reads_store(target):
                        await self._store_barrier()
                    status, payload = self.handle(method, target, body)
                except HttpError as exc:
                    status, payload = exc.status, {"error": exc.message}
                except (ValueError, TypeError, KeyError) as exc:
                    status, payload = 400, {"error": str(exc)}
                except Exception as exc:  # a bug answers 500; the server keeps running
                    log.exception("HTTP %s %s failed", method, target)
                    status, payload = 500, {"error": f"internal error: {exc}"}
                await self._write(writer, status, payload, keep)
                if not keep:
                    return
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()

    async def _store_barrier(self) -> None:
        """Wait until the store holds every batch the journal logged (reports already sent)."""
        journal = getattr(self.server, "journal", None)
        if journal is None:
            return
        try:
            await journal.wait_applied(STORE_BARRIER_S)
        except (RuntimeError, asyncio.TimeoutError) as exc:
            raise HttpError(503, f"the order store is behind the journal: {exc or 'timed out'}") from None

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, status: int, payload: Any, keep: bool) -> None:
        body = json.dumps(payload, default=_json_default, indent=1).encode() + b"\n"
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: {'keep-alive' if keep else 'close'}\r\n\r\n")
        writer.write(head.encode() + body)
        try:
            await writer.drain()
        except ConnectionError:
            pass

    # ------------------------------------------------------------------ routes
    def handle(self, method: str, target: str, body: bytes) -> tuple[int, Any]:
        url = urlsplit(target)
        parts = [unquote(p) for p in url.path.strip("/").split("/") if p]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        data = json.loads(body) if body else {}
        if not isinstance(data, dict):
            raise HttpError(400, "the request body must be a JSON object")
        instruments = self.server.config.instruments
        store = self._store
        assert store is not None
        if method == "GET" and parts == ["health"]:
            return 200, {"status": "ok", "fix_port": self.server.fix_port, "orders": len(self.server.manager.orders)}
        if method == "GET" and parts == ["venues"]:
            return 200, {"venues": self.server.venue_status()}
        if method == "GET" and parts == ["orders"]:
            status = query.get("status") or None
            if status not in (None, "open", "done", "all"):
                raise HttpError(400, f"status must be open, done or all, got {status!r}")
            since = parse_since(query["since"]) if query.get("since") else None
            rows = store.orders(status=None if status == "all" else status, account=query.get("account"),
                                symbol=query.get("symbol"), since_ns=since, limit=int(query.get("limit", 10000)))
            return 200, {"orders": [order_view(r, instruments) for r in rows]}
        if method == "GET" and len(parts) == 2 and parts[0] == "orders":
            row = store.order(parts[1])
            if row is None:
                raise HttpError(404, f"no order {parts[1]!r}")
            view = order_view(row, instruments)
            view["executions"] = [execution_view(e, instruments) for e in store.executions(order_id=parts[1])]
            return 200, view
        if method == "GET" and parts == ["executions"]:
            since = parse_since(query["since"]) if query.get("since") else None
            rows = store.executions(order_id=query.get("order_id"), account=query.get("account"),
                                    symbol=query.get("symbol"), since_ns=since, limit=int(query.get("limit", 10000)))
            return 200, {"executions": [execution_view(e, instruments) for e in rows]}
        if parts[:2] == ["risk", "limits"]:
            return self._limits(method, parts[2:], data)
        if method == "GET" and parts == ["risk", "usage"]:
            risk = self.server.risk
            return 200, {acc.name: risk.usage(acc.index) for acc in self.server.config.directory.accounts.values()}
        if parts == ["kill"]:
            if method == "GET":
                return 200, self._kill_state()
            if method == "POST":
                scope = data.get("scope", "global")
                if scope not in ("global", "firm", "account"):
                    raise HttpError(400, f"scope must be global, firm or account, got {scope!r}")
                name = data.get("name")
                if scope != "global" and not name:
                    raise HttpError(400, f"scope {scope} needs a name")
                on = data.get("on", True)
                if not isinstance(on, bool):
                    raise HttpError(400, "on must be true or false")
                try:
                    canceled = self.server.manager.kill(scope, name, on)
                except KeyError:
                    raise HttpError(404, f"no {scope} {name!r}") from None
                return 200, {"canceled": canceled, **self._kill_state()}
            raise HttpError(405, "GET or POST /kill")
        if parts == ["eod"] and method == "POST":
            venues = self.server.manager.end_of_day()
            return 200, {"end_of_day": True, "venues": venues}
        raise HttpError(404, f"no route {method} {url.path}")

    def _kill_state(self) -> dict[str, Any]:
        state = self.server.risk.kill_state()
        d = self.server.config.directory
        firms = {f.index: f.name for f in d.firms.values()}
        accounts = {a.index: a.name for a in d.accounts.values()}
        return {"global": state["global"], "firms": [firms.get(i, str(i)) for i in state["firms"]],
                "accounts": [accounts.get(i, str(i)) for i in state["accounts"]]}

    def _limits(self, method: str, rest: list[str], data: dict) -> tuple[int, Any]:
        from crossbook.core.risk import RiskLimits
        d = self.server.config.directory
        risk = self.server.risk

        def view(name: str) -> dict[str, Any]:
            return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in asdict(risk.limits(d.accounts[name].index)).items()}

        if not rest:
            if method != "GET":
                raise HttpError(405, "GET /risk/limits, or GET/PUT /risk/limits/{account}")
            return 200, {name: view(name) for name in d.accounts}
        name = rest[0]
        if name not in d.accounts:
            raise HttpError(404, f"no account {name!r}")
        if method == "GET":
            return 200, view(name)
        if method in ("PUT", "POST", "PATCH"):
            current = view(name)
            merged = dict(current) if method == "PATCH" or method == "POST" else {}
            merged.update(data)
            if "collar_pct" in data:
                merged.pop("collar_bps", None)
            limits = RiskLimits.from_dict({k: v for k, v in merged.items() if v is not None or k in data},
                                          where=f"limits.{name}")
            risk.set_limits(d.accounts[name].index, limits)
            return 200, view(name)
        raise HttpError(405, f"{method} not allowed on /risk/limits/{name}")
