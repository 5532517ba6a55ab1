"""Open-loop FIX load client for bench_oms_latency.py, run as its own process.

    python oms_load_client.py --port P --mode fix|echo --count N --rate R [--sender FIRM1]

Sends N NewOrderSingles at a steady rate R (one every 1/R seconds on a fixed schedule, whatever
the answers do) and measures, for each order, the time from its *intended* send time to the first
message carrying its ClOrdID (the first ExecutionReport; in echo mode the echoed order itself),
so a stall delays every order scheduled behind it and shows in the percentiles (no coordinated
omission). Prints one JSON line: latencies in microseconds, sorted, plus counts.
"""
from __future__ import annotations

import argparse
import json
import re
import select
import socket
import sys
import time

from crossbook.fix.codec import FrameReader, Garbled, encode_message, format_utc_timestamp

CL_ORD_ID = re.compile(rb"\x0111=([^\x01]*)\x01")


def logon(sock: socket.socket, sender: str, target: str) -> None:
    now = format_utc_timestamp(time.time_ns(), 3)
    sock.sendall(encode_message("FIX.4.4", "A", [(34, 1), (49, sender), (52, now), (56, target)],
                                [(98, 0), (108, 30), (141, True)]))
    reader = FrameReader()
    deadline = time.time() + 10
    while time.time() < deadline:
        data = sock.recv(65536)
        if not data:
            raise SystemExit("server closed the connection during logon")
        reader.feed(data)
        for frame in reader:
            if not isinstance(frame, Garbled) and b"\x0135=A\x01" in frame:
                return
    raise SystemExit("no Logon answer")


def run(args: argparse.Namespace) -> dict:
    sock = socket.create_connection(("127.0.0.1", args.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    seq = 1
    if args.mode == "fix":
        logon(sock, args.sender, args.target)
        seq = 2
    sock.setblocking(False)
    reader = FrameReader()
    interval = 1.0 / args.rate
    intended: dict[bytes, float] = {}
    latencies: list[float] = []
    sent = 0
    prefix = f"B{int(time.time() * 1000) % 10**9}-"
    start = time.perf_counter() + 0.05
    pending_out = b""
    deadline = start + args.count * interval + args.drain_s
    last_answer = [start]

    def receive() -> None:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return
        if not data:
            raise SystemExit("connection closed by the server")
        now = time.perf_counter()
        reader.feed(data)
        for frame in reader:
            if isinstance(frame, Garbled):
                continue
            m = CL_ORD_ID.search(frame)
            if m is None:
                continue
            t0 = intended.pop(m.group(1), None)
            if t0 is not None:
                latencies.append((now - t0) * 1e6)
                last_answer[0] = now

    while time.perf_counter() < deadline and (sent < args.count or intended):
        now = time.perf_counter()
        due = start + sent * interval
        if sent < args.count and now >= due:
            cl = f"{prefix}{sent}".encode()
            side = 1 + (sent & 1)
            price = "229.00" if side == 1 else "231.00"
            msg = encode_message("FIX.4.4", "D", [(34, seq), (49, args.sender), (52, format_utc_timestamp(time.time_ns(), 3)),
                                                  (56, args.target)],
                                 [(11, cl), (55, "AAPL"), (54, side), (60, format_utc_timestamp(time.time_ns(), 3)),
                                  (38, 1), (40, 2), (44, price)])
            seq += 1
            intended[cl] = due
            sent += 1
            pending_out += msg
            # Write whatever the socket takes now; the rest waits (open loop: no blocking).
            try:
                n = sock.send(pending_out)
                pending_out = pending_out[n:]
            except BlockingIOError:
                pass
            continue
        if pending_out:
            try:
                n = sock.send(pending_out)
                pending_out = pending_out[n:]
            except BlockingIOError:
                pass
        wait = max(0.0, min(due - now, 0.0005)) if sent < args.count else 0.01
        r, _, _ = select.select([sock], [], [], wait)
        if r:
            receive()
    sock.close()
    latencies.sort()
    # Orders answered per second, from the first scheduled send to the last first-answer.
    throughput = len(latencies) / max(last_answer[0] - start, 1e-9)
    return {"mode": args.mode, "sent": sent, "answered": len(latencies), "lost": len(intended),
            "rate": args.rate, "throughput": throughput, "latencies_us": latencies}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=("fix", "echo"), required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--sender", default="FIRM1")
    p.add_argument("--target", default="CROSSBOOK")
    p.add_argument("--drain-s", type=float, default=10.0)
    print(json.dumps(run(p.parse_args())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
