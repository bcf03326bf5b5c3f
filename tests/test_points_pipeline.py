"""The points ledger end to end: real broker, Redis and RocksDB, the worker a subprocess."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from schemas.codec import load_schema
from streams.adapters.points_mirror import mirror_namespace
from streams.adapters.redis_client import connect_sync
from streams.adapters.topic_reader import read_topic
from streams.bench.worker_process import free_port
from tests.events import new_id, purchase, record
from tests.support import eventually, http_get, publish

pytestmark = [pytest.mark.integration, pytest.mark.redis]
HOLD = timedelta(days=14)


class _Anything:
    __hash__ = None  # type: ignore[assignment]  # unhashable on purpose: it equals anything

    def __eq__(self, other: object) -> bool:
        return True


ANY_BALANCE = {"sequence": _Anything(), "next_release_at": _Anything(), "holds": _Anything()}


def ago(delta: timedelta) -> str:
    """An RFC 3339 time `delta` before now."""
    return (datetime.now(UTC) - delta).isoformat().replace("+00:00", "Z")


def buy(customer: str, cents: int, *, at: str | None = None, **fields) -> dict[str, Any]:
    """A purchase by `customer` (now unless `at`)."""
    at = at or ago(timedelta(0))
    return purchase(customer_id=customer, amount_cents=cents, occurred_at=at, **fields)


def refund(bought: dict[str, Any], cents: int) -> dict[str, Any]:
    """A refund of `cents` of an earlier purchase."""
    return purchase(customer_id=bought["customer_id"], order_id=bought["order_id"], type="refund",
                    amount_cents=cents, occurred_at=ago(timedelta(0)))  # fmt: skip


def send(settings, *events: dict[str, Any]) -> None:
    publish(settings, "purchases", [record("purchases", e) for e in events])


def topic_records(settings, base: str) -> list[dict[str, Any]]:
    """Every record of an output topic, each checked against the topic's published schema."""
    records = [orjson.loads(m.value() or b"") for m in read_topic(settings, settings.topic(base))]
    validator = Draft202012Validator(load_schema(base))
    for record_ in records:
        validator.validate(record_)
    return records


def http_balance(worker, customer: str) -> tuple[int, dict[str, Any]]:
    """(status, body) of the balance endpoint; during a rebalance it may answer 503 (not JSON)."""
    return http_get(worker, f"/points/{customer}")


def redis_balance(settings, customer: str) -> tuple[int, int] | None:
    client = connect_sync(settings.redis_url)
    stored = client.hgetall(f"{mirror_namespace(settings.app_id)}:{customer}")
    return (int(stored[b"pending"]), int(stored[b"available"])) if stored else None


def balance_is(worker, settings, customer: str, pending: int, available: int) -> bool:
    """Both read paths, HTTP on the worker and the Redis mirror, show the balance."""
    status, body = http_balance(worker, customer)
    return (
        status == 200
        and (body["pending"], body["available"]) == (pending, available)
        and redis_balance(settings, customer) == (pending, available)
    )


@pytest.fixture
def points_settings(settings):
    return settings.model_copy(update={"release_interval_s": 0.2})


def test_purchase_is_pending_then_released_and_announced(points_settings, start_worker):
    settings = points_settings
    worker = start_worker(settings)
    customer = new_id("c")
    bought = buy(customer, 4599, at=ago(HOLD - timedelta(seconds=8)))  # hold ends in 8 s
    send(settings, bought)

    eventually(lambda: balance_is(worker, settings, customer, 45, 0), timeout_s=7)
    eventually(lambda: balance_is(worker, settings, customer, 0, 45), timeout_s=30)
    rewards = [r for r in topic_records(settings, "rewards-issued") if r["customer_id"] == customer]
    assert len(rewards) == 1
    assert rewards[0] | {"reward_id": None, "issued_at": None} == {
        "reward_id": None, "customer_id": customer, "kind": "points", "points": 45,
        "reason": "purchase_points_released", "source_event_id": bought["event_id"],
        "order_id": bought["order_id"], "issued_at": None,
    }  # fmt: skip
    kinds = [e["kind"] for e in topic_records(settings, "points-ledger")]
    assert kinds == ["earn", "release"]
    assert worker.total("rewards_issued_total", kind="points") == 1


