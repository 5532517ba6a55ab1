# cython: freethreading_compatible = False
"""Compiled limit order book for one instrument (price-time priority).

The semantics are those of ``shared/spec/matching.md``; the design is described in docs/core.md.
Everything below the Python-facing ``def`` methods runs without the GIL and without creating
Python objects: fills and ended orders are collected into C buffers and turned into Python
results (or numpy arrays, in :meth:`OrderBook.process`) after the operation.
"""
from collections import namedtuple
from enum import IntEnum

import numpy as np

cimport cython
from cpython.long cimport PyLong_Check
from cpython.buffer cimport PyBUF_FORMAT, PyBUF_ND
from cpython.object cimport PyObject_RichCompare
from libc.stdint cimport INT64_MAX, INT64_MIN, int32_t, int64_t, uint8_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memmove, memset


cdef extern from "stdlib.h" nogil:
    int posix_memalign(void** memptr, size_t alignment, size_t size)


cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object obj, int* overflow) except? -1


# ------------------------------------------------------------------------------------------------
# Public enums and value types
# ------------------------------------------------------------------------------------------------

class Side(IntEnum):
    BUY = 1
    SELL = 2


class OrdType(IntEnum):
    MARKET = 1
    LIMIT = 2
    STOP = 3
    STOP_LIMIT = 4


class TimeInForce(IntEnum):
    DAY = 0
    GTC = 1
    IOC = 3
    FOK = 4
    GTD = 6


class STPMode(IntEnum):
    NONE = 0
    CANCEL_TAKER = 1
    CANCEL_MAKER = 2
    CANCEL_BOTH = 3


class Status(IntEnum):
    """Outcome of an operation for the order it is about (values follow FIX OrdStatus)."""
    RESTING = 0            # live in the book, nothing filled
    PARTIALLY_FILLED = 1   # live in the book, some filled
    FILLED = 2             # done: fully filled (or replaced down to its filled quantity)
    CANCELLED = 4          # done: remainder cancelled (IOC, FOK, MARKET, STP ...), maybe after fills
    REJECTED = 8           # refused; the book is unchanged
    STOP_PENDING = 20      # a stop waiting for its trigger


class Reason(IntEnum):
    """Why an order ended without a fill of its remainder, or why a command was rejected."""
    NONE = 0
    IOC_REMAINDER = 1
    MARKET_REMAINDER = 2
    FOK_UNFILLABLE = 3
    STP_TAKER = 4
    STP_MAKER = 5
    USER_CANCEL = 6
    REPLACED_TO_FILLED = 7
    END_OF_DAY = 8
    EXPIRED = 9
    INVALID_QTY = 20
    INVALID_PRICE = 21
    INVALID_STOP_PRICE = 22
    INVALID_DISPLAY_QTY = 23
    INVALID_POST_ONLY = 24
    DUPLICATE_ID = 25
    POST_ONLY_WOULD_MATCH = 26
    UNKNOWN_ORDER = 27
    TOO_LATE = 28
    INVALID_ENUM = 29
    INVALID_EXPIRE_TIME = 30


REASON_TEXT = {
    Reason.NONE: "",
    Reason.IOC_REMAINDER: "IOC remainder cancelled",
    Reason.MARKET_REMAINDER: "market order remainder cancelled (no more liquidity)",
    Reason.FOK_UNFILLABLE: "fill-or-kill order cannot be filled in full",
    Reason.STP_TAKER: "self-trade prevention cancelled the incoming order",
    Reason.STP_MAKER: "self-trade prevention cancelled the resting order",
    Reason.USER_CANCEL: "cancelled on request",
    Reason.REPLACED_TO_FILLED: "replaced to a quantity not above the filled quantity",
    Reason.END_OF_DAY: "day order cancelled at end of day",
    Reason.EXPIRED: "good-till-date order expired",
    Reason.INVALID_QTY: "quantity must be a positive integer not above MAX_QTY",
    Reason.INVALID_PRICE: "price must be a positive integer not above MAX_PRICE",
    Reason.INVALID_STOP_PRICE: "stop price must be a positive integer not above MAX_PRICE",
    Reason.INVALID_DISPLAY_QTY:
        "display quantity must be 0, or below the quantity on a resting LIMIT order",
    Reason.INVALID_POST_ONLY: "post-only is allowed only on a resting LIMIT order",
    Reason.DUPLICATE_ID: "order id already used in this book",
    Reason.POST_ONLY_WOULD_MATCH: "post-only order would match on entry",
    Reason.UNKNOWN_ORDER: "unknown order id",
    Reason.TOO_LATE: "order already done (filled or cancelled)",
    Reason.INVALID_ENUM: "unknown enum value",
    Reason.INVALID_EXPIRE_TIME: "GTD order needs a positive expire_time",
}


# Fill and Cancel behave like namedtuples (attributes, unpacking, indexing, equality with plain
# tuples) but are small C structs with a free list: building them is most of the cost of a
# per-call result, and the int fields become Python ints only when read.

@cython.freelist(1024)
@cython.final
cdef class Fill:
    """One trade: resting (maker) order id, incoming (taker) order id, price (the maker's), qty.

    Behaves like the namedtuple ``Fill(maker_id, taker_id, price, qty)``: attributes, unpacking,
    indexing, and equality/ordering/hash as the 4-tuple.
    """
    cdef readonly int64_t maker_id
    cdef readonly int64_t taker_id
    cdef readonly int64_t price
    cdef readonly int64_t qty

    def __init__(self, int64_t maker_id, int64_t taker_id, int64_t price, int64_t qty):
        self.maker_id = maker_id
        self.taker_id = taker_id
        self.price = price
        self.qty = qty

    cdef tuple _tuple(self):
        return (self.maker_id, self.taker_id, self.price, self.qty)

    def __len__(self):
        return 4

    def __getitem__(self, i):
        if type(i) is int:
            if i < 0:
                i += 4
            if i == 0:
                return self.maker_id
            if i == 1:
                return self.taker_id
            if i == 2:
                return self.price
            if i == 3:
                return self.qty
            raise IndexError("Fill index out of range")
        return self._tuple()[i]

    def __iter__(self):
        return iter(self._tuple())

    def __richcmp__(self, other, int op):
        if isinstance(other, Fill):
            other = (<Fill>other)._tuple()
        elif not isinstance(other, tuple):
            return NotImplemented
        return PyObject_RichCompare(self._tuple(), other, op)

    def __hash__(self):
        return hash(self._tuple())

    def __repr__(self):
        return (f"Fill(maker_id={self.maker_id}, taker_id={self.taker_id}, price={self.price}, "
                f"qty={self.qty})")

    def __reduce__(self):
        return (Fill, self._tuple())

    def _asdict(self):
        return {"maker_id": self.maker_id, "taker_id": self.taker_id, "price": self.price,
                "qty": self.qty}


@cython.freelist(256)
@cython.final
cdef class Cancel:
    """An order ended by an operation without a fill of that quantity: id, qty, Reason.

    Behaves like the namedtuple ``Cancel(order_id, qty, reason)``.
    """
    cdef readonly int64_t order_id
    cdef readonly int64_t qty
    cdef int _reason

    def __init__(self, int64_t order_id, int64_t qty, reason):
        self.order_id = order_id
        self.qty = qty
        self._reason = int(Reason(reason))

    @property
    def reason(self):
        return _REASON_BY_CODE[self._reason]

    cdef tuple _tuple(self):
        return (self.order_id, self.qty, _REASON_BY_CODE[self._reason])

    def __len__(self):
        return 3

    def __getitem__(self, i):
        return self._tuple()[i]

    def __iter__(self):
        return iter(self._tuple())

    def __richcmp__(self, other, int op):
        if isinstance(other, Cancel):
            other = (<Cancel>other)._tuple()
        elif not isinstance(other, tuple):
            return NotImplemented
        return PyObject_RichCompare(self._tuple(), other, op)

    def __hash__(self):
        return hash(self._tuple())

    def __repr__(self):
        return (f"Cancel(order_id={self.order_id}, qty={self.qty}, "
                f"reason={_REASON_BY_CODE[self._reason]!r})")

    def __reduce__(self):
        return (Cancel, self._tuple())

    def _asdict(self):
        return {"order_id": self.order_id, "qty": self.qty, "reason": self.reason}


cdef inline Fill _new_fill(const FillRec* f):
    cdef Fill r = Fill.__new__(Fill)
    r.maker_id = f.maker_id
    r.taker_id = f.taker_id
    r.price = f.price
    r.qty = f.qty
    return r


cdef inline Cancel _new_cancel(const EndedRec* e):
    cdef Cancel r = Cancel.__new__(Cancel)
    r.order_id = e.order_id
    r.qty = e.qty
    r._reason = e.reason
    return r

OrderState = namedtuple("OrderState", "side price qty leaves displayed filled")
OrderState.__doc__ = ("A live order: side, limit price, total qty, leaves, displayed qty "
                      "(0 for a pending stop) and filled qty.")

OP_SUBMIT = 1
OP_CANCEL = 2
OP_REPLACE = 3
OP_END_OF_DAY = 4      # extension: end_of_day() inside a batch
OP_EXPIRE = 5          # extension: expire(now) inside a batch, now taken from expire_time

COMMAND_DTYPE = np.dtype([
    ("op", "u1"), ("order_id", "i8"), ("side", "u1"), ("price", "i8"), ("qty", "i8"),
    ("ord_type", "u1"), ("tif", "u1"), ("display_qty", "i8"), ("stop_price", "i8"),
    ("owner", "i8"), ("stp", "u1"), ("post_only", "u1"), ("expire_time", "i8"),
], align=True)
FILL_DTYPE = np.dtype([("cmd_index", "i8"), ("maker_id", "i8"), ("taker_id", "i8"),
                       ("price", "i8"), ("qty", "i8")], align=True)
ENDED_DTYPE = np.dtype([("cmd_index", "i8"), ("order_id", "i8"), ("qty", "i8"),
                        ("reason", "i4")], align=True)

# Quantities and prices are capped so that sums (level totals, volumes) cannot overflow int64.
MAX_QTY = 1 << 40
MAX_PRICE = 1 << 53

assert COMMAND_DTYPE.itemsize == sizeof(Command), "COMMAND_DTYPE does not match the C layout"
assert FILL_DTYPE.itemsize == sizeof(FillRec)
assert sizeof(Order) == 64, "an Order must fill exactly one cache line"
assert C_MAX_QTY == MAX_QTY and C_MAX_PRICE == MAX_PRICE
assert ENDED_DTYPE.itemsize == sizeof(EndedRec)

# Enum members by code, so building results does not go through IntEnum.__call__.
cdef dict _STATUS_BY_CODE = {int(s): s for s in Status}
cdef list _REASON_BY_CODE = [None] * 64
for _r in Reason:
    _REASON_BY_CODE[int(_r)] = _r
cdef list _SIDE_BY_CODE = [None, Side.BUY, Side.SELL]
_COMMAND_FIELDS = COMMAND_DTYPE.names


