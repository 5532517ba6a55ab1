"""validate_split (one-pass acceptance of flat messages, then the full checks) against
validate_reference (the full QuickFIX-order checks for every message): the same answer for
every message, valid or not, in every version and with every option."""
from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from crossbook.fix.dictionary import load_dictionary
from crossbook.fix.framing import Frame, iter_frames
from crossbook.fix.messages import encode
from crossbook.fix.session import TestClock
from crossbook.fix.validation import ValidationOptions, validate, validate_reference, validate_split

from fix_sessionkit import base_stream

EXAMPLES = int(os.environ.get("FIX_FUZZ_EXAMPLES", "150"))
FUZZ = hsettings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DICTIONARIES = [load_dictionary("FIX.4.2"), load_dictionary("FIX.4.4"),
                load_dictionary("FIXT.1.1", appl_ver_id="7"), load_dictionary("FIXT.1.1", appl_ver_id="9")]
HEAD = [(34, b"2"), (49, b"TW"), (52, b"20260101-00:00:00.000"), (56, b"ISLD")]
BODIES = {
    b"D": [(11, b"ID1"), (21, b"1"), (38, b"100"), (40, b"2"), (44, b"10.5"), (54, b"1"), (55, b"ABC"),
           (60, b"20260101-00:00:00")],
    b"F": [(11, b"ID3"), (41, b"ID2"), (38, b"5"), (54, b"2"), (55, b"X"), (60, b"20260101-00:00:00")],
    b"8": [(6, b"0"), (11, b"ID"), (14, b"0"), (17, b"E"), (20, b"0"), (37, b"O"), (39, b"0"), (54, b"1"),
           (55, b"X"), (150, b"0"), (151, b"1"), (18, b"6 G")],
    b"0": [(112, b"T")],
    b"A": [(98, b"0"), (108, b"30"), (1137, b"9")],
    b"j": [(45, b"2"), (58, b"x"), (372, b"D"), (380, b"3")],
}
VALUES = [b"", b"1", b"-1", b"0", b"Y", b"N", b"X", b"1.5", b"abc", b"20260101-00:00:00", b"20261301-00:00:00",
          b"6 G", b"6  G", b"9", b"FIX.4.4", b"FIXT.1.1", b"FIX.4.2", b"D", b"99"]
TAGS = [8, 9, 10, 34, 35, 49, 52, 56, 1128, 627, 628, 386, 336, 453, 448, 11, 38, 44, 54, 58, 1137, 5001, 9999,
        18, 95, 96, 93, 89, 115, 128, 0]


def messages_for(dd, msg_type):
    begin = dd.begin_string.encode()
    head = list(HEAD)
    return [(t, v) for t, v in _fields(encode(begin, msg_type, head, BODIES[msg_type]))]


def _fields(raw):
    [frame] = iter_frames(raw)
    assert isinstance(frame, Frame)
    return frame.fields


edit = st.one_of(
    st.tuples(st.just("drop"), st.integers(0, 40)),
    st.tuples(st.just("dup"), st.integers(0, 40)),
    st.tuples(st.just("swap"), st.integers(0, 40), st.integers(0, 40)),
    st.tuples(st.just("value"), st.integers(0, 40), st.sampled_from(VALUES)),
    st.tuples(st.just("insert"), st.integers(0, 40), st.sampled_from(TAGS), st.sampled_from(VALUES)),
)


def apply(fields, edits):
    fields = list(fields)
    for e in edits:
        if not fields:
            break
        i = e[1] % len(fields)
        if e[0] == "drop":
            del fields[i]
        elif e[0] == "dup":
            fields.insert(i, fields[i])
        elif e[0] == "swap":
            j = e[2] % len(fields)
            fields[i], fields[j] = fields[j], fields[i]
        elif e[0] == "value":
            fields[i] = (fields[i][0], e[2])
        else:
            fields.insert(i, (e[2], e[3]))
    return fields


options = st.builds(ValidationOptions, st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans(),
                    st.booleans())


@FUZZ
@given(dd=st.sampled_from(DICTIONARIES), msg_type=st.sampled_from(sorted(BODIES)),
       edits=st.lists(edit, max_size=4), opts=options)
def test_fast_validation_gives_the_reference_answer(dd, msg_type, edits, opts):
    fields = apply(messages_for(dd, msg_type), edits)
    expected = validate_reference(fields, dd, opts)
    assert validate_split(fields, dd, opts) == expected
    assert validate(fields, dd, opts) == expected


@FUZZ
@given(data=st.data())
def test_fast_validation_on_session_traffic(data):
    logon, stream = base_stream(TestClock())
    dd = load_dictionary("FIX.4.4")
    opts = data.draw(options)
    for event in iter_frames(logon + stream):
        fields = apply(event.fields, data.draw(st.lists(edit, max_size=2)))
        assert validate_split(fields, dd, opts) == validate_reference(fields, dd, opts)


def test_valid_messages_take_the_fast_path_and_stay_valid():
    from crossbook.fix.validation import _accepts_flat

    for dd in DICTIONARIES:
        for msg_type in (b"D", b"F", b"0"):
            fields = messages_for(dd, msg_type)
            if dd.begin_string == "FIX.4.2" and msg_type == b"F":
                continue
            assert validate_reference(fields, dd) is None, (dd, msg_type, validate_reference(fields, dd))
            assert _accepts_flat(fields, dd, ValidationOptions()), (dd, msg_type)


@FUZZ
@given(dd=st.sampled_from(DICTIONARIES), msg_type=st.sampled_from(sorted(BODIES)),
       edits=st.lists(edit, max_size=4), opts=options)
