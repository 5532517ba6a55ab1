# The contract of the FIX codec hot path: typed state and signatures.
# Public Python names live in crossbook.fix.codec; this file is for other Cython modules.
from libc.stdint cimport int32_t, int64_t, uint8_t
from cpython.buffer cimport Py_buffer

# ---------------------------------------------------------------------------------------------
# Framing
# ---------------------------------------------------------------------------------------------
cdef enum:
    FRAME_COMPLETE = 0
    FRAME_NEED_MORE = 1
    FRAME_GARBLED = 2

cdef enum:
    GARBLED_NOT_FRAME_START = 1
    GARBLED_BAD_BEGIN_STRING = 2
    GARBLED_MISSING_BODY_LENGTH = 3
    GARBLED_BAD_BODY_LENGTH = 4
    GARBLED_BODY_LENGTH_TOO_LARGE = 5
    GARBLED_MISSING_MSG_TYPE = 6
    GARBLED_BODY_LENGTH_MISMATCH = 7
    GARBLED_BAD_CHECKSUM_FIELD = 8
    GARBLED_CHECKSUM_MISMATCH = 9

cdef struct FrameScanResult:
    int status            # FRAME_*
    int reason            # GARBLED_* when status == FRAME_GARBLED, else 0
    Py_ssize_t end        # complete: frame length (the frame is [0, end))
    Py_ssize_t skip       # garbled: bytes to drop before trying again (>= 1)

cdef FrameScanResult scan_frame(const uint8_t* p, Py_ssize_t n, Py_ssize_t max_body_length) noexcept nogil


cdef class FrameScan:
    cdef readonly int status
    cdef readonly Py_ssize_t start
    cdef readonly Py_ssize_t end
    cdef readonly Py_ssize_t skip
    cdef readonly int reason_code


cdef class Garbled:
    cdef readonly int reason_code
    cdef readonly bytes data


cdef class FrameReader:
    cdef uint8_t* _buf
    cdef Py_ssize_t _cap
    cdef Py_ssize_t _head
    cdef Py_ssize_t _tail
    cdef Py_ssize_t _max_body_length

    cdef int _reserve(self, Py_ssize_t extra) except -1
    cpdef object next_event(self)


# ---------------------------------------------------------------------------------------------
# Field splitting
# ---------------------------------------------------------------------------------------------
cdef enum:
    FIELD_OK = 0
    FIELD_EMPTY_TAG = 1
    FIELD_TAG_NOT_NUMERIC = 2
    FIELD_TAG_ZERO = 3
    FIELD_TAG_TOO_LARGE = 4
    FIELD_MISSING_EQUALS = 5
    FIELD_UNTERMINATED = 6
    FIELD_BAD_DATA_LENGTH = 7
    FIELD_DATA_LENGTH_MISMATCH = 8
    FIELD_BAD_VALUE = 9
    FIELD_DUPLICATE_TAG = 10
    FIELD_TAG_NEGATIVE = 11

cdef struct FieldSpan:
    int32_t tag
    int32_t start         # value start, absolute offset into the data
    int32_t end           # value end (exclusive), absolute offset into the data

cdef enum:
    INLINE_FIELDS = 40


cdef class Fields:
    # The data is kept alive (and, for bytearray, locked against resizing) while spans point into it.
    cdef object _data
    cdef Py_buffer _view
    cdef bint _has_view
    cdef const uint8_t* _ptr
    cdef Py_ssize_t _start
    cdef Py_ssize_t _end
    cdef FieldSpan* _spans
    cdef Py_ssize_t _count
    cdef Py_ssize_t _cap
    cdef FieldSpan _inline_spans[INLINE_FIELDS]
    cdef bint _complete
    cdef int _error
    cdef int _error_tag
    cdef Py_ssize_t _error_position

    cdef int _attach(self, object data, Py_ssize_t start, Py_ssize_t end) except -1
    cdef void _release(self) noexcept
    cdef int _split(self) except -1
    cdef int _push(self, int32_t tag, Py_ssize_t start, Py_ssize_t end) except -1
    cdef Py_ssize_t _index(self, int tag) noexcept
    cdef bytes _value(self, Py_ssize_t index)
    cdef void _fail(self, int error, int tag, Py_ssize_t position) noexcept
    cdef void _broken(self, int error, int tag, Py_ssize_t position) noexcept
    cdef int _check_index(self, Py_ssize_t index) except -1


cdef enum:
    # Typed slots of OrderMessage: the index of the field holding the value, or -1 when absent.
    S_BEGIN_STRING = 0
    S_MSG_TYPE
    S_MSG_SEQ_NUM
    S_SENDER_COMP_ID
    S_TARGET_COMP_ID
    S_SENDING_TIME
    S_POSS_DUP
    S_POSS_RESEND
    S_ORIG_SENDING_TIME
    S_SENDER_SUB_ID
    S_TARGET_SUB_ID
    S_ON_BEHALF_OF
    S_DELIVER_TO
    S_CL_ORD_ID
    S_ORIG_CL_ORD_ID
    S_ORDER_ID
    S_ACCOUNT
    S_SYMBOL
    S_SECURITY_ID
    S_SECURITY_ID_SOURCE
    S_SECURITY_EXCHANGE
    S_SECURITY_TYPE
    S_MATURITY_MONTH_YEAR
    S_STRIKE_PRICE
    S_PUT_OR_CALL
    S_CURRENCY
    S_SIDE
    S_ORDER_QTY
    S_ORD_TYPE
    S_PRICE
    S_STOP_PX
    S_TIME_IN_FORCE
    S_EXPIRE_TIME
    S_EXPIRE_DATE
    S_MAX_FLOOR
    S_MIN_QTY
    S_EXEC_INST
    S_HANDL_INST
    S_EX_DESTINATION
    S_TRANSACT_TIME
    S_TEXT
    N_SLOTS


