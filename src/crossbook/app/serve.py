"""``crossbook serve [--config FILE]``: the OMS server (FIX acceptor, venues, HTTP API)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML configuration (default: the embedded one, docs/config.md)")
    parser.add_argument("--fix-port", type=int, metavar="PORT", help="override fix.port (0 picks a free port)")
    parser.add_argument("--http-port", type=int, metavar="PORT", help="override http.port (0 picks a free port)")
    parser.add_argument("--storage", metavar="DIR", help="override storage.dir")
    parser.add_argument("--no-background", action="store_true", help="turn the venues' background liquidity off")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")


def overrides_from(args: argparse.Namespace) -> dict:
    out: dict = {}
    if args.fix_port is not None:
        out.setdefault("fix", {})["port"] = args.fix_port
    if args.http_port is not None:
        out.setdefault("http", {})["port"] = args.http_port
    if args.storage:
        out.setdefault("storage", {})["dir"] = args.storage
    return out


def run(args: argparse.Namespace) -> int:
    from crossbook.app.config import ConfigError, load_config
    from crossbook.fix.transport import install_uvloop

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config, overrides_from(args))
    except (ConfigError, ValueError) as exc:
        print(f"crossbook serve: bad configuration: {exc}", file=sys.stderr)
        return 2
    if args.no_background:
        import dataclasses
        config = dataclasses.replace(config, venues=tuple(dataclasses.replace(v, background=None) for v in config.venues))
    install_uvloop()
    try:
        return asyncio.run(_serve(config))
    except KeyboardInterrupt:
        return 0


async def _serve(config) -> int:
    from crossbook.app.server import Server

    server = Server(config)
    # Signal handlers go in before anything starts: a Ctrl-C or SIGTERM that arrives while the
    # server is starting (or right after its banner) must still shut it down cleanly, not kill
    # the process with the default handler half-way through.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await server.start()
    except OSError as exc:
        print(f"crossbook serve: cannot start: {exc}", file=sys.stderr)
        await server.stop()
        return 1
    d = config.directory
    print(f"crossbook serve: FIX acceptor on {config.fix.host}:{server.fix_port}  (server CompID {config.fix.comp_id})")
    for s in d.sessions.values():
        firm = d.firms[s.firm]
        print(f"  session {s.begin_string} SenderCompID={s.comp_id} TargetCompID={config.fix.comp_id}"
              f"  accounts {', '.join(firm.accounts)} (default {firm.default_account})")
    for line in _connections(config):
        print(f"  {line}")
    if server.http is not None:
        print(f"  HTTP API on http://{config.http.host}:{server.http_port}/")
    print(f"  storage {config.storage.dir}  ({server.restored_orders} orders restored, "
          f"{server.resubmitted} open orders back on their venues)")
    print(f"  try: crossbook client --port {server.fix_port} --sender {next(iter(d.sessions))} "
          f"--target {config.fix.comp_id} --fix-version 4.4")
    print("  Ctrl-C stops the server", flush=True)
    await stop.wait()
    print("crossbook serve: shutting down (logging sessions out, flushing stores)", flush=True)
    await server.stop()
    print("crossbook serve: stopped", flush=True)
    return 0


def _connections(config) -> list[str]:
    """Banner lines for what the server trades through and publishes to: venues (FIX venues with
    the address and CompIDs they log on with), routers, drop-copy sessions."""
    out = []
    for v in config.venues:
        if v.kind == "fix":
            f = v.fix
            out.append(f"venue {v.name}: FIX {f['host']}:{f['port']}  SenderCompID={f['sender_comp_id']} "
                       f"TargetCompID={f['target_comp_id']}")
        else:
            out.append(f"venue {v.name}: in process")
    for r in config.routers:
        out.append(f"router {r.name}: {r.policy.value} over {', '.join(r.venues)} "
                   f"(remainder rests at {r.rest_venue})")
    for d in config.drop_copies:
        scope = "all firms" if d.firms is None else "firms " + ", ".join(d.firms)
        out.append(f"drop copy {d.begin_string} SenderCompID={d.comp_id} TargetCompID={config.fix.comp_id}: {scope}")
    return out
