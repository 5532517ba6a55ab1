"""Cross-tests of the Cython codec against simplefix, both ways.

simplefix is the message API at the gateway; the codec is the fast path.  Every message one of
them produces, the other must read as the same (tag, value) list.
"""
from __future__ import annotations

import os

import pytest
import simplefix
from simplefix.data import RAW_DATA_TAGS, RAW_LEN_TAGS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossbook.fix.codec import (
    DATA_FIELDS,
    ExecutionReportEncoder,
    FrameReader,
    FrameStatus,
    decode_order,
    encode_message,
    find_frame,
    parse_utc_timestamp,
    split_fields,
)

HYPOTHESIS = settings(max_examples=int(os.environ.get("CODEC_EXAMPLES", "100")), deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])


def simplefix_pairs(message: simplefix.FixMessage):
    return [(int(tag), value) for tag, value in message.pairs]


def parse_with_simplefix(data: bytes):
    parser = simplefix.FixParser()
    parser.append_buffer(data)
    message = parser.get_message()
    assert message is not None, data
    assert parser.get_message() is None
    return simplefix_pairs(message)


def read_with_codec(data: bytes):
    reader = FrameReader()
    reader.feed(data)
    frames = list(reader)
    assert len(frames) == 1 and frames[0] == data, frames
    fields = split_fields(frames[0])
    assert fields.ok, fields.error_reason
    return fields.pairs()


values = st.binary(min_size=1, max_size=24).filter(lambda b: b"\x01" not in b)
# simplefix knows more (FIX 5.0) length-prefixed data tags than the codec's FIX 4.x table; random
# plain fields avoid both sets, data fields come from the shared ones.
RESERVED = {8, 9, 10, 35} | set(DATA_FIELDS) | set(DATA_FIELDS.values()) | set(RAW_LEN_TAGS) | set(RAW_DATA_TAGS)
plain_tags = st.integers(1, 9999).filter(lambda t: t not in RESERVED)


@st.composite
def field_lists(draw):
    fields = []
    for _ in range(draw(st.integers(0, 20))):
        if draw(st.integers(0, 7)) == 0:
            length_tag, data_tag = draw(st.sampled_from(sorted(DATA_FIELDS.items())))
            fields.append(("data", length_tag, data_tag, draw(st.binary(min_size=1, max_size=40))))
        else:
            fields.append(("pair", draw(plain_tags), draw(values)))
    return fields


def build_simplefix(begin: bytes, msg_type: bytes, header, fields) -> simplefix.FixMessage:
    message = simplefix.FixMessage()
    message.append_pair(8, begin, header=True)
    message.append_pair(35, msg_type, header=True)
    for tag, value in header:
        message.append_pair(tag, value, header=True)
    for item in fields:
        if item[0] == "data":
            message.append_data(item[1], item[2], item[3])
        else:
            message.append_pair(item[1], item[2])
    return message


def flat(fields):
    out = []
    for item in fields:
        if item[0] == "data":
            out += [(item[1], len(item[3])), (item[2], item[3])]
        else:
            out.append((item[1], item[2]))
    return out


HEADER = [(34, b"12"), (49, b"CLIENT01"), (52, b"20261125-08:15:00.123"), (56, b"CROSSBOOK")]
ORDERS = {
    b"D": [(11, b"ORD-1"), (1, b"ACC-7"), (55, b"ESZ6"), (54, b"1"), (38, b"10"), (40, b"2"),
           (44, b"4512.25"), (59, b"0"), (60, b"20261125-08:15:00.120"), (21, b"1")],
    b"F": [(41, b"ORD-1"), (11, b"ORD-2"), (55, b"ESZ6"), (54, b"1"), (38, b"10"),
           (60, b"20261125-08:15:01.000")],
    b"G": [(41, b"ORD-2"), (11, b"ORD-3"), (55, b"ESZ6"), (54, b"1"), (38, b"7"), (40, b"2"),
           (44, b"4513"), (60, b"20261125-08:15:02.000"), (21, b"1")],
}


# ---------------------------------------------------------------------------------------------
# simplefix -> codec
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("msg_type", sorted(ORDERS))
def test_orders_built_by_simplefix_decode_to_the_same_values(msg_type):
    message = build_simplefix(b"FIX.4.4", msg_type, HEADER, [("pair", t, v) for t, v in ORDERS[msg_type]])
    data = message.encode()
    assert read_with_codec(data) == parse_with_simplefix(data)
    order = decode_order(data)
    assert order.ok, order.error_reason
    assert order.msg_type == msg_type.decode()
    assert order.msg_seq_num == 12 and order.sender_comp_id == "CLIENT01"
    assert order.sending_time_ns == parse_utc_timestamp("20261125-08:15:00.123")
    for tag, value in ORDERS[msg_type]:
        assert order.get(tag) == value
    assert order.cl_ord_id == dict(ORDERS[msg_type])[11].decode()