# Compile-time constants (module-level cdef variables would be loaded from memory each use).
# And: every `cdef inline` function of this module is inlined for real.  GCC's size heuristics
# otherwise keep rest_order / match_order / submit_order as separate calls, and their prologues
# and register spills cost ~30 instructions per command on the batch path (measured with
# callgrind: 332 -> 303 instructions per command, about 8% of the batch time).
cdef extern from *:
    """
    #if defined(__GNUC__)
    #undef CYTHON_INLINE
    #define CYTHON_INLINE inline __attribute__((always_inline, unused))
    #endif
    #define CB_GOLDEN 0x9E3779B97F4A7C15ULL
    #define CB_MAX_QTY (((int64_t)1) << 40)
    #define CB_MAX_PRICE (((int64_t)1) << 53)
    """
    uint64_t GOLDEN "CB_GOLDEN"
    int64_t C_MAX_QTY "CB_MAX_QTY"
    int64_t C_MAX_PRICE "CB_MAX_PRICE"

cdef enum:
    EMPTY = -1
    # what submit/replace return when they did not reject: the order's status is then worked
    # out by subject_status(), which the batch path does not need
    ACCEPTED = 1000
# A live-index slot holds a pool index (low IDX_BITS bits) and its distance from its home slot
# (high bits, saturating at DIST_MAX): lookups skip entries that cannot be theirs and deletions
# shift entries back without reading the pool.  This caps the pool at 2**26 - 1 live orders.
cdef enum:
    IDX_BITS = 26
    IDX_MASK = (1 << 26) - 1
    DIST_MAX = 31
cdef int64_t NO_KEY = INT64_MIN          # empty slot marker of the seen-id set

cdef inline int sidx(int side) noexcept nogil:
    return 0 if side == BUY else 1

cdef inline int64_t side_key(int s, int64_t price) noexcept nogil:
    return price if s == 0 else -price

cdef inline int64_t i64min(int64_t a, int64_t b) noexcept nogil:
    return a if a < b else b

cdef inline uint64_t hash_slot(int64_t key, int32_t bits) noexcept nogil:
    # Fibonacci hashing: good spread for sequential and random ids alike.
    return (<uint64_t>key * GOLDEN) >> (64 - bits)


cdef inline uint64_t live_home(int64_t order_id, int32_t bits) noexcept nogil:
    # Home slot of an id in the live index.  (Keeping runs of consecutive ids in one cache line
    # was tried: it lengthens probe runs and measured slower.)
    return hash_slot(order_id, bits)


cdef inline int32_t pmap_find(SideBook* sb, Level* levels, int64_t price) noexcept nogil:
    cdef uint64_t mask = (<uint64_t>1 << sb.pmap_bits) - 1
    cdef uint64_t h = hash_slot(price, sb.pmap_bits)
    cdef int32_t li
    while True:
        li = sb.pmap[h]
        if li == EMPTY or levels[li].price == price:
            return li
        h = (h + 1) & mask


cdef inline void pmap_insert(SideBook* sb, int64_t price, int32_t li) noexcept nogil:
    cdef uint64_t mask = (<uint64_t>1 << sb.pmap_bits) - 1
    cdef uint64_t h = hash_slot(price, sb.pmap_bits)
    while sb.pmap[h] != EMPTY:
        h = (h + 1) & mask
    sb.pmap[h] = li


cdef inline void pmap_remove(SideBook* sb, Level* levels, int32_t li) noexcept nogil:
    # linear probing, backward-shift deletion (levels are few and their array is hot)
    cdef int32_t bits = sb.pmap_bits
    cdef uint64_t mask = (<uint64_t>1 << bits) - 1
    cdef uint64_t i = hash_slot(levels[li].price, bits), j, home
    while sb.pmap[i] != li:
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        if sb.pmap[j] == EMPTY:
            break
        home = hash_slot(levels[sb.pmap[j]].price, bits)
        if ((j - home) & mask) >= ((j - i) & mask):
            sb.pmap[i] = sb.pmap[j]
            i = j
    sb.pmap[i] = EMPTY


cdef inline bint plain_limit(const Command* c) noexcept nogil:
    # The common order, valid by construction of this test (see _validate for the full rules):
    # a LIMIT DAY/GTC/IOC without display qty, post-only or GTD, with sane qty and price.
    return (c.ord_type == OT_LIMIT and (c.side == BUY or c.side == SELL)
            and (c.tif == TIF_DAY or c.tif == TIF_GTC or c.tif == TIF_IOC)
            and c.stp <= STP_CANCEL_BOTH and c.display_qty == 0 and c.post_only == 0
            and 0 < c.qty <= C_MAX_QTY and 0 < c.price <= C_MAX_PRICE)


cdef inline bint has_room(OrderBook b) noexcept nogil:
    # _reserve()'s fast path: everything an operation may need is already there
    cdef int32_t need = 2 + b.n_stops
    return (b.free_head != EMPTY and b.level_free_count >= need
            and b.sides[0].n + need <= b.sides[0].cap and b.sides[1].n + need <= b.sides[1].cap
            and 2 * (b.live_hashed + 1) <= (1 << b.live_bits))


# The hot internals, as module-level inline functions: class methods sit in a vtable, which keeps
# the C compiler from inlining them into their callers.  The class keeps same-named methods (the
# .pxd contract) that forward here.

cdef inline void emit_fill(OrderBook self, int64_t maker, int64_t taker, int64_t price,
                           int64_t qty) noexcept nogil:
    cdef FillRec* p
    if self.n_fills == self.fills_cap:
        p = <FillRec*> realloc(self.fills, 2 * self.fills_cap * sizeof(FillRec))
        if p == NULL:
            self.oom = True     # the book stays consistent; only the report is lost
            return
        self.fills = p
        self.fills_cap *= 2
    p = &self.fills[self.n_fills]
    p.cmd_index = self.cmd_index
    p.maker_id = maker
    p.taker_id = taker
    p.price = price
    p.qty = qty
    self.n_fills += 1


cdef inline int32_t* window_slot(OrderBook self, int64_t order_id) noexcept nogil:
    # The id window's slot of order_id, or NULL when the id is outside the window.  The window
    # covers ids [win_base, win_base + 2**win_bits); slot = id mod 2**win_bits.
    if <uint64_t>order_id - <uint64_t>self.win_base <= self.win_mask:
        return &self.win[<uint64_t>order_id & self.win_mask]
    return NULL


cdef inline void hash_insert(OrderBook self, int32_t idx) noexcept nogil:
    cdef uint64_t mask = (<uint64_t>1 << self.live_bits) - 1
    cdef uint64_t h = live_home(self.pool[idx].id, self.live_bits)
    cdef int32_t dist = 0
    while self.live_slots[h] != EMPTY:
        h = (h + 1) & mask
        dist += 1
    self.live_slots[h] = idx | ((dist if dist < DIST_MAX else DIST_MAX) << IDX_BITS)
    self.live_hashed += 1


cdef inline void live_insert(OrderBook self, int32_t idx) noexcept nogil:
    # Ids inside the window take their window slot (no hashing, no probing); the others go to
    # the hash index (room reserved by has_room()/_reserve()).
    cdef int64_t order_id = self.pool[idx].id
    cdef int32_t* w = window_slot(self, order_id)
    if w != NULL:
        w[0] = idx
    else:
        hash_insert(self, idx)
        if order_id > self.win_base and order_id > self.hashed_above:
            self.hashed_above = order_id
    self.live_count += 1
    self.pool[idx].flags |= F_INDEXED


cdef inline void live_remove(OrderBook self, int32_t idx) noexcept nogil:
    cdef int32_t* w = window_slot(self, self.pool[idx].id)
    if w != NULL:
        w[0] = EMPTY
    else:
        hash_remove(self, idx)
    self.live_count -= 1
    self.pool[idx].flags &= ~F_INDEXED


cdef inline void hash_remove(OrderBook self, int32_t idx) noexcept nogil:
    # Linear probing with backward-shift deletion.  Each slot carries its distance from its
    # home slot, so neither the search (by pool index) nor the shift reads other orders.
    cdef int32_t bits = self.live_bits
    cdef uint64_t mask = (<uint64_t>1 << bits) - 1
    cdef uint64_t i = live_home(self.pool[idx].id, bits), j, gap
    cdef int32_t s, d
    while (self.live_slots[i] & IDX_MASK) != idx:      # (EMPTY & IDX_MASK is no pool index)
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        s = self.live_slots[j]
        if s == EMPTY:
            break
        d = s >> IDX_BITS
        if d == DIST_MAX:
            d = <int32_t>((j - live_home(self.pool[s & IDX_MASK].id, bits)) & mask)
        gap = (j - i) & mask
        if <uint64_t>d >= gap:          # its home is at or before the hole: move it back
            d -= <int32_t>gap
            self.live_slots[i] = (s & IDX_MASK) | ((d if d < DIST_MAX else DIST_MAX)
                                                   << IDX_BITS)
            i = j
    self.live_slots[i] = EMPTY
    self.live_hashed -= 1


cdef inline void finish_filled(OrderBook self, int32_t idx) noexcept nogil:
    cdef Order* o = &self.pool[idx]
    if idx == self.subj:
        self.subj_ended = True
        self.subj_reason = R_NONE
        self.subj_filled = o.qty
    if o.flags & F_INDEXED:
        live_remove(self, idx)
    self._free_order(idx)


cdef inline void enter_order(OrderBook self, int32_t idx) noexcept nogil:
    # An order entering the book (new, re-entered by replace, or a triggered stop): match,
    # then rest or cancel the remainder.
    cdef Order* o = &self.pool[idx]
    cdef bint is_market = o.ord_type == OT_MARKET or o.ord_type == OT_STOP
    if o.tif == TIF_FOK and self._fok_available(idx, is_market) < o.leaves:
        self._end(idx, R_FOK_UNFILLABLE)
        return
    # (a passive order skips the matching loop altogether)
    if (is_market or would_match(self, o.side, o.price)) and match_order(self, idx, is_market):
        return
    o = &self.pool[idx]
    if o.leaves == 0:
        finish_filled(self, idx)
    elif is_market:
        self._end(idx, R_MARKET_REMAINDER)
    elif o.tif == TIF_IOC or o.tif == TIF_FOK:
        self._end(idx, R_IOC_REMAINDER)
    else:
        rest_order(self, idx)


