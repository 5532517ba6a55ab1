"""End-to-end fixtures: a real Server on loopback (free ports, temp storage, no background flow)."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from crossbook.app.config import DEFAULT_CONFIG, load_config, merge  # noqa: E402

import tomllib  # noqa: E402


def test_config_dict(storage: str, **extra) -> dict:
    """The default config with free ports, ``storage`` and empty venues (no background flow)."""
    data = tomllib.loads(DEFAULT_CONFIG)
    data = merge(data, {"fix": {"port": 0}, "http": {"port": 0}, "storage": {"dir": storage}})
    data["venues"] = [{"name": "VENUE-A"}, {"name": "VENUE-B"}]
    return merge(data, extra)


def make_config(storage: str, **extra):
    from crossbook.app.config import parse_config
    return parse_config(test_config_dict(storage, **extra), "<test>")


@pytest.fixture
def run():
    """Run a coroutine on a fresh event loop (uvloop when installed, as in production)."""
    from crossbook.fix.transport import install_uvloop
    install_uvloop()

    def runner(coro, timeout: float = 60):
        return asyncio.run(asyncio.wait_for(coro, timeout))
    return runner
