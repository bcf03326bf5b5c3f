"""Dead-letter sink: a bad record goes to `dead-letter` with reason, source and original bytes.

Dead letters are produced in the batch's transaction, so a record's dead letter is on the broker
exactly when its offset is committed. Every envelope fits the dead-letter topic: the original
bytes are kept when their base64 fits, otherwise a prefix of them, with the original's size and
SHA-256 and `original_truncated` set (a record of several MiB, possible once an operator raises a
topic's `max.message.bytes`, never crashes the worker nor goes missing).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import socket
from collections import Counter
from datetime import UTC, datetime

from confluent_kafka import Message

from schemas.codec import encode
from schemas.outputs import DeadLetter, DeadLetterSource
from streams.adapters.outbox import Emitter

log = logging.getLogger(__name__)

REPLAY_HEADER = "rewards-replay-of"
"""Set by `rewards dead-letters replay` on a republished record: the dead letter it came from."""

DEAD_LETTER_MAX_BYTES = 4 * 1024 * 1024
"""The dead-letter topic's `max.message.bytes` (and the producer's limit)."""
ENVELOPE_ROOM = 16 * 1024
"""Bytes kept free for the envelope's other fields (the detail is at most 500 characters)."""


class DeadLetterSink:
    """Produces dead letters into the open transaction and counts them once it commits."""

    def __init__(self, outbox: Emitter, max_bytes: int = DEAD_LETTER_MAX_BYTES) -> None:
        self._outbox = outbox
        self._topic = outbox.topic("dead-letter")
        self._keep = (max_bytes - ENVELOPE_ROOM) // 4 * 3  # raw bytes whose base64 fits
        self._worker = f"{socket.gethostname()}/{os.getpid()}"
        self.pending: Counter[tuple[str, str]] = Counter()
        """Dead letters of the open transaction, by (base topic, reason)."""

    def send(self, base_topic: str, message: Message, reason: str, detail: str) -> None:
        """Produce one dead letter for `message`."""
        value = message.value() or b""
        key = message.key()
        kept = value[: self._keep]
        kind, stamp = message.timestamp()
        letter = DeadLetter(
            reason=reason,
            detail=detail,
            source=DeadLetterSource(
                topic=str(message.topic()),
                partition=int(message.partition() or 0),
                offset=int(message.offset() or 0),
                timestamp_ms=stamp if kind and stamp >= 0 else None,
            ),
            original_value_b64=base64.b64encode(kept).decode(),
            original_key_b64=base64.b64encode(key[: self._keep]).decode()
            if key is not None
            else None,
            failed_at=datetime.now(UTC),
            worker=self._worker,
            original_size=len(value),
            original_sha256=hashlib.sha256(value).hexdigest(),
            original_truncated=True if len(kept) < len(value) else None,
            replay_of=replay_of(message),
        )
        self._outbox.emit_raw(self._topic, key[: self._keep] if key else key, encode(letter))
        self.pending[(base_topic, reason)] += 1
        log.info("dead-lettered %s[%d]@%d: %s", message.topic(), message.partition(),
                 message.offset(), reason)  # fmt: skip


def replay_of(message: Message) -> str | None:
    """The dead letter a replayed record came from (its `rewards-replay-of` header), if any."""
    for header in message.headers() or []:
        name, value = header[0], header[1]
        if name == REPLAY_HEADER and isinstance(value, bytes):
            return value.decode(errors="replace")[:300]
    return None
