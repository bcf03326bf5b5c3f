"""Operators' account commands: manual adjustments and erasure of an account (pure).

An adjustment adds or removes available points once per `adjustment_id`: the account remembers
the latest ADJUSTMENT_MEMORY ids it applied (oldest forgotten first), so a retried command is
applied once unless that customer had more than ADJUSTMENT_MEMORY adjustments since. A debit
never takes the available balance below zero: what it could not take is an
`adjustment_shortfall` anomaly. A forget command replaces the account by a new empty one and
asks the streams layer to erase everything else it keeps about the customer.
"""

from __future__ import annotations

from datetime import datetime

from msgspec import Struct
from msgspec.structs import replace

from processors.account import Account
from processors.ids import stable_id
from processors.ledger import Anomaly, LedgerEntry, Outcome, entry_for
from schemas.models import AccountCommand

ADJUSTMENT_MEMORY = 1000
"""How many applied adjustment ids an account remembers (its idempotency window)."""
ADJUSTMENT_ORDER_PREFIX = "adjustment:"
"""The `order_id` of an adjustment's ledger entry: `adjustment:<adjustment_id>`."""


class ErasureRequest(Struct, frozen=True, gc=False):
    """An account erased by a forget command: what the streams layer erases and announces."""

    erasure_id: str
    """Deterministic, from the command's event id only (never from the customer id)."""
    customer_id: str
    operator: str
    source_event_id: str
    requested_at: datetime
    erased_at: datetime


class Erased(Struct, frozen=True, gc=False):
    """The result of a forget command: a new empty account, and the erasure to carry out."""

    account: Account
    erasure: ErasureRequest


def adjust(account: Account, command: AccountCommand) -> Outcome:
    """Apply a manual adjustment once: credit, or debit down to zero at most (the rest is an
    `adjustment_shortfall` anomaly); the ledger entry names the operator and the reason."""
    adjustment_id = command.adjustment_id or command.event_id
    if adjustment_id in account.points.adjustments:
        return Outcome(account)
    wanted = command.points or 0
    delta = wanted if wanted >= 0 else -min(-wanted, account.points.available)
    order_id = ADJUSTMENT_ORDER_PREFIX + adjustment_id
    at = command.occurred_at
    entries: tuple[LedgerEntry, ...] = ()
    if delta:
        account, entry = entry_for(account, "adjustment", order_id, command.event_id, at, 0, delta)
        entries = (replace(entry, operator=command.operator, reason=command.reason),)
    anomalies: tuple[Anomaly, ...] = ()
    if delta != wanted:
        anomaly_id = stable_id(
            "pa", "adjustment_shortfall", account.customer_id, order_id, command.event_id
        )
        short = Anomaly(
            anomaly_id, "adjustment_shortfall", order_id, delta - wanted, command.event_id, at
        )
        anomalies = (short,)
    remembered = (*account.points.adjustments, adjustment_id)[-ADJUSTMENT_MEMORY:]
    points = replace(account.points, adjustments=remembered)
    return Outcome(replace(account, points=points), entries, anomalies)


def forget(account: Account, command: AccountCommand, at: datetime) -> Erased:
    """Erase the account: a new empty one takes its place (later events start from it)."""
    request = ErasureRequest(
        erasure_id=stable_id("er", command.event_id),
        customer_id=account.customer_id,
        operator=command.operator,
        source_event_id=command.event_id,
        requested_at=command.occurred_at,
        erased_at=at,
    )
    return Erased(Account(account.customer_id), request)
