"""The benchmark's shared harness: publish, the raw-consumer baseline, waiting and quantiles."""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import NamedTuple

import orjson
from confluent_kafka import Consumer

from schemas.codec import Codec, DecodeError
from streams.adapters.kafka_io import fast_producer, produce
from streams.bench.peer_procs import cpu_seconds
from streams.bench.worker_process import WorkerProcess
from streams.cli.publish import paced
from streams.cli.simulator import SimEvent
from streams.settings import INPUT_TOPICS, Settings

LATENCY = "rewards_processing_latency_seconds_bucket"
SETTLE_S = 2.0


def publish_all(settings: Settings, events: list[SimEvent], rate: float = 0) -> float:
    """Publish events (paced when `rate` > 0); returns records per second."""
    producer = fast_producer(settings, **{"linger.ms": 2 if rate else 20})
    for topic in {sim.topic for sim in events}:  # a cold producer holds its first records ~0.5 s
        producer.list_topics(settings.topic(topic), timeout=10)
    start = time.perf_counter()
    for n, sim in enumerate(paced(events, rate)):
        produce(producer, settings.topic(sim.topic), sim.value, sim.key)
        if n % 500 == 0:
            producer.poll(0)
    producer.flush(60)
    return len(events) / (time.perf_counter() - start)


def baseline_consume(settings: Settings, expected: int) -> float:
    """Plain confluent-kafka consumer with orjson decode of every record: records per second."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"baseline-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 << 20,
            "max.partition.fetch.bytes": 8 << 20,  # the 1 MiB default halves the rate
        }
    )
    consumer.subscribe([settings.topic(t) for t in INPUT_TOPICS])
    seen, start = 0, None
    deadline = time.monotonic() + 300
    while seen < expected and time.monotonic() < deadline:
        batch = consumer.consume(num_messages=10_000, timeout=1.0)
        if batch and start is None:
            start = time.perf_counter()
        for msg in batch:
            if msg.error() is None:
                seen += 1
                with contextlib.suppress(orjson.JSONDecodeError):
                    orjson.loads(msg.value() or b"")
    consumer.close()
    return seen / (time.perf_counter() - start) if start else 0.0


def codec_rate(events: list[SimEvent]) -> float:
    """Validating decodes per second of the same records, in process (no Kafka)."""
    codec = Codec()
    start = time.perf_counter()
    for sim in events:
        with contextlib.suppress(DecodeError):
            codec.decode(sim.topic, sim.value)
    return len(events) / (time.perf_counter() - start)


class Busy(NamedTuple):
    """A worker's catch-up: from the first input record it counted to the last."""

    seconds: float
    records: float
    cpu_s: float
    """The worker process's CPU over the same span."""


def wait_consumed(worker: WorkerProcess, target: float, timeout_s: float = 600) -> Busy:
    """Poll until the worker consumed `target` input records (not counting the control topics'
    records it sends itself)."""
    first: tuple[float, float, float] | None = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        consumed = sum(
            worker.total("rewards_events_consumed_total", topic=topic) for topic in INPUT_TOPICS
        )
        now, cpu = time.perf_counter(), cpu_seconds(worker.proc.pid if worker.proc else None)
        if consumed > 0 and first is None:
            first = (now, consumed, cpu)
        if consumed >= target:
            assert first is not None
            return Busy(max(now - first[0], 1e-9), consumed - first[1], cpu - first[2])
        time.sleep(1.0)  # each scrape costs the worker CPU (~12 ms here): poll gently
    raise TimeoutError(f"worker consumed fewer than {target} records in {timeout_s}s")


def latency_buckets(worker: WorkerProcess) -> dict[float, float]:
    """Cumulative latency histogram buckets summed over topics."""
    out: dict[float, float] = {}
    for (name, labels), value in worker.samples().items():
        if name == LATENCY:
            le = float(dict(labels)["le"])
            out[le] = out.get(le, 0.0) + value
    return out


def quantile(buckets: dict[float, float], q: float) -> float:
    """Quantile from cumulative buckets, interpolated linearly inside a bucket (as PromQL does)."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for upper in bounds:
        if buckets[upper] >= rank:
            if upper == float("inf"):
                return lower
            width = buckets[upper] - below
            return lower + (upper - lower) * ((rank - below) / width if width else 1.0)
        lower, below = upper, buckets[upper]
    return lower


def scrape_cost(worker: WorkerProcess, times: int = 5) -> tuple[int, float]:
    """The /metrics response size in bytes and the median time of `times` scrapes in ms."""
    took: list[float] = []
    size = 0
    for _ in range(times):
        start = time.perf_counter()
        size = len(worker.metrics_text().encode())
        took.append((time.perf_counter() - start) * 1000)
    return size, sorted(took)[times // 2]
