"""``crossbook loadgen`` as a user runs it: against a real ``crossbook serve`` process (background
liquidity on), against the fast sink with two generator processes, and its argument errors."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crossbook.app.config import load_config
from crossbook.loadgen.cli import LOADTEST_CONFIG
from servekit import banner_port, start_server

PY = sys.executable


def _start(args: list[str], pattern: str, cwd: Path, timeout: float = 30.0) -> tuple[subprocess.Popen, int]:
    """Start a server process and read its bound port from the line matching ``pattern``."""
    proc = subprocess.Popen([PY, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(pattern, line)
        if m:
            return proc, int(m.group(1))
    proc.kill()
    proc.wait()
    raise AssertionError("server did not start:\n" + "".join(seen))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _loadgen(args: list[str], cwd: Path, timeout: float = 90.0) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "crossbook.app.cli", "loadgen", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def _consistent(report: dict) -> None:
    for name, c in report["counts"].items():
        assert c["sent"] == c["acked"] + c["rejected"] + c["timed_out"], (name, c)
    t = report["total"]
    assert t["sent"] == sum(c["sent"] for c in report["counts"].values())
    assert report["consistent"] is True


def test_short_run_against_crossbook_serve(tmp_path):
    log = tmp_path / "serve.log"
    serve = start_server(None, log, "--fix-port", "0", "--http-port", "0", "--storage", str(tmp_path / "var"),
                         cwd=tmp_path)
    port = banner_port(log, r"FIX acceptor on 127\.0\.0\.1:(\d+)")
    try:
        out = tmp_path / "report.json"
        # FIRM1 and FIRM2 (FIX.4.4) and FIRM42 (FIX.4.2) of the embedded config, 2 s at a low rate.
        result = _loadgen(["--port", str(port), "--rate", "300", "--duration", "2", "--json", str(out)], tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(out.read_text())
    finally:
        _stop(serve)
    _consistent(report)
    assert report["total"]["sent"] == 600 and report["planned"] == 600
    counts = report["counts"]
    assert report["total"]["timed_out"] == 0
    # New orders are all accepted; a cancel or replace may race a fill by another session's
    # marketable order and get "too late" (OrderCancelReject), which is a correct answer.
    assert counts["passive"]["rejected"] == counts["marketable"]["rejected"] == 0
    assert counts["passive"]["acked"] > 0 and counts["marketable"]["acked"] > 0
    assert counts["cancel"]["acked"] > 0 and counts["replace"]["acked"] > 0
    assert report["sessions"] == 3 and report["seq_gaps"] == 0 and report["unmatched"] == 0
    # Marketable orders traded: fills arrive as follow-up reports (theirs and the resting side's).
    assert report["follow_up_reports"] > 0
    assert report["cleanup_sent"] == report["cleanup_answered"]
    lat = report["latency"]
    assert lat["all.ack"]["count"] == report["total"]["acked"]
    assert 0 < lat["marketable.first"]["p50_us"] <= lat["marketable.ack"]["p99_us"]
    assert len(report["timeline"]) >= 2
    assert "p99" in result.stderr and "rate" in result.stderr      # progress lines
    assert "marketable" in result.stdout and "p99.9" in result.stdout  # the human table


def test_two_processes_against_the_sink_merge_their_reports(tmp_path):
    sink, port = _start(["-m", "crossbook.loadgen.sink", "--port", "0", "--seconds", "60"],
                        r"listening on 127\.0\.0\.1:(\d+)", tmp_path)
    try:
        out = tmp_path / "report.json"
        result = _loadgen(["--port", str(port), "--server-config", str(LOADTEST_CONFIG), "--sessions",
                           "LOAD1,LOAD2,LOAD3,LOAD4", "--processes", "2", "--rate", "2000", "--count", "3000",
                           "--json", str(out), "--quiet"], tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(out.read_text())
    finally:
        _stop(sink)
    _consistent(report)
    assert report["processes"] == 2 and report["sessions"] == 4
    assert report["total"]["sent"] == 3000 and report["total"]["acked"] == 3000
    assert report["latency"]["all.ack"]["count"] == 3000


@pytest.mark.parametrize("args, message", [
    (["--host", "192.0.2.10"], "loopback"),
    (["--sessions", "NOPE"], "not in the server config"),
    (["--mix", "passive=x"], "mix.passive"),
    (["--symbols", "ZZZZ"], "ZZZZ"),
    (["--processes", "9"], "--processes"),
    (["--server-config", "/nonexistent.toml"], "cannot read"),
])
def test_argument_errors_exit_2_with_a_message(tmp_path, args, message):
    result = _loadgen(args + ["--duration", "1"], tmp_path, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr


def test_unreachable_server_is_reported(tmp_path):
    result = _loadgen(["--port", "1", "--duration", "1"], tmp_path, timeout=60)
    assert result.returncode == 1 and "cannot connect" in result.stderr


def test_the_bundled_load_test_config_is_a_valid_server_config(tmp_path):
    result = _loadgen(["--print-server-config"], tmp_path)
    assert result.returncode == 0
    path = tmp_path / "lt.toml"
    path.write_text(result.stdout)
    config = load_config(str(path))
    assert [s.comp_id for s in config.directory.sessions.values()] == [f"LOAD{i}" for i in range(1, 9)]
    assert all(s.msg_rate_per_sec is None for s in config.directory.sessions.values())
    assert os.path.exists(LOADTEST_CONFIG)


@pytest.mark.parametrize("extra, poll", [([], False), (["--poll"], True)])
def test_poll_option_reaches_the_config(extra, poll):
    import argparse

    from crossbook.loadgen import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    config, _ = cli.build_config(parser.parse_args(["--server-config", str(LOADTEST_CONFIG), "--rate", "100", *extra]))
    assert config.poll is poll


def test_routed_run_through_the_bundled_configs_router(tmp_path):
    # The bundled load-test config with --ex-destination SOR: every NewOrderSingle goes through
    # the sweep router (parents, children at both venues), and the run adds up as a direct one does.
    config = tmp_path / "lt.toml"
    config.write_text(LOADTEST_CONFIG.read_text())
    log = tmp_path / "serve.log"
    serve = start_server(config, log, "--fix-port", "0", "--storage", str(tmp_path / "var"), cwd=tmp_path)
    port = banner_port(log, r"FIX acceptor on 127\.0\.0\.1:(\d+)")
    try:
        out = tmp_path / "report.json"
        result = _loadgen(["--server-config", str(config), "--port", str(port), "--rate", "400", "--duration", "1.5",
                           "--ex-destination", "SOR", "--quiet", "--json", str(out)], tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(out.read_text())
    finally:
        _stop(serve)
    _consistent(report)
    counts = report["counts"]
    assert report["total"]["timed_out"] == 0 and report["unmatched"] == 0
    assert counts["passive"]["rejected"] == counts["marketable"]["rejected"] == 0
    assert counts["marketable"]["acked"] > 0 and report["follow_up_reports"] > 0
    assert report["cleanup_sent"] == report["cleanup_answered"]
    # Every order the server stored went to the router, none straight to a venue.
    import sqlite3

    [db] = (tmp_path / "var").glob("*.db")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        venues = {json.loads(data)["venue"] for (data,) in conn.execute("SELECT data FROM orders")}
    assert venues == {"SOR"}, venues


@pytest.mark.parametrize("value", ["S OR", "x" * 65, "A\x01B", 5])
def test_ex_destination_must_be_a_name(value):
    from crossbook.loadgen.config import LoadConfig, SessionSpec, SymbolSpec
    from decimal import Decimal

    with pytest.raises(ValueError, match="ex_destination"):
        LoadConfig(sessions=(SessionSpec("A", "FIX.4.4"),), symbols=(SymbolSpec("AAPL", Decimal("0.01"), 23000),),
                   ex_destination=value)
