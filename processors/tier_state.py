"""What an account remembers about its loyalty tier: the tier held and the qualifying days."""

from __future__ import annotations

from datetime import datetime

from msgspec import Struct

Days = tuple[tuple[int, int], ...]


class TierState(Struct, frozen=True, gc=False, array_like=True):
    """The tier held (processors/tiers.py) and what it rests on."""

    name: str | None = None
    """The loyalty tier held; None: no tier."""
    days: Days = ()
    """(UTC day number, qualifying amount) of the days within the tier period plus grace."""
    checked: int = 0
    """The UTC day number up to which tier downgrades were checked."""
    due_at: datetime | None = None
    """When time alone next downgrades the tier (the sweep visits the account then)."""


def add(days: Days, day: int, amount: int) -> Days:
    """`amount` more on `day`; a negative one takes from the newest days first, never below 0."""
    if amount == 0:
        return days
    if amount > 0:
        if days and days[-1][0] == day:
            return (*days[:-1], (day, days[-1][1] + amount))
        return (*days, (day, amount))
    out = list(days)
    owed = -amount
    for index in range(len(out) - 1, -1, -1):
        d, have = out[index]
        taken = min(have, owed)
        out[index] = (d, have - taken)
        owed -= taken
    return tuple((d, a) for d, a in out if a > 0)
