"""Delivery decisions: is a record new, a redelivery of itself, or a duplicate of another record."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Delivery(enum.Enum):
    """What to do with a record whose event id may have been seen before."""

    NEW = "new"
    """First time this event id is seen: process it."""
    REDELIVERY = "redelivery"
    """The very same record (same partition and offset) again, after a crash or rebalance before the
    offset commit: process it again; effects are idempotent by deterministic ids."""
    DUPLICATE = "duplicate"
    """Another record with an event id already seen (a producer retry or an upstream double send):
    skip it."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a record sits in Kafka."""

    topic: str
    partition: int
    offset: int

    def token(self) -> str:
        """A compact, comparable form stored as the first-seen marker."""
        return f"{self.partition}:{self.offset}"


def classify_delivery(first_seen: str | None, position: Position) -> Delivery:
    """Classify a record given the first-seen marker stored for its event id (None if none was)."""
    if first_seen is None:
        return Delivery.NEW
    if first_seen == position.token():
        return Delivery.REDELIVERY
    return Delivery.DUPLICATE
