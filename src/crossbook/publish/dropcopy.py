"""Drop copy: a copy of every ExecutionReport of a scope (all firms, or some) on FIX sessions of
their own.

A drop-copy session is an ordinary FIX 4.4 session of the server's acceptor (same port as the
order-entry sessions; configured in ``[[drop_copy]]``, docs/config.md). The publisher subscribes
to the order manager's durable events through :class:`crossbook.publish.EventBus`, as any
embedder does, and sends each event of its scope as an ExecutionReport (35=8) with the drop-copy
session's own header and sequence numbers and CopyMsgIndicator (797=Y) in the header. The body is
exactly what the originating session got (same encoder, same ExecID, OrderID, ClOrdID, CumQty,
AvgPx ...), except that copies are always FIX 4.4. It is encoded once per event, by the gateway's
compiled path (``FixGateway.execution_report_bytes``, docs/fix-codec.md), and each copy session
stamps its own header around those bytes (``Session.send_encoded``): byte for byte what the
field-list path (``execution_report_body`` + ``Session.send``) sends, proved by
tests/publish/test_dropcopy_encode.py.

Delivery follows the FIX session rules, as QuickFIX does it: the session stores every copy
with its sequence number whether the session is logged on or not. A receiver that was down logs
on again with the sequence number it expects, sees our higher MsgSeqNum, and asks with a
ResendRequest: the copies it missed come back from our store (PossDupFlag 43=Y, OrigSendingTime).
Nothing here waits: an event is one encode, and each copy a header stamp and a store append, on the
event loop like any report.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable

from crossbook.model.enums import OrdRejReason
from crossbook.model.events import OrderEvent
from crossbook.oms.reports import ExecReport

log = logging.getLogger("crossbook.dropcopy")

COPY_HEADER = ((797, b"Y"),)  # CopyMsgIndicator: this message is a copy (FIX 4.4 standard header)
#: Copies have FIX 4.4 semantics whatever the originating session's version (797 exists from 4.4 on).
COPY_BEGIN_STRING = "FIX.4.4"


class DropCopyPublisher:
    """Sends copies of order events to drop-copy sessions.

    ``bus``: an :class:`~crossbook.publish.EventBus`. ``gateway``: the server's FIX gateway (its
    ``sessions`` map CompID -> Session, drop-copy sessions included, and its report encoder).
    ``directory``: firms, accounts and order-entry sessions (to find an order's firm).
    ``configs``: :class:`crossbook.app.config.DropCopyConfig`-like objects with ``comp_id`` and
    ``firms`` (a tuple of firm names, or None for every firm).
    """

    def __init__(self, bus, gateway, directory, configs: Iterable) -> None:
        self._bus = bus
        self._gateway = gateway
        self._directory = directory
        self._all: list[str] = []
        self._by_firm: dict[str, list[str]] = {}
        for cfg in configs:
            if cfg.firms is None:
                self._all.append(cfg.comp_id)
            else:
                for firm in cfg.firms:
                    self._by_firm.setdefault(firm, []).append(cfg.comp_id)
        self._unsubscribe: Callable[[], None] | None = None
        #: Copies handed to each drop-copy session (stored, and sent when it is logged on).
        self.copies: dict[str, int] = {c: 0 for c in self.session_ids}

    @property
    def session_ids(self) -> list[str]:
        return list(dict.fromkeys(self._all + [c for cs in self._by_firm.values() for c in cs]))

    def start(self) -> None:
        """Subscribe to the bus (idempotent)."""
        if self._unsubscribe is None and (self._all or self._by_firm):
            self._unsubscribe = self._bus.subscribe(self.on_event)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def firm_of(self, event: OrderEvent) -> str:
        order = event.order
        spec = self._directory.sessions.get(order.session)
        if spec is not None:
            return spec.firm
        acc = self._directory.accounts.get(order.account)
        return acc.firm if acc is not None else ""

    def on_event(self, event: OrderEvent) -> None:
        """One durable order event: a copy to every drop-copy session whose scope has its firm."""
        targets = self._all
        scoped = self._by_firm.get(self.firm_of(event))
        if scoped:
            targets = targets + scoped
        if not targets:
            return
        ex = event.execution
        order = event.order
        rej = OrdRejReason(ex.ord_rej_reason) if ex.ord_rej_reason in OrdRejReason._value2member_map_ else None
        report = ExecReport(order.session, ex, rej, order_qty=order.qty, ord_type=order.ord_type,
                            stop_px=order.stop_px, tif=order.tif)
        gateway = self._gateway
        encoded: bytes | None = None
        fields: list | None = None
        for comp_id in targets:
            session = gateway.sessions.get(comp_id)
            if session is None:
                log.error("drop copy session %s does not exist", comp_id)
                continue
            # One encode for every copy session; a session object without send_encoded gets the
            # field list (as the gateway's own reports do).
            send_encoded = getattr(session, "send_encoded", None)
            if send_encoded is not None:
                if encoded is None:
                    encoded = gateway.execution_report_bytes(COPY_BEGIN_STRING, report)
                send_encoded(b"8", encoded, COPY_HEADER)
            else:
                if fields is None:
                    fields = gateway.execution_report_body(COPY_BEGIN_STRING, report)
                session.send(b"8", fields, header=COPY_HEADER)
            self.copies[comp_id] += 1
