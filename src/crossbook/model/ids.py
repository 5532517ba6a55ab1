"""Identifier helpers shared by every stage that mints ids (ExecIDs, child ClOrdIDs, OrderIDs)."""

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(number: int, *, upper: bool = False) -> str:
    """``number`` (>= 0) in base 36: a short, FIX-safe text for id prefixes built from a clock."""
    if number < 0:
        raise ValueError(f"base36 needs a number >= 0, got {number}")
    out = ""
    while True:
        number, rem = divmod(number, 36)
        out = _DIGITS[rem] + out
        if number == 0:
            return out.upper() if upper else out
