"""Shared helpers of the OMS end-to-end tests: a test config (free ports, temp storage, no
background flow) and a runner for coroutines on a fresh (uvloop) event loop. A real `crossbook
serve` process: tests/support/servekit.py."""
from __future__ import annotations

import asyncio
import tomllib

from crossbook.app.config import DEFAULT_CONFIG, merge, parse_config


def test_config_dict(storage: str, **extra) -> dict:
    """The default config with free ports, ``storage`` and empty venues (no background flow)."""
    data = tomllib.loads(DEFAULT_CONFIG)
    data = merge(data, {"fix": {"port": 0}, "http": {"port": 0}, "storage": {"dir": storage}})
    data["venues"] = [{"name": "VENUE-A"}, {"name": "VENUE-B"}]
    return merge(data, extra)


test_config_dict.__test__ = False  # a helper, not a test


def make_config(storage: str, **extra):
    return parse_config(test_config_dict(storage, **extra), "<test>")


def runner(coro, timeout: float = 60):
    from crossbook.fix.transport import install_uvloop
    install_uvloop()
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(pred, what: str, timeout: float = 5.0) -> None:
    """Wait (polling, on the running loop) until ``pred()`` holds; fail naming ``what`` after
    ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)
