"""The referral state machine, caps and cancellations, through `settle` (pure, no services)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from msgspec.structs import replace

from processors.account import Account
from processors.points import EarnRate, PointsPolicy
from processors.referral_rings import ring_edges
from processors.referrals import Cap, ReferralPolicy, referral_key, referral_order_id
from processors.settlement import Event, Policies, Settlement, settle
from schemas.models import Decision, FraudDecision, OperatorDecision, Purchase, ReferralCommand

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
HOLD = timedelta(days=14)
POLICIES = Policies(
    PointsPolicy(rates={"EUR": EarnRate(1, 100)}, hold=HOLD),
    ReferralPolicy(
        referrer_points=500,
        referee_points=300,
        min_amount_cents={"EUR": 2000},
        window=timedelta(days=30),
        hold=HOLD,
        caps=(Cap(timedelta(days=30), 2, 10_000), Cap(timedelta(days=365), 10, 1_200)),
    ),
)
KEY = referral_key("alice", "bob")


def signup(
    referrer: str = "alice", at: datetime = T0, decision: Decision = "approve", **kw: Any
) -> ReferralCommand:
    """A sign-up command for referee bob (or `customer_id`)."""
    referee = kw.pop("customer_id", "bob")
    return ReferralCommand(
        event_id=f"rc-{referrer}-{referee}-{at.isoformat()}",
        occurred_at=at,
        command="signup",
        customer_id=referee,
        referral_key=referral_key(referrer, referee),
        referrer_id=referrer,
        referee_id=referee,
        source_event_id=kw.pop("source", f"su-{referrer}-{at.isoformat()}"),
        decision=decision,
        score=0.0,
        alert_id="fa-1",
        **kw,
    )


def buy(
    order: str, cents: int = 4000, at: datetime = T0 + timedelta(days=1), **kw: Any
) -> Purchase:
    """A purchase by bob."""
    return Purchase(
        event_id=f"p-{order}", occurred_at=at, customer_id=kw.pop("customer_id", "bob"),
        type="purchase", order_id=order, amount_cents=cents,
        currency=kw.pop("currency", "EUR"), **kw,
    )  # fmt: skip


def refund(order: str, cents: int, at: datetime, n: int = 1) -> Purchase:
    """A refund by bob."""
    return Purchase(
        event_id=f"r-{order}-{n}", occurred_at=at, customer_id="bob", type="refund",
        order_id=order, amount_cents=cents, currency="EUR",
    )  # fmt: skip


def decision(verdict: OperatorDecision, n: int = 1) -> FraudDecision:
    """An operator's decision on bob."""
    return FraudDecision(
        event_id=f"fd-{n}", occurred_at=T0 + timedelta(days=2), referee_id="bob",
        decision=verdict, operator="ops-ana",
    )  # fmt: skip


def run(
    events: list[Event],
    verdicts: dict[str, str] | None = None,
    account: Account | None = None,
    now: datetime = T0,
) -> Settlement:
    """Settle bob's (or the account's) events with conversions approved unless told otherwise."""
    base = account or Account("bob")
    verdicts = {"p-o1": "approve", "p-o2": "approve"} if verdicts is None else verdicts
    return settle(base, events, now, POLICIES, verdicts)


def test_an_honest_referral_credits_the_referee_and_commands_the_referrers_credit():
    done = run([signup(), buy("o1")])
    referral = done.account.referral.referee
    assert referral is not None and referral.status == "converted" and referral.order_id == "o1"
    credit = [e for e in done.entries if e.kind == "referral"]
    assert [(e.order_id, e.pending_delta) for e in credit] == [
        (referral_order_id(KEY, "referee"), 300)
    ]
    assert done.account.points.pending == 40 + 300
    (command,) = done.commands
    assert (command.command, command.customer_id, command.points) == (
        "credit_referrer",
        "alice",
        500,
    )
    assert command.release_at == T0 + timedelta(days=1) + HOLD
    assert [(r.role, r.status, r.points) for r in done.referral_rewards] == [
        ("referee", "credited", 300)
    ]


def test_the_referral_points_become_available_after_the_hold_and_are_announced():
    converted = run([signup(), buy("o1")])
    later = run([], account=converted.account, now=T0 + timedelta(days=16))
    assert later.account.points.available == 340 and later.account.points.pending == 0
    reasons = sorted(c.reason for c in later.credits)
    assert reasons == ["purchase_points_released", "referral_referee_released"]


def test_a_conversion_waits_for_a_fraud_verdict():
    done = run([signup(), buy("o1")], verdicts={})
    assert [c.purchase.event_id for c in done.checks] == ["p-o1"]
    assert done.commands == () and not [e for e in done.entries if e.kind == "referral"]
    assert (
        done.account.referral.referee is not None
        and done.account.referral.referee.status == "attributed"
    )


