"""Typed v1 output events (rewards-issued, fraud-alerts, dead-letter, points-ledger,
points-anomalies, referral-rewards, compensation-decisions) for `codec.encode`."""

from __future__ import annotations

from typing import Annotated, Literal, TypeAlias

from msgspec import Meta, Struct

from schemas.models import Cents, Currency, Decision, Id, ReferralCode, Severity, Timestamp

PositivePoints: TypeAlias = Annotated[int, Meta(gt=0, le=2**53 - 1)]
ShortText: TypeAlias = Annotated[str, Meta(min_length=1, max_length=64)]
RewardKind: TypeAlias = Literal["points", "gift_card", "discount"]
Subject: TypeAlias = Literal["signup", "conversion", "late_evidence"]


class GiftCard(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """The gift card ordered from a provider for a reward."""

    provider: ShortText
    provider_order_id: Id
    claim_url: Annotated[str, Meta(min_length=1, max_length=2048)] | None = None
    code_ref: Id | None = None


class RewardIssued(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """`rewards-issued`, keyed by customer_id: one reward granted to one customer."""

    reward_id: Id
    customer_id: Id
    kind: RewardKind
    reason: ShortText
    source_event_id: Id
    issued_at: Timestamp
    points: PositivePoints | None = None
    amount_cents: Cents | None = None
    currency: Currency | None = None
    complaint_id: Id | None = None
    order_id: Id | None = None
    gift_card: GiftCard | None = None
    discount_code: ShortText | None = None

    def __post_init__(self) -> None:
        """Points rewards carry points; gift cards and discounts carry an amount and currency."""
        if self.kind == "points":
            if self.points is None:
                raise ValueError("`points` is required when `kind` is 'points' - at `$`")
        elif self.amount_cents is None or self.currency is None:
            raise ValueError(
                f"`amount_cents` and `currency` are required when `kind` is {self.kind!r} - at `$`"
            )


class FraudThresholds(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """The score cut-offs in force when the decision was taken."""

    review: float
    reject: float


class FraudRuleHit(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """One rule that contributed to a fraud score, with its (hashed) evidence."""

    rule: ShortText
    weight: float
    evidence: dict[str, str]


class FraudAlert(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """`fraud-alerts`, keyed by referee_id: the fraud decision on a referral or its conversion."""

    alert_id: Id
    decided_at: Timestamp
    decision: Decision
    subject: Subject
    referrer_id: Id
    referee_id: Id
    referral_code: ReferralCode | None = None
    referral_id: Id | None = None
    source_event_id: Id
    score: float
    thresholds: FraudThresholds
    rules: tuple[FraudRuleHit, ...]


class DeadLetterSource(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """Where a dead-lettered record was read."""

    topic: Annotated[str, Meta(min_length=1, max_length=249)]
    partition: Annotated[int, Meta(ge=0)]
    offset: Annotated[int, Meta(ge=0)]
    timestamp_ms: Annotated[int, Meta(ge=0)] | None = None


class DeadLetter(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """`dead-letter`, keyed by the original key: a record that could not be processed."""

    reason: ShortText
    detail: str
    source: DeadLetterSource
    original_value_b64: str
    original_key_b64: str | None = None
    failed_at: Timestamp
    worker: Annotated[str, Meta(min_length=1, max_length=256)]
    original_size: Annotated[int, Meta(ge=0)] | None = None
    original_sha256: Annotated[str, Meta(pattern="^[0-9a-f]{64}$")] | None = None
    original_truncated: bool | None = None
    replay_of: Annotated[str, Meta(max_length=300)] | None = None


SafeInt: TypeAlias = Annotated[int, Meta(ge=-(2**53 - 1), le=2**53 - 1)]
Count: TypeAlias = Annotated[int, Meta(ge=0, le=2**53 - 1)]
LedgerKind: TypeAlias = Literal[
    "earn", "release", "reversal", "redemption", "referral", "adjustment", "expiry"
]
AnomalyKind: TypeAlias = Literal[
    "redemption_shortfall",
    "reversal_shortfall",
    "refund_unknown_order",
    "refund_exceeds_order",
    "refund_currency_mismatch",
    "order_id_reused",
    "adjustment_shortfall",
]


class PointsLedgerEntry(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """`points-ledger`, keyed by customer_id: one change of a customer's points balances."""

    entry_id: Id
    customer_id: Id
    sequence: Annotated[int, Meta(ge=1, le=2**53 - 1)]
    kind: LedgerKind
    pending_delta: SafeInt
    available_delta: SafeInt
    pending_after: Count
    available_after: Count
    source_event_id: Id
    order_id: Id
    occurred_at: Timestamp
    operator: Id | None = None
    reason: Annotated[str, Meta(max_length=500)] | None = None


class PointsAnomaly(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """`points-anomalies`, keyed by customer_id: a points shortfall or an unknown order refunded."""

    anomaly_id: Id
    customer_id: Id
    kind: AnomalyKind
    order_id: Id
    points: Count
    source_event_id: Id
    detected_at: Timestamp
    amount_cents: Cents | None = None
    currency: Currency | None = None


ReferralRole: TypeAlias = Literal["referrer", "referee"]
ReferralRewardStatus: TypeAlias = Literal[
    "credited", "capped", "held", "cancelled", "rejected", "ineligible", "kept"
]


class ReferralReward(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """`referral-rewards`, keyed by customer_id: what became of one side of a referral's reward."""

    reward_id: Id
    referral_key: Id
    customer_id: Id
    role: ReferralRole
    status: ReferralRewardStatus
    points: Count
    referrer_id: Id
    referee_id: Id
    source_event_id: Id
    decided_at: Timestamp
    order_id: Id | None = None
    reason: ShortText | None = None


CompensationOutcome: TypeAlias = Literal["gift_card", "discount", "none", "blocked"]
CompensationArm: TypeAlias = Literal["gift_card", "discount", "none"]


class CompensationDecision(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """`compensation-decisions`, keyed by customer_id: what was decided for one complaint event,
    including every limit that said no."""

    decision_id: Id
    customer_id: Id
    complaint_id: Id
    source_event_id: Id
    complained_at: Timestamp
    decided_at: Timestamp
    outcome: CompensationOutcome
    reason: ShortText
    arm: CompensationArm
    severity: Severity
    category: Annotated[str, Meta(min_length=1, max_length=64)]
    tier: ShortText | None = None
    amount_cents: Annotated[int, Meta(gt=0, le=2**53 - 1)] | None = None
    currency: Currency | None = None
    reward_id: Id | None = None


class Erasure(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """`erasures`, keyed by erasure_id: a customer's account was erased (no personal data)."""

    erasure_id: Id
    customer_hash: Annotated[str, Meta(pattern="^[0-9a-f]{64}$")]
    operator: Id
    source_event_id: Id
    requested_at: Timestamp
    erased_at: Timestamp


class TierChange(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """`tier-changes`, keyed by customer_id: a customer moved up or down the loyalty tiers."""

    change_id: Id
    customer_id: Id
    direction: Literal["upgrade", "downgrade"]
    basis: Literal["spend", "points"]
    qualifying: Annotated[int, Meta(ge=0, le=2**53 - 1)]
    multiplier_percent: Annotated[int, Meta(ge=0, le=10_000)]
    changed_at: Timestamp
    tier: ShortText | None = None
    previous_tier: ShortText | None = None


class ExpiryWarning(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """`points-expiry-warnings`, keyed by customer_id: available points will expire soon."""

    warning_id: Id
    customer_id: Id
    reason: Literal["lifetime", "inactivity"]
    points: PositivePoints
    expires_at: Timestamp
    warned_at: Timestamp


OutputEvent: TypeAlias = (
    RewardIssued
    | FraudAlert
    | DeadLetter
    | PointsLedgerEntry
    | PointsAnomaly
    | ReferralReward
    | CompensationDecision
    | Erasure
    | TierChange
    | ExpiryWarning
)
"""Any output event."""

OUTPUT_MODELS: dict[str, type[OutputEvent]] = {
    "rewards-issued": RewardIssued,
    "fraud-alerts": FraudAlert,
    "dead-letter": DeadLetter,
    "points-ledger": PointsLedgerEntry,
    "points-anomalies": PointsAnomaly,
    "referral-rewards": ReferralReward,
    "compensation-decisions": CompensationDecision,
    "erasures": Erasure,
    "tier-changes": TierChange,
    "points-expiry-warnings": ExpiryWarning,
}
"""Output topic -> its model."""
