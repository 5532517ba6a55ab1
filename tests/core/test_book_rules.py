"""One test per rule of shared/spec/matching.md (and per documented choice where it is silent),
each named after the rule it checks."""
import pytest

from crossbook.core import (
    Cancel, Fill, OrderBook, OrderState, OrdType, Reason, Side, Status, STPMode, TimeInForce,
)

BUY, SELL = Side.BUY, Side.SELL
DAY, GTC, IOC, FOK, GTD = (TimeInForce.DAY, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK,
                           TimeInForce.GTD)
MARKET, LIMIT, STOP, STOP_LIMIT = OrdType.MARKET, OrdType.LIMIT, OrdType.STOP, OrdType.STOP_LIMIT


@pytest.fixture
def book():
    return OrderBook()


def market(book, oid, side, qty, **kw):
    return book.submit(oid, side, 0, qty, ord_type=MARKET, **kw)


def trade_at(book, price, buy_id, sell_id):
    """Make the last trade price `price` with a fresh pair of orders."""
    book.submit(sell_id, SELL, price, 1)
    res = book.submit(buy_id, BUY, price, 1)
    assert res.fills[0] == (sell_id, buy_id, price, 1)
    return res


# ---- Units ---------------------------------------------------------------------------------------

def test_units_prices_and_quantities_are_integers(book):
    with pytest.raises(TypeError, match="price"):
        book.submit(1, BUY, 100.5, 1)
    with pytest.raises(TypeError, match="qty"):
        book.submit(1, BUY, 100, 1.0)
    assert book.submit(1, BUY, 100, 1).status is Status.RESTING


def test_units_order_id_unique_for_life_of_book_even_after_it_ended(book):
    book.submit(1, BUY, 100, 5)
    assert book.cancel(1) == 5
    res = book.submit(1, BUY, 100, 5)
    assert res.status is Status.REJECTED and res.reason_code is Reason.DUPLICATE_ID
    assert book.order(1) is None and len(book) == 0


# ---- Validation --------------------------------------------------------------------------------

def assert_rejected_unchanged(book, res, reason):
    assert res.status is Status.REJECTED
    assert res.reason_code is reason
    assert res.fills == [] and res.cancels == []
    assert len(book) == 1 and book.depth(BUY, 5) == [(99, 5, 1)]


@pytest.fixture
def one_bid():
    b = OrderBook()
    b.submit(100, BUY, 99, 5)
    return b


@pytest.mark.parametrize("qty", [0, -1])
def test_validation_qty_not_positive_is_rejected(one_bid, qty):
    assert_rejected_unchanged(one_bid, one_bid.submit(1, SELL, 99, qty), Reason.INVALID_QTY)


@pytest.mark.parametrize("ord_type", [LIMIT, STOP_LIMIT])
@pytest.mark.parametrize("price", [0, -1])
def test_validation_limit_and_stop_limit_price_not_positive_is_rejected(one_bid, ord_type, price):
    res = one_bid.submit(1, SELL, price, 1, ord_type=ord_type, stop_price=50)
    assert_rejected_unchanged(one_bid, res, Reason.INVALID_PRICE)


@pytest.mark.parametrize("ord_type", [STOP, STOP_LIMIT])
@pytest.mark.parametrize("stop", [0, -1])
def test_validation_stop_price_not_positive_is_rejected(one_bid, ord_type, stop):
    res = one_bid.submit(1, SELL, 90, 1, ord_type=ord_type, stop_price=stop)
    assert_rejected_unchanged(one_bid, res, Reason.INVALID_STOP_PRICE)


@pytest.mark.parametrize("display, kw", [
    (-1, {}), (10, {}), (11, {}),
    (2, dict(tif=IOC)), (2, dict(tif=FOK)), (2, dict(ord_type=MARKET)),
    (2, dict(ord_type=STOP, stop_price=90)), (2, dict(ord_type=STOP_LIMIT, stop_price=90)),
])
def test_validation_display_qty_negative_or_not_below_qty_or_not_resting_limit_is_rejected(
        one_bid, display, kw):
    res = one_bid.submit(1, SELL, 200, 10, display_qty=display, **kw)
    assert_rejected_unchanged(one_bid, res, Reason.INVALID_DISPLAY_QTY)


@pytest.mark.parametrize("kw", [dict(tif=IOC), dict(tif=FOK), dict(ord_type=MARKET),
                                dict(ord_type=STOP, stop_price=90),
                                dict(ord_type=STOP_LIMIT, stop_price=90)])