cdef inline int submit_order(OrderBook self, const Command* c) noexcept nogil:
    cdef int32_t reason, idx
    cdef Order* o
    cdef int ot
    # the id's bit when the dense-id bitmap covers it (the common case: one probe for the
    # duplicate check and one store to record it)
    cdef uint64_t off = <uint64_t>c.order_id - <uint64_t>self.seen_base
    cdef bint in_window = off < <uint64_t>self.seen_words * 64
    cdef bint plain = plain_limit(c)
    self.subj_order_id = c.order_id
    reason = R_NONE if plain else self._validate(c)
    if reason != R_NONE:
        return self._reject(c.order_id, c.qty, reason)
    if in_window:
        if (self.seen_bitmap[off >> 6] >> (off & 63)) & 1:
            return self._reject(c.order_id, c.qty, R_DUPLICATE_ID)
    elif self._seen_contains(c.order_id):
        return self._reject(c.order_id, c.qty, R_DUPLICATE_ID)
    if c.post_only and would_match(self, c.side, c.price):
        return self._reject(c.order_id, c.qty, R_POST_ONLY_WOULD_MATCH)
    if not has_room(self) and not self._reserve():
        self.oom = True
        return ST_REJECTED
    if (<uint64_t>c.order_id - <uint64_t>self.win_base > self.win_mask
            and not self._slide_window(c.order_id)):
        self.oom = True
        return ST_REJECTED
    if in_window:
        self.seen_bitmap[off >> 6] |= (<uint64_t>1) << (off & 63)
        self.seen_count += 1
    elif self._reserve_id(c.order_id):
        self._seen_insert(c.order_id)
    else:
        self.oom = True
        return ST_REJECTED
    idx = self._alloc_order()
    o = &self.pool[idx]
    o.id = c.order_id
    o.qty = c.qty
    o.leaves = c.qty
    o.owner = c.owner
    o.side = c.side
    o.tif = c.tif
    self.subj = idx
    # (visible, prev, next and level are set when the order rests or waits, and unused before)
    if plain:
        # plain_limit() established: LIMIT, no display qty, not post-only, not GTD, stp <= 3
        o.price = c.price
        o.ord_type = OT_LIMIT
        o.flags = c.stp
        if not would_match(self, c.side, c.price):
            # what enter_order does for a plain limit that cannot trade, without its checks
            if c.tif == TIF_IOC:
                self._end(idx, R_IOC_REMAINDER)
            else:
                rest_order(self, idx)
        else:
            enter_order(self, idx)
    else:
        ot = c.ord_type
        o.price = c.price if (ot == OT_LIMIT or ot == OT_STOP_LIMIT) else 0
        if c.display_qty > 0 or c.tif == TIF_GTD:
            # read only for icebergs (F_ICEBERG) and GTD orders: not touching it otherwise
            # saves a cache miss per order
            self.extra[idx].display = c.display_qty
            self.extra[idx].expire_time = c.expire_time if c.tif == TIF_GTD else 0
        o.ord_type = ot
        o.flags = ((c.stp & F_STP_MASK) | (F_POST_ONLY if c.post_only else 0)
                   | (F_ICEBERG if c.display_qty > 0 else 0))
        if ot == OT_STOP or ot == OT_STOP_LIMIT:
            o.visible = c.stop_price
            live_insert(self, idx)
            self._append_pending(idx)
        else:
            enter_order(self, idx)
    if self.n_stops:
        self._check_stops()
    return ACCEPTED


cdef inline int32_t find_live(OrderBook self, int64_t order_id) noexcept nogil:
    cdef int32_t* w = window_slot(self, order_id)
    cdef uint64_t mask = (<uint64_t>1 << self.live_bits) - 1
    cdef uint64_t h
    cdef int32_t s, d, dist = 0
    if w != NULL:
        return w[0]             # an id inside the window is never in the hash index
    h = live_home(order_id, self.live_bits)
    while True:
        s = self.live_slots[h]
        if s == EMPTY:
            return EMPTY
        d = s >> IDX_BITS
        # only an entry exactly `dist` from its home can have our home: skip the others
        # without touching their pool entries
        if (d == dist or (d == DIST_MAX and dist > DIST_MAX)) \
                and self.pool[s & IDX_MASK].id == order_id:
            return s & IDX_MASK
        h = (h + 1) & mask
        dist += 1


cdef inline int cancel_order(OrderBook self, int64_t order_id, int32_t reason) noexcept nogil:
    cdef int32_t idx = find_live(self, order_id)
    self.subj_order_id = order_id
    if idx == EMPTY:
        return self._reject(order_id, 0,
                            R_TOO_LATE if self._seen_contains(order_id) else R_UNKNOWN_ORDER)
    self.subj = idx
    if self.pool[idx].flags & F_PENDING:
        self._unlink_pending(idx)
    else:
        self._unlink_resting(idx)
    self._end(idx, reason)
    return ST_CANCELLED


cdef inline int run_command(OrderBook self, const Command* c) noexcept nogil:
    self.subj = EMPTY                   # _begin()
    self.subj_ended = False
    if c.op == OP_SUBMIT_:
        return submit_order(self, c)
    if c.op == OP_CANCEL_:
        return cancel_order(self, c.order_id, R_USER_CANCEL)
    if c.op == OP_REPLACE_:
        return self._replace(c.order_id, c.qty, c.price)
    if c.op == OP_END_OF_DAY_:
        self._sweep(R_END_OF_DAY, 0)
        return ST_CANCELLED
    if c.op == OP_EXPIRE_:
        self._sweep(R_EXPIRED, c.expire_time)
        return ST_CANCELLED
    return self._reject(c.order_id, c.qty, R_INVALID_ENUM)


cdef inline void set_best(SideBook* sb, Level* levels, int s) noexcept nogil:
    # SideBook.best caches the best price (or a sentinel that no price reaches when the side is
    # empty), so that the entry check is one load, not three dependent ones
    if sb.n > 0:
        sb.best = levels[sb.lvl[sb.n - 1]].price
    else:
        sb.best = INT64_MIN if s == 0 else INT64_MAX


cdef inline void pop_best_level(OrderBook self, SideBook* sb) noexcept nogil:
    # remove_level() for the best level, the last of the sorted array: nothing to move
    cdef int32_t li = sb.lvl[sb.n - 1]
    pmap_remove(sb, self.levels, li)
    sb.n -= 1
    set_best(sb, self.levels, 0 if sb == &self.sides[0] else 1)
    self.levels[li].head = self.level_free
    self.level_free = li
    self.level_free_count += 1


cdef inline bint would_match(OrderBook self, int side, int64_t price) noexcept nogil:
    # would an order at this limit price trade on entry?
    # (an empty side's sentinel best price never matches)
    if side == BUY:
        return self.sides[1].best <= price
    return self.sides[0].best >= price


cdef inline int subject_status(OrderBook self) noexcept nogil:
    cdef Order* o
    if self.subj_ended:
        if self.subj_reason == R_NONE or self.subj_reason == R_REPLACED_TO_FILLED:
            return ST_FILLED
        return ST_CANCELLED
    o = &self.pool[self.subj]
    if o.flags & F_PENDING:
        return ST_STOP_PENDING
    return ST_PARTIALLY_FILLED if o.qty > o.leaves else ST_RESTING

# ============================================================================================
# commands (internal)
# ============================================================================================


cdef inline void rest_order(OrderBook self, int32_t idx) noexcept nogil:
    cdef Order* o = &self.pool[idx]
    cdef int s = sidx(o.side)
    cdef SideBook* sb = &self.sides[s]
    cdef int64_t key
    cdef int32_t pos, li = pmap_find(sb, self.levels, o.price)
    cdef Level* lv
    if li != EMPTY:
        lv = &self.levels[li]
    else:
        key = side_key(s, o.price)
        pos = self._level_pos(s, key)
        li = self.level_free               # reserved by _reserve()
        lv = &self.levels[li]
        self.level_free = lv.head
        self.level_free_count -= 1
        if pos < sb.n:
            memmove(&sb.keys[pos + 1], &sb.keys[pos], (sb.n - pos) * sizeof(int64_t))
            memmove(&sb.lvl[pos + 1], &sb.lvl[pos], (sb.n - pos) * sizeof(int32_t))
        sb.keys[pos] = key
        sb.lvl[pos] = li
        sb.n += 1
        if pos == sb.n - 1:
            sb.best = o.price
        pmap_insert(sb, o.price, li)
        lv.price = o.price
        lv.qty = 0
        lv.count = 0
        lv.head = EMPTY
        lv.tail = EMPTY
    if o.flags & F_ICEBERG:
        o.visible = i64min(self.extra[idx].display, o.leaves)
    else:
        o.visible = o.leaves
    o.level = li
    o.next = EMPTY
    o.prev = lv.tail
    if lv.tail != EMPTY:
        self.pool[lv.tail].next = idx
    else:
        lv.head = idx
    lv.tail = idx
    lv.count += 1
    lv.qty += o.visible
    if not (o.flags & F_INDEXED):
        live_insert(self, idx)


cdef inline bint match_order(OrderBook self, int32_t idx, bint is_market) noexcept nogil:
    # Match the incoming order against the opposite side.  Returns True when STP ended it.
    cdef Order* t = &self.pool[idx]
    cdef SideBook* opp = &self.sides[1 - sidx(t.side)]
    cdef int stp = t.flags & F_STP_MASK
    cdef int32_t li, m
    cdef Level* lv
    cdef Order* mk
    cdef int64_t q
    while t.leaves > 0 and opp.n > 0:
        li = opp.lvl[opp.n - 1]
        lv = &self.levels[li]
        if not is_market:
            if t.side == BUY and lv.price > t.price:
                break
            if t.side == SELL and lv.price < t.price:
                break
        while t.leaves > 0 and lv.head != EMPTY:
            m = lv.head
            mk = &self.pool[m]
            if stp != STP_NONE and mk.owner == t.owner:
                if stp == STP_CANCEL_TAKER:
                    self._end(idx, R_STP_TAKER)
                    return True
                # CANCEL_MAKER / CANCEL_BOTH: the whole resting order goes
                lv.head = mk.next
                if mk.next != EMPTY:
                    self.pool[mk.next].prev = EMPTY
                else:
                    lv.tail = EMPTY
                lv.count -= 1
                lv.qty -= mk.visible
                mk.level = EMPTY
                self._end(m, R_STP_MAKER)
                if stp == STP_CANCEL_BOTH:
                    if lv.head == EMPTY:
                        pop_best_level(self, opp)
                    self._end(idx, R_STP_TAKER)
                    return True
                continue
            q = i64min(t.leaves, mk.visible)
            emit_fill(self, mk.id, t.id, lv.price, q)
            self.last = lv.price
            mk.visible -= q
            mk.leaves -= q
            t.leaves -= q
            lv.qty -= q
            if mk.visible == 0:
                # leave the head of the level
                lv.head = mk.next
                if mk.next != EMPTY:
                    self.pool[mk.next].prev = EMPTY
                else:
                    lv.tail = EMPTY
                if mk.leaves == 0:
                    lv.count -= 1
                    mk.level = EMPTY
                    finish_filled(self, m)
                else:
                    # iceberg refresh: a new slice at the back of the level, new priority
                    mk.visible = i64min(self.extra[m].display, mk.leaves)
                    lv.qty += mk.visible
                    mk.next = EMPTY
                    mk.prev = lv.tail
                    if lv.tail != EMPTY:
                        self.pool[lv.tail].next = m
                    else:
                        lv.head = m
                    lv.tail = m
        if lv.head == EMPTY:
            pop_best_level(self, opp)
    return False


