"""Manual adjustments and erasure end to end: real broker, Redis and RocksDB, worker subprocess."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from processors.identity import keyed_hash
from streams.adapters.points_mirror import mirror_namespace
from streams.adapters.redis_client import connect_sync
from streams.adapters.topic_reader import read_topic
from streams.cli.account_commands import publish_adjustment, publish_forget
from tests.events import new_id
from tests.support import eventually, http_get
from tests.test_points_pipeline import balance_is, buy, redis_balance, send, topic_records

pytestmark = [pytest.mark.integration, pytest.mark.redis]


def ledger_of(settings, customer: str) -> list[dict[str, Any]]:
    return [e for e in topic_records(settings, "points-ledger") if e["customer_id"] == customer]


def changelog_values(settings, customer: str) -> list[bytes | None]:
    """The values of the customer's changelog records, oldest first (None: a tombstone)."""
    records = read_topic(settings, settings.changelog_topic())
    return [m.value() for m in records if m.key() == customer.encode()]


def test_adjustments_credit_debit_to_zero_and_apply_once(settings, start_worker):
    worker = start_worker(settings)
    customer = new_id("c")
    publish_adjustment(settings, customer, 50, "goodwill", "ops-ana", "adj-1")
    eventually(lambda: balance_is(worker, settings, customer, 0, 50))
    publish_adjustment(settings, customer, 50, "goodwill (retried)", "ops-ana", "adj-1")
    publish_adjustment(settings, customer, -80, "double credit", "ops-ben", "adj-2")
    eventually(lambda: balance_is(worker, settings, customer, 0, 0))

    def both_entries() -> list[dict[str, Any]]:
        found = ledger_of(settings, customer)
        assert len(found) == 2, found
        return found

    entries = eventually(both_entries)
    assert [(e["kind"], e["available_delta"], e["operator"], e["reason"]) for e in entries] == [
        ("adjustment", 50, "ops-ana", "goodwill"),
        ("adjustment", -50, "ops-ben", "double credit"),
    ]
    anomalies = eventually(lambda: topic_records(settings, "points-anomalies"))
    assert [(a["kind"], a["points"], a["order_id"]) for a in anomalies] == [
        ("adjustment_shortfall", 30, "adjustment:adj-2")
    ]
    time.sleep(1)  # the retried adj-1 was processed before adj-2: nothing more came of it
    assert len(ledger_of(settings, customer)) == 2


def test_forget_erases_the_account_everywhere_and_later_events_start_afresh(
    settings, start_worker, tmp_path
):
    worker = start_worker(settings)
    customer, other = new_id("c"), new_id("c")
    send(settings, buy(customer, 1_000), buy(other, 500))
    publish_adjustment(settings, customer, 7, "goodwill", "ops-ana", "adj-1")
    eventually(lambda: balance_is(worker, settings, customer, 10, 7))
    eventually(lambda: balance_is(worker, settings, other, 5, 0))
    index = connect_sync(settings.redis_url)
    ns = settings.app_id
    index.sadd(f"{ns}:ref:by:{customer}", other)  # as the identity index records a sign-up
    index.sadd(f"{ns}:ref:of:{other}", customer)
    index.zadd(f"{ns}:id:email:feedface", {customer: 1, other: 2})
    index.sadd(f"{ns}:id-of:{customer}", f"{ns}:id:email:feedface")  # its reverse index

    command = publish_forget(settings, customer, "dpo-carla", "DSR-1187")
    eventually(lambda: http_get(worker, f"/points/{customer}")[0] == 404)
    assert redis_balance(settings, customer) is None
    assert not index.exists(f"{mirror_namespace(ns)}:{customer}")
    assert not index.exists(f"{ns}:ref:by:{customer}")
    assert index.smembers(f"{ns}:ref:of:{other}") == set()
    assert index.zrange(f"{ns}:id:email:feedface", 0, -1) == [other.encode()]
    assert balance_is(worker, settings, other, 5, 0)  # nobody else is touched
    assert eventually(lambda: changelog_values(settings, customer)[-1:] == [None])
    (erasure,) = eventually(lambda: topic_records(settings, "erasures"))
    key = settings.pii_hash_key.get_secret_value().encode()
    assert erasure["customer_hash"] == keyed_hash(key, "customer", customer)
    assert (erasure["operator"], erasure["source_event_id"]) == ("dpo-carla", command.event_id)
    assert customer.encode() not in orjson.dumps(erasure)

    send(settings, buy(customer, 300))
    eventually(lambda: balance_is(worker, settings, customer, 3, 0))
    status, body = http_get(worker, f"/points/{customer}")
    assert (status, body["sequence"]) == (200, 1)
    publish_adjustment(settings, customer, 7, "goodwill again", "ops-ana", "adj-1")
    eventually(lambda: balance_is(worker, settings, customer, 3, 7))  # its id was erased too


def test_a_restart_after_forget_does_not_bring_the_account_back(settings, start_worker, tmp_path):
    first = start_worker(settings)
    customer = new_id("c")
    send(settings, buy(customer, 2_000))
    eventually(lambda: balance_is(first, settings, customer, 20, 0))
    publish_forget(settings, customer, "dpo-carla")
    eventually(lambda: http_get(first, f"/points/{customer}")[0] == 404)
    first.stop()

    same_disk = start_worker(settings)
    assert http_get(same_disk, f"/points/{customer}")[0] == 404
    same_disk.stop()
    fresh_disk = settings.model_copy(update={"data_dir": tmp_path / "fresh"})
    recovered = start_worker(fresh_disk)  # the whole changelog, replayed
    assert http_get(recovered, f"/points/{customer}")[0] == 404
    assert redis_balance(settings, customer) is None