def test_validation_post_only_on_anything_but_resting_limit_is_rejected(one_bid, kw):
    res = one_bid.submit(1, SELL, 200, 10, post_only=True, **kw)
    assert_rejected_unchanged(one_bid, res, Reason.INVALID_POST_ONLY)


def test_validation_duplicate_id_is_rejected(one_bid):
    assert_rejected_unchanged(one_bid, one_bid.submit(100, SELL, 200, 1), Reason.DUPLICATE_ID)


def test_validation_display_and_post_only_allowed_on_resting_limit_of_every_resting_tif(book):
    for i, tif in enumerate((DAY, GTC, GTD)):
        res = book.submit(i, SELL, 200 + i, 10, tif=tif, display_qty=3, post_only=True,
                          expire_time=5)
        assert res.status is Status.RESTING
        assert book.order(i).displayed == 3


def test_validation_market_order_is_always_immediate_its_remainder_never_rests(book):
    book.submit(1, SELL, 101, 3)
    for i, tif in enumerate((DAY, GTC, GTD)):
        res = market(book, 10 + i, BUY, 5, tif=tif, expire_time=9)
        assert res.status is Status.CANCELLED
        assert res.reason_code is Reason.MARKET_REMAINDER
        assert book.order(10 + i) is None
    assert book.best_bid() is None


# ---- Matching ----------------------------------------------------------------------------------

def test_rule1_price_priority_best_price_first(book):
    book.submit(1, SELL, 103, 5)
    book.submit(2, SELL, 101, 5)
    book.submit(3, SELL, 102, 5)
    res = book.submit(4, BUY, 103, 12)
    assert [f.maker_id for f in res.fills] == [2, 3, 1]


def test_rule1_time_priority_arrival_order_within_a_price(book):
    for oid in (1, 2, 3):
        book.submit(oid, BUY, 100, 2)
    res = book.submit(9, SELL, 100, 5)
    assert res.fills == [(1, 9, 100, 2), (2, 9, 100, 2), (3, 9, 100, 1)]
    assert book.order(3).leaves == 1


def test_rule2_trade_prints_at_the_makers_price(book):
    book.submit(1, SELL, 100, 5)
    assert book.submit(2, BUY, 105, 5).fills == [Fill(1, 2, 100, 5)]
    book.submit(3, BUY, 98, 5)
    assert book.submit(4, SELL, 90, 5).fills == [Fill(3, 4, 98, 5)]
    assert book.last_price == 98


def test_rule3_buy_matches_while_ask_at_or_below_limit(book):
    book.submit(1, SELL, 100, 5)
    book.submit(2, SELL, 101, 5)
    book.submit(3, SELL, 102, 5)
    res = book.submit(4, BUY, 101, 20)
    assert res.fills == [(1, 4, 100, 5), (2, 4, 101, 5)]
    assert res.status is Status.PARTIALLY_FILLED and res.leaves_qty == 10
    assert book.best_bid() == (101, 10) and book.best_ask() == (102, 5)


def test_rule3_sell_matches_while_bid_at_or_above_limit(book):
    book.submit(1, BUY, 100, 5)
    book.submit(2, BUY, 99, 5)
    res = book.submit(3, SELL, 100, 8)
    assert res.fills == [(1, 3, 100, 5)]
    assert book.best_ask() == (100, 3) and book.best_bid() == (99, 5)


def test_rule3_market_order_matches_at_any_price(book):
    book.submit(1, SELL, 100, 5)
    book.submit(2, SELL, 10_000, 5)
    res = market(book, 3, BUY, 10)
    assert res.fills == [(1, 3, 100, 5), (2, 3, 10_000, 5)]
    assert res.status is Status.FILLED


def test_rule3_matching_stops_when_the_incoming_order_is_filled(book):
    book.submit(1, SELL, 100, 5)
    book.submit(2, SELL, 100, 5)
    res = book.submit(3, BUY, 100, 5)
    assert res.fills == [(1, 3, 100, 5)] and res.status is Status.FILLED
    assert book.depth(SELL, 5) == [(100, 5, 1)]


def test_rule4_post_only_that_would_match_is_rejected_and_nothing_happens(book):
    book.submit(1, SELL, 100, 5)
    res = book.submit(2, BUY, 100, 5, post_only=True)
    assert res.status is Status.REJECTED and res.reason_code is Reason.POST_ONLY_WOULD_MATCH
    assert res.fills == [] and book.depth(SELL, 5) == [(100, 5, 1)] and book.order(2) is None
    assert book.last_price == 0
    # one tick away it rests
    assert book.submit(3, BUY, 99, 5, post_only=True).status is Status.RESTING


