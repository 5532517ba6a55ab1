"""FIX codec hot path: framing, zero-copy field splitting, typed order decode, fast encoders.

Private: import the public names from ``crossbook.fix.codec``.  The contract for other Cython
modules is ``_codec.pxd``.  Bad counterparty input never raises out of the framing or splitting
code: it comes back as a value (a garbled event, an error code on the field list); exceptions are
kept for broken calling contracts (wrong argument types, values that cannot be put on the wire).
"""
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport (PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize, PyBytes_CheckExact,
                            PyBytes_Check)
from cpython.long cimport PyLong_Check, PyLong_CheckExact, PyLong_AsLongLongAndOverflow
from cpython.unicode cimport (PyUnicode_CheckExact, PyUnicode_DecodeLatin1, PyUnicode_Check, PyUnicode_KIND,
                              PyUnicode_DATA, PyUnicode_GET_LENGTH, PyUnicode_READ_CHAR, PyUnicode_1BYTE_KIND)
from libc.math cimport fabs, round as c_round
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t, INT64_MAX
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memchr, memcmp, memcpy, memmove, memset

from decimal import Decimal

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size) except NULL


DEFAULT_MAX_BODY_LENGTH = 1 << 20

cdef enum:
    SOH = 1
    MAX_BEGIN_STRING = 16          # "FIXT.1.1" is 8; leave room for private variants
    MAX_LENGTH_DIGITS = 9        # as framing.py: a BodyLength of 10+ characters (even zero-padded) is garbled
    MAX_TAG = 999999999
    TRAILER_LENGTH = 7             # "10=NNN\x01"
    TRAILER_SEARCH = 64            # slack past max_body_length when looking for a misplaced "10="
    MAX_CHECKSUM_TEXT = 8          # a CheckSum value longer than this is not worth waiting for
    READER_INITIAL_CAPACITY = 16384
    READER_SHRINK_ABOVE = 262144
    HEADROOM = 48                  # room before the body for "8=<begin>\x019=<len>\x01"
    SMALL_MESSAGE = 64             # accepts_flat checks repeated tags in C up to this many fields
    DATA_TAG_TABLE_SIZE = 1024

cdef const char* FRAME_START = b"8=FIX"


# =============================================================================================
# Framing
# =============================================================================================

_GARBLED_TEXT = {
    GARBLED_NOT_FRAME_START: "data does not start with 8=FIX",
    GARBLED_BAD_BEGIN_STRING: "BeginString (8) is not printable text ended by SOH within 16 bytes",
    GARBLED_MISSING_BODY_LENGTH: "second field is not BodyLength (9)",
    GARBLED_BAD_BODY_LENGTH: "BodyLength (9) is not a decimal number of at least 5",
    GARBLED_BODY_LENGTH_TOO_LARGE: "BodyLength (9) exceeds max_body_length",
    GARBLED_MISSING_MSG_TYPE: "third field is not MsgType (35)",
    GARBLED_BODY_LENGTH_MISMATCH: "BodyLength (9) does not end at the CheckSum (10) field",
    GARBLED_BAD_CHECKSUM_FIELD: "CheckSum (10) is not three digits ended by SOH",
    GARBLED_CHECKSUM_MISMATCH: "CheckSum (10) does not match the sum of the bytes",
}


cdef inline bint _is_digit(uint8_t c) noexcept nogil:
    return c >= 48 and c <= 57


