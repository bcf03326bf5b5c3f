"""Publish the soak's workload at a steady rate with a plain confluent-kafka producer."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from streams.chaos.workload import Record


@dataclass
class PublishStats:
    """How the publishing went (wall-clock times, epoch seconds)."""

    sent: int = 0
    delivered: int = 0
    failed: int = 0
    started: float = 0.0
    paced: float = 0.0
    """When the last record was handed to the producer."""
    finished: float = 0.0
    """When the last record was acknowledged."""

    @property
    def rate(self) -> float:
        """Records per second sent."""
        return self.sent / max(1e-9, self.paced - self.started)


def producer(bootstrap: str) -> Producer:
    """Keyed as the contract says (murmur2), acks from all in-sync replicas, idempotent (so the
    producer's own resends keep each partition's order), patient through a broker outage."""
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "partitioner": "murmur2_random",
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "compression.type": "lz4",
            "message.timeout.ms": 300_000,
        }
    )


def publish(
    bootstrap: str,
    prefix: str,
    records: Sequence[Record],
    rate: float,
    progress: Callable[[str], Any] = print,
) -> PublishStats:
    """Send `records` in order at about `rate` per second; wait until all are acknowledged."""
    stats = PublishStats(started=time.time())
    client = producer(bootstrap)

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            stats.delivered += 1
        else:
            stats.failed += 1

    begin, shown = time.monotonic(), time.monotonic()
    for i, record in enumerate(records):
        wait = begin + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        _produce(client, f"{prefix}{record.topic}", record, delivered)
        stats.sent += 1
        if time.monotonic() - shown >= 10.0:
            shown = time.monotonic()
            progress(
                f"[chaos] published {stats.sent:,}/{len(records):,} "
                f"({stats.delivered:,} acknowledged)"
            )
    stats.paced = time.time()
    left = client.flush(300)
    stats.failed += left
    stats.finished = time.time()
    return stats


def _produce(
    client: Producer,
    topic: str,
    record: Record,
    delivered: Callable[[KafkaError | None, Message], None],
) -> None:
    while True:
        try:
            client.produce(topic, value=record.value, key=record.key, on_delivery=delivered)
            client.poll(0)
            return
        except BufferError:
            client.poll(0.05)
