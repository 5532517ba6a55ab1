"""Pure-Python FIX framer: the slow, obviously correct reference for the Cython codec.

``FrameReader`` takes bytes as they arrive from a socket and yields one event per
message: ``Frame`` (a complete, checked message) or ``Garbled`` (bytes that were
skipped, with the reason). It never raises on peer input and never holds more
than ``max_body_length`` plus a small header/trailer allowance.

Checks, in this order (the order QuickFIX's parser and ``Message::validate`` use):

1. BeginString ``8=FIX...`` at the start of a frame (junk before it is skipped);
2. BodyLength ``9=<digits>`` second, at most ``max_body_length``;
3. MsgType ``35=`` third;
4. the frame ends at the first ``<SOH>10=...<SOH>`` at or after the point BodyLength
   names (QuickFIX's rule: a wrong BodyLength therefore swallows up to the next
   CheckSum, exactly as a QuickFIX peer would), and BodyLength must land exactly on it;
5. CheckSum is three digits equal to the byte sum modulo 256;
6. every field is ``<int tag>=<value>``; data fields (RawData 96, XmlData 213, ...)
   take exactly as many bytes as their length field says, SOH included.

A garbled frame is reported and skipped; reading resynchronises at the next ``8=FIX``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Union

SOH = b"\x01"
_SOH = 1

#: length tag -> data tag, for fields whose value may contain SOH.
DATA_FIELDS: dict[int, int] = {
    90: 91, 93: 89, 95: 96, 212: 213, 348: 349, 350: 351, 352: 353, 354: 355,
    356: 357, 358: 359, 360: 361, 362: 363, 364: 365, 445: 446, 618: 619, 621: 622,
}
_DATA_TAGS = {v: k for k, v in DATA_FIELDS.items()}

DEFAULT_MAX_BODY_LENGTH = 1 << 20
# How far past the BodyLength end we look for "<SOH>10=" before declaring the frame broken.
_TRAILER_SEARCH = 64
_MAX_BEGIN_STRING = 16


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete message: the raw bytes and its fields in wire order (8, 9, 35 ... 10)."""

    raw: bytes
    fields: list[tuple[int, bytes]]


@dataclass(frozen=True, slots=True)
class Garbled:
    """Bytes skipped because they do not form a valid message."""

    reason: str
    skipped: bytes


Event = Union[Frame, Garbled]


class FieldSyntaxError(ValueError):
    """A field is not ``<int>=<value>`` followed by SOH."""


def checksum(data: bytes | bytearray | memoryview) -> int:
    """FIX CheckSum(10): byte sum modulo 256."""
    return sum(data) & 0xFF


def split_fields(data: bytes) -> list[tuple[int, bytes]]:
    """Split ``tag=value<SOH>...`` into fields; raise FieldSyntaxError on a broken field.

    Tags may carry a sign ("-1") because QuickFIX answers those with a Reject
    (Invalid tag number) rather than treating the message as garbled. A data field
    (RawData 96 after RawDataLength 95, ...) takes exactly the announced number of
    bytes, SOH included.
    """
    parts = data.split(SOH)
    if parts[-1]:
        raise FieldSyntaxError("last field is not terminated by SOH")
    parts.pop()
    fields: list[tuple[int, bytes]] = []
    append = fields.append
    prev_tag = 0
    prev_value = b""
    i = 0
    n = len(parts)
    while i < n:
        tag_text, sep, value = parts[i].partition(b"=")
        if not sep:
            raise FieldSyntaxError(f"field {parts[i][:20]!r} has no '='")
        if tag_text.isdigit() and len(tag_text) <= 9:
            tag = int(tag_text)
        elif _is_int(tag_text):
            tag = int(tag_text)
        else:
            raise FieldSyntaxError(f"tag {tag_text[:20]!r} is not an integer")
        length_tag = _DATA_TAGS.get(tag)
        if length_tag is not None and prev_tag == length_tag and prev_value.isdigit():
            length = int(prev_value)
            while len(value) < length and i + 1 < n:
                i += 1
                value += SOH + parts[i]
            if len(value) != length:
                raise FieldSyntaxError(f"data field {tag} does not match its length field {length_tag}")
        append((tag, value))
        prev_tag, prev_value = tag, value
        i += 1
    return fields


def _is_int(text: bytes) -> bool:
    if text[:1] == b"-":
        text = text[1:]
    return 0 < len(text) <= 9 and text.isdigit()


