"""The referrer's side of referral rewards: credits under rolling caps, and cancellations (pure).

The referee's partition sends `credit_referrer` and `cancel_referrer` commands (keyed by the
referrer, so in order); each is idempotent per referral (`Account.referral.grants`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from msgspec.structs import replace

from processors.account import Account
from processors.referral_cancels import reverse_all
from processors.referral_records import command_outcome
from processors.referral_state import Grant
from processors.referrals import (
    Cap,
    ReferralPolicy,
    Step,
    credit_points,
    referral_order_id,
)
from schemas.models import ReferralCommand


def credit_referrer(account: Account, cmd: ReferralCommand, policy: ReferralPolicy) -> Step:
    """A referrer's reward: credited as pending points, or recorded as capped."""
    if any(grant.referral_key == cmd.referral_key for grant in account.referral.grants):
        return Step(account)
    points, at = cmd.points or 0, cmd.occurred_at
    over = _cap_exceeded(account.referral.grants, at, points, policy.caps)
    if over is not None:
        grant = Grant(cmd.referral_key, at, points, "capped")
        reward = command_outcome(cmd, "capped", over, role="referrer", points=points)
        granted = _with_grants(account, (*account.referral.grants, grant))
        return Step(granted, rewards=(reward,))
    order_id = referral_order_id(cmd.referral_key, "referrer")
    account, entries = credit_points(
        account, order_id, cmd.event_id, points, at, cmd.release_at or at
    )
    grant = Grant(cmd.referral_key, at, points, "credited")
    reward = command_outcome(cmd, "credited", None, role="referrer", points=points)
    granted = _with_grants(account, (*account.referral.grants, grant))
    return Step(granted, entries, rewards=(reward,))


def _held(account: Account, grant: Grant) -> bool:
    """A credited grant whose points are still on hold."""
    if grant.status != "credited":
        return False
    order = account.points.orders.get(referral_order_id(grant.referral_key, "referrer"))
    return order is not None and order.pending > 0


def _cap_exceeded(
    grants: tuple[Grant, ...], at: datetime, points: int, caps: tuple[Cap, ...]
) -> str | None:
    """The reason a new reward at `at` would break a cap, or None."""
    for cap in caps:
        inside = [g for g in grants if g.status == "credited" and at - cap.period < g.at <= at]
        if len(inside) + 1 > cap.max_count:
            return f"cap_count_{cap.period.days}d"
        if sum(g.points for g in inside) + points > cap.max_points:
            return f"cap_points_{cap.period.days}d"
    return None


def cancel_referrer(account: Account, cmd: ReferralCommand) -> Step:
    """The referee's qualifying order was refunded inside the hold, or the referral turned out to
    be fraud after all (the command then says why): take the referrer's back."""
    grant = next((g for g in account.referral.grants if g.referral_key == cmd.referral_key), None)
    if grant is None or grant.status != "credited":
        return Step(account)
    step = reverse_all(account, referral_order_id(cmd.referral_key, "referrer"), cmd)
    grants = tuple(
        replace(g, status="cancelled") if g.referral_key == cmd.referral_key else g
        for g in step.account.referral.grants
    )
    reason = cmd.reason or "qualifying_order_refunded"
    reward = command_outcome(cmd, "cancelled", reason, role="referrer", points=0)
    return replace(step, account=_with_grants(step.account, grants), rewards=(reward,))


def prune_grants(account: Account, now: datetime, policy: ReferralPolicy) -> Account:
    """Forget referrer grants older than the longest cap period that are no longer held: they
    can neither count towards a cap nor be cancelled (a held grant is kept whatever the caps,
    so that a refund of the referee's qualifying order takes it back)."""
    longest = max((cap.period for cap in policy.caps), default=timedelta(0))
    kept = tuple(g for g in account.referral.grants if g.at > now - longest or _held(account, g))
    return account if len(kept) == len(account.referral.grants) else _with_grants(account, kept)


def _with_grants(account: Account, grants: tuple[Grant, ...]) -> Account:
    return replace(account, referral=replace(account.referral, grants=grants))
