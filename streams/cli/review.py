"""Operator decisions on referrals held for review: published to `fraud-decisions`, applied by the
worker that owns the referee."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from schemas.codec import encode
from schemas.models import FraudDecision
from streams.adapters.kafka_io import fast_producer, produce
from streams.settings import Settings


def publish_decision(  # noqa: PLR0917 - one decision, all of it needed
    settings: Settings,
    referee_id: str,
    decision: str,
    operator: str,
    reason: str | None = None,
    alert_id: str | None = None,
) -> FraudDecision:
    """Publish one operator decision (keyed by the referee, like the account it changes)."""
    record = FraudDecision(
        event_id=f"fd-{uuid.uuid4()}",
        occurred_at=datetime.now(UTC),
        referee_id=referee_id,
        decision=decision,  # type: ignore[arg-type]  # argparse choices: approve|reject
        operator=operator,
        alert_id=alert_id,
        reason=reason,
    )
    producer = fast_producer(settings)
    produce(producer, settings.topic("fraud-decisions"), encode(record), referee_id.encode())
    if producer.flush(30):
        raise RuntimeError("the decision was not acknowledged by Kafka within 30 s")
    return record
