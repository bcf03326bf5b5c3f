"""The ingestion path end to end through a real broker and Redis, the worker a subprocess."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from streams.adapters.topic_reader import read_topic
from tests.events import BUILDERS, purchase, record
from tests.support import eventually, publish, settled

pytestmark = pytest.mark.integration


def dead_letters(settings, count: int | None = None) -> list[dict[str, Any]]:
    """Every dead letter so far, decoded; with `count`, once there are that many."""

    def read() -> list[dict[str, Any]]:
        topic = settings.topic("dead-letter")
        letters = [orjson.loads(m.value() or b"") for m in read_topic(settings, topic)]
        assert count is None or len(letters) == count, f"{len(letters)} of {count} dead letters"
        return letters

    return read() if count is None else eventually(read)


def test_valid_events_of_every_topic_are_admitted(settings, start_worker):
    worker = start_worker(settings)
    for topic, build in BUILDERS.items():
        publish(settings, topic, [record(topic, build()) for _ in range(3)])
    eventually(
        lambda: all(worker.total("rewards_events_processed_total", topic=t) == 3 for t in BUILDERS)
    )
    assert worker.total("rewards_dead_letters_total") == 0
    assert dead_letters(settings) == []


BAD_PURCHASES = {
    "invalid_json": b'{"event_id": "e-1", "customer_id": ',
    "wrong_type": orjson.dumps(purchase(amount_cents="12.50")),
    "schema_violation": orjson.dumps({k: v for k, v in purchase().items() if k != "order_id"}),
    "unknown_currency": orjson.dumps(purchase(currency="XYZ")),
    "oversized": orjson.dumps(purchase(note="x" * 70_000)),
}


def test_each_bad_input_kind_is_dead_lettered_with_its_source(settings, start_worker):
    worker = start_worker(settings)
    bad = [(b"c-1", raw) for raw in BAD_PURCHASES.values()]
    mismatched_key = (b"someone-else", orjson.dumps(purchase()))
    sent = publish(settings, "purchases", [*bad, mismatched_key])
    expected = [*BAD_PURCHASES, "key_mismatch"]

    letters = dead_letters(settings, len(sent))
    by_offset = {(d["source"]["partition"], d["source"]["offset"]): d for d in letters}
    for reason, record_sent in zip(expected, sent, strict=True):
        letter = by_offset[(record_sent.partition, record_sent.offset)]
        assert letter["reason"] == reason
        assert letter["source"]["topic"] == settings.topic("purchases")
        assert base64.b64decode(letter["original_value_b64"]) == record_sent.value
        assert base64.b64decode(letter["original_key_b64"]) == record_sent.key
        assert letter["detail"]

    def counted() -> bool:  # counted once the transaction commits: a moment after the topic
        for reason in expected:
            assert worker.total("rewards_dead_letters_total", topic="purchases", reason=reason) == 1
        return True

    eventually(counted)

    publish(settings, "purchases", [record("purchases", purchase())])
    eventually(lambda: worker.total("rewards_events_processed_total", topic="purchases") == 1)
    assert worker.proc is not None and worker.proc.poll() is None


@pytest.mark.parametrize("topic", ["complaints", "referrals", "survey-responses"])
def test_bad_input_on_other_topics_is_dead_lettered(settings, start_worker, topic):
    worker = start_worker(settings)
    event = BUILDERS[topic]()
    event["event_id"] = 42
    sent = publish(settings, topic, [(b"c-1", b"not json"), record(topic, event)])
    letters = dead_letters(settings, 2)
    assert sorted(d["reason"] for d in letters) == ["invalid_json", "wrong_type"]
    assert {d["source"]["offset"] for d in letters} == {s.offset for s in sent}
    eventually(lambda: worker.total("rewards_dead_letters_total", topic=topic) == 2)  # at commit


def test_duplicate_event_ids_are_processed_once_even_across_restarts(settings, start_worker):
    event = purchase()
    first = start_worker(settings)
    publish(settings, "purchases", [record("purchases", event)] * 3)
    counts = settled(first, 3, topic="purchases")
    assert counts["events_processed"] == 1
    assert counts["duplicate_events"] == 2
    first.stop()

    publish(settings, "purchases", [record("purchases", event), record("purchases", purchase())])
    second = start_worker(settings)
    counts = settled(second, 2, topic="purchases")
    assert counts["events_processed"] == 1
    assert counts["duplicate_events"] == 1


def test_consumer_lag_is_exported_per_partition(settings, start_worker):
    worker = start_worker(settings)
    publish(
        settings,
        "purchases",
        [record("purchases", purchase(customer_id=f"c-{i}")) for i in range(20)],
    )
    eventually(lambda: worker.total("rewards_events_processed_total", topic="purchases") == 20)
    lag = eventually(
        lambda: [
            (labels, value)
            for (name, labels), value in worker.samples().items()
            if name == "rewards_consumer_lag"
        ]
    )
    assert {dict(labels)["topic"] for labels, _ in lag} == {settings.topic("purchases")}
    eventually(lambda: worker.total("rewards_consumer_lag") == 0)


def handed_out(worker: Any, topic: str) -> bool:
    """The worker's loop has been handed every record of `topic` (its lag, counted from the
    records handed out rather than from the offsets committed, is 0 where there are records)."""
    lag = [value for (name, labels), value in worker.samples().items()
           if name == "rewards_consumer_lag" and dict(labels).get("topic") == topic]  # fmt: skip
    return bool(lag) and sum(lag) == 0


def test_a_crash_before_commit_redelivers_and_reprocesses_not_drops(settings, start_worker):
    slow_commit = settings.model_copy(
        update={"commit_interval_s": 120.0, "transaction_timeout_s": 300.0}
    )
    first = start_worker(slow_commit)
    events = [purchase() for _ in range(5)]
    publish(settings, "purchases", [record("purchases", e) for e in events])
    eventually(lambda: handed_out(first, settings.topic("purchases")))  # into the open txn
    first.kill()  # SIGKILL: the transaction with the offsets (and the marks) never committed

    second = start_worker(settings)
    counts = settled(second, 5, topic="purchases")
    assert counts["duplicate_events"] == 0  # the marks went with the aborted transaction
    assert counts["events_processed"] == 5
