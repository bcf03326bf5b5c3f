"""Operators' account commands (manual adjustments, erasure): published to `account-commands`,
keyed by the customer id, and applied by the worker that owns the customer's account."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from schemas.codec import encode
from schemas.models import AccountCommand
from streams.adapters.kafka_io import fast_producer, produce
from streams.settings import Settings


def publish_adjustment(  # noqa: PLR0917 - one adjustment, all of it needed
    settings: Settings,
    customer_id: str,
    points: int,
    reason: str,
    operator: str,
    adjustment_id: str | None = None,
) -> AccountCommand:
    """Publish one manual adjustment (`adjustment_id`: the retry-safe key; a new one if None)."""
    event_id = f"ac-{uuid.uuid4()}"
    return _publish(
        settings,
        AccountCommand(
            event_id=event_id,
            occurred_at=datetime.now(UTC),
            command="adjust",
            customer_id=customer_id,
            operator=operator,
            reason=reason,
            points=points,
            adjustment_id=adjustment_id or f"adj-{event_id[3:]}",
        ),
    )


def publish_forget(
    settings: Settings, customer_id: str, operator: str, reason: str | None = None
) -> AccountCommand:
    """Publish one erasure request for a customer's account."""
    return _publish(
        settings,
        AccountCommand(
            event_id=f"ac-{uuid.uuid4()}",
            occurred_at=datetime.now(UTC),
            command="forget",
            customer_id=customer_id,
            operator=operator,
            reason=reason,
        ),
    )


def _publish(settings: Settings, record: AccountCommand) -> AccountCommand:
    """Produce the command keyed by its customer (the account's partition) and wait for it."""
    producer = fast_producer(settings)
    key = record.customer_id.encode()
    produce(producer, settings.topic("account-commands"), encode(record), key)
    if producer.flush(30):
        raise RuntimeError("the command was not acknowledged by Kafka within 30 s")
    return record
