/* A minimal C limit order book: the benchmark's hardware ceiling.
 *
 * As simple and fast as a book can be when nothing else matters: one array of price levels per
 * tick over the stream's price range, a FIFO linked list per level, orders stored directly at
 * their id (the benchmark's ids are dense) so cancel is one array access, and the best price kept
 * as an index that moves by scanning. It handles exactly what the benchmark stream contains:
 * LIMIT (rests unless IOC) and MARKET submits, cancel, and cancel/replace with FIX total-quantity
 * semantics and crossbook's priority rules. No validation beyond the bounds it needs, no other
 * features: it exists to tell how far the compiled book is from the machine's limit.
 *
 * The commands are read straight from the numpy COMMAND_DTYPE buffer; the Python side passes the
 * record size and field offsets so this file does not depend on the dtype's layout.
 * Built by benchmarks/bench_book.py with `gcc -O3 -shared -fPIC` into a temp dir, called via ctypes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { BUY = 1, SELL = 2, MARKET = 1, LIMIT = 2, IOC = 3, OP_SUBMIT = 1, OP_CANCEL = 2, OP_REPLACE = 3 };

typedef struct {
    int64_t price, qty, leaves;
    int32_t prev, next; /* neighbours in the level FIFO, ids as indices (-1 = none) */
    uint8_t side, live;
} Order;

typedef struct {
    int32_t head, tail;
} Level;

typedef struct {
    int64_t cmd_index, maker_id, taker_id, price, qty;
} Fill;

/* Field offsets inside one command record, in this order. */
enum { F_OP, F_ID, F_SIDE, F_PRICE, F_QTY, F_ORD_TYPE, F_TIF, N_FIELDS };

typedef struct {
    Order *orders;
    int64_t max_id;
    Level *bids, *asks; /* indexed by price - min_price */
    int64_t min_price, n_prices;
    int64_t best_bid, best_ask; /* level indices; -1 / n_prices when the side is empty */
    Fill *fills;
    int64_t n_fills, fills_cap;
} Book;

static inline int64_t rd_i64(const char *rec, int64_t off) { int64_t v; memcpy(&v, rec + off, 8); return v; }
static inline uint8_t rd_u8(const char *rec, int64_t off) { return (uint8_t)rec[off]; }

static void unlink_order(Book *b, int64_t id) {
    Order *o = &b->orders[id];
    Level *lv = (o->side == BUY ? b->bids : b->asks) + (o->price - b->min_price);
    if (o->prev >= 0) b->orders[o->prev].next = o->next; else lv->head = o->next;
    if (o->next >= 0) b->orders[o->next].prev = o->prev; else lv->tail = o->prev;
    o->live = 0;
    if (lv->head < 0) { /* level emptied: move the best index past empty levels */
        if (o->side == BUY) {
            while (b->best_bid >= 0 && b->bids[b->best_bid].head < 0) b->best_bid--;
        } else {
            while (b->best_ask < b->n_prices && b->asks[b->best_ask].head < 0) b->best_ask++;
        }
    }
}

static void rest_order(Book *b, int64_t id) {
    Order *o = &b->orders[id];
    int64_t px = o->price - b->min_price;
    Level *lv = (o->side == BUY ? b->bids : b->asks) + px;
    o->next = -1;
    o->prev = lv->tail;
    if (lv->tail >= 0) b->orders[lv->tail].next = (int32_t)id; else lv->head = (int32_t)id;
    lv->tail = (int32_t)id;
    o->live = 1;
    if (o->side == BUY) { if (px > b->best_bid) b->best_bid = px; }
    else if (px < b->best_ask) b->best_ask = px;
}

/* Match order `id` (not resting) against the opposite side; market orders take any price. */
static void match(Book *b, int64_t cmd_index, int64_t id, int is_market) {
    Order *t = &b->orders[id];
    if (t->side == BUY) {
        while (t->leaves > 0 && b->best_ask < b->n_prices
               && (is_market || b->best_ask + b->min_price <= t->price)) {
            Level *lv = &b->asks[b->best_ask];
            int64_t price = b->best_ask + b->min_price;
            while (t->leaves > 0 && lv->head >= 0) {
                int64_t mid = lv->head;
                Order *m = &b->orders[mid];
                int64_t q = m->leaves < t->leaves ? m->leaves : t->leaves;
                m->leaves -= q; t->leaves -= q;
                b->fills[b->n_fills++] = (Fill){cmd_index, mid, id, price, q};
                if (m->leaves == 0) unlink_order(b, mid); /* may advance best_ask */
            }
        }
    } else {
        while (t->leaves > 0 && b->best_bid >= 0
               && (is_market || b->best_bid + b->min_price >= t->price)) {
            Level *lv = &b->bids[b->best_bid];
            int64_t price = b->best_bid + b->min_price;
            while (t->leaves > 0 && lv->head >= 0) {
                int64_t mid = lv->head;
                Order *m = &b->orders[mid];
                int64_t q = m->leaves < t->leaves ? m->leaves : t->leaves;
                m->leaves -= q; t->leaves -= q;
                b->fills[b->n_fills++] = (Fill){cmd_index, mid, id, price, q};
                if (m->leaves == 0) unlink_order(b, mid);
            }
        }
    }
}

