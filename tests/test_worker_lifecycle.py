"""A worker's life with real Kafka and Redis: poison records, a crashed loop, SIGTERM, routing."""

from __future__ import annotations

import base64
import signal
import time
from typing import Any

import orjson
import pytest

from streams.adapters.topic_reader import read_topic
from streams.bench.worker_process import free_port
from tests.events import new_id
from tests.support import eventually, http_get, settled
from tests.test_points_pipeline import buy, http_balance, send

pytestmark = pytest.mark.integration


def dead_letters(settings) -> list[dict[str, Any]]:
    topic = settings.topic("dead-letter")
    return [orjson.loads(m.value() or b"") for m in read_topic(settings, topic)]


def test_a_record_that_makes_the_rules_raise_is_dead_lettered_alone(settings, start_worker):
    worker = start_worker(settings, module="tests.poisoned_worker")
    customers = [new_id("c") for _ in range(4)]
    before = [buy(c, 1000) for c in customers]
    poison = buy(customers[0], 5000, event_id=new_id("poison"))
    after = [buy(c, 2000) for c in customers]
    send(settings, *before, poison, *after)
    counts = settled(worker, 9, topics=["purchases"], topic="purchases")
    assert (counts["events_processed"], counts["dead_letters"]) == (8, 1)
    (letter,) = dead_letters(settings)
    assert letter["reason"] == "processing_error"
    assert "ZeroDivisionError" in letter["detail"]
    assert orjson.loads(base64.b64decode(letter["original_value_b64"])) == poison
    # everything else took effect, the poison's customer's too
    eventually(lambda: all(http_balance(worker, c)[1].get("pending") == 30 for c in customers))
    worker.stop()
    restarted = start_worker(settings, module="tests.poisoned_worker")  # no crash on restart
    send(settings, buy(customers[1], 1000))
    eventually(lambda: http_balance(restarted, customers[1])[1].get("pending") == 40)
    assert len(dead_letters(settings)) == 1


def test_a_worker_whose_loop_fails_exits_non_zero_promptly(settings, start_worker, monkeypatch):
    monkeypatch.setenv("REWARDS_TEST_POISON_ALL", "1")  # every settlement raises: not the records
    worker = start_worker(settings, module="tests.poisoned_worker")
    send(settings, *(buy(new_id("c"), 1000) for _ in range(5)))
    assert worker.proc is not None
    started = time.monotonic()
    code = worker.proc.wait(timeout=60)
    assert code != 0
    assert time.monotonic() - started < 30
    assert "three records in a row failed" in worker.log_path.read_text()
    with pytest.raises(OSError):
        worker.metrics_text()  # no zombie serving HTTP


def test_sigterm_stops_a_busy_worker_within_seconds(settings, start_worker):
    worker = start_worker(settings)
    send(settings, *(buy(new_id("c"), 1000) for _ in range(300)))
    eventually(lambda: worker.total("rewards_events_processed_total", topic="purchases") > 0)
    assert worker.proc is not None
    started = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=30) == 0
    assert time.monotonic() - started < 10


def readiness(worker) -> dict[str, Any]:
    """The worker's /ready answer (status 200 only when every assigned partition is ready)."""
    status, body = http_get(worker, "/ready")
    return body if status == 200 else {}


def test_a_fresh_worker_routes_balances_within_a_second_of_being_ready(settings, start_worker):
    customers = [new_id("c") for _ in range(12)]  # on both partitions
    first = start_worker(settings)
    send(settings, *(buy(c, 1000) for c in customers))
    settled(first, 12, topics=["purchases"], topic="purchases")
    other = {"web_port": free_port(), "data_dir": settings.data_dir / "b"}
    second = start_worker(settings.model_copy(update=other))

    def both_ready() -> tuple[dict[str, Any], dict[str, Any]]:
        a, b = readiness(first), readiness(second)
        assert a and b and sorted(a["partitions"] + b["partitions"]) == [0, 1], (a, b)
        return a, b

    split = eventually(both_ready, 90, 0.05)
    ready_at = time.monotonic()
    assert all(part["partitions"] for part in split)  # each worker owns one partition
    workers = (first, second)
    eventually(
        lambda: all(http_balance(w, c)[0] == 200 for w in workers for c in customers), 5, 0.05
    )
    assert time.monotonic() - ready_at < 1.0
    for worker in (first, second):
        assert {http_balance(worker, c)[1]["pending"] for c in customers} == {10}
