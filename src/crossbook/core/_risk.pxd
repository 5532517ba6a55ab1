# The compiled pre-trade risk engine's contract: its C data layout and the typed signatures of
# its internals, grouped as queries, commands and checks.  See docs/risk.md for the semantics.
from libc.stdint cimport int32_t, int64_t, uint8_t

# --- rejection codes; mirrored by RiskCode in _risk.pyx (values are stable: the OMS stores them) --
cdef enum:
    RC_OK = 0
    RC_KILL_GLOBAL = 1
    RC_KILL_FIRM = 2
    RC_KILL_ACCOUNT = 3
    RC_MSG_RATE = 4
    RC_RESTRICTED_GLOBAL = 5
    RC_RESTRICTED_ACCOUNT = 6
    RC_MARKET_NOT_ALLOWED = 7
    RC_MAX_ORDER_QTY = 8
    RC_NO_FX_RATE = 9
    RC_NO_REFERENCE_PRICE = 10
    RC_MAX_ORDER_NOTIONAL = 11
    RC_PRICE_COLLAR = 12
    RC_MAX_OPEN_ORDERS = 13
    RC_DAILY_CREDIT = 14
    RC_MAX_POSITION = 15

# side and order type values: those of crossbook.core.Side / OrdType (FIX values)
cdef enum:
    RK_BUY = 1
    RK_SELL = 2

cdef enum:
    RK_MARKET = 1
    RK_LIMIT = 2
    RK_STOP = 3
    RK_STOP_LIMIT = 4

# --- data layout -------------------------------------------------------------------------------
# Per account: limits (INT64_MAX / +inf = no limit, collar_bps < 0 = no collar) and usage.
ctypedef struct AccountRisk:
    int64_t max_order_qty
    double max_order_notional
    int64_t collar_bps
    double daily_credit
    int64_t max_position
    int64_t max_open_orders
    int64_t open_orders
    double open_notional         # account currency, open orders at their risk price
    double filled_notional       # account currency, fills since the last new_day()
    int32_t firm
    uint8_t configured
    uint8_t market_allowed
    uint8_t killed
    uint8_t needs_notional       # max_order_notional or daily_credit is finite

# Per (account, instrument): position, open quantities and the notional factor.
ctypedef struct Holding:
    int64_t position             # signed: + long, - short
    int64_t open_buy
    int64_t open_sell
    double factor                # account-currency notional of qty 1 at price 1 tick; NaN = no FX
    uint8_t restricted

ctypedef struct InstrumentRisk:
    int64_t reference            # ticks; 0 = none yet
    uint8_t configured
    uint8_t restricted           # global restriction

# Token bucket of one session, in integer nano-messages (exact, no float drift).
ctypedef struct Bucket:
    int64_t rate                 # messages per second; < 0 = unlimited
    int64_t capacity             # burst x MSG
    int64_t tokens
    int64_t last_ns
    uint8_t started
    uint8_t configured           # set_session was called (else the index is unknown)


cdef class RiskEngine:
    cdef AccountRisk* accounts
    cdef int32_t account_cap
    cdef InstrumentRisk* instruments
    cdef int32_t instrument_cap
    cdef Holding* holdings       # account_cap x instrument_cap, row per account
    cdef Bucket* sessions
    cdef int32_t session_cap
    cdef uint8_t* firm_killed
    cdef int32_t firm_cap
    cdef bint global_killed
    cdef bint busy
    # configuration kept as Python objects (explain texts, FX recomputation); off the hot path
    cdef dict account_names
    cdef dict account_currency
    cdef dict instrument_meta    # index -> (symbol, tick_size Decimal, tick_value Decimal, currency)
    cdef dict session_names
    cdef dict firm_names
    cdef dict fx_rates           # (from, to) -> Decimal
    cdef dict limits_obj         # account -> RiskLimits as given

    # --- queries -----------------------------------------------------------------------------
    cdef inline Holding* _holding(self, int32_t account, int32_t instrument) noexcept nogil
    cdef double _notional(self, const Holding* h, int64_t qty, int64_t price) noexcept nogil
    cdef int64_t _risk_price(self, int32_t instrument, int ord_type, int64_t price) noexcept nogil
    cdef int64_t _account_index(self, object account) except -1
    cdef int64_t _instrument_index(self, object instrument) except -1

    # --- commands ----------------------------------------------------------------------------
    cdef bint _take_token(self, int32_t session, int64_t now_ns) noexcept nogil
    cdef void _open(self, int32_t account, int32_t instrument, int side, int64_t qty,
                    int64_t price) noexcept nogil
    cdef void _fill(self, int32_t account, int32_t instrument, int side, int64_t qty,
                    int64_t price, int64_t fill_price) noexcept nogil
    cdef void _close(self, int32_t account, int32_t instrument, int side, int64_t leaves,
                     int64_t price) noexcept nogil
    cdef void _reprice(self, int32_t account, int32_t instrument, int side, int64_t old_leaves,
                       int64_t old_price, int64_t new_leaves, int64_t new_price) noexcept nogil

    # --- checks ------------------------------------------------------------------------------
    cdef int _check_gates(self, int32_t account, int32_t instrument, int32_t session,
                          int ord_type, int64_t now_ns) noexcept nogil
    cdef int _check_order(self, int32_t account, int32_t instrument, int ord_type, int64_t qty,
                          int64_t price, double* notional) noexcept nogil
    cdef int _check_new(self, int32_t account, int32_t instrument, int32_t session, int side,
                        int ord_type, int64_t qty, int64_t price, int64_t now_ns) noexcept nogil
    cdef int _check_replace(self, int32_t account, int32_t instrument, int32_t session, int side,
                            int ord_type, int64_t new_qty, int64_t new_price, int64_t old_leaves,
                            int64_t old_price, int64_t cum_qty, int64_t now_ns) noexcept nogil
    cdef str _row_error(self, int64_t account, int64_t instrument, int64_t session, int64_t side,
                        int64_t ord_type, int64_t qty, int64_t price)

    # --- Python boundary (GIL held) -----------------------------------------------------------
    cdef int _not_busy(self) except -1
    cdef int _grow(self, int32_t accounts, int32_t instruments, int32_t sessions,
                   int32_t firms) except -1
    cdef void _recompute_factors(self)
    cdef tuple _usage_args(self, object account, object instrument, object side, object qty,
                           object price, str qty_name, str price_name, int64_t min_qty)
