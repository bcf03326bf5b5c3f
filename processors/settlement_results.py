"""What a settlement returns: the account after a batch and everything the world must hear about
(pure), collected in one pass over the steps the rules took."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TypeAlias

from msgspec import Struct

from processors.account import Account
from processors.adjustments import Erased, ErasureRequest
from processors.compensation import BudgetRequest, Care
from processors.ids import stable_id
from processors.ledger import Anomaly, LedgerEntry, Outcome
from processors.referrals import REFERRAL_ORDER_PREFIX, ConversionCheck, Step
from schemas.models import GiftCardOrder, ReferralCommand
from schemas.outputs import CompensationDecision, ExpiryWarning, ReferralReward, TierChange


class Rejection(Struct, frozen=True, gc=False):
    """An event the business rules refuse (not malformed input): dead-lettered with `reason`."""

    event_id: str
    reason: str
    detail: str


class PointsCredit(Struct, frozen=True, gc=False):
    """Points that became available to spend: announced on `rewards-issued` (kind `points`)."""

    reason: str
    """`purchase_points_released`, `referral_referrer_released` or `referral_referee_released`."""
    reward_id: str
    customer_id: str
    points: int
    order_id: str
    source_event_id: str
    issued_at: datetime


class Settlement(Struct, frozen=True, gc=False):
    """The account after a batch, and everything the batch caused that the world must hear about."""

    account: Account
    entries: tuple[LedgerEntry, ...] = ()
    credits: tuple[PointsCredit, ...] = ()
    anomalies: tuple[Anomaly, ...] = ()
    rejections: tuple[Rejection, ...] = ()
    commands: tuple[ReferralCommand, ...] = ()
    """Referral steps for other customers' partitions (the referrer's reward)."""
    referral_rewards: tuple[ReferralReward, ...] = ()
    fraud_rejected: tuple[str, ...] = ()
    checks: tuple[ConversionCheck, ...] = ()
    """Conversions `settle` was given no fraud verdict for (they wait); settling in rounds
    (`start`, `resume`) asks instead, and leaves none."""
    decisions: tuple[CompensationDecision, ...] = ()
    orders: tuple[GiftCardOrder, ...] = ()
    """Gift cards granted, for the fulfilment agent to order from the provider."""
    budget_requests: tuple[BudgetRequest, ...] = ()
    """Compensations `settle` was given no budget answer for (they wait); settling in rounds
    asks instead, and leaves none."""
    erasures: tuple[ErasureRequest, ...] = ()
    """Accounts erased by a forget command: the streams layer erases the rest and announces it."""
    tier_changes: tuple[TierChange, ...] = ()
    """Upgrades and downgrades of the customer's loyalty tier, in order."""
    expiry_warnings: tuple[ExpiryWarning, ...] = ()
    """Points that will expire soon, for the customer to hear about."""


SettleStep: TypeAlias = Outcome | Step | Care | Erased | TierChange | ExpiryWarning
"""One step a settlement took: an event's or time's outcome (`collect` turns them into a
`Settlement`)."""


def collect(
    final: Account, steps: Sequence[SettleStep], rejections: Sequence[Rejection]
) -> Settlement:
    """Everything the steps caused that the world must hear about (one pass over them)."""
    if not steps:
        return Settlement(final, rejections=tuple(rejections))
    entries: list[LedgerEntry] = []
    anomalies: list[Anomaly] = []
    referral: list[Step] = []
    care: list[Care] = []
    rare: list[Erased | TierChange | ExpiryWarning] = []
    for step in steps:
        match step:  # the most frequent kinds first
            case Outcome():
                entries += step.entries
                anomalies += step.anomalies
            case Step():
                entries += step.entries
                anomalies += step.anomalies
                referral.append(step)
            case Care():
                care.append(step)
            case _:
                rare.append(step)
    erasures, tier_changes, warnings = _rare(rare) if rare else ((), (), ())
    return Settlement(
        account=final,
        entries=tuple(entries),
        credits=tuple(credits_for(entries)),
        anomalies=tuple(anomalies),
        rejections=tuple(rejections),
        commands=tuple(c for step in referral for c in step.commands),
        referral_rewards=tuple(r for step in referral for r in step.rewards),
        fraud_rejected=tuple(c for step in referral for c in step.rejected),
        checks=tuple(step.check for step in referral if step.check is not None),
        decisions=tuple(step.decision for step in care if step.decision is not None),
        orders=tuple(step.order for step in care if step.order is not None),
        budget_requests=tuple(step.request for step in care if step.request is not None),
        erasures=erasures,
        tier_changes=tier_changes,
        expiry_warnings=warnings,
    )


def _rare(
    steps: Sequence[Erased | TierChange | ExpiryWarning],
) -> tuple[tuple[ErasureRequest, ...], tuple[TierChange, ...], tuple[ExpiryWarning, ...]]:
    """The erasures, tier changes and expiry warnings among the steps, each in order."""
    erasures: list[ErasureRequest] = []
    tiers: list[TierChange] = []
    warnings: list[ExpiryWarning] = []
    for step in steps:
        match step:
            case Erased():
                erasures.append(step.erasure)
            case TierChange():
                tiers.append(step)
            case ExpiryWarning():
                warnings.append(step)
    return tuple(erasures), tuple(tiers), tuple(warnings)


def credits_for(entries: Iterable[LedgerEntry]) -> Iterable[PointsCredit]:
    """One points credit per release: the order's points became available (one reward per order)."""
    for entry in entries:
        if entry.kind == "release" and entry.available_delta > 0:
            yield PointsCredit(
                reason=_release_reason(entry.order_id),
                reward_id=stable_id("rw", "points", entry.customer_id, entry.order_id),
                customer_id=entry.customer_id,
                points=entry.available_delta,
                order_id=entry.order_id,
                source_event_id=entry.source_event_id,
                issued_at=entry.occurred_at,
            )


def _release_reason(order_id: str) -> str:
    """Why released points were earned: a purchase, or one side of a referral."""
    if order_id.startswith(REFERRAL_ORDER_PREFIX):
        return f"referral_{order_id.rsplit(':', 1)[-1]}_released"
    return "purchase_points_released"
