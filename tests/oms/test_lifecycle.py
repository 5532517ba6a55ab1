"""The lifecycle transition table and its state machine."""
from __future__ import annotations

import itertools

import pytest

from crossbook.model.enums import OrderState, TERMINAL_STATES
from crossbook.model.orders import Order
from crossbook.oms.lifecycle import TRANSITIONS, IllegalTransition, Trigger, allowed, next_state, transition

S = OrderState


def order(state: OrderState, qty=100, cum=0) -> Order:
    return Order(order_id="O1", seq=1, session="S", begin_string="FIX.4.4", firm="F", account="A", symbol="X",
                 instrument_index=0, side=1, ord_type=2, tif=0, qty=qty, state=state, cum_qty=cum,
                 leaves_qty=qty - cum)


def test_terminal_states_have_no_way_out():
    for state, trigger in itertools.product(TERMINAL_STATES, Trigger):
        assert not allowed(state, trigger)
        with pytest.raises(IllegalTransition, match="illegal order transition"):
            next_state(state, trigger, 0, 0)


@pytest.mark.parametrize("state,trigger", [
    (S.PENDING_NEW, Trigger.CANCEL_REQUESTED),   # must be acked first (answered with a cancel reject)
    (S.PENDING_NEW, Trigger.REPLACED),
    (S.NEW, Trigger.ACCEPTED),                    # a second ack
    (S.NEW, Trigger.REPLACED),                    # a replace that was never requested
    (S.NEW, Trigger.CANCEL_REJECTED),
    (S.PENDING_CANCEL, Trigger.REPLACE_REQUESTED),
    (S.PENDING_CANCEL, Trigger.CANCEL_REQUESTED),
    (S.PENDING_REPLACE, Trigger.CANCEL_REQUESTED),
    (S.PENDING_REPLACE, Trigger.CANCEL_REJECTED),
    (S.PARTIALLY_FILLED, Trigger.REJECTED),
])
def test_illegal_moves_raise_and_leave_the_order_alone(state, trigger):
    o = order(state)
    with pytest.raises(IllegalTransition) as info:
        transition(o, trigger)
    assert info.value.state is state and info.value.trigger is trigger
    assert o.state is state


def test_working_resolves_from_the_fills():
    assert next_state(S.PENDING_CANCEL, Trigger.CANCEL_REJECTED, 0, 100) is S.NEW
    assert next_state(S.PENDING_CANCEL, Trigger.CANCEL_REJECTED, 40, 60) is S.PARTIALLY_FILLED
    assert next_state(S.PENDING_REPLACE, Trigger.REPLACED, 40, 0) is S.FILLED
    assert next_state(S.PENDING_REPLACE, Trigger.REPLACE_REJECTED, 0, 100) is S.NEW


def test_full_paths():
    o = order(S.PENDING_NEW)
    for trigger, expected in [(Trigger.ACCEPTED, S.NEW), (Trigger.PARTIAL_FILL, S.PARTIALLY_FILLED),
                              (Trigger.REPLACE_REQUESTED, S.PENDING_REPLACE),
                              (Trigger.PARTIAL_FILL, S.PENDING_REPLACE), (Trigger.REPLACED, S.PARTIALLY_FILLED),
                              (Trigger.CANCEL_REQUESTED, S.PENDING_CANCEL), (Trigger.CANCELED, S.CANCELED)]:
        o.cum_qty, o.leaves_qty = 10, 90
        assert transition(o, trigger) is expected


def test_every_target_is_a_state_and_every_non_terminal_state_can_end():
    for (state, trigger), target in TRANSITIONS.items():
        assert state not in TERMINAL_STATES
        assert target == "working" or isinstance(target, OrderState)
    for state in OrderState:
        if state not in TERMINAL_STATES:
            assert any(allowed(state, t) and isinstance(TRANSITIONS[(state, t)], OrderState)
                       and TRANSITIONS[(state, t)] in TERMINAL_STATES for t in Trigger), state
