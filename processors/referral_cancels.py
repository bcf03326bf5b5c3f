"""Taking referral rewards back (pure): a refund that cancels a conversion, the command that
cancels the referrer's side, and the full reversal of a reward's synthetic order."""

from __future__ import annotations

from datetime import datetime

from msgspec.structs import replace

from processors.account import Account
from processors.ids import stable_id
from processors.points import reverse
from processors.referral_records import both_outcomes, side_outcome
from processors.referral_state import Referee
from processors.referrals import ReferralPolicy, Step, referral_order_id, with_referee
from schemas.models import Purchase, ReferralCommand


def cancel_on_refund(account: Account, refund: Purchase, policy: ReferralPolicy) -> Step:
    """A refund inside the hold that leaves the qualifying order below the minimum cancels both."""
    referral = account.referral.referee
    if (
        referral is None
        or referral.order_id != refund.order_id
        or referral.status not in {"converted", "held"}
        or referral.converted_at is None
        or refund.occurred_at >= referral.converted_at + policy.hold
    ):
        return Step(account)
    order = account.points.orders.get(refund.order_id)
    minimum = policy.min_amount_cents.get(refund.currency, 0)
    if order is None or order.amount_cents - order.refunded_cents >= minimum:
        return Step(account)
    was_credited = referral.status == "converted"
    referral = replace(referral, status="cancelled")
    account = with_referee(account, referral)
    if not was_credited:
        return Step(
            account, rewards=both_outcomes(account.customer_id, referral, "cancelled", 0, refund)
        )
    outcome = reverse_all(account, referral_order_id(referral.referral_key, "referee"), refund)
    command = cancel_referrer_command(
        account.customer_id, referral, refund.event_id, refund.occurred_at, refund.order_id
    )
    reward = side_outcome(account.customer_id, referral, "referee", "cancelled", 0, refund)
    return replace(outcome, commands=(command,), rewards=(reward,))


def cancel_referrer_command(  # noqa: PLR0917 - one command, all of it needed
    referee_id: str,
    referral: Referee,
    source_event_id: str,
    at: datetime,
    order_id: str,
    alert_id: str | None = None,
    reason: str | None = None,
) -> ReferralCommand:
    """Take the referrer's reward of this referral back (on the referrer's partition)."""
    return ReferralCommand(
        event_id=stable_id("rc", "cancel_referrer", referral.referral_key),
        occurred_at=at,
        command="cancel_referrer",
        customer_id=referral.referrer_id,
        referral_key=referral.referral_key,
        referrer_id=referral.referrer_id,
        referee_id=referee_id,
        source_event_id=source_event_id,
        order_id=order_id,
        alert_id=alert_id,
        reason=reason,
    )


def reverse_all(account: Account, order_id: str, source: Purchase | ReferralCommand) -> Step:
    order = account.points.orders.get(order_id)
    if order is None:
        return Step(account)
    outcome = reverse(
        account,
        event_id=source.event_id,
        order_id=order_id,
        refunded_cents=order.amount_cents,
        at=source.occurred_at,
    )
    return Step(outcome.account, outcome.entries, outcome.anomalies)
