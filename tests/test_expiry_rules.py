"""Points expiry: FIFO lots, lifetime and inactivity expiry, warnings ahead, batch independence."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.account import Account
from processors.expiry import ExpiryPolicy, next_due
from processors.expiry_state import ExpiryState, with_lots
from processors.ledger import LedgerEntry
from processors.points import EarnRate, PointsPolicy
from processors.points_state import PointsState
from processors.settlement import Policies, settle
from schemas.models import Purchase
from schemas.outputs import ExpiryWarning
from streams.release_schedule import ReleaseSchedule, due_at
from tests.test_settlement_batching import events_of, steps_st

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
DAY = timedelta(days=1)
POINTS = PointsPolicy(rates={"EUR": EarnRate(1, 100), "USD": EarnRate(2, 100)}, hold=2 * DAY)
LIFETIME = Policies(POINTS, expiry=ExpiryPolicy(lifetime=10 * DAY, warning=3 * DAY))
INACTIVE = Policies(POINTS, expiry=ExpiryPolicy(inactivity=20 * DAY, warning=5 * DAY))


def buy(n: int, cents: int, at: datetime, redeem: int = 0) -> Purchase:
    """A purchase of `cents` EUR at `at`, redeeming `redeem` points."""
    return Purchase(event_id=f"e-{n}", customer_id="c-1", occurred_at=at, type="purchase",
                    order_id=f"o-{n}", amount_cents=cents, currency="EUR",
                    points_redeemed=redeem)  # fmt: skip


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(-50, 80)), max_size=40))
def test_lots_always_add_up_to_the_credits_less_the_debits(changes):
    lots: tuple[tuple[datetime, int], ...] = ()
    total = 0
    for day, wanted in changes:
        delta = max(wanted, -total)
        lots = with_lots(lots, T0 + day * DAY, delta)
        total += delta
        assert sum(n for _, n in lots) == total
        assert all(n > 0 for _, n in lots)
        assert [t for t, _ in lots] == sorted({t for t, _ in lots})


def test_a_debit_takes_the_oldest_lot_first():
    lots = with_lots(with_lots((), T0, 10), T0 + DAY, 5)
    assert with_lots(lots, T0 + 2 * DAY, -12) == ((T0 + DAY, 3),)


def test_a_lot_expires_at_the_end_of_its_lifetime_after_a_warning():
    account = settle(Account("c-1"), [buy(1, 5_000, T0)], T0, LIFETIME).account
    released = T0 + 2 * DAY
    assert account.expiry.due_at is None  # nothing available yet
    warned = settle(account, [], released + 8 * DAY, LIFETIME)
    assert [(w.points, w.expires_at, w.warned_at) for w in warned.expiry_warnings] == [
        (50, released + 10 * DAY, released + 7 * DAY)
    ]
    assert warned.account.expiry.due_at == released + 10 * DAY
    again = settle(warned.account, [], released + 9 * DAY, LIFETIME)
    assert again.expiry_warnings == ()
    expired = settle(again.account, [], released + 11 * DAY, LIFETIME)
    [entry] = expired.entries
    assert (entry.kind, entry.available_delta, entry.available_after) == ("expiry", -50, 0)
    assert (entry.order_id, entry.occurred_at) == ("expiry:lifetime", released + 10 * DAY)
    assert expired.account.expiry.lots == ()
    assert expired.account.expiry.due_at is None


def test_spent_points_never_expire_and_a_warning_names_what_is_left():
    account = settle(Account("c-1"), [buy(1, 5_000, T0)], T0 + 3 * DAY, LIFETIME).account
    spent = settle(account, [buy(2, 0, T0 + 4 * DAY, redeem=30)], T0 + 4 * DAY, LIFETIME)
    done = settle(spent.account, [], T0 + 30 * DAY, LIFETIME)
    assert [w.points for w in done.expiry_warnings] == [20]
    assert [e.available_delta for e in done.entries if e.kind == "expiry"] == [-20]


def test_inactivity_expires_all_available_points_once():
    account = settle(Account("c-1"), [buy(1, 5_000, T0)], T0 + 3 * DAY, INACTIVE).account
    assert account.expiry.active_at == T0 + 3 * DAY
    assert next_due(account, INACTIVE.expiry) == T0 + 18 * DAY
    done = settle(account, [], T0 + 40 * DAY, INACTIVE)
    assert [(w.reason, w.points) for w in done.expiry_warnings] == [("inactivity", 50)]
    [entry] = done.entries
    assert (entry.kind, entry.order_id, entry.available_after) == ("expiry", "expiry:inactivity", 0)
    assert entry.occurred_at == T0 + 23 * DAY
    assert settle(done.account, [], T0 + 60 * DAY, INACTIVE).entries == ()


def test_without_a_policy_no_lots_are_kept():
    account = settle(Account("c-1"), [buy(1, 5_000, T0)], T0 + 30 * DAY, POINTS).account
    assert (account.expiry.lots, account.points.available) == (None, 50)


def _run(events: list[Any], times: list[datetime], cuts: list[int]) -> tuple[Account, list[Any]]:
    """Settle in the batches `cuts` makes; the final account and every entry and warning."""
    policies = Policies(POINTS, expiry=ExpiryPolicy(3 * DAY, 6 * DAY, DAY))
    account, entries, warnings = Account("c-1"), list[LedgerEntry](), list[ExpiryWarning]()
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < len(events)), len(events)]
    for lo, hi in itertools.pairwise(bounds):
        done = settle(account, events[lo:hi], times[hi - 1], policies, times=times[lo:hi])
        account = done.account
        entries += done.entries
        warnings += done.expiry_warnings
    return account, [entries, warnings]


@settings(max_examples=300, deadline=None, database=None)
@given(steps_st, st.lists(st.integers(0, 24), max_size=8))
def test_expiry_does_not_depend_on_batch_cuts(steps, cuts):
    events, times = events_of(steps)
    whole = _run(events, times, [])
    assert _run(events, times, cuts) == whole
    assert _run(events, times, list(range(len(events)))) == whole
    account = whole[0]
    assert sum(n for _, n in account.expiry.lots or ()) == account.points.available


def test_the_sweep_schedule_visits_an_idle_account_when_an_expiry_step_is_due():
    schedule = ReleaseSchedule()
    asyncio.run(schedule.rebuild([0], []))
    idle = Account(
        "c-1", PointsState(available=5), expiry=ExpiryState(((T0, 5),), due_at=T0 + 10 * DAY)
    )
    schedule.track(0, Account("c-1"), idle)
    assert due_at(idle) == T0 + 10 * DAY
    assert schedule.pop_due(T0 + 9 * DAY, 10) == {}
    assert schedule.pop_due(T0 + 10 * DAY, 10) == {(0, "c-1"): None}
