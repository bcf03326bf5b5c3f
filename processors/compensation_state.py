"""What an account remembers about complaints: one record per complaint, kept for good."""

from __future__ import annotations

from datetime import datetime

from msgspec import Struct

COMPENSATED = frozenset({"gift_card", "discount"})
"""Outcomes that compensated the customer (count against the per-customer period)."""
PENDING = "pending"
"""Within one settle only: a compensation waiting for its budget answer, assumed granted by the
limits of the customer's later complaints (never stored: the final settle has every answer)."""


class ComplaintRecord(Struct, frozen=True, gc=False, array_like=True):
    """The decision on one complaint and the events that asked for it (at most one
    compensation per complaint, ever)."""

    complaint_id: str
    complained_at: datetime
    """Event time of the complaint that was decided: the per-customer period counts from it."""
    outcome: str
    """gift_card, discount, none (no tier pays for it) or blocked (a limit said no); `pending`
    only inside a settle that still waits for budget answers."""
    reason: str
    event_ids: tuple[str, ...]
    """Every complaint event seen for this complaint: a replayed one changes nothing."""
    amount_cents: int = 0
    currency: str | None = None
    tier: str | None = None
    next_score: int | None = None
    """The customer's first survey answer after the complaint (recovery), once there is one."""
    repurchased_at: datetime | None = None
    """The customer's first purchase within the repurchase window after the complaint."""

    @property
    def compensated(self) -> bool:
        """True when this complaint earned a gift card or a discount."""
        return self.outcome in COMPENSATED

    @property
    def counts_for_limits(self) -> bool:
        """Compensated, or assumed so while its budget answer is awaited."""
        return self.outcome in COMPENSATED or self.outcome == PENDING
