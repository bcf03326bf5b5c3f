"""Ledger entries and anomalies: how every balance change is described (pure)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from msgspec import Struct
from msgspec.structs import replace

from processors.account import Account
from processors.expiry_state import credited
from processors.ids import stable_id
from schemas.outputs import AnomalyKind

EntryKind = Literal["earn", "release", "reversal", "redemption", "referral", "adjustment", "expiry"]


class LedgerEntry(Struct, frozen=True, gc=False, omit_defaults=True):
    """One balance change, with the balances it leaves (append-only; id deterministic)."""

    entry_id: str
    customer_id: str
    sequence: int
    kind: EntryKind
    pending_delta: int
    available_delta: int
    pending_after: int
    available_after: int
    source_event_id: str
    order_id: str
    occurred_at: datetime
    operator: str | None = None
    """Who made a manual adjustment (`adjustment` entries only)."""
    reason: str | None = None
    """Why, in the operator's words (`adjustment` entries only)."""


class Anomaly(Struct, frozen=True, gc=False):
    """Something to report and count, not an input error: its `kind` and the `points` short."""

    anomaly_id: str
    kind: AnomalyKind
    order_id: str
    points: int
    source_event_id: str
    occurred_at: datetime
    amount_cents: int | None = None
    """The refund beyond the order, or the reused order id's other amount."""
    currency: str | None = None
    """The refund's or the reused order id's currency, where it matters."""


class Outcome(Struct, frozen=True, gc=False):
    """The result of applying one event or one release to an account."""

    account: Account
    entries: tuple[LedgerEntry, ...] = ()
    anomalies: tuple[Anomaly, ...] = ()
    rejection: str | None = None


def entry_for(  # noqa: PLR0917 - one balance change, all of it needed
    account: Account, kind: EntryKind, order: str, event_id: str, at: datetime, dp: int, da: int
) -> tuple[Account, LedgerEntry]:
    """Apply a balance change (and keep the expiry lots) and describe it."""
    points = account.points
    points = replace(
        points,
        pending=points.pending + dp,
        available=points.available + da,
        sequence=points.sequence + 1,
    )
    after = replace(account, points=points, expiry=credited(account.expiry, at, da))
    entry = LedgerEntry(
        entry_id=stable_id("le", kind, account.customer_id, order, event_id),
        customer_id=account.customer_id,
        sequence=points.sequence,
        kind=kind,
        pending_delta=dp,
        available_delta=da,
        pending_after=points.pending,
        available_after=points.available,
        source_event_id=event_id,
        order_id=order,
        occurred_at=at,
    )
    return after, entry


def anomaly(  # noqa: PLR0917 - one anomaly, all of it needed
    account: Account,
    kind: AnomalyKind,
    order_id: str,
    points: int,
    event_id: str,
    at: datetime,
    amount_cents: int | None = None,
    currency: str | None = None,
) -> Anomaly:
    """An anomaly of this account, its id deterministic."""
    anomaly_id = stable_id("pa", kind, account.customer_id, order_id, event_id)
    return Anomaly(anomaly_id, kind, order_id, points, event_id, at, amount_cents, currency)
