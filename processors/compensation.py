"""Complaint compensation: the policy table, the limits and the experiment arm (pure).

A complaint is matched against the policy's tiers (first match wins: severity, optionally category
and the customer's spend); a tier that pays nothing, or no tier, means no compensation. Then the
limits, in this order: a customer under fraud review or rejected is not compensated
automatically; a complaint is compensated at most once, ever; a customer at most once per
`customer_period` (by complaint time). What passes needs budget: `assess` returns a
`BudgetRequest`, the streams layer reserves it atomically across workers, and `assess` is called
again with the answer (`grant`). A limit that blocks is a recorded decision with its reason.

Eligible complaints go to one arm of the experiment, chosen from the complaint id alone: a gift
card (the default, ordered from the provider) or a discount code of the same value.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from msgspec import Struct
from msgspec.structs import replace

from processors.account import Account
from processors.compensation_state import PENDING, ComplaintRecord
from processors.ids import stable_id
from processors.referrals import shop_orders
from schemas.models import Complaint, GiftCardOrder
from schemas.outputs import CompensationDecision

Arm = Literal["gift_card", "discount"]
GRANTED = "granted"
"""The budget reservation's answer when it succeeded; otherwise the blocking reason."""
BLOCK_REASONS = (
    "fraud_review",
    "fraud_rejected",
    "complaint_already_compensated",
    "customer_period",
    "budget_day",
    "budget_month",
)
"""Why a limit can block a compensation (bounded: these are metric label values)."""


@dataclass(frozen=True, slots=True)
class Tier:
    """A policy row: matching complaints get `amount_cents` of `currency` (0: nothing)."""

    name: str
    severities: frozenset[str]
    amount_cents: int
    currency: str = "EUR"
    categories: frozenset[str] = frozenset()
    """Empty: any category."""
    min_spend_cents: int = 0
    """The customer's net spend in `currency` over the orders the account still holds."""


DEFAULT_TIERS = (
    Tier("critical", frozenset({"critical"}), 5_000),
    Tier("high", frozenset({"high"}), 2_500),
    Tier("medium", frozenset({"medium"}), 1_000),
    Tier("low", frozenset({"low"}), 0),
)
"""The support desk's usual EUR 10 / 25 / 50; low severity is not compensated."""


@dataclass(frozen=True, slots=True)
class CompensationPolicy:
    """Configuration of compensation (built from settings by the streams layer)."""

    tiers: tuple[Tier, ...] = DEFAULT_TIERS
    customer_period: timedelta = timedelta(days=30)
    discount_share: float = 0.0
    """Share of eligible complaints that get a discount code instead of a gift card (0..1)."""
    experiment: str = "complaint-arm-v1"
    """Salt of the arm assignment: a new name re-draws the arms."""


class BudgetRequest(Struct, frozen=True, gc=False):
    """A compensation that passed every limit but the budget: reserve it, then decide."""

    event_id: str
    customer_id: str
    complaint_id: str
    amount_cents: int
    currency: str


class Care(Struct, frozen=True, gc=False):
    """What one complaint did to an account, and what the world must hear about it."""

    account: Account
    decision: CompensationDecision | None = None
    order: GiftCardOrder | None = None
    request: BudgetRequest | None = None


def net_spend(account: Account, currency: str) -> int:
    """What the customer spent in `currency`, less refunds, over the orders still held."""
    return sum(
        order.amount_cents - order.refunded_cents
        for order in shop_orders(account)
        if order.currency == currency
    )


def match_tier(account: Account, complaint: Complaint, policy: CompensationPolicy) -> Tier | None:
    """The first tier the complaint and the customer's spend match."""
    for tier in policy.tiers:
        if complaint.severity not in tier.severities:
            continue
        if tier.categories and complaint.category not in tier.categories:
            continue
        if tier.min_spend_cents and net_spend(account, tier.currency) < tier.min_spend_cents:
            continue
        return tier
    return None


