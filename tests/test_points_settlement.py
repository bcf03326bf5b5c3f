"""Pure tests of `settle`: batches of purchases and refunds against an account, clock injected."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.account import Account
from processors.ids import stable_id
from processors.ledger import LedgerEntry
from processors.points import EarnRate, PointsPolicy
from processors.settlement import Settlement, settle
from schemas.models import Purchase

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
DAY = timedelta(days=1)
POLICY = PointsPolicy(rates={"EUR": EarnRate(1, 100), "JPY": EarnRate(1, 150)}, hold=14 * DAY)
# Hold longer than retention: an order can be past retention with points still pending.
LONG_HOLD = PointsPolicy(rates=POLICY.rates, hold=30 * DAY, order_retention=10 * DAY)


def buy(order: str, cents: int, *, day: float = 0, redeem: int = 0, currency: str = "EUR",
        event: str | None = None, customer: str = "c-1") -> Purchase:  # fmt: skip
    return Purchase(event_id=event or f"p-{order}", occurred_at=T0 + day * DAY,
                    customer_id=customer, type="purchase", order_id=order, amount_cents=cents,
                    currency=currency, points_redeemed=redeem)  # fmt: skip


def refund(order: str, cents: int, *, day: float = 0, n: int = 0, customer: str = "c-1",
           currency: str = "EUR") -> Purchase:  # fmt: skip
    return Purchase(event_id=f"r-{order}-{n}", occurred_at=T0 + day * DAY, customer_id=customer,
                    type="refund", order_id=order, amount_cents=cents,
                    currency=currency)  # fmt: skip


Batches = list[tuple[float, list[Purchase]]]


def run(batches: Batches, policy: PointsPolicy = POLICY) -> tuple[Account, list[Settlement]]:
    """Settle each (day, events) batch in turn, `now` = T0 + day, starting from a new account."""
    account, done = Account("c-1"), []
    for day, events in batches:
        done.append(settle(account, events, T0 + day * DAY, policy))
        account = done[-1].account
    return account, done


Scenario = tuple[Batches, tuple[int, int], list[tuple[Any, ...]], list[tuple[Any, ...]]]
SCENARIOS: dict[str, Scenario] = {  # batches -> (pending, available), anomalies, credits
    "purchase-is-pending": ([(0, [buy("o-1", 4599)])], (45, 0), [], []),
    "released-after-hold": ([(0, [buy("o-1", 4599)]), (14, [])], (0, 45), [], [("o-1", 45)]),
    "not-released-before-hold": ([(0, [buy("o-1", 4599)]), (13.9, [])], (45, 0), [], []),
    "partial-refund-before-release": (
        [(0, [buy("o-1", 10_000)]), (1, [refund("o-1", 2_550)])], (75, 0), [], []),  # 25.5 -> 25
    "cumulative-partials-round-down": (  # 150 + 150 cents of 1000 reverse floor(3.0), not 1 + 1
        [(0, [buy("o-1", 1_000)]), (1, [refund("o-1", 150)]), (2, [refund("o-1", 150, n=1)])],
        (7, 0), [], []),
    "partials-capped-at-earned": (  # refunds beyond the order are reported (issue #11)
        [(0, [buy("o-1", 10_000)]), (1, [refund("o-1", 4_000, n=k) for k in range(4)])],
        (0, 0), [("refund_exceeds_order", "o-1", 0)] * 2, []),
    "partial-refund-then-release-credits-the-rest": (
        [(0, [buy("o-1", 10_000)]), (1, [refund("o-1", 3_333)]), (14, [])],
        (0, 67), [], [("o-1", 67)]),
    "full-refund-after-release": (
        [(0, [buy("o-1", 10_000)]), (14, []), (20, [refund("o-1", 10_000, day=20)])],
        (0, 0), [], [("o-1", 100)]),
    "refund-of-unknown-order": (
        [(0, [refund("nope", 500)])], (0, 0), [("refund_unknown_order", "nope", 0)], []),
    "refund-before-its-purchase-is-unknown": (
        [(0, [refund("o-1", 500), buy("o-1", 500)])],
        (5, 0), [("refund_unknown_order", "o-1", 0)], []),
    "redemption-of-released-points": (
        [(0, [buy("o-1", 10_000)]), (14, [buy("o-2", 0, day=14, redeem=30)])],
        (0, 70), [], [("o-1", 100)]),
    "redemption-shortfall": (
        [(0, [buy("o-1", 10_000)]), (14, [buy("o-2", 500, day=14, redeem=130)])],
        (5, 0), [("redemption_shortfall", "o-2", 30)], [("o-1", 100)]),
    "pending-points-cannot-be-redeemed": (
        [(0, [buy("o-1", 10_000), buy("o-2", 0, redeem=10)])],
        (100, 0), [("redemption_shortfall", "o-2", 10)], []),
    "back-dated-purchase-released-in-the-same-call": (
        [(20, [buy("o-1", 10_000, day=0)])], (0, 100), [], [("o-1", 100)]),
    "refund-beyond-the-order-is-reported-and-capped": (  # issue #11: not silently capped
        [(0, [buy("o-1", 10_000)]), (1, [refund("o-1", 12_500)])],
        (0, 0), [("refund_exceeds_order", "o-1", 0)], []),
    "refund-in-another-currency-reverses-nothing": (
        [(0, [buy("o-1", 10_000)]), (1, [refund("o-1", 10_000, currency="USD")])],
        (100, 0), [("refund_currency_mismatch", "o-1", 0)], []),
    "order-id-reused-with-another-amount-is-reported": (
        [(0, [buy("o-1", 10_000), buy("o-1", 5_000, event="again")]),
         (1, [buy("o-1", 5_000, event="again")])],
        (100, 0), [("order_id_reused", "o-1", 0)], []),
    "order-id-resent-with-the-same-amount-changes-nothing": (
        [(0, [buy("o-1", 10_000), buy("o-1", 10_000, event="again")])], (100, 0), [], []),
    "reversal-of-spent-points-is-a-shortfall": (
        [(0, [buy("o-1", 10_000)]), (14, [buy("o-2", 0, day=14, redeem=80)]),
         (15, [refund("o-1", 10_000, day=15)])],
        (0, 0), [("reversal_shortfall", "o-1", 80)],
        [("o-1", 100)]),
}  # fmt: skip


@pytest.mark.parametrize(("batches", "balances", "anomalies", "credits"),
                         list(SCENARIOS.values()), ids=list(SCENARIOS))  # fmt: skip
def test_scenarios(batches, balances, anomalies, credits):
    account, done = run(batches)
    assert (account.points.pending, account.points.available) == balances
    assert [(a.kind, a.order_id, a.points) for s in done for a in s.anomalies] == anomalies
    assert [(c.order_id, c.points) for s in done for c in s.credits] == credits
    assert all(s.rejections == () for s in done)
    for s in done:  # one credit per release, of exactly the released points
        releases = [e for e in s.entries if e.kind == "release"]
        assert [(c.order_id, c.points) for c in s.credits] == [
            (e.order_id, e.available_delta) for e in releases
        ]
    for a in (a for s in done for a in s.anomalies):
        assert a.anomaly_id == stable_id("pa", a.kind, "c-1", a.order_id, a.source_event_id)


def test_suspicious_refunds_and_reused_orders_carry_their_amounts():
    beyond = settle(settle(Account("c-1"), [buy("o-1", 10_000)], T0, POLICY).account,
                    [refund("o-1", 12_500)], T0 + DAY, POLICY)  # fmt: skip
    assert [(a.kind, a.amount_cents, a.currency) for a in beyond.anomalies] == [
        ("refund_exceeds_order", 2_500, "EUR")
    ]
    mismatch = settle(beyond.account, [refund("o-1", 700, n=1, currency="USD")], T0, POLICY)
    assert [(a.kind, a.amount_cents, a.currency) for a in mismatch.anomalies] == [
        ("refund_currency_mismatch", 700, "USD")
    ]
    reused = settle(beyond.account, [buy("o-1", 300, currency="JPY", event="e2")], T0, POLICY)
    assert [(a.kind, a.amount_cents, a.currency) for a in reused.anomalies] == [
        ("order_id_reused", 300, "JPY")
    ]
    assert reused.account.points.orders["o-1"].amount_cents == 10_000  # the first purchase stands


def test_credit_reward_id_is_stable_per_customer_and_order():
    bought = settle(Account("c-1"), [buy("o-1", 4599)], T0, POLICY).account
    first = settle(bought, [], T0 + 14 * DAY, POLICY)
    second = settle(bought, [], T0 + 30 * DAY, POLICY)  # another call, another clock
    assert len(first.credits) == len(second.credits) == 1
    assert first.credits == second.credits  # issued_at is the release time, not `now`
    assert first.credits[0].reward_id == stable_id("rw", "points", "c-1", "o-1")
    assert first.credits[0].issued_at == T0 + 14 * DAY
    assert settle(first.account, [], T0 + 60 * DAY, POLICY).credits == ()
    other = settle(Account("c-2"), [buy("o-1", 4599, customer="c-2")], T0 + 20 * DAY, POLICY)
    assert other.credits[0].reward_id != first.credits[0].reward_id


def test_purchase_in_a_currency_without_a_rate_is_rejected_and_not_recorded():
    out = settle(Account("c-1"), [buy("o-1", 500, currency="USD", event="e-usd")], T0, POLICY)
    assert [(r.event_id, r.reason) for r in out.rejections] == [("e-usd", "no_points_rate")]
    assert "USD" in out.rejections[0].detail
    assert out.account == Account("c-1") and out.entries == () and out.anomalies == ()
    later = settle(out.account, [buy("o-1", 500, event="e-eur")], T0, POLICY)  # not a duplicate
    assert later.account.points.pending == 5 and later.rejections == ()


@pytest.mark.parametrize(
    ("policy", "batches", "kept"),
    [
        (POLICY, [(0, [buy("o-1", 10_000)]), (400, [])], {"o-1"}),  # exactly at retention: kept
        (POLICY, [(0, [buy("o-1", 10_000)]), (401, [])], set()),
        (
            POLICY,
            [(0, [buy("o-1", 10_000)]), (300, [buy("o-2", 100, day=300)]), (401, [])],
            {"o-2"},
        ),
        (LONG_HOLD, [(0, [buy("o-1", 10_000)]), (11, [])], {"o-1"}),  # past retention, pending
        (
            LONG_HOLD,
            [
                (0, [buy("o-1", 10_000), buy("o-2", 10_000)]),
                (1, [refund("o-2", 10_000, day=1)]),
                (11, []),
            ],
            {"o-1"},
        ),
        (LONG_HOLD, [(0, [buy("o-1", 10_000)]), (30, [])], set()),  # released, then pruned
    ],
)
def test_orders_are_pruned_after_retention_only_when_nothing_is_pending(policy, batches, kept):
    account, _ = run(batches, policy)
    assert set(account.points.orders) == kept
    assert account.points.pending == sum(o.pending for o in account.points.orders.values())
    last = batches[-1][0]
    late = settle(account, [refund("o-1", 10_000, day=last, n=9)], T0 + last * DAY, policy)
    expected = [] if "o-1" in kept else [("refund_unknown_order", "o-1")]
    assert [(a.kind, a.order_id) for a in late.anomalies] == expected


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_settling_the_same_events_again_changes_nothing(name):
    batches = SCENARIOS[name][0]
    account = Account("c-1")
    for day, events in batches:
        account = settle(account, events, T0 + day * DAY, POLICY).account
        again = settle(account, events, T0 + day * DAY, POLICY)
        assert again == Settlement(account)  # same account; no entries, credits or anomalies


def test_replaying_a_refund_that_preceded_its_purchase_changes_nothing():
    events = [refund("o-1", 500), buy("o-1", 1_000)]
    first = settle(Account("c-1"), events, T0, POLICY)
    assert [(a.kind, a.order_id) for a in first.anomalies] == [("refund_unknown_order", "o-1")]
    assert first.account.points.pending == 10
    again = settle(first.account, events, T0, POLICY)  # the refund stays unknown: no reversal
    assert again == Settlement(first.account)


def test_an_unknown_order_refund_is_reported_once_and_remembered_until_retention():
    first = settle(Account("c-1"), [refund("nope", 500)], T0, POLICY)
    assert [a.kind for a in first.anomalies] == ["refund_unknown_order"]
    assert (
        first.account.points.pending,
        first.account.points.available,
        first.account.points.sequence,
    ) == (0, 0, 0)
    assert settle(first.account, [refund("nope", 500)], T0, POLICY) == Settlement(first.account)
    later = settle(first.account, [], T0 + POLICY.order_retention + 30 * DAY, POLICY)
    assert later.account.points.orphan_refunds == {}


@pytest.mark.parametrize(
    "events",
    [
        [buy("o-1", 10_000, redeem=20)],
        [buy("o-1", 10_000), refund("o-1", 2_500, day=1)],
        [buy("o-1", 10_000, day=-20), refund("o-1", 2_500), buy("o-2", 0, redeem=50)],
    ],
)
def test_an_event_listed_twice_settles_like_once(events):
    start = settle(Account("c-1"), [buy("o-0", 9_000, day=-30)], T0 - 10 * DAY, POLICY).account
    twice = [e for e in events for _ in range(2)]
    assert settle(start, twice, T0 + DAY, POLICY) == settle(start, events, T0 + DAY, POLICY)
    assert settle(start, events + events, T0 + DAY, POLICY) == settle(
        start, events, T0 + DAY, POLICY
    )


CUSTOMERS = ["c-1", "c-2", "c-3"]
op = st.one_of(
    st.tuples(st.just("purchase"), st.sampled_from(CUSTOMERS), st.integers(0, 4),
              st.integers(0, 40_000), st.sampled_from([0, 0, 20, 150, 600]),
              st.sampled_from(["EUR", "EUR", "EUR", "JPY", "USD"]), st.integers(0, 20)),
    st.tuples(st.just("refund"), st.sampled_from(CUSTOMERS), st.integers(0, 4),
              st.integers(0, 25_000)),
)  # fmt: skip
# Each batch: days the clock moves forward (never back), then the batch's events.
batches_st = st.lists(st.tuples(st.integers(0, 25), st.lists(op, max_size=8)), max_size=8)


def events_of(batches: list[Any]) -> list[tuple[datetime, list[Purchase]]]:
    """Concrete (now, events) batches; every event has its own id, the clock never goes back."""
    out, now, n = [], T0, 0
    for step, ops in batches:
        now, events = now + step * DAY, []
        for kind, customer, order, cents, *rest in ops:
            n += 1
            if kind == "purchase":
                redeem, currency, back = rest
                at, extra = now - back * DAY, {"currency": currency, "points_redeemed": redeem}
            else:
                at, extra = now, {"currency": "EUR"}
            events.append(Purchase(event_id=f"ev-{n}", occurred_at=at, customer_id=customer,
                                   type=kind, order_id=f"{customer}-o{order}",
                                   amount_cents=cents, **extra))  # fmt: skip
        out.append((now, events))
    return out


@settings(max_examples=300, deadline=None, database=None)
@given(batches_st)
def test_ledger_invariants_over_random_batches(raw):
    batches = events_of(raw)  # at most 200 days: below retention, so replays stay idempotent
    accounts = {c: Account(c) for c in CUSTOMERS}
    ledgers: dict[str, list[LedgerEntry]] = defaultdict(list)
    credited: dict[str, int] = defaultdict(int)
    for now, events in batches:
        for customer in CUSTOMERS:
            mine = [e for e in events if e.customer_id == customer]
            out = settle(accounts[customer], mine, now, POLICY)
            accounts[customer] = out.account
            ledgers[customer] += out.entries
            credited[customer] += sum(c.points for c in out.credits)
            assert all(e.customer_id == customer for e in out.entries)
    for customer, account in accounts.items():
        ledger = ledgers[customer]
        assert account.points.pending >= 0 and account.points.available >= 0  # (a)
        assert account.points.pending == sum(e.pending_delta for e in ledger)  # (b)
        assert account.points.available == sum(e.available_delta for e in ledger)
        assert account.points.pending == sum(o.pending for o in account.points.orders.values())
        pending = available = 0
        for entry in ledger:  # (c), and (a) after every entry
            pending, available = pending + entry.pending_delta, available + entry.available_delta
            assert (entry.pending_after, entry.available_after) == (pending, available)
            assert pending >= 0 and available >= 0
        assert [e.sequence for e in ledger] == list(range(1, len(ledger) + 1))  # (d)
        assert account.points.sequence == len(ledger)
        assert len({e.entry_id for e in ledger}) == len(ledger)  # (e)
        everything = [e for _, events in batches for e in events if e.customer_id == customer]
        now = batches[-1][0] if batches else T0
        replay = settle(account, everything, now, POLICY)  # (f); a rejection is refused again
        assert (replay.account, replay.entries, replay.credits, replay.anomalies) == (
            account, (), (), ()
        )  # fmt: skip
        released = sum(e.available_delta for e in ledger if e.kind == "release")
        earned = sum(e.pending_delta for e in ledger if e.kind == "earn")
        assert credited[customer] == released <= earned  # (g)
