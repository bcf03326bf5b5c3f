"""A partition store's changelog read back: its watermarks, and its records replayed in batches."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from confluent_kafka import Consumer, KafkaError
from confluent_kafka import TopicPartition as KafkaPartition

from streams.adapters.kafka_retry import retried

log = logging.getLogger(__name__)


def watermarks(
    config: dict[str, Any], topic: str, partitions: Sequence[int], wait_s: float
) -> tuple[dict[int, int], dict[int, int]]:
    """Low and high watermarks of the changelog's partitions (waiting out a leader that is
    away or a topic not yet known to every broker, for up to `wait_s`)."""
    consumer = Consumer(config)
    try:
        marks = {
            p: retried(
                partial(consumer.get_watermark_offsets, KafkaPartition(topic, p), 30),
                f"watermarks of {topic}[{p}]",
                wait_s,
            )
            for p in partitions
        }
    finally:
        consumer.close()
    return {p: int(m[0]) for p, m in marks.items()}, {p: int(m[1]) for p, m in marks.items()}


async def replay(
    consumer: Consumer,
    starts: dict[int, int],
    new_batch: Callable[[], Any],
    write: Callable[[int, Any, int], None],
) -> int:
    """Apply the changelog's records from `starts` (the consumer is assigned there) up to each
    partition's end: after every fetch, each partition's batch is written with the offset it
    reached (`write(partition, batch, next offset)`). Returns the number of records applied."""
    pending, applied, started = set(starts), 0, time.monotonic()
    batches: dict[int, Any] = {p: new_batch() for p in starts}
    nexts = dict(starts)
    while pending:
        for record in consumer.consume(10_000, 0.05):
            error = record.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(int(record.partition() or 0))
                else:
                    log.warning("changelog recovery: %s (retrying)", error)
                continue
            partition, key = int(record.partition() or 0), record.key() or b""
            value = record.value()
            if value is None:
                batches[partition].delete(key)
            else:
                batches[partition].put(key, value)
            nexts[partition] = int(record.offset() or 0) + 1
            applied += 1
        for partition, batch in batches.items():
            write(partition, batch, nexts[partition])
            batches[partition] = new_batch()
        await asyncio.sleep(0)  # the web server and timers go on meanwhile
    log.info("recovered partitions %s: %d changelog records in %.1fs",
             sorted(starts), applied, time.monotonic() - started)  # fmt: skip
    return applied
