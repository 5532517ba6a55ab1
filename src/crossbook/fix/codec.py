"""Fast FIX codec: framing with BodyLength/CheckSum checks, zero-copy field splitting, typed
decode of NewOrderSingle / OrderCancelRequest / OrderCancelReplaceRequest, and encoders for
ExecutionReport and any message.

The work is done in the compiled ``crossbook.fix._codec``; this module is its public face.
See ``docs/fix-codec.md`` for a tour.  Typical use on a connection::

    reader = FrameReader()
    reader.feed(received_bytes)
    for event in reader:
        if isinstance(event, Garbled):
            ...                       # log and ignore; the sequence number does not advance
            continue
        msg = decode_order(event)     # or split_fields(event) for other message types
        if not msg.complete:
            ...                       # broken structure: garbled, ignore
        elif not msg.ok:
            ...                       # session Reject naming msg.error_tag
"""
from __future__ import annotations

from enum import IntEnum

from crossbook.fix._codec import (
    DATA_FIELDS,
    DEFAULT_MAX_BODY_LENGTH,
    MAX_STAMPED_EPOCH,
    DecimalFormatError,
    ExecutionReportBodyEncoder,
    ExecutionReportEncoder,
    FieldError,
    Fields,
    FrameReader,
    FrameScan,
    Garbled,
    MessageEncoder,
    OffGridError,
    OrderMessage,
    ReportInstrument,
    bytes_values,
    decode_order,
    encode_message,
    encode_stamped,
    find_frame,
    first_values,
    format_sending_time,
    format_utc_timestamp,
    parse_sending_time,
    parse_utc_timestamp,
    split_fields,
    to_ticks,
    to_units,
)

__all__ = [
    "DATA_FIELDS",
    "DEFAULT_MAX_BODY_LENGTH",
    "MAX_STAMPED_EPOCH",
    "DecimalFormatError",
    "ExecutionReportBodyEncoder",
    "ExecutionReportEncoder",
    "FieldError",
    "FieldErrorCode",
    "Fields",
    "FrameReader",
    "FrameScan",
    "FrameStatus",
    "Garbled",
    "GarbleReason",
    "MessageEncoder",
    "OffGridError",
    "OrderMessage",
    "ReportInstrument",
    "bytes_values",
    "decode_order",
    "encode_message",
    "encode_stamped",
    "find_frame",
    "first_values",
    "format_sending_time",
    "format_utc_timestamp",
    "parse_sending_time",
    "parse_utc_timestamp",
    "split_fields",
    "to_ticks",
    "to_units",
]


class FrameStatus(IntEnum):
    """``FrameScan.status``."""

    COMPLETE = 0
    NEED_MORE = 1
    GARBLED = 2


class GarbleReason(IntEnum):
    """``Garbled.reason_code`` / ``FrameScan.reason_code``: why bytes were dropped."""

    NOT_FRAME_START = 1         # junk before "8=FIX"
    BAD_BEGIN_STRING = 2        # 8= value not printable / not ended by SOH within 16 bytes
    MISSING_BODY_LENGTH = 3     # second field is not 9=
    BAD_BODY_LENGTH = 4         # 9= not digits, or below the 5 bytes of "35=X<SOH>"
    BODY_LENGTH_TOO_LARGE = 5   # 9= above max_body_length: refused before buffering the body
    MISSING_MSG_TYPE = 6        # third field is not 35=
    BODY_LENGTH_MISMATCH = 7    # 9= does not land on "<SOH>10="
    BAD_CHECKSUM_FIELD = 8      # 10= is not three digits and SOH
    CHECKSUM_MISMATCH = 9       # well framed, wrong checksum: exactly this frame is dropped


class FieldErrorCode(IntEnum):
    """``Fields.error``: the first problem met while splitting or typing a message."""

    OK = 0
    EMPTY_TAG = 1               # "=value"
    TAG_NOT_NUMERIC = 2         # "3x=value"
    TAG_ZERO = 3                # "0=value" (the field is kept: the session sends a Reject)
    TAG_TOO_LARGE = 4           # more than 9 digits
    MISSING_EQUALS = 5          # "35D<SOH>"
    UNTERMINATED = 6            # last value not ended by SOH
    BAD_DATA_LENGTH = 7         # length field (95, 212, ...) not digits or beyond the message
    DATA_LENGTH_MISMATCH = 8    # data field not followed by SOH at the declared length
    BAD_VALUE = 9               # typed field of the wrong format (OrderMessage only)
    DUPLICATE_TAG = 10          # typed field repeated (OrderMessage only)
    TAG_NEGATIVE = 11           # "-1=value"

    @property
    def breaks_structure(self) -> bool:
        """True for the codes after which splitting stops (``Fields.complete`` is False): the
        message is garbled.  The others leave every field readable; the session rejects them."""
        return self not in _READABLE_ERRORS


_READABLE_ERRORS = frozenset({FieldErrorCode.OK, FieldErrorCode.TAG_ZERO, FieldErrorCode.TAG_NEGATIVE,
                              FieldErrorCode.BAD_VALUE, FieldErrorCode.DUPLICATE_TAG})
