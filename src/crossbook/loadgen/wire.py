"""The load generator's FIX initiator: a lean asyncio protocol on the Cython codec.

Why not ``crossbook.fix.transport.Initiator``: its sans-IO ``Session`` frames, validates and encodes
in pure Python (about 20-30k messages/s per core, docs/fix.md), and a load generator has to send
and receive several times the rate it measures. This protocol keeps the session rules a server
checks and drops what a measuring client does not need:

* Logon with ResetSeqNumFlag (141=Y): both sides start at 1, so no store is needed and a
  previous run's sequence numbers never matter.
* Outgoing: MsgSeqNum, SendingTime, CompIDs; messages are queued with ``queue_app`` and written
  with one ``transport.write`` per event-loop tick (``flush``).
* Incoming: ``FrameReader`` (BodyLength and CheckSum checked) and ``split_fields``; TestRequest is
  answered, Heartbeat ignored, SequenceReset moves the expected number, a ResendRequest is
  answered with one SequenceReset-GapFill (nothing is stored for resend: replaying orders would
  distort the measurement), Logout is answered. Gaps in the incoming sequence are counted, not
  recovered (``seq_gaps``). Application messages go to the ``on_app`` callback with their
  receive time.
"""
from __future__ import annotations

import asyncio
import time
from typing import Callable

from crossbook.fix.codec import FrameReader, Garbled, MessageEncoder, format_utc_timestamp, split_fields

#: Write buffer above which the server is considered not to be reading (the run is aborted).
MAX_WRITE_BUFFER = 256 << 20


class LoadSessionError(RuntimeError):
    """The session could not log on, or the server stopped reading."""


class LoadSession(asyncio.Protocol):
    """One FIX session of the load generator (an initiator)."""

    def __init__(self, index: int, begin_string: str, sender_comp_id: str, target_comp_id: str,
                 on_app: Callable[["LoadSession", bytes, object, int], None], *, heartbeat_s: int = 30) -> None:
        self.index = index
        self.begin_string = begin_string.encode()
        self.sender = sender_comp_id.encode()
        self.target = target_comp_id.encode()
        self.name = sender_comp_id
        self.on_app = on_app
        self.heartbeat_s = heartbeat_s
        self.encoder = MessageEncoder(4096)
        self.reader = FrameReader()
        self.transport: asyncio.Transport | None = None
        self.next_out = 1
        self.next_in = 1
        self.out: list[bytes] = []
        self.logged_on = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.sent_logout = False
        self.logout_text = ""
        self.last_sent = time.monotonic()
        # Counters for the report.
        self.messages_in = 0
        self.bytes_out = 0
        self.garbled = 0
        self.seq_gaps = 0
        self.resend_requests = 0

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._queue_admin(b"A", [(98, b"0"), (108, str(self.heartbeat_s).encode()), (141, b"Y")])
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.logged_on.done():
            self.logged_on.set_exception(LoadSessionError(
                f"{self.name}: connection closed before logon" + (f" ({self.logout_text})" if self.logout_text else "")))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        reader = self.reader
        reader.feed(data)
        for frame in reader:
            if isinstance(frame, Garbled):
                self.garbled += 1
                continue
            fields = split_fields(frame)
            if not fields.complete:
                self.garbled += 1
                continue
            self.messages_in += 1
            msg_type = fields.get(35)
            seq = fields.get_int(34, 0)
            if msg_type == b"4":
                self._on_sequence_reset(fields)
                continue
            if seq != self.next_in:
                if seq > self.next_in:
                    self.seq_gaps += 1
                elif fields.get(43) == b"Y":
                    continue  # a duplicate we already processed
                # Too low without PossDup: count it; a measuring client keeps going.
            if seq >= self.next_in:
                self.next_in = seq + 1
            if msg_type == b"8" or msg_type == b"9" or msg_type == b"3" or msg_type == b"j":
                self.on_app(self, msg_type, fields, now)
            elif msg_type == b"0":
                pass
            elif msg_type == b"1":
                self._queue_admin(b"0", [(112, fields.get(112, b"TEST"))])
            elif msg_type == b"A":
                if not self.logged_on.done():
                    self.logged_on.set_result(None)
            elif msg_type == b"2":
                self.resend_requests += 1
                # Nothing is stored: fill the whole range with one gap fill up to our next number.
                begin = fields.get_int(7, self.next_out) or self.next_out
                self._queue_gap_fill(begin)
            elif msg_type == b"5":
                self.logout_text = (fields.get(58) or b"").decode("latin-1")
                if not self.sent_logout:
                    self._queue_admin(b"5", [])
                    self.sent_logout = True
                self.flush()
                if self.transport is not None:
                    self.transport.close()
            else:
                self.on_app(self, msg_type, fields, now)
        if self.out:
            self.flush()

    # -- output
    def queue_app(self, msg_type: bytes, body: list, sending_time: bytes) -> int:
        """Encode an application message into the outgoing batch; returns its MsgSeqNum."""
        seq = self.next_out
        self.next_out = seq + 1
        self.out.append(self.encoder.encode(self.begin_string, msg_type,
                                            ((34, seq), (49, self.sender), (52, sending_time), (56, self.target)),
                                            body))
        return seq

    def _queue_admin(self, msg_type: bytes, body: list) -> None:
        self.queue_app(msg_type, body, format_utc_timestamp(time.time_ns(), 3))

    def _queue_gap_fill(self, begin: int) -> None:
        stamp = format_utc_timestamp(time.time_ns(), 3)
        self.out.append(self.encoder.encode(self.begin_string, b"4",
                                            ((34, begin), (43, b"Y"), (49, self.sender), (52, stamp),
                                             (56, self.target), (122, stamp)),
                                            ((36, self.next_out), (123, b"Y"))))

    def _on_sequence_reset(self, fields) -> None:
        new_seq = fields.get_int(36, 0)
        if new_seq and new_seq >= self.next_in:
            self.next_in = new_seq

    def flush(self) -> None:
        """Write everything queued with one system call."""
        if not self.out:
            return
        data = b"".join(self.out) if len(self.out) > 1 else self.out[0]
        self.out.clear()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        self.bytes_out += len(data)
        self.last_sent = time.monotonic()
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            raise LoadSessionError(f"{self.name}: the server is not reading "
                                   f"({transport.get_write_buffer_size() >> 20} MiB waiting)")

    def heartbeat_if_idle(self) -> None:
        if self.transport is not None and self.logged_on.done() and not self.sent_logout \
                and time.monotonic() - self.last_sent >= self.heartbeat_s:
            self._queue_admin(b"0", [])
            self.flush()

    async def logout(self, timeout: float) -> None:
        """Send Logout, wait (bounded) for the answer, then close."""
        if self.transport is not None and not self.sent_logout:
            self.sent_logout = True
            self._queue_admin(b"5", [])
            self.flush()
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except asyncio.TimeoutError:
            pass
        if self.transport is not None:
            self.transport.close()
            try:
                await asyncio.wait_for(asyncio.shield(self.closed), 1.0)
            except asyncio.TimeoutError:
                pass
