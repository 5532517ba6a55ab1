"""The order lifecycle: ONE transition table and a small state machine that refuses illegal moves.

Every change of ``Order.state`` goes through ``transition()``. A (state, trigger) pair that is
not in ``TRANSITIONS`` raises ``IllegalTransition``: that is a bug in the order manager or a
venue, never something to paper over by overwriting the state.

``WORKING`` as a target means "back to whatever the fills say": FILLED when nothing is left,
NEW when nothing was filled, else PARTIALLY_FILLED (used when a cancel or replace is refused,
and when a replace is done).
"""
from __future__ import annotations

from enum import Enum

from crossbook.model.enums import OrderState

S = OrderState


class Trigger(str, Enum):
    """What happened to an order."""

    ACCEPTED = "accepted"                  # venue acknowledged the new order
    REJECTED = "rejected"                  # OMS (gateway/risk) or venue refused the new order
    PARTIAL_FILL = "partial_fill"          # a fill leaving quantity open
    FILL = "fill"                          # a fill completing the order
    CANCEL_REQUESTED = "cancel_requested"  # client (or mass cancel / kill switch) asked to cancel
    CANCEL_REJECTED = "cancel_rejected"    # venue refused the cancel
    CANCELED = "canceled"                  # order ended: requested or unsolicited cancel
    REPLACE_REQUESTED = "replace_requested"
    REPLACE_REJECTED = "replace_rejected"
    REPLACED = "replaced"
    EXPIRED = "expired"                    # GTD expiry or end of day


WORKING = "working"  # resolved by the fills, see module docstring

_OPEN_AT_VENUE = (S.NEW, S.PARTIALLY_FILLED, S.PENDING_CANCEL, S.PENDING_REPLACE)

#: (state, trigger) -> new state. Anything missing is illegal.
TRANSITIONS: dict[tuple[OrderState, Trigger], OrderState | str] = {
    (S.PENDING_NEW, Trigger.ACCEPTED): S.NEW,
    (S.PENDING_NEW, Trigger.REJECTED): S.REJECTED,
    (S.PENDING_NEW, Trigger.PARTIAL_FILL): S.PARTIALLY_FILLED,   # venue filled before its ack arrived
    (S.PENDING_NEW, Trigger.FILL): S.FILLED,
    (S.PENDING_NEW, Trigger.CANCELED): S.CANCELED,               # IOC/FOK killed on entry
    (S.PENDING_NEW, Trigger.EXPIRED): S.EXPIRED,

    (S.NEW, Trigger.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.NEW, Trigger.FILL): S.FILLED,
    (S.NEW, Trigger.CANCEL_REQUESTED): S.PENDING_CANCEL,
    (S.NEW, Trigger.REPLACE_REQUESTED): S.PENDING_REPLACE,
    (S.NEW, Trigger.CANCELED): S.CANCELED,
    (S.NEW, Trigger.EXPIRED): S.EXPIRED,

    (S.PARTIALLY_FILLED, Trigger.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, Trigger.FILL): S.FILLED,
    (S.PARTIALLY_FILLED, Trigger.CANCEL_REQUESTED): S.PENDING_CANCEL,
    (S.PARTIALLY_FILLED, Trigger.REPLACE_REQUESTED): S.PENDING_REPLACE,
    (S.PARTIALLY_FILLED, Trigger.CANCELED): S.CANCELED,
    (S.PARTIALLY_FILLED, Trigger.EXPIRED): S.EXPIRED,

    # A fill may race a cancel: the order stays pending until the venue answers the cancel.
    (S.PENDING_CANCEL, Trigger.PARTIAL_FILL): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, Trigger.FILL): S.FILLED,
    (S.PENDING_CANCEL, Trigger.CANCELED): S.CANCELED,
    (S.PENDING_CANCEL, Trigger.CANCEL_REJECTED): WORKING,
    (S.PENDING_CANCEL, Trigger.EXPIRED): S.EXPIRED,

    (S.PENDING_REPLACE, Trigger.PARTIAL_FILL): S.PENDING_REPLACE,
    (S.PENDING_REPLACE, Trigger.FILL): S.FILLED,
    (S.PENDING_REPLACE, Trigger.REPLACED): WORKING,
    (S.PENDING_REPLACE, Trigger.REPLACE_REJECTED): WORKING,
    (S.PENDING_REPLACE, Trigger.CANCELED): S.CANCELED,           # unsolicited cancel wins
    (S.PENDING_REPLACE, Trigger.EXPIRED): S.EXPIRED,
}


_TABLE_GET = TRANSITIONS.get


class IllegalTransition(RuntimeError):
    """A move the lifecycle table does not allow (a bug, not a business rejection)."""

    def __init__(self, state: OrderState, trigger: Trigger, order_id: str = "") -> None:
        self.state = state
        self.trigger = trigger
        where = f" (order {order_id})" if order_id else ""
        super().__init__(f"illegal order transition: {trigger.value} in state {state.value}{where}")


def next_state(state: OrderState, trigger: Trigger, cum_qty: int, leaves_qty: int,
               order_id: str = "") -> OrderState:
    """The state after ``trigger``; raises IllegalTransition when the table has no such move."""
    target = TRANSITIONS.get((state, trigger))
    if target is None:
        raise IllegalTransition(state, trigger, order_id)
    if target == WORKING:
        if leaves_qty == 0:
            return S.FILLED if cum_qty > 0 else S.CANCELED
        return S.NEW if cum_qty == 0 else S.PARTIALLY_FILLED
    return target  # type: ignore[return-value]


def allowed(state: OrderState, trigger: Trigger) -> bool:
    """Whether the table has a move for (state, trigger)."""
    return (state, trigger) in TRANSITIONS


def transition(order, trigger: Trigger) -> OrderState:
    """Move ``order`` (anything with state/cum_qty/leaves_qty/order_id) and return its new state."""
    # next_state() written out: this runs for every change of every order (twice per order at
    # least), and the second call plus its argument loads cost as much as the table lookup.
    state = order.state
    target = _TABLE_GET((state, trigger))
    if target is None:
        raise IllegalTransition(state, trigger, order.order_id)
    if target == WORKING:
        leaves_qty, cum_qty = order.leaves_qty, order.cum_qty
        if leaves_qty == 0:
            target = S.FILLED if cum_qty > 0 else S.CANCELED
        else:
            target = S.NEW if cum_qty == 0 else S.PARTIALLY_FILLED
    order.state = target
    return target