def test_rule5_fok_that_cannot_fill_in_full_is_cancelled_with_no_fill_and_no_side_effect(book):
    book.submit(1, SELL, 100, 5)
    book.submit(2, SELL, 101, 5)
    res = book.submit(3, BUY, 101, 11, tif=FOK)
    assert res.status is Status.CANCELLED and res.reason_code is Reason.FOK_UNFILLABLE
    assert res.fills == [] and res.cancels == [Cancel(3, 11, Reason.FOK_UNFILLABLE)]
    assert book.depth(SELL, 5) == [(100, 5, 1), (101, 5, 1)] and book.last_price == 0


def test_rule5_fok_only_counts_acceptable_prices(book):
    book.submit(1, SELL, 100, 5)
    book.submit(2, SELL, 102, 5)
    assert book.submit(3, BUY, 101, 6, tif=FOK).status is Status.CANCELLED
    res = book.submit(4, BUY, 102, 10, tif=FOK)
    assert res.status is Status.FILLED and res.fills == [(1, 4, 100, 5), (2, 4, 102, 5)]


def test_rule5_fok_counts_iceberg_reserve_reachable_through_refresh(book):
    book.submit(1, SELL, 100, 10, display_qty=2)
    res = book.submit(2, BUY, 100, 10, tif=FOK)
    assert res.status is Status.FILLED
    assert sum(f.qty for f in res.fills) == 10


def test_rule5_fok_does_not_count_orders_stp_cancel_maker_would_skip(book):
    book.submit(1, SELL, 100, 5, owner=7)
    book.submit(2, SELL, 100, 5, owner=8)
    res = book.submit(3, BUY, 100, 6, tif=FOK, owner=7, stp=STPMode.CANCEL_MAKER)
    assert res.status is Status.CANCELLED and res.reason_code is Reason.FOK_UNFILLABLE
    assert book.depth(SELL, 5) == [(100, 10, 2)]          # no side effect: maker 1 still there
    res = book.submit(4, BUY, 100, 5, tif=FOK, owner=7, stp=STPMode.CANCEL_MAKER)
    assert res.status is Status.FILLED
    assert res.cancels == [Cancel(1, 5, Reason.STP_MAKER)] and res.fills == [(2, 4, 100, 5)]


@pytest.mark.parametrize("stp", [STPMode.CANCEL_TAKER, STPMode.CANCEL_BOTH])
def test_rule5_fok_with_cancel_taker_counts_only_what_is_ahead_of_the_first_self_order(book, stp):
    # the iceberg's reserve would only come back behind the self order, where the taker stops
    book.submit(1, SELL, 100, 10, display_qty=2, owner=1)
    book.submit(2, SELL, 100, 5, owner=7)
    book.submit(3, SELL, 101, 50, owner=1)
    res = book.submit(4, BUY, 101, 3, tif=FOK, owner=7, stp=stp)
    assert res.status is Status.CANCELLED and res.reason_code is Reason.FOK_UNFILLABLE
    assert book.depth(SELL, 5) == [(100, 7, 2), (101, 50, 1)]
    res = book.submit(5, BUY, 101, 2, tif=FOK, owner=7, stp=stp)
    assert res.status is Status.FILLED and res.fills == [(1, 5, 100, 2)]


def test_rule5_fok_counts_all_of_a_level_without_self_orders_and_self_trades_with_stp_none(book):
    book.submit(1, SELL, 100, 4, owner=7)
    book.submit(2, SELL, 100, 4, owner=8)
    res = book.submit(3, BUY, 100, 8, tif=FOK, owner=7)
    assert res.status is Status.FILLED and res.fills == [(1, 3, 100, 4), (2, 3, 100, 4)]


def test_rule6_remainder_of_day_gtc_gtd_limit_rests_at_the_back_of_its_level(book):
    book.submit(1, BUY, 100, 1)
    book.submit(2, SELL, 100, 2)
    book.submit(3, SELL, 100, 1, tif=GTC)
    book.submit(4, SELL, 100, 1, tif=GTD, expire_time=100)
    for oid in (2, 3, 4):
        assert book.order(oid).leaves == 1
    assert book.depth(SELL, 5) == [(100, 3, 3)]
    res = book.submit(5, BUY, 101, 5)
    assert [f.maker_id for f in res.fills] == [2, 3, 4]     # arrival order at 100
    assert res.status is Status.PARTIALLY_FILLED and book.depth(BUY, 1) == [(101, 2, 1)]
    assert book.submit(6, BUY, 101, 1, tif=GTC).status is Status.RESTING
    assert [f.maker_id for f in book.submit(7, SELL, 101, 3).fills] == [5, 6]


