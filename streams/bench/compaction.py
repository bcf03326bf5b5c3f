"""Let the broker's log cleaner compact a topic now (measurements of a changelog's kept size)."""

from __future__ import annotations

import time

from confluent_kafka import Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # not re-exported by admin
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from streams.adapters.kafka_io import admin_client
from streams.settings import Settings

CLEAN_NOW = {
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.0001",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "100",
    "max.compaction.lag.ms": "1000",
}
"""Topic settings under which the log cleaner compacts everything it may, at once."""
PROBE = b"\x00compaction-probe"
"""The key of the tombstone that rolls each partition's active segment (no account's key)."""


def compact_now(settings: Settings, topic: str, partitions: int) -> None:
    """Set `CLEAN_NOW` on `topic` and append a probe tombstone to each partition once
    `segment.ms` has passed, so every segment but the probe's can be cleaned; the broker's
    cleaner then runs within its backoff (`log.cleaner.backoff.ms`, 15 s by default)."""
    entries = [
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in CLEAN_NOW.items()
    ]
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries)
    admin = admin_client(settings.kafka_bootstrap_servers)
    for future in admin.incremental_alter_configs([resource]).values():
        future.result()
    time.sleep(1.0)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for partition in range(partitions):
        producer.produce(topic, key=PROBE, value=None, partition=partition)
    producer.flush(30)
