"""Referral reward outcomes as `referral-rewards` records: one per side, status and referral."""

from __future__ import annotations

from datetime import datetime

from processors.ids import stable_id
from processors.referral_state import Referee
from schemas.models import FraudDecision, Purchase, ReferralCommand
from schemas.outputs import ReferralReward

Source = Purchase | FraudDecision | ReferralCommand


def reward_outcome(
    *,
    referral_key: str,
    role: str,
    status: str,
    customer_id: str,
    points: int,
    referrer_id: str,
    referee_id: str,
    source_event_id: str,
    decided_at: datetime,
    order_id: str | None,
    reason: str | None,
) -> ReferralReward:
    """A record with its deterministic id (one per referral, side and status)."""
    return ReferralReward(
        reward_id=stable_id("rr", referral_key, role, status),
        referral_key=referral_key,
        customer_id=customer_id,
        role=role,  # type: ignore[arg-type]  # callers pass the schema's literals
        status=status,  # type: ignore[arg-type]  # callers pass the schema's literals
        points=points,
        referrer_id=referrer_id,
        referee_id=referee_id,
        source_event_id=source_event_id,
        decided_at=decided_at,
        order_id=order_id,
        reason=reason,
    )


def side_outcome(  # noqa: PLR0917 - one record, all of it needed
    referee_id: str,
    referral: Referee,
    role: str,
    status: str,
    points: int,
    source: Source,
    reason: str | None = None,
) -> ReferralReward:
    """What became of one side of the referral that brought `referee_id`."""
    return reward_outcome(
        referral_key=referral.referral_key,
        role=role,
        status=status,
        customer_id=referral.referrer_id if role == "referrer" else referee_id,
        points=points,
        referrer_id=referral.referrer_id,
        referee_id=referee_id,
        source_event_id=source.event_id,
        decided_at=source.occurred_at,
        order_id=referral.order_id,
        reason=reason,
    )


def both_outcomes(  # noqa: PLR0917 - one record per side
    referee_id: str,
    referral: Referee,
    status: str,
    points: int,
    source: Source,
    reason: str | None = None,
) -> tuple[ReferralReward, ...]:
    """The same status for both sides."""
    return tuple(
        side_outcome(referee_id, referral, role, status, points, source, reason)
        for role in ("referrer", "referee")
    )


def command_outcome(
    cmd: ReferralCommand, status: str, reason: str | None, *, role: str = "referee", points: int = 0
) -> ReferralReward:
    """What a command decided (a sign-up not attributed, a referrer's credit, cap or cancel)."""
    return reward_outcome(
        referral_key=cmd.referral_key,
        role=role,
        status=status,
        customer_id=cmd.customer_id,
        points=points,
        referrer_id=cmd.referrer_id,
        referee_id=cmd.referee_id,
        source_event_id=cmd.source_event_id,
        decided_at=cmd.occurred_at,
        order_id=cmd.order_id,
        reason=reason,
    )