cdef Py_ssize_t _resync(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    # Bytes to drop so the buffer starts at the next "8=FIX" after offset 0.  A partial "8=FI" at
    # the very end is kept: the rest of it may be in the next read.
    cdef Py_ssize_t i = 1, k
    cdef const uint8_t* q
    while i < n:
        q = <const uint8_t*>memchr(p + i, 56, n - i)   # '8'
        if q == NULL:
            return n
        i = q - p
        k = n - i
        if k > 5:
            k = 5
        if memcmp(q, FRAME_START, k) == 0:
            return i
        i += 1
    return n


cdef Py_ssize_t _find_checksum_tag(const uint8_t* p, Py_ssize_t start, Py_ssize_t limit) noexcept nogil:
    # Offset of the first "<SOH>10=" lying wholly in p[start:limit], or -1.
    cdef const uint8_t* q
    cdef Py_ssize_t i = start
    while i + 4 <= limit:
        q = <const uint8_t*>memchr(p + i, SOH, limit - 3 - i)
        if q == NULL:
            return -1
        i = q - p
        if p[i + 1] == 49 and p[i + 2] == 48 and p[i + 3] == 61:
            return i
        i += 1
    return -1


cdef inline FrameScanResult _garbled(const uint8_t* p, Py_ssize_t n, int reason) noexcept nogil:
    cdef FrameScanResult r
    r.status = FRAME_GARBLED
    r.reason = reason
    r.end = 0
    r.skip = _resync(p, n)
    return r


cdef inline FrameScanResult _need_more() noexcept nogil:
    cdef FrameScanResult r
    r.status = FRAME_NEED_MORE
    r.reason = 0
    r.end = 0
    r.skip = 0
    return r


cdef FrameScanResult scan_frame(const uint8_t* p, Py_ssize_t n, Py_ssize_t max_body_length) noexcept nogil:
    """Look for one frame at p[0]: complete, need more bytes, or garbled (with bytes to skip)."""
    cdef FrameScanResult r
    cdef Py_ssize_t i, k, digits, body_start, body_end, window_end, trailer
    cdef int64_t body_length
    cdef unsigned int total, checksum
    cdef uint8_t c
    if n <= 0:
        return _need_more()
    k = n if n < 5 else 5
    if memcmp(p, FRAME_START, k) != 0:
        return _garbled(p, n, GARBLED_NOT_FRAME_START)
    if n < 5:
        return _need_more()
    # BeginString: printable, no '=', ended by SOH within MAX_BEGIN_STRING bytes.
    i = 2
    while True:
        if i >= n:
            return _need_more()
        c = p[i]
        if c == SOH:
            break
        if c < 0x21 or c > 0x7e or c == 61 or i - 2 >= MAX_BEGIN_STRING:
            return _garbled(p, n, GARBLED_BAD_BEGIN_STRING)
        i += 1
    i += 1
    # "9=" then digits, bounded before we wait for the body.
    if i >= n:
        return _need_more()
    if p[i] != 57 or (i + 1 < n and p[i + 1] != 61):
        return _garbled(p, n, GARBLED_MISSING_BODY_LENGTH)
    if i + 1 >= n:
        return _need_more()
    i += 2
    body_length = 0
    digits = 0
    while True:
        if i >= n:
            return _need_more()
        c = p[i]
        if not _is_digit(c):
            break
        body_length = body_length * 10 + (c - 48)
        digits += 1
        if body_length > max_body_length:
            return _garbled(p, n, GARBLED_BODY_LENGTH_TOO_LARGE)
        if digits > MAX_LENGTH_DIGITS:
            return _garbled(p, n, GARBLED_BAD_BODY_LENGTH)
        i += 1
    # The smallest body is "35=X\x01".
    if c != SOH or digits == 0 or body_length < 5:
        return _garbled(p, n, GARBLED_BAD_BODY_LENGTH)
    body_start = i + 1
    k = n - body_start
    if k > 3:
        k = 3
    if memcmp(p + body_start, b"35=", k) != 0:
        return _garbled(p, n, GARBLED_MISSING_MSG_TYPE)
    body_end = body_start + <Py_ssize_t>body_length
    # QuickFIX's rule, which peers and the acceptance suite expect: the message ends at the first
    # "<SOH>10=" at or after the byte before where BodyLength points.  A wrong BodyLength thus
    # drops everything up to the next CheckSum (a too long one swallows the next message, as
    # on a QuickFIX acceptor).  The search is bounded so a peer cannot make us buffer forever.
    window_end = body_end - 1 + max_body_length + TRAILER_SEARCH
    k = _find_checksum_tag(p, body_end - 1, n if n < window_end + 4 else window_end + 4)
    if k < 0:
        if n >= window_end + 4:
            return _garbled(p, n, GARBLED_BODY_LENGTH_MISMATCH)
        return _need_more()
    trailer = k + 1                    # at "10="
    i = trailer + 3
    while True:
        if i >= n:
            return _need_more()
        if p[i] == SOH:
            break
        if i - (trailer + 3) >= MAX_CHECKSUM_TEXT:
            return _garbled(p, n, GARBLED_BAD_CHECKSUM_FIELD)
        i += 1
    r.end = i + 1
    r.status = FRAME_GARBLED
    r.skip = r.end
    if trailer != body_end:
        r.reason = GARBLED_BODY_LENGTH_MISMATCH
        r.end = 0
        return r
    if (i - trailer != 6 or not _is_digit(p[trailer + 3]) or not _is_digit(p[trailer + 4])
            or not _is_digit(p[trailer + 5])):
        r.reason = GARBLED_BAD_CHECKSUM_FIELD
        r.end = 0
        return r
    total = 0
    for k in range(body_end):
        total += p[k]
    checksum = (p[body_end + 3] - 48) * 100 + (p[body_end + 4] - 48) * 10 + (p[body_end + 5] - 48)
    if (total & 0xff) != checksum:
        # The frame boundaries are sound, only the content is damaged: drop exactly this frame.
        r.reason = GARBLED_CHECKSUM_MISMATCH
        r.end = 0
        return r
    r.status = FRAME_COMPLETE
    r.reason = 0
    r.skip = 0
    return r


cdef int _check_max_body_length(Py_ssize_t max_body_length) except -1:
    # Messages are addressed with 32-bit offsets once split; 5 is the size of "35=X<SOH>".
    if max_body_length < 5 or max_body_length > 0x7fff0000:
        raise ValueError(f"max_body_length must be between 5 and {0x7fff0000}, got {max_body_length}")
    return 0


cdef class FrameScan:
    """Result of :func:`find_frame`.

    ``status`` is FRAME_COMPLETE (the frame is ``data[start:end]``), FRAME_NEED_MORE (a frame
    may start at ``start`` but is not complete yet), or FRAME_GARBLED (``data[start:end]``, that
    is ``skip`` bytes, cannot be part of a frame and should be dropped; ``reason`` says why).
    """

    @property
    def reason(self):
        """Human-readable reason for a garbled result, or ``""``."""
        return _GARBLED_TEXT.get(self.reason_code, "")

    def __repr__(self):
        names = {FRAME_COMPLETE: "COMPLETE", FRAME_NEED_MORE: "NEED_MORE", FRAME_GARBLED: "GARBLED"}
        return (f"FrameScan({names[self.status]}, start={self.start}, end={self.end}, "
                f"skip={self.skip}, reason={self.reason!r})")


def find_frame(data, Py_ssize_t offset=0, Py_ssize_t max_body_length=DEFAULT_MAX_BODY_LENGTH):
    """Scan ``data`` (bytes, bytearray, memoryview) for one FIX frame starting exactly at ``offset``.

    Checks 8=BeginString, 9=BodyLength (digits, at most ``max_body_length``), 35= as the third
    field, that BodyLength lands exactly on ``10=NNN<SOH>`` and the CheckSum.  Never raises for
    bad content; returns a :class:`FrameScan`.
    """
    cdef Py_buffer view
    cdef FrameScanResult r
    cdef FrameScan out = FrameScan.__new__(FrameScan)
    _check_max_body_length(max_body_length)
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        if offset < 0 or offset > view.len:
            raise ValueError(f"offset {offset} outside the data (length {view.len})")
        r = scan_frame(<const uint8_t*>view.buf + offset, view.len - offset, max_body_length)
    finally:
        PyBuffer_Release(&view)
    out.status = r.status
    out.start = offset
    out.reason_code = r.reason
    if r.status == FRAME_COMPLETE:
        out.end = offset + r.end
    elif r.status == FRAME_GARBLED:
        out.skip = r.skip
        out.end = offset + r.skip
    else:
        out.end = offset
    return out


cdef class Garbled:
    """Bytes that the :class:`FrameReader` dropped because they do not form a valid frame.

    ``reason_code`` is one of the GARBLED_* constants, ``reason`` its text, ``data`` the bytes dropped.
    The session layer ignores these without advancing its incoming sequence number.
    """

    def __init__(self, int reason_code, bytes data):
        self.reason_code = reason_code
        self.data = data

    @property
    def reason(self):
        return _GARBLED_TEXT.get(self.reason_code, "")

    def __eq__(self, other):
        if not isinstance(other, Garbled):
            return NotImplemented
        return self.reason_code == (<Garbled>other).reason_code and self.data == (<Garbled>other).data

    def __hash__(self):
        return hash((self.reason_code, self.data))

    def __repr__(self):
        shown = self.data if len(self.data) <= 64 else self.data[:64] + b"..."
        return f"Garbled({self.reason!r}, {len(self.data)} bytes: {shown!r})"


cdef class FrameReader:
    """Stream framer: ``feed(bytes)``, then iterate to get complete frames (``bytes``) and
    :class:`Garbled` events, in stream order.  Iteration stops when more bytes are needed.

    The buffer holds at most the unread tail of what was fed: junk is dropped as soon as it is seen
    and a BodyLength above ``max_body_length`` is refused before its body is awaited, so a peer
    cannot make it grow without bound.  Each frame is copied once, out of the buffer, into its
    own ``bytes``; the buffer is compacted in place instead of being reallocated per read.
    """

    def __cinit__(self, Py_ssize_t max_body_length=DEFAULT_MAX_BODY_LENGTH):
        _check_max_body_length(max_body_length)
        self._max_body_length = max_body_length
        self._buf = <uint8_t*>malloc(READER_INITIAL_CAPACITY)
        if self._buf == NULL:
            raise MemoryError()
        self._cap = READER_INITIAL_CAPACITY
        self._head = 0
        self._tail = 0

    def __dealloc__(self):
        free(self._buf)

    @property
    def max_body_length(self):
        return self._max_body_length

    @property
    def buffered(self):
        """Bytes fed but not yet returned as a frame or dropped as garbled."""
        return self._tail - self._head

    @property
    def capacity(self):
        """Current size of the internal buffer (for memory checks)."""
        return self._cap

    cdef int _reserve(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t live = self._tail - self._head, need, cap
        cdef uint8_t* grown
        if self._tail + extra <= self._cap:
            return 0
        if self._head > 0:
            memmove(self._buf, self._buf + self._head, live)
            self._head = 0
            self._tail = live
        need = live + extra
        if need <= self._cap:
            return 0
        cap = self._cap * 2
        if cap < need:
            cap = need
        grown = <uint8_t*>realloc(self._buf, cap)
        if grown == NULL:
            raise MemoryError()
        self._buf = grown
        self._cap = cap
        return 0

    def feed(self, data):
        """Append received bytes (bytes, bytearray or memoryview)."""
        cdef Py_buffer view
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            if self._head == self._tail:
                self._head = 0
                self._tail = 0
            self._reserve(view.len)
            memcpy(self._buf + self._tail, view.buf, view.len)
            self._tail += view.len
        finally:
            PyBuffer_Release(&view)

    def clear(self):
        """Drop everything buffered (for a new connection)."""
        self._head = 0
        self._tail = 0

    cpdef object next_event(self):
        """The next complete frame (``bytes``), a :class:`Garbled` event, or ``None`` when more
        bytes are needed."""
        cdef FrameScanResult r
        cdef object out
        cdef uint8_t* shrunk
        if self._head == self._tail:
            return None
        r = scan_frame(self._buf + self._head, self._tail - self._head, self._max_body_length)
        if r.status == FRAME_COMPLETE:
            out = PyBytes_FromStringAndSize(<char*>self._buf + self._head, r.end)
            self._head += r.end
        elif r.status == FRAME_GARBLED:
            out = Garbled(r.reason, PyBytes_FromStringAndSize(<char*>self._buf + self._head, r.skip))
            self._head += r.skip
        else:
            return None
        if self._head == self._tail:
            self._head = 0
            self._tail = 0
            # Give back the memory a single large message needed.
            if self._cap > READER_SHRINK_ABOVE:
                shrunk = <uint8_t*>realloc(self._buf, READER_INITIAL_CAPACITY)
                if shrunk != NULL:
                    self._buf = shrunk
                    self._cap = READER_INITIAL_CAPACITY
        return out

    def __iter__(self):
        return self

    def __next__(self):
        out = self.next_event()
        if out is None:
            raise StopIteration
        return out


# =============================================================================================
# Field splitting
# =============================================================================================

# Length-prefixed data fields: the length field gives the byte count of the data field that
# follows it, whose value may contain SOH.  (FIX 4.2 / 4.4 tags; length tag -> data tag.)
DATA_FIELDS = {
    90: 91,      # SecureDataLen -> SecureData
    93: 89,      # SignatureLength -> Signature
    95: 96,      # RawDataLength -> RawData
    212: 213,    # XmlDataLen -> XmlData
    348: 349,    # EncodedIssuerLen -> EncodedIssuer
    350: 351,    # EncodedSecurityDescLen -> EncodedSecurityDesc
    352: 353,    # EncodedListExecInstLen -> EncodedListExecInst
    354: 355,    # EncodedTextLen -> EncodedText
    356: 357,    # EncodedSubjectLen -> EncodedSubject
    358: 359,    # EncodedHeadlineLen -> EncodedHeadline
    360: 361,    # EncodedAllocTextLen -> EncodedAllocText
    362: 363,    # EncodedUnderlyingIssuerLen -> EncodedUnderlyingIssuer
    364: 365,    # EncodedUnderlyingSecurityDescLen -> EncodedUnderlyingSecurityDesc
    445: 446,    # EncodedListStatusTextLen -> EncodedListStatusText
    618: 619,    # EncodedLegIssuerLen -> EncodedLegIssuer
    621: 622,    # EncodedLegSecurityDescLen -> EncodedLegSecurityDesc
}

cdef int32_t _DATA_TAG_OF[DATA_TAG_TABLE_SIZE]      # length tag -> data tag
cdef int32_t _LENGTH_TAG_OF[DATA_TAG_TABLE_SIZE]    # data tag -> length tag
for _length_tag, _data_tag in DATA_FIELDS.items():
    _DATA_TAG_OF[_length_tag] = _data_tag
    _LENGTH_TAG_OF[_data_tag] = _length_tag


cdef inline int32_t _data_tag_for(int32_t tag) noexcept nogil:
    if 0 <= tag < DATA_TAG_TABLE_SIZE:
        return _DATA_TAG_OF[tag]
    return 0


cdef inline int32_t _length_tag_for(int32_t tag) noexcept nogil:
    if 0 <= tag < DATA_TAG_TABLE_SIZE:
        return _LENGTH_TAG_OF[tag]
    return 0


_FIELD_ERROR_TEXT = {
    FIELD_OK: "",
    FIELD_EMPTY_TAG: "empty tag before '='",
    FIELD_TAG_NOT_NUMERIC: "tag is not a number",
    FIELD_TAG_ZERO: "tag 0 is not a valid tag",
    FIELD_TAG_TOO_LARGE: "tag number is too large",
    FIELD_MISSING_EQUALS: "field has no '=' between tag and value",
    FIELD_UNTERMINATED: "field is not terminated by SOH",
    FIELD_BAD_DATA_LENGTH: "length of a data field is not a decimal number within the message",
    FIELD_DATA_LENGTH_MISMATCH: "data field is not followed by SOH at the declared length",
    FIELD_BAD_VALUE: "value has the wrong format for its field",
    FIELD_DUPLICATE_TAG: "tag appears more than once",
    FIELD_TAG_NEGATIVE: "negative tag number",
}


class FieldError(ValueError):
    """A message whose fields could not be split or decoded; ``code`` is a FIELD_* constant."""

    def __init__(self, code, tag, position, message):
        super().__init__(message)
        self.code = code
        self.tag = tag
        self.position = position


class DecimalFormatError(ValueError):
    """A value is not a FIX decimal ([-]digits[.digits]) or does not fit in 64 bits."""


class OffGridError(ValueError):
    """A decimal value is not a whole number of ticks (or has more decimals than the scale)."""


cdef enum:
    DEC_OK = 0
    DEC_FORMAT = 1
    DEC_OVERFLOW = 2
    DEC_OFF_GRID = 3


cdef int64_t[19] _POW10
_POW10[0] = 1
for _i in range(1, 19):
    _POW10[_i] = _POW10[_i - 1] * 10


cdef int _parse_units(const uint8_t* p, Py_ssize_t n, int scale, int64_t* out) noexcept nogil:
    # Exact fixed-point parse of "[-]digits[.digits]" into value * 10**scale.
    cdef Py_ssize_t i = 0
    cdef bint negative = False, seen_digit = False, seen_dot = False, off_grid = False, overflow = False
    cdef int frac = 0
    cdef uint64_t acc = 0, limit = <uint64_t>INT64_MAX
    cdef uint8_t c
    if n > 0 and p[0] == 45:
        negative = True
        i = 1
    # The whole text is checked before deciding between "off grid" and "too large".
    while i < n:
        c = p[i]
        if _is_digit(c):
            seen_digit = True
            if seen_dot:
                if frac >= scale:
                    if c != 48:
                        off_grid = True
                    i += 1
                    continue
                frac += 1
            if acc > (limit - (c - 48)) // 10:
                overflow = True
            else:
                acc = acc * 10 + (c - 48)
        elif c == 46 and not seen_dot:
            seen_dot = True
        else:
            return DEC_FORMAT
        i += 1
    if not seen_digit:
        return DEC_FORMAT
    if overflow:
        return DEC_OVERFLOW
    if off_grid:
        return DEC_OFF_GRID
    while frac < scale:
        if acc > limit // 10:
            return DEC_OVERFLOW
        acc *= 10
        frac += 1
    out[0] = -<int64_t>acc if negative else <int64_t>acc
    return DEC_OK


cdef bint _parse_uint(const uint8_t* p, Py_ssize_t n, int64_t* out) noexcept nogil:
    # Digits only (no sign, no point), at most 18 of them so int64 cannot overflow.
    cdef Py_ssize_t i
    cdef int64_t v = 0
    if n == 0 or n > 18:
        return False
    for i in range(n):
        if not _is_digit(p[i]):
            return False
        v = v * 10 + (p[i] - 48)
    out[0] = v
    return True


cdef bint _is_decimal(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i = 0
    cdef bint seen_digit = False, seen_dot = False
    if n > 0 and p[0] == 45:
        i = 1
    while i < n:
        if _is_digit(p[i]):
            seen_digit = True
        elif p[i] == 46 and not seen_dot:
            seen_dot = True
        else:
            return False
        i += 1
    return seen_digit


cdef int64_t _to_ticks_c(const uint8_t* p, Py_ssize_t n, int64_t tick_units, int scale, object original) except? -1:
    cdef int64_t units = 0
    cdef int rc
    if scale < 0 or scale > 18:
        raise ValueError(f"scale must be between 0 and 18, got {scale}")
    if tick_units <= 0:
        raise ValueError(f"tick_units must be positive, got {tick_units}")
    rc = _parse_units(p, n, scale, &units)
    if rc != DEC_OK and original is None:
        # Built only on the error path: the hot path passes None instead of a copy of the value.
        original = PyBytes_FromStringAndSize(<const char*>p, n)
    if rc == DEC_FORMAT:
        raise DecimalFormatError(f"{original!r} is not a FIX decimal")
    if rc == DEC_OVERFLOW:
        raise DecimalFormatError(f"{original!r} does not fit in 64 bits at scale {scale}")
    if rc == DEC_OFF_GRID or units % tick_units != 0:
        if original is None:
            original = PyBytes_FromStringAndSize(<const char*>p, n)
        raise OffGridError(f"{original!r} is not a multiple of the tick {tick_units}e-{scale}")
    return units // tick_units


cdef inline const uint8_t* _text_ptr(object value, Py_ssize_t* n) except NULL:
    if PyBytes_CheckExact(value):
        n[0] = PyBytes_GET_SIZE(value)
        return <const uint8_t*>PyBytes_AS_STRING(value)
    if isinstance(value, str):
        return <const uint8_t*>PyUnicode_AsUTF8AndSize(value, n)
    if isinstance(value, bytes):
        n[0] = PyBytes_GET_SIZE(value)
        return <const uint8_t*>PyBytes_AS_STRING(value)
    raise TypeError(f"expected str or bytes, got {type(value).__name__}")


def to_ticks(value, int64_t tick_units, int scale):
    """Exact price -> integer ticks, no floats.

    ``value`` is a FIX decimal (str or bytes); the tick size is ``tick_units * 10**-scale``
    (0.01 is ``(1, 2)``, 0.25 is ``(25, 2)``).  Raises :class:`DecimalFormatError` for a
    malformed or too large value and :class:`OffGridError` for a price between ticks.
    """
    cdef Py_ssize_t n
    cdef const uint8_t* p = _text_ptr(value, &n)
    return _to_ticks_c(p, n, tick_units, scale, value)


def to_units(value, int scale):
    """Exact decimal -> integer ``value * 10**scale`` (``to_ticks(value, 1, scale)``)."""
    cdef Py_ssize_t n
    cdef const uint8_t* p = _text_ptr(value, &n)
    return _to_ticks_c(p, n, 1, scale, value)


# --- UTC timestamps -------------------------------------------------------------------------

cdef int64_t _days_from_civil(int64_t y, int64_t m, int64_t d) noexcept nogil:
    # Howard Hinnant's algorithm: days since 1970-01-01 for a proleptic Gregorian date.
    cdef int64_t era, yoe, doy, doe
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef void _civil_from_days(int64_t z, int64_t* y, int64_t* m, int64_t* d) noexcept nogil:
    cdef int64_t era, doe, yoe, doy, mp
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d[0] = doy - (153 * mp + 2) // 5 + 1
    m[0] = mp + 3 if mp < 10 else mp - 9
    y[0] = yoe + era * 400 + (1 if m[0] <= 2 else 0)


cdef inline int _digits2(const uint8_t* p) noexcept nogil:
    if not _is_digit(p[0]) or not _is_digit(p[1]):
        return -1
    return (p[0] - 48) * 10 + (p[1] - 48)


cdef inline bint _timestamp_fields(const uint8_t* p, int64_t* year, int* mo, int* dd, int* hh,
                                   int* mi, int* ss) noexcept nogil:
    # The seven digit pairs and three separators of "YYYYMMDD-HH:MM:SS" (p has >= 17 bytes);
    # False when any is not one. Range checks differ per caller, so they stay with the caller.
    cdef int c1 = _digits2(p), c2 = _digits2(p + 2)
    mo[0] = _digits2(p + 4)
    dd[0] = _digits2(p + 6)
    hh[0] = _digits2(p + 9)
    mi[0] = _digits2(p + 12)
    ss[0] = _digits2(p + 15)
    if c1 < 0 or c2 < 0 or mo[0] < 0 or dd[0] < 0 or hh[0] < 0 or mi[0] < 0 or ss[0] < 0:
        return False
    if p[8] != 45 or p[11] != 58 or p[14] != 58:
        return False
    year[0] = c1 * 100 + c2
    return True


cdef int _days_in_month(int64_t y, int64_t m) noexcept nogil:
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    if m == 4 or m == 6 or m == 9 or m == 11:
        return 30
    return 31


cdef bint _parse_timestamp(const uint8_t* p, Py_ssize_t n, int64_t* out) noexcept nogil:
    # YYYYMMDD-HH:MM:SS[.sss|.ssssss|.sssssssss] (UTCTimestamp) -> ns since the epoch.
    cdef int mo, dd, hh, mi, ss, k
    cdef int64_t year, frac = 0
    if n != 17 and n != 21 and n != 24 and n != 27:
        return False
    if not _timestamp_fields(p, &year, &mo, &dd, &hh, &mi, &ss):
        return False
    if year < 1970 or mo < 1 or mo > 12 or dd < 1 or dd > _days_in_month(year, mo):
        return False
    if hh > 23 or mi > 59 or ss > 60:
        return False
    if n > 17:
        if p[17] != 46:
            return False
        for k in range(18, n):
            if not _is_digit(p[k]):
                return False
            frac = frac * 10 + (p[k] - 48)
        frac *= _POW10[27 - n]
    out[0] = ((_days_from_civil(year, mo, dd) * 86400 + hh * 3600 + mi * 60 + ss) * 1000000000) + frac
    return True


def parse_utc_timestamp(value):
    """FIX UTCTimestamp (``YYYYMMDD-HH:MM:SS`` with optional .sss/.ssssss/.sssssssss) -> int ns
    since the Unix epoch.  Raises ValueError for anything else."""
    cdef Py_ssize_t n
    cdef const uint8_t* p = _text_ptr(value, &n)
    cdef int64_t ns = 0
    if not _parse_timestamp(p, n, &ns):
        raise ValueError(f"{value!r} is not a FIX UTCTimestamp (YYYYMMDD-HH:MM:SS[.sss])")
    return ns


def parse_sending_time(value):
    """``messages.parse_timestamp`` in C: a UTCTimestamp ``YYYYMMDD-HH:MM:SS[.f{1,9}]`` (bytes)
    to epoch seconds as a float, or None when it is not one. The same float, bit for bit, as
    the reference's datetime arithmetic gives (seconds 60-99 read as 59, and 60 then adds one
    second, as ``min(s, 59)`` + leap second there); any other type is a TypeError."""
    cdef const uint8_t* p
    cdef Py_ssize_t n, i
    cdef int mo, d, h, mi, sec
    cdef int64_t y, secs, frac = 0, scale = 1
    cdef double seconds
    if not PyBytes_Check(value):
        raise TypeError(f"a timestamp is bytes, got {type(value).__name__}")
    p = <const uint8_t*>PyBytes_AS_STRING(value)
    n = PyBytes_GET_SIZE(value)
    if n < 17 or n > 27 or not _timestamp_fields(p, &y, &mo, &d, &h, &mi, &sec):
        return None
    if y < 1 or mo < 1 or mo > 12 or d < 1 or d > _days_in_month(y, mo) or h > 23 or mi > 59:
        return None
    secs = _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + (sec if sec < 59 else 59)
    seconds = <double>secs + (1.0 if sec == 60 else 0.0)
    if n == 17:
        return seconds
    if n < 19 or p[17] != 46:
        return None
    for i in range(18, n):
        if not _is_digit(p[i]):
            return None
        frac = frac * 10 + (p[i] - 48)
        scale *= 10
    # int / int in Python is the correctly rounded quotient; both are exact doubles here.
    return seconds + <double>frac / <double>scale


cdef Py_ssize_t _format_timestamp(char* out, int64_t ns, int precision) noexcept nogil:
    # Writes 17 + (precision and precision + 1) bytes; the caller checked ns and precision.
    _format_seconds(out, ns // 1000000000)
    return 17 + _format_fraction(out + 17, ns % 1000000000, precision)


cdef void _format_seconds(char* out, int64_t secs) noexcept nogil:
    # "YYYYMMDD-HH:MM:SS" (17 bytes) of whole seconds since the epoch, 0 <= secs < year 10000.
    cdef int64_t days = secs // 86400, sod = secs % 86400
    cdef int64_t y, m, d
    _civil_from_days(days, &y, &m, &d)
    out[0] = <char>(48 + y // 1000)
    out[1] = <char>(48 + (y // 100) % 10)
    out[2] = <char>(48 + (y // 10) % 10)
    out[3] = <char>(48 + y % 10)
    out[4] = <char>(48 + m // 10)
    out[5] = <char>(48 + m % 10)
    out[6] = <char>(48 + d // 10)
    out[7] = <char>(48 + d % 10)
    out[8] = 45
    out[9] = <char>(48 + (sod // 3600) // 10)
    out[10] = <char>(48 + (sod // 3600) % 10)
    out[11] = 58
    out[12] = <char>(48 + ((sod // 60) % 60) // 10)
    out[13] = <char>(48 + ((sod // 60) % 60) % 10)
    out[14] = 58
    out[15] = <char>(48 + (sod % 60) // 10)
    out[16] = <char>(48 + (sod % 60) % 10)


cdef inline Py_ssize_t _format_fraction(char* out, int64_t frac_ns, int precision) noexcept nogil:
    # ".sss" / ".ssssss" / ".sssssssss" (truncated) or nothing for precision 0.
    cdef Py_ssize_t i
    if precision == 0:
        return 0
    out[0] = 46
    if precision == 3:
        frac_ns //= 1000000
    elif precision == 6:
        frac_ns //= 1000
    for i in range(precision, 0, -1):
        out[i] = <char>(48 + frac_ns % 10)
        frac_ns //= 10
    return precision + 1


cdef int _check_timestamp_args(int64_t ns, int precision) except -1:
    if precision != 0 and precision != 3 and precision != 6 and precision != 9:
        raise ValueError(f"timestamp precision must be 0, 3, 6 or 9 digits, got {precision}")
    if ns < 0:
        # (int64 ns reach only the year 2262, so there is no upper bound to check.)
        raise ValueError(f"timestamp {ns} ns is before 1970")
    return 0


def format_utc_timestamp(int64_t ns, int precision=3):
    """Integer ns since the epoch -> FIX UTCTimestamp bytes, truncated to ``precision`` digits
    (0, 3, 6 or 9)."""
    cdef char out[32]
    _check_timestamp_args(ns, precision)
    return PyBytes_FromStringAndSize(out, _format_timestamp(out, ns, precision))


# --- Fields ---------------------------------------------------------------------------------

cdef class Fields:
    """The fields of one FIX message as (tag, value span) pairs pointing into the original data.

    Nothing is copied by splitting; ``bytes`` are created only for the values you read.  Bad
    input does not raise: ``error`` is a FIELD_* code (0 when the split succeeded),
    ``error_position`` the offset of the offending field and ``error_tag`` its tag when known;
    the fields before it remain readable.  Iterating gives ``(tag, value_bytes)``.
    """

    def __cinit__(self):
        self._spans = self._inline_spans
        self._cap = INLINE_FIELDS
        self._count = 0
        self._complete = True
        self._has_view = False
        self._data = None

    def __dealloc__(self):
        self._release()
        if self._spans != self._inline_spans:
            free(self._spans)

    cdef void _release(self) noexcept:
        if self._has_view:
            PyBuffer_Release(&self._view)
            self._has_view = False
        self._data = None
        self._ptr = NULL

    cdef int _attach(self, object data, Py_ssize_t start, Py_ssize_t end) except -1:
        cdef Py_ssize_t size
        self._release()
        if PyBytes_CheckExact(data):
            self._ptr = <const uint8_t*>PyBytes_AS_STRING(data)
            size = PyBytes_GET_SIZE(data)
        else:
            PyObject_GetBuffer(data, &self._view, PyBUF_SIMPLE)
            self._has_view = True
            self._ptr = <const uint8_t*>self._view.buf
            size = self._view.len
        self._data = data
        if end < 0:
            end = size
        if start < 0 or start > end or end > size:
            self._release()
            raise ValueError(f"span [{start}, {end}) is outside the data (length {size})")
        if size > 0x7fffffff:
            self._release()
            raise ValueError(f"data of {size} bytes is too large for a FIX message")
        self._start = start
        self._end = end
        self._count = 0
        self._complete = True
        self._error = FIELD_OK
        self._error_tag = 0
        self._error_position = -1
        return 0

    cdef void _fail(self, int error, int tag, Py_ssize_t position) noexcept:
        # A readable field with a bad tag or value: the first one is reported.
        if self._error == FIELD_OK:
            self._error = error
            self._error_tag = tag
            self._error_position = position

    cdef void _broken(self, int error, int tag, Py_ssize_t position) noexcept:
        # The message cannot be split further: this outranks any earlier field problem.
        self._complete = False
        self._error = error
        self._error_tag = tag
        self._error_position = position

    cdef int _push(self, int32_t tag, Py_ssize_t start, Py_ssize_t end) except -1:
        cdef FieldSpan* grown
        cdef Py_ssize_t cap
        if self._count == self._cap:
            cap = self._cap * 4
            if self._spans == self._inline_spans:
                grown = <FieldSpan*>malloc(cap * sizeof(FieldSpan))
                if grown != NULL:
                    memcpy(grown, self._inline_spans, self._count * sizeof(FieldSpan))
            else:
                grown = <FieldSpan*>realloc(self._spans, cap * sizeof(FieldSpan))
            if grown == NULL:
                raise MemoryError()
            self._spans = grown
            self._cap = cap
        self._spans[self._count].tag = tag
        self._spans[self._count].start = <int32_t>start
        self._spans[self._count].end = <int32_t>end
        self._count += 1
        return 0

    cdef int _split(self) except -1:
        # Returns 1 when every byte was split into fields, 0 when the structure broke (recorded
        # with _broken).  Tag 0 and negative tags are well-formed fields with an invalid number:
        # they are kept and flagged (_fail) so the session can answer with a Reject naming them.
        cdef const uint8_t* p = self._ptr
        cdef Py_ssize_t i = self._start, end = self._end, tag_start, value_start, value_end, k
        cdef int32_t tag, pending_tag = 0, data_tag
        cdef int64_t pending_length = 0, length
        cdef uint8_t c
        cdef bint negative
        while i < end:
            tag_start = i
            tag = 0
            negative = p[i] == 45
            if negative:
                i += 1
            while i < end:
                c = p[i]
                if c == 61:
                    break
                if not _is_digit(c):
                    self._broken(FIELD_MISSING_EQUALS if c == SOH else FIELD_TAG_NOT_NUMERIC, 0, tag_start)
                    return 0
                if tag > MAX_TAG // 10:
                    self._broken(FIELD_TAG_TOO_LARGE, 0, tag_start)
                    return 0
                tag = tag * 10 + (c - 48)
                i += 1
            if i >= end:
                self._broken(FIELD_MISSING_EQUALS, 0, tag_start)
                return 0
            if i == tag_start:
                self._broken(FIELD_EMPTY_TAG, 0, tag_start)
                return 0
            if i == tag_start + 1 and negative:
                self._broken(FIELD_TAG_NOT_NUMERIC, 0, tag_start)
                return 0
            if tag == 0:
                self._fail(FIELD_TAG_ZERO, 0, tag_start)
            elif negative:
                tag = -tag
                self._fail(FIELD_TAG_NEGATIVE, tag, tag_start)
            value_start = i + 1
            if pending_tag != 0 and tag == pending_tag:
                value_end = value_start + pending_length
                if value_end >= end or p[value_end] != SOH:
                    self._broken(FIELD_DATA_LENGTH_MISMATCH, tag, tag_start)
                    return 0
            else:
                # Values are short: a plain loop beats a memchr call here.
                value_end = value_start
                while value_end < end and p[value_end] != SOH:
                    value_end += 1
                if value_end == end:
                    self._broken(FIELD_UNTERMINATED, tag, tag_start)
                    return 0
            if self._count < self._cap:
                self._spans[self._count].tag = tag
                self._spans[self._count].start = <int32_t>value_start
                self._spans[self._count].end = <int32_t>value_end
                self._count += 1
            else:
                self._push(tag, value_start, value_end)
            pending_tag = 0
            data_tag = _data_tag_for(tag)
            if data_tag != 0:
                length = 0
                if value_end == value_start or value_end - value_start > 10:
                    self._broken(FIELD_BAD_DATA_LENGTH, tag, tag_start)
                    return 0
                for k in range(value_start, value_end):
                    if not _is_digit(p[k]):
                        self._broken(FIELD_BAD_DATA_LENGTH, tag, tag_start)
                        return 0
                    length = length * 10 + (p[k] - 48)
                pending_tag = data_tag
                pending_length = length
            i = value_end + 1
        return 1

    cdef Py_ssize_t _index(self, int tag) noexcept:
        cdef Py_ssize_t i
        for i in range(self._count):
            if self._spans[i].tag == tag:
                return i
        return -1

    cdef bytes _value(self, Py_ssize_t index):
        cdef FieldSpan* s = &self._spans[index]
        return PyBytes_FromStringAndSize(<const char*>self._ptr + s.start, s.end - s.start)

    def parse(self, data, Py_ssize_t start=0, Py_ssize_t end=-1):
        """Split ``data[start:end]`` into this object, replacing what it held (reuse saves an
        allocation on hot paths).  Returns ``self.ok``."""
        self._attach(data, start, end)
        return self._split() == 1

    def release(self):
        """Drop the reference to the data (unlocks a bytearray for resizing)."""
        self._release()
        self._count = 0

    @property
    def data(self):
        """The object the spans point into."""
        return self._data

    @property
    def ok(self):
        """No problem at all: every field split, every tag valid (and, for OrderMessage, every
        typed value well formed)."""
        return self._error == FIELD_OK

    @property
    def complete(self):
        """Every byte was split into fields.  False means the structure is broken (a garbled
        message to ignore); True with ``error`` set means readable fields with a bad tag or value
        (tag 0, negative tag, wrong format, duplicate), which the session answers with a Reject."""
        return self._complete

    @property
    def error(self):
        """FIELD_* code of the first problem found, 0 when none."""
        return self._error

    @property
    def error_tag(self):
        """Tag of the field in error when it could be read, else 0."""
        return self._error_tag

    @property
    def error_position(self):
        """Offset in ``data`` of the field in error, -1 when none."""
        return self._error_position

    @property
    def error_reason(self):
        return _FIELD_ERROR_TEXT.get(self._error, "")

    def raise_for_error(self):
        """Raise :class:`FieldError` when ``error`` is set (for callers that prefer exceptions)."""
        if self._error != FIELD_OK:
            where = f" (tag {self._error_tag})" if self._error_tag else ""
            raise FieldError(self._error, self._error_tag, self._error_position,
                             f"{_FIELD_ERROR_TEXT[self._error]}{where} at offset {self._error_position}")

    def __len__(self):
        return self._count

    def __iter__(self):
        cdef Py_ssize_t i
        for i in range(self._count):
            yield (self._spans[i].tag, self._value(i))

    def pairs(self):
        """All fields as a list of ``(tag, value_bytes)``."""
        cdef Py_ssize_t i
        return [(self._spans[i].tag, self._value(i)) for i in range(self._count)]

    def tags(self):
        """The tags, in message order."""
        cdef Py_ssize_t i
        return [self._spans[i].tag for i in range(self._count)]

    def __contains__(self, int tag):
        return self._index(tag) >= 0

    def get(self, int tag, default=None):
        """Value (bytes) of the first field with ``tag``, or ``default``."""
        cdef Py_ssize_t i = self._index(tag)
        return default if i < 0 else self._value(i)

    def get_all(self, int tag):
        """Values (bytes) of every field with ``tag``, in order (repeating groups)."""
        cdef Py_ssize_t i
        return [self._value(i) for i in range(self._count) if self._spans[i].tag == tag]

    def find(self, int tag, Py_ssize_t start_index=0):
        """Index of the first field with ``tag`` at or after ``start_index``, or -1."""
        cdef Py_ssize_t i
        for i in range(max(start_index, 0), self._count):
            if self._spans[i].tag == tag:
                return i
        return -1

    def tag_at(self, Py_ssize_t index):
        self._check_index(index)
        return self._spans[index].tag

    def value_at(self, Py_ssize_t index):
        self._check_index(index)
        return self._value(index)

    def span_at(self, Py_ssize_t index):
        """``(start, end)`` offsets of the value of field ``index`` in ``data``."""
        self._check_index(index)
        return (self._spans[index].start, self._spans[index].end)

    cdef int _check_index(self, Py_ssize_t index) except -1:
        if index < 0 or index >= self._count:
            raise IndexError(f"field index {index} out of range (0..{self._count - 1})")
        return 0

    def get_int(self, int tag, default=None):
        """Value of ``tag`` as an int (``[-]digits``), or ``default`` when absent; ValueError
        when it is not an integer."""
        cdef Py_ssize_t i = self._index(tag)
        cdef FieldSpan* s
        cdef Py_ssize_t k
        if i < 0:
            return default
        s = &self._spans[i]
        for k in range(s.start, s.end):
            if self._ptr[k] == 46:
                raise ValueError(f"tag {tag}: {self._value(i)!r} is not an integer")
        try:
            return _to_ticks_c(self._ptr + s.start, s.end - s.start, 1, 0, self._value(i))
        except ValueError:
            raise ValueError(f"tag {tag}: {self._value(i)!r} is not an integer") from None

    def get_ticks(self, int tag, int64_t tick_units, int scale, default=None):
        """Value of ``tag`` as integer ticks (see :func:`to_ticks`), or ``default`` when absent."""
        cdef Py_ssize_t i = self._index(tag)
        cdef FieldSpan* s
        if i < 0:
            return default
        s = &self._spans[i]
        return _to_ticks_c(self._ptr + s.start, s.end - s.start, tick_units, scale, None)

    def get_units(self, int tag, int scale, default=None):
        """Value of ``tag`` as ``value * 10**scale`` exactly, or ``default`` when absent."""
        return self.get_ticks(tag, 1, scale, default)

    def __repr__(self):
        shown = "|".join(f"{t}={v.decode('latin-1')}" for t, v in self.pairs())
        err = f", error={self.error_reason!r}" if self._error else ""
        return f"{type(self).__name__}({shown}{err})"


def split_fields(data, Py_ssize_t start=0, Py_ssize_t end=-1):
    """Split ``data[start:end]`` (bytes, bytearray, memoryview) into :class:`Fields` without
    copying.  Never raises for bad content: check ``.ok`` / ``.error``."""
    cdef Fields f = Fields.__new__(Fields)
    f._attach(data, start, end)
    f._split()
    return f


cdef Py_ssize_t _split_whole(Fields f, raw) except -2:
    """Split ``raw`` into ``f``: its field count, or -1 when the codec does not split it cleanly
    (a field error, or CheckSum (10) missing, repeated or not last): what
    :func:`split_message` and :func:`split_message_lazy` refuse."""
    cdef Py_ssize_t i, n
    f._attach(raw, 0, -1)
    f._split()
    n = f._count
    if f._error != FIELD_OK:
        return -1
    for i in range(n - 1):
        if f._spans[i].tag == 10:
            return -1
    if n and f._spans[n - 1].tag != 10:
        return -1
    return n


def split_message(raw):
    """``(fields, first)`` of one framed message, in one pass: the ``(tag, value)`` list in wire
    order and the ``{tag: first value}`` dict that ``messages.Message`` keeps (what
    ``split_fields(raw).pairs()`` and ``first_values`` give, without the second walk). None when
    the codec does not split it cleanly: a field error (see :class:`Fields`), or CheckSum (10)
    missing, repeated or not last; the reference splitter judges those (``reader.py``)."""
    cdef Fields f = Fields.__new__(Fields)
    cdef Py_ssize_t i, n
    cdef list pairs
    cdef dict first
    cdef object tag, value
    n = _split_whole(f, raw)
    if n < 0:
        return None
    pairs = []
    first = {}
    for i in range(n):
        tag = f._spans[i].tag
        value = f._value(i)
        pairs.append((tag, value))
        first.setdefault(tag, value)
    return pairs, first


# --- Typed order messages -------------------------------------------------------------------

# Tag -> typed slot of OrderMessage (-1: not typed); every typed tag is below SLOT_TABLE_SIZE.
cdef enum:
    SLOT_TABLE_SIZE = 512

cdef signed char _SLOT_OF[SLOT_TABLE_SIZE]
memset(_SLOT_OF, 0xff, sizeof(_SLOT_OF))
_SLOT_OF[8] = S_BEGIN_STRING
_SLOT_OF[35] = S_MSG_TYPE
_SLOT_OF[34] = S_MSG_SEQ_NUM
_SLOT_OF[49] = S_SENDER_COMP_ID
_SLOT_OF[56] = S_TARGET_COMP_ID
_SLOT_OF[52] = S_SENDING_TIME
_SLOT_OF[43] = S_POSS_DUP
_SLOT_OF[97] = S_POSS_RESEND
_SLOT_OF[122] = S_ORIG_SENDING_TIME
_SLOT_OF[50] = S_SENDER_SUB_ID
_SLOT_OF[57] = S_TARGET_SUB_ID
_SLOT_OF[115] = S_ON_BEHALF_OF
_SLOT_OF[128] = S_DELIVER_TO
_SLOT_OF[11] = S_CL_ORD_ID
_SLOT_OF[41] = S_ORIG_CL_ORD_ID
_SLOT_OF[37] = S_ORDER_ID
_SLOT_OF[1] = S_ACCOUNT
_SLOT_OF[55] = S_SYMBOL
_SLOT_OF[48] = S_SECURITY_ID
_SLOT_OF[22] = S_SECURITY_ID_SOURCE
_SLOT_OF[207] = S_SECURITY_EXCHANGE
_SLOT_OF[167] = S_SECURITY_TYPE
_SLOT_OF[200] = S_MATURITY_MONTH_YEAR
_SLOT_OF[202] = S_STRIKE_PRICE
_SLOT_OF[201] = S_PUT_OR_CALL
_SLOT_OF[15] = S_CURRENCY
_SLOT_OF[54] = S_SIDE
_SLOT_OF[38] = S_ORDER_QTY
_SLOT_OF[40] = S_ORD_TYPE
_SLOT_OF[44] = S_PRICE
_SLOT_OF[99] = S_STOP_PX
_SLOT_OF[59] = S_TIME_IN_FORCE
_SLOT_OF[126] = S_EXPIRE_TIME
_SLOT_OF[432] = S_EXPIRE_DATE
_SLOT_OF[111] = S_MAX_FLOOR
_SLOT_OF[110] = S_MIN_QTY
_SLOT_OF[18] = S_EXEC_INST
_SLOT_OF[21] = S_HANDL_INST
_SLOT_OF[100] = S_EX_DESTINATION
_SLOT_OF[60] = S_TRANSACT_TIME
_SLOT_OF[58] = S_TEXT


cdef inline int _slot_for(int32_t tag) noexcept nogil:
    if 0 <= tag < SLOT_TABLE_SIZE:
        return _SLOT_OF[tag]
    return -1


cdef class OrderMessage(Fields):
    """A split message with the fields the OMS needs for NewOrderSingle (D), OrderCancelRequest
    (F) and OrderCancelReplaceRequest (G) located and checked, built by :func:`decode_order`.

    Text fields are ``str`` (latin-1, so they round-trip byte for byte) or ``None`` when absent;
    prices and quantities are exact decimal strings, with ``*_ticks`` / ``*_units`` helpers for
    integers; timestamps are strings with ``*_ns`` integers beside them.  A value of the wrong
    format sets ``error`` to FIELD_BAD_VALUE and ``error_tag`` to its tag, a repeated typed tag
    FIELD_DUPLICATE_TAG; the message is still readable.
    """

    def __cinit__(self):
        memset(self._slots, 0xff, sizeof(self._slots))     # every slot -1: absent

    cdef int _decode(self) except -1:
        cdef Py_ssize_t i, n
        cdef int slot, k
        cdef FieldSpan* s
        cdef const uint8_t* p = self._ptr
        cdef int64_t v
        cdef int[4] char_slots = [S_SIDE, S_ORD_TYPE, S_TIME_IN_FORCE, S_HANDL_INST]
        cdef int[2] flag_slots = [S_POSS_DUP, S_POSS_RESEND]
        cdef int[6] decimal_slots = [S_ORDER_QTY, S_PRICE, S_STOP_PX, S_MAX_FLOOR, S_MIN_QTY, S_STRIKE_PRICE]
        memset(self._slots, 0xff, sizeof(self._slots))
        self._msg_seq_num = 0
        self._put_or_call = -1
        # On a split error the fields read so far are still typed (the session needs MsgType
        # and MsgSeqNum to answer with a Reject); the split error stays the reported one.
        self._split()
        for i in range(self._count):
            slot = _slot_for(self._spans[i].tag)
            if slot < 0:
                continue
            if self._slots[slot] >= 0:
                self._fail(FIELD_DUPLICATE_TAG, self._spans[i].tag, self._spans[i].start)
                continue
            self._slots[slot] = <short>i
        # Format checks of the typed values, so the OMS can trust them.
        k = self._slots[S_MSG_SEQ_NUM]
        if k >= 0:
            s = &self._spans[k]
            if not _parse_uint(p + s.start, s.end - s.start, &v) or v == 0:
                self._fail(FIELD_BAD_VALUE, 34, s.start)
            else:
                self._msg_seq_num = v
        k = self._slots[S_PUT_OR_CALL]
        if k >= 0:
            s = &self._spans[k]
            if not _parse_uint(p + s.start, s.end - s.start, &v) or v > 1:
                self._fail(FIELD_BAD_VALUE, 201, s.start)
            else:
                self._put_or_call = <int>v
        for i in range(4):
            k = self._slots[char_slots[i]]
            if k >= 0 and self._spans[k].end - self._spans[k].start != 1:
                self._fail(FIELD_BAD_VALUE, self._spans[k].tag, self._spans[k].start)
        for i in range(2):
            k = self._slots[flag_slots[i]]
            if k >= 0:
                s = &self._spans[k]
                if s.end - s.start != 1 or (p[s.start] != 89 and p[s.start] != 78):
                    self._fail(FIELD_BAD_VALUE, s.tag, s.start)
        for i in range(6):
            k = self._slots[decimal_slots[i]]
            if k >= 0:
                s = &self._spans[k]
                if not _is_decimal(p + s.start, s.end - s.start):
                    self._fail(FIELD_BAD_VALUE, s.tag, s.start)
        self._sending_time_ns = self._timestamp(S_SENDING_TIME)
        self._transact_time_ns = self._timestamp(S_TRANSACT_TIME)
        self._orig_sending_time_ns = self._timestamp(S_ORIG_SENDING_TIME)
        self._expire_time_ns = self._timestamp(S_EXPIRE_TIME)
        return 1 if self._error == FIELD_OK else 0

    cdef int64_t _timestamp(self, int slot):
        cdef int k = self._slots[slot]
        cdef int64_t ns = -1
        cdef FieldSpan* s
        if k >= 0:
            s = &self._spans[k]
            if not _parse_timestamp(self._ptr + s.start, s.end - s.start, &ns):
                self._fail(FIELD_BAD_VALUE, s.tag, s.start)
                ns = -1
        return ns

    cdef object _str(self, int slot):
        cdef int k = self._slots[slot]
        cdef FieldSpan* s
        if k < 0:
            return None
        s = &self._spans[k]
        return PyUnicode_DecodeLatin1(<const char*>self._ptr + s.start, s.end - s.start, NULL)

    cdef object _ticks(self, int slot, int64_t tick_units, int scale):
        cdef int k = self._slots[slot]
        cdef FieldSpan* s
        if k < 0:
            return None
        s = &self._spans[k]
        return _to_ticks_c(self._ptr + s.start, s.end - s.start, tick_units, scale, None)

    def parse(self, data, Py_ssize_t start=0, Py_ssize_t end=-1):
        """Decode ``data[start:end]`` into this object (reuse).  Returns ``self.ok``."""
        self._attach(data, start, end)
        self._decode()
        return self._error == FIELD_OK

    # Header
    @property
    def begin_string(self): return self._str(S_BEGIN_STRING)
    @property
    def msg_type(self): return self._str(S_MSG_TYPE)
    @property
    def msg_seq_num(self):
        """MsgSeqNum (34) as an int, ``None`` when absent or invalid."""
        return self._msg_seq_num if self._msg_seq_num > 0 else None
    @property
    def sender_comp_id(self): return self._str(S_SENDER_COMP_ID)
    @property
    def target_comp_id(self): return self._str(S_TARGET_COMP_ID)
    @property
    def sender_sub_id(self): return self._str(S_SENDER_SUB_ID)
    @property
    def target_sub_id(self): return self._str(S_TARGET_SUB_ID)
    @property
    def on_behalf_of_comp_id(self): return self._str(S_ON_BEHALF_OF)
    @property
    def deliver_to_comp_id(self): return self._str(S_DELIVER_TO)
    @property
    def sending_time(self): return self._str(S_SENDING_TIME)
    @property
    def sending_time_ns(self): return self._sending_time_ns if self._sending_time_ns >= 0 else None
    @property
    def orig_sending_time(self): return self._str(S_ORIG_SENDING_TIME)
    @property
    def orig_sending_time_ns(self):
        return self._orig_sending_time_ns if self._orig_sending_time_ns >= 0 else None
    @property
    def poss_dup(self):
        """PossDupFlag (43) == 'Y'."""
        cdef int k = self._slots[S_POSS_DUP]
        return k >= 0 and self._ptr[self._spans[k].start] == 89
    @property
    def poss_resend(self):
        """PossResend (97) == 'Y'."""
        cdef int k = self._slots[S_POSS_RESEND]
        return k >= 0 and self._ptr[self._spans[k].start] == 89

    # Order identity and instrument
    @property
    def cl_ord_id(self): return self._str(S_CL_ORD_ID)
    @property
    def orig_cl_ord_id(self): return self._str(S_ORIG_CL_ORD_ID)
    @property
    def order_id(self): return self._str(S_ORDER_ID)
    @property
    def account(self): return self._str(S_ACCOUNT)
    @property
    def symbol(self): return self._str(S_SYMBOL)
    @property
    def security_id(self): return self._str(S_SECURITY_ID)
    @property
    def security_id_source(self): return self._str(S_SECURITY_ID_SOURCE)
    @property
    def security_exchange(self): return self._str(S_SECURITY_EXCHANGE)
    @property
    def security_type(self): return self._str(S_SECURITY_TYPE)
    @property
    def maturity_month_year(self): return self._str(S_MATURITY_MONTH_YEAR)
    @property
    def strike_price(self): return self._str(S_STRIKE_PRICE)
    @property
    def put_or_call(self):
        """PutOrCall (201): 0 put, 1 call, ``None`` when absent."""
        return self._put_or_call if self._put_or_call >= 0 else None
    @property
    def currency(self): return self._str(S_CURRENCY)

    # Order terms
    @property
    def side(self): return self._str(S_SIDE)
    @property
    def order_qty(self): return self._str(S_ORDER_QTY)
    @property
    def ord_type(self): return self._str(S_ORD_TYPE)
    @property
    def price(self): return self._str(S_PRICE)
    @property
    def stop_px(self): return self._str(S_STOP_PX)
    @property
    def time_in_force(self): return self._str(S_TIME_IN_FORCE)
    @property
    def expire_time(self): return self._str(S_EXPIRE_TIME)
    @property
    def expire_time_ns(self): return self._expire_time_ns if self._expire_time_ns >= 0 else None
    @property
    def expire_date(self): return self._str(S_EXPIRE_DATE)
    @property
    def max_floor(self): return self._str(S_MAX_FLOOR)
    @property
    def min_qty(self): return self._str(S_MIN_QTY)
    @property
    def exec_inst(self): return self._str(S_EXEC_INST)
    @property
    def handl_inst(self): return self._str(S_HANDL_INST)
    @property
    def ex_destination(self): return self._str(S_EX_DESTINATION)
    @property
    def transact_time(self): return self._str(S_TRANSACT_TIME)
    @property
    def transact_time_ns(self): return self._transact_time_ns if self._transact_time_ns >= 0 else None
    @property
    def text(self): return self._str(S_TEXT)

    # Integer views (exact; DecimalFormatError / OffGridError as in to_ticks)
    def price_ticks(self, int64_t tick_units, int scale):
        """Price (44) in ticks of ``tick_units * 10**-scale``; ``None`` when absent."""
        return self._ticks(S_PRICE, tick_units, scale)

    def stop_px_ticks(self, int64_t tick_units, int scale):
        """StopPx (99) in ticks; ``None`` when absent."""
        return self._ticks(S_STOP_PX, tick_units, scale)

    def strike_price_ticks(self, int64_t tick_units, int scale):
        """StrikePrice (202) in ticks; ``None`` when absent."""
        return self._ticks(S_STRIKE_PRICE, tick_units, scale)

    def order_qty_units(self, int scale=0):
        """OrderQty (38) as ``qty * 10**scale`` (whole units by default); ``None`` when absent."""
        return self._ticks(S_ORDER_QTY, 1, scale)

    def max_floor_units(self, int scale=0):
        return self._ticks(S_MAX_FLOOR, 1, scale)

    def min_qty_units(self, int scale=0):
        return self._ticks(S_MIN_QTY, 1, scale)


def decode_order(data, Py_ssize_t start=0, Py_ssize_t end=-1):
    """Split and type one message (normally a frame from :class:`FrameReader`) into an
    :class:`OrderMessage`.  Works for any MsgType (check ``msg_type``); never raises for bad
    content: check ``.ok`` / ``.error`` / ``.error_tag``."""
    cdef OrderMessage m = OrderMessage.__new__(OrderMessage)
    m._attach(data, start, end)
    m._decode()
    return m


# =============================================================================================
# Encoding
# =============================================================================================

cdef inline Py_ssize_t _format_uint(char* out, uint64_t v) noexcept nogil:
    # Digits of v into out (at most 20), returns the count.
    cdef char tmp[24]
    cdef Py_ssize_t n = 0, i
    if v == 0:
        out[0] = 48
        return 1
    while v:
        tmp[n] = <char>(48 + v % 10)
        v //= 10
        n += 1
    for i in range(n):
        out[i] = tmp[n - 1 - i]
    return n


cdef inline Py_ssize_t _format_sign_and_whole(char* out, int64_t value, int scale,
                                               uint64_t* frac) noexcept nogil:
    # The "-" and the integer part of value * 10**-scale (0 <= scale <= 18); the magnitude
    # below one, in units of 10**-scale, goes to frac[0] for the caller's fraction style.
    cdef Py_ssize_t n = 0
    cdef uint64_t mag, pow10
    if value < 0:
        out[0] = 45
        n = 1
        mag = <uint64_t>(-(value + 1)) + 1      # -INT64_MIN does not fit in int64
    else:
        mag = <uint64_t>value
    if scale == 0:
        frac[0] = 0
        return n + _format_uint(out + n, mag)
    pow10 = <uint64_t>_POW10[scale]
    frac[0] = mag % pow10
    return n + _format_uint(out + n, mag // pow10)


cdef Py_ssize_t _format_fixed(char* out, int64_t value, int scale) noexcept nogil:
    # value * 10**-scale as the shortest exact decimal ("12.5", "-0.0001", "7").
    cdef Py_ssize_t n, i
    cdef uint64_t frac
    cdef int digits
    n = _format_sign_and_whole(out, value, scale, &frac)
    if frac == 0:
        return n
    digits = scale
    while frac % 10 == 0:
        frac //= 10
        digits -= 1
    out[n] = 46
    n += 1
    for i in range(digits - 1, -1, -1):
        out[n + i] = <char>(48 + frac % 10)
        frac //= 10
    return n + digits


# "tag=" text of the common tags, so encoders copy instead of converting numbers per field.
cdef enum:
    TAG_TEXT_TABLE_SIZE = 1024

cdef char _TAG_TEXT[TAG_TEXT_TABLE_SIZE][8]
cdef uint8_t _TAG_TEXT_LEN[TAG_TEXT_TABLE_SIZE]
for _i in range(1, TAG_TEXT_TABLE_SIZE):
    _TAG_TEXT_LEN[_i] = <uint8_t>_format_uint(_TAG_TEXT[_i], <uint64_t>_i)
    _TAG_TEXT[_i][_TAG_TEXT_LEN[_i]] = 61
    _TAG_TEXT_LEN[_i] += 1


cdef class WriteBuffer:
    """Reusable, growing byte buffer for encoders, with headroom kept free in front of the body
    so the header can be placed once the body length is known."""

    def __cinit__(self, Py_ssize_t initial_capacity=1024):
        if initial_capacity < HEADROOM + 64:
            initial_capacity = HEADROOM + 64
        self._buf = <char*>malloc(initial_capacity)
        if self._buf == NULL:
            raise MemoryError()
        self._cap = initial_capacity
        self._len = HEADROOM
        self._ts_secs = -1

    def __dealloc__(self):
        free(self._buf)

    cdef int reserve(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t cap
        cdef char* grown
        if self._len + extra <= self._cap:
            return 0
        cap = self._cap * 2
        if cap < self._len + extra:
            cap = self._len + extra
        grown = <char*>realloc(self._buf, cap)
        if grown == NULL:
            raise MemoryError()
        self._buf = grown
        self._cap = cap
        return 0

    cdef int write_raw(self, const char* data, Py_ssize_t n) except -1:
        self.reserve(n)
        memcpy(self._buf + self._len, data, n)
        self._len += n
        return 0

    cdef int write_tag(self, int tag) except -1:
        self.reserve(12)
        if tag < TAG_TEXT_TABLE_SIZE:
            memcpy(self._buf + self._len, _TAG_TEXT[tag], 8)     # over-copy; only the length counts
            self._len += _TAG_TEXT_LEN[tag]
            return 0
        self._len += _format_uint(self._buf + self._len, <uint64_t>tag)
        self._buf[self._len] = 61
        self._len += 1
        return 0

    cdef int write_int_field(self, int tag, int64_t value) except -1:
        self.write_tag(tag)
        self.reserve(24)
        self._len += _format_fixed(self._buf + self._len, value, 0)
        self._buf[self._len] = SOH
        self._len += 1
        return 0

    cdef int write_value_field(self, int tag, object value) except -1:
        # str/bytes/int/bool/Decimal; SOH and empty values cannot go on the wire.
        cdef Py_ssize_t n
        cdef const char* p
        if PyUnicode_CheckExact(value) or PyBytes_CheckExact(value):
            pass    # the common case first: no further type tests
        elif isinstance(value, bool):
            value = b"Y" if value else b"N"
        elif isinstance(value, int):
            return self.write_int_field(tag, value)
        elif isinstance(value, Decimal):
            value = format(value, "f")
        elif not isinstance(value, (str, bytes)):
            raise TypeError(f"tag {tag}: cannot encode a {type(value).__name__} "
                            "(use str, bytes, int, bool or Decimal)")
        p = <const char*>_text_ptr(value, &n)
        if n == 0:
            raise ValueError(f"tag {tag}: empty values are not allowed in FIX")
        if memchr(p, SOH, n) != NULL:
            raise ValueError(f"tag {tag}: value contains SOH")
        self.write_tag(tag)
        self.reserve(n + 1)
        memcpy(self._buf + self._len, p, n)
        self._len += n
        self._buf[self._len] = SOH
        self._len += 1
        return 0

    cdef int write_decimal_field(self, int tag, object value, int scale) except -1:
        # int -> fixed point at `scale`; str/bytes/Decimal -> checked decimal text as given.
        cdef Py_ssize_t n
        cdef const uint8_t* p
        if isinstance(value, int) and not isinstance(value, bool):
            self.write_tag(tag)
            self.reserve(24)
            self._len += _format_fixed(self._buf + self._len, value, scale)
            self._buf[self._len] = SOH
            self._len += 1
            return 0
        if isinstance(value, Decimal):
            value = format(value, "f")
        elif isinstance(value, float) or not isinstance(value, (str, bytes)):
            raise TypeError(f"tag {tag}: decimals are int (fixed point), str, bytes or Decimal, "
                            f"not {type(value).__name__}")
        p = _text_ptr(value, &n)
        if not _is_decimal(p, n):
            raise ValueError(f"tag {tag}: {value!r} is not a FIX decimal")
        self.write_tag(tag)
        self.write_raw(<const char*>p, n)
        self.reserve(1)
        self._buf[self._len] = SOH
        self._len += 1
        return 0

    cdef int write_timestamp_field(self, int tag, int64_t ns, int precision) except -1:
        cdef int64_t secs = ns // 1000000000
        _check_timestamp_args(ns, precision)
        self.write_tag(tag)
        self.reserve(32)
        # A session stamps many messages within one second: reuse the date and time text.
        if secs != self._ts_secs:
            _format_timestamp(self._ts_text, secs * 1000000000, 0)
            self._ts_secs = secs
        memcpy(self._buf + self._len, self._ts_text, 17)
        self._len += 17 + _format_fraction(self._buf + self._len + 17, ns % 1000000000, precision)
        self._buf[self._len] = SOH
        self._len += 1
        return 0



cdef bytes _as_begin_string(object value):
    cdef bytes b
    if isinstance(value, str):
        b = value.encode("ascii")
    elif isinstance(value, bytes):
        b = value
    else:
        raise TypeError(f"begin_string must be str or bytes, not {type(value).__name__}")
    if not b.startswith(b"FIX") or len(b) > MAX_BEGIN_STRING or b"\x01" in b or b"=" in b:
        raise ValueError(f"begin_string {value!r} is not a FIX BeginString (e.g. 'FIX.4.4')")
    return b


cdef bytes _as_text(object value, str what):
    cdef bytes b
    if isinstance(value, str):
        b = value.encode("utf-8")
    elif isinstance(value, bytes):
        b = value
    else:
        raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")
    if not b or b"\x01" in b:
        raise ValueError(f"{what} {value!r} must be non-empty and contain no SOH")
    return b


cdef class MessageEncoder:
    """Generic encoder with a reusable write buffer: ``encode(begin_string, msg_type, header,
    body)`` returns the message with BodyLength (9) and CheckSum (10) computed.

    ``header`` and ``body`` are sequences of ``(tag, value)``; values are str, bytes, int, bool
    (Y/N) or Decimal, written in the order given after 8, 9 and 35.  Tags 8, 9, 35 and 10 are
    placed by the encoder and refused in the sequences.  A data field (e.g. RawData 96) may
    contain SOH when it directly follows its length field (95) with the matching byte count.
    """

    def __cinit__(self, *args, **kwargs):
        self._out = WriteBuffer(1024)

    def __init__(self, Py_ssize_t initial_capacity=1024):
        self._out.reserve(initial_capacity - HEADROOM)

    cdef int _begin(self, object msg_type) except -1:
        self._out._len = HEADROOM
        self._out.write_value_field(35, msg_type)
        return 0

    cdef bytes _finish(self, bytes begin_string):
        cdef WriteBuffer out = self._out
        cdef char head[HEADROOM]
        cdef Py_ssize_t hlen, blen = out._len - HEADROOM, start, i
        cdef Py_ssize_t bs_len = PyBytes_GET_SIZE(begin_string)
        cdef unsigned int total = 0
        head[0] = 56
        head[1] = 61
        memcpy(head + 2, PyBytes_AS_STRING(begin_string), bs_len)
        hlen = 2 + bs_len
        head[hlen] = SOH
        head[hlen + 1] = 57
        head[hlen + 2] = 61
        hlen += 3
        hlen += _format_uint(head + hlen, <uint64_t>blen)
        head[hlen] = SOH
        hlen += 1
        start = HEADROOM - hlen
        memcpy(out._buf + start, head, hlen)
        for i in range(start, out._len):
            total += <uint8_t>out._buf[i]
        total &= 0xff
        out.reserve(TRAILER_LENGTH)
        i = out._len
        out._buf[i] = 49
        out._buf[i + 1] = 48
        out._buf[i + 2] = 61
        out._buf[i + 3] = <char>(48 + total // 100)
        out._buf[i + 4] = <char>(48 + (total // 10) % 10)
        out._buf[i + 5] = <char>(48 + total % 10)
        out._buf[i + 6] = SOH
        out._len += TRAILER_LENGTH
        return PyBytes_FromStringAndSize(out._buf + start, out._len - start)

    cdef int _write_pairs(self, object pairs, str where) except -1:
        cdef int tag, prev_tag = 0, length_tag
        cdef Py_ssize_t prev_len = -1, n
        cdef const uint8_t* p
        for item in pairs:
            try:
                tag_obj, value = item
            except (TypeError, ValueError):
                raise TypeError(f"{where}: expected (tag, value) pairs, got {item!r}") from None
            if not isinstance(tag_obj, int) or isinstance(tag_obj, bool):
                raise TypeError(f"{where}: tag {tag_obj!r} is not an int")
            if tag_obj <= 0 or tag_obj > MAX_TAG:
                raise ValueError(f"{where}: tag {tag_obj} is not a valid FIX tag")
            tag = tag_obj
            if tag == 8 or tag == 9 or tag == 35 or tag == 10:
                raise ValueError(f"{where}: tag {tag} is placed by the encoder")
            length_tag = _length_tag_for(tag)
            if length_tag != 0 and isinstance(value, (bytes, str)):
                p = _text_ptr(value, &n)
                if prev_tag == length_tag:
                    if n != prev_len:
                        raise ValueError(f"{where}: data tag {tag} has {n} bytes but length tag "
                                         f"{length_tag} says {prev_len}")
                    if n == 0:
                        raise ValueError(f"tag {tag}: empty values are not allowed in FIX")
                    # Data fields may carry SOH: copied as is.
                    self._out.write_tag(tag)
                    self._out.write_raw(<const char*>p, n)
                    self._out.write_raw(b"\x01", 1)
                    prev_tag = tag
                    prev_len = -1
                    continue
            self._out.write_value_field(tag, value)
            prev_tag = tag
            prev_len = -1
            if _data_tag_for(tag) != 0 and isinstance(value, (int, str, bytes)) and not isinstance(value, bool):
                try:
                    prev_len = int(value)
                except ValueError:
                    prev_len = -1
        return 0

    def encode(self, begin_string, msg_type, header=(), body=()):
        """Encode one message; returns bytes.  Raises TypeError/ValueError naming the bad field."""
        cdef bytes bs = _as_begin_string(begin_string)
        self._begin(msg_type)
        self._write_pairs(header, "header")
        self._write_pairs(body, "body")
        return self._finish(bs)


cdef MessageEncoder _shared_encoder = MessageEncoder()


def encode_message(begin_string, msg_type, header=(), body=()):
    """Module-level :meth:`MessageEncoder.encode` on a shared buffer (single-threaded use)."""
    return _shared_encoder.encode(begin_string, msg_type, header, body)


cdef class ExecutionReportEncoder(MessageEncoder):
    """Encode ExecutionReport (35=8) from typed values for one session.

    Header fields fixed per session are given here; per message, ``encode`` takes the sequence
    number and the sending time as integer ns since the epoch (time is injected, there is no
    clock inside).  Prices given as ``int`` are fixed point with ``price_scale`` decimals
    (``12345`` at scale 2 is ``123.45``), quantities with ``qty_scale``; str/bytes/Decimal
    values are checked decimal text written as given; floats are refused.  Timestamps are
    written with ``timestamp_precision`` fractional digits (3 = milliseconds, 6 = microseconds).
    """

    def __init__(self, begin_string, sender_comp_id, target_comp_id, *, sender_sub_id=None,
                 target_sub_id=None, on_behalf_of_comp_id=None, deliver_to_comp_id=None,
                 int price_scale=0, int qty_scale=0, int timestamp_precision=3,
                 Py_ssize_t initial_capacity=1024):
        self.begin_string = _as_begin_string(begin_string)
        self.sender_comp_id = _as_text(sender_comp_id, "sender_comp_id")
        self.target_comp_id = _as_text(target_comp_id, "target_comp_id")
        self._sender_sub_id = None if sender_sub_id is None else _as_text(sender_sub_id, "sender_sub_id")
        self._target_sub_id = None if target_sub_id is None else _as_text(target_sub_id, "target_sub_id")
        self._on_behalf_of = (None if on_behalf_of_comp_id is None
                              else _as_text(on_behalf_of_comp_id, "on_behalf_of_comp_id"))
        self._deliver_to = (None if deliver_to_comp_id is None
                            else _as_text(deliver_to_comp_id, "deliver_to_comp_id"))
        if not 0 <= price_scale <= 18:
            raise ValueError(f"price_scale must be between 0 and 18, got {price_scale}")
        if not 0 <= qty_scale <= 18:
            raise ValueError(f"qty_scale must be between 0 and 18, got {qty_scale}")
        _check_timestamp_args(0, timestamp_precision)
        self.price_scale = price_scale
        self.qty_scale = qty_scale
        self.timestamp_precision = timestamp_precision
        self._fix42 = self.begin_string in (b"FIX.4.0", b"FIX.4.1", b"FIX.4.2")
        self._out.reserve(initial_capacity - HEADROOM)

    def encode(self, int64_t msg_seq_num, int64_t sending_time_ns, *, order_id, exec_id,
               exec_type, ord_status, symbol, side, leaves_qty, cum_qty, avg_px,
               cl_ord_id=None, orig_cl_ord_id=None, exec_ref_id=None, exec_trans_type=None,
               ord_rej_reason=None, account=None, security_type=None, order_qty=None,
               ord_type=None, price=None, stop_px=None, time_in_force=None, currency=None,
               ex_destination=None, last_qty=None, last_px=None, last_mkt=None,
               transact_time_ns=None, text=None, poss_dup=False, poss_resend=False,
               orig_sending_time_ns=None, extra=None):
        """Encode one ExecutionReport and return its bytes.

        Body order: 37 11 41 17 20 19 150 39 103 1 55 167 54 38 40 44 99 59 15 100 32 31 30
        151 14 6 60 58, then ``extra`` (``(tag, value)`` pairs, e.g. repeating groups).
        ExecTransType (20) is written only for FIX.4.0-4.2 (default ``"0"``) and refused for
        later versions.  ``poss_dup=True`` requires ``orig_sending_time_ns``.
        """
        cdef WriteBuffer out = self._out
        cdef int ps = self.price_scale, qs = self.qty_scale, tp = self.timestamp_precision
        if msg_seq_num <= 0:
            raise ValueError(f"msg_seq_num must be positive, got {msg_seq_num}")
        if poss_dup and orig_sending_time_ns is None:
            raise ValueError("poss_dup=True requires orig_sending_time_ns (OrigSendingTime 122)")
        if exec_trans_type is not None and not self._fix42:
            raise ValueError(f"ExecTransType (20) does not exist in {self.begin_string.decode()}")
        _check_timestamp_args(sending_time_ns, tp)
        self._begin(b"8")
        # Header
        out.write_int_field(34, msg_seq_num)
        out.write_value_field(49, self.sender_comp_id)
        if self._sender_sub_id is not None:
            out.write_value_field(50, self._sender_sub_id)
        out.write_timestamp_field(52, sending_time_ns, tp)
        out.write_value_field(56, self.target_comp_id)
        if self._target_sub_id is not None:
            out.write_value_field(57, self._target_sub_id)
        if self._on_behalf_of is not None:
            out.write_value_field(115, self._on_behalf_of)
        if self._deliver_to is not None:
            out.write_value_field(128, self._deliver_to)
        if poss_dup:
            out.write_value_field(43, b"Y")
        if poss_resend:
            out.write_value_field(97, b"Y")
        if orig_sending_time_ns is not None:
            out.write_timestamp_field(122, orig_sending_time_ns, tp)
        # Body
        out.write_value_field(37, order_id)
        if cl_ord_id is not None:
            out.write_value_field(11, cl_ord_id)
        if orig_cl_ord_id is not None:
            out.write_value_field(41, orig_cl_ord_id)
        out.write_value_field(17, exec_id)
        if self._fix42:
            out.write_value_field(20, b"0" if exec_trans_type is None else exec_trans_type)
        if exec_ref_id is not None:
            out.write_value_field(19, exec_ref_id)
        out.write_value_field(150, exec_type)
        out.write_value_field(39, ord_status)
        if ord_rej_reason is not None:
            out.write_value_field(103, ord_rej_reason)
        if account is not None:
            out.write_value_field(1, account)
        out.write_value_field(55, symbol)
        if security_type is not None:
            out.write_value_field(167, security_type)
        out.write_value_field(54, side)
        if order_qty is not None:
            out.write_decimal_field(38, order_qty, qs)
        if ord_type is not None:
            out.write_value_field(40, ord_type)
        if price is not None:
            out.write_decimal_field(44, price, ps)
        if stop_px is not None:
            out.write_decimal_field(99, stop_px, ps)
        if time_in_force is not None:
            out.write_value_field(59, time_in_force)
        if currency is not None:
            out.write_value_field(15, currency)
        if ex_destination is not None:
            out.write_value_field(100, ex_destination)
        if last_qty is not None:
            out.write_decimal_field(32, last_qty, qs)
        if last_px is not None:
            out.write_decimal_field(31, last_px, ps)
        if last_mkt is not None:
            out.write_value_field(30, last_mkt)
        out.write_decimal_field(151, leaves_qty, qs)
        out.write_decimal_field(14, cum_qty, qs)
        out.write_decimal_field(6, avg_px, ps)
        if transact_time_ns is not None:
            out.write_timestamp_field(60, transact_time_ns, tp)
        if text is not None:
            out.write_value_field(58, text)
        if extra is not None:
            self._write_pairs(extra, "extra")
        return self._finish(self.begin_string)


# =============================================================================================
# The OMS gateway's ExecutionReports: the body in one call, the session's header in one call
# =============================================================================================
#
# Two ExecutionReports leave per order (PendingNew, New), more with fills. Built as a list of
# (tag, value) pairs, each report cost a Python tuple and a conversion per field, then the
# session's header list, a generic encoder pass and a checksum pass. Here the gateway's layout
# (oms.gateway.FixGateway.execution_report_body, kept as the reference) is written straight
# from the ExecReport and Execution tuples into a reusable buffer, and the session stamps its
# header around the finished body. Values are written as given, never refused: the session's
# list path also puts an empty value or an SOH on the wire as given (its reference encoder
# decides what the compiled one refuses), so the bytes are the same byte for byte.

#: Epoch seconds below which ``encode_stamped`` formats a numeric SendingTime itself (the last
#: second of the year 9999, less one for the rounding carry); above it, pass the text.
MAX_STAMPED_EPOCH = 253402300798.0


cdef int _put_text(WriteBuffer out, object value) except -1:
    # A field value as messages.to_bytes converts it: str as latin-1 (read in place when it is
    # stored one byte per character), bytes as they are, bool Y/N, int digits.
    cdef Py_ssize_t n
    cdef const char* p
    if PyUnicode_Check(value):
        if PyUnicode_KIND(value) == PyUnicode_1BYTE_KIND:
            p = <const char*>PyUnicode_DATA(value)
            n = PyUnicode_GET_LENGTH(value)
        else:
            value = (<str>value).encode("latin-1")   # raises UnicodeEncodeError, as to_bytes does
            p = PyBytes_AS_STRING(value)
            n = PyBytes_GET_SIZE(value)
    elif PyBytes_Check(value):
        p = PyBytes_AS_STRING(value)
        n = PyBytes_GET_SIZE(value)
    elif isinstance(value, bool):
        return _put_text(out, b"Y" if value else b"N")
    elif isinstance(value, int):
        return _put_text(out, str(value).encode())
    elif isinstance(value, (bytearray, memoryview)):
        return _put_text(out, bytes(value))
    else:
        raise TypeError(f"field value must be bytes, str or int, got {type(value).__name__}")
    out.reserve(n + 1)
    memcpy(out._buf + out._len, p, n)
    out._len += n
    return 0


cdef inline int _end_field(WriteBuffer out) except -1:
    out.reserve(1)
    out._buf[out._len] = SOH
    out._len += 1
    return 0


cdef int _write_text_field(WriteBuffer out, int tag, object value) except -1:
    out.write_tag(tag)
    _put_text(out, value)
    return _end_field(out)


cdef int _write_count_field(WriteBuffer out, int tag, object value) except -1:
    # ``b"%d" % value``: an int in C, anything else formatted by Python (same text).
    cdef int overflow = 0
    cdef long long v
    if PyLong_Check(value):
        v = PyLong_AsLongLongAndOverflow(value, &overflow)
        if not overflow:
            return out.write_int_field(tag, v)
    return _write_text_field(out, tag, b"%d" % (value,))


cdef int _write_str_of_field(WriteBuffer out, int tag, object value) except -1:
    # ``str(value)``: a plain int in C (an IntEnum's str may differ), anything else by Python.
    cdef int overflow = 0
    cdef long long v
    if PyLong_CheckExact(value):
        v = PyLong_AsLongLongAndOverflow(value, &overflow)
        if not overflow:
            return out.write_int_field(tag, v)
    return _write_text_field(out, tag, str(value))


cdef inline int _write_char_field(WriteBuffer out, int tag, char c) except -1:
    out.write_tag(tag)
    out.reserve(2)
    out._buf[out._len] = c
    out._buf[out._len + 1] = SOH
    out._len += 2
    return 0


cdef char _code_char(object value, str what) except 0:
    # A one-character FIX code held as a str (the str-valued ExecType / OrdStatus enums).
    cdef Py_UCS4 c
    if PyUnicode_Check(value) and PyUnicode_GET_LENGTH(value) == 1:
        c = PyUnicode_READ_CHAR(value, 0)
        if 32 < c < 127:
            return <char>c
    raise ValueError(f"{what} must be a one-character FIX code, got {value!r}")


cdef Py_ssize_t _format_scaled(char* out, int64_t value, int decimals) noexcept nogil:
    # value * 10**-decimals with exactly ``decimals`` places, as format(Decimal, "f") writes a
    # price in its tick's precision ("230.00", "0.05", "-1.50", "7"); 0 <= decimals <= 18.
    cdef Py_ssize_t n, i
    cdef uint64_t frac
    n = _format_sign_and_whole(out, value, decimals, &frac)
    if decimals == 0:
        return n
    out[n] = 46
    n += 1
    for i in range(decimals - 1, -1, -1):
        out[n + i] = <char>(48 + frac % 10)
        frac //= 10
    return n + decimals


cdef class ReportInstrument:
    """One instrument as ExecutionReports show it: its fields (Symbol, SecurityType, ...) already
    encoded, and how its prices and average prices are written.

    ``fields`` is the ``tag=value<SOH>`` text of the instrument fields. Without ``tick_size`` the
    instrument is unknown to the master: reports carry no prices and AvgPx 0. With it, a price
    of ``ticks`` is written as ``price_text(ticks)`` (bytes) would write it, the tick's exact
    decimals, and AvgPx as ``avg_px_text(cum_value, cum_qty)`` would; both are computed here in
    C when the numbers fit in 64 bits, and those callables are the fallback (and the reference
    the tests compare against). ``avg_px_extra_decimals`` is the rounding of the average beyond
    the tick's decimals (model.orders.AVG_PX_EXTRA_DECIMALS).
    """

    def __init__(self, bytes fields, tick_size=None, price_text=None, avg_px_text=None,
                 int avg_px_extra_decimals=6):
        cdef object coeff, places, mult
        self.fields = fields
        self.known = tick_size is not None
        self._c_prices = False
        self._c_avg = False
        if not self.known:
            return
        if not isinstance(tick_size, Decimal) or not tick_size.is_finite() or not tick_size > 0:
            raise ValueError(f"tick_size must be a positive Decimal, got {tick_size!r}")
        if not callable(price_text) or not callable(avg_px_text):
            raise TypeError("a known instrument needs price_text(ticks) and avg_px_text(cum_value, cum_qty) callables")
        if not 0 <= avg_px_extra_decimals <= 18:
            raise ValueError(f"avg_px_extra_decimals must be between 0 and 18, got {avg_px_extra_decimals}")
        self._price_text = price_text
        self._avg_px_text = avg_px_text
        # Price = ticks x tick_size, printed with the tick's own exponent (as configured).
        _, digits, exponent = tick_size.as_tuple()
        coeff = int("".join(map(str, digits)))
        if coeff <= INT64_MAX and -18 <= exponent <= 0:
            self._tick_coeff = coeff
            self._tick_decimals = -exponent
            self._c_prices = True
        # AvgPx = cum_value x coefficient x 10**(max(exponent, 0) + extra) / cum_qty, rounded half
        # to even, at max(0, -exponent) + extra places, of the normalized tick (avg_px_text).
        _, digits, exponent = tick_size.normalize().as_tuple()
        coeff = int("".join(map(str, digits)))
        places = max(0, -exponent) + avg_px_extra_decimals
        mult = coeff * 10 ** (max(exponent, 0) + avg_px_extra_decimals)
        if mult <= INT64_MAX and places <= 18:
            self._avg_mult = mult
            self._avg_places = places
            self._c_avg = True

    cdef int _write_price(self, WriteBuffer out, int tag, object ticks) except -1:
        out.write_tag(tag)
        self._put_price(out, ticks)
        return _end_field(out)

    cdef int _put_price(self, WriteBuffer out, object ticks) except -1:
        cdef int overflow = 0
        cdef long long t
        cdef int64_t limit
        if self._c_prices and PyLong_CheckExact(ticks):
            t = PyLong_AsLongLongAndOverflow(ticks, &overflow)
            limit = INT64_MAX // self._tick_coeff
            if not overflow and -limit <= t <= limit:
                out.reserve(48)
                out._len += _format_scaled(out._buf + out._len, t * self._tick_coeff, self._tick_decimals)
                return 0
        return _put_text(out, self._price_text(ticks))

    cdef int _put_avg_px(self, WriteBuffer out, object cum_value, object cum_qty) except -1:
        cdef int overflow_v = 0, overflow_q = 0
        cdef long long v, q
        cdef int64_t num, quot, rem
        if self._c_avg and PyLong_CheckExact(cum_value) and PyLong_CheckExact(cum_qty):
            v = PyLong_AsLongLongAndOverflow(cum_value, &overflow_v)
            q = PyLong_AsLongLongAndOverflow(cum_qty, &overflow_q)
            if not overflow_v and not overflow_q and v >= 0 and q > 0 and v <= INT64_MAX // self._avg_mult:
                num = v * self._avg_mult
                quot = num // q
                rem = num % q
                if rem > q - rem or (rem == q - rem and quot & 1):
                    quot += 1
                out.reserve(48)
                out._len += _format_fixed(out._buf + out._len, quot, self._avg_places)
                return 0
        return _put_text(out, self._avg_px_text(cum_value, cum_qty))

    def price_text(self, ticks):
        """A price of ``ticks`` as reports write it (bytes)."""
        cdef WriteBuffer out = WriteBuffer(128)
        if not self.known:
            raise ValueError("an unknown instrument has no prices")
        self._put_price(out, ticks)
        return PyBytes_FromStringAndSize(out._buf + HEADROOM, out._len - HEADROOM)

    def avg_px_text(self, cum_value, cum_qty):
        """AvgPx (6) for ``cum_qty`` > 0 filled worth ``cum_value`` ticks x units, as reports write it (bytes)."""
        cdef WriteBuffer out = WriteBuffer(128)
        if not self.known:
            raise ValueError("an unknown instrument has no prices")
        self._put_avg_px(out, cum_value, cum_qty)
        return PyBytes_FromStringAndSize(out._buf + HEADROOM, out._len - HEADROOM)


#: What the body encoder reads, by name: positions come from the tuples' ``_fields``.
_REPORT_FIELDS = ("execution", "ord_rej_reason", "mass_status_req_id", "tot_num_reports",
                  "last_rpt_requested", "order_qty", "ord_type", "stop_px", "tif")
_EXECUTION_FIELDS = ("exec_id", "order_id", "cl_ord_id", "orig_cl_ord_id", "exec_type", "ord_status", "symbol",
                     "side", "qty", "price", "last_qty", "last_px", "cum_qty", "leaves_qty", "cum_value", "venue",
                     "text", "ts", "account")


cdef class ExecutionReportBodyEncoder:
    """The body of the OMS gateway's ExecutionReport (35=8) for one FIX version, in one call.

    ``encode(report)`` takes the gateway's ExecReport (a NamedTuple whose ``execution`` is an
    Execution NamedTuple) and returns the body fields as ``tag=value<SOH>`` bytes, with exactly
    the bytes of ``FixGateway.execution_report_body`` (the reference, tested field for field)
    once the session has encoded that list. Field positions are looked up by name once, from
    ``report_fields`` and ``execution_fields`` (the tuples' ``_fields``). ``ord_types`` and
    ``tifs`` map the order's int OrdType / TimeInForce to their wire bytes (an OrdType missing
    from it is a KeyError, a TimeInForce missing is 0), ``priced_ord_types`` are the OrdTypes
    whose Price (44) is reported. ``instruments`` maps an Execution's symbol to its
    :class:`ReportInstrument`; a symbol not in it is given to ``resolve_instrument(symbol)``,
    which returns one (and may add it to the dict).
    """

    def __init__(self, str begin_string, report_fields, execution_fields, dict ord_types, dict tifs,
                 priced_ord_types, dict instruments, resolve_instrument):
        cdef Py_ssize_t i
        if not callable(resolve_instrument):
            raise TypeError("resolve_instrument must be callable(symbol) -> ReportInstrument")
        self._out = WriteBuffer(1024)
        self.begin_string = begin_string
        # Everything but FIX.4.2 gets the FIX 4.4 layout (the gateway's rule).
        self._fix42 = begin_string == "FIX.4.2"
        self._ord_types = dict(ord_types)
        self._tifs = dict(tifs)
        self._priced = frozenset(priced_ord_types)
        self._instruments = instruments
        self._resolve = resolve_instrument
        report_fields = tuple(report_fields)
        execution_fields = tuple(execution_fields)
        for i, name in enumerate(_REPORT_FIELDS):
            if name not in report_fields:
                raise ValueError(f"report_fields has no {name!r}: {report_fields}")
            self._r[i] = report_fields.index(name)
        for i, name in enumerate(_EXECUTION_FIELDS):
            if name not in execution_fields:
                raise ValueError(f"execution_fields has no {name!r}: {execution_fields}")
            self._x[i] = execution_fields.index(name)
        self._report_size = len(report_fields)
        self._execution_size = len(execution_fields)

    def encode(self, report):
        """The report's body fields as bytes (see the class docstring)."""
        cdef WriteBuffer out = self._out
        cdef tuple r, x
        cdef object ex, ord_type, value, cum_qty, found
        cdef ReportInstrument inst
        cdef char exec_type, ord_status, et42
        if not isinstance(report, tuple) or len(<tuple>report) != self._report_size:
            raise TypeError(f"report must be an ExecReport tuple of {self._report_size} fields, "
                            f"got {type(report).__name__}")
        r = <tuple>report
        ex = r[self._r[R_EXECUTION]]
        if not isinstance(ex, tuple) or len(<tuple>ex) != self._execution_size:
            raise TypeError(f"report.execution must be an Execution tuple of {self._execution_size} fields, "
                            f"got {type(ex).__name__}")
        x = <tuple>ex
        value = x[self._x[X_SYMBOL]]
        found = self._instruments.get(value)
        if found is None:
            found = self._resolve(value)
        if not isinstance(found, ReportInstrument):
            raise TypeError(f"the instrument of symbol {value!r} is a {type(found).__name__}, not a ReportInstrument")
        inst = <ReportInstrument>found
        exec_type = _code_char(x[self._x[X_EXEC_TYPE]], "exec_type")
        ord_status = _code_char(x[self._x[X_ORD_STATUS]], "ord_status")
        out._len = HEADROOM
        _write_text_field(out, 37, x[self._x[X_ORDER_ID]])
        value = x[self._x[X_CL_ORD_ID]]
        if value:
            _write_text_field(out, 11, value)
        value = x[self._x[X_ORIG_CL_ORD_ID]]
        # OrigClOrdID on the amend answers: Replaced, Canceled, Pending Cancel / Replace.
        if value and (exec_type == c'5' or exec_type == c'4' or exec_type == c'6' or exec_type == c'E'):
            _write_text_field(out, 41, value)
        _write_text_field(out, 17, x[self._x[X_EXEC_ID]])
        if self._fix42:
            # FIX 4.2 has no Trade / Order Status ExecTypes: partial fill / fill (by LeavesQty),
            # and a status is ExecTransType 3 with the OrdStatus as ExecType.
            if exec_type == c'F':
                _write_char_field(out, 20, c'0')
                _write_char_field(out, 150, c'2' if x[self._x[X_LEAVES_QTY]] == 0 else c'1')
            elif exec_type == c'I':
                _write_char_field(out, 20, c'3')
                _write_char_field(out, 150, ord_status)
            else:
                _write_char_field(out, 20, c'0')
                _write_char_field(out, 150, exec_type)
            _write_char_field(out, 39, ord_status)
        else:
            _write_char_field(out, 150, exec_type)
            _write_char_field(out, 39, ord_status)
        value = x[self._x[X_ACCOUNT]]
        if value:
            _write_text_field(out, 1, value)
        out.write_raw(PyBytes_AS_STRING(inst.fields), PyBytes_GET_SIZE(inst.fields))
        self._write_side(out, x[self._x[X_SIDE]])
        value = r[self._r[R_ORDER_QTY]]
        if not value:
            value = x[self._x[X_QTY]]
        if value:
            _write_count_field(out, 38, value)
        ord_type = r[self._r[R_ORD_TYPE]]
        if ord_type:
            _write_text_field(out, 40, self._ord_types[ord_type])
        cum_qty = x[self._x[X_CUM_QTY]]
        if inst.known:
            value = x[self._x[X_PRICE]]
            if value and ord_type in self._priced:
                inst._write_price(out, 44, value)
            value = r[self._r[R_STOP_PX]]
            if value:
                inst._write_price(out, 99, value)
            if ord_type:
                _write_text_field(out, 59, self._tifs.get(r[self._r[R_TIF]], b"0"))
            if exec_type == c'F':
                _write_count_field(out, 32, x[self._x[X_LAST_QTY]])
                inst._write_price(out, 31, x[self._x[X_LAST_PX]])
                _write_text_field(out, 30, x[self._x[X_VENUE]])
            _write_count_field(out, 151, x[self._x[X_LEAVES_QTY]])
            _write_count_field(out, 14, cum_qty)
            if cum_qty:
                out.write_tag(6)
                inst._put_avg_px(out, x[self._x[X_CUM_VALUE]], cum_qty)
                _end_field(out)
            else:
                _write_char_field(out, 6, c'0')
        else:
            if ord_type:
                _write_text_field(out, 59, self._tifs.get(r[self._r[R_TIF]], b"0"))
            _write_count_field(out, 151, x[self._x[X_LEAVES_QTY]])
            _write_count_field(out, 14, cum_qty)
            _write_char_field(out, 6, c'0')
        value = r[self._r[R_ORD_REJ_REASON]]
        if value is not None:
            _write_str_of_field(out, 103, value.for_version(self.begin_string))
        value = r[self._r[R_MASS_STATUS_REQ_ID]]
        if value:
            _write_text_field(out, 584, value)
        value = r[self._r[R_TOT_NUM_REPORTS]]
        if value >= 0:
            _write_str_of_field(out, 911, value)
        if r[self._r[R_LAST_RPT_REQUESTED]]:
            _write_char_field(out, 912, c'Y')
        value = x[self._x[X_TEXT]]
        if value:
            _write_text_field(out, 58, value)
        out.write_timestamp_field(60, x[self._x[X_TS]], 6)
        return PyBytes_FromStringAndSize(out._buf + HEADROOM, out._len - HEADROOM)

    cdef int _write_side(self, WriteBuffer out, object side) except -1:
        # The reference: _SIDE_FIX.get(side) or str(side or 1) (1 buy, 2 sell; 0 or none -> 1).
        cdef int overflow = 0
        cdef long long v
        if PyLong_Check(side):
            v = PyLong_AsLongLongAndOverflow(side, &overflow)
            if not overflow:
                return out.write_int_field(54, v if v != 0 else 1)
            return _write_text_field(out, 54, str(side))
        if not side:
            return _write_char_field(out, 54, c'1')
        raise TypeError(f"side must be an int, got {side!r}")


cdef Py_ssize_t _format_sending_time(char* out, double epoch, bint millis) noexcept nogil:
    # messages.format_timestamp in C, to the bit: int() of the seconds, the milliseconds rounded
    # half to even as Python's round() of a float (a carry to 1000 moves the second), then the
    # date-time text. The caller checked 0 <= epoch < MAX_STAMPED_EPOCH.
    cdef int64_t whole = <int64_t>epoch
    cdef double x = (epoch - <double>whole) * 1000.0
    cdef double r = c_round(x)
    cdef int64_t ms
    if fabs(x - r) == 0.5:
        r = 2.0 * c_round(x / 2.0)
    ms = <int64_t>r
    if ms >= 1000:
        whole += 1
        ms -= 1000
    _format_seconds(out, whole)
    if not millis:
        return 17
    out[17] = 46
    out[18] = <char>(48 + ms // 100)
    out[19] = <char>(48 + (ms // 10) % 10)
    out[20] = <char>(48 + ms % 10)
    return 21


cdef MessageEncoder _stamp_encoder = MessageEncoder()


def format_sending_time(double epoch_seconds, bint millis=True):
    """``messages.format_timestamp`` computed in C (the same bytes), for
    0 <= epoch_seconds < MAX_STAMPED_EPOCH."""
    cdef char text[32]
    if not 0.0 <= epoch_seconds < MAX_STAMPED_EPOCH:
        raise ValueError(f"epoch_seconds {epoch_seconds!r} is outside [0, {MAX_STAMPED_EPOCH!r})")
    return PyBytes_FromStringAndSize(text, _format_sending_time(text, epoch_seconds, millis))


def encode_stamped(bytes begin_string, bytes msg_type, int64_t msg_seq_num, bytes sender_comp_id,
                   sending_time, bint millis, bytes target_comp_id, bytes body, list header=None):
    """One whole message around an already encoded ``body`` (``tag=value<SOH>``...): 8, 9, 35,
    the header ascending by tag, the body as given, 10, with BodyLength and CheckSum computed.

    The header is MsgSeqNum (34), SenderCompID (49), SendingTime (52) and TargetCompID (56),
    merged by tag with ``header``'s ``(tag, bytes)`` pairs, which must be ascending and must not
    hold those four or 8, 9, 35, 10. ``sending_time`` is bytes (written as given) or epoch
    seconds below MAX_STAMPED_EPOCH, written as ``messages.format_timestamp(sending_time,
    millis)`` would. Values are written as given: these are the bytes ``messages.encode`` makes
    of the same fields.
    """
    cdef WriteBuffer out = _stamp_encoder._out
    cdef char stamp[32]
    cdef Py_ssize_t stamp_len
    cdef const char* stamp_ptr
    cdef int next_fixed = 0, tag, prev_tag = 0
    cdef double epoch
    cdef object item, value, tag_obj
    if PyBytes_GET_SIZE(begin_string) > MAX_BEGIN_STRING:
        raise ValueError(f"begin_string {begin_string!r} is longer than {MAX_BEGIN_STRING} bytes")
    if PyBytes_Check(sending_time):
        stamp_ptr = PyBytes_AS_STRING(sending_time)
        stamp_len = PyBytes_GET_SIZE(sending_time)
    else:
        epoch = sending_time
        if not 0.0 <= epoch < MAX_STAMPED_EPOCH:
            raise ValueError(f"sending_time {sending_time!r} is outside [0, {MAX_STAMPED_EPOCH!r}): pass its text")
        stamp_len = _format_sending_time(stamp, epoch, millis)
        stamp_ptr = stamp
    out._len = HEADROOM
    _write_raw_field(out, 35, PyBytes_AS_STRING(msg_type), PyBytes_GET_SIZE(msg_type))
    if header is not None:
        for item in header:
            if type(item) is not tuple or len(<tuple>item) != 2:
                raise TypeError(f"header: expected (tag, bytes) pairs, got {item!r}")
            tag_obj, value = <tuple>item
            if not isinstance(tag_obj, int) or not 0 < tag_obj <= MAX_TAG:
                raise ValueError(f"header: {tag_obj!r} is not a FIX tag")
            tag = tag_obj
            if tag < prev_tag:
                raise ValueError(f"header: tags must be ascending, {tag} follows {prev_tag}")
            if tag == 8 or tag == 9 or tag == 10 or tag == 34 or tag == 35 or tag == 49 or tag == 52 or tag == 56:
                raise ValueError(f"header tag {tag} is set by the session")
            if not PyBytes_Check(value):
                raise TypeError(f"header tag {tag}: value must be bytes, got {type(value).__name__}")
            prev_tag = tag
            next_fixed = _write_fixed_before(out, tag, next_fixed, msg_seq_num, sender_comp_id, stamp_ptr,
                                             stamp_len, target_comp_id)
            _write_raw_field(out, tag, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
    _write_fixed_before(out, 1 << 30, next_fixed, msg_seq_num, sender_comp_id, stamp_ptr, stamp_len,
                        target_comp_id)
    out.write_raw(PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body))
    return _stamp_encoder._finish(begin_string)


cdef inline int _write_raw_field(WriteBuffer out, int tag, const char* p, Py_ssize_t n) except -1:
    out.write_tag(tag)
    out.reserve(n + 1)
    memcpy(out._buf + out._len, p, n)
    out._len += n
    out._buf[out._len] = SOH
    out._len += 1
    return 0


cdef int _write_fixed_before(WriteBuffer out, int tag, int next_fixed, int64_t seq, bytes sender,
                             const char* stamp, Py_ssize_t stamp_len, bytes target) except -1:
    # The session's four header fields (34, 49, 52, 56; index next_fixed onwards) that sort
    # before ``tag``; returns the index of the first one still to write.
    if next_fixed == 0 and tag > 34:
        out.write_int_field(34, seq)
        next_fixed = 1
    if next_fixed == 1 and tag > 49:
        _write_raw_field(out, 49, PyBytes_AS_STRING(sender), PyBytes_GET_SIZE(sender))
        next_fixed = 2
    if next_fixed == 2 and tag > 52:
        _write_raw_field(out, 52, stamp, stamp_len)
        next_fixed = 3
    if next_fixed == 3 and tag > 56:
        _write_raw_field(out, 56, PyBytes_AS_STRING(target), PyBytes_GET_SIZE(target))
        next_fixed = 4
    return next_fixed


# =============================================================================================
# Session helpers: per-message loops of the session layer (messages.Message, validation)
# =============================================================================================

def first_values(fields):
    """``{tag: value}`` of the first occurrence of each tag in ``fields`` ((tag, value) pairs),
    as ``messages.Message`` keeps them for its lookups."""
    cdef dict first = {}
    cdef object item
    if type(fields) is list:
        # The session's case (a list of 2-tuples), read without the iterator and unpacking
        # protocols: this runs once per received message.
        for item in <list>fields:
            if type(item) is tuple and len(<tuple>item) == 2:
                first.setdefault((<tuple>item)[0], (<tuple>item)[1])
            else:
                tag, value = item
                first.setdefault(tag, value)
        return first
    for tag, value in fields:
        first.setdefault(tag, value)
    return first


# The validator's format checks that ``accepts_flat`` runs in C instead of calling them (a
# Python call and a regex each, seven per NewOrderSingle): validation.py registers its own
# functions here, and a check is replaced only when it IS one of them. Each C version accepts
# exactly what the registered function accepts (tests/fix/test_validation_fast.py compares them).
cdef object _CHECK_INT32 = None
cdef object _CHECK_UINT64 = None
cdef object _CHECK_FLOAT = None
cdef object _CHECK_CHAR = None
cdef object _CHECK_BOOL = None
cdef object _CHECK_UTC_TIMESTAMP = None


def register_format_checks(int32, uint64, float_, char_, bool_, utc_timestamp):
    """Name the validator's check functions (``-?[0-9]+`` in int32 range; ``[0-9]+`` up to
    2**64-1; ``-?(?:[0-9]+\\.?[0-9]*|\\.[0-9]+)``; one byte; Y or N; a UTCTimestamp of 17-27 bytes)
    that :func:`accepts_flat` may run in C."""
    global _CHECK_INT32, _CHECK_UINT64, _CHECK_FLOAT, _CHECK_CHAR, _CHECK_BOOL, _CHECK_UTC_TIMESTAMP
    _CHECK_INT32, _CHECK_UINT64, _CHECK_FLOAT = int32, uint64, float_
    _CHECK_CHAR, _CHECK_BOOL, _CHECK_UTC_TIMESTAMP = char_, bool_, utc_timestamp


cdef inline bint _digit(uint8_t c) noexcept nogil:
    return 48 <= c <= 57


cdef bint _c_is_int32(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i = 0, start
    cdef bint neg = False
    cdef int64_t v = 0
    if n > 0 and p[0] == 45:
        neg = True
        i = 1
    if i >= n:
        return False
    start = i
    while i < n:
        if not _digit(p[i]):
            return False
        i += 1
    i = start
    while i < n - 1 and p[i] == 48:   # leading zeros say nothing about the size
        i += 1
    if n - i > 10:
        return False
    while i < n:
        v = v * 10 + (p[i] - 48)
        i += 1
    if neg:
        return v <= <int64_t>2147483648
    return v <= <int64_t>2147483647


cdef bint _c_is_uint64(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i = 0
    cdef const char* limit = b"18446744073709551615"
    if n == 0:
        return False
    while i < n:
        if not _digit(p[i]):
            return False
        i += 1
    i = 0
    while i < n - 1 and p[i] == 48:
        i += 1
    if n - i < 20:
        return True
    if n - i > 20:
        return False
    return memcmp(p + i, limit, 20) <= 0


cdef bint _c_is_float(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i = 0, digits = 0
    if n > 0 and p[0] == 45:
        i = 1
    while i < n and _digit(p[i]):
        i += 1
        digits += 1
    if digits:
        if i < n and p[i] == 46:
            i += 1
            while i < n and _digit(p[i]):
                i += 1
        return i == n
    if i >= n or p[i] != 46:
        return False
    i += 1
    if i >= n:
        return False
    while i < n:
        if not _digit(p[i]):
            return False
        i += 1
    return True


cdef inline bint _two(const uint8_t* p, int lo, int hi) noexcept nogil:
    cdef int v
    if not (_digit(p[0]) and _digit(p[1])):
        return False
    v = (p[0] - 48) * 10 + (p[1] - 48)
    return lo <= v <= hi


cdef bint _c_is_utc_timestamp(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    # YYYYMMDD-HH:MM:SS[.d*], month 01-12, day 01-31, hour 00-23, minute 00-59, second 00-60.
    cdef Py_ssize_t i
    if n < 17 or n > 27:
        return False
    for i in range(4):
        if not _digit(p[i]):
            return False
    if not (_two(p + 4, 1, 12) and _two(p + 6, 1, 31) and p[8] == 45 and _two(p + 9, 0, 23)
            and p[11] == 58 and _two(p + 12, 0, 59) and p[14] == 58 and _two(p + 15, 0, 60)):
        return False
    if n == 17:
        return True
    if p[17] != 46:
        return False
    for i in range(18, n):
        if not _digit(p[i]):
            return False
    return True


cdef inline int _compiled_check(object check, object value) except -1:
    # 1/0: the check's verdict computed in C; -1 never (errors propagate); 2: not one of ours.
    cdef const uint8_t* p
    cdef Py_ssize_t n
    if type(value) is not bytes:
        return 2
    p = <const uint8_t*>PyBytes_AS_STRING(value)
    n = PyBytes_GET_SIZE(value)
    if check is _CHECK_UTC_TIMESTAMP:
        return _c_is_utc_timestamp(p, n)
    if check is _CHECK_FLOAT:
        return _c_is_float(p, n)
    if check is _CHECK_INT32:
        return _c_is_int32(p, n)
    if check is _CHECK_UINT64:
        return _c_is_uint64(p, n)
    if check is _CHECK_CHAR:
        return n == 1
    if check is _CHECK_BOOL:
        return n == 1 and (p[0] == 89 or p[0] == 78)
    return 2


def compiled_format_check(check, value):
    """What :func:`accepts_flat` decides for ``check(value)``: the C verdict for a registered
    check, else ``check(value)`` itself (for the tests that compare the two)."""
    cdef int verdict = _compiled_check(check, value)
    if verdict == 2:
        return bool(check(value))
    return verdict == 1


cdef inline long _field_passes(tuple entry, object value, long latest, bint have_values) except -2:
    """One field of :func:`accepts_flat` / :func:`accepts_flat_first` against its plan entry
    (section, format check or None, allowed values or None, multiple-value field?): the field's
    section (the new ``latest``) when it is in section order, not empty (when ``have_values``)
    and its value passes the check and the enumeration; -1 otherwise."""
    cdef long section = entry[0]
    cdef int verdict
    check, allowed, multi = entry[1], entry[2], entry[3]
    if section < latest:
        return -1
    if not value and have_values:
        return -1
    if check is not None:
        verdict = _compiled_check(check, value)
        if verdict == 0 or (verdict == 2 and not check(value)):
            return -1
    if allowed is not None:
        if multi:
            for part in value.split(b" "):
                if part not in allowed:
                    return -1
        elif value not in allowed:
            return -1
    return section


def accepts_flat(fields, bytes begin, dict table, frozenset required, bint have_values):
    """The one-pass acceptance of a flat message (``validation._accepts_flat``) for a plan
    already picked by MsgType: True only when every field is in ``table`` (tag -> (section,
    format check or None, allowed values or None, multiple-value field?)) in section order
    (header, body, trailer), no tag repeats, every ``required`` tag is there, no value is
    empty (when ``have_values``), and every value passes its check and enumeration. Anything
    else is False: the caller's full validation then decides."""
    cdef list items = fields if type(fields) is list else list(fields)
    cdef Py_ssize_t n = len(items), i, j, present = 0
    cdef long latest = 0
    # Repeated tags: compared in C for a message of up to SMALL_MESSAGE fields (every tag is
    # then known to be an int key of the table), a set beyond that.
    cdef long tags[SMALL_MESSAGE]
    cdef bint small = n <= SMALL_MESSAGE
    cdef object item, tag, value, entry
    if n < 3:
        return False
    t0, v0 = items[0]
    t1, _ = items[1]
    t2, _ = items[2]
    if t0 != 8 or t1 != 9 or t2 != 35 or v0 != begin:
        return False
    for i in range(n):
        item = items[i]
        if type(item) is tuple and len(<tuple>item) == 2:
            tag = (<tuple>item)[0]
            value = (<tuple>item)[1]
        else:
            tag, value = item
        entry = table.get(tag)
        if entry is None:
            return False  # unknown here, a group, 1128...: the full check decides
        if small:
            tags[i] = tag
            for j in range(i):
                if tags[j] == tags[i]:
                    return False  # a repeated tag: the full check decides
        if tag in required:
            present += 1
        latest = _field_passes(<tuple>entry, value, latest, have_values)
        if latest < 0:
            return False
    if not small and len({pair[0] for pair in items}) != n:
        return False
    # No tag repeats, so this counts the distinct required tags present.
    return present == len(required)


def accepts_flat_first(dict first, Py_ssize_t count, bytes begin, dict table, frozenset required,
                       bint have_values):
    """:func:`accepts_flat` for a message given as its first-value dict (``messages.Message``'s
    lookups, in wire order) and its field count: a message whose dict holds fewer entries than
    it has fields repeats a tag, and is False (the full validation decides) as in
    ``accepts_flat``; otherwise the dict's items are exactly its fields, in order, and are
    checked by the same rules. Spares building the field list for the check."""
    cdef Py_ssize_t present = 0
    cdef long latest = 0
    cdef Py_ssize_t i = 0
    cdef object tag, value, entry
    if count < 3 or len(first) != count:
        return False
    for tag, value in first.items():
        if i == 0:
            if tag != 8 or value != begin:
                return False
        elif i == 1:
            if tag != 9:
                return False
        elif i == 2:
            if tag != 35:
                return False
        i += 1
        entry = table.get(tag)
        if entry is None:
            return False  # unknown here, a group, 1128...: the full check decides
        if tag in required:
            present += 1
        latest = _field_passes(<tuple>entry, value, latest, have_values)
        if latest < 0:
            return False
    return present == len(required)


def split_message_lazy(raw):
    """:func:`split_message` without the field list: ``(first, count)``, the first-value dict and
    the number of fields, or None as ``split_message`` (the list can be made later, by
    ``split_message``, from the same bytes)."""
    cdef Fields f = Fields.__new__(Fields)
    cdef Py_ssize_t i, n
    cdef dict first
    n = _split_whole(f, raw)
    if n < 0:
        return None
    first = {}
    for i in range(n):
        first.setdefault(f._spans[i].tag, f._value(i))  # one lookup (a repeated value is made and dropped)
    return first, n


def bytes_values(list pairs):
    """True when every item of ``pairs`` is a ``(tag, value)`` tuple whose value is exactly
    ``bytes``: ``Session.send`` then hands the caller's list to the encoder as it is."""
    cdef object item
    for item in pairs:
        if type(item) is not tuple or len(<tuple>item) != 2 or type((<tuple>item)[1]) is not bytes:
            return False
    return True
