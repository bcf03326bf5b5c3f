"""The ingestion gate: decode and validate a batch, dead-letter the bad, drop duplicates."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from faust.types import EventT, Message

from processors.delivery import Delivery, Position, classify_delivery
from processors.routing import key_mismatch
from schemas.codec import Codec, DecodeError
from schemas.models import InputEvent
from streams.dead_letter import DeadLetterSink
from streams.dedupe import FirstSeenIndex
from streams.metrics import PipelineMetrics


@dataclass(frozen=True, slots=True)
class Admitted:
    """A valid event to process, with its topic's base name and where it came from."""

    topic: str
    event: InputEvent
    position: Position
    timestamp_s: float | None
    message: Message
    """The record as read: a business rejection dead-letters it with its original bytes."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """An admitted event the business rules refused: dead-lettered with `reason`."""

    item: Admitted
    reason: str
    detail: str


class Gate:
    """Turns a batch of raw records from any input topic into admitted events; nothing is lost."""

    def __init__(
        self,
        topics: Mapping[str, str],
        codec: Codec,
        first_seen: FirstSeenIndex,
        dead_letters: DeadLetterSink,
        metrics: PipelineMetrics,
    ) -> None:
        self._base = dict(topics)  # Kafka topic name -> base name such as "purchases"
        self._codec = codec
        self._first_seen = first_seen
        self._dead_letters = dead_letters
        self._metrics = metrics
        self.read_offsets: dict[tuple[str, int], int] = {}

    async def admit(self, records: Sequence[EventT[bytes]]) -> list[Admitted]:
        """Decode every record; dead-letter the invalid; return the first-seen and redelivered."""
        consumed: Counter[str] = Counter()
        valid: list[Admitted] = []
        for record in records:
            message = record.message
            base = self._base[message.topic]
            consumed[base] += 1
            self.read_offsets[(message.topic, message.partition)] = message.offset
            try:
                event = self._codec.decode(base, message.value or b"")
                mismatch = key_mismatch(base, event, message.key)
                if mismatch is not None:
                    raise DecodeError("key_mismatch", mismatch)
            except DecodeError as err:
                self._dead_letters.send(base, message, err.reason, err.detail)
                continue
            position = Position(message.topic, message.partition, message.offset)
            valid.append(Admitted(base, event, position, message.timestamp, message))
        for base, count in consumed.items():
            self._metrics.consumed.labels(base).inc(count)
            self._metrics.batch_size.labels(base).observe(count)
        return await self._drop_duplicates(valid)

    async def _drop_duplicates(self, valid: list[Admitted]) -> list[Admitted]:
        marks = await self._first_seen.mark([(a.event.event_id, a.position) for a in valid])
        admitted = []
        for item, mark in zip(valid, marks, strict=True):
            delivery = classify_delivery(mark, item.position)
            if delivery is Delivery.DUPLICATE:
                self._metrics.duplicates.labels(item.topic).inc()
                continue
            if delivery is Delivery.REDELIVERY:
                self._metrics.redeliveries.labels(item.topic).inc()
            admitted.append(item)
        return admitted

    async def reject(self, rejected: Sequence[Rejected]) -> None:
        """Dead-letter business rejections and forget their event ids for a fixed re-publish."""
        for r in rejected:
            self._dead_letters.send(r.item.topic, r.item.message, r.reason, r.detail)
        await self._first_seen.forget([(r.item.event.event_id, r.item.position) for r in rejected])

    def done(self, admitted: Sequence[Admitted]) -> None:
        """Count processed events and observe their end-to-end latency."""
        now = time.time()
        processed: Counter[str] = Counter()
        latency = self._metrics.latency.labels
        for item in admitted:
            processed[item.topic] += 1
            if item.timestamp_s:
                latency(item.topic).observe(max(0.0, now - item.timestamp_s))
        for base, count in processed.items():
            self._metrics.processed.labels(base).inc(count)