/* Process n commands; returns the number of fills written to `fills` (capacity fills_cap,
 * 2n always suffices: each fill ends its maker or its taker), or -1 if an id or price is out of
 * the bounds given or fills_cap < 2n, or -2 on allocation failure. Fill volume is written to *volume. */
int64_t array_book_process(const char *commands, int64_t n, int64_t itemsize, const int64_t *offsets,
                           int64_t max_id, int64_t min_price, int64_t max_price,
                           Fill *fills, int64_t fills_cap, int64_t *volume) {
    Book b;
    memset(&b, 0, sizeof b);
    b.max_id = max_id;
    b.min_price = min_price;
    b.n_prices = max_price - min_price + 1;
    b.orders = calloc((size_t)max_id + 1, sizeof(Order));
    b.bids = malloc((size_t)b.n_prices * sizeof(Level));
    b.asks = malloc((size_t)b.n_prices * sizeof(Level));
    if (!b.orders || !b.bids || !b.asks) { free(b.orders); free(b.bids); free(b.asks); return -2; }
    memset(b.bids, 0xff, (size_t)b.n_prices * sizeof(Level)); /* head = tail = -1 */
    memset(b.asks, 0xff, (size_t)b.n_prices * sizeof(Level));
    b.best_bid = -1;
    b.best_ask = b.n_prices;
    b.fills = fills;
    b.fills_cap = fills_cap;
    int64_t rc = 0;
    if (fills_cap < 2 * n) rc = -1;

    for (int64_t i = 0; rc == 0 && i < n; i++) {
        const char *rec = commands + i * itemsize;
        uint8_t op = rd_u8(rec, offsets[F_OP]);
        int64_t id = rd_i64(rec, offsets[F_ID]);
        if (id < 0 || id > max_id) { rc = -1; break; }
        Order *o = &b.orders[id];
        if (op == OP_SUBMIT) {
            if (o->qty != 0) continue; /* reused id: rejected */
            uint8_t ord_type = rd_u8(rec, offsets[F_ORD_TYPE]);
            o->side = rd_u8(rec, offsets[F_SIDE]);
            o->price = rd_i64(rec, offsets[F_PRICE]);
            o->qty = o->leaves = rd_i64(rec, offsets[F_QTY]);
            if (ord_type == LIMIT && (o->price < min_price || o->price > max_price)) { rc = -1; break; }
            match(&b, i, id, ord_type == MARKET);
            if (o->leaves > 0 && ord_type == LIMIT && rd_u8(rec, offsets[F_TIF]) != IOC) rest_order(&b, id);
        } else if (op == OP_CANCEL) {
            if (o->live) unlink_order(&b, id);
        } else if (op == OP_REPLACE) {
            if (!o->live) continue;
            int64_t qty = rd_i64(rec, offsets[F_QTY]);
            int64_t price = rd_i64(rec, offsets[F_PRICE]);
            int64_t filled = o->qty - o->leaves;
            if (price < min_price || price > max_price) { rc = -1; break; }
            if (qty <= filled) { unlink_order(&b, id); continue; }
            int64_t leaves = qty - filled;
            if (price == o->price && leaves <= o->leaves) { o->qty = qty; o->leaves = leaves; continue; }
            unlink_order(&b, id); /* priority lost: re-enter as new */
            o->qty = qty; o->leaves = leaves; o->price = price;
            match(&b, i, id, 0);
            if (o->leaves > 0) rest_order(&b, id);
        }
    }
    int64_t vol = 0;
    for (int64_t k = 0; k < b.n_fills; k++) vol += fills[k].qty;
    *volume = vol;
    free(b.orders); free(b.bids); free(b.asks);
    return rc < 0 ? rc : b.n_fills;
}
