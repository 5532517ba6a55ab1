import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

import omskit  # noqa: E402


@pytest.fixture
def run():
    return omskit.runner
