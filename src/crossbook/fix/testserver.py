"""``crossbook fix-test-server``: the engine set up for the QuickFIX acceptance scripts.

Acceptor ``ISLD`` on one port for TW42 (FIX.4.2), TW44 (FIX.4.4), TW50 / TW50SP1 /
TW50SP2 (FIXT.1.1 with DefaultApplVerID 7 / 8 / 9); ResetOnLogon, CheckLatency with
MaxLatency 120 s, LogoutTimeout 2 s, millisecond SendingTime, full dictionary
validation. The application is QuickFIX's ``at``: NewOrderSingle echoed (a PossResend
order whose ClOrdID was already seen since the last logout is dropped),
SecurityDefinition echoed, every other application message answered with
BusinessMessageReject "Unsupported Message Type".
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from crossbook.fix.messages import HEADER_TAGS, Message
from crossbook.fix.session import Application, Session, SessionID, UnsupportedMessageType
from crossbook.fix.settings import SessionSettings
from crossbook.fix.store import FileStore, MessageStore, store_name
from crossbook.fix.transport import Acceptor, install_uvloop

COUNTERPARTIES = (
    ("FIX.4.2", "TW42", None),
    ("FIX.4.4", "TW44", None),
    ("FIXT.1.1", "TW50", "7"),
    ("FIXT.1.1", "TW50SP1", "8"),
    ("FIXT.1.1", "TW50SP2", "9"),
)

# Header fields the session fills in itself, or drops on send (QuickFIX Session::send removes 43/122).
_SESSION_HEADER = frozenset({8, 9, 10, 34, 35, 43, 49, 52, 56, 122})


def acceptance_settings(port: int, host: str = "127.0.0.1", store_dir: str | None = None) -> list[SessionSettings]:
    """The session settings the acceptance scripts assume (see the acceptance README)."""
    return [
        SessionSettings(begin_string=begin, sender_comp_id="ISLD", target_comp_id=target,
                        default_appl_ver_id=appl, reset_on_logon=True, check_latency=True, max_latency=120.0,
                        logout_timeout=2.0, socket_accept_host=host, socket_accept_port=port,
                        store="file" if store_dir else "memory", file_store_path=store_dir)
        for begin, target, appl in COUNTERPARTIES
    ]


class AcceptanceTestApplication(Application):
    """QuickFIX's ``at`` application: echo orders and security definitions, refuse the rest."""

    def __init__(self) -> None:
        self._seen_ids: dict[SessionID, set[bytes]] = {}

    def on_logout(self, session: Session) -> None:
        self._seen_ids.pop(session.session_id, None)

    def from_app(self, session: Session, message: Message) -> None:
        msg_type = message.msg_type
        if msg_type == b"D":
            seen = self._seen_ids.setdefault(session.session_id, set())
            cl_ord_id = message.get(11, b"")
            if message.get(97) == b"Y" and cl_ord_id in seen:
                return
            seen.add(cl_ord_id)
            self._echo(session, message)
        elif msg_type == b"d":
            self._echo(session, message)
        else:
            raise UnsupportedMessageType()

    @staticmethod
    def _echo(session: Session, message: Message) -> None:
        header = [(t, v) for t, v in message.fields if t in HEADER_TAGS and t not in _SESSION_HEADER]
        body = message.body()
        tags = [t for t, _ in body]
        # QuickFIX keeps a flat message's body in tag order; a message with repeated tags
        # (repeating groups) keeps the order it came in, so the groups stay whole.
        if len(set(tags)) == len(tags):
            body.sort(key=lambda f: f[0])
        session.send(message.msg_type, body, header)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--store", metavar="DIR", help="use durable file stores in DIR (reset at start-up)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log session events")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    if not (0 <= args.port <= 65535):
        print(f"--port must be 0-65535, got {args.port}", file=sys.stderr)
        return 2
    install_uvloop()
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass
    return 0


async def _serve(args: argparse.Namespace) -> None:
    settings = acceptance_settings(args.port, args.host, args.store)

    def store_factory(s: SessionSettings) -> MessageStore:
        assert s.file_store_path is not None
        store = FileStore(s.file_store_path, store_name(s.begin_string, s.sender_comp_id, s.target_comp_id))
        store.reset(0.0)  # the upstream test server starts from a clean store
        return store

    acceptor = Acceptor(settings, AcceptanceTestApplication(), store_factory=store_factory if args.store else None)
    await acceptor.start()
    print(f"fix-test-server listening on {args.host}:{acceptor.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    await stop.wait()
    await acceptor.stop(logout_grace=1.0)
