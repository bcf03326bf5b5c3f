"""Typed v1 input events: frozen msgspec Structs that msgspec validates in one decoding pass."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, TypeAlias

from msgspec import Meta, Struct
from msgspec.structs import force_setattr

MAX_SAFE_INT = 2**53 - 1
"""Largest integer every JSON consumer (including JavaScript) reads exactly: the cap on counts."""

Id: TypeAlias = Annotated[str, Meta(min_length=1, max_length=128)]
"""An identifier: any string of 1..128 characters."""
MIN_YEAR = 2000
MAX_YEAR = 2099
"""Timestamps are within these years (as written): the schemas' pattern says so, the codec checks
it (`out_of_range`), so no date arithmetic on a record can leave the calendar."""

Timestamp: TypeAlias = Annotated[datetime, Meta(tz=True)]
"""An RFC 3339 timestamp that carries an offset ("Z" or "+hh:mm"), years MIN_YEAR to MAX_YEAR."""
Currency: TypeAlias = Annotated[str, Meta(min_length=3, max_length=3, pattern="^[A-Z]{3}$")]
"""An ISO 4217 alphabetic code; membership in the active list is checked by the codec."""
Cents: TypeAlias = Annotated[int, Meta(ge=0, le=MAX_SAFE_INT)]
"""An amount in the currency's minor units."""
Points: TypeAlias = Annotated[int, Meta(ge=0, le=MAX_SAFE_INT)]
"""A non-negative number of loyalty points."""
CountryCode: TypeAlias = Annotated[str, Meta(min_length=2, max_length=2, pattern="^[A-Z]{2}$")]
"""An ISO 3166-1 alpha-2 country code."""
Email: TypeAlias = Annotated[str, Meta(max_length=254)]
Channel: TypeAlias = Annotated[str, Meta(max_length=32)]
ReferralCode: TypeAlias = Annotated[str, Meta(min_length=1, max_length=64)]

PurchaseType: TypeAlias = Literal["purchase", "refund"]
Severity: TypeAlias = Literal["low", "medium", "high", "critical"]
ReferralType: TypeAlias = Literal["invited", "signed_up"]
Decision: TypeAlias = Literal["approve", "review", "reject"]
OperatorDecision: TypeAlias = Literal["approve", "reject"]
ReferralCommandKind: TypeAlias = Literal[
    "signup", "credit_referrer", "cancel_referrer", "ring_review", "rescore"
]
AccountCommandKind: TypeAlias = Literal["adjust", "forget"]