def test_simplefix_timestamps_and_data_fields_read_identically():
    message = build_simplefix(b"FIX.4.2", b"D", HEADER[:2] + [(56, b"X")], [("pair", 11, b"A")])
    message.append_utc_timestamp(60, 1764058500.123456, precision=6)
    message.append_data(95, 96, b"a\x01b=c\x01")
    data = message.encode()
    assert read_with_codec(data) == parse_with_simplefix(data)
    order = decode_order(data)
    assert order.transact_time_ns == 1764058500123456000
    assert order.get(96) == b"a\x01b=c\x01"


@HYPOTHESIS
@given(st.sampled_from([b"FIX.4.2", b"FIX.4.4", b"FIXT.1.1"]),
       st.sampled_from([b"D", b"F", b"G", b"8", b"0", b"AE"]),
       st.lists(st.tuples(st.sampled_from([34, 49, 52, 56, 43, 115]), values), max_size=5),
       field_lists())
def test_random_messages_built_by_simplefix_are_read_identically(begin, msg_type, header, fields):
    data = build_simplefix(begin, msg_type, header, fields).encode()
    ours = read_with_codec(data)
    assert ours == parse_with_simplefix(data)
    assert ours[3:-1] == header + [(t, str(v).encode() if isinstance(v, int) else v) for t, v in flat(fields)]


# ---------------------------------------------------------------------------------------------
# codec -> simplefix
# ---------------------------------------------------------------------------------------------

@HYPOTHESIS
@given(st.sampled_from(["FIX.4.2", "FIX.4.4", "FIXT.1.1"]),
       st.sampled_from(["D", "8", "0", "AE"]),
       st.lists(st.tuples(st.sampled_from([34, 49, 52, 56, 43, 115]), values), max_size=5),
       field_lists())
def test_messages_we_encode_are_parsed_identically_by_simplefix(begin, msg_type, header, fields):
    data = encode_message(begin, msg_type, header, flat(fields))
    theirs = parse_with_simplefix(data)
    assert theirs == read_with_codec(data)
    assert theirs[0] == (8, begin.encode()) and theirs[2] == (35, msg_type.encode())
    assert theirs[3:-1] == [(t, str(v).encode() if isinstance(v, int) else v) for t, v in header + flat(fields)]
    # simplefix would encode the same pairs to the same bytes (same 9 and 10).
    assert build_simplefix(begin.encode(), msg_type.encode(), header, fields).encode() == data


@pytest.mark.parametrize("begin", ["FIX.4.2", "FIX.4.4"])
def test_execution_reports_match_simplefix_both_ways(begin):
    enc = ExecutionReportEncoder(begin, "CROSSBOOK", "CLIENT01", price_scale=2, timestamp_precision=3)
    sending = parse_utc_timestamp("20261125-08:15:00.123")
    data = enc.encode(5, sending, order_id="X-1", exec_id="E-2", exec_type="F", ord_status="1",
                      cl_ord_id="ORD-1", account="ACC-7", symbol="ESZ6", side="2", order_qty=10,
                      price=451225, last_qty=4, last_px=451225, leaves_qty=6, cum_qty=4,
                      avg_px=451225, transact_time_ns=sending, text="partial")
    assert find_frame(data).status == FrameStatus.COMPLETE
    theirs = parse_with_simplefix(data)
    assert theirs == read_with_codec(data)

    # simplefix building the same report produces identical bytes.
    message = simplefix.FixMessage()
    message.append_pair(8, begin, header=True)
    message.append_pair(35, "8", header=True)
    message.append_pair(34, 5, header=True)
    message.append_pair(49, "CROSSBOOK", header=True)
    message.append_utc_timestamp(52, 1795594500.123, precision=3, header=True)
    message.append_pair(56, "CLIENT01", header=True)
    for tag, value in [(37, "X-1"), (11, "ORD-1"), (17, "E-2")] + ([(20, "0")] if begin == "FIX.4.2" else []) + [
        (150, "F"), (39, "1"), (1, "ACC-7"), (55, "ESZ6"), (54, "2"), (38, "10"), (44, "4512.25"),
        (32, "4"), (31, "4512.25"), (151, "6"), (14, "4"), (6, "4512.25"),
    ]:
        message.append_pair(tag, value)
    message.append_utc_timestamp(60, 1795594500.123, precision=3)
    message.append_pair(58, "partial")
    assert message.encode() == data
