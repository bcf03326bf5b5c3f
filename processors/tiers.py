"""Loyalty tiers: qualifying amounts per day over a rolling period, upgrades and downgrades (pure).

An account keeps `tier_days`, (UTC day number, amount) pairs for the days events qualified on,
pruned to the period plus the grace. The tier supported on day D is the highest whose threshold
the amounts of the days in (D - period, D] reach; the tier held on day D is the highest supported
on any day of [D - grace, D]. So an upgrade is immediate and a downgrade waits out the grace.
Amounts count on the day of the event's stream time, and downgrades happen at midnight UTC of the
day the period (and grace) stops supporting the tier: the result depends only on event times and
`now`, never on how events are cut into batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from msgspec.structs import replace

from processors.ids import stable_id
from processors.points import Account, LedgerEntry
from schemas.models import Purchase
from schemas.outputs import TierChange

Basis = Literal["spend", "points"]
Days = tuple[tuple[int, int], ...]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Tier:
    """A level: reached at `threshold` qualifying amount; purchases earn `percent` / 100 times."""

    name: str
    threshold: int
    percent: int = 100


@dataclass(frozen=True, slots=True)
class TierPolicy:
    """The tier ladder (thresholds ascending), what qualifies, the period and the grace."""

    tiers: tuple[Tier, ...] = ()
    basis: Basis = "spend"
    period_days: int = 365
    grace_days: int = 0


def day_of(at: datetime) -> int:
    """The UTC day number of `at`."""
    return (at - _EPOCH).days


def midnight(day: int) -> datetime:
    """The start of UTC day `day`."""
    return _EPOCH + timedelta(days=day)


def percent_of(account: Account, policy: TierPolicy) -> int:
    """The earn multiplier percent of the account's tier (100 without one)."""
    if account.tier is None:
        return 100
    for tier in policy.tiers:
        if tier.name == account.tier:
            return tier.percent
    return 100


def qualifying(days: Days, day: int, policy: TierPolicy) -> int:
    """The amount that qualifies on `day`: the days in (day - period, day]."""
    start = day - policy.period_days
    return sum(amount for d, amount in days if start < d <= day)


def supported(days: Days, day: int, policy: TierPolicy) -> int:
    """The index of the highest tier the period supports on `day` (-1: none)."""
    amount = qualifying(days, day, policy)
    rank = -1
    for index, tier in enumerate(policy.tiers):
        if amount >= tier.threshold:
            rank = index
    return rank


def held(days: Days, day: int, policy: TierPolicy) -> int:
    """The index of the tier held on `day`: the highest supported within the grace (-1: none)."""
    first = day - policy.grace_days
    points = {first, day} | {d for d, _ in days} | {d + policy.period_days for d, _ in days}
    return max(supported(days, d, policy) for d in points if first <= d <= day)


def rank_of(name: str | None, policy: TierPolicy) -> int:
    """The index of the tier called `name` (-1: none, or no longer configured)."""
    return next((i for i, t in enumerate(policy.tiers) if t.name == name), -1)


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


def _change(account: Account, rank: int, day: int, at: datetime, policy: TierPolicy) -> TierChange:
    """The change of the account's tier to the one at `rank`, at `at`."""
    tier = policy.tiers[rank] if rank >= 0 else None
    name = tier.name if tier is not None else None
    previous = rank_of(account.tier, policy)
    when = at.isoformat()
    return TierChange(
        change_id=stable_id("tc", account.customer_id, str(account.tier), str(name), when),
        customer_id=account.customer_id,
        direction="upgrade" if rank > previous else "downgrade",
        basis=policy.basis,
        qualifying=qualifying(account.tier_days, day, policy),
        multiplier_percent=tier.percent if tier is not None else 100,
        changed_at=at,
        tier=name,
        previous_tier=account.tier,
    )


def advance(account: Account, at: datetime, policy: TierPolicy) -> tuple[Account, list[TierChange]]:
    """Time passing to `at`: the downgrades due at the midnights since the last check, in order."""
    today = day_of(at)
    if today <= account.tier_checked or not policy.tiers:
        return account, []
    shift = policy.period_days + policy.grace_days
    if account.tier_due_at is None or day_of(account.tier_due_at) > today:  # nothing due yet
        kept = tuple((d, a) for d, a in account.tier_days if d + shift > today)
        return replace(account, tier_days=kept, tier_checked=today), []
    due = sorted({d + shift for d, _ in account.tier_days if account.tier_checked < d + shift})
    changes: list[TierChange] = []
    for day in (d for d in due if d <= today):
        rank = held(account.tier_days, day, policy)
        if rank != rank_of(account.tier, policy):
            change = _change(account, rank, day, midnight(day), policy)
            changes.append(change)
            account = replace(account, tier=change.tier)
    kept = tuple((d, a) for d, a in account.tier_days if d + shift > today)
    account = replace(account, tier_days=kept, tier_checked=today)
    return replace(account, tier_due_at=next_downgrade(account, today, policy)), changes


def next_downgrade(account: Account, today: int, policy: TierPolicy) -> datetime | None:
    """Midnight of the first day after `today` on which time alone lowers the tier, if any."""
    current = rank_of(account.tier, policy)
    if current < 0:
        return None
    shift = policy.period_days + policy.grace_days
    for day in sorted({d + shift for d, _ in account.tier_days if d + shift > today}):
        if held(account.tier_days, day, policy) < current:
            return midnight(day)
    return None


def qualify(
    account: Account, amount: int, at: datetime, policy: TierPolicy
) -> tuple[Account, TierChange | None]:
    """An event qualified `amount` (negative: a refund took it back) at stream time `at`."""
    if not amount or not policy.tiers:
        return account, None
    today = day_of(at)
    account = replace(account, tier_days=add(account.tier_days, today, amount))
    current = rank_of(account.tier, policy)
    rank = supported(account.tier_days, today, policy)
    if rank < current:  # a refund: the grace may still hold the tier (days before, unchanged)
        rank = held(account.tier_days, today, policy)
    if rank == current:
        return replace(account, tier_due_at=next_downgrade(account, today, policy)), None
    change = _change(account, rank, today, at, policy)
    account = replace(account, tier=change.tier)
    return replace(account, tier_due_at=next_downgrade(account, today, policy)), change


def entry_amount(entry: LedgerEntry, event: object, policy: TierPolicy) -> int:
    """What one ledger entry qualifies: a purchase's spend (less refunds), or points earned
    (earn, referral) less points reversed."""
    if policy.basis == "points":
        if entry.kind in {"earn", "referral", "reversal"}:
            return entry.pending_delta + entry.available_delta
        return 0
    if not isinstance(event, Purchase) or entry.kind not in {"earn", "reversal"}:
        return 0
    return event.amount_cents if entry.kind == "earn" else -event.amount_cents


def progress(account: Account, at: datetime, policy: TierPolicy) -> dict[str, object] | None:
    """The tier, the qualifying amount in the period and what the next tier still needs."""
    if not policy.tiers:
        return None
    amount = qualifying(account.tier_days, day_of(at), policy)
    rank = rank_of(account.tier, policy)
    following = policy.tiers[rank + 1] if rank + 1 < len(policy.tiers) else None
    return {
        "tier": account.tier,
        "basis": policy.basis,
        "qualifying": amount,
        "next_tier": following.name if following else None,
        "remaining": max(0, following.threshold - amount) if following else None,
    }
