"""Shared helpers of the OMS end-to-end tests: a test config (free ports, temp storage, no
background flow) and a runner for coroutines on a fresh (uvloop) event loop."""
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


# -- real `crossbook serve` subprocesses ----------------------------------------------------------
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(config: Path, log: Path, *extra: str) -> subprocess.Popen:
    """``crossbook serve --config config`` with output in ``log``; returns once it is listening."""
    out = open(log, "ab")
    proc = subprocess.Popen([sys.executable, "-m", "crossbook.app.cli", "serve", "--config", str(config), *extra],
                            stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()}")
        if b"Ctrl-C stops the server" in log.read_bytes():
            return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"server did not start: {log.read_text()}")


def stop_server(proc: subprocess.Popen, timeout: float = 20) -> int:
    """Ctrl-C (SIGINT) and wait; kills it if it does not stop in time."""
    import signal
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise AssertionError("server did not stop on SIGINT") from None
