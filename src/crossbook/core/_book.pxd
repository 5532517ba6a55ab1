# The compiled order book's contract: its C data layout and the typed signatures of its
# internals, grouped as queries, commands and checks.  See docs/core.md for the design.
cimport cython
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

# --- enum values (FIX values where FIX has one); mirrored by the IntEnums in _book.pyx -----------
cdef enum:
    BUY = 1
    SELL = 2

cdef enum:
    OT_MARKET = 1
    OT_LIMIT = 2
    OT_STOP = 3
    OT_STOP_LIMIT = 4

cdef enum:
    TIF_DAY = 0
    TIF_GTC = 1
    TIF_IOC = 3
    TIF_FOK = 4
    TIF_GTD = 6

cdef enum:
    STP_NONE = 0
    STP_CANCEL_TAKER = 1
    STP_CANCEL_MAKER = 2
    STP_CANCEL_BOTH = 3

cdef enum:
    ST_RESTING = 0
    ST_PARTIALLY_FILLED = 1
    ST_FILLED = 2
    ST_CANCELLED = 4
    ST_REJECTED = 8
    ST_STOP_PENDING = 20

cdef enum:
    R_NONE = 0
    R_IOC_REMAINDER = 1
    R_MARKET_REMAINDER = 2
    R_FOK_UNFILLABLE = 3
    R_STP_TAKER = 4
    R_STP_MAKER = 5
    R_USER_CANCEL = 6
    R_REPLACED_TO_FILLED = 7
    R_END_OF_DAY = 8
    R_EXPIRED = 9
    R_INVALID_QTY = 20
    R_INVALID_PRICE = 21
    R_INVALID_STOP_PRICE = 22
    R_INVALID_DISPLAY_QTY = 23
    R_INVALID_POST_ONLY = 24
    R_DUPLICATE_ID = 25
    R_POST_ONLY_WOULD_MATCH = 26
    R_UNKNOWN_ORDER = 27
    R_TOO_LATE = 28
    R_INVALID_ENUM = 29
    R_INVALID_EXPIRE_TIME = 30

cdef enum:
    OP_SUBMIT_ = 1
    OP_CANCEL_ = 2
    OP_REPLACE_ = 3
    OP_END_OF_DAY_ = 4
    OP_EXPIRE_ = 5

# Order.flags bits
cdef enum:
    F_STP_MASK = 3
    F_POST_ONLY = 4
    F_PENDING = 8       # a waiting stop, linked in the pending-stop list (not in a level)
    F_INDEXED = 16      # present in the live id index
    F_ICEBERG = 32      # display qty set (OrderExtra.display)

# --- data layout -------------------------------------------------------------------------------
# One pool entry per live order: 64 bytes, one cache line (the pool is 64-byte aligned), holding
# everything matching touches.  `visible` doubles as the stop price while the order is a pending
# stop (it has no displayed quantity then).  prev/next link the order into its price level's
# FIFO, the pending-stop list, the triggered queue or (next only) the free list.
ctypedef struct Order:
    int64_t id
    int64_t price
    int64_t qty            # total ordered (FIX OrderQty); filled = qty - leaves
    int64_t leaves
    int64_t visible        # resting: displayed now; pending stop: stop price
    int64_t owner
    int32_t prev
    int32_t next
    int32_t level          # level pool index while resting, -1 otherwise
    uint8_t side
    uint8_t ord_type
    uint8_t tif
    uint8_t flags

# The rarely used fields, in an array parallel to the pool (16 bytes per entry): read only for
# icebergs (F_ICEBERG) and by expire().
ctypedef struct OrderExtra:
    int64_t display        # iceberg slice size, 0 = fully visible
    int64_t expire_time    # GTD expiry, 0 otherwise

# A price level: FIFO of pool indices with its displayed total.  Levels live in their own pool
# (stable indices, free list through `head`).
ctypedef struct Level:
    int64_t price
    int64_t qty            # displayed quantity at this price
    int32_t count
    int32_t head
    int32_t tail
    int32_t _pad

