"""Tiers and points expiry end to end: real broker, Redis and RocksDB, the worker a subprocess."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from streams.settings_models import LoyaltyTier, PointsExpiry
from tests.events import new_id
from tests.support import eventually, http_get
from tests.test_points_pipeline import HOLD, ago, buy, send, topic_records

pytestmark = pytest.mark.integration


@pytest.fixture
def loyalty_settings(settings):
    return settings.model_copy(
        update={
            "release_interval_s": 0.2,
            "tiers": (LoyaltyTier(name="silver", threshold=10_000, multiplier_percent=150),),
            "points_expiry": PointsExpiry(lifetime=timedelta(days=1), warning=timedelta(hours=1)),
        }
    )


def mine(settings, topic: str, customer: str) -> list[dict[str, Any]]:
    """The customer's records on an output topic (each checked against its schema)."""
    return [r for r in topic_records(settings, topic) if r["customer_id"] == customer]


def test_a_tier_upgrade_is_announced_and_multiplies_later_earning(loyalty_settings, start_worker):
    settings = loyalty_settings
    worker = start_worker(settings)
    customer = new_id("c")
    send(settings, buy(customer, 15_000))  # 150 EUR: reaches silver, earns 150 at the old rate
    [change] = eventually(lambda: mine(settings, "tier-changes", customer))
    assert (change["direction"], change["tier"], change["basis"]) == ("upgrade", "silver", "spend")
    assert (change["qualifying"], change["multiplier_percent"]) == (15_000, 150)
    send(settings, buy(customer, 10_000))  # 100 EUR at silver: 150 points
    earned = eventually(
        lambda: [e["pending_delta"] for e in mine(settings, "points-ledger", customer)
                 if e["kind"] == "earn"][1:]
    )  # fmt: skip
    assert earned == [150]
    silver = {"tier": "silver", "basis": "spend", "qualifying": 25_000, "next_tier": None,
              "remaining": None}  # fmt: skip

    def tier() -> bool:  # the account is applied when the transaction commits: after the topic
        status, body = http_get(worker, f"/points/{customer}")
        assert status == 200 and body["tier"] == silver, (status, body)
        return True

    eventually(tier)
    assert worker.total("rewards_tier_customers", tier="silver") >= 1


def test_points_are_warned_about_then_expire_without_new_events(loyalty_settings, start_worker):
    settings = loyalty_settings
    start_worker(settings)
    customer = new_id("c")
    # released at once (the hold ended a day ago less 8 s): the lot expires in about 8 s
    send(settings, buy(customer, 4_200, at=ago(HOLD + timedelta(days=1) - timedelta(seconds=8))))
    [warning] = eventually(lambda: mine(settings, "points-expiry-warnings", customer))
    assert (warning["reason"], warning["points"]) == ("lifetime", 42)
    expiries = eventually(
        lambda: [e for e in mine(settings, "points-ledger", customer) if e["kind"] == "expiry"],
        timeout_s=40,
    )
    assert [(e["available_delta"], e["available_after"]) for e in expiries] == [(-42, 0)]
    assert expiries[0]["occurred_at"].startswith(warning["expires_at"][:19])
