"""A memoising front for the FIX dictionary validator of the OMS acceptor.

Order flow repeats itself: the same client sends NewOrderSingles with the same tags in the
same order and the same enumerated values (Side, OrdType, Symbol ...); only a few fields differ
from message to message (ClOrdID, quantities, prices, times, MsgSeqNum, BodyLength, CheckSum).
The full dictionary validation (crossbook.fix.validation) costs about as much as everything the
OMS does with the order, so this validator remembers *shapes* that passed:

    shape = BeginString + the (tag, value) sequence with the values of VARIABLE tags blanked.

A message whose shape passed before, and whose variable values pass this module's own format
checks, is accepted without running the full validator. Anything else goes to the full
validator, which gives the verdict (and, for a bad message, QuickFIX's exact Reject).

Why this is exact: the dictionary validator's verdict depends on the tag sequence (structure,
order, required and allowed tags, duplicates, groups) and on each value checked on its own
(non-empty, type format, enumeration). Two messages with the same shape differ only in variable
values; the checks here are stricter than the dictionary's for those types (a value they pass,
the dictionary passes), so the full validator would accept the second message too.
``tests/oms/test_validation.py`` compares both verdicts on seeded random messages.
"""
from __future__ import annotations

import datetime as _dt
import re
from typing import Callable

from crossbook.fix.session import RejectInfo, dictionary_validator
from crossbook.fix.settings import SessionSettings

_INT = re.compile(rb"[1-9][0-9]{0,8}\Z")
_CHECKSUM = re.compile(rb"[0-9]{3}\Z")
_DECIMAL = re.compile(rb"[0-9]{1,12}(\.[0-9]{1,8})?\Z")
_STRING = re.compile(rb"[!-~]{1,64}\Z")          # printable ASCII, no space, non-empty
# Hours, minutes and seconds range-checked by the pattern itself; the date (month lengths, leap
# years) by datetime.date, once per distinct date: order flow carries the same date all day.
_TIMESTAMP = re.compile(rb"([0-9]{4}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01]))"
                        rb"-(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{3})?\Z")
_VALID_DATES: set[bytes] = set()


def _timestamp(value: bytes) -> bool:
    m = _TIMESTAMP.match(value)
    if m is None:
        return False
    day = m.group(1)
    if day in _VALID_DATES:
        return True
    try:
        _dt.date(int(day[:4]), int(day[4:6]), int(day[6:]))
    except ValueError:
        return False
    if len(_VALID_DATES) < 4096:
        _VALID_DATES.add(day)
    return True


def _int(value: bytes) -> bool:
    return _INT.match(value) is not None


def _checksum(value: bytes) -> bool:
    return _CHECKSUM.match(value) is not None


def _decimal(value: bytes) -> bool:
    return _DECIMAL.match(value) is not None


def _string(value: bytes) -> bool:
    return _STRING.match(value) is not None


#: Tags whose value changes from message to message, with a format check stricter than the
#: dictionary's for their FIX type (INT, CheckSum, UTCTimestamp, Qty/Price, String).
VARIABLE_TAGS: dict[int, Callable[[bytes], bool]] = {
    9: _int, 10: _checksum, 34: _int,                      # BodyLength, CheckSum, MsgSeqNum
    52: _timestamp, 60: _timestamp, 126: _timestamp,       # SendingTime, TransactTime, ExpireTime
    11: _string, 41: _string, 37: _string, 584: _string,   # ClOrdID, OrigClOrdID, OrderID, MassStatusReqID
    38: _decimal, 44: _decimal, 99: _decimal, 111: _decimal,  # OrderQty, Price, StopPx, MaxFloor
}


class MemoValidator:
    """A crossbook.fix ``Validator`` (pass it as ``Acceptor(..., validator=...)``): the
    dictionary validator of each session's BeginString behind a memo of passing shapes."""

    def __init__(self, settings: list[SessionSettings], max_shapes: int = 10_000) -> None:
        self._full: dict[str, Callable] = {}
        for s in settings:
            if s.begin_string not in self._full:
                validator = dictionary_validator(s)
                if validator is None:
                    raise RuntimeError("the FIX dictionary validator is not available")
                self._full[s.begin_string] = validator
        self._passed: set[tuple] = set()
        self._max_shapes = max_shapes
        self.hits = 0
        self.misses = 0

    def __call__(self, fields: list[tuple[int, bytes]], begin_string: str,
                 appl_ver_id: str | None) -> RejectInfo | None:
        shape = self._shape(fields, begin_string, appl_ver_id)
        if shape is not None and shape in self._passed:
            self.hits += 1
            return None
        self.misses += 1
        problem = self._full[begin_string](fields, begin_string, appl_ver_id)
        if problem is None and shape is not None and len(self._passed) < self._max_shapes:
            self._passed.add(shape)
        return problem

    @staticmethod
    def _shape(fields: list[tuple[int, bytes]], begin_string: str, appl_ver_id: str | None) -> tuple | None:
        """The memo key, or None when a variable value fails its strict check (full validation)."""
        key: list = [begin_string, appl_ver_id]
        for tag, value in fields:
            check = VARIABLE_TAGS.get(tag)
            if check is None:
                key.append((tag, value))
            elif check(value):
                key.append(tag)
            else:
                return None
        return tuple(key)
