"""In-memory fakes of the gate's ports: first-seen index, dead-letter sink, records, poison."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import Message
from prometheus_client import CollectorRegistry

from processors.delivery import Position
from schemas.codec import Codec
from streams.adapters.metrics import PipelineMetrics
from streams.ingest import Gate, Seen, StreamClocks

TIMESTAMP_CREATE_TIME = 1
"""confluent_kafka.TIMESTAMP_CREATE_TIME: the producer stamped the record."""


class FirstSeenMarks:
    """`streams.adapters.dedupe.FirstSeenIndex` in a dict: per (topic, event id) the first
    mark wins (`SET NX GET`); `mark` answers the earlier mark's `partition:offset` or None, in
    order (a batch that names an id twice sees its own first mark); `forget` deletes."""

    def __init__(self) -> None:
        self.marks: dict[tuple[str, str], str] = {}
        """(full topic name, event id) -> `partition:offset` of its first record."""
        self.peeks = 0

    async def mark(self, entries: Sequence[Seen]) -> list[str | None]:
        """Mark each (event_id, position) if new; the first-seen token for each entry."""
        out: list[str | None] = []
        for event_id, position, _ in entries:
            key = (position.topic, event_id)
            out.append(self.marks.get(key))
            self.marks.setdefault(key, position.token())
        return out

    async def peek(self, entries: Sequence[tuple[str, Position]]) -> list[str | None] | None:
        """The marks as they are (a Redis of the version before, read during the cut-over);
        None once there are none, counting the questions."""
        self.peeks += 1
        if not self.marks:
            return None
        return [self.marks.get((position.topic, event_id)) for event_id, position in entries]

    async def forget(self, entries: Sequence[Seen]) -> None:
        """Drop the marks of these event ids (whoever set them, as Redis `DEL` does)."""
        for event_id, position, _ in entries:
            self.marks.pop((position.topic, event_id), None)


@dataclass(frozen=True)
class Letter:
    """What the real sink would put in a dead letter's envelope."""

    base_topic: str
    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes

    @property
    def position(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


class DeadLetters:
    """`streams.adapters.dead_letter.DeadLetterSink` as the gate uses it (`send`, `pending`),
    keeping every letter it would send in `sent`."""

    def __init__(self) -> None:
        self.sent: list[Letter] = []
        self.pending: Counter[tuple[str, str]] = Counter()
        """Dead letters of the open transaction, by (base topic, reason)."""

    def send(self, base_topic: str, message: Message, reason: str, detail: str) -> None:
        """Record one dead letter for `message`."""
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        where = (str(topic), int(partition or 0), int(offset or 0))
        letter = Letter(base_topic, reason, detail, *where, message.key(), message.value() or b"")
        self.sent.append(letter)
        self.pending[(base_topic, reason)] += 1


class NoPoison:
    """No record is known to make handling raise."""

    def why(self, record: Message) -> str | None:
        return None


class StandInMessage:
    """A record for confluent-kafka releases whose `Message` cannot be built (2025 and older;
    the project allows confluent-kafka>=2.4)."""

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def topic(self) -> str | None:
        return cast("str | None", self._fields.get("topic"))

    def partition(self) -> int | None:
        return cast("int | None", self._fields.get("partition"))

    def offset(self) -> int | None:
        return cast("int | None", self._fields.get("offset"))

    def key(self) -> bytes | None:
        return cast("bytes | None", self._fields.get("key"))

    def value(self) -> bytes | None:
        return cast("bytes | None", self._fields.get("value"))

    def timestamp(self) -> tuple[int, int]:
        return cast("tuple[int, int]", self._fields.get("timestamp", (0, -1)))

    def headers(self) -> list[tuple[str, bytes]] | None:
        return cast("list[tuple[str, bytes]] | None", self._fields.get("headers"))

    def error(self) -> None:
        return None


def record(
    topic: str,
    value: bytes | None,
    key: bytes | None = None,
    partition: int = 0,
    offset: int = 0,
    timestamp_ms: int = 1_795_435_200_000,
) -> Message:
    """A consumed record (a real `confluent_kafka.Message` where the client can build one)."""
    stamp = (TIMESTAMP_CREATE_TIME, timestamp_ms)
    try:
        return Message(
            topic=topic, partition=partition, offset=offset, key=key, value=value, timestamp=stamp
        )
    except TypeError:  # an older client: "cannot create 'cimpl.Message' instances"
        stand_in = StandInMessage(
            topic=topic, partition=partition, offset=offset, key=key, value=value, timestamp=stamp
        )
        return cast(Message, stand_in)


def gate(
    topics: Mapping[str, str],
    *,
    first_seen: FirstSeenMarks,
    dead_letters: DeadLetters,
    metrics: PipelineMetrics | None = None,
    codec: Codec | None = None,
) -> Gate:
    """A real gate on the fakes (`topics`: full topic name -> base name), counting into
    `metrics` (a registry of its own if not given)."""
    return Gate(
        topics,
        codec or Codec(),
        first_seen=first_seen,
        dead_letters=dead_letters,
        metrics=metrics or PipelineMetrics.create(CollectorRegistry()),
        clocks=StreamClocks(),
        poison=NoPoison(),
    )
