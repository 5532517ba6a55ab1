"""Who may trade: firms, their accounts and their FIX sessions, as the order manager sees them.

Indices are assigned in config order and are what the risk engine keys on.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from crossbook.core import STPMode


@dataclass(frozen=True, slots=True)
class AccountSpec:
    name: str
    index: int
    firm: str
    firm_index: int
    currency: str = "USD"
    stp: STPMode = STPMode.NONE


@dataclass(frozen=True, slots=True)
class FirmSpec:
    name: str
    index: int
    default_account: str
    accounts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ClientSessionSpec:
    """A client FIX session: its CompID (the session key inside the OMS), version and firm."""

    comp_id: str
    begin_string: str
    firm: str
    index: int
    msg_rate_per_sec: int | None = None
    cancel_on_disconnect: bool = False


@dataclass(slots=True)
class Directory:
    """Lookup tables over firms, accounts and sessions."""

    firms: dict[str, FirmSpec] = field(default_factory=dict)
    accounts: dict[str, AccountSpec] = field(default_factory=dict)
    sessions: dict[str, ClientSessionSpec] = field(default_factory=dict)

    def account_of(self, session: str, account: str | None) -> AccountSpec | None:
        """The account an order of ``session`` trades for (its firm's default when ``account`` is
        empty); None when the account is unknown or belongs to another firm."""
        spec = self.sessions.get(session)
        if spec is None:
            return None
        firm = self.firms[spec.firm]
        name = account or firm.default_account
        acc = self.accounts.get(name)
        if acc is None or acc.firm != firm.name:
            return None
        return acc

    def account_by_index(self, index: int) -> AccountSpec:
        for acc in self.accounts.values():
            if acc.index == index:
                return acc
        raise KeyError(index)