cdef class OrderMessage(Fields):
    cdef short _slots[N_SLOTS]
    cdef int64_t _msg_seq_num
    cdef int64_t _sending_time_ns
    cdef int64_t _transact_time_ns
    cdef int64_t _orig_sending_time_ns
    cdef int64_t _expire_time_ns
    cdef int _put_or_call

    cdef int _decode(self) except -1
    cdef int64_t _timestamp(self, int slot)
    cdef object _str(self, int slot)
    cdef object _ticks(self, int slot, int64_t tick_units, int scale)


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------
cdef class WriteBuffer:
    cdef char* _buf
    cdef Py_ssize_t _cap
    cdef Py_ssize_t _len
    cdef int64_t _ts_secs         # second of the cached date-time text, -1 when none
    cdef char _ts_text[17]

    cdef int reserve(self, Py_ssize_t extra) except -1
    cdef int write_raw(self, const char* data, Py_ssize_t n) except -1
    cdef int write_tag(self, int tag) except -1
    cdef int write_int_field(self, int tag, int64_t value) except -1
    cdef int write_value_field(self, int tag, object value) except -1
    cdef int write_decimal_field(self, int tag, object value, int scale) except -1
    cdef int write_timestamp_field(self, int tag, int64_t ns, int precision) except -1


cdef class MessageEncoder:
    cdef WriteBuffer _out

    cdef int _begin(self, object msg_type) except -1
    cdef bytes _finish(self, bytes begin_string)
    cdef int _write_pairs(self, object pairs, str where) except -1


cdef class ExecutionReportEncoder(MessageEncoder):
    cdef readonly bytes begin_string
    cdef readonly bytes sender_comp_id
    cdef readonly bytes target_comp_id
    cdef bytes _sender_sub_id
    cdef bytes _target_sub_id
    cdef bytes _on_behalf_of
    cdef bytes _deliver_to
    cdef readonly int price_scale
    cdef readonly int qty_scale
    cdef readonly int timestamp_precision
    cdef bint _fix42


# ---------------------------------------------------------------------------------------------
# The OMS gateway's ExecutionReport bodies
# ---------------------------------------------------------------------------------------------
cdef class ReportInstrument:
    cdef readonly bytes fields        # the instrument fields, encoded (tag=value<SOH>...)
    cdef readonly bint known          # in the instrument master: prices and AvgPx are reported
    cdef bint _c_prices               # prices formatted here (else by _price_text)
    cdef int64_t _tick_coeff          # tick size = _tick_coeff x 10**-_tick_decimals
    cdef int _tick_decimals
    cdef bint _c_avg                  # AvgPx computed here (else by _avg_px_text)
    cdef int64_t _avg_mult
    cdef int _avg_places
    cdef object _price_text
    cdef object _avg_px_text

    cdef int _write_price(self, WriteBuffer out, int tag, object ticks) except -1
    cdef int _put_price(self, WriteBuffer out, object ticks) except -1
    cdef int _put_avg_px(self, WriteBuffer out, object cum_value, object cum_qty) except -1


cdef enum:
    # What ExecutionReportBodyEncoder reads of an ExecReport (_r holds each one's position).
    R_EXECUTION = 0
    R_ORD_REJ_REASON
    R_MASS_STATUS_REQ_ID
    R_TOT_NUM_REPORTS
    R_LAST_RPT_REQUESTED
    R_ORDER_QTY
    R_ORD_TYPE
    R_STOP_PX
    R_TIF
    N_REPORT_SLOTS

cdef enum:
    # ... and of its Execution (_x).
    X_EXEC_ID = 0
    X_ORDER_ID
    X_CL_ORD_ID
    X_ORIG_CL_ORD_ID
    X_EXEC_TYPE
    X_ORD_STATUS
    X_SYMBOL
    X_SIDE
    X_QTY
    X_PRICE
    X_LAST_QTY
    X_LAST_PX
    X_CUM_QTY
    X_LEAVES_QTY
    X_CUM_VALUE
    X_VENUE
    X_TEXT
    X_TS
    X_ACCOUNT
    N_EXECUTION_SLOTS


cdef class ExecutionReportBodyEncoder:
    cdef WriteBuffer _out
    cdef readonly str begin_string
    cdef bint _fix42
    cdef Py_ssize_t _r[N_REPORT_SLOTS]
    cdef Py_ssize_t _x[N_EXECUTION_SLOTS]
    cdef Py_ssize_t _report_size
    cdef Py_ssize_t _execution_size
    cdef dict _ord_types
    cdef dict _tifs
    cdef frozenset _priced
    cdef dict _instruments
    cdef object _resolve

    cdef int _write_side(self, WriteBuffer out, object side) except -1
