"""Shared helpers of the OMS end-to-end tests: a test config (free ports, temp storage, no
background flow), a runner for coroutines on a fresh (uvloop) event loop, and a real server
killed around a send to a real venue process, then restarted (KillRig). A real `crossbook serve`
process: tests/support/servekit.py."""
from __future__ import annotations

import asyncio
import os
import signal
import time
import tomllib
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from crossbook.app.config import DEFAULT_CONFIG, merge, parse_config
from crossbook.fix.store import FileStore
from fixpeer import FixPeer
from servekit import (firms_toml, fix_venue_toml, free_port, http_json, launch_server, start_server, stop_server,
                      write_server_config)
from venuekit import VenueProcess, venue_config


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


# --- A real `crossbook serve` killed around a send to a real `crossbook venue` process, then
# restarted (test_write_ahead.py, test_router_write_ahead.py). ---

# Waits on real processes: log-ons, kills and restarts take seconds on a busy machine.
PROCESS_WAIT_S = 15.0


def kept_store_peer(fix_port: int, client_dir: str, comp_id: str = "FIRM1") -> FixPeer:
    """``comp_id``'s FixPeer over a FIX file store kept in ``client_dir`` across server restarts
    (no sequence reset at logon): it logs on where it left off, as a real client does."""
    return FixPeer(fix_port, comp_id, store=FileStore(client_dir, comp_id, now=time.time()), reset=False)


def reports(peer: FixPeer, cl: str | None = None) -> list:
    """The ExecutionReports ``peer`` received, about ``cl`` (ClOrdID or OrigClOrdID) if given."""
    return [m for m in peer.app.all if m.msg_type == b"8" and (cl is None or m.get(11) == cl.encode()
                                                              or m.get(41) == cl.encode())]


def venue_up(http_port: int, name: str = "VENUE-A") -> bool:
    """Whether the server on ``http_port`` has its FIX venue ``name`` logged on."""
    return any(v["name"] == name and v["up"] for v in http_json(http_port, "/venues")["venues"])


def write_ahead_body(venue_port: int, audit: Path) -> str:
    """Server config (but ports and storage): FIRM1 and FIRM2, the FIX venue VENUE-A on
    ``venue_port``, the in-process VENUE-B, and a direct router SOR to VENUE-A whose audit trail
    is the file ``audit``."""
    return ("\n" + firms_toml() + fix_venue_toml("VENUE-A", venue_port)
            + f'[[venues]]\nname = "VENUE-B"\n[[routers]]\nname = "SOR"\npolicy = "direct"\n'
              f'venues = ["VENUE-A"]\naudit_path = "{audit}"\n')