@pytest.mark.parametrize("tif, reason", [(IOC, Reason.IOC_REMAINDER),
                                         (FOK, Reason.FOK_UNFILLABLE)])
def test_rule6_ioc_and_fok_remainder_is_cancelled(book, tif, reason):
    book.submit(1, SELL, 100, 2)
    res = book.submit(2, BUY, 100, 3, tif=tif)
    assert res.status is Status.CANCELLED and res.reason_code is reason
    assert book.order(2) is None and book.best_bid() is None


def test_rule6_ioc_partial_fill_then_cancel(book):
    book.submit(1, SELL, 100, 2)
    res = book.submit(2, BUY, 100, 3, tif=IOC)
    assert res.fills == [(1, 2, 100, 2)] and res.cancels == [Cancel(2, 1, Reason.IOC_REMAINDER)]
    assert (res.filled_qty, res.leaves_qty) == (2, 0)


def test_rule6_market_remainder_is_cancelled(book):
    book.submit(1, SELL, 100, 2)
    res = market(book, 2, BUY, 3)
    assert res.fills == [(1, 2, 100, 2)]
    assert res.cancels == [Cancel(2, 1, Reason.MARKET_REMAINDER)]
    assert res.status is Status.CANCELLED and res.filled_qty == 2


def test_rule7_iceberg_only_displayed_slice_is_visible_in_depth(book):
    book.submit(1, SELL, 100, 10, display_qty=3)
    book.submit(2, SELL, 100, 4)
    assert book.depth(SELL, 1) == [(100, 7, 2)]
    assert book.best_ask() == (100, 7)
    assert book.order(1) == OrderState(SELL, 100, 10, 10, 3, 0)


def test_rule7_iceberg_refresh_goes_to_back_of_level_and_taker_reaches_it_after_others(book):
    book.submit(1, SELL, 100, 10, display_qty=3)
    book.submit(2, SELL, 100, 4)
    res = book.submit(3, BUY, 100, 9)
    # slice of 3, then order 2 (the refreshed slice is now behind it), then the new slice
    assert res.fills == [(1, 3, 100, 3), (2, 3, 100, 4), (1, 3, 100, 2)]
    assert book.order(1) == OrderState(SELL, 100, 10, 5, 1, 5)
    assert book.depth(SELL, 1) == [(100, 1, 1)]


def test_rule7_iceberg_last_slice_is_min_of_display_and_leaves(book):
    book.submit(1, SELL, 100, 7, display_qty=3)
    book.submit(2, BUY, 100, 6)
    assert book.order(1).displayed == 1 and book.depth(SELL, 1) == [(100, 1, 1)]


def test_rule7_iceberg_refresh_loses_priority_to_later_arrivals(book):
    book.submit(1, SELL, 100, 6, display_qty=2)
    book.submit(2, BUY, 100, 2)                  # uses up the first slice: refresh to back
    book.submit(3, SELL, 100, 5)                 # arrives after the refresh
    res = book.submit(4, BUY, 100, 3)
    assert res.fills == [(1, 4, 100, 2), (3, 4, 100, 1)]


def test_rule8_stp_cancel_taker_cancels_incoming_remainder_and_stops(book):
    book.submit(1, SELL, 100, 2, owner=1)
    book.submit(2, SELL, 100, 5, owner=7)
    book.submit(3, SELL, 100, 5, owner=1)
    res = book.submit(4, BUY, 100, 10, owner=7, stp=STPMode.CANCEL_TAKER)
    assert res.fills == [(1, 4, 100, 2)]
    assert res.cancels == [Cancel(4, 8, Reason.STP_TAKER)]
    assert res.status is Status.CANCELLED and res.reason_code is Reason.STP_TAKER
    assert book.depth(SELL, 1) == [(100, 10, 2)]


def test_rule8_stp_cancel_maker_cancels_whole_resting_order_and_goes_on(book):
    book.submit(1, SELL, 100, 20, display_qty=5, owner=7)     # all of it, reserve too
    book.submit(2, SELL, 101, 5, owner=1)
    res = book.submit(3, BUY, 101, 4, owner=7, stp=STPMode.CANCEL_MAKER)
    assert res.cancels == [Cancel(1, 20, Reason.STP_MAKER)]
    assert res.fills == [(2, 3, 101, 4)] and res.status is Status.FILLED
    assert book.order(1) is None and book.depth(SELL, 5) == [(101, 1, 1)]


