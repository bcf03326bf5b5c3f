"""Read topics to their end as `read_committed` consumers see them: the one reader of the tools.

Every partition is read from a start offset (default: its log start) up to an end fixed before
reading begins (default: its end then, which for a `read_committed` client is the last stable
offset: a transaction still open is not waited for), so records that arrive meanwhile are not
read; a partition is done at its last record or, when the end is a commit marker or aborted
records, at the client's end-of-partition event past it. `Span.end = None` reads until the
consumer has caught up instead. Only committed records are read; tombstones are records. A
reader that cannot reach every end in time raises `IncompleteRead` (`read_topic` alone returns
what it read: counters and tests). Errors the client reports while reading are informational
(it recovers by itself) and end up in `IncompleteRead`'s message; only a fatal one raises.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streams.adapters.kafka_retry import TRANSIENT
from streams.settings import Settings


class IncompleteRead(TimeoutError):
    """Partitions could not be read up to their end within the timeout."""


@dataclass(frozen=True, slots=True)
class Span:
    """One partition's offsets to read: from `start` up to `end` (exclusive); `end=None`: until
    the consumer has caught up with the partition."""

    topic: str
    partition: int
    start: int
    end: int | None


def _consumer(bootstrap: str) -> Consumer:
    """A throwaway consumer (no group commits) that reads committed records only."""
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"topic-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 64 << 20,
            "max.partition.fetch.bytes": 16 << 20,
        }
    )


def _watermarks(consumer: Consumer, topic: str, timeout_s: float) -> dict[int, tuple[int, int]]:
    """Partition -> (log start, end) now, the end being the last stable offset (the client reads
    committed records only); a missing topic has no partitions. A topic just created may have no
    leader for a moment: transient errors are retried within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            found = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
            if found is None or found.error == KafkaError.UNKNOWN_TOPIC_OR_PART:
                return {}
            if found.error is not None:
                raise KafkaException(found.error)
            return {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
                for p in sorted(found.partitions)
            }
        except KafkaException as exc:
            if exc.args[0].code() not in TRANSIENT or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def end_offsets(bootstrap: str, topic: str, timeout_s: float = 30.0) -> dict[int, int]:
    """Partition -> its end now for a `read_committed` reader (the last stable offset, which is
    the high watermark unless a transaction is open); a missing topic has none."""
    consumer = _consumer(bootstrap)
    try:
        return {p: high for p, (_, high) in _watermarks(consumer, topic, timeout_s).items()}
    finally:
        consumer.close()


def read_to_end(
    bootstrap: str,
    topic: str,
    timeout_s: float = 60.0,
    on_start: Callable[[int], None] | None = None,
) -> Iterator[Message]:
    """Every committed record of `topic`, each partition from its log start up to the end it had
    when reading started; `on_start` gets how many offsets that is. A missing topic
    has no records. Raises `IncompleteRead` if an end is not reached within `timeout_s`."""
    consumer = _consumer(bootstrap)
    try:
        marks = _watermarks(consumer, topic, timeout_s)
        spans = [Span(topic, p, low, high) for p, (low, high) in marks.items() if high > low]
        if on_start is not None:
            on_start(sum(high - low for low, high in marks.values() if high > low))
        yield from _read(consumer, spans, time.monotonic() + timeout_s, complete=True)
    finally:
        consumer.close()


def read_spans(bootstrap: str, spans: Sequence[Span], timeout_s: float = 60.0) -> Iterator[Message]:
    """The committed records of the given spans (any topics); `IncompleteRead` as above."""
    consumer = _consumer(bootstrap)
    try:
        yield from _read(consumer, spans, time.monotonic() + timeout_s, complete=True)
    finally:
        consumer.close()


def read_topic(settings: Settings, topic: str, timeout_s: float = 10.0) -> list[Message]:
    """Best effort, for counters and tests: the records of `read_to_end` that could be read
    within `timeout_s`, all of them or fewer (never raises `IncompleteRead`)."""
    consumer = _consumer(settings.kafka_bootstrap_servers)
    try:
        marks = _watermarks(consumer, topic, timeout_s)
        spans = [Span(topic, p, low, high) for p, (low, high) in marks.items() if high > low]
        return list(_read(consumer, spans, time.monotonic() + timeout_s, complete=False))
    finally:
        consumer.close()


def _read(
    consumer: Consumer, spans: Sequence[Span], deadline: float, complete: bool
) -> Iterator[Message]:
    """The spans' records until each partition reached its end (or, `complete=False`, until the
    deadline, whichever is first)."""
    live = [s for s in spans if s.end is None or s.end > s.start]
    pending = {(s.topic, s.partition): s.end for s in live}
    consumer.assign([TopicPartition(s.topic, s.partition, s.start) for s in live])
    last_error: KafkaError | None = None
    while pending:
        if time.monotonic() > deadline:
            if not complete:
                return
            seen = "" if last_error is None else f" (last error: {last_error})"
            raise IncompleteRead(f"partitions {sorted(pending)} not read to their end{seen}")
        for msg in consumer.consume(num_messages=10_000, timeout=0.5):
            error = msg.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                if error.fatal():
                    raise KafkaException(error)
                last_error = error  # informational: the client retries by itself
                continue
            where, offset = (str(msg.topic()), int(msg.partition() or 0)), msg.offset()
            if where not in pending or offset is None:
                continue  # a partition already read to its end
            end = pending[where]
            if error is None and (end is None or offset < end):
                yield msg
            if _at_end(end, offset, eof=error is not None):
                del pending[where]


def _at_end(end: int | None, offset: int, eof: bool) -> bool:
    """Whether a partition is done: an end-of-partition event (at or past `end`, if any), or
    the record just before `end` (an end that is a commit marker is passed only by the event)."""
    if end is None:
        return eof
    return offset >= end if eof else offset + 1 >= end
