"""Loyalty tiers: immediate upgrades, downgrades after the period and grace, multiplied earning."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.account import Account
from processors.points import EarnRate, PointsPolicy
from processors.settlement import Policies, settle
from processors.tier_state import TierState, add
from processors.tiers import (
    Tier,
    TierPolicy,
    advance,
    day_of,
    held,
    midnight,
    progress,
    qualify,
    qualifying,
)
from schemas.models import Purchase, PurchaseType
from schemas.outputs import TierChange
from streams.loyalty import TierCounts
from tests.test_settlement_batching import events_of, steps_st

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
DAY = timedelta(days=1)
LADDER = (Tier("silver", 10_000, 150), Tier("gold", 50_000, 200))
SPEND = TierPolicy(LADDER, "spend", period_days=30)
GRACE = TierPolicy(LADDER, "spend", period_days=30, grace_days=10)
POINTS = PointsPolicy(rates={"EUR": EarnRate(1, 100), "USD": EarnRate(2, 100)}, hold=14 * DAY)


def buy(
    n: int, cents: int, at: datetime, kind: PurchaseType = "purchase", order: str = ""
) -> Purchase:
    """A purchase (or refund) event of `cents` EUR at `at`."""
    return Purchase(event_id=f"e-{n}", customer_id="c-1", occurred_at=at, type=kind,
                    order_id=order or f"o-{n}", amount_cents=cents, currency="EUR")  # fmt: skip


def test_a_purchase_reaching_a_threshold_upgrades_at_once():
    account, change = qualify(Account("c-1"), 10_000, T0, SPEND)
    assert account.tier.name == "silver"
    assert change is not None
    assert (change.direction, change.tier, change.previous_tier) == ("upgrade", "silver", None)
    assert (change.qualifying, change.multiplier_percent, change.changed_at) == (10_000, 150, T0)
    again, none = qualify(account, 100, T0 + DAY, SPEND)
    assert none is None
    assert again.tier.name == "silver"


def test_a_downgrade_happens_at_midnight_when_the_period_no_longer_supports_it():
    account, _ = qualify(Account("c-1"), 60_000, T0, SPEND)
    assert account.tier.name == "gold"
    assert account.tier.due_at == midnight(day_of(T0) + 30)  # the sweep visits an idle account
    still, changes = advance(account, T0 + 29 * DAY, SPEND)
    assert (still.tier.name, changes) == ("gold", [])
    after, changes = advance(still, T0 + 31 * DAY, SPEND)
    assert after.tier.name is None
    assert [(c.previous_tier, c.tier) for c in changes] == [("gold", None)]
    assert changes[0].direction == "downgrade"
    assert changes[0].changed_at == midnight(day_of(T0) + 30)
    assert after.tier.days == ()


def test_the_grace_delays_a_downgrade_and_steps_down_one_day_at_a_time():
    account, _ = qualify(Account("c-1"), 50_000, T0, GRACE)
    account, _ = qualify(account, 12_000, T0 + 20 * DAY, GRACE)
    kept, changes = advance(account, T0 + 39 * DAY, GRACE)
    assert (kept.tier.name, changes) == ("gold", [])
    moved, changes = advance(kept, T0 + 60 * DAY, GRACE)
    assert [(c.previous_tier, c.tier) for c in changes] == [("gold", "silver"), ("silver", None)]
    assert [c.changed_at for c in changes] == [
        midnight(day_of(T0) + 40), midnight(day_of(T0) + 60)
    ]  # fmt: skip
    assert moved.tier.name is None
    assert moved.tier.due_at is None


def test_a_refund_takes_back_qualifying_spend():
    account, _ = qualify(Account("c-1"), 12_000, T0, SPEND)
    account, change = qualify(account, -5_000, T0 + DAY, SPEND)
    assert change is not None
    assert (change.direction, account.tier.name) == ("downgrade", None)
    assert qualifying(account.tier.days, day_of(T0 + DAY), SPEND) == 7_000


@given(st.lists(st.tuples(st.integers(0, 40), st.integers(-5_000, 20_000)), max_size=30))
def test_day_amounts_never_go_negative_and_sum_as_added(adds):
    days: tuple[tuple[int, int], ...] = ()
    total = 0
    for day, amount in sorted(adds):
        days = add(days, day, amount)
        total = max(0, total + amount)
        assert all(a > 0 for _, a in days)
        assert sum(a for _, a in days) == total


def test_tier_multiplies_purchase_earning_and_composes_with_campaigns():
    policies = Policies(POINTS, tiers=SPEND)
    first = settle(Account("c-1"), [buy(1, 20_000, T0)], T0, policies)
    assert first.account.tier.name == "silver"
    assert first.entries[0].pending_delta == 200  # the qualifying purchase earns at the old tier
    second = settle(first.account, [buy(2, 10_000, T0 + DAY)], T0 + DAY, policies)
    assert second.entries[0].pending_delta == 150
    assert [c.tier for c in first.tier_changes] == ["silver"]


def test_progress_names_the_next_tier_and_what_it_needs():
    account, _ = qualify(Account("c-1"), 12_000, T0, SPEND)
    assert progress(account.tier, T0, SPEND) == {
        "tier": "silver", "basis": "spend", "qualifying": 12_000, "next_tier": "gold",
        "remaining": 38_000,
    }  # fmt: skip
    assert progress(account.tier, T0, TierPolicy()) is None


def test_points_basis_counts_points_earned():
    policy = TierPolicy((Tier("silver", 150, 120),), "points", period_days=30)
    done = settle(Account("c-1"), [buy(1, 20_000, T0)], T0, Policies(POINTS, tiers=policy))
    assert done.account.tier.name == "silver"
    assert done.tier_changes[0].qualifying == 200


def test_held_is_the_best_supported_tier_within_the_grace():
    days = ((100, 60_000),)
    assert held(days, 100, GRACE) == 1
    assert held(days, 139, GRACE) == 1
    assert held(days, 140, GRACE) == -1


def _run(events: list[Any], times: list[datetime], cuts: list[int]) -> tuple[Account, list[Any]]:
    """Settle in the batches `cuts` makes; the final account and the tier changes, in order."""
    policies = Policies(POINTS, tiers=GRACE)
    account, changes = Account("c-1"), list[TierChange]()
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < len(events)), len(events)]
    for lo, hi in itertools.pairwise(bounds):
        done = settle(account, events[lo:hi], times[hi - 1], policies, times=times[lo:hi])
        account = done.account
        changes += done.tier_changes
    return account, changes


@settings(max_examples=300, deadline=None, database=None)
@given(steps_st, st.lists(st.integers(0, 24), max_size=8))
def test_tier_changes_do_not_depend_on_batch_cuts(steps, cuts):
    events, times = events_of(steps)
    whole = _run(events, times, [])
    assert _run(events, times, cuts) == whole
    assert _run(events, times, list(range(len(events)))) == whole


def test_customers_per_tier_move_on_commit_and_rebuild_from_a_scan():
    counts = TierCounts(SPEND)
    silver, gold = Account("a", tier=TierState("silver")), Account("b", tier=TierState("gold"))
    counts.track(0, Account("a"), silver)
    counts.track(1, Account("b"), gold)
    counts.track(0, silver, Account("a", tier=TierState("gold")))
    assert counts.totals() == {"silver": 0, "gold": 2}
    counts.forget([1])
    assert list(counts.rebuilding([0], iter([(0, silver)]))) == [(0, silver)]
    [family] = counts.collect()
    assert {s.labels["tier"]: s.value for s in family.samples} == {"silver": 1, "gold": 0}
