"""What an account remembers about referrals: the one that brought the customer, and grants."""

from __future__ import annotations

from datetime import datetime

from msgspec import Struct


class Referee(Struct, frozen=True, gc=False, array_like=True):
    """The referral that brought a customer: who referred them, and how far it got."""

    referral_key: str
    referrer_id: str
    signup_event_id: str
    signed_up_at: datetime
    decision: str
    """The strictest fraud decision so far: approve, review or reject."""
    status: str
    """attributed, converted, held (converted, awaiting review), cancelled or rejected."""
    alert_id: str
    referral_code: str | None = None
    referral_id: str | None = None
    order_id: str | None = None
    """The qualifying order, once the referee converted."""
    converted_at: datetime | None = None
    conversion_event_id: str | None = None
    decision_event_ids: tuple[str, ...] = ()


class Grant(Struct, frozen=True, gc=False, array_like=True):
    """A referral reward for a referrer: credited or capped (counted against caps if credited)."""

    referral_key: str
    at: datetime
    points: int
    status: str
    """credited, capped or cancelled."""


class ReferralState(Struct, frozen=True, gc=False, array_like=True):
    """A customer's referrals: the one that brought them, and the rewards they earned."""

    referee: Referee | None = None
    """The referral that brought this customer, if any (they are its referee)."""
    grants: tuple[Grant, ...] = ()
    """Referral rewards this customer earned as a referrer, within the longest cap period."""
