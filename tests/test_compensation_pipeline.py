"""Complaint compensation end to end: real broker, Redis and the provider sandbox over HTTP."""

from __future__ import annotations

import base64
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson
import pytest

from processors.compensation import idempotency_key
from streams.adapters.redis_client import connect_sync
from streams.bench.worker_process import free_port
from streams.settings_models import BudgetCaps
from tests.events import complaint, new_id, record
from tests.support import eventually, publish
from tests.test_points_pipeline import ago, topic_records
from tests.test_referrals_pipeline import refer, signed_up

pytestmark = [pytest.mark.integration, pytest.mark.redis]


def complain(settings, *events: dict[str, Any]) -> None:
    publish(settings, "complaints", [record("complaints", e) for e in events])


def fresh(severity: str = "high", customer: str | None = None, **fields: Any) -> dict[str, Any]:
    """A complaint opened now by `customer` (a new one unless given)."""
    return complaint(customer_id=customer or new_id("c"), severity=severity,
                     occurred_at=ago(timedelta(0)), **fields)  # fmt: skip


def gift_cards(settings) -> list[dict[str, Any]]:
    return [r for r in topic_records(settings, "rewards-issued") if r["kind"] == "gift_card"]


def counted(read: Callable[[], list[dict[str, Any]]], count: int) -> list[dict[str, Any]]:
    """Wait until `read` returns `count` records and return them."""

    def check() -> list[dict[str, Any]]:
        records = read()
        assert len(records) == count, f"{len(records)} of {count} records"
        return records

    return eventually(check)


def decisions_of(settings, count: int) -> list[dict[str, Any]]:
    """Wait for `count` compensation decisions (schema-checked) and return them."""
    return counted(lambda: topic_records(settings, "compensation-decisions"), count)


def cards_of(settings, count: int) -> list[dict[str, Any]]:
    return counted(lambda: gift_cards(settings), count)


def budget_used(settings) -> list[int]:
    """The EUR compensation budget used, per day, as Redis has it."""
    client = connect_sync(settings.redis_url)
    keys = list(client.scan_iter(match=f"{{{settings.app_id}:comp}}:budget:EUR:day:*"))
    return [int(client.get(key) or 0) for key in keys]


def test_each_severity_gets_its_tier_once_even_when_replayed(settings, start_worker, sandbox):
    settings = settings.model_copy(update={"dedupe_ttl_s": 1})
    worker = start_worker(settings)
    events = {s: fresh(s) for s in ("low", "medium", "high", "critical")}
    complain(settings, *events.values())
    made = {d["severity"]: d for d in decisions_of(settings, 4)}
    assert {s: (d["outcome"], d.get("amount_cents")) for s, d in made.items()} == {
        "low": ("none", None), "medium": ("gift_card", 1_000),
        "high": ("gift_card", 2_500), "critical": ("gift_card", 5_000),
    }  # fmt: skip
    cards = {c["complaint_id"]: c for c in cards_of(settings, 3)}
    orders = sandbox.orders()
    assert orders["created"] == 3
    for severity in ("medium", "high", "critical"):
        event, card = events[severity], cards[events[severity]["complaint_id"]]
        assert card["customer_id"] == event["customer_id"]
        assert card["amount_cents"] == made[severity]["amount_cents"]
        assert card["reward_id"] == made[severity]["reward_id"]
        assert (
            card["gift_card"]["provider_order_id"]
            == orders["idempotency_keys"][
                idempotency_key(event["customer_id"], event["complaint_id"])
            ]
        )
        assert card["gift_card"]["claim_url"].startswith("http")
    assert worker.total("rewards_gift_cards_issued_total") == 3
    assert worker.total("rewards_gift_cards_issued_cents_total") == 8_500

    time.sleep(1.5)  # a replay after the marks' TTL: the same ids are new to the worker again
    complain(settings, *events.values())
    eventually(lambda: worker.total("rewards_events_processed_total", topic="complaints") == 8)
    assert len(topic_records(settings, "compensation-decisions")) == 4
    assert len(gift_cards(settings)) == 3 and sandbox.orders()["created"] == 3


def test_one_per_customer_per_period_and_one_per_complaint_ever(settings, start_worker, sandbox):
    worker = start_worker(settings)
    ann = new_id("ann")
    first = fresh("medium", ann)
    escalated = {**first, "event_id": new_id(), "severity": "critical"}
    second = fresh("high", ann)
    complain(settings, first)
    decisions_of(settings, 1)
    complain(settings, escalated, second)
    made = {d["source_event_id"]: d for d in decisions_of(settings, 3)}
    assert (made[escalated["event_id"]]["outcome"], made[escalated["event_id"]]["reason"]) == (
        "blocked", "complaint_already_compensated",
    )  # fmt: skip
    assert (made[second["event_id"]]["outcome"], made[second["event_id"]]["reason"]) == (
        "blocked", "customer_period",
    )  # fmt: skip
    assert [c["amount_cents"] for c in cards_of(settings, 1)] == [1_000]
    assert sandbox.orders()["created"] == 1
    blocks = ("complaint_already_compensated", "customer_period")  # counted at commit
    eventually(
        lambda: all(worker.total("rewards_compensation_decisions_total", reason=r) == 1
                    for r in blocks)
    )  # fmt: skip

    bob = new_id("bob")  # two complaints at once: the second must not reserve budget it cannot use
    complain(settings, fresh("high", bob), fresh("critical", bob))
    assert Counter(d["reason"] for d in decisions_of(settings, 5)) == {
        "compensated": 2, "complaint_already_compensated": 1, "customer_period": 2,
    }  # fmt: skip
    assert budget_used(settings) == [1_000 + 2_500]


