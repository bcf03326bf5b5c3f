"""Referrals end to end: real broker and Redis, the worker a subprocess, the CLI for reviews."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import orjson
import pytest

from streams.adapters.topic_reader import read_topic
from streams.settings_env import settings_env
from tests.events import new_id, referral
from tests.support import REPO, eventually, publish, settled
from tests.test_points_pipeline import ago, buy, http_balance, refund, send, topic_records

pytestmark = [pytest.mark.integration, pytest.mark.redis]


def signed_up(referrer: str, referee: str, **context: Any) -> dict[str, Any]:
    """`referee` signs up with `referrer`'s code, with the given session context."""
    return referral(type="signed_up", referrer_id=referrer, referee_id=referee,
                    occurred_at=ago(timedelta(0)), context=context)  # fmt: skip


def refer(settings, *events: dict[str, Any]) -> None:
    publish(settings, "referrals", [(e["referrer_id"].encode(), orjson.dumps(e)) for e in events])


def decisions(worker) -> float:
    return float(worker.total("rewards_fraud_decisions_total"))


def decided(worker, count: int) -> None:
    """Wait until the worker has made `count` fraud decisions."""
    eventually(lambda: decisions(worker) == count)


def rewards_of(settings, count: int) -> list[dict[str, Any]]:
    """Wait for `count` referral-rewards records (schema-checked) and return them."""

    def found() -> list[dict[str, Any]]:
        records = topic_records(settings, "referral-rewards")
        assert len(records) == count, f"{len(records)} of {count} referral rewards"
        return records

    return eventually(found)


def outcomes(records: list[dict[str, Any]]) -> set[tuple[str, str, str, int]]:
    return {(r["customer_id"], r["role"], r["status"], r["points"]) for r in records}


def pending(worker, customer: str) -> int:
    status, body = http_balance(worker, customer)
    assert status == 200, body
    return int(body["pending"])


def alerts_by_referee(settings) -> dict[str, dict[str, Any]]:
    return {a["referee_id"]: a for a in topic_records(settings, "fraud-alerts")}


def test_an_honest_referral_rewards_both_sides_once_even_when_replayed(settings, start_worker):
    settings = settings.model_copy(update={"dedupe_ttl_s": 1})
    worker = start_worker(settings)
    alice, bob = new_id("alice"), new_id("bob")
    signup = signed_up(alice, bob, email="bob@example.org", ip="203.0.113.7", device_id="d-bob")
    bought = buy(bob, 4000)
    refer(settings, signup)
    eventually(
        lambda: worker.total("rewards_events_processed_total", topic="referral-commands") == 1
    )
    send(settings, bought)
    assert outcomes(rewards_of(settings, 2)) == {
        (bob, "referee", "credited", 500), (alice, "referrer", "credited", 500),
    }  # fmt: skip
    eventually(lambda: pending(worker, bob) == 40 + 500 and pending(worker, alice) == 500)
    referral_entries = [
        e for e in topic_records(settings, "points-ledger") if e["kind"] == "referral"
    ]
    assert {(e["customer_id"], e["pending_delta"]) for e in referral_entries} == {
        (bob, 500),
        (alice, 500),
    }
    assert topic_records(settings, "fraud-alerts") == []  # approved: no alert by default

    time.sleep(1.5)  # past the marks' TTL: the same event ids are new to the worker again
    refer(settings, signup)
    send(settings, bought)
    settled(worker, 7)  # signup, its command, purchase, credit command; then the replayed three
    assert len(read_topic(settings, settings.topic("referral-rewards"))) == 2
    ledger = topic_records(settings, "points-ledger")
    assert len([e for e in ledger if e["kind"] == "referral"]) == 2
    assert pending(worker, bob) == 540 and pending(worker, alice) == 500


def test_a_refund_inside_the_hold_cancels_both_rewards(settings, start_worker):
    worker = start_worker(settings)
    alice, bob = new_id("alice"), new_id("bob")
    refer(settings, signed_up(alice, bob, email="b2@example.org"))
    eventually(
        lambda: worker.total("rewards_events_processed_total", topic="referral-commands") == 1
    )
    bought = buy(bob, 2500)
    send(settings, bought)
    rewards_of(settings, 2)
    send(settings, refund(bought, 1000))  # EUR 15 left: below the EUR 20 minimum
    cancelled = [r for r in rewards_of(settings, 4) if r["status"] == "cancelled"]
    assert {(r["customer_id"], r["role"]) for r in cancelled} == {
        (bob, "referee"),
        (alice, "referrer"),
    }
    eventually(lambda: pending(worker, alice) == 0 and pending(worker, bob) == 25 - 10)


