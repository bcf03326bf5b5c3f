"""Replays and crashes never change balances or the ledger: real broker, Redis and RocksDB."""

from __future__ import annotations

import random
import shutil
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import msgspec
import orjson
import pytest

from processors.account import Account
from processors.settlement import settle
from schemas.models import Purchase
from streams.adapters.topic_reader import read_topic
from streams.assembly import points_policy
from tests.events import new_id, purchase, record
from tests.support import eventually, publish
from tests.test_points_pipeline import balance_is

pytestmark = [pytest.mark.integration, pytest.mark.redis]
CUSTOMERS = [f"c-{i:03d}" for i in range(40)]


def workload(seed: int, size: int) -> list[dict[str, Any]]:
    """Purchases (some with holds already ended) and partial refunds, no redemptions: the final
    balances then do not depend on how the worker happened to batch the events."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    events: list[dict[str, Any]] = []
    orders: list[dict[str, Any]] = []
    for _ in range(size):
        if orders and rng.random() < 0.25:
            bought = rng.choice(orders)
            cents = rng.randint(1, bought["amount_cents"])
            events.append(purchase(customer_id=bought["customer_id"], order_id=bought["order_id"],
                                   type="refund", amount_cents=cents))  # fmt: skip
            continue
        days = rng.choice([0, 0, 3, 20, 30])  # 20 and 30 days ago: released on arrival
        at = (now - timedelta(days=days)).isoformat().replace("+00:00", "Z")
        bought = purchase(customer_id=rng.choice(CUSTOMERS), amount_cents=rng.randint(50, 40_000),
                          occurred_at=at)  # fmt: skip
        orders.append(bought)
        events.append(bought)
    return events


def expected_balances(settings, events: list[dict[str, Any]]) -> dict[str, Account]:
    """The pure model's answer: each customer's events settled in order."""
    by_customer: defaultdict[str, list[Purchase]] = defaultdict(list)
    for event in events:
        by_customer[event["customer_id"]].append(msgspec.convert(event, Purchase, strict=False))
    policy, now = points_policy(settings), datetime.now(UTC)
    return {c: settle(Account(c), ps, now, policy).account for c, ps in by_customer.items()}


def authoritative_ledger(settings) -> dict[str, dict[int, dict[str, Any]]]:
    """Per customer and sequence, the entry at the highest offset (README: rebuilding balances)."""
    latest: defaultdict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for message in read_topic(settings, settings.topic("points-ledger"), timeout_s=30):
        entry = orjson.loads(message.value() or b"")
        latest[entry["customer_id"]][entry["sequence"]] = entry
    return latest


def assert_consistent(worker, settings, expected: dict[str, Account]) -> None:
    """HTTP, Redis and the ledger all agree with the pure model, for every customer."""
    for customer, account in expected.items():
        eventually(
            partial(
                balance_is,
                worker,
                settings,
                customer,
                account.points.pending,
                account.points.available,
            )
        )
    ledger = authoritative_ledger(settings)
    for customer, account in expected.items():
        entries = ledger[customer]  # how many depends on batching (a release may come first)
        assert sorted(entries) == list(range(1, len(entries) + 1))
        last = entries[len(entries)]
        assert (last["pending_after"], last["available_after"]) == (
            account.points.pending, account.points.available
        )  # fmt: skip
        earns = [e for e in entries.values() if e["kind"] == "earn"]
        earned = {e["order_id"]: e["pending_delta"] for e in earns}
        assert earned == {o.order_id: o.earned for o in account.points.orders.values() if o.earned}


def test_replaying_the_same_events_changes_nothing(settings, start_worker):
    settings = settings.model_copy(update={"dedupe_ttl_s": 8})
    worker = start_worker(settings)
    events = workload(seed=7, size=300)

    def send_all() -> None:
        publish(settings, "purchases", [record("purchases", e) for e in events])

    send_all()
    eventually(lambda: worker.total("rewards_events_processed_total", topic="purchases") == 300)
    expected = expected_balances(settings, events)
    assert_consistent(worker, settings, expected)
    ledger_size = len(read_topic(settings, settings.topic("points-ledger")))

    send_all()  # same event ids at new offsets: the first-seen index drops them
    eventually(lambda: worker.total("rewards_duplicate_events_total", topic="purchases") == 300)
    time.sleep(11)  # past the marks' TTL (stream time), the same ids are new to the worker:
    send_all()  # the accounts themselves refuse to apply them twice
    eventually(lambda: worker.total("rewards_events_processed_total", topic="purchases") == 600)

    assert len(read_topic(settings, settings.topic("points-ledger"))) == ledger_size
    assert_consistent(worker, settings, expected)


def test_a_worker_killed_mid_stream_resumes_with_exactly_its_balances(settings, start_worker):
    events = workload(seed=11, size=20_000)
    first = start_worker(settings)
    publish_fast(settings, events[:1])  # the worker is consuming before the stream starts
    eventually(lambda: first.total("rewards_events_processed_total", topic="purchases") >= 1)
    publisher = threading.Thread(target=publish_paced, args=(settings, events[1:], 5_000))
    publisher.start()  # the stream goes on arriving while the worker is killed
    eventually(lambda: first.total("rewards_events_processed_total", topic="purchases") >= 800,
               every_s=0.02)  # fmt: skip
    processed_before_kill = first.total("rewards_events_processed_total", topic="purchases")
    first.kill()  # SIGKILL mid-stream: no commit, no flush
    publisher.join()
    assert processed_before_kill < len(events)

    second = start_worker(settings)
    eventually(lambda: second.total("rewards_consumer_lag") == 0 and lag_known(second), 120)
    expected = expected_balances(settings, events)
    assert_consistent(second, settings, expected)
    assert second.total("rewards_events_processed_total", topic="purchases") > 0
    second.stop()

    shutil.rmtree(settings.data_dir)  # a new machine: the table comes back from its changelog
    third = start_worker(settings)
    assert_consistent(third, settings, expected)
    extra = purchase(customer_id=CUSTOMERS[0], amount_cents=1000, order_id=new_id("o"))
    publish(settings, "purchases", [record("purchases", extra)])
    account = expected[CUSTOMERS[0]]
    eventually(lambda: balance_is(third, settings, CUSTOMERS[0], account.points.pending + 10,
                                  account.points.available))  # fmt: skip


def lag_known(worker) -> bool:
    return any(name == "rewards_consumer_lag" for name, _ in worker.samples())


def publish_paced(settings, events: list[dict[str, Any]], per_s: int) -> None:
    """Publish in slices of a fifth of a second's worth, `per_s` events a second."""
    step = per_s // 5
    for start in range(0, len(events), step):
        publish_fast(settings, events[start : start + step])
        time.sleep(0.2)


def publish_fast(settings, events: list[dict[str, Any]]) -> None:
    """All events in one go (the ordering per customer still holds: one partition per key)."""
    from streams.adapters.kafka_io import fast_producer, produce

    producer = fast_producer(settings)
    for event in events:
        key, value = record("purchases", event)
        produce(producer, settings.topic("purchases"), value, key)
    assert producer.flush(30) == 0
