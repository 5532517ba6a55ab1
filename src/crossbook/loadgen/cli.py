"""``crossbook loadgen``: open-loop FIX load against a running ``crossbook serve`` (docs/loadgen.md)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

LOADTEST_CONFIG = Path(__file__).with_name("loadtest_server.toml")


def _range(text: str, what: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    try:
        a = int(lo)
        b = int(hi) if sep else a
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what}: expected N or MIN-MAX, got {text!r}") from None
    return a, b


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_argument_group("target")
    target.add_argument("--host", default="127.0.0.1", help="server address (loopback only unless --allow-remote)")
    target.add_argument("--port", type=int, help="server FIX port (default: fix.port of the server config, 9878)")
    target.add_argument("--target-comp-id", metavar="ID", help="server CompID (default: fix.comp_id, CROSSBOOK)")
    target.add_argument("--server-config", metavar="FILE",
                        help="the server's TOML: sessions, accounts, instruments (default: serve's embedded one)")
    target.add_argument("--sessions", metavar="A,B", help="CompIDs to use (default: every session of the config)")
    target.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host (never for shared hosts)")
    load = parser.add_argument_group("load")
    load.add_argument("--rate", type=float, default=1000.0, help="messages per second over all sessions (default 1000)")
    load.add_argument("--duration", type=float, metavar="S", help="seconds of schedule (default 10 unless --count)")
    load.add_argument("--count", type=int, metavar="N", help="messages to send (with --duration: whichever ends first)")
    load.add_argument("--mix", default="passive=45,marketable=30,cancel=15,replace=10",
                      help="shares of passive, marketable, cancel, replace (default %(default)s)")
    load.add_argument("--symbols", default="AAPL,MSFT", help="instruments, by symbol (default %(default)s)")
    load.add_argument("--lots", default="1-10", type=lambda t: _range(t, "--lots"), help="order size in lots (MIN-MAX)")
    load.add_argument("--passive-ticks", default="5-30", type=lambda t: _range(t, "--passive-ticks"),
                      help="distance of passive orders from the reference price, ticks (MIN-MAX)")
    load.add_argument("--aggressive-ticks", type=int, default=20,
                      help="how far through the reference price marketable orders are priced (ticks)")
    load.add_argument("--seed", type=int, default=1)
    load.add_argument("--arrival", choices=("uniform", "poisson"), default="uniform",
                      help="evenly spaced slots or Poisson arrivals (seeded)")
    load.add_argument("--max-resting", type=int, default=200, help="resting passive orders per session, at most")
    load.add_argument("--batch-us", type=float, default=0.0, metavar="US",
                      help="send at most once per US microseconds, fewer and larger writes (default 0: "
                           "each message as soon as it is due); the wait shows in the latencies")
    load.add_argument("--ex-destination", default="", metavar="NAME",
                      help="ExDestination (100) on every NewOrderSingle: a venue or router of the server, e.g. SOR "
                           "(the bundled load-test config's sweep router); default none: the instrument's default venue")
    load.add_argument("--poll", action="store_true",
                      help="wait for slots by polling the event loop (one core at 100 %%) instead of a timerfd "
                           "(the default on Linux; elsewhere polling is the only way)")
    load.add_argument("--processes", type=int, default=1, metavar="K",
                      help="split the sessions and the rate over K processes (histograms merged)")
    end = parser.add_argument_group("ending")
    end.add_argument("--timeout", type=float, default=5.0, metavar="S", help="a request unanswered this long is timed out")
    end.add_argument("--drain", type=float, default=5.0, metavar="S", help="wait at most this long for answers at the end")
    end.add_argument("--no-cleanup", action="store_true", help="leave the run's resting orders on the server")
    out = parser.add_argument_group("output")
    out.add_argument("--json", metavar="FILE", help="also write the report as JSON ('-' for stdout)")
    out.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    out.add_argument("--print-server-config", action="store_true",
                     help="print the bundled load-test server config (8 sessions, no rate caps) and exit")


def build_config(args: argparse.Namespace):
    """LoadConfig from parsed arguments (ValueError naming the option on bad input)."""
    from crossbook.app.config import load_config
    from crossbook.loadgen.config import LoadConfig, OrderMix, sessions_from_server_config, symbols_from_instruments

    server = load_config(args.server_config)
    names = [n.strip() for n in args.sessions.split(",") if n.strip()] if args.sessions else None
    duration = args.duration if args.duration is not None else (None if args.count else 10.0)
    return LoadConfig(
        sessions=sessions_from_server_config(server, names),
        symbols=symbols_from_instruments(server.instruments, [s.strip() for s in args.symbols.split(",") if s.strip()]),
        host=args.host, port=args.port if args.port is not None else server.fix.port,
        target_comp_id=args.target_comp_id or server.fix.comp_id, rate=args.rate, duration_s=duration,
        count=args.count, mix=OrderMix.parse(args.mix), lots=args.lots, passive_ticks=args.passive_ticks,
        aggressive_ticks=args.aggressive_ticks, seed=args.seed, arrival=args.arrival, timeout_s=args.timeout,
        drain_s=args.drain, max_resting=args.max_resting, batch_us=args.batch_us, poll=args.poll, ex_destination=args.ex_destination, cleanup=not args.no_cleanup,
        allow_remote=args.allow_remote), server


def rate_warnings(config, server) -> list[str]:
    """Per-session rates above the server's msg_rate_per_sec: those orders will be risk-rejected."""
    per_session = config.rate / len(config.sessions)
    out = []
    for spec in config.sessions:
        cap = server.directory.sessions[spec.comp_id].msg_rate_per_sec
        if cap is not None and per_session > cap:
            out.append(f"{spec.comp_id}: {per_session:,.0f} msgs/s is above the server's msg_rate_per_sec {cap:,} "
                       "for it; the excess will be rejected (use more sessions or a config without caps, "
                       "e.g. --print-server-config)")
    return out


def run(args: argparse.Namespace) -> int:
    if args.print_server_config:
        sys.stdout.write(LOADTEST_CONFIG.read_text())
        return 0
    from crossbook.app.config import ConfigError
    from crossbook.loadgen.wire import LoadSessionError

    try:
        config, server = build_config(args)
        if isinstance(args.processes, bool) or args.processes < 1 or args.processes > len(config.sessions):
            raise ValueError(f"--processes must be within 1..{len(config.sessions)} (one session per process at least), "
                             f"got {args.processes}")
    except (ConfigError, ValueError, OSError) as exc:
        print(f"crossbook loadgen: {exc}", file=sys.stderr)
        return 2
    for warning in rate_warnings(config, server):
        print(f"crossbook loadgen: warning: {warning}", file=sys.stderr)
    progress = None if args.quiet else (lambda p: print(p.line(), file=sys.stderr, flush=True))
    from crossbook.loadgen.multi import run_processes
    try:
        report = run_processes(config, args.processes, progress)
    except LoadSessionError as exc:
        print(f"crossbook loadgen: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if args.json == "-":
        print(report.format_table(), file=sys.stderr)   # stdout carries the JSON alone
        print(report.to_json())
    else:
        print(report.format_table())
        if args.json:
            Path(args.json).write_text(report.to_json() + "\n")
    return 0 if all(c.consistent for c in report.counts.values()) else 1