@dataclass
class KillRig:
    """A `crossbook venue` process VENUE-A and what a server routing to it is started with: its
    config (in ``tmp``, storage ``tmp/var``, audit trail ``tmp/audit.db``), ports, the wrapper
    script ``script`` that kills it, and the folder of the FIRM1 client's FIX store, which
    survives the server's restarts."""
    tmp: Path
    venue: VenueProcess
    config: Path
    fix_port: int
    http_port: int
    script: Path
    client_dir: str

    @classmethod
    def start(cls, tmp: Path, script_text: str, body=None) -> "KillRig":
        """``body``: a function of (VENUE-A's port, the audit trail's path) giving the server
        config body (default :func:`write_ahead_body`)."""
        venue = VenueProcess(venue_config(tmp, "VENUE-A"))
        fix_port, http_port = free_port(), free_port()
        config = write_server_config(tmp / "server.toml", fix_port=fix_port, http_port=http_port,
                                     storage=tmp / "var", body=(body or write_ahead_body)(venue.port, tmp / "audit.db"))
        script = tmp / "armed_serve.py"
        script.write_text(script_text)
        return cls(tmp, venue, config, fix_port, http_port, script, str(tmp / "client"))

    def firm1(self) -> FixPeer:
        """FIRM1 with its FIX store kept in ``client_dir`` (no reset): it logs on where it left off."""
        return kept_store_peer(self.fix_port, self.client_dir)

    def run_until_killed(self, run, steps, killed: str = "", timeout: float = 60) -> None:
        """Start the server through ``script`` (log ``server1.log``); once VENUE-A is up, FIRM1
        logs on and ``await steps(peer, proc)`` runs (arm the server with
        ``os.kill(proc.pid, signal.SIGUSR1)``); then the server must die of SIGKILL (``killed``:
        when, for the failure message), all within ``timeout`` seconds. The server never
        outlives this; the venue is stopped if it fails."""
        try:
            proc = launch_server([str(self.script), "serve", "--config", str(self.config)], self.tmp / "server1.log")
            try:
                async def before_kill() -> None:
                    await until(lambda: venue_up(self.http_port), "VENUE-A to log on", timeout=PROCESS_WAIT_S)
                    peer = self.firm1()
                    await peer.__aenter__()
                    try:
                        await steps(peer, proc)
                        await until(lambda: proc.poll() is not None, f"the server to be killed {killed}".rstrip(),
                                    timeout=PROCESS_WAIT_S)
                        assert proc.returncode == -signal.SIGKILL, (proc.returncode,
                                                                    (self.tmp / "server1.log").read_text())
                    finally:
                        try:
                            await peer.initiator.stop(logout_grace=0.2)
                        except (RuntimeError, ConnectionError, OSError):
                            pass

                run(before_kill(), timeout=timeout)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
        except BaseException:
            self.venue.stop()
            raise

    def kill_after_armed_send(self, run, first, then, killed: str) -> tuple[str, str]:
        """:meth:`run_until_killed` with these steps: FIRM1 sends ``first(peer)`` (returns its
        ClOrdID) and waits for its New; SIGUSR1 arms the server; 0.3 s later FIRM1 sends
        ``then(peer, first ClOrdID)`` (returns its ClOrdID). Returns both ClOrdIDs."""
        ids: list[str] = []

        async def steps(peer: FixPeer, proc) -> None:
            ids.append(first(peer))
            await until(lambda: any(m.get(150) == b"0" for m in reports(peer, ids[0])),
                        f"{ids[0]} New", timeout=PROCESS_WAIT_S)
            os.kill(proc.pid, signal.SIGUSR1)
            await asyncio.sleep(0.3)
            ids.append(then(peer, ids[0]))

        self.run_until_killed(run, steps, killed)
        return ids[0], ids[1]

    @contextmanager
    def restarted(self):
        """The server started again, plainly (log ``server2.log``); stopped, with the venue, at the end."""
        try:
            proc = start_server(self.config, self.tmp / "server2.log")
            try:
                yield proc
            finally:
                stop_server(proc)
        finally:
            self.venue.stop()

    @asynccontextmanager
    async def firm1_after_restart(self):
        """FIRM1 logged on again, once the restarted server has VENUE-A up."""
        await until(lambda: venue_up(self.http_port), "VENUE-A to log on again", timeout=PROCESS_WAIT_S)
        async with self.firm1() as peer:
            yield peer

    async def seller_fills(self, qty: int, price: str) -> int:
        """FIRM2's IOC to sell ``qty`` at ``price`` at VENUE-A (through the server): what it filled,
        which is what rested there up to ``qty``."""
        async with FixPeer(self.fix_port, "FIRM2") as seller:
            ioc = seller.new_order(side="2", qty=qty, price=price, extra=[(59, "3"), (100, "VENUE-A")])
            await until(lambda: any(m.get(39) in (b"2", b"4") for m in reports(seller, ioc)), f"{ioc} done",
                        timeout=PROCESS_WAIT_S)
            return sum(int(m[32]) for m in reports(seller, ioc) if m.get(150) == b"F")

    def seller_takes(self, run, price: str) -> int:
        """FIRM2's IOC to sell 30 at ``price`` at VENUE-A: the quantity it fills is what rests there."""
        return run(self.seller_fills(30, price), timeout=60)


def resend_buy(peer: FixPeer, cl: str, destination: str) -> None:
    """Send the buy ``cl`` (10 AAPL at 229.00 to ``destination``) once more as a possible resend
    (PossResend, 97=Y, a header field)."""
    peer.initiator.send(None, "D", [(11, cl), (55, "AAPL"), (54, "1"), (60, "20260101-00:00:00.000"),
                                    (38, "10"), (40, "2"), (44, "229.00"), (100, destination)],
                        header=[(97, "Y")])
