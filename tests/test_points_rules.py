"""Pure tests of the points rules: earning, holds, reversals, redemption, and ledger invariants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.account import Account
from processors.ids import stable_id
from processors.ledger import Anomaly, LedgerEntry, Outcome
from processors.points import (
    EarnRate,
    Multiplier,
    PointsPolicy,
    earn,
    points_for,
    release_due,
    reverse,
)
from processors.points_state import PointsState, next_release

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
POLICY = PointsPolicy(
    rates={"EUR": EarnRate(1, 100), "JPY": EarnRate(1, 150), "BHD": EarnRate(3, 1000)},
    hold=timedelta(days=14),
    multipliers=(Multiplier("double-november", 200, T0, T0 + timedelta(days=1)),),
)
PLAIN = PointsPolicy(rates=POLICY.rates)


def buy(account: Account, order: str, cents: int, *, redeem: int = 0, at: datetime = T0,
        currency: str = "EUR", policy: PointsPolicy = PLAIN) -> Outcome:  # fmt: skip
    return earn(account, event_id=f"e-{order}", order_id=order, amount_cents=cents,
                currency=currency, points_redeemed=redeem, at=at, policy=policy)  # fmt: skip


@pytest.mark.parametrize(
    ("cents", "currency", "at", "expected"),
    [
        (4599, "EUR", T0 - timedelta(days=1), 45),  # 45.99 EUR: 45 points, rounded down
        (99, "EUR", T0 - timedelta(days=1), 0),
        (100, "EUR", T0 - timedelta(days=1), 1),
        (4599, "EUR", T0, 91),  # campaign x2 on the exact amount, then rounded down
        (4599, "EUR", T0 + timedelta(days=1), 45),  # campaign window is half-open
        (1000, "JPY", T0 - timedelta(days=1), 6),  # 1 point per 150 yen
        (1500, "BHD", T0 - timedelta(days=1), 4),  # 3 points per 1.000 BHD (3 minor digits)
        (1500, "USD", T0, None),  # no rate: a business rejection
    ],
)
def test_points_for(cents, currency, at, expected):
    assert points_for(cents, currency, at, POLICY) == expected


def test_purchase_earns_pending_points_released_after_the_hold():
    out = buy(Account("c-1"), "o-1", 4599)
    assert (out.account.points.pending, out.account.points.available) == (45, 0)
    assert [e.kind for e in out.entries] == ["earn"]
    assert next_release(out.account.points) == T0 + timedelta(days=14)
    assert release_due(out.account, T0 + timedelta(days=13, hours=23)).entries == ()
    released = release_due(out.account, T0 + timedelta(days=14))
    assert (released.account.points.pending, released.account.points.available) == (0, 45)
    assert [(e.kind, e.pending_delta, e.available_delta) for e in released.entries] == [
        ("release", -45, 45)
    ]
    assert release_due(released.account, T0 + timedelta(days=30)).entries == ()
    assert next_release(released.account.points) is None


def test_unknown_currency_is_rejected_not_ignored():
    out = buy(Account("c-1"), "o-1", 500, currency="USD")
    assert out.rejection == "no points rate for currency USD"
    assert out.account == Account("c-1")


@pytest.mark.parametrize(
    ("refunds", "released_first", "pending", "available", "shortfall"),
    [
        ([10_000], False, 0, 0, 0),  # full refund before release
        ([5_000], False, 50, 0, 0),  # half refunded: half the points
        ([3_333, 3_333, 3_334], False, 0, 0, 0),  # partials add up to a full reversal
        ([3_333], False, 67, 0, 0),  # 33 reversed: floor(100 * 3333 / 10000)
        ([10_000], True, 0, 0, 0),  # full refund after release: taken from available
        ([2_500], True, 0, 75, 0),
        ([20_000], False, 0, 0, 0),  # over-refund is capped at the order amount
    ],
)
def test_refund_reversals(refunds, released_first, pending, available, shortfall):
    account = buy(Account("c-1"), "o-1", 10_000).account
    if released_first:
        account = release_due(account, T0 + timedelta(days=15)).account
    anomalies: list[Anomaly] = []
    for n, cents in enumerate(refunds):
        out = reverse(account, event_id=f"r-{n}", order_id="o-1", refunded_cents=cents, at=T0)
        account, anomalies = out.account, anomalies + list(out.anomalies)
    assert (account.points.pending, account.points.available) == (pending, available)
    assert sum(a.points for a in anomalies) == shortfall


def test_reversal_after_the_points_were_spent_is_a_shortfall_not_a_negative_balance():
    account = buy(Account("c-1"), "o-1", 10_000).account
    account = release_due(account, T0 + timedelta(days=15)).account
    account = buy(account, "o-2", 0, redeem=80).account
    out = reverse(account, event_id="r-1", order_id="o-1", refunded_cents=10_000, at=T0)
    assert (out.account.points.pending, out.account.points.available) == (0, 0)
    assert [(a.kind, a.points) for a in out.anomalies] == [("reversal_shortfall", 80)]


def test_refund_of_an_unknown_order_is_reported():
    out = reverse(Account("c-1"), event_id="r-1", order_id="nope", refunded_cents=100, at=T0)
    assert (
        out.account.points.pending,
        out.account.points.available,
        out.account.points.orders,
    ) == (0, 0, {})
    assert out.account.points.orphan_refunds == {"r-1": T0}
    assert [a.kind for a in out.anomalies] == ["refund_unknown_order"]


@pytest.mark.parametrize(
    ("available", "wanted", "left", "short"), [(50, 30, 20, 0), (50, 80, 0, 30)]
)
def test_redemption_debits_available_and_records_a_shortfall(available, wanted, left, short):
    account = Account("c-1", PointsState(available=available))
    out = buy(account, "o-1", 0, redeem=wanted)
    assert out.account.points.available == left
    assert sum(a.points for a in out.anomalies if a.kind == "redemption_shortfall") == short


def test_redelivered_events_change_nothing():
    first = buy(Account("c-1"), "o-1", 10_000, redeem=0)
    again = buy(first.account, "o-1", 10_000)
    assert again.account == first.account and again.entries == ()
    refund = reverse(first.account, event_id="r-1", order_id="o-1", refunded_cents=5_000, at=T0)
    refund_again = reverse(
        refund.account, event_id="r-1", order_id="o-1", refunded_cents=5_000, at=T0
    )
    assert refund_again.account == refund.account and refund_again.entries == ()


def test_entry_ids_are_deterministic_and_distinct():
    a = buy(Account("c-1"), "o-1", 10_000).entries[0]
    b = buy(Account("c-1"), "o-1", 10_000).entries[0]
    c = buy(Account("c-2"), "o-1", 10_000).entries[0]
    assert a.entry_id == b.entry_id != c.entry_id
    assert stable_id("x", "ab", "c") != stable_id("x", "a", "bc")


operations = st.lists(
    st.one_of(
        st.tuples(st.just("buy"), st.integers(0, 5), st.integers(0, 50_000), st.integers(0, 300)),
        st.tuples(st.just("refund"), st.integers(0, 5), st.integers(0, 30_000), st.integers(0, 3)),
        st.tuples(st.just("release"), st.integers(0, 40)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_balances_equal_the_ledger_never_go_negative_and_replays_are_idempotent(ops):
    account, ledger = Account("c-1"), list[LedgerEntry]()
    for op in ops:
        out = apply(account, op)
        replay = apply(out.account, op)
        assert replay.account == out.account and replay.entries == ()  # same event again
        account, ledger = out.account, ledger + list(out.entries)
        assert account.points.pending >= 0 and account.points.available >= 0
        assert account.points.pending == sum(e.pending_delta for e in ledger)
        assert account.points.available == sum(e.available_delta for e in ledger)
        if ledger:
            assert (ledger[-1].pending_after, ledger[-1].available_after) == (
                account.points.pending, account.points.available,
            )  # fmt: skip
    assert len({e.entry_id for e in ledger}) == len(ledger)


def apply(account: Account, op: tuple[Any, ...]) -> Outcome:
    if op[0] == "buy":
        _, order, cents, redeem = op
        return buy(account, f"o-{order}", cents, redeem=redeem)
    if op[0] == "refund":
        _, order, cents, n = op
        return reverse(account, event_id=f"r-{order}-{n}", order_id=f"o-{order}",
                       refunded_cents=cents, at=T0)  # fmt: skip
    return release_due(account, T0 + timedelta(days=op[1]))
