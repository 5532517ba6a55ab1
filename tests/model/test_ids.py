import pytest

from crossbook.model.ids import base36


@pytest.mark.parametrize("n, text", [(0, "0"), (35, "z"), (36, "10"), (36**3 - 1, "zzz"), (1_700_000_000_000, "loyw3v28")])
def test_base36_known_values(n, text):
    assert base36(n) == text
    assert int(text, 36) == n
    assert base36(n, upper=True) == text.upper()


def test_base36_refuses_negative_numbers():
    with pytest.raises(ValueError, match="-1"):
        base36(-1)
