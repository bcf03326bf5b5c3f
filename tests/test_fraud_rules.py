"""Fraud rules: each fires alone with its evidence, weights and thresholds decide, policy checks."""

from __future__ import annotations

from datetime import timedelta

import pytest

from processors.fraud import (
    DEFAULT_WEIGHTS,
    RULES,
    FraudFacts,
    FraudPolicy,
    SharedSignal,
    evaluate,
    iso_duration,
    strictest,
)

POLICY = FraudPolicy(velocity_limits={"referrer": 3, "ip": 2, "device": 1})
HASH = "ab" * 32


def facts(**fields) -> FraudFacts:
    return FraudFacts(**{"subject": "signup", "referrer_id": "c-1", "referee_id": "c-2", **fields})


CASES = [
    ("same_customer", facts(referee_id="c-1"), {"customer_id": "c-1"}),
    *[
        (f"same_{kind}", facts(shared=(SharedSignal(kind, HASH),)),
         {"signal": kind, "hash": HASH[:16]})
        for kind in ("email", "device", "payment", "address", "ip_ua")
    ],
    ("disposable_email", facts(disposable_domain="mailinator.com"), {"domain": "mailinator.com"}),
    ("referrer_velocity", facts(velocity={"referrer": 4}),
     {"count": "4", "limit": "3", "window": "P1D"}),
    ("ip_velocity", facts(velocity={"ip": 3}), {"count": "3", "limit": "2", "window": "P1D"}),
    ("device_velocity", facts(velocity={"device": 2}),
     {"count": "2", "limit": "1", "window": "P1D"}),
    ("referral_ring", facts(ring=("c-2", "c-1", "c-2")), {"cycle": "c-2>c-1>c-2"}),
    ("referrer_rejected", facts(rejected=("referrer",)), {"role": "referrer"}),
    ("referee_rejected", facts(rejected=("referee",)), {"role": "referee"}),
]  # fmt: skip


def test_every_rule_has_a_case_and_a_default_weight():
    assert sorted(rule for rule, _, _ in CASES) == sorted(RULES) == sorted(DEFAULT_WEIGHTS)


@pytest.mark.parametrize(("rule", "given", "evidence"), CASES, ids=[c[0] for c in CASES])
def test_each_rule_fires_alone_with_its_evidence(rule, given, evidence):
    verdict = evaluate(given, POLICY)
    assert [(h.rule, h.weight, dict(h.evidence)) for h in verdict.hits] == [
        (rule, DEFAULT_WEIGHTS[rule], evidence)
    ]
    assert verdict.score == DEFAULT_WEIGHTS[rule]


def test_clean_facts_fire_nothing_and_are_approved():
    verdict = evaluate(facts(velocity={"referrer": 3, "ip": 2, "device": 1}), POLICY)
    assert (verdict.decision, verdict.score, verdict.hits) == ("approve", 0, ())


@pytest.mark.parametrize(("weights", "decision"), [
    ({"same_device": 39.999}, "approve"), ({"same_device": 40}, "review"),
    ({"same_device": 79.9}, "review"), ({"same_device": 80}, "reject"),
])  # fmt: skip
def test_thresholds_are_inclusive(weights, decision):
    policy = FraudPolicy(weights={**DEFAULT_WEIGHTS, **weights})
    verdict = evaluate(facts(shared=(SharedSignal("device", HASH),)), policy)
    assert verdict.decision == decision
    assert (verdict.review_at, verdict.reject_at) == (40, 80)


def test_scores_add_up_in_rule_order_and_a_zero_weight_silences_a_rule():
    given = facts(ring=("c-2", "c-1", "c-2"), shared=(SharedSignal("address", HASH),))
    verdict = evaluate(given, POLICY)
    assert [h.rule for h in verdict.hits] == ["same_address", "referral_ring"]
    assert (verdict.score, verdict.decision) == (110, "reject")
    quiet = evaluate(given, FraudPolicy(weights={**DEFAULT_WEIGHTS, "referral_ring": 0}))
    assert [h.rule for h in quiet.hits] == ["same_address"]
    assert quiet.decision == "review"


def test_a_repeated_signal_counts_once():
    twice = (SharedSignal("device", HASH), SharedSignal("device", "cd" * 32))
    assert evaluate(facts(shared=twice), POLICY).score == DEFAULT_WEIGHTS["same_device"]


def test_strictest_decision_wins():
    assert strictest() == "approve"
    assert strictest("approve", "review") == "review"
    assert strictest("reject", "approve", "review") == "reject"


@pytest.mark.parametrize(("span", "text"), [
    (timedelta(days=1), "P1D"), (timedelta(hours=6), "PT6H"),
    (timedelta(days=1, minutes=30), "P1DT30M"),
    (timedelta(seconds=90), "PT1M30S"), (timedelta(0), "PT0S"),
])  # fmt: skip
def test_windows_are_written_as_iso_durations(span, text):
    assert iso_duration(span) == text


@pytest.mark.parametrize("bad", [
    {"review_at": 90, "reject_at": 80}, {"review_at": -1}, {"weights": {"made_up": 1.0}},
    {"weights": {"same_email": -5.0}}, {"velocity_limits": {"ip": 0}}, {"ring_depth": 1},
])  # fmt: skip
def test_a_policy_that_cannot_mean_what_it_says_is_refused(bad):
    with pytest.raises(ValueError):
        FraudPolicy(**bad)


def test_a_disposable_address_alone_is_approved_and_with_one_more_signal_reviewed():
    """The chosen default (deploy/README.md, fraud rules): a privacy alias is not fraud."""
    alone = facts(disposable_domain="mailinator.com")
    assert evaluate(alone, FraudPolicy()).decision == "approve"
    with_ip = facts(disposable_domain="mailinator.com", shared=(SharedSignal("ip_ua", HASH),))
    assert evaluate(with_ip, FraudPolicy()).decision == "review"
    stricter = FraudPolicy(weights={**DEFAULT_WEIGHTS, "disposable_email": 40.0})
    assert evaluate(alone, stricter).decision == "review"