cdef int64_t _as_i64(object value, str name) except? -1:
    """int64 from a Python integer, with a TypeError/ValueError naming the argument."""
    cdef int overflow = 0
    cdef long long r
    if not PyLong_Check(value):
        if isinstance(value, float) or not hasattr(value, "__index__"):
            raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
        value = value.__index__()
    r = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow:
        raise ValueError(f"{name} out of int64 range: {value!r}")
    return r


cdef str _enum_error(int64_t side, int64_t ord_type, int64_t tif, int64_t stp):
    if side != BUY and side != SELL:
        return f"unknown side {side}"
    if ord_type < OT_MARKET or ord_type > OT_STOP_LIMIT:
        return f"unknown ord_type {ord_type}"
    if not (tif == TIF_DAY or tif == TIF_GTC or tif == TIF_IOC or tif == TIF_FOK or tif == TIF_GTD):
        return f"unknown tif {tif}"
    if stp < STP_NONE or stp > STP_CANCEL_BOTH:
        return f"unknown stp mode {stp}"
    return None


@cython.freelist(64)
@cython.final
cdef class Result:
    """Outcome of submit/replace/cancel_result for the order concerned.

    ``status`` (Status), ``reason`` (text for REJECTED/CANCELLED, else ""), ``reason_code``
    (Reason), ``filled_qty``/``leaves_qty`` of the order after the operation, ``fills`` (Fill, in
    execution order, including those of stops triggered by the operation) and ``cancels``
    (Cancel: orders ended by the operation without a fill of that quantity).
    """
    cdef readonly int64_t order_id
    cdef readonly int64_t filled_qty
    cdef readonly int64_t leaves_qty
    cdef int _status
    cdef int _reason
    cdef object _fills
    cdef object _cancels
    cdef object _text

    @property
    def status(self):
        return _STATUS_BY_CODE[self._status]

    @property
    def reason_code(self):
        return _REASON_BY_CODE[self._reason]

    @property
    def reason(self):
        if self._text is not None:
            return self._text
        if self._status == ST_REJECTED or self._status == ST_CANCELLED:
            return REASON_TEXT[_REASON_BY_CODE[self._reason]]
        return ""

    @property
    def fills(self):
        return [] if self._fills is None else self._fills

    @property
    def cancels(self):
        return [] if self._cancels is None else self._cancels

    def __repr__(self):
        return (f"Result(order_id={self.order_id}, status={self.status.name}, "
                f"reason_code={self.reason_code.name}, filled_qty={self.filled_qty}, "
                f"leaves_qty={self.leaves_qty}, fills={self.fills!r}, cancels={self.cancels!r})")


def _as_command_array(commands):
    """The batch as a C-contiguous COMMAND_DTYPE array, or TypeError/ValueError saying why not."""
    if not isinstance(commands, np.ndarray):
        raise TypeError(f"commands must be a numpy array of COMMAND_DTYPE, "
                        f"got {type(commands).__name__}")
    if commands.ndim != 1:
        raise ValueError(f"commands must be one-dimensional, got shape {commands.shape}")
    dt = commands.dtype
    if dt == COMMAND_DTYPE:
        return np.ascontiguousarray(commands)
    if dt.names is None:
        raise TypeError(f"commands must have COMMAND_DTYPE, got unstructured dtype {dt}")
    missing = [f for f in _COMMAND_FIELDS if f not in dt.names]
    if missing:
        raise TypeError(f"commands dtype is missing field(s): {', '.join(missing)}")
    out = np.empty(len(commands), COMMAND_DTYPE)
    for f in _COMMAND_FIELDS:
        src = dt.fields[f][0]
        dst = COMMAND_DTYPE.fields[f][0]
        if src.kind not in "biu":
            raise TypeError(f"commands field {f!r} has dtype {src}, expected {dst}")
        col = commands[f]
        if src != dst and col.size:
            info = np.iinfo(dst)
            if src.kind != "b" and (col.min() < info.min or col.max() > info.max):
                raise ValueError(f"commands field {f!r} has values outside {dst}")
        out[f] = col
    return out


cdef char* _FORMAT_BYTE = "B"

# Report blocks that process() handed to numpy come back here when their last array goes away,
# and the next batch writes into them: a fresh block of several MB costs a page fault per 4 KiB
# page on first write (about 1,100 faults, a fifth of the time of the benchmark's 210,000-command
# batch).  One block per kind (fills, ended), the larger one kept, at most SPARE_MAX_BYTES each,
# so at most 2 * 64 MiB stays allocated after every array is gone.
cdef enum:
    SPARE_FILLS = 0
    SPARE_ENDED = 1
    SPARE_MIN_BYTES = 1 << 16
    SPARE_MAX_BYTES = 1 << 26
    # process() presizes its report buffers to one row per command, up to this many rows
    # (address space only: untouched pages cost nothing)
    PRESIZE_MAX_ROWS = 1 << 20

cdef void* _spare_ptr[2]
cdef size_t _spare_cap[2]


cdef void _spare_put(int kind, void* p, size_t cap) noexcept:
    if p == NULL:
        return
    if cap < SPARE_MIN_BYTES or cap > SPARE_MAX_BYTES or cap <= _spare_cap[kind]:
        free(p)
        return
    free(_spare_ptr[kind])
    _spare_ptr[kind] = p
    _spare_cap[kind] = cap


cdef void* _spare_take(int kind, size_t more_than, size_t* cap) noexcept:
    # the spare block of this kind if it is bigger than `more_than` bytes, else NULL
    cdef void* p = _spare_ptr[kind]
    if p == NULL or _spare_cap[kind] <= more_than:
        return NULL
    cap[0] = _spare_cap[kind]
    _spare_ptr[kind] = NULL
    _spare_cap[kind] = 0
    return p


@cython.final
cdef class _OwnedBuffer:
    """A malloc'd block exposed through the buffer protocol; when the last numpy array viewing it
    goes away it goes to the spare blocks (or is freed).  Lets process() return its report
    buffers without copying them."""
    cdef void* ptr
    cdef Py_ssize_t nbytes
    cdef size_t cap
    cdef int kind

    @staticmethod
    cdef _OwnedBuffer wrap(void* ptr, Py_ssize_t nbytes, size_t cap, int kind):
        cdef _OwnedBuffer b = _OwnedBuffer.__new__(_OwnedBuffer)
        b.ptr = ptr
        b.nbytes = nbytes
        b.cap = cap
        b.kind = kind
        return b

    def __getbuffer__(self, Py_buffer* view, int flags):
        view.buf = self.ptr
        view.obj = self
        view.len = self.nbytes
        view.readonly = 0
        view.itemsize = 1
        if flags & PyBUF_FORMAT:
            view.format = _FORMAT_BYTE
        else:
            view.format = NULL
        view.ndim = 1
        view.shape = &self.nbytes if (flags & PyBUF_ND) else NULL
        view.strides = NULL
        view.suboffsets = NULL
        view.internal = NULL

    def __releasebuffer__(self, Py_buffer* view):
        pass

    def __dealloc__(self):
        _spare_put(self.kind, self.ptr, self.cap)


# ------------------------------------------------------------------------------------------------
# The book
# ------------------------------------------------------------------------------------------------

