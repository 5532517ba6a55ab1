"""A small FIX client for end-to-end tests: our Initiator, received application messages in a queue."""
from __future__ import annotations

import asyncio
import itertools
import time

from crossbook.fix.messages import Message
from crossbook.fix.session import Application
from crossbook.fix.settings import SessionSettings
from crossbook.fix.store import MemoryStore
from crossbook.fix.transport import Initiator


class _Collector(Application):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Message] = asyncio.Queue()
        self.all: list[Message] = []

    def from_app(self, session, message: Message) -> None:
        self.all.append(message)
        self.queue.put_nowait(message)

    def from_admin(self, session, message: Message) -> None:
        if message.msg_type == b"3":  # session-level Reject: part of what the tests check
            self.all.append(message)
            self.queue.put_nowait(message)


class FixPeer:
    """Connects as ``comp_id`` to the server; ``send(msg_type, fields)``; ``expect(msg_type)``."""

    _ids = itertools.count(1)

    def __init__(self, port: int, comp_id: str = "FIRM1", begin_string: str = "FIX.4.4",
                 server_comp_id: str = "CROSSBOOK", store: MemoryStore | None = None, reset: bool = True) -> None:
        self.settings = SessionSettings(begin_string=begin_string, sender_comp_id=comp_id,
                                        target_comp_id=server_comp_id, connection_type="initiator",
                                        socket_connect_host="127.0.0.1", socket_connect_port=port,
                                        heart_bt_int=30, reconnect_interval=0.2, reset_on_logon=reset)
        self.app = _Collector()
        self.initiator = Initiator(self.settings, self.app, store=store)
        self.begin_string = begin_string
        self.prefix = f"T{int(time.time() * 1000) % 10**8}-"

    async def __aenter__(self) -> "FixPeer":
        await self.initiator.start()
        if not await self.initiator.wait_logged_on(10):
            raise AssertionError("FIX logon failed")
        return self

    async def __aexit__(self, *exc) -> None:
        await self.initiator.stop(logout_grace=1.0)

    def next_id(self) -> str:
        return f"{self.prefix}{next(self._ids)}"

    def send(self, msg_type: str, fields: list[tuple[int, object]]) -> None:
        self.initiator.send(None, msg_type, [(t, str(v)) for t, v in fields])

    def new_order(self, symbol: str = "AAPL", side: str = "1", qty: object = 100, price: object | None = "230.00",
                  ord_type: str | None = None, cl_ord_id: str | None = None, extra: list | None = None) -> str:
        cl = cl_ord_id or self.next_id()
        if ord_type is None:
            ord_type = "2" if price is not None else "1"
        fields: list[tuple[int, object]] = [(11, cl)]
        if self.begin_string == "FIX.4.2":
            fields.append((21, "1"))
        fields += [(55, symbol), (54, side), (60, "20260101-00:00:00.000"), (38, qty), (40, ord_type)]
        if price is not None:
            fields.append((44, price))
        fields += extra or []
        self.send("D", fields)
        return cl

    def cancel(self, orig: str, symbol: str = "AAPL", side: str = "1", qty: object = 100,
               cl_ord_id: str | None = None) -> str:
        cl = cl_ord_id or self.next_id()
        fields = [(41, orig), (11, cl), (55, symbol), (54, side), (60, "20260101-00:00:00.000")]
        if self.begin_string == "FIX.4.2":
            fields.append((38, qty))
        else:
            fields.append((38, qty))
        self.send("F", fields)
        return cl

    def replace(self, orig: str, qty: object, price: object | None, symbol: str = "AAPL", side: str = "1",
                ord_type: str = "2", cl_ord_id: str | None = None) -> str:
        cl = cl_ord_id or self.next_id()
        fields: list[tuple[int, object]] = [(41, orig), (11, cl)]
        if self.begin_string == "FIX.4.2":
            fields.append((21, "1"))
        fields += [(55, symbol), (54, side), (60, "20260101-00:00:00.000"), (38, qty), (40, ord_type)]
        if price is not None:
            fields.append((44, price))
        self.send("G", fields)
        return cl

    async def expect(self, msg_type: str | None = None, timeout: float = 5.0, **tags: str) -> Message:
        """The next application message; asserts its type and the given tag values (t39="2")."""
        msg = await asyncio.wait_for(self.app.queue.get(), timeout)
        if msg_type is not None:
            assert msg.msg_type == msg_type.encode(), f"expected {msg_type}, got {msg!r}"
        for key, value in tags.items():
            tag = int(key[1:])
            got = msg.get(tag)
            assert got == str(value).encode(), f"tag {tag}: expected {value!r}, got {got!r} in {msg!r}"
        return msg

    async def expect_exec(self, exec_type: str, ord_status: str, timeout: float = 5.0, **tags: str) -> Message:
        return await self.expect("8", timeout, t150=exec_type, t39=ord_status, **tags)

    async def quiet(self, seconds: float = 0.2) -> None:
        """Asserts nothing more arrives within ``seconds``."""
        try:
            msg = await asyncio.wait_for(self.app.queue.get(), seconds)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected message {msg!r}")

    async def drain(self, seconds: float = 0.2) -> list[Message]:
        """Every message arriving until ``seconds`` pass without one."""
        out = []
        while True:
            try:
                out.append(await asyncio.wait_for(self.app.queue.get(), seconds))
            except asyncio.TimeoutError:
                return out
