"""Frame readers for the session layer: the compiled codec's, with the reference's events.

The session consumes ``framing.Frame`` / ``framing.Garbled`` events. Two readers produce
them from a byte stream:

* ``CodecFrameReader`` (the default): ``codec.FrameReader`` finds and checks the frames
  (BeginString, BodyLength, MsgType, CheckSum) and ``codec.split_fields`` splits them, in C.
  A message whose fields the codec cannot split cleanly (a broken field, a data field that
  does not match its length, tag 0 or a negative tag, CheckSum before the end) is handed to
  the reference splitter, which decides: the two readers always give the session the same
  frames, the same fields and the same garbled verdicts (``tests/fix/test_reader.py``).
* ``framing.FrameReader``: the pure-Python reference (``framer="python"``).

Only the ``Garbled.reason`` texts differ between the two (they are for logs).
"""
from __future__ import annotations

from typing import Iterator

from crossbook.fix import framing
from crossbook.fix._codec import (FrameReader as _CodecReader, Garbled as _CodecGarbled, split_fields as _split,
                                  split_message_lazy as _split_message_lazy)
from crossbook.fix.framing import DEFAULT_MAX_BODY_LENGTH, Event, FieldSyntaxError, Frame, Garbled
from crossbook.fix.messages import Message

__all__ = ["CodecFrameReader", "FRAMERS", "make_frame_reader"]

#: Names accepted by ``make_frame_reader`` (and ``Session(framer=...)``).
FRAMERS = ("codec", "python")


class CodecFrameReader:
    """Incremental framer over the Cython codec with ``framing.FrameReader``'s interface:
    ``feed(bytes)``, iterate (or ``next_event()``) for ``Frame`` / ``Garbled`` events."""

    __slots__ = ("_reader",)

    def __init__(self, max_body_length: int = DEFAULT_MAX_BODY_LENGTH) -> None:
        if isinstance(max_body_length, bool) or not isinstance(max_body_length, int) or max_body_length <= 0:
            raise ValueError(f"max_body_length must be a positive int, got {max_body_length!r}")
        self._reader = _CodecReader(max_body_length)

    @property
    def max_body_length(self) -> int:
        return self._reader.max_body_length

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return self._reader.buffered

    def feed(self, data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"feed() takes bytes, got {type(data).__name__}")
        self._reader.feed(data)

    def __iter__(self) -> Iterator[Event]:
        next_event = self.next_event
        while True:
            event = next_event()
            if event is None:
                return
            yield event

    def next_event(self) -> Event | None:
        """The next complete event, or None when more bytes are needed."""
        raw = self._reader.next_event()
        if raw is None:
            return None
        if type(raw) is _CodecGarbled:
            return Garbled(raw.reason, raw.data)
        fields = _split(raw)
        # ok: every field split and typed, no tag 0 / negative tag; CheckSum once, at the end.
        if fields.ok and fields.find(10) == len(fields) - 1:
            return Frame(raw, fields.pairs())
        return _reference_event(raw)


    def next_message(self) -> Message | Garbled | None:
        """:meth:`next_event` with a complete frame already made the session's ``Message``
        (``Message(frame.fields, frame.raw)``): its lookups split in one compiled pass, the
        field list only when first read, no ``Frame`` in between. Same verdicts, same fields."""
        raw = self._reader.next_event()
        if raw is None:
            return None
        if type(raw) is _CodecGarbled:
            return Garbled(raw.reason, raw.data)
        parts = _split_message_lazy(raw)
        if parts is not None:
            return Message._from_frame(raw, parts[0], parts[1])
        event = _reference_event(raw)
        return Message(event.fields, event.raw) if type(event) is Frame else event


def _reference_event(raw: bytes) -> Event:
    """The reference framer's verdict on a frame the codec did not split cleanly (rare)."""
    try:
        fields = framing.split_fields(raw)
    except FieldSyntaxError as exc:
        return Garbled(str(exc), raw)
    if fields[-1][0] != 10 or any(tag == 10 for tag, _ in fields[:-1]):
        return Garbled("CheckSum is not the last field", raw)
    return Frame(raw, fields)


def make_frame_reader(max_body_length: int = DEFAULT_MAX_BODY_LENGTH,
                      framer: str = "codec") -> CodecFrameReader | framing.FrameReader:
    """A new frame reader: ``"codec"`` (compiled, the default) or ``"python"`` (reference)."""
    if framer == "codec":
        return CodecFrameReader(max_body_length)
    if framer == "python":
        return framing.FrameReader(max_body_length)
    raise ValueError(f"framer must be one of {', '.join(FRAMERS)}, got {framer!r}")
