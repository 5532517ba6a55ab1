"""One server per storage directory: the journal log's lock refuses a second one by name, and a
server whose start fails releases it."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from omskit import make_config, runner as run_scenario  # noqa: E402
from crossbook.app.server import Server  # noqa: E402
from crossbook.persistence import sqlite as journal_module  # noqa: E402


def test_a_second_server_on_the_same_storage_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_module, "LOCK_WAIT_S", 0.2)

    async def scenario():
        first = Server(make_config(str(tmp_path)))
        await first.start()
        try:
            with pytest.raises(RuntimeError, match="locked by another process"):
                await Server(make_config(str(tmp_path))).start()
        finally:
            await first.stop()
        again = Server(make_config(str(tmp_path)))     # stopped: the storage is free again
        await again.start()
        await again.stop()

    run_scenario(scenario())


def test_a_failed_start_releases_the_storage(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_module, "LOCK_WAIT_S", 0.2)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        async def scenario():
            cfg = make_config(str(tmp_path))
            blocked = Server(cfg.__class__(**{**cfg.__dict__, "http": cfg.http.__class__(
                enabled=True, host="127.0.0.1", port=taken.getsockname()[1])}))
            with pytest.raises(OSError):
                await blocked.start()                 # the HTTP port is in use
            try:
                server = Server(make_config(str(tmp_path)))
                await server.start()                  # not "locked by another process"
                await server.stop()
            finally:
                await blocked.stop()                  # what the failed start left running

        run_scenario(scenario())
    finally:
        taken.close()
