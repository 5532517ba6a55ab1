"""MemoValidator gives exactly the dictionary validator's verdicts (seeded random differential)."""
from __future__ import annotations

import random

import pytest

from crossbook.fix.session import dictionary_validator
from crossbook.fix.settings import SessionSettings
from crossbook.oms.validation import MemoValidator

VALUES = {
    11: [b"A1", b"B-2", b"x y", b"", b"\xe9"],
    1: [b"ACC1", b""],
    21: [b"1", b"4", b""],
    55: [b"AAPL", b"MSFT", b"", b"EUR/USD"],
    54: [b"1", b"2", b"9", b""],
    60: [b"20260101-00:00:00", b"20260101-00:00:00.123", b"20260231-00:00:00", b"2026", b"20261301-25:00:00",
         b"20260101-00:00:00.1234"],
    38: [b"100", b"1.5", b"-1", b"abc", b"", b"1e3", b"0"],
    40: [b"1", b"2", b"3", b"Z"],
    44: [b"230.00", b"230", b"-1", b"x", b"", b"1.123456789"],
    59: [b"0", b"3", b"X"],
    18: [b"6", b"6 G", b"?"],
    111: [b"10", b"x"],
    126: [b"20260101-00:00:00", b"soon"],
    58: [b"hello world", b""],
    9999: [b"custom"],
}


def typical(rng: random.Random, begin: str, seq: int) -> list[tuple[int, bytes]]:
    """The common case: a fixed shape, only the variable fields change (sometimes to bad values)."""
    px = rng.choice([b"230.00", b"229.5", b"231", b"-1", b"1e2", b""]) if rng.random() < 0.2 else b"230.%02d" % rng.randint(0, 99)
    ts = rng.choice([b"20260231-00:00:00", b"x"]) if rng.random() < 0.05 else b"20260101-00:00:%02d" % rng.randint(0, 59)
    return [(8, begin.encode()), (9, b"%d" % rng.randint(50, 300)), (35, b"D"), (34, str(seq).encode()),
            (49, b"FIRM1"), (52, b"20260101-00:00:00.000"), (56, b"CROSSBOOK"), (11, b"C%d" % seq),
            (21, b"1"), (55, rng.choice([b"AAPL", b"MSFT"])), (54, rng.choice([b"1", b"2"])), (60, ts),
            (38, b"%d" % rng.randint(1, 1000)), (40, b"2"), (44, px), (10, b"%03d" % rng.randint(0, 255))]


def message(rng: random.Random, begin: str, seq: int) -> list[tuple[int, bytes]]:
    if rng.random() < 0.6:
        return typical(rng, begin, seq)
    body = []
    for tag in ([11, 55, 54, 60, 38, 40] + rng.sample([1, 21, 44, 59, 18, 111, 126, 58, 9999], rng.randint(0, 4))):
        if rng.random() < 0.93:
            body.append((tag, rng.choice(VALUES[tag]) if rng.random() < 0.5 else VALUES[tag][0]))
    if rng.random() < 0.1:
        rng.shuffle(body)
    seq_value = str(seq).encode() if rng.random() < 0.95 else rng.choice([b"x", b"0", b""])
    sending = b"20260101-00:00:00.000" if rng.random() < 0.95 else rng.choice([b"bad", b"20260101"])
    head = [(8, begin.encode()), (9, b"%d" % rng.randint(50, 300)), (35, b"D" if rng.random() < 0.95 else b"F"),
            (34, seq_value), (49, b"FIRM1"), (52, sending), (56, b"CROSSBOOK")]
    if rng.random() < 0.05:
        head.insert(4, (43, b"Y"))
    return head + body + [(10, b"%03d" % rng.randint(0, 255) if rng.random() < 0.97 else b"1")]


@pytest.mark.parametrize("begin", ["FIX.4.2", "FIX.4.4"])
def test_memo_verdicts_equal_the_dictionary_validator(begin):
    settings = SessionSettings(begin_string=begin, sender_comp_id="CROSSBOOK", target_comp_id="FIRM1")
    full = dictionary_validator(settings)
    memo = MemoValidator([settings])
    rng = random.Random(4242)
    verdicts = set()
    for seq in range(1, 4001):
        fields = message(rng, begin, seq)
        expected = full(fields, begin, None)
        assert memo(fields, begin, None) == expected, fields
        verdicts.add(None if expected is None else (expected.reason, expected.ref_tag))
    assert memo.hits > 500 and memo.misses > 500     # both paths ran
    assert None in verdicts and len(verdicts) > 8     # accepted and many kinds of rejects


def test_a_shape_that_passed_does_not_excuse_a_bad_variable_value():
    settings = SessionSettings(begin_string="FIX.4.4", sender_comp_id="CROSSBOOK", target_comp_id="FIRM1")
    memo = MemoValidator([settings])
    good = [(8, b"FIX.4.4"), (9, b"99"), (35, b"D"), (34, b"2"), (49, b"FIRM1"), (52, b"20260101-00:00:00"),
            (56, b"CROSSBOOK"), (11, b"A"), (55, b"AAPL"), (54, b"1"), (60, b"20260101-00:00:00"), (38, b"5"),
            (40, b"2"), (44, b"1.00"), (10, b"000")]
    assert memo(good, "FIX.4.4", None) is None and memo(good, "FIX.4.4", None) is None
    assert memo.hits == 1
    bad = [(t, b"abc" if t == 38 else v) for t, v in good]
    problem = memo(bad, "FIX.4.4", None)
    assert problem is not None and problem.ref_tag == 38