@pytest.mark.parametrize(
    ("purchase", "why"),
    [
        (buy("o1", cents=1999), "below the minimum"),
        (buy("o1", currency="USD"), "a currency without a minimum"),
        (buy("o1", at=T0 + timedelta(days=30, seconds=1)), "after the window"),
        (buy("o1", at=T0 - timedelta(seconds=1)), "before the sign-up"),
    ],
)
def test_a_purchase_that_does_not_qualify_does_not_convert(purchase, why):
    done = run([signup(), purchase], verdicts={purchase.event_id: "approve"})
    assert done.commands == (), why
    assert (
        done.account.referral.referee is not None
        and done.account.referral.referee.status == "attributed"
    ), why


def test_an_existing_customer_is_not_eligible():
    done = run([buy("o0", at=T0 - timedelta(days=3)), signup(), buy("o1")])
    assert done.account.referral.referee is None
    assert [(r.status, r.reason) for r in done.referral_rewards] == [
        ("ineligible", "existing_customer")
    ]


def test_the_first_referrer_wins_by_sign_up_time_until_conversion():
    late, early = signup("carol", at=T0 + timedelta(hours=1)), signup("alice", at=T0)
    done = run([late, early, buy("o1")])
    assert (
        done.account.referral.referee is not None
        and done.account.referral.referee.referrer_id == "alice"
    )
    assert ("ineligible", "earlier_referral") in [
        (r.status, r.reason) for r in done.referral_rewards
    ]
    after = run([signup("dave", at=T0 - timedelta(hours=1))], account=done.account)
    assert after.account.referral == done.account.referral
    assert [(r.status, r.reason) for r in after.referral_rewards] == [
        ("ineligible", "already_referred")
    ]


def test_a_purchase_processed_before_its_sign_up_still_converts():
    bought = run([buy("o1")])
    done = run([signup()], account=bought.account)
    assert (
        done.account.referral.referee is not None and done.account.referral.referee.order_id == "o1"
    )
    assert [c.command for c in done.commands] == ["credit_referrer"]


@pytest.mark.parametrize(("verdict", "status", "rejected"), [
    ("review", "held", ()), ("reject", "rejected", ("alice", "bob")),
])  # fmt: skip
def test_a_suspicious_conversion_is_held_or_rejected(verdict, status, rejected):
    done = run([signup(), buy("o1")], verdicts={"p-o1": verdict})
    assert (
        done.account.referral.referee is not None and done.account.referral.referee.status == status
    )
    assert done.commands == () and done.account.points.pending == 40
    assert done.fraud_rejected == rejected
    assert {r.status for r in done.referral_rewards} == {status}


def test_an_operator_approves_a_held_conversion_and_both_sides_are_credited():
    held = run([signup(decision="review"), buy("o1")])
    assert (
        held.account.referral.referee is not None and held.account.referral.referee.status == "held"
    )
    done = run([decision("approve")], account=held.account)
    assert (
        done.account.referral.referee is not None
        and done.account.referral.referee.status == "converted"
    )
    assert [c.command for c in done.commands] == ["credit_referrer"]
    assert done.account.points.pending == 40 + 300
    again = run([decision("approve")], account=done.account)
    assert again.account == done.account and again.commands == ()


def test_an_operator_rejects_a_reviewed_sign_up_before_it_converts():
    reviewed = run([signup(decision="review")])
    done = run([decision("reject"), buy("o1")], account=reviewed.account)
    assert (
        done.account.referral.referee is not None
        and done.account.referral.referee.status == "rejected"
    )
    assert done.commands == () and done.fraud_rejected == ("alice", "bob")


def test_a_decision_without_a_review_changes_nothing():
    converted = run([signup(), buy("o1")])
    done = run([decision("reject")], account=converted.account)
    assert done.account == converted.account and done.referral_rewards == ()


def test_a_refund_inside_the_hold_cancels_both_sides():
    converted = run([signup(), buy("o1")])
    done = run([refund("o1", 4000, T0 + timedelta(days=3))], account=converted.account)
    assert (
        done.account.referral.referee is not None
        and done.account.referral.referee.status == "cancelled"
    )
    assert done.account.points.pending == 0
    (command,) = done.commands
    assert (command.command, command.customer_id) == ("cancel_referrer", "alice")


@pytest.mark.parametrize(("cents", "at", "why"), [
    (1000, T0 + timedelta(days=3), "what is left still qualifies"),
    (4000, T0 + timedelta(days=1) + HOLD, "the hold had ended"),
])  # fmt: skip
def test_a_refund_that_leaves_the_referral_standing(cents, at, why):
    converted = run([signup(), buy("o1")])
    done = run([refund("o1", cents, at)], account=converted.account)
    assert done.commands == (), why
    assert (
        done.account.referral.referee is not None
        and done.account.referral.referee.status == "converted"
    ), why