SIGNALS: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    # rule: (the referrer's purchase context, the referee's sign-up context, expected decision)
    "same_email": (
        {"email": "Ann.Lee+shop@gmail.com"}, {"email": " annlee@GoogleMail.com"}, "reject"
    ),
    "same_device": ({"device_id": "dev-7f3a"}, {"device_id": "dev-7f3a"}, "review"),
    "same_payment": (
        {"payment_fingerprint": "fp_9Qx"}, {"payment_fingerprint": "fp_9Qx"}, "reject"
    ),
    "same_address": (
        {"shipping_address": {"line1": "12 Baker Street", "postal_code": "NW1 6XE",
                              "city": "London", "country": "GB"}},
        {"shipping_address": {"line1": "12 baker st.", "postal_code": "nw16xe",
                              "city": "LONDON", "country": "GB"}},
        "review",
    ),
    "same_ip_ua": (
        {"ip": "198.51.100.9", "user_agent": "Mozilla/5.0 (X11) Firefox/140.0"},
        {"ip": "198.51.100.9", "user_agent": "mozilla/5.0 (x11)  firefox/140.0"},
        "review",
    ),
    "disposable_email": ({}, {"email": "someone@mailinator.com"}, "approve"),
}  # fmt: skip


def test_each_self_referral_signal_is_caught_and_explained(settings, start_worker):
    settings = settings.model_copy(update={"fraud_alert_on_approve": True})
    worker = start_worker(settings)
    pairs = {rule: (new_id("rr"), new_id("ee")) for rule in SIGNALS}
    send(
        settings, *(buy(pairs[rule][0], 1000, context=ctx) for rule, (ctx, _, _) in SIGNALS.items())
    )
    eventually(
        lambda: worker.total("rewards_events_processed_total", topic="purchases") == len(SIGNALS)
    )
    self_ref = new_id("self")
    refer(settings, signed_up(self_ref, self_ref), *(
        signed_up(pairs[rule][0], pairs[rule][1], **ctx) for rule, (_, ctx, _) in SIGNALS.items()
    ))  # fmt: skip
    eventually(lambda: decisions(worker) == len(SIGNALS) + 1)
    alerts = alerts_by_referee(settings)
    assert [h["rule"] for h in alerts[self_ref]["rules"]] == ["same_customer"]
    assert alerts[self_ref]["decision"] == "reject"
    for rule, (_, _, decision) in SIGNALS.items():
        alert = alerts[pairs[rule][1]]
        assert [h["rule"] for h in alert["rules"]] == [rule], alert
        assert alert["decision"] == decision, alert
        assert alert["thresholds"] == {"review": 40.0, "reject": 80.0}
    alerts_raw = read_topic(settings, settings.topic("fraud-alerts"))
    raw = b"".join(m.value() or b"" for m in alerts_raw).lower()
    for secret in (b"annlee", b"198.51.100.9", b"baker", b"fp_9qx", b"dev-7f3a"):
        assert secret not in raw  # evidence is keyed hashes only
    hashed = alerts[pairs["same_device"][1]]["rules"][0]["evidence"]
    assert hashed["signal"] == "device" and len(hashed["hash"]) == 16


def test_tag_aliases_on_regional_provider_domains_are_the_same_email(settings, start_worker):
    worker = start_worker(settings)
    domains = ("yahoo.fr", "hotmail.fr", "outlook.de", "live.co.uk", "yahoo.co.uk")
    pairs = {d: (new_id("rr"), new_id("ee")) for d in domains}
    send(settings, *(buy(r, 1000, context={"email": f"name.{n}@{d}"})
                     for n, (d, (r, _)) in enumerate(pairs.items())))  # fmt: skip
    eventually(
        lambda: worker.total("rewards_events_processed_total", topic="purchases") == len(domains)
    )
    refer(settings, *(signed_up(r, e, email=f"Name.{n}+promo@{d.upper()}")
                      for n, (d, (r, e)) in enumerate(pairs.items())))  # fmt: skip
    eventually(lambda: decisions(worker) == len(domains))
    alerts = alerts_by_referee(settings)
    for referrer, referee in pairs.values():
        assert [h["rule"] for h in alerts[referee]["rules"]] == ["same_email"], referrer
        assert alerts[referee]["decision"] == "reject"


