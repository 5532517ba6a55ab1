"""`crossbook serve`, `crossbook client`, `crossbook orders` and `crossbook eod` as processes."""
from __future__ import annotations

import subprocess
import sys

import pytest

from servekit import free_port, start_server, stop_server, write_server_config

pytestmark = pytest.mark.slow

# Everything but the ports and the storage folder (write_server_config adds those).
SERVER_BODY = """
[[firms]]
name = "FIRM1"
[[firms.accounts]]
name = "ACC1"
[[firms]]
name = "FIRM42"
[[firms.accounts]]
name = "ACC42"
[[sessions]]
comp_id = "FIRM1"
[[sessions]]
comp_id = "FIRM42"
begin_string = "FIX.4.2"
[[venues]]
name = "VENUE-A"
[[venues]]
name = "VENUE-B"
"""


def crossbook(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crossbook.app.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_serve_client_orders_eod(tmp_path):
    fix, http = free_port(), free_port()
    config = tmp_path / "server.toml"
    write_server_config(config, fix_port=fix, http_port=http, storage=tmp_path / "var", body=SERVER_BODY)
    log = tmp_path / "serve.log"
    proc = start_server(config, log)
    url = f"http://127.0.0.1:{http}"
    try:
        banner = log.read_text()
        assert f"FIX acceptor on 127.0.0.1:{fix}" in banner and "server CompID CROSSBOOK" in banner
        assert "SenderCompID=FIRM42 TargetCompID=CROSSBOOK" in banner and f"HTTP API on {url}/" in banner
        client = ["client", "--port", str(fix), "--target", "CROSSBOOK", "--reset"]
        sell = crossbook(*client, "--sender", "FIRM42", "--fix-version", "4.2", "sell", "10", "AAPL", "230.00")
        assert sell.returncode == 0, sell.stdout + sell.stderr
        assert "EXEC New/New" in sell.stdout and "leaves=10" in sell.stdout
        buy = crossbook(*client, "--sender", "FIRM1", "buy", "4", "AAPL", "230.00")
        assert buy.returncode == 0, buy.stdout + buy.stderr
        assert "EXEC Trade/Filled" in buy.stdout and "last=4@230.00" in buy.stdout
        bad = crossbook(*client, "--sender", "FIRM1", "buy", "4", "AAPL", "230.001")
        assert "Rejected" in bad.stdout and "tick" in bad.stdout
        listed = crossbook("orders", "--status", "open", "--account", "ACC42", "--url", url, "--config", str(config))
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0] == f"# open orders from {url}"
        assert lines[1].split()[:4] == ["ORDER", "CLORDID", "ACCOUNT", "SYMBOL"]
        row = lines[2].split()
        assert row[2:8] == ["ACC42", "AAPL", "sell", "limit", "10", "230.00"] and row[8:10] == ["4", "6"]
        assert lines[-1] == "(1 order)"
        eod = crossbook("eod", "--url", url)
        assert eod.returncode == 0 and "end of day done on 2 venue(s)" in eod.stdout
    finally:
        assert stop_server(proc) == 0
    out = log.read_text()
    assert "shutting down" in out and "crossbook serve: stopped" in out
    # No server now: straight from the database.
    listed = crossbook("orders", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    assert "crossbook.db" in listed.stdout.splitlines()[0] and listed.stdout.splitlines()[-1] == "(3 orders)"
    import json
    as_json = crossbook("orders", "--config", str(config), "--json")
    orders = json.loads(as_json.stdout)
    assert [o["state"] for o in orders] == ["expired", "filled", "rejected"]
    assert orders[0]["cum_qty"] == 4 and orders[0]["leaves_qty"] == 0
    # The same query from Python.
    from crossbook.app.orders import query_orders
    rows, source = query_orders(status="done", account="ACC1", config=str(config))
    assert source.endswith("crossbook.db") and [o["state"] for o in rows] == ["filled", "rejected"]
    eod = crossbook("eod", "--url", url)
    assert eod.returncode == 1 and "no server" in eod.stderr


def test_bad_config_fails_at_start(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[http]\nport = 'eighty'\n")
    result = crossbook("serve", "--config", str(config))
    assert result.returncode == 2
    assert f"{config}: http.port: must be an integer" in result.stderr


def test_client_session_every_verb(tmp_path):
    fix, http = free_port(), free_port()
    config = tmp_path / "server.toml"
    write_server_config(config, fix_port=fix, http_port=http, storage=tmp_path / "var", body=SERVER_BODY)
    proc = start_server(config, tmp_path / "serve.log")
    try:
        commands = ("buy 100 AAPL 229.00 clordid=K1\nreplace K1 qty=50\nstatus K1\ncancel K1\n"
                    "sell 10 MSFT 421.00 clordid=K2\nmass-cancel\ncancel K9 symbol=AAPL side=buy qty=1\nquit\n")
        result = subprocess.run([sys.executable, "-m", "crossbook.app.cli", "client", "--port", str(fix), "--sender",
                                 "FIRM1", "--target", "CROSSBOOK", "--reset", "--settle", "0.5"],
                                input=commands, capture_output=True, text=True, timeout=60)
        out = result.stdout
        assert result.returncode == 0, out + result.stderr
        expected = ["EXEC PendingNew/PendingNew K1", "EXEC New/New K1",
                    "EXEC PendingReplace/PendingReplace", "EXEC Replaced/New", "leaves=50",
                    "EXEC OrderStatus/New", "EXEC PendingCancel/PendingCancel", "EXEC Canceled/Canceled",
                    "EXEC New/New K2 SELL 10 MSFT @421.00", "MASS-CANCEL-REPORT", "affected=1",
                    "canceled by mass cancel", "CANCEL-REJECT"]
        position = 0
        for text in expected:
            found = out.find(text, position)
            assert found >= 0, f"{text!r} missing (in order) from:\n{out}"
            position = found
    finally:
        assert stop_server(proc) == 0


def test_port_in_use_fails_at_start_with_the_reason(tmp_path):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = crossbook("serve", "--fix-port", str(port), "--http-port", "0", "--storage", str(tmp_path / "var"),
                           "--no-background")
    assert result.returncode == 1
    assert "cannot start" in result.stderr and "address already in use" in result.stderr


def test_banner_lists_venues_routers_and_drop_copies(tmp_path):
    """The start banner says what the server is connected to: each venue (kind; host:port and
    CompIDs for a FIX venue), each router (policy, venues, rest venue), each drop-copy session."""
    fix, http, remote = free_port(), free_port(), free_port()   # nothing listens on `remote`: it retries
    body = SERVER_BODY.replace('name = "VENUE-B"\n', f"""name = "VENUE-B"
kind = "fix"
host = "127.0.0.1"
port = {remote}
target_comp_id = "XCH"
""") + """
[[routers]]
name = "SOR"
policy = "sweep"
venues = ["VENUE-A", "VENUE-B"]
rest_venue = "VENUE-B"
[[drop_copy]]
comp_id = "DC1"
[[drop_copy]]
comp_id = "DC2"
scope = "firms"
firms = ["FIRM42"]
"""
    config = write_server_config(tmp_path / "server.toml", fix_port=fix, http_port=http, storage=tmp_path / "var",
                                 body=body)
    log = tmp_path / "serve.log"
    proc = start_server(config, log)
    try:
        lines = [line.strip() for line in log.read_text().splitlines()]
        assert "venue VENUE-A: in process" in lines
        assert f"venue VENUE-B: FIX 127.0.0.1:{remote}  SenderCompID=CROSSBOOK TargetCompID=XCH" in lines
        assert "router SOR: sweep over VENUE-A, VENUE-B (remainder rests at VENUE-B)" in lines
        assert "drop copy FIX.4.4 SenderCompID=DC1 TargetCompID=CROSSBOOK: all firms" in lines
        assert "drop copy FIX.4.4 SenderCompID=DC2 TargetCompID=CROSSBOOK: firms FIRM42" in lines
    finally:
        assert stop_server(proc) == 0
