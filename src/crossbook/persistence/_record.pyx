# cython: language_level=3
"""Reading a journal log record back into the projection's row parameters without building
the rows as Python dicts.

The projection process spent about a third of its time per order in ``decode_record``:
``orjson.loads`` of the whole record (a Python object for each of the ~100 values of an order's
three rows), then ``orjson.dumps`` of every row again to get its JSON text (the ``data``
column), then the columns picked out of the dicts. A record written by orjson (codec ``o``) is
compact JSON, and orjson writes a given value as the same text every time, so a row's text in
the record IS what ``orjson.dumps(orjson.loads(row))`` returns: this scanner walks the record
once in C, slices each row's text out, and converts only the handful of values stored in their
own columns. Anything it does not expect (whitespace inside a row, a row that is not an object,
a column missing, a top-level key other than the four) makes it return None, and the caller
decodes the record the general way: same results, same errors.

It trusts what the codec byte says: only orjson writes ``o`` records (``encode_record``,
``encode_batch``; the CRC keeps them as written). Text orjson never writes inside a row (``-0``,
``1e5``) would be stored as it stands, not as orjson would rewrite it.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memcmp


cdef inline bint _is_space(unsigned char c) noexcept nogil:
    return c == 32 or c == 10 or c == 13 or c == 9


cdef inline Py_ssize_t _skip_space(const unsigned char *p, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    while i < n and _is_space(p[i]):
        i += 1
    return i


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* The offset of the first '"' or '\\' in the 8 bytes at p, or 8 if there is none: a byte
       equal to c makes (w ^ c*0x01..) hold a zero byte, found with the classic has-zero test,
       which is exact for the lowest such byte (borrows only run upwards). Strings are most of
       a record's bytes; this looks at them 8 at a time instead of one. */
    static inline int cb_first_quote_or_backslash(const unsigned char *p) {
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && defined(__GNUC__)
        uint64_t w, q, b, m;
        memcpy(&w, p, 8);
        q = w ^ 0x2222222222222222ULL;
        b = w ^ 0x5c5c5c5c5c5c5c5cULL;
        m = ((q - 0x0101010101010101ULL) & ~q) | ((b - 0x0101010101010101ULL) & ~b);
        m &= 0x8080808080808080ULL;
        return m ? (__builtin_ctzll(m) >> 3) : 8;
    #else
        int k;
        for (k = 0; k < 8; k++) if (p[k] == 34 || p[k] == 92) return k;
        return 8;
    #endif
    }
    """
    int cb_first_quote_or_backslash(const unsigned char *p) noexcept nogil


cdef Py_ssize_t _string_end(const unsigned char *p, Py_ssize_t i, Py_ssize_t n, bint *escaped) noexcept nogil:
    """``p[i]`` is an opening quote: the index just past the closing one (-1 if none);
    ``escaped`` is set when the string holds a backslash escape."""
    cdef int k
    i += 1
    while True:
        while i + 8 <= n:
            k = cb_first_quote_or_backslash(p + i)
            i += k
            if k < 8:
                break
        if i >= n:
            return -1
        if p[i] == 34:          # '"'
            return i + 1
        if p[i] == 92:          # '\\': the next byte is escaped, whatever it is
            escaped[0] = True
            i += 2
            continue
        i += 1                  # fewer than 8 bytes were left: one at a time


cdef Py_ssize_t _value_end(const unsigned char *p, Py_ssize_t i, Py_ssize_t n, bint *spaced) noexcept nogil:
    """The index just past the JSON value starting at ``p[i]`` (-1 if it runs past the end);
    ``spaced`` is set when whitespace separates tokens inside it (not canonical orjson text)."""
    cdef int depth = 0
    cdef bint escaped = False
    cdef unsigned char c
    while i < n:
        c = p[i]
        if c == 34:                  # '"'
            i = _string_end(p, i, n, &escaped)
            if i < 0:
                return -1
            if depth == 0:
                return i
            continue
        if c == 123 or c == 91:      # '{' '['
            depth += 1
        elif c == 125 or c == 93:    # '}' ']'
            if depth == 0:
                return i             # the end of a scalar
            depth -= 1
            if depth == 0:
                return i + 1
        elif depth == 0 and (c == 44 or c == 58 or _is_space(c)):   # ',' ':' space: a scalar ends
            return i
        elif _is_space(c):
            spaced[0] = True
        i += 1
    return i if depth == 0 else -1


