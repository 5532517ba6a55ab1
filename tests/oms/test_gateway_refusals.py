"""A NewOrderSingle the gateway refuses (ExecutionReport Rejected) hands the order manager what
was known of the order at the check that failed: the rejected order row is made from exactly
those values (``OrderManager.reject_new``'s keywords), stage by stage."""
from __future__ import annotations

import tomllib

import pytest

from crossbook.app.config import DEFAULT_CONFIG, parse_config
from crossbook.fix.messages import Message, encode
from crossbook.model.enums import OrdRejReason
from crossbook.oms.gateway import FixGateway

CFG = parse_config(tomllib.loads(DEFAULT_CONFIG), "<test>")


class RecordingManager:
    """What the gateway asks of the manager, recorded."""

    def __init__(self) -> None:
        self.rejected: list[tuple] = []
        self.orders: list = []

    def set_output_sink(self, send, store) -> None:
        pass

    def find(self, session, cl_ord_id):
        return None

    def new_order(self, cmd) -> None:
        self.orders.append(cmd)

    def reject_new(self, session, begin_string, cl_ord_id, reason, text, **known) -> None:
        self.rejected.append((reason, known))


def refused(**fields) -> tuple:
    body = {11: b"C1", 1: b"ACC1", 55: b"AAPL", 54: b"1", 38: b"100", 40: b"2", 44: b"229.00", 59: b"0",
            60: b"20260101-00:00:00"}
    body.update({tag: value for tag, value in ((int(k[1:]), v) for k, v in fields.items()) if value is not None})
    for tag in [int(k[1:]) for k, v in fields.items() if v is None]:
        body.pop(tag, None)
    raw = encode(b"FIX.4.4", b"D", [(34, 2), (49, b"FIRM1"), (52, b"20260101-00:00:00"), (56, b"CROSSBOOK")],
                 list(body.items()))
    from crossbook.fix.framing import split_fields
    manager = RecordingManager()
    FixGateway(manager, CFG.instruments, CFG.directory).on_new_order_single("FIRM1", "FIX.4.4",
                                                                           Message(split_fields(raw), raw))
    assert not manager.orders and len(manager.rejected) == 1
    return manager.rejected[0]


AAPL = {"account": "ACC1", "symbol": "AAPL", "side": 1, "instrument_index": 0}
CASES = [
    (dict(t1=b"NOPE"), OrdRejReason.UNKNOWN_ACCOUNT, {"account": "NOPE", "symbol": "AAPL", "side": 1}),
    (dict(t1=b"NOPE", t54=b"7", t55=b"ZZZ"), OrdRejReason.UNKNOWN_ACCOUNT, {"account": "NOPE", "symbol": "ZZZ", "side": 0}),
    (dict(t55=b"ZZZ"), OrdRejReason.UNKNOWN_SYMBOL, {"account": "ACC1", "symbol": "ZZZ", "side": 1}),
    (dict(t54=b"7"), OrdRejReason.UNSUPPORTED_ORDER_CHARACTERISTIC, {**AAPL, "side": 0}),
    (dict(t40=b"9"), OrdRejReason.UNSUPPORTED_ORDER_CHARACTERISTIC, AAPL),
    (dict(t59=b"9"), OrdRejReason.UNSUPPORTED_ORDER_CHARACTERISTIC, {**AAPL, "ord_type": 2}),
    (dict(t38=b"-5"), OrdRejReason.INCORRECT_QUANTITY, {**AAPL, "ord_type": 2, "tif": 0}),
    (dict(t44=b"229.001"), None, {**AAPL, "ord_type": 2, "tif": 0, "qty": 100}),
    (dict(t40=b"4", t99=b"1.001"), None, {**AAPL, "ord_type": 4, "tif": 0, "qty": 100, "price": 22900}),
    (dict(t40=b"3", t44=None, t99=b"1.001"), None, {**AAPL, "ord_type": 3, "tif": 0, "qty": 100}),
    (dict(t111=b"200"), OrdRejReason.INCORRECT_QUANTITY, {**AAPL, "ord_type": 2, "tif": 0, "qty": 100, "price": 22900}),
    (dict(t40=b"1", t44=None, t111=b"x"), OrdRejReason.INCORRECT_QUANTITY, {**AAPL, "ord_type": 1, "tif": 0, "qty": 100}),
    (dict(t59=b"6", t126=b"garbage"), OrdRejReason.OTHER,
     {**AAPL, "ord_type": 2, "tif": 6, "qty": 100, "price": 22900}),
]


@pytest.mark.parametrize("fields, reason, known", CASES)
def test_a_refused_order_reports_what_was_known_at_the_failed_check(fields, reason, known):
    got_reason, got_known = refused(**fields)
    if reason is not None:
        assert got_reason == reason
    assert got_known == known