def test_compiled_flat_pass_agrees_with_its_python_reference(dd, msg_type, edits, opts):
    """The pass ``_accepts_flat`` runs in C (``_codec.accepts_flat``, plans looked up by MsgType
    bytes) concludes exactly what the Python pass does, on valid and broken messages alike."""
    from crossbook.fix.validation import _accepts_flat, _accepts_flat_reference

    fields = apply(messages_for(dd, msg_type), edits)
    assert _accepts_flat(fields, dd, opts) == _accepts_flat_reference(fields, dd, opts)


@FUZZ
@given(dd=st.sampled_from(DICTIONARIES), msg_type=st.sampled_from(sorted(BODIES)),
       edits=st.lists(edit, max_size=4), opts=options)
def test_flat_pass_on_the_lookup_dict_agrees_with_the_pass_on_the_list(dd, msg_type, edits, opts):
    """``accepts_flat_first`` (the session's check of a codec-read message, from its first-value
    dict and field count) concludes what ``_accepts_flat`` does on the field list."""
    from crossbook.fix._codec import first_values
    from crossbook.fix.validation import _accepts_flat, accepts_flat_first, plan_table

    fields = apply(messages_for(dd, msg_type), edits)
    expected = _accepts_flat(fields, dd, opts)
    assert accepts_flat_first(first_values(fields), len(fields), dd, opts, plan_table(dd, opts)) == expected
    assert accepts_flat_first(first_values(fields), len(fields), dd, opts, {}) == expected


def test_first_values_keeps_the_first_occurrence_of_each_tag():
    from crossbook.fix.codec import first_values
    from crossbook.fix.messages import Message

    fields = [(8, b"FIX.4.4"), (9, b"5"), (35, b"D"), (448, b"A"), (448, b"B"), (0, b""), (-1, b"x"), (10, b"000")]
    assert first_values(fields) == {8: b"FIX.4.4", 9: b"5", 35: b"D", 448: b"A", 0: b"", -1: b"x", 10: b"000"}
    assert first_values([]) == {}
    assert Message(fields).get(448) == b"A" and Message(fields).get(0) == b""


_FORMAT_EDGES = [
    b"", b"-", b"0", b"-0", b"00", b"2147483647", b"2147483648", b"-2147483648", b"-2147483649",
    b"0002147483647", b"99999999999", b"18446744073709551615", b"18446744073709551616",
    b"0018446744073709551615", b"118446744073709551615", b"1.", b".5", b"-.5", b".", b"-.", b"1.2.3",
    b"1e5", b" 1", b"1 ", b"+1", b"1_0", b"Y", b"N", b"YY", b"y", b"20261125-09:00:00",
    b"20261125-09:00:00.", b"20261125-09:00:60.123456789", b"20261125-09:00:00.1234567890",
    b"20261325-09:00:00", b"20261100-09:00:00", b"20261132-09:00:00", b"20261125-24:00:00",
    b"20261125-09:60:00", b"20261125-09:00:61", b"2026112509:00:00.000", b"20261125-09:00:00Z",
    b"20261125-09:00:00.12a", b"\xd9\xa0", b"\xd9\xa0.5", "١".encode(),
]


def _registered_checks():
    from crossbook.fix import validation as v
    return [v._is_int32, v._is_uint64, v._is_float, v._is_char, v._is_bool, v._is_utc_timestamp]


def test_compiled_format_checks_agree_with_the_validators_functions_on_edges():
    """``accepts_flat`` runs six of the validator's format checks in C: same verdict as the
    Python function for every edge of its pattern and range."""
    from crossbook.fix._codec import compiled_format_check
    for check in _registered_checks():
        for value in _FORMAT_EDGES:
            assert compiled_format_check(check, value) == check(value), (check.__name__, value)
    # An unregistered check is called, not replaced.
    assert compiled_format_check(lambda v: v == b"x", b"x") is True


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=30),
                 st.from_regex(rb"\A-?[0-9]{0,22}(\.[0-9]{0,3})?\Z"),
                 st.from_regex(rb"\A[0-9]{8}-[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{0,10})?\Z")))
def test_compiled_format_checks_agree_with_the_validators_functions(value):
    from crossbook.fix._codec import compiled_format_check
    for check in _registered_checks():
        assert compiled_format_check(check, value) == check(value), (check.__name__, value)


def test_compiled_flat_pass_on_messages_beyond_its_small_size():
    """``accepts_flat`` checks repeated tags in C up to 64 fields and with a set beyond: both
    branches give the Python pass's verdict (a table that knows every tag, so only the
    repeat and required checks decide)."""
    from crossbook.fix._codec import accepts_flat

    def message(tags):
        return [(8, b"FIX.4.4"), (9, b"100"), (35, b"D")] + [(t, b"v") for t in tags] + [(10, b"000")]

    table = {t: (0 if t in (8, 9, 35) else 2 if t == 10 else 1, None, None, False) for t in range(1, 400)}
    required = frozenset({8, 9, 35, 10, 150})
    for count in (60, 61, 62, 100):
        tags = list(range(200, 200 + count))
        distinct = message(tags + [150])
        assert accepts_flat(distinct, b"FIX.4.4", table, required, True)
        assert not accepts_flat(message(tags + [150, 200]), b"FIX.4.4", table, required, True)   # repeated
        assert not accepts_flat(message(tags), b"FIX.4.4", table, required, True)                # 150 missing
        assert not accepts_flat(message(tags + [150, 150]), b"FIX.4.4", table, required, True)
        assert accepts_flat(tuple(distinct), b"FIX.4.4", table, required, True)                   # any sequence
