"""Plain confluent-kafka clients for operational commands: topic creation and fast publishing."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from streams.settings import CONTROL_TOPICS, INPUT_TOPICS, OUTPUT_TOPICS, Settings

log = logging.getLogger(__name__)

TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    "dead-letter": {
        "max.message.bytes": str(4 * 1024 * 1024),
        "retention.ms": str(30 * 86_400_000),
    },
}


@functools.cache
def admin_client(bootstrap_servers: str) -> AdminClient:
    """One AdminClient per cluster for the whole process (no new connection per topic call)."""
    return AdminClient({"bootstrap.servers": bootstrap_servers})


def ensure_topics(
    settings: Settings, names: Iterable[str] = INPUT_TOPICS + CONTROL_TOPICS + OUTPUT_TOPICS
) -> None:
    """Create the product's topics if missing, with the configured partitions and replication."""
    admin = admin_client(settings.kafka_bootstrap_servers)
    wanted = [
        NewTopic(
            settings.topic(name),
            num_partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            config=TOPIC_CONFIGS.get(name, {}),
        )
        for name in names
    ]
    for topic, future in admin.create_topics(wanted, operation_timeout=30).items():
        try:
            future.result()
            log.info("created topic %s", topic)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise


def delete_topics(
    settings: Settings, names: Iterable[str] = INPUT_TOPICS + CONTROL_TOPICS + OUTPUT_TOPICS
) -> None:
    """Delete the product's topics under this settings' prefix, and Faust's internal ones."""
    admin = admin_client(settings.kafka_bootstrap_servers)
    existing = admin.list_topics(timeout=30).topics
    # A name listed twice makes the broker reject the request (INVALID_REQUEST), and converting
    # that answer crashed confluent-kafka 2.16.1 (SIGSEGV): hence the set.
    wanted = {settings.topic(n) for n in names}
    wanted |= {t for t in existing if t.startswith(f"{settings.app_id}-")}  # Faust's own
    doomed = sorted(t for t in wanted if t in existing)
    if doomed:
        for future in admin.delete_topics(doomed, operation_timeout=30).values():
            future.result()


def fast_producer(settings: Settings, **overrides: Any) -> Producer:
    """A batching, idempotent producer (acks=all) with the client's default partitioner settings."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "enable.idempotence": True,
        "linger.ms": 10,
        "batch.size": 1 << 20,
        "compression.type": "lz4",
        "partitioner": "murmur2_random",
        "message.max.bytes": 4 * 1024 * 1024,
    }
    config.update(overrides)
    return Producer(config)


def produce(producer: Producer, topic: str, value: bytes, key: bytes | None) -> None:
    """Queue one record, waiting for room when the local queue is full."""
    while True:
        try:
            producer.produce(topic, value=value, key=key)
            return
        except BufferError:
            producer.poll(0.05)
