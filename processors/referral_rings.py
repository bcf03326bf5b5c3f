"""Referral cycles (A refers B, B refers A; A, B, C, A): every edge of one is tainted (pure).

The sign-up that closes a cycle is scored by the fraud rules (`referral_ring`); the cycle's other
edges were scored before the cycle existed, so the scorer sends each of them a `ring_review`
command, on its referee's partition. Whichever edge closes the cycle, every edge ends the same
way (`processors.referral_flags`): not yet converted, it waits for an operator at conversion
(decision review); converted with its rewards still on hold, both sides are taken back
(`cancelled`, reason `referral_ring`); released rewards stay released (`kept`, for operators).
"""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise

from processors.ids import stable_id
from processors.referrals import referral_key
from schemas.models import ReferralCommand


def ring_edges(cycle: tuple[str, ...], referrer_id: str, referee_id: str) -> list[tuple[str, str]]:
    """The (referrer, referee) edges of a cycle (`[a, b, ..., a]`, each one referring the next)
    other than the new sign-up's own."""
    edges = dict.fromkeys(pairwise(cycle))
    return [edge for edge in edges if edge != (referrer_id, referee_id)]


def ring_review_commands(
    cycle: tuple[str, ...], *, referrer_id: str, referee_id: str, source_event_id: str,
    at: datetime, alert_id: str,
) -> tuple[ReferralCommand, ...]:  # fmt: skip
    """One `ring_review` command per other edge of the cycle, to that edge's referee."""
    return tuple(
        ReferralCommand(
            event_id=stable_id("rc", "ring_review", referral_key(a, b), source_event_id),
            occurred_at=at,
            command="ring_review",
            customer_id=b,
            referral_key=referral_key(a, b),
            referrer_id=a,
            referee_id=b,
            source_event_id=source_event_id,
            alert_id=alert_id,
        )
        for a, b in ring_edges(cycle, referrer_id, referee_id)
    )
