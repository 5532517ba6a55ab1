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

from crossbook.fix._codec import (encode_message as _encode_message, first_values as _first_values,
                                  parse_sending_time as _parse_sending_time, split_message as _split_message)
from crossbook.fix.framing import checksum

SOH = b"\x01"
_FRAME_TAGS = (8, 9, 35, 10)  # written by encode itself, never taken from the caller

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


_second_text: list = [None, b""]  # (whole epoch second, its "YYYYMMDD-HH:MM:SS") of the last call


def format_timestamp(epoch_seconds: float, millis: bool = True) -> bytes:
    """UTCTimestamp ``YYYYMMDD-HH:MM:SS.sss`` (or without milliseconds)."""
    whole = int(epoch_seconds)
    ms = int(round((epoch_seconds - whole) * 1000))
    if ms >= 1000:
        whole += 1
        ms -= 1000
    cached = _second_text
    if cached[0] == whole:  # the date and time of the current second, formatted once
        text = cached[1]
    else:
        text = _dt.datetime.fromtimestamp(whole, tz=_dt.timezone.utc).strftime("%Y%m%d-%H:%M:%S").encode()
        cached[0], cached[1] = whole, text
    if millis:
        return b"%s.%03d" % (text, ms)
    return text


# \Z, not $: "$" also matches before a final newline, which is no part of a timestamp.
_TS_RE = re.compile(rb"^(\d{4})(\d{2})(\d{2})-(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?\Z")
#: UTCTimestamp bytes to epoch seconds; None when the text is not a valid timestamp. Compiled
#: (``codec.parse_sending_time``, read once per received message): the same floats as
#: :func:`parse_timestamp_reference` (tests/fix/test_reader.py compares them).
parse_timestamp = _parse_sending_time


def parse_timestamp_reference(value: bytes) -> float | None:
    """:func:`parse_timestamp` in plain Python (the reference it is tested against)."""
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

    __slots__ = ("_fields", "raw", "_first", "_count")

    def __init__(self, fields: list[tuple[int, bytes]], raw: bytes = b"",
                 first: dict[int, bytes] | None = None) -> None:
        """``first``: the ``{tag: first value}`` dict of ``fields`` when the caller has it
        already (``codec.split_message`` builds both in one pass); built here otherwise."""
        self._fields: list[tuple[int, bytes]] | None = fields
        self.raw = raw
        # tag -> first value, built in C
        self._first: dict[int, bytes] = _first_values(fields) if first is None else first
        self._count = -1  # see _from_frame

    @classmethod
    def _from_frame(cls, raw: bytes, first: dict[int, bytes], count: int) -> "Message":
        """A message of a frame the codec splits cleanly (``codec.split_message_lazy``): the
        field list is made from ``raw`` when first read (the session's own path only needs the
        lookups, and its validator the dict and ``count``, the number of fields)."""
        msg = _new_object(cls)
        msg._fields = None
        msg.raw = raw
        msg._first = first
        msg._count = count
        return msg

    @property
    def fields(self) -> list[tuple[int, bytes]]:
        """The fields in wire order (8, 9, 35 ... 10) as ``(tag, value)`` pairs."""
        fields = self._fields
        if fields is None:
            # A frame the codec split cleanly before: it splits the same way again.
            fields = self._fields = _split_message(self.raw)[0]  # type: ignore[index]
            self._count = -1  # from now on the list is what callers see (and may change)
        return fields

    @fields.setter
    def fields(self, value: list[tuple[int, bytes]]) -> None:
        self._fields = value
        self._count = -1

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
        # get_int(34) without the call and the sign slice for the usual plain digits (read
        # twice per received message); anything else takes get_int itself.
        value = self._first.get(34)
        if value is not None and value.isdigit() and len(value) <= 18:
            return int(value)
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


_new_object = object.__new__


def _tag_of(field: tuple[int, FieldValue]) -> int:
    return field[0]


def encode(begin_string: bytes, msg_type: bytes, header: Iterable[tuple[int, FieldValue]],
           body: Iterable[tuple[int, FieldValue]]) -> bytes:
    """Serialise one message: 8, 9, 35, header ascending by tag, body in the given order, 10.

    The compiled encoder (``codec.encode_message``) writes it when every value is bytes or
    an int; it refuses what FIX forbids (an empty value, SOH outside a data field), and
    such messages, and bodies with str values, are written by :func:`encode_reference`,
    so the bytes are always exactly the reference's.
    """
    head = sorted([(t, v if type(v) is bytes else to_bytes(v)) for t, v in header if t not in _FRAME_TAGS],
                  key=_tag_of)
    if type(body) is not list:
        body = list(body)
    return encode_ordered_header(begin_string, msg_type, head, body)


def encode_ordered_header(begin_string: bytes, msg_type: bytes, header: list[tuple[int, FieldValue]],
                          body: list[tuple[int, FieldValue]]) -> bytes:
    """:func:`encode` for a header the caller already gives ascending by tag, with bytes or int
    values and no frame tags (the session's own four fields): the same bytes without the sort
    and conversion pass, which cost a fifth of sending an ExecutionReport."""
    for _, value in body:
        kind = type(value)
        if kind is not bytes and kind is not int:
            break
    else:
        try:
            return _encode_message(begin_string, msg_type, header, body)
        except (ValueError, TypeError, OverflowError):
            pass  # the reference decides (and raises for tags 8, 9, 35, 10 in the body)
    return encode_reference(begin_string, msg_type, header, body)


def encode_bytes_ordered_header(begin_string: bytes, msg_type: bytes, header: list[tuple[int, FieldValue]],
                                body: list[tuple[int, bytes]]) -> bytes:
    """:func:`encode_ordered_header` for a body whose values are all bytes (``Session.send``
    converted them): no type pass. What the compiled encoder refuses (an empty value, SOH in
    a value) is written by the reference, as in :func:`encode`."""
    try:
        return _encode_message(begin_string, msg_type, header, body)
    except (ValueError, TypeError, OverflowError):
        return encode_reference(begin_string, msg_type, header, body)


def encode_reference(begin_string: bytes, msg_type: bytes, header: Iterable[tuple[int, FieldValue]],
                     body: Iterable[tuple[int, FieldValue]]) -> bytes:
    """:func:`encode` in plain Python: the reference the compiled path is tested against."""
    head = sorted(((t, to_bytes(v)) for t, v in header if t not in _FRAME_TAGS), key=_tag_of)
    parts = [b"35=", msg_type, SOH]
    for tag, value in head:
        parts += (str(tag).encode(), b"=", value, SOH)
    for tag, value in body:
        if tag in _FRAME_TAGS:
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
