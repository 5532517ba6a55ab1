"""`crossbook serve` as a child process, for the tests that run the real server (tests/app,
tests/e2e, tests/loadgen): its config file, start (waiting for the banner), stop and HTTP reads."""
from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_server_config(path: Path, *, fix_port: int, http_port: int, storage: str | Path, body: str) -> Path:
    """Write a server config to ``path``: the FIX and HTTP ports and the storage folder, then
    ``body`` (firms, sessions, venues...)."""
    path.write_text(f'[fix]\nport = {fix_port}\n[http]\nport = {http_port}\n[storage]\ndir = "{storage}"\n' + body)
    return path


def start_server(config: Path | None, log: Path, *extra: str, cwd: Path | None = None) -> subprocess.Popen:
    """``crossbook serve --config config`` (no ``--config`` when None) with output in ``log``;
    returns once it is listening."""
    args = ["--config", str(config)] if config is not None else []
    return launch_server(["-m", "crossbook.app.cli", "serve", *args, *extra], log, cwd=cwd)


def launch_server(python_args: list[str], log: Path, cwd: Path | None = None) -> subprocess.Popen:
    """``python <python_args>`` (a server: the CLI, or a wrapper script around it) with output in
    ``log``; returns once its banner says it listens."""
    out = open(log, "ab")
    proc = subprocess.Popen([sys.executable, *python_args], stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()}")
        if b"Ctrl-C stops the server" in log.read_bytes():
            return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"server did not start: {log.read_text()}")


def banner_port(log: Path, pattern: str) -> int:
    """The port in the first group of ``pattern`` in a started server's banner (for port 0)."""
    m = re.search(pattern, log.read_text())
    if m is None:
        raise AssertionError(f"{pattern!r} not in the server's banner:\n{log.read_text()}")
    return int(m.group(1))


def stop_server(proc: subprocess.Popen, timeout: float = 20) -> int:
    """Ctrl-C (SIGINT) and wait; kills it if it does not stop in time."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise AssertionError("server did not stop on SIGINT") from None


def http_json(port: int, path: str, *, catch_up_s: float = 30.0):
    """GET ``path`` from the server's HTTP API on ``port`` and decode the JSON answer.

    A query of the order store answers 503 "... behind the journal: timed out" when the store's
    projection process (background priority) has not applied the journal within the API's
    barrier (api/http.py STORE_BARRIER_S, 5 s): on a busy machine, just after a (re)start, it
    may still be catching up. That answer (or the client's timeout, which it races) is asked
    again, 0.2 s apart, until ``catch_up_s`` seconds have passed; any other error, another 503
    (a failing projection) included, fails at once with the server's text."""
    deadline = time.monotonic() + catch_up_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code != 503:
                raise
            text = exc.read().decode(errors="replace")
            if "timed out" not in text:
                raise AssertionError(f"GET {path}: HTTP 503: {text}") from exc
            error = f"HTTP 503: {text.strip()}"
        except (TimeoutError, urllib.error.URLError) as exc:
            if isinstance(exc, urllib.error.URLError) and not isinstance(exc.reason, TimeoutError):
                raise
            error = f"no answer within 5 s ({exc})"
        assert time.monotonic() < deadline, f"GET {path}: the order store never caught up with the journal: {error}"
        time.sleep(0.2)


def firms_toml(*, firm2: bool = True, limits: bool = True) -> str:
    """Config text for FIRM1 (account ACC1) and, with ``firm2``, FIRM2 (account ACC3), each with
    a FIX session of its CompID. ``limits`` gives ACC1 room for large streams (100,000 a order and
    open orders) and a 10 % collar; without it ACC1 has the defaults."""
    acc1_limits = 'limits = { max_order_qty = 100000, collar_pct = "10", max_open_orders = 100000 }\n' if limits else ""
    text = f'[[firms]]\nname = "FIRM1"\n[[firms.accounts]]\nname = "ACC1"\n{acc1_limits}'
    if firm2:
        text += '[[firms]]\nname = "FIRM2"\n[[firms.accounts]]\nname = "ACC3"\n'
    text += '[[sessions]]\ncomp_id = "FIRM1"\n'
    if firm2:
        text += '[[sessions]]\ncomp_id = "FIRM2"\n'
    return text


def fix_venue_toml(name: str, port: int) -> str:
    """Config text for a FIX venue ``name`` (a `crossbook venue` process on ``port``, its CompID
    ``name``) that reconnects quickly after it restarts."""
    return (f'[[venues]]\nname = "{name}"\nkind = "fix"\nhost = "127.0.0.1"\nport = {port}\n'
            f'target_comp_id = "{name}"\nheartbeat_s = 5\nreconnect_min_s = 0.1\nreconnect_max_s = 0.5\n')


# The two in-process venues of the default config.
IN_PROCESS_VENUES = '[[venues]]\nname = "VENUE-A"\n[[venues]]\nname = "VENUE-B"\n'
