"""The venue interface is the contract between the OMS and every venue: pin its shape."""
from __future__ import annotations

import dataclasses
import inspect

import pytest

from crossbook.core import OrdType, Reason, Side, STPMode, TimeInForce
from crossbook.model.instruments import DEFAULT_INSTRUMENTS, InstrumentMaster
from crossbook.routing.venue import Venue, VenueEvent, VenueEventKind, VenueOrder, VenueReason


def fields(cls):
    return [(f.name, f.default if f.default is not dataclasses.MISSING else "required")
            for f in dataclasses.fields(cls)]


def test_venue_order_fields_as_in_the_contract():
    assert fields(VenueOrder) == [
        ("venue_cl_ord_id", "required"), ("instrument", "required"), ("side", "required"), ("ord_type", "required"),
        ("tif", "required"), ("qty", "required"), ("price", "required"), ("stop_price", 0), ("display_qty", 0),
        ("post_only", False), ("expire_time", 0), ("owner", 0), ("stp", STPMode.NONE),
    ]
    inst = InstrumentMaster.from_config(DEFAULT_INSTRUMENTS).by_symbol("AAPL")
    o = VenueOrder("c1", inst, Side.BUY, OrdType.LIMIT, TimeInForce.DAY, 100, 23000)
    assert not hasattr(o, "__dict__")  # slots: cheap on the hot path


def test_venue_event_fields_as_in_the_contract():
    got = fields(VenueEvent)
    assert got[:15] == [
        ("kind", "required"), ("venue", "required"), ("venue_cl_ord_id", "required"), ("venue_order_id", "required"),
        ("last_qty", 0), ("last_px", 0), ("leaves_qty", 0), ("cum_qty", 0), ("reason", ""), ("reason_code", 0),
        ("exec_id", ""), ("ts", 0), ("orig_venue_cl_ord_id", ""), ("ord_status", -1), ("last_mkt", ""),
    ]
    assert len(got) == 15  # additions go at the end, with defaults, and are listed above
    ev = VenueEvent(VenueEventKind.NEW, "V", "c1", "V-1")
    assert not hasattr(ev, "__dict__")


def test_event_kinds():
    assert [k.name for k in VenueEventKind] == [
        "NEW", "REJECTED", "TRADE", "CANCELED", "REPLACED", "CANCEL_REJECTED", "REPLACE_REJECTED", "STOP_TRIGGERED",
        "STATUS"]


def test_venue_reasons_do_not_collide_with_core_reasons():
    assert not {int(r) for r in VenueReason} & {int(r) for r in Reason}
    assert min(VenueReason) >= 100


def test_protocol_methods():
    expected = {
        "lists": ["instrument"], "set_event_sink": ["sink"], "start": [], "stop": [], "new_order": ["order"],
        "cancel_order": ["venue_cl_ord_id", "cancel_cl_ord_id"],
        "replace_order": ["venue_cl_ord_id", "new_venue_cl_ord_id", "qty", "price"],
        "order_status": ["venue_cl_ord_id"], "top_of_book": ["instrument"], "depth": ["instrument", "levels"],
    }
    for name, params in expected.items():
        sig = inspect.signature(getattr(Venue, name))
        assert list(sig.parameters)[1:] == params, name
    assert inspect.iscoroutinefunction(Venue.start) and inspect.iscoroutinefunction(Venue.stop)
    assert isinstance(Venue.__dict__["is_up"], property)


def test_in_process_venue_implements_the_protocol():
    from crossbook.venues import InProcessVenue

    class Clock:
        def now_ns(self):
            return 0

    venue = InProcessVenue("VENUE-A", InstrumentMaster.from_config(DEFAULT_INSTRUMENTS), Clock())
    assert isinstance(venue, Venue)
    for name in ("new_order", "cancel_order", "replace_order", "order_status", "top_of_book", "depth", "lists"):
        proto = list(inspect.signature(getattr(Venue, name)).parameters)
        impl = list(inspect.signature(getattr(InProcessVenue, name)).parameters)
        assert impl == proto, name
    assert venue.name == "VENUE-A"


def test_something_else_is_not_a_venue():
    class NotAVenue:
        name = "X"

    assert not isinstance(NotAVenue(), Venue)
    with pytest.raises(TypeError):
        VenueOrder("c1")  # required fields