# One side's levels sorted by key ascending with the best level LAST (key = price for bids,
# -price for asks), so the best level is O(1) and adding/removing near the touch moves little.
# A price -> level hash map (pmap, open addressing, level pool indices, load <= 1/2) finds an
# existing level in O(1); the sorted arrays are searched only to place a new level.
ctypedef struct SideBook:
    int64_t* keys
    int32_t* lvl
    int32_t n
    int32_t cap
    int32_t* pmap
    int32_t pmap_bits
    int64_t best           # best price; INT64_MIN (bids) / INT64_MAX (asks) when empty

# Batch rows; layouts match COMMAND_DTYPE, FILL_DTYPE and ENDED_DTYPE (aligned numpy dtypes).
ctypedef struct Command:
    uint8_t op
    int64_t order_id
    uint8_t side
    int64_t price
    int64_t qty
    uint8_t ord_type
    uint8_t tif
    int64_t display_qty
    int64_t stop_price
    int64_t owner
    uint8_t stp
    uint8_t post_only
    int64_t expire_time

ctypedef struct FillRec:
    int64_t cmd_index
    int64_t maker_id
    int64_t taker_id
    int64_t price
    int64_t qty

ctypedef struct EndedRec:
    int64_t cmd_index
    int64_t order_id
    int64_t qty
    int32_t reason


