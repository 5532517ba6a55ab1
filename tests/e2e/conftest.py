"""End-to-end fixtures: a real Server on loopback (free ports, temp storage, no background flow)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import omskit  # noqa: E402


@pytest.fixture
def run():
    """Run a coroutine on a fresh event loop (uvloop when installed, as in production)."""
    return omskit.runner