def credit(key: str, at: datetime, points: int = 500) -> ReferralCommand:
    """A credit_referrer command for alice."""
    return ReferralCommand(
        event_id=f"cr-{key}", occurred_at=at, command="credit_referrer", customer_id="alice",
        referral_key=key, referrer_id="alice", referee_id=f"ee-{key}", source_event_id=f"p-{key}",
        points=points, release_at=at + HOLD, order_id=f"o-{key}",
    )  # fmt: skip


def settle_alice(events: list[Event], account: Account | None = None) -> Settlement:
    """Settle the referrer's commands."""
    return settle(account or Account("alice"), events, T0, POLICIES)


def test_referrer_credits_stop_at_the_count_cap_and_are_recorded_as_capped():
    days = [T0, T0 + timedelta(days=1), T0 + timedelta(days=2)]
    done = settle_alice([credit(f"k{i}", at) for i, at in enumerate(days)])
    assert done.account.points.pending == 1000
    assert [(r.status, r.reason) for r in done.referral_rewards] == [
        ("credited", None), ("credited", None), ("capped", "cap_count_30d"),
    ]  # fmt: skip


def test_the_cap_window_rolls():
    first = settle_alice([credit("k0", T0), credit("k1", T0 + timedelta(days=1))])
    later = settle_alice([credit("k2", T0 + timedelta(days=31), 100)], account=first.account)
    assert [r.status for r in later.referral_rewards] == ["credited"]


def test_referrer_credits_stop_at_the_points_cap():
    done = settle_alice([credit("k0", T0, 1000), credit("k1", T0 + timedelta(days=40), 500)])
    assert [(r.status, r.reason) for r in done.referral_rewards] == [
        ("credited", None), ("capped", "cap_points_365d"),
    ]  # fmt: skip


def test_a_cancelled_referrer_credit_is_reversed_and_no_longer_counts():
    credited = settle_alice([credit("k0", T0)])
    cancel = replace(
        credit("k0", T0 + timedelta(days=2)),
        event_id="cc-k0",
        command="cancel_referrer",
        points=None,
        release_at=None,
    )
    done = settle_alice(
        [cancel, credit("k1", T0 + timedelta(days=3)), credit("k2", T0 + timedelta(days=4))],
        account=credited.account,
    )
    assert done.account.points.pending == 1000
    assert [r.status for r in done.referral_rewards] == ["cancelled", "credited", "credited"]


def test_replaying_every_step_changes_nothing():
    events: list[Event] = [signup(), buy("o1"), refund("o1", 4000, T0 + timedelta(days=3))]
    once = run(events)
    twice = run(events, account=once.account)
    assert twice.account == once.account
    assert twice.entries == () and twice.commands == ()
    alice = settle_alice([credit("k0", T0)])
    assert settle_alice([credit("k0", T0)], account=alice.account).account == alice.account


@pytest.mark.parametrize("caps", [(), POLICIES.referrals.caps], ids=["no caps", "caps"])
def test_a_referrers_held_credit_is_cancelled_whatever_the_caps(caps):
    policies = dataclasses.replace(
        POLICIES, referrals=dataclasses.replace(POLICIES.referrals, caps=caps)
    )
    credited = settle(Account("alice"), [credit("k0", T0)], T0, policies)
    assert credited.account.points.pending == 500
    cancel = replace(
        credit("k0", T0 + timedelta(days=3)), event_id="cc-k0", command="cancel_referrer",
        points=None, release_at=None,
    )  # fmt: skip
    done = settle(credited.account, [cancel], T0 + timedelta(days=3), policies)
    assert done.account.points.pending == 0 and done.account.points.available == 0
    assert [r.status for r in done.referral_rewards] == ["cancelled"]


def test_a_released_referrer_credit_is_forgotten_without_caps():
    policies = dataclasses.replace(
        POLICIES, referrals=dataclasses.replace(POLICIES.referrals, caps=())
    )
    credited = settle(Account("alice"), [credit("k0", T0)], T0, policies)
    released = settle(credited.account, [], T0 + HOLD + timedelta(days=1), policies)
    assert released.account.points.available == 500 and released.account.referral.grants == ()


def ring_review(n: int = 1, at: datetime = T0 + timedelta(days=2)) -> ReferralCommand:
    """The scorer found a cycle through alice -> bob."""
    return ReferralCommand(
        event_id=f"rr-{n}", occurred_at=at, command="ring_review", customer_id="bob",
        referral_key=KEY, referrer_id="alice", referee_id="bob", source_event_id="su-ring",
        alert_id="fa-ring",
    )  # fmt: skip