class FrameReader:
    """Incremental framer. ``feed(bytes)`` then iterate to get ``Frame``/``Garbled`` events."""

    def __init__(self, max_body_length: int = DEFAULT_MAX_BODY_LENGTH) -> None:
        if not isinstance(max_body_length, int) or max_body_length <= 0:
            raise ValueError(f"max_body_length must be a positive int, got {max_body_length!r}")
        self.max_body_length = max_body_length
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"feed() takes bytes, got {type(data).__name__}")
        self._buf += data

    def __iter__(self) -> Iterator[Event]:
        while True:
            event = self.next_event()
            if event is None:
                return
            yield event

    def next_event(self) -> Event | None:
        """The next complete event, or None when more bytes are needed."""
        buf = self._buf
        if not buf:
            return None
        # 1. BeginString at the start; skip junk up to the next "8=FIX" (anywhere, as
        #    QuickFIX's parser does, so a stray byte before a Logon does not lose it).
        if not buf.startswith(b"8=FIX"):
            idx = buf.find(b"8=FIX")
            if idx < 0:
                # Drop the junk now, keeping only an end that may begin "8=FIX".
                n = len(buf) - _partial_begin(buf)
                if n == 0:
                    return None
                return self._skip(n, "no BeginString")
            return self._skip(idx, "bytes before BeginString")
        soh = buf.find(SOH, 0, _MAX_BEGIN_STRING + 3)
        value_end = soh if soh >= 0 else min(len(buf), _MAX_BEGIN_STRING + 3)
        begin_value = bytes(buf[2:value_end])
        if b"=" in begin_value or not all(0x21 <= c <= 0x7E for c in begin_value):
            return self._resync("BeginString is not printable text without '='")
        if soh < 0:
            if len(buf) < _MAX_BEGIN_STRING + 3:
                return None
            return self._resync("BeginString too long")
        # 2. BodyLength second, bounded.
        # Each check decides as soon as the bytes it needs are there (as the codec does), so
        # both framers drop a broken start at the same read.
        pos = soh + 1
        if not b"9=".startswith(buf[pos:pos + 2]):
            return self._resync("BodyLength is not the second field")
        if len(buf) < pos + 2:
            return None
        # At most 9 characters (zero padding included) and their SOH, as the codec.
        digits_end = buf.find(SOH, pos + 2, pos + 2 + 9 + 1)
        if digits_end < 0:
            partial = bytes(buf[pos + 2:pos + 2 + 9 + 1])
            if partial and not partial.isdigit():
                return self._resync("BodyLength is not a number")
            if partial and int(partial) > self.max_body_length:  # more digits only make it larger
                return self._resync(f"BodyLength {int(partial)}... exceeds {self.max_body_length}")
            if len(buf) < pos + 2 + 9 + 1:
                return None
            return self._resync("BodyLength too long")
        length_text = bytes(buf[pos + 2:digits_end])
        if not length_text.isdigit():
            return self._resync("BodyLength is not a number")
        body_length = int(length_text)
        if body_length < 5:  # the smallest body is "35=X<SOH>"
            return self._resync(f"BodyLength {body_length} is too small")
        if body_length > self.max_body_length:
            return self._resync(f"BodyLength {body_length} exceeds {self.max_body_length}")
        body_start = digits_end + 1
        # 3. MsgType third.
        if not b"35=".startswith(buf[body_start:body_start + 3]):
            return self._resync("MsgType is not the third field")
        if len(buf) < body_start + 3:
            return None
        # 4. The frame ends at the first "<SOH>10=...<SOH>" at or after the BodyLength end.
        body_end = body_start + body_length
        if len(buf) < body_end + 1:
            return None
        search_from = max(body_end - 1, body_start)
        # QuickFIX looks for the CheckSum anywhere after that point; bound the look to
        # max_body_length more bytes so a peer that never sends one cannot grow the buffer.
        search_limit = body_end + self.max_body_length + _TRAILER_SEARCH
        trailer = buf.find(b"\x0110=", search_from, search_limit)
        if trailer < 0:
            if len(buf) < search_limit:
                return None
            return self._resync("no CheckSum after the BodyLength end")
        frame_end = buf.find(SOH, trailer + 4, trailer + 4 + 8)
        if frame_end < 0:
            if len(buf) < trailer + 4 + 8:
                return None
            return self._resync("CheckSum field not terminated")
        frame_end += 1
        raw = bytes(buf[:frame_end])
        del buf[:frame_end]
        if trailer + 1 != body_end:
            return Garbled(f"BodyLength {body_length} does not match the body", raw)
        # 5. CheckSum.
        cs_text = raw[trailer + 4:-1]
        if len(cs_text) != 3 or not cs_text.isdigit():
            return Garbled("CheckSum is not three digits", raw)
        if int(cs_text) != checksum(raw[:trailer + 1]):
            return Garbled(f"CheckSum {cs_text.decode()} is wrong (expected {checksum(raw[:trailer + 1]):03d})", raw)
        # 6. Fields.
        try:
            fields = split_fields(raw)
        except FieldSyntaxError as exc:
            return Garbled(str(exc), raw)
        if fields[-1][0] != 10 or any(tag == 10 for tag, _ in fields[:-1]):
            return Garbled("CheckSum is not the last field", raw)
        return Frame(raw, fields)

    def _skip(self, n: int, reason: str) -> Garbled:
        skipped = bytes(self._buf[:n])
        del self._buf[:n]
        return Garbled(reason, skipped)

    def _resync(self, reason: str) -> Garbled:
        """Drop the broken frame start and everything up to the next 8=FIX."""
        idx = self._buf.find(b"8=FIX", 1)
        if idx < 0:
            # Keep a possible partial "8=FI" at the end so a following frame is not lost.
            n = max(1, len(self._buf) - _partial_begin(self._buf))
        else:
            n = idx
        return self._skip(n, reason)


def _partial_begin(buf: bytearray) -> int:
    """Length of the longest end of ``buf`` that is a proper beginning of ``8=FIX`` (0-4)."""
    for n in range(min(4, len(buf)), 0, -1):
        if buf.endswith(b"8=FIX"[:n]):
            return n
    return 0


def iter_frames(data: bytes, max_body_length: int = DEFAULT_MAX_BODY_LENGTH) -> list[Event]:
    """Frame a complete byte string (tests, tools)."""
    reader = FrameReader(max_body_length)
    reader.feed(data)
    return list(reader)
