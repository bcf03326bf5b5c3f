"""Read an output topic from the beginning to its end: used by `rewards dead-letters` and tests."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import orjson
from confluent_kafka import Consumer, Message, TopicPartition

from streams.settings import Settings


def read_topic(settings: Settings, topic: str, timeout_s: float = 10.0) -> list[Message]:
    """Every record currently in `topic` (all partitions, from the start up to the end)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"inspect-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
        if metadata.error is not None:
            return []
        partitions = [TopicPartition(topic, p, 0) for p in metadata.partitions]
        ends = {
            tp.partition: consumer.get_watermark_offsets(tp, timeout=timeout_s)[1]
            for tp in partitions
        }
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign(partitions)
        records: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error() is None:
                    records.append(msg)
                offset, partition = msg.offset(), msg.partition()
                if offset is not None and partition is not None and offset + 1 >= ends[partition]:
                    pending.discard(partition)
        return records
    finally:
        consumer.close()


def count_dead_letters(settings: Settings, timeout_s: float = 10.0) -> Counter[tuple[str, str]]:
    """Dead letters by (source topic, reason)."""
    counts: Counter[tuple[str, str]] = Counter()
    for msg in read_topic(settings, settings.topic("dead-letter"), timeout_s):
        letter = orjson.loads(msg.value() or b"{}")
        counts[(letter.get("source", {}).get("topic", "?"), letter.get("reason", "?"))] += 1
    return counts
