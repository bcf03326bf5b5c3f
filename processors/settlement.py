"""Settle a customer's purchases and refunds against their points account (pure).

`settle` is what the streams layer calls once per customer per batch: release what the clock says
is due, apply the events in order, release again (a back-dated purchase may already be due), forget
orders past retention. It returns everything the world needs to hear about, and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

from msgspec import Struct

from processors.advocacy import (
    AdvocacyPolicy,
    follow_up_after,
    prune_advocacy,
    record_invite,
    record_survey,
)
from processors.compensation import BudgetRequest, Care, CompensationPolicy, assess
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
from processors.referral_flags import flag_referral
from processors.referrals import (
    REFERRAL_ORDER_PREFIX,
    ConversionCheck,
    ReferralPolicy,
    Step,
    attribute,
    cancel_on_refund,
    convert,
    decide,
)
from processors.referrer_rewards import cancel_referrer, credit_referrer, prune_grants
from schemas.models import (
    Complaint,
    FraudDecision,
    GiftCardOrder,
    Purchase,
    Referral,
    ReferralCommand,
    SurveyResponse,
)
from schemas.outputs import CompensationDecision, ReferralReward


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
    """Conversions waiting for a fraud verdict: settle again with `verdicts` for them."""
    decisions: tuple[CompensationDecision, ...] = ()
    orders: tuple[GiftCardOrder, ...] = ()
    """Gift cards granted, for the fulfilment agent to order from the provider."""
    budget_requests: tuple[BudgetRequest, ...] = ()
    """Compensations waiting for a budget reservation: settle again with `grants` for them."""


Event: TypeAlias = (
    Purchase | ReferralCommand | FraudDecision | Complaint | SurveyResponse | Referral
)
"""What settles against an account: purchases and refunds, referral steps, operator decisions,
complaints, survey answers and the invitations a customer sent (`invited` referrals)."""


@dataclass(frozen=True, slots=True)
class Policies:
    """Points, referral, compensation and advocacy configuration."""

    points: PointsPolicy
    referrals: ReferralPolicy = field(default_factory=ReferralPolicy)
    compensation: CompensationPolicy = field(default_factory=CompensationPolicy)
    advocacy: AdvocacyPolicy = field(default_factory=AdvocacyPolicy)


def settle(
    account: Account,
    events: Sequence[Event],
    now: datetime,
    policy: PointsPolicy | Policies,
    verdicts: Mapping[str, str] | None = None,
    *,
    grants: Mapping[str, str] | None = None,
    times: Sequence[datetime] | None = None,
) -> Settlement:
    """Apply a customer's events in order, each at its own time, and every release due by `now`.

    `times[i]` is when `events[i]` is processed (the stream's clock: never going back, and
    `now` >= the last of them); without `times` every event is processed at `now`. Before each
    event, the holds ended by its time are released and what is past retention is forgotten;
    after the last, the same happens at `now`. So the outcome depends only on the events, their
    times and `now`: never on how the events are cut into batches (tested).

    Each event is idempotent on its own (an order, refund, referral step or complaint already
    recorded changes nothing), so a replayed or redelivered event settles to the same account and
    the same ids. `verdicts` maps a converting purchase's event id to its fraud decision; a
    conversion without one stops the referral there and is listed in `checks`. `grants` maps a
    complaint's event id to its budget reservation's answer; a compensation without one is listed
    in `budget_requests`.
    """
    policies = policy if isinstance(policy, Policies) else Policies(policy)
    steps: list[Outcome | Step | Care] = []
    rejections: list[Rejection] = []
    current = account
    for event, at in zip(events, times if times is not None else [now] * len(events), strict=True):
        current = _tick(current, at, policies, steps)
        for step in _steps(current, event, policies, at, verdicts or {}, grants or {}):
            steps.append(step)
            current = step.account
            if type(step) is Outcome and step.rejection is not None:
                rejections.append(Rejection(event.event_id, "no_points_rate", step.rejection))
        if current.complaints and type(event) in _FOLLOWED:
            current = follow_up_after(current, event, policies.advocacy)  # type: ignore[arg-type]
    current = _tick(current, now, policies, steps)
    return _settlement(current, steps, rejections)


def _tick(
    account: Account, at: datetime, policies: Policies, steps: list[Outcome | Step | Care]
) -> Account:
    """What time alone does to an account: release the holds ended by `at` (appended to
    `steps`), forget what is past retention (orders, cap grants, answers and invitations)."""
    released = release_due(account, at)
    if released.entries:
        steps.append(released)
    kept = released.account
    if kept.oldest_at is not None:
        kept = prune(kept, at, policies.points)
    if kept.grants:
        kept = prune_grants(kept, at, policies.referrals)
    if kept.surveys or kept.invites:
        kept = prune_advocacy(kept, at, policies.advocacy)
    return kept


_FOLLOWED = frozenset({Complaint, SurveyResponse, Purchase})
"""The events that can change a complaint's follow-up (its record, the next answer, a purchase
again); after any other event, or time passing, it cannot have changed."""


def _settlement(
    final: Account, steps: Sequence[Outcome | Step | Care], rejections: Sequence[Rejection]
) -> Settlement:
    """Everything the steps caused that the world must hear about (one pass over them)."""
    if not steps:
        return Settlement(final, rejections=tuple(rejections))
    entries: list[LedgerEntry] = []
    anomalies: list[Anomaly] = []
    referral: list[Step] = []
    care: list[Care] = []
    for step in steps:
        if type(step) is Care:
            care.append(step)
            continue
        entries += step.entries  # type: ignore[union-attr]
        anomalies += step.anomalies  # type: ignore[union-attr]
        if type(step) is Step:
            referral.append(step)
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
    )


def _steps(  # noqa: PLR0917 - the settle loop's state, all of it needed
    account: Account,
    event: Event,
    policies: Policies,
    now: datetime,
    verdicts: Mapping[str, str],
    grants: Mapping[str, str],
) -> list[Outcome | Step | Care]:
    """What one event does to the account (a survey or an invitation is only remembered)."""
    if isinstance(event, Complaint):
        grant = grants.get(event.event_id)
        return [assess(account, event, policies.compensation, now, grant)]
    if isinstance(event, SurveyResponse):
        return [Outcome(record_survey(account, event, policies.advocacy))]
    if isinstance(event, Referral):
        return [Outcome(record_invite(account, event, policies.advocacy))]
    outcome, step = _apply(account, event, policies, verdicts)
    return [outcome] if step is None else [outcome, step]


def _command(
    account: Account, cmd: ReferralCommand, referrals: ReferralPolicy, verdicts: Mapping[str, str]
) -> Step:
    if cmd.command == "signup":
        return attribute(account, cmd, referrals, verdicts)
    if cmd.command == "credit_referrer":
        return credit_referrer(account, cmd, referrals)
    if cmd.command == "ring_review":
        return flag_referral(account, cmd, "review", "referral_ring")
    if cmd.command == "rescore":
        return flag_referral(account, cmd, cmd.decision or "review", "fraud_late_evidence")
    return cancel_referrer(account, cmd)


def _apply(
    account: Account,
    event: Purchase | ReferralCommand | FraudDecision,
    policies: Policies,
    verdicts: Mapping[str, str],
) -> tuple[Outcome | Step, Step | None]:
    referrals = policies.referrals
    if isinstance(event, FraudDecision):
        return decide(account, event, referrals), None
    if isinstance(event, ReferralCommand):
        return _command(account, event, referrals, verdicts), None
    if event.type == "refund":
        outcome = reverse(
            account,
            event_id=event.event_id,
            order_id=event.order_id,
            refunded_cents=event.amount_cents,
            at=event.occurred_at,
            currency=event.currency,
        )
        return outcome, cancel_on_refund(outcome.account, event, referrals)
    outcome = earn(
        account,
        event_id=event.event_id,
        order_id=event.order_id,
        amount_cents=event.amount_cents,
        currency=event.currency,
        points_redeemed=event.points_redeemed or 0,
        at=event.occurred_at,
        policy=policies.points,
    )
    if outcome.rejection is not None or account.referral is None:
        return outcome, None
    return outcome, convert(outcome.account, event, verdicts.get(event.event_id), referrals)


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
