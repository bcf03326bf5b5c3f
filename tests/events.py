"""Builders of valid v1 events for tests; override any field with keyword arguments."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

NOW = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
"""When the builders' events happen: the time the tests started, so a purchase's 14-day hold is
still on while a test runs (a fixed date becomes a hold that ends on arrival 14 days later)."""


def new_id(prefix: str = "e") -> str:
    """A fresh unique id."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def purchase(**fields: Any) -> dict[str, Any]:
    """A valid purchase."""
    return {
        "event_id": new_id(), "occurred_at": NOW, "customer_id": "c-1", "type": "purchase",
        "order_id": new_id("o"), "amount_cents": 4599, "currency": "EUR", **fields,
    }  # fmt: skip


def complaint(**fields: Any) -> dict[str, Any]:
    """A valid complaint."""
    return {
        "event_id": new_id(), "occurred_at": NOW, "customer_id": "c-1",
        "complaint_id": new_id("cmp"), "severity": "high", "category": "late_delivery", **fields,
    }  # fmt: skip


def referral(**fields: Any) -> dict[str, Any]:
    """A valid `invited` referral."""
    return {
        "event_id": new_id(), "occurred_at": NOW, "type": "invited", "referrer_id": "c-1",
        "referral_code": "FRIEND-1", "invitee_email": "friend@example.com", **fields,
    }  # fmt: skip


def survey(**fields: Any) -> dict[str, Any]:
    """A valid survey response."""
    return {
        "event_id": new_id(), "occurred_at": NOW, "customer_id": "c-1",
        "survey_id": new_id("s"), "score": 9, **fields,
    }  # fmt: skip


BUILDERS = {
    "purchases": purchase,
    "complaints": complaint,
    "referrals": referral,
    "survey-responses": survey,
}
KEYS = {"purchases": "customer_id", "complaints": "customer_id", "referrals": "referrer_id",
        "survey-responses": "customer_id"}  # fmt: skip


def record(topic: str, event: dict[str, Any]) -> tuple[bytes, bytes]:
    """(key, value) as a well-behaved producer would send the event."""
    return str(event[KEYS[topic]]).encode(), orjson.dumps(event)
