"""The ``crossbook`` command.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
it is imported only when chosen, so ``crossbook --help`` stays fast and a subcommand's heavy
imports (numba, asyncio transports) cost nothing to the others.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {}


def register(name: str, module: str, help_text: str) -> None:
    SUBCOMMANDS[name] = (module, help_text)


register("fix-test-server", "crossbook.fix.testserver", "FIX acceptor set up for the QuickFIX acceptance scripts")
register("client", "crossbook.fix.client", "FIX initiator for people and scripts")
register("serve", "crossbook.app.serve", "the OMS server: FIX acceptor, venues, HTTP API (docs/oms.md)")
register("orders", "crossbook.app.orders", "list orders from a running server or its database")
register("venue", "crossbook.venues.process", "one venue simulator behind a FIX acceptor (docs/venue-process.md)")
register("eod", "crossbook.app.eod", "end of day on a running server: expire DAY orders, new risk day")
register("loadgen", "crossbook.loadgen.cli", "open-loop FIX load generator: rate, order mix, latency percentiles (docs/loadgen.md)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crossbook", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Parse the subcommand name first, then let its module add its own arguments.
    if argv and argv[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
        p = argparse.ArgumentParser(prog=f"crossbook {argv[0]}", description=SUBCOMMANDS[argv[0]][1])
        module.add_arguments(p)
        return int(module.run(p.parse_args(argv[1:])) or 0)
    parser.parse_args(argv)  # prints usage / help / the error for an unknown command
    return 2


if __name__ == "__main__":
    sys.exit(main())