class ShippingAddress(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """Where an order ships; every part is optional."""

    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: CountryCode | None = None


class Context(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """Signals about the customer's session, read by fraud scoring; every field is optional."""

    email: Email | None = None
    ip: Annotated[str, Meta(max_length=64)] | None = None
    user_agent: Annotated[str, Meta(max_length=512)] | None = None
    device_id: Annotated[str, Meta(max_length=128)] | None = None
    payment_fingerprint: Annotated[str, Meta(max_length=128)] | None = None
    shipping_address: ShippingAddress | None = None


class Purchase(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """`purchases`, keyed by customer_id: a completed order or a refund of one."""

    event_id: Id
    occurred_at: Timestamp
    customer_id: Id
    type: PurchaseType
    order_id: Id
    amount_cents: Cents
    currency: Currency
    points_redeemed: Points | None = 0
    context: Context | None = None

    def __post_init__(self) -> None:
        """An explicit null for points_redeemed means the default, 0."""
        if self.points_redeemed is None:
            force_setattr(self, "points_redeemed", 0)


class Complaint(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """`complaints`, keyed by customer_id: a complaint opened by a customer."""

    event_id: Id
    occurred_at: Timestamp
    customer_id: Id
    complaint_id: Id
    severity: Severity
    category: Annotated[str, Meta(min_length=1, max_length=64)]
    order_id: Id | None = None
    channel: Channel | None = None


class Referral(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """`referrals`, keyed by referrer_id: an invitation sent, or the invitee signing up."""

    event_id: Id
    occurred_at: Timestamp
    type: ReferralType
    referrer_id: Id
    referral_code: ReferralCode | None = None
    referral_id: Id | None = None
    referee_id: Id | None = None
    context: Context | None = None
    invitee_email: Email | None = None

    def __post_init__(self) -> None:
        """At least one referral reference; a sign-up names the referee and carries its context."""
        if self.referral_code is None and self.referral_id is None:
            raise ValueError("Object needs `referral_code` or `referral_id` - at `$`")
        if self.type == "signed_up":
            if self.referee_id is None:
                raise ValueError("`referee_id` is required when `type` is 'signed_up' - at `$`")
            if self.context is None:
                raise ValueError("`context` is required when `type` is 'signed_up' - at `$`")


class SurveyResponse(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """`survey-responses`, keyed by customer_id: an answer to an NPS survey."""

    event_id: Id
    occurred_at: Timestamp
    customer_id: Id
    survey_id: Id
    score: Annotated[int, Meta(ge=0, le=10)]
    ces: Annotated[int, Meta(ge=1, le=7)] | None = None
    complaint_id: Id | None = None
    channel: Channel | None = None
    comment: Annotated[str, Meta(max_length=2000)] | None = None


class FraudDecision(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """`fraud-decisions`, keyed by referee_id: an operator's decision on a referral under review."""

    event_id: Id
    occurred_at: Timestamp
    referee_id: Id
    decision: OperatorDecision
    operator: Id
    alert_id: Id | None = None
    reason: Annotated[str, Meta(max_length=500)] | None = None


class ReferralCommand(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """`referral-commands` (internal), keyed by customer_id: a referral step for the partition that
    owns that customer's account."""

    event_id: Id
    occurred_at: Timestamp
    command: ReferralCommandKind
    customer_id: Id
    referral_key: Id
    referrer_id: Id
    referee_id: Id
    source_event_id: Id
    referral_code: ReferralCode | None = None
    referral_id: Id | None = None
    decision: Decision | None = None
    score: Annotated[float, Meta(ge=0)] | None = None
    alert_id: Id | None = None
    points: Points | None = None
    release_at: Timestamp | None = None
    order_id: Id | None = None
    reason: Id | None = None

    def __post_init__(self) -> None:
        """Each command carries what it needs."""
        needs = {
            "signup": ("decision", "score", "alert_id"),
            "credit_referrer": ("points", "release_at", "order_id"),
            "cancel_referrer": ("order_id",),
            "ring_review": ("alert_id",),
            "rescore": ("decision", "score", "alert_id"),
        }[self.command]
        for name in needs:
            if getattr(self, name) is None:
                raise ValueError(
                    f"`{name}` is required when `command` is {self.command!r} - at `$`"
                )


class GiftCardOrder(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """`gift-card-orders` (internal), keyed by customer_id: a granted gift card to order from the
    provider, with the idempotency key every attempt reuses."""

    event_id: Id
    occurred_at: Timestamp
    """When the compensation was decided."""
    customer_id: Id
    complaint_id: Id
    reward_id: Id
    idempotency_key: Id
    amount_cents: Annotated[int, Meta(gt=0, le=MAX_SAFE_INT)]
    currency: Currency
    tier: Annotated[str, Meta(min_length=1, max_length=64)]
    source_event_id: Id
    complained_at: Timestamp


class AccountCommand(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """`account-commands`, keyed by customer_id: an operator's manual adjustment or erasure."""

    event_id: Id
    occurred_at: Timestamp
    command: AccountCommandKind
    customer_id: Id
    operator: Id
    reason: Annotated[str, Meta(min_length=1, max_length=500)] | None = None
    points: Annotated[int, Meta(ge=-MAX_SAFE_INT, le=MAX_SAFE_INT)] | None = None
    adjustment_id: Id | None = None

    def __post_init__(self) -> None:
        """An adjustment carries its points, reason and id."""
        if self.command == "adjust":
            for name in ("points", "reason", "adjustment_id"):
                if getattr(self, name) is None:
                    raise ValueError(f"`{name}` is required when `command` is 'adjust' - at `$`")


InputEvent: TypeAlias = (
    Purchase
    | Complaint
    | Referral
    | SurveyResponse
    | FraudDecision
    | ReferralCommand
    | GiftCardOrder
    | AccountCommand
)
"""Any decoded input or control event."""

INPUT_MODELS: dict[str, type[InputEvent]] = {
    "purchases": Purchase,
    "complaints": Complaint,
    "referrals": Referral,
    "survey-responses": SurveyResponse,
    "fraud-decisions": FraudDecision,
    "referral-commands": ReferralCommand,
    "gift-card-orders": GiftCardOrder,
    "account-commands": AccountCommand,
}
"""Input and control topic (base name) -> its model."""
