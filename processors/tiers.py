"""Loyalty tiers: qualifying amounts per day over a rolling period, upgrades and downgrades (pure).

An account's `tier` part (processors/tier_state.py) keeps `days`, (UTC day number, amount) pairs for
the days events qualified on, pruned to the period plus the grace. The tier supported on day D is
the highest whose threshold the amounts of the days in (D - period, D] reach; the tier held on day D
is the highest supported on any day of [D - grace, D]. So an upgrade is immediate and a downgrade
waits out the grace. Amounts count on the day of the event's stream time, and downgrades happen at
midnight UTC of the day the period (and grace) stops supporting the tier: the result depends only on
event times and `now`, never on how events are cut into batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from msgspec.structs import replace

from processors.account import Account
from processors.ids import stable_id
from processors.ledger import LedgerEntry
from processors.tier_state import Days, TierState, add
from schemas.models import Purchase
from schemas.outputs import TierChange

Basis = Literal["spend", "points"]
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


def percent_of(state: TierState, policy: TierPolicy) -> int:
    """The earn multiplier percent of the tier held (100 without one)."""
    if state.name is None:
        return 100
    for tier in policy.tiers:
        if tier.name == state.name:
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


def _change(  # noqa: PLR0917 - who, from what, to what, when
    customer_id: str, state: TierState, rank: int, day: int, at: datetime, policy: TierPolicy
) -> TierChange:
    """The change of the customer's tier to the one at `rank`, at `at`."""
    tier = policy.tiers[rank] if rank >= 0 else None
    name = tier.name if tier is not None else None
    previous = rank_of(state.name, policy)
    when = at.isoformat()
    return TierChange(
        change_id=stable_id("tc", customer_id, str(state.name), str(name), when),
        customer_id=customer_id,
        direction="upgrade" if rank > previous else "downgrade",
        basis=policy.basis,
        qualifying=qualifying(state.days, day, policy),
        multiplier_percent=tier.percent if tier is not None else 100,
        changed_at=at,
        tier=name,
        previous_tier=state.name,
    )


def advance(account: Account, at: datetime, policy: TierPolicy) -> tuple[Account, list[TierChange]]:
    """Time passing to `at`: the downgrades due at the midnights since the last check, in order."""
    today, state = day_of(at), account.tier
    if today <= state.checked or not policy.tiers:
        return account, []
    shift = policy.period_days + policy.grace_days
    if state.due_at is None or day_of(state.due_at) > today:  # nothing due yet
        kept = tuple((d, a) for d, a in state.days if d + shift > today)
        return replace(account, tier=replace(state, days=kept, checked=today)), []
    due = sorted({d + shift for d, _ in state.days if state.checked < d + shift})
    changes: list[TierChange] = []
    for day in (d for d in due if d <= today):
        rank = held(state.days, day, policy)
        if rank != rank_of(state.name, policy):
            change = _change(account.customer_id, state, rank, day, midnight(day), policy)
            changes.append(change)
            state = replace(state, name=change.tier)
    kept = tuple((d, a) for d, a in state.days if d + shift > today)
    state = replace(state, days=kept, checked=today)
    state = replace(state, due_at=next_downgrade(state, today, policy))
    return replace(account, tier=state), changes


def next_downgrade(state: TierState, today: int, policy: TierPolicy) -> datetime | None:
    """Midnight of the first day after `today` on which time alone lowers the tier, if any."""
    current = rank_of(state.name, policy)
    if current < 0:
        return None
    shift = policy.period_days + policy.grace_days
    for day in sorted({d + shift for d, _ in state.days if d + shift > today}):
        if held(state.days, day, policy) < current:
            return midnight(day)
    return None


def qualify(
    account: Account, amount: int, at: datetime, policy: TierPolicy
) -> tuple[Account, TierChange | None]:
    """An event qualified `amount` (negative: a refund took it back) at stream time `at`."""
    if not amount or not policy.tiers:
        return account, None
    today = day_of(at)
    state = replace(account.tier, days=add(account.tier.days, today, amount))
    current = rank_of(state.name, policy)
    rank = supported(state.days, today, policy)
    if rank < current:  # a refund: the grace may still hold the tier (days before, unchanged)
        rank = held(state.days, today, policy)
    change = None
    if rank != current:
        change = _change(account.customer_id, state, rank, today, at, policy)
        state = replace(state, name=change.tier)
    state = replace(state, due_at=next_downgrade(state, today, policy))
    return replace(account, tier=state), change


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


def progress(state: TierState, at: datetime, policy: TierPolicy) -> dict[str, object] | None:
    """The tier, the qualifying amount in the period and what the next tier still needs."""
    if not policy.tiers:
        return None
    amount = qualifying(state.days, day_of(at), policy)
    rank = rank_of(state.name, policy)
    following = policy.tiers[rank + 1] if rank + 1 < len(policy.tiers) else None
    return {
        "tier": state.name,
        "basis": policy.basis,
        "qualifying": amount,
        "next_tier": following.name if following else None,
        "remaining": max(0, following.threshold - amount) if following else None,
    }