def test_rule8_stp_cancel_both_cancels_maker_and_taker(book):
    book.submit(1, SELL, 100, 3, owner=1)
    book.submit(2, SELL, 100, 5, owner=7)
    book.submit(3, SELL, 100, 5, owner=1)
    res = book.submit(4, BUY, 100, 10, owner=7, stp=STPMode.CANCEL_BOTH)
    assert res.fills == [(1, 4, 100, 3)]
    assert res.cancels == [Cancel(2, 5, Reason.STP_MAKER), Cancel(4, 7, Reason.STP_TAKER)]
    assert book.depth(SELL, 1) == [(100, 5, 1)] and book.order(2) is None


def test_rule8_stp_none_lets_same_owner_trade_and_other_owners_always_trade(book):
    book.submit(1, SELL, 100, 3, owner=7)
    assert book.submit(2, BUY, 100, 3, owner=7).fills == [(1, 2, 100, 3)]
    book.submit(3, SELL, 100, 3, owner=8)
    res = book.submit(4, BUY, 100, 3, owner=7, stp=STPMode.CANCEL_TAKER)
    assert res.fills == [(3, 4, 100, 3)]


def test_rule8_stp_is_the_incoming_orders_mode_not_the_makers(book):
    book.submit(1, SELL, 100, 3, owner=7, stp=STPMode.CANCEL_TAKER)
    assert book.submit(2, BUY, 100, 3, owner=7).fills == [(1, 2, 100, 3)]


def test_rule9_stop_waits_invisible(book):
    res = book.submit(1, BUY, 0, 5, ord_type=STOP, stop_price=105)
    assert res.status is Status.STOP_PENDING
    assert book.best_bid() is None and book.depth(BUY, 5) == []
    assert book.order(1) == OrderState(BUY, 0, 5, 5, 0, 0) and book.is_pending_stop(1)
    assert len(book) == 1


def test_rule9_buy_stop_triggers_when_last_reaches_stop_from_below(book):
    book.submit(1, BUY, 0, 5, ord_type=STOP, stop_price=105)
    book.submit(2, SELL, 110, 5)
    trade_at(book, 104, 10, 11)
    assert book.is_pending_stop(1)
    book.submit(12, SELL, 105, 1)
    res = book.submit(13, BUY, 105, 1)               # last = 105 >= 105: stop 1 enters
    assert res.fills == [(12, 13, 105, 1), (2, 1, 110, 5)]
    assert book.order(1) is None and book.last_price == 110


def test_rule9_sell_stop_triggers_when_last_reaches_stop_from_above(book):
    book.submit(1, SELL, 0, 5, ord_type=STOP, stop_price=95)
    book.submit(2, BUY, 90, 5)
    trade_at(book, 96, 10, 11)
    assert book.is_pending_stop(1)
    book.submit(12, BUY, 95, 1)
    res = book.submit(13, SELL, 95, 1)
    assert res.fills == [(12, 13, 95, 1), (2, 1, 90, 5)]


def test_rule9_stop_checked_at_entry_when_a_last_trade_exists(book):
    trade_at(book, 100, 1, 2)
    book.submit(3, SELL, 101, 4)
    res = book.submit(4, BUY, 0, 4, ord_type=STOP, stop_price=99)   # last 100 >= 99
    assert res.status is Status.FILLED and res.fills == [(3, 4, 101, 4)]


def test_rule9_stop_does_not_trigger_before_any_trade(book):
    book.submit(1, SELL, 0, 4, ord_type=STOP, stop_price=10 ** 6)
    assert book.is_pending_stop(1) and book.last_price == 0


def test_rule9_stop_enters_as_market_and_stop_limit_as_limit_at_its_limit_price(book):
    book.submit(1, BUY, 0, 5, ord_type=STOP, stop_price=100)
    book.submit(2, BUY, 102, 5, ord_type=STOP_LIMIT, stop_price=100)
    book.submit(3, SELL, 101, 2)
    book.submit(4, SELL, 103, 10)
    trade_at(book, 100, 10, 11)
    # stop 1 (market) takes 101 x2 and 103 x3; stop-limit 2 at 102 cannot take 103: rests
    assert book.order(1) is None
    assert book.order(2) == OrderState(BUY, 102, 5, 5, 5, 0)
    assert not book.is_pending_stop(2)
    assert book.depth(SELL, 5) == [(103, 7, 1)]


def test_rule9_triggered_orders_enter_one_at_a_time_in_arrival_order(book):
    book.submit(1, BUY, 0, 2, ord_type=STOP, stop_price=101)
    book.submit(2, BUY, 0, 2, ord_type=STOP, stop_price=100)
    book.submit(3, BUY, 0, 2, ord_type=STOP, stop_price=99)
    book.submit(4, SELL, 110, 6)
    book.submit(5, SELL, 101, 1)
    res = book.submit(6, BUY, 101, 1)       # last 101 triggers all three: arrival order
    assert [f.taker_id for f in res.fills[1:]] == [1, 2, 3]


