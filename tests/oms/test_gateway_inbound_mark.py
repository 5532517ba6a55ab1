"""The gateway journals its inbound MsgSeqNum mark (``FixGateway.journals_inbound``), so the FIX
store counts its orders lazily (written a few times a second, not at every read): after a crash
the store's line may trail the journal. A restart takes the number from the journal, and the
client's next message is in sequence: nothing it sent is asked for again."""
from __future__ import annotations

import asyncio
import time
import tomllib
from pathlib import Path

from crossbook.app.config import DEFAULT_CONFIG, merge, parse_config
from crossbook.app.server import Server
from crossbook.fix.codec import FrameReader, Garbled, encode_message, format_utc_timestamp
from crossbook.fix.messages import Message
from crossbook.fix.framing import split_fields
from crossbook.fix.store import FileStore, store_name


class RawClient:
    """FIRM1 over a plain socket, numbering its messages itself (a client that keeps its store)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seq: int) -> None:
        self.reader, self.writer, self.seq = reader, writer, seq
        self.frames = FrameReader()
        self.received: list[Message] = []

    @classmethod
    async def connect(cls, port: int, seq: int, reset: bool) -> "RawClient":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer, seq)
        client.send("A", [(98, 0), (108, 30)] + ([(141, True)] if reset else []))
        await client.until(lambda m: m.msg_type == b"A")
        return client

    def send(self, msg_type: str, body: list) -> None:
        now = format_utc_timestamp(time.time_ns(), 3)
        self.writer.write(encode_message("FIX.4.4", msg_type, [(34, self.seq), (49, "FIRM1"), (52, now),
                                                              (56, "CROSSBOOK")], body))
        self.seq += 1

    def new_order(self, cl: str) -> None:
        now = format_utc_timestamp(time.time_ns(), 3)
        self.send("D", [(11, cl), (55, "AAPL"), (54, 1), (60, now), (38, 1), (40, 2), (44, "229.00")])

    async def until(self, predicate, timeout: float = 10.0) -> Message:
        deadline = time.monotonic() + timeout
        while True:
            for m in self.received:
                if predicate(m):
                    return m
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"not received; got {[m.msg_type for m in self.received]}"
            try:
                data = await asyncio.wait_for(self.reader.read(65536), remaining)
            except asyncio.TimeoutError:
                continue
            assert data, "the server closed the connection"
            self.frames.feed(data)
            for frame in self.frames:
                assert not isinstance(frame, Garbled)
                self.received.append(Message(split_fields(bytes(frame)), bytes(frame)))

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def server_config(storage: Path):
    data = tomllib.loads(DEFAULT_CONFIG)
    data = merge(data, {"fix": {"port": 0, "check_latency": False}, "http": {"enabled": False},
                        "storage": {"dir": str(storage)}})
    data["venues"] = [{"name": "VENUE-A"}, {"name": "VENUE-B"}]
    return parse_config(data, "<test>")


def stored_next_target(storage: Path) -> int:
    """FIRM1's next inbound MsgSeqNum as the FIX store's files hold it."""
    cfg = server_config(storage)
    store = FileStore(cfg.storage.fix_store_dir, store_name("FIX.4.4", "CROSSBOOK", "FIRM1"))
    try:
        return store.get_next_target_seq()
    finally:
        store.close()


def test_restart_takes_the_inbound_number_from_the_journal_when_the_store_trails_it(tmp_path, monkeypatch):
    async def main() -> None:
        # The first run ends as a kill -9 would leave it before the store's lazy write: the
        # orders are handled and journaled, their reports sent, the store's line not written.
        monkeypatch.setattr(FileStore, "write_deferred", FileStore.write_pending)
        first = Server(server_config(tmp_path))
        await first.start()
        try:
            client = await RawClient.connect(first.fix_port, 1, reset=True)
            for i in range(3):
                client.new_order(f"c{i}")
            for i in range(3):
                await client.until(lambda m: m.msg_type == b"8" and m.get(11) == f"c{i}".encode() and m[150] == b"0")
            await client.close()
            await first.manager.drain()
        finally:
            await first.stop()
        next_seq = client.seq
        assert next_seq == 5
        assert stored_next_target(tmp_path) == 2   # the store counted the Logon only
        monkeypatch.undo()

        second = Server(server_config(tmp_path))
        await second.start()
        try:
            assert stored_next_target(tmp_path) == next_seq
            client = await RawClient.connect(second.fix_port, next_seq, reset=False)
            client.new_order("c3")
            await client.until(lambda m: m.msg_type == b"8" and m.get(11) == b"c3" and m[150] == b"0")
            await asyncio.sleep(0.2)
            # In sequence: no ResendRequest, nothing resent or answered with a status; c3 is new.
            types = [m.msg_type for m in client.received if m.msg_type != b"0"]
            assert types[0] == b"A" and b"2" not in types and b"4" not in types, types
            reports = [m for m in client.received if m.msg_type == b"8"]
            assert [(m[11], m[150]) for m in reports] == [(b"c3", b"A"), (b"c3", b"0")]
            assert not [m for m in client.received if m.get(43) or m.get(97)]
            await client.close()
        finally:
            await second.stop()

    asyncio.run(asyncio.wait_for(main(), 60))