def test_a_refund_cancels_the_referrers_reward_with_the_caps_off(settings, start_worker):
    worker = start_worker(settings.model_copy(update={"referral_caps": ()}))
    alice, bob = new_id("alice"), new_id("bob")
    refer(settings, signed_up(alice, bob, email="b3@example.org"))
    eventually(lambda: decisions(worker) == 1)
    bought = buy(bob, 2500)
    send(settings, bought)
    rewards_of(settings, 2)
    eventually(lambda: pending(worker, alice) == 500)
    send(settings, refund(bought, 1000))
    cancelled = [r for r in rewards_of(settings, 4) if r["status"] == "cancelled"]
    assert {(r["customer_id"], r["role"]) for r in cancelled} == {
        (bob, "referee"),
        (alice, "referrer"),
    }
    eventually(lambda: pending(worker, alice) == 0 and pending(worker, bob) == 15)


def test_rings_and_velocity_are_caught(settings, start_worker):
    limits = {"referrer": 2, "ip": 2, "device": 9}
    settings = settings.model_copy(
        update={"fraud_velocity_limits": limits, "fraud_alert_on_approve": True}
    )
    worker = start_worker(settings)
    a, b, x, y, z, v = (new_id(n) for n in "abxyzv")
    steps = [
        signed_up(a, b), signed_up(b, a),                       # mutual
        signed_up(x, y), signed_up(y, z), signed_up(z, x),      # a 3-cycle
        *(signed_up(v, new_id("vr"), ip=f"192.0.2.{i}") for i in range(3)),   # one referrer
        *(signed_up(new_id("ir"), new_id("ie"), ip="203.0.113.99") for _ in range(3)),  # one IP
    ]  # fmt: skip
    for n, step in enumerate(steps, 1):  # one at a time: velocity counts what came before
        refer(settings, step)
        decided(worker, n)
    alerts = alerts_by_referee(settings)
    assert alerts[a]["rules"][0]["evidence"] == {"cycle": f"{a}>{b}>{a}"}
    assert alerts[x]["rules"][0]["evidence"] == {"cycle": f"{x}>{y}>{z}>{x}"}
    assert [h["rule"] for h in alerts[a]["rules"]] == ["referral_ring"]
    third_of_v = alerts[steps[7]["referee_id"]]
    assert [h["rule"] for h in third_of_v["rules"]] == ["referrer_velocity"]
    assert third_of_v["rules"][0]["evidence"]["count"] == "3"
    third_on_ip = alerts[steps[10]["referee_id"]]
    assert [h["rule"] for h in third_on_ip["rules"]] == ["ip_velocity"]
    assert worker.total("rewards_fraud_rule_hits_total", rule="referral_ring") == 2


@pytest.mark.parametrize("closing", ["b refers a last", "a refers b last"])
def test_a_ring_holds_every_edge_whichever_sign_up_closes_it(settings, start_worker, closing):
    worker = start_worker(settings)
    a, b = new_id("a"), new_id("b")
    first, second = (signed_up(a, b), signed_up(b, a))
    if closing == "a refers b last":
        first, second = second, first
    for n, step in enumerate((first, second), 1):
        refer(settings, step)
        decided(worker, n)
    send(settings, buy(a, 4000), buy(b, 4000))
    assert outcomes(rewards_of(settings, 4)) == {
        (a, "referee", "held", 0), (b, "referrer", "held", 0),
        (b, "referee", "held", 0), (a, "referrer", "held", 0),
    }  # fmt: skip
    eventually(lambda: pending(worker, a) == 40 and pending(worker, b) == 40)


def test_a_ring_found_after_a_conversion_takes_back_the_held_rewards(settings, start_worker):
    worker = start_worker(settings)
    a, b = new_id("a"), new_id("b")
    refer(settings, signed_up(a, b))
    eventually(lambda: decisions(worker) == 1)
    send(settings, buy(b, 4000))
    rewards_of(settings, 2)
    eventually(lambda: pending(worker, b) == 540 and pending(worker, a) == 500)
    refer(settings, signed_up(b, a))  # closes the cycle: a>b>a
    found = [r for r in rewards_of(settings, 4) if r["status"] == "cancelled"]
    assert {(r["customer_id"], r["role"], r["status"], r["reason"]) for r in found} == {
        (b, "referee", "cancelled", "referral_ring"), (a, "referrer", "cancelled", "referral_ring"),
    }  # fmt: skip
    eventually(lambda: pending(worker, b) == 40 and pending(worker, a) == 0)
    (alert,) = [x for x in topic_records(settings, "fraud-alerts") if x["referee_id"] == a]
    assert (
        alert["decision"] == "review" and alert["rules"][0]["evidence"]["cycle"] == f"{a}>{b}>{a}"
    )
    send(settings, buy(a, 4000))  # the closing edge converts: held for an operator
    held = [r for r in rewards_of(settings, 6) if r["status"] == "held"]
    assert outcomes(held) == {(a, "referee", "held", 0), (b, "referrer", "held", 0)}