def test_rule9_cascade_triggered_trades_trigger_more_before_the_operation_returns(book):
    book.submit(1, BUY, 0, 1, ord_type=STOP, stop_price=105)     # triggered by stop 2's trade
    book.submit(2, BUY, 0, 1, ord_type=STOP, stop_price=101)
    book.submit(3, SELL, 105, 1)
    book.submit(4, SELL, 107, 1)
    book.submit(5, SELL, 101, 1)
    res = book.submit(6, BUY, 101, 1)
    assert res.fills == [(5, 6, 101, 1), (3, 2, 105, 1), (4, 1, 107, 1)]
    assert book.last_price == 107 and len(book) == 0


def test_rule9_stops_elected_earlier_enter_before_stops_elected_later(book):
    # 2 and 3 are elected by the 101 trade; 2's trade at 106 then elects 1 (arrived first), which
    # still waits behind 3
    book.submit(1, BUY, 0, 1, ord_type=STOP, stop_price=106)
    book.submit(2, BUY, 0, 1, ord_type=STOP, stop_price=101)
    book.submit(3, BUY, 0, 1, ord_type=STOP, stop_price=100)
    book.submit(4, SELL, 106, 1)
    book.submit(5, SELL, 107, 1)
    book.submit(6, SELL, 108, 1)
    book.submit(7, SELL, 101, 1)
    res = book.submit(8, BUY, 101, 1)
    assert [(f.taker_id, f.price) for f in res.fills] == [(8, 101), (2, 106), (3, 107), (1, 108)]


def test_rule9_triggered_stop_remainder_is_reported(book):
    book.submit(1, BUY, 0, 5, ord_type=STOP, stop_price=100)
    book.submit(2, SELL, 101, 2)
    book.submit(3, SELL, 100, 1)
    res = book.submit(4, BUY, 100, 1)
    assert res.fills == [(3, 4, 100, 1), (2, 1, 101, 2)]
    assert res.cancels == [Cancel(1, 3, Reason.MARKET_REMAINDER)]
    assert res.status is Status.FILLED        # the status is that of order 4


# ---- Cancel and replace -------------------------------------------------------------------------

def test_cancel_removes_a_resting_order_and_reports_cancelled_qty(book):
    book.submit(1, BUY, 100, 5)
    book.submit(2, SELL, 100, 2)
    assert book.cancel(1) == 3
    assert book.order(1) is None and book.best_bid() is None and len(book) == 0


def test_cancel_removes_a_waiting_stop(book):
    book.submit(1, SELL, 0, 4, ord_type=STOP, stop_price=90)
    res = book.cancel_result(1)
    assert res.status is Status.CANCELLED and res.cancels == [Cancel(1, 4, Reason.USER_CANCEL)]
    trade_at(book, 80, 10, 11)
    assert book.order(1) is None


def test_cancel_unknown_or_finished_id_is_reported_and_nothing_changes(book):
    book.submit(1, BUY, 100, 5)
    book.submit(2, SELL, 100, 5)              # 1 and 2 filled
    book.submit(3, BUY, 99, 5)
    assert book.cancel(1) == 0 and book.cancel(77) == 0
    assert book.cancel_result(1).reason_code is Reason.TOO_LATE
    assert book.cancel_result(77).reason_code is Reason.UNKNOWN_ORDER
    assert book.depth(BUY, 5) == [(99, 5, 1)]


def test_replace_qty_is_the_new_total_order_qty_fix_semantics(book):
    book.submit(1, SELL, 100, 10)
    book.submit(2, BUY, 100, 4)
    res = book.replace(1, 8, 100)           # 4 filled: 4 left
    assert res.status is Status.PARTIALLY_FILLED and (res.filled_qty, res.leaves_qty) == (4, 4)
    assert book.order(1) == OrderState(SELL, 100, 8, 4, 4, 4)


@pytest.mark.parametrize("new_qty", [4, 3])
def test_replace_new_qty_at_or_below_filled_ends_the_order(book, new_qty):
    book.submit(1, SELL, 100, 10)
    book.submit(2, BUY, 100, 4)
    res = book.replace(1, new_qty, 100)
    assert res.status is Status.FILLED and res.reason_code is Reason.REPLACED_TO_FILLED
    assert res.cancels == [Cancel(1, 6, Reason.REPLACED_TO_FILLED)]
    assert (res.filled_qty, res.leaves_qty) == (4, 0)
    assert book.order(1) is None and book.best_ask() is None


