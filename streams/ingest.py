"""The ingestion gate: decode and validate a batch, dead-letter the bad, drop duplicates.

Every record is counted exactly once, when the transaction that commits its offset commits: as
processed, as dead-lettered (invalid, or refused by the business rules) or as a duplicate
(`rewards_events_consumed_total` = processed + dead-lettered + duplicates, per topic). Records of
an aborted transaction are not counted: they are read again and counted then. Latency is
observed at the same moment: from the record's timestamp to its outputs being visible.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol

from confluent_kafka import Message
from msgspec import Struct

from processors.delivery import Delivery, Position, classify_delivery
from processors.routing import key_mismatch
from schemas.codec import Codec, DecodeError
from schemas.models import InputEvent
from streams.adapters.metrics import PipelineMetrics

Seen = tuple[str, Position, datetime]
"""An event id, where its record is, and the stream time it is processed at."""


class FirstSeen(Protocol):
    """The first-seen index of event ids (the hot path's `streams.adapters.seen_marks`, in the
    partition's state; the fulfilment loop's `streams.adapters.dedupe`, in Redis)."""

    async def mark(self, entries: Sequence[Seen]) -> list[str | None]:
        """Mark each event id at its position if new; the first position seen, or None."""

    async def forget(self, entries: Sequence[Seen]) -> None:
        """Drop the marks (a rejected event may be corrected and published again)."""


class DeadLetters(Protocol):
    """Where the gate sends what it refuses (`streams.adapters.dead_letter.DeadLetterSink`)."""

    pending: Counter[tuple[str, str]]
    """Dead letters of the open transaction, by (base topic, reason)."""

    def send(self, base_topic: str, message: Message, reason: str, detail: str) -> None:
        """Dead-letter `message` with its reason."""


class PoisonRecords(Protocol):
    """Records known to make handling raise."""

    def why(self, record: Message) -> str | None:
        """Why `record` is poison, or None."""


class Admitted(Struct, frozen=True, gc=False):
    """A valid event to process, with its topic's base name, where it came from and the stream
    time it is processed at."""

    topic: str
    event: InputEvent
    position: Position
    at: datetime
    timestamp_s: float | None
    message: Message
    """The record as read: a business rejection dead-letters it with its original bytes."""


class Rejected(Struct, frozen=True, gc=False):
    """An admitted event the business rules refused: dead-lettered with `reason`."""

    item: Admitted
    reason: str
    detail: str


class StreamClocks:
    """Each partition's stream time: the latest record timestamp processed there (never ahead
    of the wall clock, never going back). Events are processed at it, so replaying the same
    records settles the same way whenever it happens. A participant of the transaction: an
    aborted one puts the clocks back where its records found them (they are read again)."""

    def __init__(self) -> None:
        self._ms: dict[int, int] = {}
        self._at: dict[int, datetime] = {}
        self._before: dict[int, tuple[int, datetime] | None] = {}
        """Partitions whose clock the open transaction moved: where it was before."""

    def committed(self) -> None:
        """The transaction committed: its clocks stay."""
        self._before.clear()

    def discarded(self) -> None:
        """The transaction was aborted: put the clocks it moved back."""
        for partition, before in self._before.items():
            if before is None:
                self._ms.pop(partition, None)
                self._at.pop(partition, None)
            else:
                self._ms[partition], self._at[partition] = before
        self._before.clear()

    def seed(self, partition: int, at: datetime | None) -> None:
        """Start a partition's clock where its state left it."""
        self.forget(partition)
        if at is not None:
            self._ms[partition], self._at[partition] = int(at.timestamp() * 1000), at

    def forget(self, partition: int) -> None:
        """The partition is no longer owned here."""
        self._ms.pop(partition, None)
        self._at.pop(partition, None)
        self._before.pop(partition, None)

    def advance(self, partition: int, timestamp_ms: int, wall_ms: int) -> datetime:
        """The partition's time once a record with `timestamp_ms` is read."""
        ms = min(max(timestamp_ms, 0), wall_ms)
        current = self._ms.get(partition)
        if current is not None and ms <= current:
            return self._at[partition]
        if partition not in self._before:
            self._before[partition] = None if current is None else (current, self._at[partition])
        at = datetime.fromtimestamp(ms / 1000, UTC)
        self._ms[partition], self._at[partition] = ms, at
        return at

    def now(self, partition: int) -> datetime | None:
        """The partition's current time, if it has one."""
        return self._at.get(partition)


