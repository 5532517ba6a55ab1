"""What the order manager asks the FIX gateway to send (after the batch it belongs to is durable).

They are plain immutable records; the gateway turns them into FIX for the session's version.
NamedTuples rather than frozen dataclasses: two ExecReports are made per order, and a frozen
dataclass pays an ``object.__setattr__`` per field (2.0 us against 0.6 us to build one).
"""
from __future__ import annotations

from typing import NamedTuple

from crossbook.model.enums import CxlRejReason, CxlRejResponseTo, OrdRejReason, OrdStatus
from crossbook.model.orders import Execution


class ExecReport(NamedTuple):
    """An ExecutionReport on ``session``. ``ord_rej_reason`` for rejections; ``status_of`` set for
    status answers (H / AF), which are not stored executions."""

    session: str
    execution: Execution
    ord_rej_reason: OrdRejReason | None = None
    mass_status_req_id: str = ""
    tot_num_reports: int = -1
    last_rpt_requested: bool = False
    status_request: bool = False
    order_qty: int = 0
    ord_type: int = 0
    stop_px: int = 0
    tif: int = 0
    poss_resend: bool = False  # sent again after a restart: PossResend (97=Y), the client dedups by ExecID


class CancelReject(NamedTuple):
    """OrderCancelReject (9)."""

    session: str
    order_id: str            # "NONE" when unknown
    cl_ord_id: str
    orig_cl_ord_id: str
    ord_status: OrdStatus
    response_to: CxlRejResponseTo
    reason: CxlRejReason
    text: str
    account: str = ""


class MassCancelReport(NamedTuple):
    """OrderMassCancelReport (r)."""

    session: str
    cl_ord_id: str
    report_id: str
    request_type: str        # MassCancelRequestType (530) echoed
    response: str            # MassCancelResponse (531): 0 rejected, else the request type
    affected: int            # TotalAffectedOrders (533)
    reject_reason: int = -1  # MassCancelRejectReason (532), when rejected
    text: str = ""
    symbol: str = ""
    security_type: str = ""


Output = ExecReport | CancelReject | MassCancelReport
