"""Dead-letter sink: a bad record goes to `dead-letter` with reason, source and original bytes."""

from __future__ import annotations

import base64
import logging
import os
import socket
from datetime import UTC, datetime

from faust.types import Message, TopicT

from schemas.codec import encode
from schemas.outputs import DeadLetter, DeadLetterSource
from streams.metrics import PipelineMetrics

log = logging.getLogger(__name__)


class DeadLetterSink:
    """Publishes dead letters without waiting (`send_soon`): a bad record never holds its batch.

    Faust flushes the producer before it commits the source offsets, so a dead letter is durable
    before its record counts as consumed.
    """

    def __init__(self, topic: TopicT, metrics: PipelineMetrics) -> None:
        self._topic = topic
        self._metrics = metrics
        self._worker = f"{socket.gethostname()}/{os.getpid()}"

    def send(self, base_topic: str, message: Message, reason: str, detail: str) -> None:
        """Publish one dead letter for `message` and count it by reason."""
        value = message.value if isinstance(message.value, bytes) else bytes(message.value or b"")
        key = message.key if isinstance(message.key, bytes) else None
        letter = DeadLetter(
            reason=reason,
            detail=detail,
            source=DeadLetterSource(
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None,
            ),
            original_value_b64=base64.b64encode(value).decode(),
            original_key_b64=base64.b64encode(key).decode() if key is not None else None,
            failed_at=datetime.now(UTC),
            worker=self._worker,
        )
        self._topic.send_soon(key=key, value=encode(letter))
        self._metrics.dead_letters.labels(base_topic, reason).inc()
        log.info(
            "dead-lettered %s[%d]@%d: %s", message.topic, message.partition, message.offset, reason
        )
