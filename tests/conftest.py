"""Test-tree-wide setup: the shared helper modules of tests/support become importable.

The test folders are not packages (pytest's prepend import mode puts each test file's folder on
sys.path), so helpers used by more than one folder live in tests/support and are imported by
module name (``import venuekit``), like the per-folder helpers (omskit, fix_sessionkit).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

SUPPORT = Path(__file__).resolve().parent / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

import venuekit  # noqa: E402


@pytest.fixture
def venue_proc():
    """Start `crossbook venue` processes (``venue_proc(config, port=None)``); all are killed at
    the end of the test."""
    started: list[venuekit.VenueProcess] = []

    def start(config: Path, port: int | None = None) -> venuekit.VenueProcess:
        vp = venuekit.VenueProcess(config, port)
        started.append(vp)
        return vp

    yield start
    for vp in started:
        vp.kill()