def test_replace_same_price_leaves_not_increased_keeps_time_priority(book):
    book.submit(1, SELL, 100, 10)
    book.submit(2, SELL, 100, 10)
    assert book.replace(1, 6, 100).status is Status.RESTING
    assert book.replace(1, 6, 100).status is Status.RESTING          # unchanged is in place too
    res = book.submit(3, BUY, 100, 7)
    assert res.fills == [(1, 3, 100, 6), (2, 3, 100, 1)]


def test_replace_leaves_increased_loses_priority(book):
    book.submit(1, SELL, 100, 10)
    book.submit(2, SELL, 100, 10)
    book.replace(1, 11, 100)
    res = book.submit(3, BUY, 100, 12)
    assert res.fills == [(2, 3, 100, 10), (1, 3, 100, 2)]


def test_replace_price_change_loses_priority(book):
    book.submit(1, SELL, 101, 5)
    book.submit(2, SELL, 100, 5)
    book.replace(1, 5, 100)
    res = book.submit(3, BUY, 100, 6)
    assert res.fills == [(2, 3, 100, 5), (1, 3, 100, 1)]


def test_replace_that_loses_priority_re_enters_as_if_new_and_can_trade(book):
    book.submit(1, BUY, 100, 5)
    book.submit(2, SELL, 102, 3)
    book.submit(3, SELL, 103, 3)
    res = book.replace(1, 5, 102)
    assert res.fills == [(2, 1, 102, 3)]
    assert res.status is Status.PARTIALLY_FILLED and book.depth(BUY, 1) == [(102, 2, 1)]


def test_replace_post_only_moved_to_a_matching_price_is_rejected_and_stays_as_it_was(book):
    book.submit(1, SELL, 102, 3)
    book.submit(2, BUY, 100, 5, post_only=True)
    res = book.replace(2, 5, 102)
    assert res.status is Status.REJECTED and res.reason_code is Reason.POST_ONLY_WOULD_MATCH
    assert book.order(2) == OrderState(BUY, 100, 5, 5, 5, 0)
    assert book.depth(SELL, 1) == [(102, 3, 1)]
    assert book.replace(2, 5, 101).status is Status.RESTING


# ---- Time --------------------------------------------------------------------------------------

def test_end_of_day_cancels_day_orders_only(book):
    book.submit(1, BUY, 100, 5, tif=DAY)
    book.submit(2, BUY, 99, 5, tif=GTC)
    book.submit(3, SELL, 105, 5, tif=GTD, expire_time=10)
    book.submit(4, SELL, 0, 5, ord_type=STOP, stop_price=90, tif=DAY)
    book.submit(5, SELL, 106, 5, tif=DAY)
    assert book.end_of_day() == [Cancel(1, 5, Reason.END_OF_DAY), Cancel(5, 5, Reason.END_OF_DAY),
                                 Cancel(4, 5, Reason.END_OF_DAY)]
    assert book.live_order_ids() == [2, 3]


def test_expire_cancels_gtd_orders_whose_expiry_is_at_or_before_now(book):
    book.submit(1, BUY, 100, 5, tif=GTD, expire_time=10)
    book.submit(2, BUY, 100, 5, tif=GTD, expire_time=11)
    book.submit(3, BUY, 100, 5, tif=DAY)
    book.submit(4, SELL, 110, 5, ord_type=STOP_LIMIT, stop_price=90, tif=GTD, expire_time=5)
    assert book.expire(9) == [Cancel(4, 5, Reason.EXPIRED)]
    assert book.expire(10) == [Cancel(1, 5, Reason.EXPIRED)]
    assert book.live_order_ids() == [2, 3]


# ---- Market data -------------------------------------------------------------------------------

def test_market_data_best_bid_and_best_ask(book):
    assert book.best_bid() is None and book.best_ask() is None
    book.submit(1, BUY, 99, 5)
    book.submit(2, BUY, 99, 2)
    book.submit(3, BUY, 98, 5)
    book.submit(4, SELL, 101, 3)
    assert book.best_bid() == (99, 7) and book.best_ask() == (101, 3)


def test_market_data_depth_up_to_n_levels_best_first_with_displayed_qty_and_count(book):
    for oid, price in enumerate([95, 97, 96, 97, 94]):
        book.submit(oid, BUY, price, 10, display_qty=4 if oid == 3 else 0)
    assert book.depth(BUY, 3) == [(97, 14, 2), (96, 10, 1), (95, 10, 1)]
    assert book.depth(BUY, 10) == [(97, 14, 2), (96, 10, 1), (95, 10, 1), (94, 10, 1)]
    assert book.depth(SELL, 10) == []