def test_ring_edges_are_the_cycle_but_the_new_sign_up():
    assert ring_edges(("a", "b", "a"), "b", "a") == [("a", "b")]
    assert ring_edges(("x", "y", "z", "x"), "z", "x") == [("x", "y"), ("y", "z")]
    assert ring_edges((), "a", "b") == []


def test_a_ring_edge_not_yet_converted_waits_for_an_operator_at_conversion():
    attributed = run([signup()])
    flagged = run([ring_review()], account=attributed.account)
    assert (
        flagged.account.referral.referee is not None
        and flagged.account.referral.referee.decision == "review"
    )
    converted = run([buy("o1")], account=flagged.account)
    assert converted.account.referral.referee is not None
    assert (
        converted.account.referral.referee.status == "held"
        and converted.account.points.pending == 40
    )
    assert {r.status for r in converted.referral_rewards} == {"held"}


def test_a_converted_ring_edge_gives_back_both_rewards_once():
    converted = run([signup(), buy("o1")])
    assert converted.account.points.pending == 340
    done = run([ring_review()], account=converted.account)
    assert done.account.points.pending == 40
    assert (
        done.account.referral.referee is not None
        and done.account.referral.referee.status == "cancelled"
    )
    (command,) = done.commands
    assert (command.command, command.customer_id, command.alert_id) == (
        "cancel_referrer", "alice", "fa-ring",
    )  # fmt: skip
    assert [(r.status, r.reason) for r in done.referral_rewards] == [("cancelled", "referral_ring")]
    again = run([ring_review(2)], account=done.account)
    assert again.account == done.account and again.commands == () and again.entries == ()
    referrer = settle_alice([credit("k0", T0)])
    cancelled = settle_alice([replace(command, referral_key="k0")], account=referrer.account)
    assert cancelled.account.points.pending == 0
    assert [r.reason for r in cancelled.referral_rewards] == ["referral_ring"]


def test_a_ring_edge_whose_rewards_were_released_stays_paid_and_is_reported_once():
    converted = run([signup(), buy("o1")])
    released = run([], account=converted.account, now=T0 + timedelta(days=1) + HOLD)
    assert released.account.points.available == 340
    late = run([ring_review(at=T0 + HOLD * 2)], account=released.account)
    assert late.account.points.available == 340 and late.entries == () and late.commands == ()
    assert [(r.status, r.reason) for r in late.referral_rewards] == [("kept", "after_release")]
    again = run([ring_review(2, at=T0 + HOLD * 2)], account=late.account)
    assert again.account == late.account and again.referral_rewards == ()


def rescore(
    decision: Decision, n: int = 1, at: datetime = T0 + timedelta(days=2)
) -> ReferralCommand:
    """Late evidence against alice -> bob."""
    return ReferralCommand(
        event_id=f"rs-{n}", occurred_at=at, command="rescore", customer_id="bob",
        referral_key=KEY, referrer_id="alice", referee_id="bob", source_event_id=f"p-late-{n}",
        decision=decision, score=90.0 if decision == "reject" else 70.0, alert_id="fa-late",
    )  # fmt: skip


@pytest.mark.parametrize(("before", "decision", "status", "outcome", "remembered"), [
    ([signup()], "review", "attributed", None, ()),
    ([signup()], "reject", "rejected", "rejected", ("alice", "bob")),
    ([signup(decision="review"), buy("o1")], "reject", "rejected", "rejected", ("alice", "bob")),
    ([signup(), buy("o1")], "review", "cancelled", "cancelled", ()),
    ([signup(), buy("o1")], "reject", "cancelled", "cancelled", ("alice", "bob")),
])  # fmt: skip
def test_late_evidence_acts_on_the_referral_as_far_as_it_got(
    before, decision, status, outcome, remembered
):
    start = run(before)
    done = run([rescore(decision)], account=start.account)
    referral = done.account.referral.referee
    assert referral is not None and referral.status == status
    assert {r.status for r in done.referral_rewards} == ({outcome} if outcome else set())
    assert all(r.reason == "fraud_late_evidence" for r in done.referral_rewards)
    assert set(done.fraud_rejected) == set(remembered)
    assert done.account.points.pending == (40 if before[-1] != signup() else 0)
    again = run([rescore(decision, 2)], account=done.account)
    assert again.account == done.account and again.referral_rewards == () and again.commands == ()


def test_weaker_late_evidence_changes_nothing():
    start = run([signup(decision="review")])
    done = run([rescore("review")], account=start.account)
    assert done.account == start.account
