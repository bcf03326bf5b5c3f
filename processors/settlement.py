"""Settle a customer's purchases and refunds against their points account (pure).

`settle` is what the streams layer calls once per customer per batch: release what the clock says
is due, apply the events in order, release again (a back-dated purchase may already be due), forget
orders past retention. It returns everything the world needs to hear about, and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

from processors import expiry
from processors.adjustments import Erased, adjust, forget
from processors.advocacy import (
    AdvocacyPolicy,
    follow_up_after,
    prune_advocacy,
    record_invite,
    record_survey,
)
from processors.compensation import Care, CompensationPolicy, assess
from processors.expiry import ExpiryPolicy, activity, start_lots
from processors.points import (
    Account,
    Outcome,
    PointsPolicy,
    earn,
    prune,
    release_due,
    reverse,
)
from processors.referral_flags import flag_referral
from processors.referrals import (
    ReferralPolicy,
    Step,
    attribute,
    cancel_on_refund,
    convert,
    decide,
)
from processors.referrer_rewards import cancel_referrer, credit_referrer, prune_grants
from processors.settlement_results import (
    PointsCredit,
    Rejection,
    Settlement,
    Steps,
    collect,
    credits_for,
)
from processors.tiers import TierPolicy, advance, entry_amount, percent_of, qualify
from schemas.models import (
    AccountCommand,
    Complaint,
    FraudDecision,
    Purchase,
    Referral,
    ReferralCommand,
    SurveyResponse,
)

__all__ = [
    "Event",
    "PointsCredit",
    "Policies",
    "Rejection",
    "Settlement",
    "credits_for",
    "settle",
]


Event: TypeAlias = (
    Purchase
    | ReferralCommand
    | FraudDecision
    | Complaint
    | SurveyResponse
    | Referral
    | AccountCommand
)
"""What settles against an account: purchases and refunds, referral steps, operator decisions,
complaints, survey answers, the invitations a customer sent (`invited` referrals) and
operators' account commands (adjustments, erasure)."""


@dataclass(frozen=True, slots=True)
class Policies:
    """Points, referral, compensation and advocacy configuration."""

    points: PointsPolicy
    referrals: ReferralPolicy = field(default_factory=ReferralPolicy)
    compensation: CompensationPolicy = field(default_factory=CompensationPolicy)
    advocacy: AdvocacyPolicy = field(default_factory=AdvocacyPolicy)
    tiers: TierPolicy = field(default_factory=TierPolicy)
    expiry: ExpiryPolicy = field(default_factory=ExpiryPolicy)


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
    steps: Steps = []
    rejections: list[Rejection] = []
    current = account
    for event, at in zip(events, times if times is not None else [now] * len(events), strict=True):
        current = _tick(current, at, policies, steps)
        start = len(steps)
        for step in _steps(current, event, policies, at, verdicts or {}, grants or {}):
            steps.append(step)
            current = step.account
            if type(step) is Outcome and step.rejection is not None:
                rejections.append(Rejection(event.event_id, "no_points_rate", step.rejection))
        if len(steps) > start and (policies.tiers.tiers or policies.expiry.inactivity):
            current = _loyalty(current, event, at, policies, steps, start)
        if current.complaints and type(event) in _FOLLOWED:
            current = follow_up_after(current, event, policies.advocacy)  # type: ignore[arg-type]
    current = _tick(current, now, policies, steps)
    return collect(current, steps, rejections)


def _tick(account: Account, at: datetime, policies: Policies, steps: Steps) -> Account:
    """What time alone does to an account: release the holds ended by `at` (appended to
    `steps`), forget what is past retention (orders, cap grants, answers and invitations)."""
    if policies.expiry.on:
        kept = expiry.advance(start_lots(account, at), at, policies.expiry, steps)
    else:
        released = release_due(account, at)
        if released.entries:
            steps.append(released)
        kept = released.account
    if kept.tier_days and policies.tiers.tiers:
        kept, changes = advance(kept, at, policies.tiers)
        steps += changes
    if kept.oldest_at is not None:
        kept = prune(kept, at, policies.points)
    if kept.grants:
        kept = prune_grants(kept, at, policies.referrals)
    if kept.surveys or kept.invites:
        kept = prune_advocacy(kept, at, policies.advocacy)
    return kept


def _active(event: Event) -> bool:
    """Activity for the inactivity expiry: a purchase, refund, redemption or adjustment."""
    if isinstance(event, AccountCommand):
        return event.command != "forget"
    return isinstance(event, Purchase)


_FOLLOWED = frozenset({Complaint, SurveyResponse, Purchase})
"""The events that can change a complaint's follow-up (its record, the next answer, a purchase
again); after any other event, or time passing, it cannot have changed."""


def _loyalty(  # noqa: PLR0917 - the settle loop's state, all of it needed
    account: Account, event: Event, at: datetime, policies: Policies, steps: Steps, start: int
) -> Account:
    """What the event's steps (`steps[start:]`) qualify towards a tier (and any change that
    makes), and the activity it is for the inactivity expiry."""
    tiers = policies.tiers
    if tiers.tiers:
        amount = 0
        for step in steps[start:]:
            if type(step) is Outcome or type(step) is Step:
                amount += sum(entry_amount(e, event, tiers) for e in step.entries)
        account, change = qualify(account, amount, at, tiers)
        if change is not None:
            steps.append(change)
    if policies.expiry.inactivity is not None and _active(event):
        account = activity(account, at, policies.expiry)
    return account


def _steps(  # noqa: PLR0917 - the settle loop's state, all of it needed
    account: Account,
    event: Event,
    policies: Policies,
    now: datetime,
    verdicts: Mapping[str, str],
    grants: Mapping[str, str],
) -> list[Outcome | Step | Care | Erased]:
    """What one event does to the account (a survey or an invitation is only remembered)."""
    if isinstance(event, AccountCommand):
        if event.command == "forget":
            return [forget(account, event, now)]
        return [adjust(account, event)]
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
        tier_percent=percent_of(account, policies.tiers) if account.tier is not None else 100,
    )
    if outcome.rejection is not None or account.referral is None:
        return outcome, None
    return outcome, convert(outcome.account, event, verdicts.get(event.event_id), referrals)
