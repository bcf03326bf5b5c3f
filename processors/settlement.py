"""Settle a customer's purchases and refunds against their points account (pure).

`settle` is what the streams layer calls once per customer per batch: release what the clock says
is due, apply the events in order, release again (a back-dated purchase may already be due), forget
orders past retention. It returns everything the world needs to hear about, and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from processors.ids import stable_id
from processors.points import (
    Account,
    Anomaly,
    LedgerEntry,
    Outcome,
    PointsPolicy,
    earn,
    prune,
    release_due,
    reverse,
)
from schemas.models import Purchase


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event the business rules refuse (not malformed input): dead-lettered with `reason`."""

    event_id: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class PointsCredit:
    """Points that became available to spend: announced on `rewards-issued` (kind `points`)."""

    reward_id: str
    customer_id: str
    points: int
    order_id: str
    source_event_id: str
    issued_at: datetime


@dataclass(frozen=True, slots=True)
class Settlement:
    """The account after a batch, and the entries, credits, anomalies and rejections it caused."""

    account: Account
    entries: tuple[LedgerEntry, ...] = ()
    credits: tuple[PointsCredit, ...] = ()
    anomalies: tuple[Anomaly, ...] = ()
    rejections: tuple[Rejection, ...] = ()


def settle(
    account: Account, purchases: Sequence[Purchase], now: datetime, policy: PointsPolicy
) -> Settlement:
    """Apply a customer's purchases and refunds (in offset order) and every release due by `now`.

    Each event is idempotent on its own (an order or refund already recorded changes nothing), so a
    replayed or redelivered event settles to the same account and the same entry ids.
    """
    outcomes = [release_due(account, now)]
    rejections: list[Rejection] = []
    for purchase in purchases:
        outcome = _apply(outcomes[-1].account, purchase, policy)
        if outcome.rejection is not None:
            rejections.append(Rejection(purchase.event_id, "no_points_rate", outcome.rejection))
        outcomes.append(outcome)
    outcomes.append(release_due(outcomes[-1].account, now))
    entries = tuple(entry for outcome in outcomes for entry in outcome.entries)
    return Settlement(
        account=prune(outcomes[-1].account, now, policy),
        entries=entries,
        credits=tuple(credits_for(entries)),
        anomalies=tuple(anomaly for outcome in outcomes for anomaly in outcome.anomalies),
        rejections=tuple(rejections),
    )


def _apply(account: Account, purchase: Purchase, policy: PointsPolicy) -> Outcome:
    if purchase.type == "refund":
        return reverse(
            account,
            event_id=purchase.event_id,
            order_id=purchase.order_id,
            refunded_cents=purchase.amount_cents,
            at=purchase.occurred_at,
        )
    return earn(
        account,
        event_id=purchase.event_id,
        order_id=purchase.order_id,
        amount_cents=purchase.amount_cents,
        currency=purchase.currency,
        points_redeemed=purchase.points_redeemed or 0,
        at=purchase.occurred_at,
        policy=policy,
    )


def credits_for(entries: Iterable[LedgerEntry]) -> Iterable[PointsCredit]:
    """One points credit per release: the order's points became available (one reward per order)."""
    for entry in entries:
        if entry.kind == "release" and entry.available_delta > 0:
            yield PointsCredit(
                reward_id=stable_id("rw", "points", entry.customer_id, entry.order_id),
                customer_id=entry.customer_id,
                points=entry.available_delta,
                order_id=entry.order_id,
                source_event_id=entry.source_event_id,
                issued_at=entry.occurred_at,
            )
