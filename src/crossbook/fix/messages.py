"""FIX message values, encoding and timestamps used by the session layer.

``Message`` wraps the fields of a received frame (wire order kept) with fast lookups.
``encode`` writes a message the way QuickFIX does: 8, 9, 35, the other header fields in
ascending tag order, the body as given, 10. Admin messages built here list their
body in ascending tag order too, so our bytes match QuickFIX's byte for byte.
"""
from __future__ import annotations

import datetime as _dt
import re
from typing import Iterable, Sequence

from crossbook.fix.framing import checksum

SOH = b"\x01"

#: Standard header tags (FIX 4.2 to FIXT 1.1). Anything else is body (or trailer 89/93/10).
HEADER_TAGS = frozenset({
    8, 9, 35, 49, 56, 115, 128, 90, 91, 34, 50, 142, 57, 143, 116, 144, 129, 145, 43, 97,
    52, 122, 212, 213, 347, 369, 370, 627, 628, 629, 630, 1128, 1129, 1156,
})
TRAILER_TAGS = frozenset({93, 89, 10})
ADMIN_MSG_TYPES = frozenset({b"0", b"1", b"2", b"3", b"4", b"5", b"A"})

BEGIN_STRINGS = ("FIX.4.2", "FIX.4.4", "FIXT.1.1")
#: ApplVerID (1137/1128) values for FIXT.1.1 sessions.
APPL_VER_IDS = {"7": "FIX.5.0", "8": "FIX.5.0SP1", "9": "FIX.5.0SP2", "6": "FIX.4.4", "4": "FIX.4.2"}

FieldValue = bytes | str | int
Fields = Sequence[tuple[int, FieldValue]]


def to_bytes(value: FieldValue) -> bytes:
    """A field value as wire bytes; bool-like and int values get FIX spellings."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        return b"Y" if value else b"N"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, str):
        return value.encode("latin-1")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"field value must be bytes, str or int, got {type(value).__name__}")


def format_timestamp(epoch_seconds: float, millis: bool = True) -> bytes:
    """UTCTimestamp ``YYYYMMDD-HH:MM:SS.sss`` (or without milliseconds)."""
    whole = int(epoch_seconds)
    ms = int(round((epoch_seconds - whole) * 1000))
    if ms >= 1000:
        whole += 1
        ms -= 1000
    t = _dt.datetime.fromtimestamp(whole, tz=_dt.timezone.utc)
    text = t.strftime("%Y%m%d-%H:%M:%S")
    if millis:
        text += f".{ms:03d}"
    return text.encode()


_TS_RE = re.compile(rb"^(\d{4})(\d{2})(\d{2})-(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$")


def parse_timestamp(value: bytes) -> float | None:
    """UTCTimestamp to epoch seconds; None when the text is not a valid timestamp."""
    m = _TS_RE.match(value)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac = m.groups()
    try:
        t = _dt.datetime(int(y), int(mo), int(d), int(h), int(mi), min(int(s), 59), tzinfo=_dt.timezone.utc)
    except ValueError:
        return None
    seconds = t.timestamp() + (1 if int(s) == 60 else 0)
    if frac:
        seconds += int(frac) / (10 ** len(frac))
    return seconds


class Message:
    """A received message: fields in wire order plus first-occurrence lookups."""

    __slots__ = ("fields", "raw", "_first")

    def __init__(self, fields: list[tuple[int, bytes]], raw: bytes = b"") -> None:
        self.fields = fields
        self.raw = raw
        first: dict[int, bytes] = {}
        for tag, value in fields:
            if tag not in first:
                first[tag] = value
        self._first = first

    def get(self, tag: int, default: bytes | None = None) -> bytes | None:
        return self._first.get(tag, default)

    def has(self, tag: int) -> bool:
        return tag in self._first

    def __getitem__(self, tag: int) -> bytes:
        return self._first[tag]

    def __contains__(self, tag: int) -> bool:
        return tag in self._first

    def get_int(self, tag: int) -> int | None:
        """The field as an int, or None when absent or not an integer."""
        value = self._first.get(tag)
        if value is None:
            return None
        text = value[1:] if value[:1] == b"-" else value
        if not text.isdigit() or len(text) > 18:
            return None
        return int(value)

    @property
    def msg_type(self) -> bytes:
        return self._first.get(35, b"")

    @property
    def begin_string(self) -> bytes:
        return self._first.get(8, b"")

    @property
    def seq_num(self) -> int | None:
        return self.get_int(34)

    @property
    def is_admin(self) -> bool:
        return self.msg_type in ADMIN_MSG_TYPES

    def header(self) -> list[tuple[int, bytes]]:
        return [(t, v) for t, v in self.fields if t in HEADER_TAGS]

    def body(self) -> list[tuple[int, bytes]]:
        return [(t, v) for t, v in self.fields if t not in HEADER_TAGS and t not in TRAILER_TAGS]

    def __repr__(self) -> str:
        return f"Message({self.raw.replace(SOH, b'|')!r})" if self.raw else f"Message({self.fields!r})"


def encode(begin_string: bytes, msg_type: bytes, header: Iterable[tuple[int, FieldValue]],
           body: Iterable[tuple[int, FieldValue]]) -> bytes:
    """Serialise one message: 8, 9, 35, header ascending by tag, body in the given order, 10."""
    head = sorted(((t, to_bytes(v)) for t, v in header if t not in (8, 9, 35, 10)), key=lambda f: f[0])
    parts = [b"35=", msg_type, SOH]
    for tag, value in head:
        parts += (str(tag).encode(), b"=", value, SOH)
    for tag, value in body:
        if tag in (8, 9, 35, 10):
            raise ValueError(f"tag {tag} cannot appear in a message body")
        parts += (str(tag).encode(), b"=", to_bytes(value), SOH)
    payload = b"".join(parts)
    prefix = b"8=" + begin_string + b"\x019=" + str(len(payload)).encode() + SOH
    message = prefix + payload
    return message + b"10=" + b"%03d" % checksum(message) + SOH


def sorted_body(body: Iterable[tuple[int, FieldValue]]) -> list[tuple[int, FieldValue]]:
    """Body fields in ascending tag order (QuickFIX's FieldMap order for flat messages)."""
    return sorted(body, key=lambda f: f[0])


def replace_header(raw_fields: list[tuple[int, bytes]], updates: dict[int, bytes],
                   remove: Iterable[int] = ()) -> tuple[bytes, bytes, list[tuple[int, bytes]], list[tuple[int, bytes]]]:
    """Split a stored message into (begin, type, header, body) with header fields replaced."""
    begin = b""
    msg_type = b""
    header: dict[int, bytes] = {}
    body: list[tuple[int, bytes]] = []
    removed = set(remove)
    for tag, value in raw_fields:
        if tag == 8:
            begin = value
        elif tag == 35:
            msg_type = value
        elif tag in (9, 10) or tag in removed:
            continue
        elif tag in HEADER_TAGS:
            header.setdefault(tag, value)
        elif tag in TRAILER_TAGS:
            continue
        else:
            body.append((tag, value))
    header.update(updates)
    return begin, msg_type, list(header.items()), body