class Gate:
    """Turns a batch of raw records from any input topic into admitted events; nothing is lost."""

    def __init__(
        self,
        topics: Mapping[str, str],
        codec: Codec,
        *,
        first_seen: FirstSeen,
        dead_letters: DeadLetters,
        metrics: PipelineMetrics,
        clocks: StreamClocks,
        poison: PoisonRecords,
    ) -> None:
        self._base = dict(topics)  # Kafka topic name -> base name such as "purchases"
        self._codec = codec
        self._first_seen = first_seen
        self._dead_letters = dead_letters
        self._metrics = metrics
        self.clocks = clocks
        self._poison = poison
        self._consumed: Counter[str] = Counter()
        self._duplicates: Counter[str] = Counter()
        self._redelivered: Counter[str] = Counter()
        self._txn_consumed: Counter[str] = Counter()
        self._txn_duplicates: Counter[str] = Counter()
        self._txn_redelivered: Counter[str] = Counter()
        self._txn_dead: Counter[tuple[str, str]] = Counter()
        self._processed: list[Admitted] = []

    async def admit(self, records: Sequence[Message]) -> list[Admitted]:
        """Decode every record; dead-letter the invalid; return the first-seen and redelivered."""
        valid: list[Admitted] = []
        wall_ms = int(time.time() * 1000)
        for record in records:
            base = self._base[str(record.topic())]
            self._consumed[base] += 1
            try:
                event = self._decode(base, record)
                why = self._poison.why(record)
                if why is not None:
                    raise DecodeError("processing_error", why)
            except DecodeError as err:
                self._dead_letters.send(base, record, err.reason, err.detail)
                continue
            partition = int(record.partition() or 0)
            _, stamp = record.timestamp()
            at = self.clocks.advance(partition, stamp, wall_ms)
            position = Position(str(record.topic()), partition, int(record.offset() or 0))
            seconds = stamp / 1000 if stamp > 0 else None
            valid.append(Admitted(base, event, position, at, seconds, record))
        return await self._drop_duplicates(valid)

    def _decode(self, base: str, record: Message) -> InputEvent:
        """The record's event, or DecodeError: invalid input, a key that names someone else, or
        anything else a record can make the decoder raise (`processing_error`)."""
        try:
            event = self._codec.decode(base, record.value() or b"")
            mismatch = key_mismatch(base, event, record.key())
        except DecodeError:
            raise
        except Exception as exc:  # one record never stops the partition
            raise DecodeError("processing_error", f"{type(exc).__name__}: {exc}"[:500]) from exc
        if mismatch is not None:
            raise DecodeError("key_mismatch", mismatch)
        return event

    async def _drop_duplicates(self, valid: list[Admitted]) -> list[Admitted]:
        marks = await self._first_seen.mark([(a.event.event_id, a.position, a.at) for a in valid])
        admitted = []
        for item, mark in zip(valid, marks, strict=True):
            delivery = classify_delivery(mark, item.position)
            if delivery is Delivery.DUPLICATE:
                self._duplicates[item.topic] += 1
                continue
            if delivery is Delivery.REDELIVERY:
                self._redelivered[item.topic] += 1
            admitted.append(item)
        return admitted

    async def reject(self, rejected: Sequence[Rejected]) -> None:
        """Dead-letter business rejections and forget their event ids for a fixed re-publish."""
        for r in rejected:
            self._dead_letters.send(r.item.topic, r.item.message, r.reason, r.detail)
        forgotten = [(r.item.event.event_id, r.item.position, r.item.at) for r in rejected]
        await self._first_seen.forget(forgotten)

    def done(self, processed: Sequence[Admitted]) -> None:
        """The batch is handled: `processed` are the events the handlers took (not the rejected);
        its counts join the open transaction's."""
        self._processed.extend(processed)
        for mine, theirs in ((self._consumed, self._txn_consumed),
                             (self._duplicates, self._txn_duplicates),
                             (self._redelivered, self._txn_redelivered)):  # fmt: skip
            theirs.update(mine)
            mine.clear()
        self._txn_dead.update(self._dead_letters.pending)
        self._dead_letters.pending.clear()

    def committed(self) -> None:
        """The transaction committed: count every record of it once, observe latencies."""
        metrics, now = self._metrics, time.time()
        processed: Counter[str] = Counter()
        observers: dict[str, Callable[[float], None]] = {}
        for item in self._processed:
            processed[item.topic] += 1
            if item.timestamp_s:
                observe = observers.get(item.topic)
                if observe is None:
                    observe = observers[item.topic] = metrics.latency.labels(item.topic).observe
                observe(max(0.0, now - item.timestamp_s))
        for base, count in self._txn_consumed.items():
            metrics.consumed.labels(base).inc(count)
            metrics.batch_size.labels(base).observe(count)
        for tally, counter in (
            (processed, metrics.processed),
            (self._txn_duplicates, metrics.duplicates),
            (self._txn_redelivered, metrics.redeliveries),
        ):
            for base, count in tally.items():
                counter.labels(base).inc(count)
        for (base, reason), count in self._txn_dead.items():
            metrics.dead_letters.labels(base, reason).inc(count)
        self.discarded()

    def discarded(self) -> None:
        """The transaction was aborted (or a batch failed): its records are read, and counted,
        again."""
        for tally in (self._consumed, self._duplicates, self._redelivered, self._txn_consumed,
                      self._txn_duplicates, self._txn_redelivered, self._txn_dead):  # fmt: skip
            tally.clear()
        self._dead_letters.pending.clear()
        self._processed.clear()
