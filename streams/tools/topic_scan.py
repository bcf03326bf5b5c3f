"""Read a topic completely, up to the end it had when reading started, and the account table.

Unlike `streams.tools.inspect.read_topic` (best effort, for counters), a scan that cannot reach
the end within its timeout raises: the review queue and `rewards ledger verify` must never
work from half a topic. Only committed records are read (`isolation.level=read_committed`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from processors.points import Account
from streams.adapters.account_store import decode_account
from streams.settings import Settings


class IncompleteScan(RuntimeError):
    """A topic could not be read up to its end within the timeout."""


def _consumer(settings: Settings) -> Consumer:
    """A throwaway consumer (no group commits) that reads committed records only."""
    return Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"scan-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )


def scan_topic(
    settings: Settings,
    topic: str,
    timeout_s: float = 60.0,
    on_start: Callable[[int], None] | None = None,
) -> Iterator[Message]:
    """Every record of `topic` (tombstones included), each partition up to its end at the start;
    `on_start` gets how many offsets that is. A missing topic has no records."""
    consumer = _consumer(settings)
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
        if metadata.error is not None:
            return
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for p in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > low:
                ends[p] = high
                starts.append(TopicPartition(topic, p, low))
        if on_start is not None:
            on_start(sum(ends[tp.partition] - tp.offset for tp in starts))
        consumer.assign(starts)
        yield from _until_ends(consumer, ends, time.monotonic() + timeout_s)
    finally:
        consumer.close()


def _until_ends(consumer: Consumer, ends: dict[int, int], deadline: float) -> Iterator[Message]:
    """The assigned partitions' records until each reached its end offset."""
    pending = dict(ends)
    while pending:
        if time.monotonic() > deadline:
            raise IncompleteScan(f"partitions {sorted(pending)} not read to their end in time")
        for msg in consumer.consume(num_messages=1000, timeout=0.5):
            partition, offset, error = int(msg.partition() or 0), msg.offset(), msg.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                raise IncompleteScan(f"reading {msg.topic()}: {error}")
            end = pending.get(partition)
            if end is None or offset is None:
                continue
            if error is None and offset < end:
                yield msg
            if offset + (error is None) >= end:  # the last record, or past a commit marker
                del pending[partition]


def account_table(settings: Settings, timeout_s: float = 60.0) -> dict[str, Account]:
    """The accounts changelog's latest record per customer; a tombstone removes the customer."""
    table: dict[str, Account] = {}
    for msg in scan_topic(settings, settings.changelog_topic(), timeout_s):
        customer_id = (msg.key() or b"").decode()
        raw = msg.value()
        if raw is None:
            table.pop(customer_id, None)
        else:
            table[customer_id] = decode_account(raw)
    return table