@pytest.mark.parametrize("late", ["before the conversion", "after the conversion"])
def test_a_signal_the_referrer_shows_later_is_late_evidence(settings, start_worker, late):
    worker = start_worker(settings)
    alice, bob = new_id("alice"), new_id("bob")
    refer(settings, signed_up(alice, bob, device_id="dev-shared-1"))  # alice unknown yet: approve
    eventually(lambda: decisions(worker) == 1)
    alices = buy(alice, 1000, context={"device_id": "dev-shared-1"})
    if late == "before the conversion":
        send(settings, alices)
        eventually(lambda: len(topic_records(settings, "fraud-alerts")) == 1)
        send(settings, buy(bob, 4000))
        assert outcomes(rewards_of(settings, 2)) == {
            (bob, "referee", "held", 0), (alice, "referrer", "held", 0),
        }  # fmt: skip
    else:
        send(settings, buy(bob, 4000))
        rewards_of(settings, 2)
        eventually(lambda: pending(worker, bob) == 540 and pending(worker, alice) == 500)
        send(settings, alices)
        cancelled = [r for r in rewards_of(settings, 4) if r["status"] == "cancelled"]
        assert {(r["customer_id"], r["role"], r["reason"]) for r in cancelled} == {
            (bob, "referee", "fraud_late_evidence"), (alice, "referrer", "fraud_late_evidence"),
        }  # fmt: skip
    eventually(lambda: pending(worker, bob) == 40 and pending(worker, alice) == 10)
    (alert,) = topic_records(settings, "fraud-alerts")
    assert (alert["subject"], alert["decision"], alert["referee_id"]) == (
        "late_evidence", "review", bob,
    )  # fmt: skip
    assert [h["rule"] for h in alert["rules"]] == ["same_device"]
    assert alert["source_event_id"] == alices["event_id"]


def decide(settings, verdict: str, referee: str) -> None:
    """`rewards decide` as an operator would run it."""
    cmd = [sys.executable, "-m", "streams.cli", "decide", verdict, "--referee", referee,
           "--operator", "ops-test", "--reason", "checked the order history"]  # fmt: skip
    done = subprocess.run(
        cmd, env=settings_env(settings), cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_reviews_are_decided_by_an_operator_with_the_cli(settings, start_worker):
    worker = start_worker(settings)
    referrer, good, bad = new_id("p"), new_id("good"), new_id("bad")
    send(settings, buy(referrer, 1000, context={"device_id": "dev-family-tablet"}))
    eventually(lambda: worker.total("rewards_events_processed_total", topic="purchases") == 1)
    refer(settings, *(signed_up(referrer, r, device_id="dev-family-tablet") for r in (good, bad)))
    eventually(
        lambda: worker.total("rewards_events_processed_total", topic="referral-commands") == 2
    )
    send(settings, buy(good, 3000), buy(bad, 3000))
    held = rewards_of(settings, 4)
    assert {r["status"] for r in held} == {"held"}
    assert {a["decision"] for a in alerts_by_referee(settings).values()} == {"review"}

    decide(settings, "approve", good)
    decide(settings, "reject", bad)
    final = outcomes(rewards_of(settings, 8))
    assert (good, "referee", "credited", 500) in final
    assert (referrer, "referrer", "credited", 500) in final
    assert {(bad, "referee", "rejected", 0), (referrer, "referrer", "rejected", 0)} <= final
    eventually(lambda: pending(worker, good) == 30 + 500 and pending(worker, bad) == 30)

    again = new_id("again")
    refer(settings, signed_up(referrer, again, device_id="dev-other"))
    alert = eventually(lambda: alerts_by_referee(settings).get(again))
    assert alert is not None  # eventually returns only a truthy answer
    assert "referrer_rejected" in [h["rule"] for h in alert["rules"]]


def test_a_redis_outage_holds_referral_decisions_until_redis_returns(
    settings, start_worker, private_redis
):
    worker = start_worker(settings.model_copy(update={"redis_url": private_redis.url}))
    alice, bob = new_id("alice"), new_id("bob")
    private_redis.stop()
    refer(settings, signed_up(alice, bob, email="bob-outage@example.org"))
    eventually(lambda: worker.total("rewards_redis_errors_total") >= 2)
    assert decisions(worker) == 0
    assert worker.proc is not None and worker.proc.poll() is None
    private_redis.start()
    eventually(lambda: decisions(worker) == 1)

    def account() -> dict[str, Any]:
        status, body = http_balance(worker, bob)
        assert status == 200, body
        return body

    body = eventually(account)
    assert body["referral"]["referrer_id"] == alice and body["referral"]["status"] == "attributed"