# The book.  Everything below the Python API is `noexcept nogil` C.  The hottest of these methods
# (_run, _submit, _cancel, _find_live, _enter, _match, _rest, _would_match, _subject_status,
# _emit_fill, _finish_filled, _live_insert, _live_remove) forward to module-level `cdef inline`
# functions in _book.pyx, which the C compiler inlines (methods sit in a vtable); the signatures
# here stay the contract.
@cython.final
cdef class OrderBook:
    # order pool
    cdef Order* pool                # 64-byte aligned
    cdef OrderExtra* extra
    cdef int32_t pool_cap
    cdef int32_t free_head
    # price levels
    cdef Level* levels
    cdef int32_t level_cap
    cdef int32_t level_free
    cdef SideBook sides[2]          # 0 = bids, 1 = asks
    cdef int32_t level_free_count
    # live id index, in two parts.  A window over ids [win_base, win_base + 2**win_bits): slot
    # id mod 2**win_bits holds the pool index (callers' ids are mostly increasing and dense, and
    # the window follows them up).  A hash index for the ids outside the window: open
    # addressing, linear probing; a slot holds a pool index (the key is read from the pool) and
    # the entry's distance from its home slot.  An id is in one of the two, never both.
    cdef int32_t* win
    cdef int64_t win_base
    cdef int32_t win_bits
    cdef uint64_t win_mask          # 2**win_bits - 1
    cdef int64_t hashed_above       # highest id put in the hash above the window, or INT64_MIN
    cdef int32_t* live_slots
    cdef int32_t live_bits
    cdef int32_t live_count         # window + hash
    cdef int32_t live_hashed        # in the hash
    # every id ever accepted (duplicate check): a bitmap over a dense id window starting at
    # seen_base, and an open-addressing int64 set for ids outside it
    cdef uint64_t* seen_bitmap
    cdef int64_t seen_words
    cdef int64_t seen_base
    cdef int64_t* seen_keys
    cdef int32_t seen_bits
    cdef int64_t seen_hashed
    cdef int64_t seen_count
    cdef bint seen_sentinel
    # stops: pending list (arrival order) and triggered queue
    cdef int32_t stop_head
    cdef int32_t stop_tail
    cdef int32_t n_stops
    cdef int32_t trig_head
    cdef int32_t trig_tail
    cdef int64_t min_buy_stop       # conservative bounds: no pending stop triggers inside them
    cdef int64_t max_sell_stop
    cdef int64_t last
    # output buffers, filled during an operation or a whole batch
    cdef FillRec* fills
    cdef int64_t n_fills
    cdef int64_t fills_cap
    cdef EndedRec* ended
    cdef int64_t n_ended
    cdef int64_t ended_cap
    cdef int64_t cmd_index
    cdef bint oom
    cdef bint busy
    # the order an operation is about (submitted / replaced), and how it ended
    cdef int32_t subj
    cdef bint subj_ended
    cdef int32_t subj_reason
    cdef int64_t subj_filled
    cdef int64_t subj_order_id

    # --- queries -----------------------------------------------------------------------------
    cdef int32_t _find_live(self, int64_t order_id) noexcept nogil
    cdef bint _seen_contains(self, int64_t order_id) noexcept nogil
    cdef bint _would_match(self, int side, int64_t price) noexcept nogil
    cdef int64_t _fok_available(self, int32_t idx, bint is_market) noexcept nogil
    cdef int32_t _level_pos(self, int s, int64_t key) noexcept nogil
    cdef int _subject_status(self) noexcept nogil

    # --- commands ----------------------------------------------------------------------------
    cdef int _submit(self, const Command* c) noexcept nogil
    cdef int _cancel(self, int64_t order_id, int32_t reason) noexcept nogil
    cdef int _replace(self, int64_t order_id, int64_t qty, int64_t price) noexcept nogil
    cdef void _sweep(self, int32_t reason, int64_t now) noexcept nogil
    cdef int _run(self, const Command* c) noexcept nogil
    cdef void _enter(self, int32_t idx) noexcept nogil
    cdef bint _match(self, int32_t idx, bint is_market) noexcept nogil
    cdef void _rest(self, int32_t idx) noexcept nogil
    cdef void _unlink_resting(self, int32_t idx) noexcept nogil
    cdef void _unlink_pending(self, int32_t idx) noexcept nogil
    cdef void _append_pending(self, int32_t idx) noexcept nogil
    cdef void _check_stops(self) noexcept nogil
    cdef void _end(self, int32_t idx, int32_t reason) noexcept nogil
    cdef void _finish_filled(self, int32_t idx) noexcept nogil
    cdef void _remove_level(self, int s, int32_t pos) noexcept nogil
    cdef int _reject(self, int64_t order_id, int64_t qty, int32_t reason) noexcept nogil
    cdef void _emit_fill(self, int64_t maker, int64_t taker, int64_t price, int64_t qty) noexcept nogil
    cdef void _emit_ended(self, int64_t order_id, int64_t qty, int32_t reason) noexcept nogil
    cdef int32_t _alloc_order(self) noexcept nogil
    cdef void _free_order(self, int32_t idx) noexcept nogil
    cdef void _live_insert(self, int32_t idx) noexcept nogil
    cdef void _live_remove(self, int32_t idx) noexcept nogil
    cdef void _seen_insert(self, int64_t order_id) noexcept nogil

    # --- checks ------------------------------------------------------------------------------
    cdef int32_t _validate(self, const Command* c) noexcept nogil
    cdef bint _reserve(self) noexcept nogil
    cdef bint _grow_pool(self) noexcept nogil
    cdef bint _grow_levels(self) noexcept nogil
    cdef bint _grow_side(self, int s) noexcept nogil
    cdef bint _rebuild_live(self, int32_t bits) noexcept nogil
    cdef bint _slide_window(self, int64_t order_id) noexcept nogil
    cdef void _grow_window(self) noexcept nogil
    cdef bint _rebuild_seen(self, int32_t bits) noexcept nogil
    cdef bint _reserve_id(self, int64_t order_id) noexcept nogil
    cdef void _begin(self) noexcept nogil

    # --- Python boundary (GIL held) -----------------------------------------------------------
    cdef int _start_call(self) except -1
    cdef int _check_idle(self) except -1
    cdef list _cancel_list(self)
    cdef object _result(self, int status)
    cdef object _rejected_enum(self, int64_t order_id, str text)
    cdef void _presize_reports(self, Py_ssize_t n) noexcept
    cdef void _shrink_buffers(self) noexcept
    cdef tuple _take_reports(self)
