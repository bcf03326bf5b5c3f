"""What one event, or time alone, does to an account as it settles: the steps, returned (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

from processors import expiry
from processors.account import Account
from processors.adjustments import Erased, adjust, forget
from processors.advocacy import AdvocacyPolicy, prune_advocacy, record_invite, record_survey
from processors.compensation import Care, CompensationPolicy, assess
from processors.expiry import ExpiryPolicy, activity, start_lots
from processors.ledger import Outcome
from processors.points import PointsPolicy, earn, prune, release_due, reverse
from processors.referral_cancels import cancel_on_refund
from processors.referral_flags import flag_referral
from processors.referrals import (
    ReferralPolicy,
    Step,
    attribute,
    convert,
    decide,
)
from processors.referrer_rewards import cancel_referrer, credit_referrer, prune_grants
from processors.settlement_results import SettleStep
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
from schemas.outputs import TierChange

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

EventStep: TypeAlias = Outcome | Step | Care | Erased
"""What one event did (`event_steps`); the last of an event's steps is the one that can ask."""


@dataclass(frozen=True, slots=True)
class Policies:
    """Points, referral, compensation and advocacy configuration."""

    points: PointsPolicy
    referrals: ReferralPolicy = field(default_factory=ReferralPolicy)
    compensation: CompensationPolicy = field(default_factory=CompensationPolicy)
    advocacy: AdvocacyPolicy = field(default_factory=AdvocacyPolicy)
    tiers: TierPolicy = field(default_factory=TierPolicy)
    expiry: ExpiryPolicy = field(default_factory=ExpiryPolicy)


def tick(
    account: Account, at: datetime, policies: Policies
) -> tuple[Account, Sequence[SettleStep]]:
    """What time alone does to an account by `at`: release the holds ended (expire and warn, tier
    downgrades), forget what is past retention (orders, cap grants, answers and invitations).
    The account and the steps taken (an empty tuple, not a new list, when there are none)."""
    made: Sequence[SettleStep] = ()
    if policies.expiry.on:
        kept, made = expiry.advance(start_lots(account, at), at, policies.expiry)
    else:
        released = release_due(account, at)
        kept = released.account
        if released.entries:
            made = (released,)
    if kept.tier.days and policies.tiers.tiers:
        kept, changes = advance(kept, at, policies.tiers)
        if changes:
            made = [*made, *changes]
    if kept.points.oldest_at is not None:
        kept = prune(kept, at, policies.points)
    if kept.referral.grants:
        kept = prune_grants(kept, at, policies.referrals)
    if kept.advocacy.surveys or kept.advocacy.invites:
        kept = prune_advocacy(kept, at, policies.advocacy)
    return kept, made


def loyalty(
    account: Account, event: Event, at: datetime, policies: Policies, made: Sequence[EventStep]
) -> tuple[Account, TierChange | None]:
    """What the event's steps `made` qualify towards a tier (and the change that makes, if any),
    and the activity it is for the inactivity expiry."""
    tiers = policies.tiers
    change = None
    if tiers.tiers:
        amount = 0
        for step in made:
            if isinstance(step, Outcome | Step):
                amount += sum(entry_amount(e, event, tiers) for e in step.entries)
        account, change = qualify(account, amount, at, tiers)
    if policies.expiry.inactivity is not None and _active(event):
        account = activity(account, at, policies.expiry)
    return account, change


def _active(event: Event) -> bool:
    """Activity for the inactivity expiry: a purchase, refund, redemption or adjustment."""
    if isinstance(event, AccountCommand):
        return event.command != "forget"
    return isinstance(event, Purchase)


def event_steps(  # noqa: PLR0917 - the settle loop's state, all of it needed
    account: Account,
    event: Event,
    policies: Policies,
    now: datetime,
    verdicts: Mapping[str, str],
    grants: Mapping[str, str],
) -> list[EventStep]:
    """What one event does to the account (a survey or an invitation is only remembered), in
    order: a purchase refused (no points rate) is refused by the first step; a conversion
    without its verdict or a compensation without its grant is asked by the last
    (`Step.check`, `Care.request`)."""
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
        tier_percent=percent_of(account.tier, policies.tiers),
    )
    if outcome.rejection is not None or account.referral.referee is None:
        return outcome, None
    return outcome, convert(outcome.account, event, verdicts.get(event.event_id), referrals)