def test_the_daily_budget_holds_across_two_workers(settings, start_worker, sandbox, tmp_path):
    settings = settings.model_copy(
        update={"compensation_budgets": {"EUR": BudgetCaps(day=10_000, month=None)}}
    )
    other = {"web_port": free_port(), "data_dir": tmp_path / "other-worker"}
    workers = [start_worker(settings), start_worker(settings.model_copy(update=other))]
    eventually(lambda: all(w.total("rewards_points_recoveries_total") >= 1 for w in workers))
    events = [fresh("high") for _ in range(24)]  # EUR 25 each against EUR 100 a day
    complain(settings, *events)
    made = decisions_of(settings, 24)
    assert Counter((d["outcome"], d["reason"]) for d in made) == {
        ("gift_card", "compensated"): 4, ("blocked", "budget_day"): 20,
    }  # fmt: skip
    assert sum(c["amount_cents"] for c in cards_of(settings, 4)) == 10_000
    assert sandbox.orders()["created"] == 4

    def by_worker() -> list[float]:  # counted when each worker's transaction commits
        counts = [w.total("rewards_compensation_decisions_total") for w in workers]
        assert all(n > 0 for n in counts) and sum(counts) == 24, counts
        return counts

    eventually(by_worker)
    assert budget_used(settings) == [10_000]


def test_a_customer_rejected_for_fraud_is_not_compensated(settings, start_worker, sandbox):
    worker = start_worker(settings)
    mallory = new_id("mallory")
    refer(settings, signed_up(mallory, mallory, email="m@example.org"))  # same customer: reject
    eventually(lambda: worker.total("rewards_fraud_decisions_total", decision="reject") == 1)
    honest = fresh("critical")
    complain(settings, fresh("critical", mallory), honest)
    made = {d["customer_id"]: d for d in decisions_of(settings, 2)}
    assert (made[mallory]["outcome"], made[mallory]["reason"]) == ("blocked", "fraud_rejected")
    assert made[honest["customer_id"]]["outcome"] == "gift_card"
    assert [c["customer_id"] for c in cards_of(settings, 1)] == [honest["customer_id"]]


def test_two_5xx_then_success_orders_once(settings, start_worker, sandbox):
    sandbox.faults(fail_next=[{"status": 503, "count": 2}])
    worker = start_worker(settings)
    complain(settings, fresh("high"))
    cards_of(settings, 1)
    orders = sandbox.orders()
    assert (orders["created"], orders["requests"]["create"]) == (1, 3)
    assert worker.total("rewards_gift_card_provider_requests_total", outcome="5xx") == 2
    assert worker.total("rewards_gift_card_provider_requests_total", outcome="2xx") == 1


def test_a_4xx_dead_letters_the_order_and_its_republish_orders_it(settings, start_worker, sandbox):
    sandbox.faults(fail_next=[{"status": 400, "code": "invalid_amount", "count": 1}])
    worker = start_worker(settings)
    event = fresh("critical")
    complain(settings, event)
    letters = eventually(lambda: topic_records(settings, "dead-letter"))
    assert [(d["reason"], d["source"]["topic"]) for d in letters] == [
        ("provider_rejected", settings.topic("gift-card-orders"))
    ]
    assert "400 invalid_amount" in letters[0]["detail"]
    original = orjson.loads(base64.b64decode(letters[0]["original_value_b64"]))
    assert (original["complaint_id"], original["amount_cents"]) == (event["complaint_id"], 5_000)
    assert gift_cards(settings) == [] and sandbox.orders()["created"] == 0
    assert worker.total("rewards_gift_card_failures_total", reason="provider_rejected") == 1

    key = base64.b64decode(letters[0]["original_key_b64"])
    publish(
        settings, "gift-card-orders", [(key, base64.b64decode(letters[0]["original_value_b64"]))]
    )
    assert [c["complaint_id"] for c in cards_of(settings, 1)] == [event["complaint_id"]]
    assert sandbox.orders()["created"] == 1


def test_a_crash_after_the_order_is_placed_never_orders_twice(settings, start_worker, sandbox):
    sandbox.faults(hold_after_create_s=60)  # the provider makes the order, then holds its answer
    first = start_worker(settings)
    event = fresh("critical")
    complain(settings, event)
    eventually(lambda: sandbox.orders()["created"] == 1, timeout_s=60)
    first.kill()  # after the provider's order, before our record, reward or commit
    sandbox.faults()
    second = start_worker(settings)
    cards = cards_of(settings, 1)
    assert cards[0]["complaint_id"] == event["complaint_id"]
    orders = sandbox.orders()
    assert orders["created"] == 1 and orders["requests"]["create"] >= 2
    assert cards[0]["gift_card"]["provider_order_id"] == orders["orders"][0]["id"]
    assert second.total("rewards_redelivered_events_total", topic="gift-card-orders") == 1


def test_the_discount_arm_gets_a_code_instead_of_a_gift_card(settings, start_worker, sandbox):
    settings = settings.model_copy(update={"compensation_discount_share": 1.0})
    worker = start_worker(settings)
    event = fresh("medium")
    complain(settings, event)
    rewards = eventually(lambda: topic_records(settings, "rewards-issued"))
    assert [(r["kind"], r["amount_cents"], r["complaint_id"]) for r in rewards] == [
        ("discount", 1_000, event["complaint_id"])
    ]
    assert rewards[0]["discount_code"].startswith("SORRY-")
    assert [d["arm"] for d in decisions_of(settings, 1)] == ["discount"]
    assert sandbox.orders()["created"] == 0
    eventually(lambda: worker.total("rewards_issued_total", kind="discount") == 1)  # at commit
