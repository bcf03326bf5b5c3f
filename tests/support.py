"""Helpers shared by the tests: environment facts, publishing, waiting for a condition."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from confluent_kafka import KafkaError, Message, Producer

from streams.cli.worker_metrics import MetricsEndpoint
from streams.settings import Settings

REPO = Path(__file__).resolve().parents[1]
CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
T = TypeVar("T")


def unavailable(message: str) -> None:
    """In CI a missing service or tool is a failure, elsewhere a skip."""
    if CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclass(frozen=True)
class Sent:
    """Where a produced record landed."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def publish(
    settings: Settings, base_topic: str, records: Sequence[tuple[bytes | None, bytes]]
) -> list[Sent]:
    """Produce records synchronously and return their positions."""
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "partitioner": "murmur2_random",
            "message.max.bytes": 4 * 1024 * 1024,
        }
    )
    sent: list[Sent] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        assert err is None, err
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None and partition is not None and offset is not None  # delivered
        sent.append(Sent(topic, partition, offset, msg.key(), msg.value() or b""))

    for key, value in records:
        producer.produce(settings.topic(base_topic), value=value, key=key, on_delivery=delivered)
        producer.flush(30)  # one at a time: keeps the order the test reasons about
    return sent


def eventually(check: Callable[[], T], timeout_s: float = 60.0, every_s: float = 0.25) -> T:
    """Retry `check` until it returns a truthy value without raising an assertion or connection
    error, and return that value; re-raise the last failure.

    Wait on what the assertion after it reads, not on a proxy: the same endpoint, query or topic,
    or better, assert inside `check` and use what it returns."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
            if result:
                return result
            failure: BaseException | None = AssertionError(f"{check} returned {result!r}")
        except (AssertionError, OSError) as exc:  # OSError: a worker busy or rebalancing
            failure = exc
        if time.monotonic() > deadline:
            assert failure is not None
            raise failure
        time.sleep(every_s)


def settled(
    worker: MetricsEndpoint, consumed: int, topics: Sequence[str] = (), **labels: str
) -> dict[str, float]:
    """Wait until `consumed` records were read and each one is accounted for (processed,
    duplicate or dead-lettered); return those counts from one consistent scrape.

    `consumed` alone is not enough: it is counted before the deduplication round trip, so the
    other counters can still be moving when it reaches its final value. With `topics`, only
    records of those topics count (e.g. the input topics, not the workers' own control topics).
    """

    def accounted() -> dict[str, float]:
        samples = worker.samples()

        def total(name: str) -> float:
            want = set(labels.items())
            return sum(
                v
                for (n, ls), v in samples.items()
                if n == name and want <= set(ls) and (not topics or dict(ls)["topic"] in topics)
            )

        counts = {
            kind: total(f"rewards_{kind}_total")
            for kind in ("events_consumed", "events_processed", "duplicate_events",
                         "redelivered_events", "dead_letters")
        }  # fmt: skip
        done = counts["events_processed"] + counts["duplicate_events"] + counts["dead_letters"]
        assert counts["events_consumed"] == consumed and done == consumed, counts
        return counts

    return eventually(accounted)


def http_get(worker: MetricsEndpoint, path: str) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of a GET on the worker's web server; (0, {...}) if it cannot be reached
    (a worker busy or rebalancing), and a non-JSON body as {"raw": text}."""
    url = f"http://127.0.0.1:{worker.web_port}{path}"  # type: ignore[attr-defined]  # a WorkerProcess
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as err:
        body = err.read()
        return err.code, orjson.loads(body) if body.startswith(b"{") else {"raw": body.decode()}
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        return 0, {"error": str(err)}
