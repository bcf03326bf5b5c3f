"""The benchmark's shared harness: publish, the raw-consumer baseline, waiting and quantiles."""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import NamedTuple

import orjson
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition

from schemas.codec import Codec, DecodeError
from streams.adapters.kafka_io import admin_client, fast_producer, produce
from streams.bench.peer_procs import cpu_seconds
from streams.bench.worker_process import WorkerProcess
from streams.cli.publish import paced
from streams.cli.simulator import SimEvent
from streams.settings import INPUT_TOPICS, Settings

LATENCY = "rewards_processing_latency_seconds_bucket"
SETTLE_S = 2.0
COMMITTED_POLL_S = 0.1
"""How often a catch-up's committed offsets are read (from the broker: the worker is not asked)."""


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
    """A worker's catch-up: from its first commit to the commit of its last input record."""

    seconds: float
    records: float
    cpu_s: float
    """The worker process's CPU over the same span."""


def wait_committed(
    settings: Settings, worker: WorkerProcess, target: int, timeout_s: float = 600
) -> Busy:
    """Poll the worker's consumer group's committed offsets of the input topics until they
    cover `target` records; the records, seconds and worker CPU after its first commit.

    The loop awaits each commit before it takes the next batch, so the records committed after
    the first commit are the work done after it, to within one poll. (Counting the worker's own
    counters, scraped once a second to spare its CPU, missed up to a commit interval of work at
    either end: 1 s while it catches up, a tenth of a 10 s run.)"""
    admin = admin_client(settings.kafka_bootstrap_servers)
    partitions = [TopicPartition(settings.topic(t), p)
                  for t in INPUT_TOPICS for p in range(settings.partitions)]  # fmt: skip
    request = [ConsumerGroupTopicPartitions(settings.app_id, partitions)]
    pid = worker.proc.pid if worker.proc else None
    first: tuple[float, int, float] | None = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = admin.list_consumer_group_offsets(request)[settings.app_id].result(30)
        committed = sum(max(int(tp.offset), 0) for tp in found.topic_partitions or ())
        now, cpu = time.perf_counter(), cpu_seconds(pid)
        if committed > 0 and first is None:
            first = (now, committed, cpu)
        if committed >= target:
            assert first is not None
            return Busy(max(now - first[0], 1e-9), committed - first[1], cpu - first[2])
        time.sleep(COMMITTED_POLL_S)
    raise TimeoutError(f"the worker committed fewer than {target} records in {timeout_s}s")


def wait_consumed(worker: WorkerProcess, target: float, timeout_s: float = 600) -> None:
    """Poll until the worker consumed `target` input records (not counting the control topics'
    records it sends itself)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        consumed = sum(
            worker.total("rewards_events_consumed_total", topic=topic) for topic in INPUT_TOPICS
        )
        if consumed >= target:
            return
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