def test_refunds_reverse_points_before_and_after_release(points_settings, start_worker):
    settings = points_settings
    worker = start_worker(settings)
    held, released = new_id("c"), new_id("c")
    held_order = buy(held, 10_000)  # 100 points pending for 14 days
    old_order = buy(released, 10_000, at=ago(HOLD + timedelta(days=1)))  # released at once
    send(settings, held_order, old_order)
    eventually(lambda: balance_is(worker, settings, held, 100, 0))
    eventually(lambda: balance_is(worker, settings, released, 0, 100))

    send(settings, refund(held_order, 2_550), refund(old_order, 4_000))
    eventually(lambda: balance_is(worker, settings, held, 75, 0))  # 25.50 of 100 EUR: 25 points
    eventually(lambda: balance_is(worker, settings, released, 0, 60))
    send(settings, refund(held_order, 7_450))  # the rest: all 100 reversed in total
    eventually(lambda: balance_is(worker, settings, held, 0, 0))

    ghost = purchase(customer_id=held, order_id=new_id("o"), type="refund", amount_cents=500)
    send(settings, ghost)
    anomalies = eventually(lambda: topic_records(settings, "points-anomalies"))
    assert [(a["kind"], a["order_id"]) for a in anomalies] == [
        ("refund_unknown_order", ghost["order_id"])
    ]
    reversals = [e for e in topic_records(settings, "points-ledger") if e["kind"] == "reversal"]
    assert sorted((e["pending_delta"], e["available_delta"]) for e in reversals) == [
        (-75, 0), (-25, 0), (0, -40),
    ]  # fmt: skip


def test_redemption_debits_available_points_and_reports_a_shortfall(points_settings, start_worker):
    settings = points_settings
    worker = start_worker(settings)
    customer = new_id("c")
    send(settings, buy(customer, 5_000, at=ago(HOLD * 2)))
    eventually(lambda: balance_is(worker, settings, customer, 0, 50))

    send(settings, buy(customer, 1_000, points_redeemed=30))  # 10 points pending, 30 spent
    eventually(lambda: balance_is(worker, settings, customer, 10, 20))
    short = buy(customer, 0, points_redeemed=100)
    send(settings, short)
    eventually(lambda: balance_is(worker, settings, customer, 10, 0))

    anomalies = eventually(lambda: topic_records(settings, "points-anomalies"))
    assert [(a["kind"], a["points"], a["order_id"]) for a in anomalies] == [
        ("redemption_shortfall", 80, short["order_id"])
    ]
    assert worker.total("rewards_points_anomalies_total", kind="redemption_shortfall") == 1
    assert worker.total("rewards_points_total", kind="redemption") == 50


def test_a_currency_without_rate_is_dead_lettered_as_a_business_rejection(settings, start_worker):
    worker = start_worker(settings)
    customer = new_id("c")
    swedish = buy(customer, 900, currency="SEK")
    sent = publish(settings, "purchases", [record("purchases", swedish)])
    letters = eventually(lambda: topic_records(settings, "dead-letter"))
    assert [(d["reason"], d["source"]["offset"]) for d in letters] == [
        ("no_points_rate", sent[0].offset)
    ]
    assert "SEK" in letters[0]["detail"]
    assert http_balance(worker, customer)[0] == 404
    worker.stop()

    rated = settings.model_copy(update={"points_rates": settings.points_rates | {"SEK": (1, 100)}})
    fixed = start_worker(rated)
    publish(settings, "purchases", [record("purchases", swedish)])  # the same event, re-published
    eventually(lambda: balance_is(fixed, settings, customer, 9, 0))


def test_any_worker_answers_for_any_customer_by_routing_to_the_owner(settings, start_worker):
    first = start_worker(settings)
    second_settings = settings.model_copy(
        update={"web_port": free_port(), "data_dir": settings.data_dir.parent / "data-2"}
    )
    second = start_worker(second_settings)
    eventually(lambda: first.total("rewards_points_recoveries_total") >= 2)
    customers = [new_id("c") for _ in range(12)]
    sent = publish(settings, "purchases", [record("purchases", buy(c, 1_000)) for c in customers])
    assert {s.partition for s in sent} == {0, 1}  # both workers own some of these customers
    eventually(lambda: all(http_balance(w, c) == (200, ANY_BALANCE | {
        "customer_id": c, "pending": 10, "available": 0, "referral": None})
        for c in customers for w in (first, second)))  # fmt: skip
    owners = {
        worker.web_port
        for worker in (first, second)
        if worker.total("rewards_events_processed_total", topic="purchases") > 0
    }
    assert owners == {first.web_port, second.web_port}


def test_a_hold_that_ends_while_the_worker_is_down_is_released_after_restart(
    points_settings, start_worker
):
    settings = points_settings
    first = start_worker(settings)
    customer = new_id("c")
    bought = buy(customer, 2_000, at=ago(HOLD - timedelta(seconds=6)))  # hold ends in 6 s
    send(settings, bought)
    eventually(lambda: balance_is(first, settings, customer, 20, 0), timeout_s=5)
    first.stop()

    time.sleep(6)  # the hold ends with no worker running
    second = start_worker(settings)
    eventually(lambda: balance_is(second, settings, customer, 0, 20))
    rewards = eventually(lambda: topic_records(settings, "rewards-issued"))
    assert [(r["customer_id"], r["points"], r["order_id"]) for r in rewards] == [
        (customer, 20, bought["order_id"])
    ]