def test_market_data_every_operation_reports_trades_in_order_and_ended_orders(book):
    book.submit(1, SELL, 100, 2, owner=5)
    book.submit(2, SELL, 101, 2)
    book.submit(3, SELL, 102, 2)
    res = book.submit(4, BUY, 101, 10, tif=IOC, owner=5, stp=STPMode.CANCEL_MAKER)
    assert res.fills == [(2, 4, 101, 2)]
    assert res.cancels == [Cancel(1, 2, Reason.STP_MAKER), Cancel(4, 8, Reason.IOC_REMAINDER)]


# ---- Choices where the spec is silent (docs/core.md) ---------------------------------------------

def test_choice_market_order_on_empty_book_is_cancelled_with_market_remainder(book):
    res = market(book, 1, BUY, 5)
    assert res.status is Status.CANCELLED and res.reason_code is Reason.MARKET_REMAINDER
    assert res.cancels == [Cancel(1, 5, Reason.MARKET_REMAINDER)]


def test_choice_rejected_submission_does_not_consume_its_id(book):
    assert book.submit(1, BUY, 0, 5).status is Status.REJECTED
    assert book.submit(1, BUY, 100, 5).status is Status.RESTING


def test_choice_iceberg_replace_in_place_keeps_slice_capped_by_leaves(book):
    book.submit(1, SELL, 100, 10, display_qty=4)
    book.replace(1, 3, 100)
    assert book.order(1) == OrderState(SELL, 100, 3, 3, 3, 0)
    book.submit(2, SELL, 100, 1)
    res = book.submit(3, BUY, 100, 3)
    assert res.fills == [(1, 3, 100, 3)]       # priority kept


def test_choice_iceberg_replace_that_loses_priority_gets_a_fresh_slice(book):
    book.submit(1, SELL, 100, 10, display_qty=4)
    book.submit(2, BUY, 100, 3)                       # slice now 1
    book.replace(1, 10, 101)
    assert book.order(1) == OrderState(SELL, 101, 10, 7, 4, 3)


def test_choice_stop_replace_keeps_stop_price_and_loses_place_when_leaves_grow(book):
    book.submit(1, BUY, 0, 2, ord_type=STOP, stop_price=100)
    book.submit(2, BUY, 0, 2, ord_type=STOP, stop_price=100)
    assert book.replace(1, 3, 999).status is Status.STOP_PENDING     # price ignored on STOP
    assert book.order(1) == OrderState(BUY, 0, 3, 3, 0, 0)
    book.submit(3, SELL, 110, 10)
    res = trade_at(book, 100, 10, 11)
    assert [(f.taker_id, f.qty) for f in res.fills[1:]] == [(2, 2), (1, 3)]
    assert book.depth(SELL, 1) == [(110, 5, 1)]


def test_choice_stop_replace_down_keeps_its_place(book):
    book.submit(1, BUY, 0, 3, ord_type=STOP, stop_price=100)
    book.submit(2, BUY, 0, 2, ord_type=STOP, stop_price=100)
    book.replace(1, 1, 0)
    book.submit(3, SELL, 110, 10)
    res = trade_at(book, 100, 10, 11)
    assert [(f.taker_id, f.qty) for f in res.fills[1:]] == [(1, 1), (2, 2)]


def test_choice_stop_limit_replace_changes_limit_price(book):
    book.submit(1, BUY, 101, 2, ord_type=STOP_LIMIT, stop_price=100)
    res = book.replace(1, 2, 103)
    assert res.status is Status.STOP_PENDING and book.order(1).price == 103


def test_choice_stp_cancel_maker_on_iceberg_cancels_reserve_too(book):
    book.submit(1, BUY, 100, 50, display_qty=5, owner=3)
    res = book.submit(2, SELL, 100, 5, owner=3, stp=STPMode.CANCEL_MAKER)
    assert res.cancels == [Cancel(1, 50, Reason.STP_MAKER)]
    assert res.status is Status.RESTING and book.best_bid() is None


def test_choice_status_reflects_the_order_at_the_end_of_the_operation(book):
    # the resting remainder of order 3 is taken by a stop its own trade triggered
    book.submit(1, SELL, 0, 10, ord_type=STOP, stop_price=100)
    book.submit(2, SELL, 100, 1)
    res = book.submit(3, BUY, 100, 5)
    assert res.fills == [(2, 3, 100, 1), (3, 1, 100, 4)]
    assert res.status is Status.FILLED and (res.filled_qty, res.leaves_qty) == (5, 0)
