"""What an account remembers for points expiry: lots of available points, activity, warnings."""

from __future__ import annotations

from datetime import datetime

from msgspec import Struct
from msgspec.structs import replace

Lots = tuple[tuple[datetime, int], ...]


class ExpiryState(Struct, frozen=True, gc=False, array_like=True):
    """Available points by age, and what time has already warned about or expired."""

    lots: Lots | None = None
    """Available points by when they became available, oldest first (processors/expiry.py);
    None: not tracked (no expiry policy). Kept by `credited`."""
    active_at: datetime | None = None
    """The last activity (purchase, refund, redemption, adjustment), with an inactivity expiry."""
    warned_until: datetime | None = None
    """Lots expiring up to this time have had their expiry warning."""
    inactivity_warned: datetime | None = None
    """The inactivity expiry time last warned about."""
    inactivity_expired: datetime | None = None
    """The inactivity expiry time that already expired the points."""
    due_at: datetime | None = None
    """When time next warns or expires points (the sweep visits the account then)."""


def credited(state: ExpiryState, at: datetime, delta: int) -> ExpiryState:
    """The lots after an available change at `at` (unchanged while lots are not tracked)."""
    if not delta or state.lots is None:
        return state
    due = state.due_at if delta < 0 else at  # a new lot may be due first
    return replace(state, lots=with_lots(state.lots, at, delta), due_at=due)


def with_lots(lots: Lots, at: datetime, delta: int) -> Lots:
    """Lots after an available change: a credit is a lot at `at`, a debit takes oldest first."""
    if delta > 0:
        index = len(lots)
        while index and lots[index - 1][0] > at:
            index -= 1
        if index and lots[index - 1][0] == at:
            return (*lots[: index - 1], (at, lots[index - 1][1] + delta), *lots[index:])
        return (*lots[:index], (at, delta), *lots[index:])
    owed, kept = -delta, list(lots)
    while owed and kept:
        taken = min(owed, kept[0][1])
        owed -= taken
        kept[0] = (kept[0][0], kept[0][1] - taken)
        if not kept[0][1]:
            kept.pop(0)
    return tuple(kept)
