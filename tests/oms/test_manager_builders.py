"""The order manager's compiled builders against the dataclass and NamedTuple they stand in for.

The hot path makes new orders with ``_pending_order`` (slot stores compiled at import) and
journal rows with ``_OrderRow`` / ``_ExecutionRow``; each must give exactly what the model's own
constructor / ``to_row()`` gives, for any values."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from crossbook.model.enums import ExecType, OrderState, OrdStatus
from crossbook.model.orders import ORDER_FIELDS, Execution, Order
from crossbook.oms import manager as m

_text = st.text(max_size=12)
_int = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@settings(max_examples=60, deadline=None)
@given(order_id=_text, seq=_int, session=_text, begin_string=_text, firm=_text, account=_text, symbol=_text,
       instrument_index=_int, side=_int, ord_type=_int, tif=_int, qty=_int, price=_int, stop_px=_int,
       display_qty=_int, post_only=st.booleans(), expire_time=_int, cl_ord_id=_text, now=_int)
def test_pending_order_equals_the_dataclass_constructor(order_id, seq, session, begin_string, firm, account, symbol,
                                                         instrument_index, side, ord_type, tif, qty, price, stop_px,
                                                         display_qty, post_only, expire_time, cl_ord_id, now):
    built = m._pending_order(order_id, seq, session, begin_string, firm, account, symbol, instrument_index, side,
                             ord_type, tif, qty, price, stop_px, display_qty, post_only, expire_time, cl_ord_id, now)
    expected = Order(order_id=order_id, seq=seq, session=session, begin_string=begin_string, firm=firm,
                     account=account, symbol=symbol, instrument_index=instrument_index, side=side, ord_type=ord_type,
                     tif=tif, qty=qty, price=price, stop_px=stop_px, display_qty=display_qty, post_only=post_only,
                     expire_time=expire_time, cl_ord_id=cl_ord_id, leaves_qty=qty, created_ns=now, updated_ns=now,
                     cl_ord_ids=[cl_ord_id])
    assert type(built) is Order
    assert built == expected
    # Field by field, by identity where the dataclass passes the value through: nothing converted.
    for name in ORDER_FIELDS:
        if name != "cl_ord_ids":
            assert getattr(built, name) is getattr(expected, name), name
    assert built.state is OrderState.PENDING_NEW
    assert built.to_row() == expected.to_row()


def test_pending_orders_never_share_their_clordid_chain():
    a = m._pending_order("O1", 1, "S", "FIX.4.4", "F", "A", "AAPL", 0, 1, 2, 0, 5, 100, 0, 0, False, 0, "C1", 7)
    b = m._pending_order("O2", 2, "S", "FIX.4.4", "F", "A", "AAPL", 0, 1, 2, 0, 5, 100, 0, 0, False, 0, "C1", 7)
    a.cl_ord_ids.append("C9")
    assert b.cl_ord_ids == ["C1"]


@settings(max_examples=40, deadline=None)
@given(order_id=_text, qty=_int, cum_qty=_int, state=st.sampled_from(list(OrderState)), risk_price=_int,
       chain=st.lists(_text, max_size=4))
def test_order_row_is_to_row_plus_risk_price(order_id, qty, cum_qty, state, risk_price, chain):
    order = Order(order_id, 1, "S", "FIX.4.4", "F", "A", "AAPL", 0, 1, 2, 0, qty, cum_qty=cum_qty, state=state,
                  cl_ord_ids=list(chain))
    row = m._OrderRow(order, risk_price).__dict__
    expected = order.to_row()
    expected["risk_price"] = risk_price
    assert list(row.items()) == list(expected.items())
    assert row["cl_ord_ids"] is not order.cl_ord_ids   # a snapshot


@settings(max_examples=40, deadline=None)
@given(values=st.tuples(_text, _text, _int, _text, _text, st.sampled_from(list(ExecType)),
                        st.sampled_from(list(OrdStatus)), _text, _int, _int, _int, _int, _int, _int, _int, _int, _text,
                        _text, _text, _int, _int, _text, _text))
def test_execution_row_is_to_row(values):
    ex = Execution(*values)
    assert list(m._ExecutionRow(values).__dict__.items()) == list(ex.to_row().items())