def arm_for(complaint_id: str, policy: CompensationPolicy) -> Arm:
    """The experiment arm of a complaint: deterministic, uniform over complaint ids."""
    if policy.discount_share <= 0:
        return "gift_card"
    digest = hashlib.sha256(f"{policy.experiment}:{complaint_id}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    return "discount" if draw < policy.discount_share else "gift_card"


def limit_reason(account: Account, complaint: Complaint, policy: CompensationPolicy) -> str | None:
    """The first limit that blocks compensating this complaint, if any (budget aside)."""
    referral = account.referral.referee
    if referral is not None and referral.status == "held":
        return "fraud_review"
    if referral is not None and referral.status == "rejected":
        return "fraud_rejected"
    previous = account.complaints.get(complaint.complaint_id)
    if previous is not None and previous.counts_for_limits:
        return "complaint_already_compensated"
    for record in account.complaints.values():
        gap = abs(complaint.occurred_at - record.complained_at)
        if record.counts_for_limits and gap < policy.customer_period:
            return "customer_period"
    return None


def assess(
    account: Account,
    complaint: Complaint,
    policy: CompensationPolicy,
    now: datetime,
    grant: str | None = None,
) -> Care:
    """Decide one complaint event; without `grant`, a compensation stops at its BudgetRequest.

    A complaint event seen before changes nothing (replays and redeliveries are no-ops).
    """
    previous = account.complaints.get(complaint.complaint_id)
    if previous is not None and complaint.event_id in previous.event_ids:
        return Care(account)
    tier = match_tier(account, complaint, policy)
    if tier is None or tier.amount_cents <= 0:
        return _decide(account, complaint, tier, "none", "no_compensation_tier", now)
    reason = limit_reason(account, complaint, policy)
    if reason is not None:
        return _decide(account, complaint, tier, "blocked", reason, now)
    if grant is None:  # the limits of later complaints assume it will be granted
        return _awaiting_budget(account, complaint, tier)
    if grant != GRANTED:
        return _decide(account, complaint, tier, "blocked", grant, now)
    return _decide(
        account, complaint, tier, arm_for(complaint.complaint_id, policy), "compensated", now
    )


def _awaiting_budget(account: Account, complaint: Complaint, tier: Tier) -> Care:
    """The budget request, and a provisional record so that the customer's later complaints in
    this settle are limited as if it were granted; if it is refused they are decided again."""
    request = BudgetRequest(
        complaint.event_id,
        complaint.customer_id,
        complaint.complaint_id,
        tier.amount_cents,
        tier.currency,
    )
    provisional = ComplaintRecord(
        complaint.complaint_id, complaint.occurred_at, PENDING, "awaiting_budget",
        (complaint.event_id,), tier.amount_cents, tier.currency, tier.name,
    )  # fmt: skip
    complaints = {**account.complaints, complaint.complaint_id: provisional}
    return Care(replace(account, complaints=complaints), request=request)


def _decide(  # noqa: PLR0917 - one decision, all of it needed
    account: Account,
    complaint: Complaint,
    tier: Tier | None,
    outcome: str,
    reason: str,
    now: datetime,
) -> Care:
    """Record the decision in the account, and describe it (and the gift card to order)."""
    compensated = outcome in ("gift_card", "discount")
    reward_id = (
        stable_id("rw", outcome, complaint.customer_id, complaint.complaint_id)
        if compensated
        else None
    )
    decision = CompensationDecision(
        decision_id=stable_id(
            "cd", complaint.customer_id, complaint.complaint_id, complaint.event_id
        ),
        customer_id=complaint.customer_id,
        complaint_id=complaint.complaint_id,
        source_event_id=complaint.event_id,
        complained_at=complaint.occurred_at,
        decided_at=now,
        outcome=outcome,  # type: ignore[arg-type]  # one of the schema's outcomes
        reason=reason,
        arm=outcome if compensated else "none",  # type: ignore[arg-type]  # an arm when compensated
        severity=complaint.severity,
        category=complaint.category,
        tier=tier.name if tier else None,
        amount_cents=tier.amount_cents if compensated and tier else None,
        currency=tier.currency if compensated and tier else None,
        reward_id=reward_id,
    )
    account = _remember(account, complaint, decision)
    order = _order(decision, now) if outcome == "gift_card" else None
    return Care(account, decision, order)


def _remember(account: Account, complaint: Complaint, decision: CompensationDecision) -> Account:
    """Keep the complaint's record: a compensated (or provisional) one stays as it is, with the
    new event id."""
    previous = account.complaints.get(complaint.complaint_id)
    seen = (*previous.event_ids, complaint.event_id) if previous else (complaint.event_id,)
    if previous is not None and previous.counts_for_limits:  # compensated, or awaiting budget
        record = replace(previous, event_ids=seen)
    else:
        record = ComplaintRecord(
            complaint_id=complaint.complaint_id,
            complained_at=complaint.occurred_at,
            outcome=decision.outcome,
            reason=decision.reason,
            event_ids=seen,
            amount_cents=decision.amount_cents or 0,
            currency=decision.currency,
            tier=decision.tier,
        )
    return replace(account, complaints={**account.complaints, complaint.complaint_id: record})


def _order(decision: CompensationDecision, now: datetime) -> GiftCardOrder:
    """The gift card to order: its idempotency key is derived from the complaint id."""
    assert decision.reward_id and decision.amount_cents and decision.currency and decision.tier
    return GiftCardOrder(
        event_id=stable_id("go", decision.customer_id, decision.complaint_id),
        occurred_at=now,
        customer_id=decision.customer_id,
        complaint_id=decision.complaint_id,
        reward_id=decision.reward_id,
        idempotency_key=idempotency_key(decision.customer_id, decision.complaint_id),
        amount_cents=decision.amount_cents,
        currency=decision.currency,
        tier=decision.tier,
        source_event_id=decision.source_event_id,
        complained_at=decision.complained_at,
    )


def idempotency_key(customer_id: str, complaint_id: str) -> str:
    """The provider idempotency key of a complaint's gift card: the same on every retry, ever."""
    return stable_id("gc", customer_id, complaint_id)


def discount_code(secret: bytes, complaint_id: str) -> str:
    """A discount code for the complaint, unguessable without `secret` and the same on replays."""
    digest = hashlib.blake2b(complaint_id.encode(), key=secret[:64], digest_size=10).hexdigest()
    return f"SORRY-{digest[:5]}-{digest[5:10]}-{digest[10:15]}".upper()
