"""Complaint compensation: policy table, limits and experiment arm (pure, no services)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.account import Account
from processors.compensation import (
    GRANTED,
    CompensationPolicy,
    Tier,
    arm_for,
    assess,
    discount_code,
    idempotency_key,
    net_spend,
)
from processors.points import EarnRate, PointsPolicy
from processors.points_state import Order, PointsState
from processors.referral_state import Referee, ReferralState
from processors.settlement import Policies, settle
from schemas.models import Complaint, Purchase, Severity

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
NOW = T0 + timedelta(seconds=5)
POLICY = CompensationPolicy()  # EUR 50 / 25 / 10 for critical / high / medium, nothing for low
VIP = CompensationPolicy(
    tiers=(
        Tier("vip", frozenset({"high", "critical"}), 7_500, min_spend_cents=50_000),
        Tier("late-delivery", frozenset({"medium"}), 1_500, categories=frozenset({"late"})),
        *POLICY.tiers,
    )
)


def complaint(severity: Severity = "high", at: datetime = T0, **kw: Any) -> Complaint:
    """A complaint by ann (`complaint_id` and `event_id` derived unless given)."""
    complaint_id = kw.pop("complaint_id", f"cmp-{severity}-{at.isoformat()}")
    return Complaint(
        event_id=kw.pop("event_id", f"e-{complaint_id}"),
        occurred_at=at,
        customer_id=kw.pop("customer_id", "ann"),
        complaint_id=complaint_id,
        severity=severity,
        category=kw.pop("category", "damaged"),
        **kw,
    )


def order(order_id: str, cents: int, currency: str = "EUR", refunded: int = 0) -> Order:
    return Order(order_id, f"p-{order_id}", T0, cents, cents // 100, 0, T0, refunded, 0, (), 0,
                 currency)  # fmt: skip


def spender(*orders: Order) -> Account:
    return Account("ann", PointsState(orders={o.order_id: o for o in orders}))


def decided(account: Account, event: Complaint, policy: CompensationPolicy = POLICY) -> Any:
    """Assess with a granted budget when the first pass asks for one."""
    first = assess(account, event, policy, NOW)
    return assess(account, event, policy, NOW, GRANTED) if first.request else first


@pytest.mark.parametrize(
    ("severity", "outcome", "amount", "tier"),
    [
        ("low", "none", None, "low"),
        ("medium", "gift_card", 1_000, "medium"),
        ("high", "gift_card", 2_500, "high"),
        ("critical", "gift_card", 5_000, "critical"),
    ],
)
def test_each_severity_maps_to_its_tier(severity, outcome, amount, tier):
    care = decided(Account("ann"), complaint(severity))
    assert care.decision is not None
    assert (care.decision.outcome, care.decision.amount_cents, care.decision.tier) == (
        outcome, amount, tier,
    )  # fmt: skip
    assert (care.order is not None) == (outcome == "gift_card")
    if care.order:
        assert (care.order.amount_cents, care.order.currency) == (amount, "EUR")
        assert care.order.reward_id == care.decision.reward_id


@pytest.mark.parametrize(
    ("account", "event", "tier", "amount"),
    [
        (spender(order("o1", 60_000)), complaint("high"), "vip", 7_500),
        (spender(order("o1", 60_000, refunded=20_000)), complaint("high"), "high", 2_500),
        (spender(order("o1", 49_999)), complaint("critical"), "critical", 5_000),
        (spender(order("o1", 90_000, "USD")), complaint("high"), "high", 2_500),
        (spender(order("referral:k:referee", 90_000)), complaint("high"), "high", 2_500),
        (Account("ann"), complaint("medium", category="late"), "late-delivery", 1_500),
        (Account("ann"), complaint("medium", category="billing"), "medium", 1_000),
    ],
    ids=[
        "vip",
        "refunds-count",
        "just-below",
        "other-currency",
        "referral-points-are-not-spend",
        "category",
        "other-category",
    ],
)
def test_first_matching_tier_wins_by_category_and_spend(account, event, tier, amount):
    care = decided(account, event, VIP)
    assert (care.decision.tier, care.decision.amount_cents) == (tier, amount)


def test_net_spend_is_purchases_less_refunds_in_one_currency():
    account = spender(order("a", 10_000), order("b", 5_000, refunded=1_000), order("c", 7, "GBP"))
    assert net_spend(account, "EUR") == 14_000
    assert net_spend(account, "GBP") == 7
    assert net_spend(account, "USD") == 0


def test_a_compensation_waits_for_the_budget_and_a_refusal_is_a_recorded_block():
    event = complaint("high")
    first = assess(Account("ann"), event, POLICY, NOW)
    assert first.decision is None and first.order is None
    record = first.account.complaints[event.complaint_id]  # provisional, for later complaints
    assert (record.outcome, record.amount_cents) == ("pending", 2_500)
    assert first.request is not None
    assert (first.request.amount_cents, first.request.currency) == (2_500, "EUR")
    refused = assess(Account("ann"), event, POLICY, NOW, "budget_day")
    decision = refused.decision
    assert decision is not None
    assert (decision.outcome, decision.reason, decision.arm) == ("blocked", "budget_day", "none")
    assert refused.order is None and decision.reward_id is None
    assert refused.account.complaints[event.complaint_id].outcome == "blocked"


def referee(status: str) -> Referee:
    return Referee("rk", "bob", "su-1", T0, "review", status, "fa-1")


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("held", "fraud_review"),
        ("rejected", "fraud_rejected"),
        ("converted", None),
        ("attributed", None),
        ("cancelled", None),
    ],
)
def test_a_customer_under_fraud_review_or_rejected_is_not_compensated(status, reason):
    account = Account("ann", referral=ReferralState(referee(status)))
    care = decided(account, complaint("critical"))
    assert care.decision.reason == (reason or "compensated")
    assert (care.order is None) == (reason is not None)


@pytest.mark.parametrize(
    ("gap", "blocked"),
    [
        (timedelta(days=29, hours=23), True),
        (timedelta(days=30), False),
        (-timedelta(days=29), True),
        (-timedelta(days=30), False),
    ],
    ids=["inside", "at-period", "earlier-complaint-late", "earlier-outside"],
)
def test_one_compensation_per_customer_per_period(gap, blocked):
    account = decided(Account("ann"), complaint("high")).account
    care = decided(account, complaint("critical", at=T0 + gap))
    assert care.decision.outcome == ("blocked" if blocked else "gift_card")
    if blocked:
        assert care.decision.reason == "customer_period"


def test_uncompensated_complaints_do_not_start_the_period():
    account = decided(Account("ann"), complaint("low")).account
    account = assess(account, complaint("high", at=T0 + timedelta(hours=1)), POLICY, NOW,
                     "budget_month").account  # fmt: skip
    care = decided(account, complaint("critical", at=T0 + timedelta(hours=2)))
    assert care.decision.outcome == "gift_card"


def test_a_complaint_is_compensated_at_most_once_ever_but_an_escalation_may_be():
    low = complaint("low", complaint_id="cmp-1")
    account = decided(Account("ann"), low).account
    escalated = complaint("high", complaint_id="cmp-1", event_id="e-cmp-1-escalated")
    paid = decided(account, escalated)
    assert paid.decision.outcome == "gift_card"
    again = complaint("critical", T0 + timedelta(days=90), complaint_id="cmp-1", event_id="e-3")
    repeat = decided(paid.account, again)
    assert (repeat.decision.outcome, repeat.decision.reason) == (
        "blocked", "complaint_already_compensated",
    )  # fmt: skip
    record = repeat.account.complaints["cmp-1"]
    assert (record.outcome, record.amount_cents, record.tier) == ("gift_card", 2_500, "high")
    assert record.event_ids == (low.event_id, escalated.event_id, again.event_id)


def test_a_replayed_complaint_event_changes_nothing_and_says_nothing():
    event = complaint("critical")
    account = decided(Account("ann"), event).account
    for grant in (None, GRANTED, "budget_day"):
        again = assess(account, event, POLICY, NOW + timedelta(days=1), grant)
        assert again.account is account
        assert (again.decision, again.order, again.request) == (None, None, None)


def test_ids_are_deterministic_and_the_idempotency_key_comes_from_the_complaint():
    a = decided(Account("ann"), complaint("high", complaint_id="cmp-9"))
    b = decided(Account("ann"), complaint("high", complaint_id="cmp-9"))
    assert a.decision == b.decision and a.order == b.order
    assert a.order.idempotency_key == idempotency_key("ann", "cmp-9")
    other = decided(Account("ann"), complaint("high", complaint_id="cmp-10"))
    assert other.order.idempotency_key != a.order.idempotency_key
    assert other.decision.reward_id != a.decision.reward_id


def test_the_experiment_arm_is_deterministic_and_close_to_its_share():
    ids = [f"cmp-{i}" for i in range(10_000)]
    policy = CompensationPolicy(discount_share=0.3)
    arms = [arm_for(i, policy) for i in ids]
    assert arms == [arm_for(i, policy) for i in ids]
    assert 0.28 < arms.count("discount") / len(ids) < 0.32
    assert {arm_for(i, CompensationPolicy(discount_share=0.0)) for i in ids} == {"gift_card"}
    assert {arm_for(i, CompensationPolicy(discount_share=1.0)) for i in ids} == {"discount"}
    redrawn = [arm_for(i, dataclasses.replace(policy, experiment="v2")) for i in ids]
    assert redrawn != arms


def test_the_discount_arm_gets_a_decision_but_no_gift_card_order():
    policy = CompensationPolicy(discount_share=1.0)
    care = decided(Account("ann"), complaint("medium"), policy)
    assert (care.decision.outcome, care.decision.arm, care.decision.amount_cents) == (
        "discount", "discount", 1_000,
    )  # fmt: skip
    assert care.order is None and care.decision.reward_id


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_discount_codes_are_stable_and_depend_on_the_secret(complaint_id, other_id):
    code = discount_code(b"k" * 32, complaint_id)
    assert code == discount_code(b"k" * 32, complaint_id)
    assert code.startswith("SORRY-") and len(code) == 23
    assert code != discount_code(b"j" * 32, complaint_id)
    if other_id != complaint_id:
        assert code != discount_code(b"k" * 32, other_id)


POLICIES = Policies(PointsPolicy(rates={"EUR": EarnRate(1, 100)}), compensation=VIP)


def test_settle_reserves_then_decides_with_the_customers_spend_of_the_same_batch():
    buy = Purchase(event_id="p-1", occurred_at=T0, customer_id="ann", type="purchase",
                   order_id="o-1", amount_cents=80_000, currency="EUR")  # fmt: skip
    complained = complaint("high")
    events: list[Purchase | Complaint] = [buy, complained]
    first = settle(Account("ann"), events, NOW, POLICIES)
    assert [r.amount_cents for r in first.budget_requests] == [7_500]
    assert first.decisions == () and first.orders == ()
    final = settle(Account("ann"), events, NOW, POLICIES, grants={complained.event_id: GRANTED})
    assert final.budget_requests == ()
    assert [(d.outcome, d.tier) for d in final.decisions] == [("gift_card", "vip")]
    assert [o.amount_cents for o in final.orders] == [7_500]
    assert final.account.complaints[complained.complaint_id].compensated
    assert final.account.points.pending == 800  # the points of the same batch are still there
    replay = settle(final.account, events, NOW, POLICIES, grants={})
    assert (replay.decisions, replay.orders, replay.budget_requests) == ((), (), ())


def test_accounts_with_complaints_survive_the_table_encoding():
    account = settle(Account("ann"), [complaint("low")], NOW, POLICIES).account
    raw = msgspec.msgpack.encode(account)
    assert msgspec.msgpack.decode(raw, type=Account) == account
    old = msgspec.msgpack.encode(["ann", [5]])  # before complaints existed (fields are appended)
    assert msgspec.msgpack.decode(old, type=Account) == Account("ann", PointsState(pending=5))


def settle_rounds(events: list[Any], answers: dict[str, str]) -> tuple[Any, list[str]]:
    """What the worker does: settle, answer the budget requests, settle again until none waits;
    returns the final settlement and the event ids that asked for budget, in order."""
    asked: list[str] = []
    grants: dict[str, str] = {}
    while True:
        done = settle(Account("ann"), events, NOW, POLICIES, grants=grants)
        waiting = [r.event_id for r in done.budget_requests if r.event_id not in grants]
        if not waiting:
            return done, asked
        asked += waiting
        grants |= {e: answers.get(e, GRANTED) for e in waiting}


def test_a_second_complaint_in_the_same_batch_never_reserves_budget_it_cannot_use():
    first, second = complaint("high", complaint_id="k1"), complaint("critical", complaint_id="k2")
    done, asked = settle_rounds([first, second], {})
    assert asked == [first.event_id]  # the second waits on the first, assumed granted
    assert [(d.complaint_id, d.reason) for d in done.decisions] == [
        ("k1", "compensated"), ("k2", "customer_period"),
    ]  # fmt: skip
    assert {r.outcome for r in done.account.complaints.values()} == {"gift_card", "blocked"}


def test_when_the_first_is_refused_the_next_one_asks_in_another_round():
    first, second = complaint("high", complaint_id="k1"), complaint("critical", complaint_id="k2")
    escalated = complaint("critical", complaint_id="k1", event_id="e-k1-2")
    done, asked = settle_rounds([first, escalated, second], {first.event_id: "budget_day"})
    assert asked == [first.event_id, escalated.event_id]
    assert [(d.source_event_id, d.outcome, d.reason) for d in done.decisions] == [
        (first.event_id, "blocked", "budget_day"),
        (escalated.event_id, "gift_card", "compensated"),
        (second.event_id, "blocked", "customer_period"),
    ]
    assert "pending" not in {r.outcome for r in done.account.complaints.values()}
