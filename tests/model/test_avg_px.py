"""avg_px_text: the AvgPx (6) text the OMS sends (FIX) and serves (HTTP), rounded half to even at
the tick's decimals + AVG_PX_EXTRA_DECIMALS; the exact average stays inside."""
from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings, strategies as st

from crossbook.model.orders import AVG_PX_EXTRA_DECIMALS, avg_px_text


def reference(cum_value: int, cum_qty: int, tick: Decimal) -> str:
    """Slow and obvious: Fraction, round() (which is half to even), then strip zeros."""
    if cum_qty == 0:
        return "0"
    places = max(0, -tick.normalize().as_tuple().exponent) + AVG_PX_EXTRA_DECIMALS
    exact = Fraction(cum_value) * Fraction(tick) / cum_qty
    scaled = round(exact * 10 ** places)
    if scaled == 0:
        return "0"
    sign = "-" if scaled < 0 else ""
    digits = str(abs(scaled)).rjust(places + 1, "0")
    whole, frac = digits[: len(digits) - places], digits[len(digits) - places:].rstrip("0")
    return f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}"


@pytest.mark.parametrize("cum_value, cum_qty, tick, text", [
    (690_020, 30, "0.01", "230.00666667"),          # 28 digits exact; 8 decimals on the wire
    (23_000 * 30, 30, "0.01", "230"),               # a terminating average keeps no zeros
    (2_760_170, 120, "0.01", "230.01416667"),
    (1, 3, "0.25", "0.08333333"),                   # tick 0.25: 2 decimals + 6
    (10, 3, "1", "3.333333"),                       # whole-number tick: 6 decimals
    (11_000_003, 3, "0.00001", "36.66667666667"),   # FX pip fraction: 5 + 6
    (0, 0, "0.01", "0"),                            # nothing filled
    (1, 2_000_000, "0.01", "0"),                    # 0.000000005: a tie, rounds to the even 0
    (3, 2_000_000, "0.01", "0.00000002"),           # 0.000000015: a tie, rounds to the even 2
    (5, 2_000_000, "0.01", "0.00000002"),           # 0.000000025: a tie, rounds down to the even 2
    (-3, 2_000_000, "0.01", "-0.00000002"),         # negative prices (spreads) round symmetrically
])
def test_known_values(cum_value, cum_qty, tick, text):
    assert avg_px_text(cum_value, cum_qty, Decimal(tick)) == text
    assert reference(cum_value, cum_qty, Decimal(tick)) == text


def test_no_exponent_and_no_28_digit_cap_for_huge_values():
    text = avg_px_text(10 ** 40, 7, Decimal("0.01"))
    assert text == "14285714285714285714285714285714285714.28571429"
    assert "E" not in avg_px_text(10 ** 9, 1, Decimal("1"))      # 1000000000, not 1E+9


@settings(max_examples=300, deadline=None)
@given(st.integers(-10 ** 15, 10 ** 15), st.integers(1, 10 ** 9),
       st.sampled_from(["0.01", "0.0001", "0.00001", "0.25", "0.5", "1", "5", "0.010"]))
def test_matches_the_fraction_reference(cum_value, cum_qty, tick):
    text = avg_px_text(cum_value, cum_qty, Decimal(tick))
    assert text == reference(cum_value, cum_qty, Decimal(tick))
    # Within half a unit of the last kept decimal of the exact average.
    places = max(0, -Decimal(tick).normalize().as_tuple().exponent) + AVG_PX_EXTRA_DECIMALS
    assert abs(Fraction(Decimal(text)) - Fraction(cum_value) * Fraction(Decimal(tick)) / cum_qty) \
        <= Fraction(1, 2 * 10 ** places)


@pytest.mark.parametrize("args, error, words", [
    ((1.5, 1, Decimal("0.01")), TypeError, "cum_value"),
    ((True, 1, Decimal("0.01")), TypeError, "cum_value"),
    ((1, -1, Decimal("0.01")), ValueError, "cum_qty"),
    ((1, "3", Decimal("0.01")), ValueError, "cum_qty"),
    ((1, 1, 0.01), ValueError, "tick_size"),
    ((1, 1, Decimal("0")), ValueError, "tick_size"),
    ((1, 1, Decimal("-0.01")), ValueError, "tick_size"),
])
def test_bad_input_names_the_argument(args, error, words):
    with pytest.raises(error, match=words):
        avg_px_text(*args)