cdef class OrderBook:
    """Limit order book for one instrument: price-time priority, integer ticks and quantities.

    ``capacity`` presizes the order pool and the id index (they grow as needed).  Not
    thread-safe: one writer.  While :meth:`process` runs (GIL released), other calls on the same
    book raise RuntimeError.
    """

    def __cinit__(self, capacity=1024):
        cdef int32_t i, ncap
        cdef int64_t cap = _as_i64(capacity, "capacity")
        if cap < 0 or cap > (1 << 26) - 1:
            raise ValueError(f"capacity must be in [0, 2**26), got {capacity}")
        ncap = <int32_t>cap if cap > 16 else 16
        self.pool = NULL
        self.extra = NULL
        self.levels = NULL
        self.live_slots = NULL
        self.win = NULL
        self.seen_keys = NULL
        self.seen_bitmap = NULL
        self.fills = NULL
        self.ended = NULL
        for i in range(2):
            self.sides[i].keys = NULL
            self.sides[i].lvl = NULL
            self.sides[i].n = 0
            self.sides[i].best = INT64_MIN if i == 0 else INT64_MAX
            self.sides[i].cap = 0
            self.sides[i].pmap = NULL
            self.sides[i].pmap_bits = 0
        self.pool_cap = 0
        self.free_head = EMPTY
        self.level_cap = 0
        self.level_free = EMPTY
        self.level_free_count = 0
        self.stop_head = self.stop_tail = EMPTY
        self.trig_head = self.trig_tail = EMPTY
        self.n_stops = 0
        self.min_buy_stop = INT64_MAX
        self.max_sell_stop = 0
        self.last = 0
        self.busy = False
        self.oom = False
        # pool
        self.pool_cap = 0
        if posix_memalign(<void**> &self.pool, 64, ncap * sizeof(Order)) != 0:
            self.pool = NULL
            raise MemoryError()
        self.extra = <OrderExtra*> malloc(ncap * sizeof(OrderExtra))
        if self.extra == NULL:
            raise MemoryError()
        self.pool_cap = ncap
        for i in range(ncap):
            self.pool[i].next = i + 1 if i + 1 < ncap else EMPTY
        self.free_head = 0
        # live id index: a window of one slot per pool entry over ids [0, 2**win_bits) to start
        # with, and a hash index (grown on demand) for the ids outside it
        self.win_bits = 4
        while (1 << self.win_bits) < ncap:
            self.win_bits += 1
        if posix_memalign(<void**> &self.win, 64, (1 << self.win_bits) * sizeof(int32_t)) != 0:
            self.win = NULL
            raise MemoryError()
        for i in range(1 << self.win_bits):
            self.win[i] = EMPTY
        self.win_mask = (<uint64_t>1 << self.win_bits) - 1
        self.win_base = 0
        self.hashed_above = INT64_MIN
        self.live_bits = 4
        if posix_memalign(<void**> &self.live_slots, 64,
                          (1 << self.live_bits) * sizeof(int32_t)) != 0:
            self.live_slots = NULL
            raise MemoryError()
        for i in range(1 << self.live_bits):
            self.live_slots[i] = EMPTY
        self.live_count = 0
        self.live_hashed = 0
        self.seen_bits = 4
        self.seen_keys = <int64_t*> malloc((1 << self.seen_bits) * sizeof(int64_t))
        if self.seen_keys == NULL:
            raise MemoryError()
        for i in range(1 << self.seen_bits):
            self.seen_keys[i] = NO_KEY
        self.seen_bitmap = NULL
        self.seen_words = 0
        self.seen_base = 0
        self.seen_hashed = 0
        self.seen_count = 0
        self.seen_sentinel = False
        self.fills_cap = 256
        self.fills = <FillRec*> malloc(self.fills_cap * sizeof(FillRec))
        self.ended_cap = 256
        self.ended = <EndedRec*> malloc(self.ended_cap * sizeof(EndedRec))
        if self.fills == NULL or self.ended == NULL:
            raise MemoryError()
        self.n_fills = self.n_ended = 0
        if not self._grow_levels() or not self._grow_side(0) or not self._grow_side(1):
            raise MemoryError()

    def __dealloc__(self):
        free(self.pool)
        free(self.extra)
        free(self.levels)
        free(self.live_slots)
        free(self.win)
        free(self.seen_keys)
        free(self.seen_bitmap)
        free(self.fills)
        free(self.ended)
        for i in range(2):
            free(self.sides[i].keys)
            free(self.sides[i].lvl)
            free(self.sides[i].pmap)

    # ============================================================================================
    # checks and storage
    # ============================================================================================

    cdef bint _grow_pool(self) noexcept nogil:
        cdef int32_t old = self.pool_cap, new = old * 2, i
        if new > IDX_MASK:
            new = IDX_MASK          # pool indices must fit the live index's slots
        if new <= old:
            return False
        cdef Order* p = NULL
        if posix_memalign(<void**> &p, 64, new * sizeof(Order)) != 0:
            return False
        cdef OrderExtra* x = <OrderExtra*> realloc(self.extra, new * sizeof(OrderExtra))
        if x == NULL:
            free(p)
            return False
        self.extra = x
        memcpy(p, self.pool, old * sizeof(Order))
        free(self.pool)
        self.pool = p
        for i in range(old, new):
            p[i].next = i + 1 if i + 1 < new else self.free_head
        self.free_head = old
        self.pool_cap = new
        if (1 << self.win_bits) < new:
            self._grow_window()
        return True

    cdef void _grow_window(self) noexcept nogil:
        # Double the id window (same base), keeping one slot per pool entry.  Skipped when the
        # hash index may hold an id of the added range, or when memory is short (the window is
        # only a faster path: ids outside it use the hash index).
        cdef uint64_t size = <uint64_t>1 << self.win_bits, new_mask = 2 * size - 1, j
        cdef int32_t* w = NULL
        cdef int32_t s
        if (self.win_bits >= 30 or self.win_base > INT64_MAX - 2 * <int64_t>size + 1
                or self.hashed_above >= self.win_base + <int64_t>size):
            return
        if posix_memalign(<void**> &w, 64, 2 * size * sizeof(int32_t)) != 0:
            return
        for j in range(2 * size):
            w[j] = EMPTY
        for j in range(size):
            s = self.win[j]
            if s != EMPTY:
                w[<uint64_t>self.pool[s].id & new_mask] = s
        free(self.win)
        self.win = w
        self.win_bits += 1
        self.win_mask = (<uint64_t>1 << self.win_bits) - 1

    cdef bint _grow_levels(self) noexcept nogil:
        cdef int32_t old = self.level_cap, new = old * 2 if old else 64, i
        cdef Level* p = <Level*> realloc(self.levels, new * sizeof(Level))
        if p == NULL:
            return False
        self.levels = p
        for i in range(old, new):
            p[i].head = i + 1 if i + 1 < new else self.level_free
        self.level_free = old
        self.level_free_count += new - old
        self.level_cap = new
        return True

    cdef bint _grow_side(self, int s) noexcept nogil:
        cdef SideBook* sb = &self.sides[s]
        cdef int32_t new = sb.cap * 2 if sb.cap else 64, bits = sb.pmap_bits, i
        cdef int64_t* k = <int64_t*> realloc(sb.keys, new * sizeof(int64_t))
        if k == NULL:
            return False
        sb.keys = k
        cdef int32_t* l = <int32_t*> realloc(sb.lvl, new * sizeof(int32_t))
        if l == NULL:
            return False
        sb.lvl = l
        sb.cap = new
        # the price map keeps load <= 1/2 at full capacity
        while (1 << bits) < 2 * new:
            bits += 1
        if bits == sb.pmap_bits:
            return True
        cdef int32_t* m = <int32_t*> malloc((<size_t>1 << bits) * sizeof(int32_t))
        if m == NULL:
            return False
        free(sb.pmap)
        sb.pmap = m
        sb.pmap_bits = bits
        for i in range(1 << bits):
            m[i] = EMPTY
        for i in range(sb.n):
            pmap_insert(sb, self.levels[sb.lvl[i]].price, sb.lvl[i])
        return True

    cdef bint _rebuild_live(self, int32_t bits) noexcept nogil:
        # Rehash the live orders into 2**bits slots.
        cdef int32_t old_n = 1 << self.live_bits, i, s, dist
        cdef uint64_t h, mask = (<uint64_t>1 << bits) - 1
        cdef int32_t* slots = NULL
        if posix_memalign(<void**> &slots, 64, (<size_t>1 << bits) * sizeof(int32_t)) != 0:
            return False
        for i in range(1 << bits):
            slots[i] = EMPTY
        for i in range(old_n):
            s = self.live_slots[i]
            if s != EMPTY:
                s &= IDX_MASK
                h = live_home(self.pool[s].id, bits)
                dist = 0
                while slots[h] != EMPTY:
                    h = (h + 1) & mask
                    dist += 1
                slots[h] = s | ((dist if dist < DIST_MAX else DIST_MAX) << IDX_BITS)
        free(self.live_slots)
        self.live_slots = slots
        self.live_bits = bits
        return True

    cdef bint _rebuild_seen(self, int32_t bits) noexcept nogil:
        # Rehash the id set into 2**bits slots, leaving out ids the bitmap now covers.
        cdef int64_t old_n = <int64_t>1 << self.seen_bits, i, k, kept = 0
        cdef uint64_t h, mask = (<uint64_t>1 << bits) - 1, off
        cdef uint64_t window = <uint64_t>self.seen_words * 64
        if bits > 40:
            return False
        cdef int64_t* keys = <int64_t*> malloc((<size_t>1 << bits) * sizeof(int64_t))
        if keys == NULL:
            return False
        for i in range(<int64_t>1 << bits):
            keys[i] = NO_KEY
        for i in range(old_n):
            k = self.seen_keys[i]
            if k == NO_KEY:
                continue
            off = <uint64_t>k - <uint64_t>self.seen_base
            if off < window:
                self.seen_bitmap[off >> 6] |= (<uint64_t>1) << (off & 63)
                continue
            h = hash_slot(k, bits)
            while keys[h] != NO_KEY:
                h = (h + 1) & mask
            keys[h] = k
            kept += 1
        free(self.seen_keys)
        self.seen_keys = keys
        self.seen_bits = bits
        self.seen_hashed = kept
        return True

    cdef bint _reserve_id(self, int64_t order_id) noexcept nogil:
        # Make room to record order_id as seen.  Ids go to the bitmap when it covers them, or
        # can be made to cover them at no more than 8 bytes per id seen so far (dense ids such
        # as 1, 2, 3 ... cost one bit each); other ids go to the hash set.
        cdef uint64_t off, words, allowed
        cdef uint64_t* bm
        if self.seen_count == 0 and self.seen_words == 0:
            self.seen_base = <int64_t>(<uint64_t>order_id & ~(<uint64_t>63))
        off = <uint64_t>order_id - <uint64_t>self.seen_base
        if off < <uint64_t>self.seen_words * 64:
            return True
        allowed = (<uint64_t>self.seen_count + 1024) * 64
        if off < allowed:
            words = <uint64_t>self.seen_words * 2
            if words < off // 64 + 1:
                words = off // 64 + 1
            if words < 16:
                words = 16
            bm = <uint64_t*> realloc(self.seen_bitmap, words * sizeof(uint64_t))
            if bm == NULL:
                return False
            memset(&bm[self.seen_words], 0, (words - self.seen_words) * sizeof(uint64_t))
            self.seen_bitmap = bm
            self.seen_words = words
            # ids already in the hash set that the window now covers move into the bitmap
            return self._rebuild_seen(self.seen_bits) if self.seen_hashed else True
        while 2 * (self.seen_hashed + 1) > (<int64_t>1 << self.seen_bits):
            if not self._rebuild_seen(self.seen_bits + 1):
                return False
        return True

    cdef bint _slide_window(self, int64_t order_id) noexcept nogil:
        # Called before an order with an id outside the id window enters the book.  If the id is
        # just above the window (or the window is empty) the window moves up to end at it: the
        # live orders whose ids fall out below move to the hash index.  Never over an id that
        # the hash may hold (hashed_above): an id is in the window or in the hash, not both.
        # Otherwise the order will go to the hash: make room there.  False: out of memory (the
        # index stays consistent).
        cdef uint64_t size = <uint64_t>1 << self.win_bits, mask = size - 1, step, j
        cdef uint64_t off = <uint64_t>order_id - <uint64_t>self.win_base
        # the window moves 1/16 of its size past the id, so that this runs once per size/16
        # new ids rather than for every id; it never reaches past INT64_MAX (it would wrap around
        # onto the lowest ids, which the hash may hold)
        cdef int64_t new_base
        if order_id > INT64_MAX - <int64_t>size:
            new_base = INT64_MAX - <int64_t>size + 1
        else:
            new_base = order_id + <int64_t>(size >> 4) - <int64_t>size + 1
        cdef int32_t* w
        cdef int32_t s
        cdef uint64_t leaving
        cdef int64_t moving = 0
        if (order_id > self.win_base and (off < 2 * size or self.live_count == self.live_hashed)
                and self.hashed_above < new_base):
            step = <uint64_t>new_base - <uint64_t>self.win_base
            leaving = step if step < size else size
            # room in the hash for every order that moves there first, so that a failure
            # leaves the index as it was
            for j in range(leaving):
                if self.win[(<uint64_t>self.win_base + j) & mask] != EMPTY:
                    moving += 1
            while 2 * (self.live_hashed + moving + 1) > (<int64_t>1 << self.live_bits):
                if not self._rebuild_live(self.live_bits + 1):
                    return False
            for j in range(leaving):
                w = &self.win[(<uint64_t>self.win_base + j) & mask]
                s = w[0]
                if s != EMPTY:
                    w[0] = EMPTY
                    hash_insert(self, s)
            self.win_base = new_base
            return True
        while 2 * (self.live_hashed + 1) > (1 << self.live_bits):
            if not self._rebuild_live(self.live_bits + 1):
                return False
        return True

    cdef bint _reserve(self) noexcept nogil:
        # One operation allocates at most one pool entry and rests at most 1 + n_stops orders
        # (the order itself and every stop its trades can trigger); make room for all of that
        # up front so that nothing can fail half-way through matching.
        cdef int32_t need = 2 + self.n_stops, j
        while self.free_head == EMPTY:
            if not self._grow_pool():
                return False
        while self.level_free_count < need:
            if not self._grow_levels():
                return False
        for j in range(2):
            while self.sides[j].n + need > self.sides[j].cap:
                if not self._grow_side(j):
                    return False
        if 2 * (self.live_hashed + 1) > (1 << self.live_bits):
            if not self._rebuild_live(self.live_bits + 1):
                return False
        return True

    cdef void _begin(self) noexcept nogil:
        # subj_reason / subj_filled / subj_order_id are always set before they are read
        self.subj = EMPTY
        self.subj_ended = False

    cdef int32_t _validate(self, const Command* c) noexcept nogil:
        cdef int ot = c.ord_type, tif = c.tif
        cdef bint resting_limit
        if c.side != BUY and c.side != SELL:
            return R_INVALID_ENUM
        if ot < OT_MARKET or ot > OT_STOP_LIMIT:
            return R_INVALID_ENUM
        if not (tif == TIF_DAY or tif == TIF_GTC or tif == TIF_IOC or tif == TIF_FOK
                or tif == TIF_GTD):
            return R_INVALID_ENUM
        if c.stp > STP_CANCEL_BOTH:
            return R_INVALID_ENUM
        if c.qty <= 0 or c.qty > C_MAX_QTY:
            return R_INVALID_QTY
        if (ot == OT_LIMIT or ot == OT_STOP_LIMIT) and (c.price <= 0 or c.price > C_MAX_PRICE):
            return R_INVALID_PRICE
        if (ot == OT_STOP or ot == OT_STOP_LIMIT) and (c.stop_price <= 0
                                                       or c.stop_price > C_MAX_PRICE):
            return R_INVALID_STOP_PRICE
        resting_limit = ot == OT_LIMIT and (tif == TIF_DAY or tif == TIF_GTC or tif == TIF_GTD)
        if c.display_qty != 0 and (c.display_qty < 0 or c.display_qty >= c.qty
                                   or not resting_limit):
            return R_INVALID_DISPLAY_QTY
        if c.post_only and not resting_limit:
            return R_INVALID_POST_ONLY
        if tif == TIF_GTD and c.expire_time <= 0:
            return R_INVALID_EXPIRE_TIME
        return R_NONE

    # ============================================================================================
    # queries
    # ============================================================================================

    cdef int32_t _find_live(self, int64_t order_id) noexcept nogil:
        return find_live(self, order_id)

    cdef bint _seen_contains(self, int64_t order_id) noexcept nogil:
        cdef uint64_t off = <uint64_t>order_id - <uint64_t>self.seen_base
        cdef uint64_t mask, h
        cdef int64_t k
        if off < <uint64_t>self.seen_words * 64:
            return (self.seen_bitmap[off >> 6] >> (off & 63)) & 1
        if order_id == NO_KEY:
            return self.seen_sentinel
        mask = (<uint64_t>1 << self.seen_bits) - 1
        h = hash_slot(order_id, self.seen_bits)
        while True:
            k = self.seen_keys[h]
            if k == order_id:
                return True
            if k == NO_KEY:
                return False
            h = (h + 1) & mask

    cdef bint _would_match(self, int side, int64_t price) noexcept nogil:
        return would_match(self, side, price)

    cdef int32_t _level_pos(self, int s, int64_t key) noexcept nogil:
        # First position whose key is >= key (keys ascending, best level last).  Most activity
        # is within a few levels of the touch: scan those from the end, then binary search.
        cdef SideBook* sb = &self.sides[s]
        cdef int32_t i = sb.n, stop = sb.n - 8 if sb.n > 8 else 0, lo = 0, hi, mid
        while i > stop and sb.keys[i - 1] >= key:
            i -= 1
        if i > stop or i == 0:
            return i
        hi = stop
        while lo < hi:
            mid = (lo + hi) >> 1
            if sb.keys[mid] < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    cdef int64_t _fok_available(self, int32_t idx, bint is_market) noexcept nogil:
        # Quantity the order could execute now, at acceptable prices, skipping what STP would
        # skip.  Within a level, iceberg reserve is reachable (refreshed slices go to the back
        # of the level and the taker keeps matching) unless a same-owner maker stops a
        # CANCEL_TAKER/CANCEL_BOTH taker first: then only the slices displayed ahead of it count.
        cdef Order* t = &self.pool[idx]
        cdef SideBook* opp = &self.sides[1 - sidx(t.side)]
        cdef int stp = t.flags & F_STP_MASK
        cdef int64_t avail = 0, before_self, level_total, need = t.leaves
        cdef int32_t pos, m
        cdef Level* lv
        cdef Order* mk
        pos = opp.n - 1
        while pos >= 0:
            lv = &self.levels[opp.lvl[pos]]
            if not is_market:
                if t.side == BUY and lv.price > t.price:
                    break
                if t.side == SELL and lv.price < t.price:
                    break
            before_self = 0
            level_total = 0
            m = lv.head
            while m != EMPTY:
                mk = &self.pool[m]
                if stp != STP_NONE and mk.owner == t.owner:
                    if stp == STP_CANCEL_MAKER:
                        m = mk.next
                        continue
                    return avail + before_self
                before_self += mk.visible
                level_total += mk.leaves
                m = mk.next
            avail += level_total
            if avail >= need:
                return avail
            pos -= 1
        return avail

    cdef int _subject_status(self) noexcept nogil:
        return subject_status(self)

    cdef void _emit_fill(self, int64_t maker, int64_t taker, int64_t price,
                         int64_t qty) noexcept nogil:
        emit_fill(self, maker, taker, price, qty)

    cdef void _emit_ended(self, int64_t order_id, int64_t qty, int32_t reason) noexcept nogil:
        cdef EndedRec* p
        if self.n_ended == self.ended_cap:
            p = <EndedRec*> realloc(self.ended, 2 * self.ended_cap * sizeof(EndedRec))
            if p == NULL:
                self.oom = True
                return
            self.ended = p
            self.ended_cap *= 2
        p = &self.ended[self.n_ended]
        p.cmd_index = self.cmd_index
        p.order_id = order_id
        p.qty = qty
        p.reason = reason
        self.n_ended += 1

    cdef int _reject(self, int64_t order_id, int64_t qty, int32_t reason) noexcept nogil:
        self.subj_reason = reason
        self.subj_order_id = order_id
        self._emit_ended(order_id, qty, reason)
        return ST_REJECTED

    cdef int32_t _alloc_order(self) noexcept nogil:
        cdef int32_t idx = self.free_head      # _reserve() guaranteed one
        self.free_head = self.pool[idx].next
        return idx

    cdef void _free_order(self, int32_t idx) noexcept nogil:
        self.pool[idx].next = self.free_head
        self.free_head = idx

    cdef void _live_insert(self, int32_t idx) noexcept nogil:
        live_insert(self, idx)

    cdef void _live_remove(self, int32_t idx) noexcept nogil:
        live_remove(self, idx)

    cdef void _seen_insert(self, int64_t order_id) noexcept nogil:
        # _reserve_id() made room
        cdef uint64_t off = <uint64_t>order_id - <uint64_t>self.seen_base
        cdef uint64_t mask, h
        self.seen_count += 1
        if off < <uint64_t>self.seen_words * 64:
            self.seen_bitmap[off >> 6] |= (<uint64_t>1) << (off & 63)
            return
        if order_id == NO_KEY:
            self.seen_sentinel = True
            return
        mask = (<uint64_t>1 << self.seen_bits) - 1
        h = hash_slot(order_id, self.seen_bits)
        while self.seen_keys[h] != NO_KEY:
            h = (h + 1) & mask
        self.seen_keys[h] = order_id
        self.seen_hashed += 1

    cdef void _remove_level(self, int s, int32_t pos) noexcept nogil:
        cdef SideBook* sb = &self.sides[s]
        cdef int32_t li = sb.lvl[pos]
        pmap_remove(sb, self.levels, li)
        if pos < sb.n - 1:
            memmove(&sb.keys[pos], &sb.keys[pos + 1], (sb.n - 1 - pos) * sizeof(int64_t))
            memmove(&sb.lvl[pos], &sb.lvl[pos + 1], (sb.n - 1 - pos) * sizeof(int32_t))
        sb.n -= 1
        if pos == sb.n:
            set_best(sb, self.levels, s)
        self.levels[li].head = self.level_free
        self.level_free = li
        self.level_free_count += 1

    cdef void _rest(self, int32_t idx) noexcept nogil:
        rest_order(self, idx)

    cdef void _unlink_resting(self, int32_t idx) noexcept nogil:
        cdef Order* o = &self.pool[idx]
        cdef Level* lv = &self.levels[o.level]
        cdef int s
        if o.prev != EMPTY:
            self.pool[o.prev].next = o.next
        else:
            lv.head = o.next
        if o.next != EMPTY:
            self.pool[o.next].prev = o.prev
        else:
            lv.tail = o.prev
        lv.count -= 1
        lv.qty -= o.visible
        o.level = EMPTY
        if lv.count == 0:
            s = sidx(o.side)
            self._remove_level(s, self._level_pos(s, side_key(s, lv.price)))

    cdef void _append_pending(self, int32_t idx) noexcept nogil:
        cdef Order* o = &self.pool[idx]
        o.flags |= F_PENDING
        o.level = EMPTY
        o.next = EMPTY
        o.prev = self.stop_tail
        if self.stop_tail != EMPTY:
            self.pool[self.stop_tail].next = idx
        else:
            self.stop_head = idx
        self.stop_tail = idx
        self.n_stops += 1
        if o.side == BUY:
            if o.visible < self.min_buy_stop:
                self.min_buy_stop = o.visible
        elif o.visible > self.max_sell_stop:
            self.max_sell_stop = o.visible

    cdef void _unlink_pending(self, int32_t idx) noexcept nogil:
        cdef Order* o = &self.pool[idx]
        if o.prev != EMPTY:
            self.pool[o.prev].next = o.next
        else:
            self.stop_head = o.next
        if o.next != EMPTY:
            self.pool[o.next].prev = o.prev
        else:
            self.stop_tail = o.prev
        o.flags &= ~F_PENDING
        self.n_stops -= 1

    cdef void _end(self, int32_t idx, int32_t reason) noexcept nogil:
        # The order is already out of levels and lists; report its leaves as cancelled.
        cdef Order* o = &self.pool[idx]
        self._emit_ended(o.id, o.leaves, reason)
        if idx == self.subj:
            self.subj_ended = True
            self.subj_reason = reason
            self.subj_filled = o.qty - o.leaves
        if o.flags & F_INDEXED:
            live_remove(self, idx)
        self._free_order(idx)

    cdef void _finish_filled(self, int32_t idx) noexcept nogil:
        finish_filled(self, idx)

    cdef bint _match(self, int32_t idx, bint is_market) noexcept nogil:
        return match_order(self, idx, is_market)

    cdef void _enter(self, int32_t idx) noexcept nogil:
        enter_order(self, idx)

    cdef void _check_stops(self) noexcept nogil:
        # Stops whose trigger the last trade price has reached are elected in arrival order into
        # a FIFO; they enter one at a time, and after each entry the pending stops are checked
        # again against the (possibly new) last price (cascade).
        cdef int32_t i, nxt, idx
        cdef Order* o
        cdef int64_t lo, hi
        if self.n_stops == 0 or self.last == 0:
            return
        while True:
            if self.n_stops > 0 and (self.last >= self.min_buy_stop
                                     or self.last <= self.max_sell_stop):
                lo = INT64_MAX
                hi = 0
                i = self.stop_head
                while i != EMPTY:
                    o = &self.pool[i]
                    nxt = o.next
                    if (self.last >= o.visible) if o.side == BUY else (self.last <= o.visible):
                        self._unlink_pending(i)
                        o.next = EMPTY
                        o.prev = self.trig_tail
                        if self.trig_tail != EMPTY:
                            self.pool[self.trig_tail].next = i
                        else:
                            self.trig_head = i
                        self.trig_tail = i
                    elif o.side == BUY:
                        if o.visible < lo:
                            lo = o.visible
                    elif o.visible > hi:
                        hi = o.visible
                    i = nxt
                self.min_buy_stop = lo
                self.max_sell_stop = hi
            if self.trig_head == EMPTY:
                return
            idx = self.trig_head
            self.trig_head = self.pool[idx].next
            if self.trig_head == EMPTY:
                self.trig_tail = EMPTY
            enter_order(self, idx)

    cdef int _submit(self, const Command* c) noexcept nogil:
        return submit_order(self, c)

    cdef int _cancel(self, int64_t order_id, int32_t reason) noexcept nogil:
        return cancel_order(self, order_id, reason)

    cdef int _replace(self, int64_t order_id, int64_t qty, int64_t price) noexcept nogil:
        cdef int32_t idx = self._find_live(order_id)
        cdef Order* o
        cdef Level* lv
        cdef int64_t filled, new_leaves, new_visible
        cdef bint has_price
        self.subj_order_id = order_id
        if idx == EMPTY:
            return self._reject(order_id, qty,
                                R_TOO_LATE if self._seen_contains(order_id) else R_UNKNOWN_ORDER)
        o = &self.pool[idx]
        has_price = o.ord_type == OT_LIMIT or o.ord_type == OT_STOP_LIMIT
        if qty <= 0 or qty > C_MAX_QTY:
            return self._reject(order_id, qty, R_INVALID_QTY)
        if not has_price:
            price = 0                       # a STOP (market) order has no limit price
        elif price <= 0 or price > C_MAX_PRICE:
            return self._reject(order_id, qty, R_INVALID_PRICE)
        filled = o.qty - o.leaves
        if (o.flags & F_POST_ONLY) and price != o.price and not (o.flags & F_PENDING) \
                and would_match(self, o.side, price) and qty > filled:
            return self._reject(order_id, qty, R_POST_ONLY_WOULD_MATCH)
        if not self._reserve():
            self.oom = True
            return ST_REJECTED
        o = &self.pool[idx]
        self.subj = idx
        if qty <= filled:
            if o.flags & F_PENDING:
                self._unlink_pending(idx)
            else:
                self._unlink_resting(idx)
            self._end(idx, R_REPLACED_TO_FILLED)
            return ST_FILLED
        new_leaves = qty - filled
        if o.flags & F_PENDING:
            if price != o.price or new_leaves > o.leaves:
                self._unlink_pending(idx)           # loses its place among the stops
                self._append_pending(idx)
            o.qty = qty
            o.leaves = new_leaves
            o.price = price
        elif price == o.price and new_leaves <= o.leaves:
            # in place, time priority kept
            lv = &self.levels[o.level]
            new_visible = i64min(o.visible, new_leaves)
            lv.qty -= o.visible - new_visible
            o.visible = new_visible
            o.qty = qty
            o.leaves = new_leaves
        else:
            # loses priority and re-enters as if new (it can trade on entry)
            self._unlink_resting(idx)
            o.qty = qty
            o.leaves = new_leaves
            o.price = price
            enter_order(self, idx)
        if self.n_stops:
            self._check_stops()
        return ACCEPTED

    cdef void _sweep(self, int32_t reason, int64_t now) noexcept nogil:
        # end_of_day (DAY orders) or expire (GTD orders with expire_time <= now).  Reported in
        # book order: bids best first, asks best first (FIFO within a level), then pending stops
        # in arrival order.
        cdef int s
        cdef int32_t pos, i, nxt
        cdef Order* o
        cdef bint hit
        for s in range(2):
            pos = self.sides[s].n - 1
            while pos >= 0:
                if pos >= self.sides[s].n:
                    pos = self.sides[s].n - 1
                    continue
                i = self.levels[self.sides[s].lvl[pos]].head
                # removing the last order of a level removes the level; positions below `pos`
                # are unaffected, so walk the level first, then move down
                while i != EMPTY:
                    o = &self.pool[i]
                    nxt = o.next
                    if reason == R_END_OF_DAY:
                        hit = o.tif == TIF_DAY
                    else:
                        hit = o.tif == TIF_GTD and self.extra[i].expire_time <= now
                    if hit:
                        self._unlink_resting(i)
                        self._end(i, reason)
                    i = nxt
                pos -= 1
        i = self.stop_head
        while i != EMPTY:
            o = &self.pool[i]
            nxt = o.next
            if reason == R_END_OF_DAY:
                hit = o.tif == TIF_DAY
            else:
                hit = o.tif == TIF_GTD and self.extra[i].expire_time <= now
            if hit:
                self._unlink_pending(i)
                self._end(i, reason)
            i = nxt

    cdef int _run(self, const Command* c) noexcept nogil:
        return run_command(self, c)

    # ============================================================================================
    # Python API
    # ============================================================================================

    cdef int _check_idle(self) except -1:
        # process() runs without the GIL: reading the book meanwhile could see freed memory
        if self.busy:
            raise RuntimeError("OrderBook is busy in process() on another thread")
        return 0

    cdef int _start_call(self) except -1:
        if self.busy:
            raise RuntimeError("OrderBook is busy in process() on another thread")
        self.n_fills = 0
        self.n_ended = 0
        self.cmd_index = 0
        self.oom = False
        return 0

    cdef list _cancel_list(self):
        cdef int64_t i
        cdef list out = []
        for i in range(self.n_ended):
            out.append(_new_cancel(&self.ended[i]))
        return out

    cdef object _result(self, int status):
        cdef Result r = Result.__new__(Result)
        cdef int64_t i
        cdef list fills
        cdef Order* o
        if self.oom:
            self.oom = False
            raise MemoryError("OrderBook could not grow its buffers")
        if status == ACCEPTED:
            status = subject_status(self)       # only the per-call API needs it
        r.order_id = self.subj_order_id
        r._status = status
        if status == ST_REJECTED:
            r._reason = self.subj_reason
            return r
        if self.subj_ended:
            r._reason = self.subj_reason
            r.filled_qty = self.subj_filled
            r.leaves_qty = 0
        else:
            o = &self.pool[self.subj]
            r.filled_qty = o.qty - o.leaves
            r.leaves_qty = o.leaves
        if self.n_fills:
            fills = []
            for i in range(self.n_fills):
                fills.append(_new_fill(&self.fills[i]))
            r._fills = fills
        if self.n_ended:
            r._cancels = self._cancel_list()
        return r

    cdef object _rejected_enum(self, int64_t order_id, str text):
        cdef Result r = Result.__new__(Result)
        r.order_id = order_id
        r._status = ST_REJECTED
        r._reason = R_INVALID_ENUM
        r._text = text
        return r

    def submit(self, order_id, side, price, qty, ord_type=OrdType.LIMIT,
               tif=TimeInForce.DAY, display_qty=0, stop_price=0, owner=0,
               stp=STPMode.NONE, post_only=False, expire_time=0):
        """Submit a new order; returns a Result (REJECTED leaves the book unchanged).

        Prices are integer ticks, quantities integer units.  ``display_qty`` > 0 makes an
        iceberg, ``stop_price`` is for STOP/STOP_LIMIT, ``owner`` with ``stp`` drives
        self-trade prevention, ``expire_time`` is the GTD expiry (compared in ``expire(now)``).
        Non-integer arguments raise TypeError, integers outside int64 raise ValueError.
        """
        cdef Command c
        cdef int64_t s, ot, tf, sp
        self._start_call()
        c.op = OP_SUBMIT_
        c.order_id = _as_i64(order_id, "order_id")
        s = _as_i64(side, "side")
        c.price = _as_i64(price, "price")
        c.qty = _as_i64(qty, "qty")
        ot = _as_i64(ord_type, "ord_type")
        tf = _as_i64(tif, "tif")
        c.display_qty = _as_i64(display_qty, "display_qty")
        c.stop_price = _as_i64(stop_price, "stop_price")
        c.owner = _as_i64(owner, "owner")
        sp = _as_i64(stp, "stp")
        c.post_only = 1 if post_only else 0
        c.expire_time = _as_i64(expire_time, "expire_time")
        if not ((s == BUY or s == SELL) and OT_MARKET <= ot <= OT_STOP_LIMIT
                and (tf == TIF_DAY or tf == TIF_GTC or tf == TIF_IOC or tf == TIF_FOK
                     or tf == TIF_GTD) and STP_NONE <= sp <= STP_CANCEL_BOTH):
            return self._rejected_enum(c.order_id, _enum_error(s, ot, tf, sp))
        c.side = <uint8_t>s
        c.ord_type = <uint8_t>ot
        c.tif = <uint8_t>tf
        c.stp = <uint8_t>sp
        self._begin()
        return self._result(submit_order(self, &c))

    def cancel(self, order_id):
        """Cancel a live order (resting or pending stop); returns the cancelled quantity, 0 if
        the id is unknown or the order is already done."""
        cdef int64_t oid = _as_i64(order_id, "order_id")
        self._start_call()
        self._begin()
        if self._cancel(oid, R_USER_CANCEL) == ST_REJECTED:
            return 0
        return self.ended[0].qty

    def cancel_result(self, order_id):
        """Like cancel() but returns a Result: CANCELLED with the Cancel in ``cancels``, or
        REJECTED with UNKNOWN_ORDER / TOO_LATE."""
        cdef int64_t oid = _as_i64(order_id, "order_id")
        self._start_call()
        self._begin()
        return self._result(self._cancel(oid, R_USER_CANCEL))

    def replace(self, order_id, qty, price):
        """Cancel/replace with FIX semantics: ``qty`` is the new total quantity (filled
        included), ``price`` the new limit price (ignored for STOP orders).  Keeps time priority
        when the price is unchanged and leaves do not grow; otherwise the order re-enters as if
        new and can trade.  ``qty`` <= filled ends the order (status FILLED, its leaves reported
        as REPLACED_TO_FILLED)."""
        cdef int64_t oid = _as_i64(order_id, "order_id")
        cdef int64_t q = _as_i64(qty, "qty")
        cdef int64_t p = _as_i64(price, "price")
        self._start_call()
        self._begin()
        return self._result(self._replace(oid, q, p))

    def end_of_day(self):
        """Cancel every DAY order (resting or pending stop); returns the Cancels."""
        self._start_call()
        self._begin()
        self._sweep(R_END_OF_DAY, 0)
        return self._cancel_list()

    def expire(self, now):
        """Cancel every GTD order whose expire_time <= now; returns the Cancels."""
        cdef int64_t t = _as_i64(now, "now")
        self._start_call()
        self._begin()
        self._sweep(R_EXPIRED, t)
        return self._cancel_list()

    def process(self, commands):
        """Run a batch of COMMAND_DTYPE commands with the GIL released.

        Returns ``(fills, ended)``: FILL_DTYPE and ENDED_DTYPE arrays whose ``cmd_index`` is the
        command's position in the batch.  Every per-call outcome appears: fills; orders ended
        without a fill (as ``Result.cancels``); a rejected command as an ENDED row with its
        rejection reason and requested qty; a successful cancel as (USER_CANCEL, cancelled qty);
        a cancel/replace of an unknown or finished id as (UNKNOWN_ORDER or TOO_LATE, qty 0 for
        cancel / requested qty for replace).  Ops 4 (end of day) and 5 (expire, ``now`` in
        ``expire_time``) are extensions.
        """
        cdef const Command* cmds
        cdef Py_ssize_t n, i
        arr = _as_command_array(commands)
        self._start_call()
        n = arr.shape[0]
        cmds = <const Command*> <uintptr_t> arr.ctypes.data
        self._presize_reports(n)
        self.busy = True
        try:
            with nogil:
                for i in range(n):
                    self.cmd_index = i
                    run_command(self, &cmds[i])
                    if self.oom:
                        break
        finally:
            self.busy = False
        if self.oom:
            self.oom = False
            raise MemoryError(f"OrderBook ran out of memory at command {self.cmd_index}")
        return self._take_reports()

    cdef void _presize_reports(self, Py_ssize_t n) noexcept:
        # Called with both buffers empty: room for one fill and one ended row per command (up to
        # PRESIZE_MAX_ROWS), so that a batch rarely grows them by realloc (a copy, and new pages).
        # A spare block handed back by an earlier batch's arrays is used first: its pages are
        # already mapped.
        cdef size_t rows = <size_t>n if n < PRESIZE_MAX_ROWS else PRESIZE_MAX_ROWS
        cdef size_t cap = 0
        cdef void* p
        p = _spare_take(SPARE_FILLS, self.fills_cap * sizeof(FillRec), &cap)
        if p != NULL:
            free(self.fills)
            self.fills = <FillRec*> p
            self.fills_cap = cap // sizeof(FillRec)
        elif <size_t>self.fills_cap < rows:
            p = malloc(rows * sizeof(FillRec))
            if p != NULL:
                free(self.fills)
                self.fills = <FillRec*> p
                self.fills_cap = rows
        p = _spare_take(SPARE_ENDED, self.ended_cap * sizeof(EndedRec), &cap)
        if p != NULL:
            free(self.ended)
            self.ended = <EndedRec*> p
            self.ended_cap = cap // sizeof(EndedRec)
        elif <size_t>self.ended_cap < rows:
            p = malloc(rows * sizeof(EndedRec))
            if p != NULL:
                free(self.ended)
                self.ended = <EndedRec*> p
                self.ended_cap = rows

    cdef tuple _take_reports(self):
        # Hand the report buffers to numpy without copying when they are big (the arrays own
        # them from then on and the book starts new ones); copy small ones.  A handed-over
        # buffer keeps its spare capacity (for reuse, see _spare_put) unless it is mostly empty.
        cdef object fills, ended
        cdef void* p
        cdef size_t used, cap
        if self.n_fills >= 4096:
            used = self.n_fills * sizeof(FillRec)
            cap = self.fills_cap * sizeof(FillRec)
            p = self.fills
            if used * 8 < cap:
                p = realloc(self.fills, used)
                if p == NULL:
                    p = self.fills
                else:
                    cap = used
            fills = np.frombuffer(_OwnedBuffer.wrap(p, used, cap, SPARE_FILLS), FILL_DTYPE)
            self.fills = NULL
            self.fills_cap = 0
        else:
            fills = np.empty(self.n_fills, FILL_DTYPE)
            if self.n_fills:
                memcpy(<void*> <uintptr_t> fills.ctypes.data, self.fills,
                       self.n_fills * sizeof(FillRec))
        if self.n_ended >= 4096:
            used = self.n_ended * sizeof(EndedRec)
            cap = self.ended_cap * sizeof(EndedRec)
            p = self.ended
            if used * 8 < cap:
                p = realloc(self.ended, used)
                if p == NULL:
                    p = self.ended
                else:
                    cap = used
            ended = np.frombuffer(_OwnedBuffer.wrap(p, used, cap, SPARE_ENDED), ENDED_DTYPE)
            self.ended = NULL
            self.ended_cap = 0
        else:
            ended = np.empty(self.n_ended, ENDED_DTYPE)
            if self.n_ended:
                memcpy(<void*> <uintptr_t> ended.ctypes.data, self.ended,
                       self.n_ended * sizeof(EndedRec))
        self._shrink_buffers()
        if self.fills == NULL or self.ended == NULL:
            raise MemoryError("OrderBook could not allocate its report buffers")
        return fills, ended

    cdef void _shrink_buffers(self) noexcept:
        # a huge batch leaves huge report buffers; give the memory back (or start new ones
        # after handing the old ones over)
        cdef void* p
        if self.fills_cap > 65536 or self.fills == NULL:
            p = realloc(self.fills, 256 * sizeof(FillRec))
            if p != NULL:
                self.fills = <FillRec*> p
                self.fills_cap = 256
        if self.ended_cap > 65536 or self.ended == NULL:
            p = realloc(self.ended, 256 * sizeof(EndedRec))
            if p != NULL:
                self.ended = <EndedRec*> p
                self.ended_cap = 256
        self.n_fills = self.n_ended = 0

    # ---- market data and state ------------------------------------------------------------------

    def best_bid(self):
        """(price, displayed qty at that level) of the best bid, or None."""
        cdef SideBook* sb = &self.sides[0]
        cdef Level* lv
        self._check_idle()
        if sb.n == 0:
            return None
        lv = &self.levels[sb.lvl[sb.n - 1]]
        return (lv.price, lv.qty)

    def best_ask(self):
        """(price, displayed qty at that level) of the best ask, or None."""
        cdef SideBook* sb = &self.sides[1]
        cdef Level* lv
        self._check_idle()
        if sb.n == 0:
            return None
        lv = &self.levels[sb.lvl[sb.n - 1]]
        return (lv.price, lv.qty)

    def depth(self, side, levels=10):
        """Up to ``levels`` price levels of ``side``, best first: [(price, displayed qty, count)]."""
        cdef int64_t sd = _as_i64(side, "side"), n = _as_i64(levels, "levels")
        cdef SideBook* sb
        cdef Level* lv
        cdef int32_t pos
        cdef list out = []
        self._check_idle()
        if sd != BUY and sd != SELL:
            raise ValueError(f"unknown side {sd}")
        if n < 0:
            raise ValueError(f"levels must be >= 0, got {n}")
        sb = &self.sides[sidx(<int>sd)]
        pos = sb.n - 1
        while pos >= 0 and n > 0:
            lv = &self.levels[sb.lvl[pos]]
            out.append((lv.price, lv.qty, lv.count))
            pos -= 1
            n -= 1
        return out

    def order(self, order_id):
        """OrderState(side, price, qty, leaves, displayed, filled) of a live order, or None."""
        cdef int64_t oid = _as_i64(order_id, "order_id")
        cdef int32_t idx
        cdef Order* o
        self._check_idle()
        idx = self._find_live(oid)
        if idx == EMPTY:
            return None
        o = &self.pool[idx]
        return OrderState(_SIDE_BY_CODE[o.side], o.price, o.qty, o.leaves,
                          0 if o.flags & F_PENDING else o.visible, o.qty - o.leaves)

    def is_pending_stop(self, order_id):
        """True when the order is a live stop still waiting for its trigger."""
        cdef int64_t oid = _as_i64(order_id, "order_id")
        self._check_idle()
        cdef int32_t idx = self._find_live(oid)
        return idx != EMPTY and (self.pool[idx].flags & F_PENDING) != 0

    @property
    def last_price(self):
        """Price of the last trade, 0 before the first."""
        return self.last

    def __len__(self):
        return self.live_count

    def __contains__(self, order_id):
        cdef int64_t oid = _as_i64(order_id, "order_id")
        self._check_idle()
        return self._find_live(oid) != EMPTY

    def live_order_ids(self):
        """Ids of all live orders in book order: bids best first, asks best first (FIFO within
        a level), then pending stops in arrival order."""
        cdef list out = []
        cdef int s
        cdef int32_t pos, i
        self._check_idle()
        for s in range(2):
            pos = self.sides[s].n - 1
            while pos >= 0:
                i = self.levels[self.sides[s].lvl[pos]].head
                while i != EMPTY:
                    out.append(self.pool[i].id)
                    i = self.pool[i].next
                pos -= 1
        i = self.stop_head
        while i != EMPTY:
            out.append(self.pool[i].id)
            i = self.pool[i].next
        return out

    # ---- memory ---------------------------------------------------------------------------------

    @staticmethod
    def memory_bytes_per_order():
        """Bytes per resting order by design: one pool entry plus one id-window slot (an order
        whose id is outside the window costs two hash-index slots, 8 bytes, instead).  The
        seen-id set (duplicate detection over the book's life) costs extra per id ever
        accepted; see memory_usage()."""
        return sizeof(Order) + sizeof(OrderExtra) + sizeof(int32_t)

    def memory_usage(self):
        """Bytes currently allocated, by structure (capacities, not just what is in use)."""
        cdef dict out = {
            "pool": self.pool_cap * (sizeof(Order) + sizeof(OrderExtra)),
            "live_index": ((1 << self.live_bits) + (1 << self.win_bits)) * sizeof(int32_t),
            "seen_ids": (<int64_t>1 << self.seen_bits) * sizeof(int64_t)
                        + self.seen_words * sizeof(uint64_t),
            "levels": self.level_cap * sizeof(Level)
                      + (self.sides[0].cap + self.sides[1].cap) * (sizeof(int64_t) + sizeof(int32_t))
                      + ((1 << self.sides[0].pmap_bits) + (1 << self.sides[1].pmap_bits))
                      * sizeof(int32_t),
            "report_buffers": self.fills_cap * sizeof(FillRec) + self.ended_cap * sizeof(EndedRec),
            "pool_entry": sizeof(Order) + sizeof(OrderExtra),
            "live_orders": self.live_count,
            "seen_id_count": self.seen_count,
        }
        return out
