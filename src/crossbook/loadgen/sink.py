"""A fast answering FIX acceptor, to measure the load generator alone.

It accepts any CompIDs, answers a Logon (ResetSeqNumFlag honoured), answers every
NewOrderSingle with one ExecutionReport (DAY: New 150=0/39=0; IOC or FOK: filled 150=F/39=2),
every OrderCancelRequest with Canceled (150=4) and every OrderCancelReplaceRequest with
Replaced (150=5), all with the Cython codec and one write per read. It keeps no books: it exists
so that ``crossbook loadgen`` can be shown to sustain a rate with a peer that costs almost
nothing (docs/loadgen.md, "capacity of the generator").

    python -m crossbook.loadgen.sink --port 9899      # loopback only; Ctrl-C stops it
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import time

from crossbook.fix.codec import FrameReader, Garbled, MessageEncoder, format_utc_timestamp, split_fields


class SinkProtocol(asyncio.Protocol):
    """One connection of the sink."""

    def __init__(self, sink: "Sink") -> None:
        self.sink = sink
        self.reader = FrameReader()
        self.encoder = MessageEncoder(4096)
        self.transport: asyncio.Transport | None = None
        self.begin = b"FIX.4.4"
        self.sender = b"SINK"
        self.target = b""
        self.next_out = 1
        self.exec_id = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def _send(self, out: list, msg_type: bytes, body, stamp: bytes) -> None:
        out.append(self.encoder.encode(self.begin, msg_type,
                                       ((34, self.next_out), (49, self.sender), (52, stamp), (56, self.target)), body))
        self.next_out += 1

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        out: list[bytes] = []
        stamp = format_utc_timestamp(time.time_ns(), 3)
        close = False
        for frame in self.reader:
            if isinstance(frame, Garbled):
                continue
            f = split_fields(frame)
            mt = f.get(35)
            if mt == b"D" or mt == b"F" or mt == b"G":
                self.exec_id += 1
                self.sink.orders += 1
                cl = f.get(11)
                if mt == b"D":
                    done = f.get(59) in (b"3", b"4")
                    qty = f.get(38)
                    body = [(6, f.get(44) if done else b"0"), (11, cl), (14, qty if done else b"0"), (17, b"%d" % self.exec_id),
                            (37, cl), (39, b"2" if done else b"0"), (54, f.get(54)), (55, f.get(55)),
                            (150, b"F" if done else b"0"), (151, b"0" if done else qty)]
                elif mt == b"F":
                    body = [(6, b"0"), (11, cl), (14, b"0"), (17, b"%d" % self.exec_id), (37, f.get(41)), (39, b"4"),
                            (41, f.get(41)), (54, f.get(54)), (55, f.get(55)), (150, b"4"), (151, b"0")]
                else:
                    body = [(6, b"0"), (11, cl), (14, b"0"), (17, b"%d" % self.exec_id), (37, f.get(41)), (39, b"0"),
                            (41, f.get(41)), (54, f.get(54)), (55, f.get(55)), (150, b"5"), (151, f.get(38))]
                self._send(out, b"8", body, stamp)
            elif mt == b"A":
                self.begin = f.get(8)
                self.sender = f.get(56)
                self.target = f.get(49)
                self.next_out = 1
                self._send(out, b"A", [(98, b"0"), (108, f.get(108, b"30")), (141, b"Y")], stamp)
            elif mt == b"1":
                self._send(out, b"0", [(112, f.get(112, b"TEST"))], stamp)
            elif mt == b"5":
                self._send(out, b"5", [], stamp)
                close = True
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
        if close and self.transport is not None:
            self.transport.close()


class Sink:
    """The listening sink; ``port`` is the bound port after ``start()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.requested_port = port
        self.server: asyncio.AbstractServer | None = None
        self.orders = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: SinkProtocol(self), self.host, self.requested_port)

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1] if self.server else self.requested_port

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None


def main(argv: list[str] | None = None) -> int:
    from crossbook.fix.transport import install_uvloop

    parser = argparse.ArgumentParser(prog="python -m crossbook.loadgen.sink", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9899)
    parser.add_argument("--seconds", type=float, default=600.0, help="stop by itself after this long (default 600)")
    args = parser.parse_args(argv)
    install_uvloop()

    async def run() -> None:
        sink = Sink("127.0.0.1", args.port)
        await sink.start()
        print(f"sink listening on 127.0.0.1:{sink.port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await asyncio.wait_for(stop.wait(), args.seconds)
        except asyncio.TimeoutError:
            pass
        await sink.stop()
        print(f"sink answered {sink.orders:,} requests", flush=True)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