DEF MAX_KEYS = 16


cdef struct _Keys:
    Py_ssize_t count
    const char *name[MAX_KEYS]
    Py_ssize_t length[MAX_KEYS]


cdef int _fill_keys(_Keys *keys, tuple names) except -1:
    cdef Py_ssize_t k
    cdef bytes name
    if not 0 < len(names) <= MAX_KEYS:
        raise ValueError(f"between 1 and {MAX_KEYS} keys, got {len(names)}")
    keys.count = len(names)
    for k in range(keys.count):
        name = names[k]
        if not name:
            raise ValueError("an empty key name")
        keys.name[k] = PyBytes_AS_STRING(name)
        keys.length[k] = PyBytes_GET_SIZE(name)
    return 0


cdef class RecordScanner:
    """Splits orjson-written record payloads (``o`` + ``{"o":[...],"x":[...],"c":...,"m":...}``)
    into (order params, execution params, ClOrdID JSON, meta JSON).

    ``order_keys`` / ``execution_keys`` (str) name the row values that become the leading
    parameters, in order; an order's parameters then get ``is_open`` (0 when the value at
    ``state_index`` of ``order_keys`` is in ``terminal_states``, else 1) and its JSON text, an
    execution's its JSON text: the tuples ``decode_record`` builds. ``loads`` (orjson.loads)
    converts a column value that is not a plain string or a small integer."""

    cdef tuple _names           # keeps the bytes the _Keys point into alive
    cdef _Keys _order_keys
    cdef _Keys _execution_keys
    cdef Py_ssize_t _state_index
    cdef object _terminal
    cdef object _loads

    def __init__(self, order_keys, execution_keys, Py_ssize_t state_index, terminal_states, loads):
        orders = tuple(k.encode() for k in order_keys)
        executions = tuple(k.encode() for k in execution_keys)
        self._names = (orders, executions)
        _fill_keys(&self._order_keys, orders)
        _fill_keys(&self._execution_keys, executions)
        if not 0 <= state_index < len(orders):
            raise ValueError(f"state_index {state_index} is not an index of order_keys")
        self._state_index = state_index
        self._terminal = terminal_states
        self._loads = loads

    cdef object _value(self, const unsigned char *p, Py_ssize_t start, Py_ssize_t end):
        """A column value exactly as orjson.loads would give it."""
        cdef bint escaped = False
        cdef Py_ssize_t i = start
        cdef unsigned long long number = 0
        cdef long long smallest
        cdef bint negative = False
        if p[start] == 34 and end - start >= 2:
            if _string_end(p, start, end, &escaped) == end and not escaped:
                return PyUnicode_DecodeUTF8(<const char*>p + start + 1, end - start - 2, "strict")
        elif end - start <= 20:
            if p[i] == 45:   # '-'
                negative = True
                i += 1
            # Up to 19 digits fit an unsigned 64-bit word (nanosecond timestamps have 19).
            # orjson reads integers up to 2**64 - 1 and down to -2**63 as int (beyond: float,
            # left to it), and refuses leading zeros (left to it, to raise its error).
            if 1 <= end - i <= 19 and not (p[i] == 48 and end - i > 1):
                while i < end and 48 <= p[i] <= 57:
                    number = number * 10 + (p[i] - 48)
                    i += 1
                if i == end:
                    if not negative:
                        return number
                    if number < 9223372036854775808ULL:
                        return -<long long>number
                    if number == 9223372036854775808ULL:
                        smallest = -9223372036854775807
                        return smallest - 1
        try:
            return self._loads(PyBytes_FromStringAndSize(<const char*>p + start, end - start))
        except ValueError:   # not a JSON value (orjson's error is a ValueError): the general path says so
            return None

    cdef object _rows(self, const unsigned char *p, Py_ssize_t *at, Py_ssize_t n, _Keys *keys,
                      bint is_order):
        """The array at ``at[0]`` as a list of parameter tuples (``at[0]`` moves past it), or
        None when it is not an array of canonical objects holding every key."""
        cdef Py_ssize_t i = at[0]
        cdef Py_ssize_t nkeys = keys.count
        cdef Py_ssize_t row_start, key_start, key_end, key_length, value_end, k
        cdef bint escaped, spaced
        cdef list rows = []
        cdef list values
        cdef object value
        cdef Py_ssize_t found
        if i >= n or p[i] != 91:   # '['
            return None
        i += 1
        if i < n and p[i] == 93:
            at[0] = i + 1
            return rows
        while True:
            if i >= n or p[i] != 123:   # each row is an object, written without whitespace
                return None
            row_start = i
            values = [None] * nkeys
            found = 0
            i += 1
            if i < n and p[i] == 125:
                return None             # an empty row lacks the columns
            while True:
                if i >= n or p[i] != 34:
                    return None
                escaped = False
                key_start = i + 1
                key_end = _string_end(p, i, n, &escaped)
                if key_end < 0 or key_end >= n or p[key_end] != 58:   # ':'
                    return None
                i = key_end + 1
                spaced = False
                value_end = _value_end(p, i, n, &spaced)
                if value_end <= i or spaced:
                    return None
                if not escaped:
                    key_length = key_end - 1 - key_start
                    for k in range(nkeys):
                        if (keys.length[k] == key_length and keys.name[k][0] == p[key_start]
                                and memcmp(keys.name[k], p + key_start, key_length) == 0):
                            value = self._value(p, i, value_end)
                            if value is None:
                                return None     # a null column: the general path reports it
                            if values[k] is None:
                                found += 1
                            values[k] = value
                            break
                i = value_end
                if i < n and p[i] == 44:        # ','
                    i += 1
                    continue
                if i < n and p[i] == 125:       # '}'
                    i += 1
                    break
                return None
            if found != nkeys:
                return None
            if is_order:
                values.append(0 if values[self._state_index] in self._terminal else 1)
            values.append(PyUnicode_DecodeUTF8(<const char*>p + row_start, i - row_start, "strict"))
            rows.append(tuple(values))
            if i < n and p[i] == 44:
                i += 1
                continue
            if i < n and p[i] == 93:            # ']'
                at[0] = i + 1
                return rows
            return None

    def scan(self, bytes payload not None):
        """``(orders, executions, cl_ord_ids_json, meta_json)`` of an ``o`` record, the last
        two as bytes for orjson.loads; None when the record is not in the expected shape."""
        cdef const unsigned char *p = <const unsigned char*>PyBytes_AS_STRING(payload)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
        cdef Py_ssize_t i, key_start, key_end, value_end
        cdef bint escaped, spaced
        cdef object orders = None, executions = None, cl_ord_ids = None, meta = None
        cdef unsigned char name
        if n < 2 or p[0] != 111:   # 'o'
            return None
        while n > 1 and _is_space(p[n - 1]):   # whitespace after the object is valid JSON
            n -= 1
        i = 1
        if p[i] != 123 or p[n - 1] != 125:
            return None
        i += 1
        while i < n - 1:
            if p[i] != 34:
                return None
            escaped = False
            key_start = i + 1
            key_end = _string_end(p, i, n, &escaped)
            # The four keys are one letter each; anything else is for the general path.
            if key_end != key_start + 2 or escaped or key_end >= n or p[key_end] != 58:
                return None
            name = p[key_start]
            i = key_end + 1
            if name == 111 and orders is None:          # "o"
                orders = self._rows(p, &i, n, &self._order_keys, True)
                if orders is None:
                    return None
            elif name == 120 and executions is None:    # "x"
                executions = self._rows(p, &i, n, &self._execution_keys, False)
                if executions is None:
                    return None
            elif (name == 99 and cl_ord_ids is None) or (name == 109 and meta is None):   # "c" "m"
                spaced = False
                value_end = _value_end(p, i, n, &spaced)
                if value_end <= i:
                    return None
                if name == 99:
                    cl_ord_ids = PyBytes_FromStringAndSize(<const char*>p + i, value_end - i)
                else:
                    meta = PyBytes_FromStringAndSize(<const char*>p + i, value_end - i)
                i = value_end
            else:
                return None
            if i < n - 1 and p[i] == 44 and i + 1 < n - 1:
                i += 1
            elif i != n - 1:
                return None
        if orders is None or executions is None or cl_ord_ids is None or meta is None:
            return None
        return orders, executions, cl_ord_ids, meta
