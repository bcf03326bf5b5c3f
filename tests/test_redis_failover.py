"""A Redis Cluster primary killed under a running worker: its replica takes over, nothing is lost
or doubled (purchases, the mirror, the compensation budget, gift cards)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from streams.adapters.points_mirror import mirror_namespace
from streams.adapters.redis_client import connect_sync
from tests.events import new_id
from tests.support import eventually
from tests.test_compensation_pipeline import complain, decisions_of, fresh, gift_cards
from tests.test_points_pipeline import buy, http_balance, send, topic_records

pytestmark = pytest.mark.integration


def traffic(settings, customers: list[str]) -> list[dict[str, Any]]:
    """A purchase per customer and a high-severity complaint (a gift card) by every fifth."""
    send(settings, *(buy(c, 1_000) for c in customers))
    complaints = [fresh("high", customer=c) for c in customers[::5]]
    complain(settings, *complaints)
    return complaints


def test_a_killed_primary_is_survived(settings, start_worker, private_redis_cluster, sandbox):
    cluster = private_redis_cluster
    settings = settings.model_copy(update={"redis_url": cluster.url, "redis_retry_max_s": 0.5})
    worker = start_worker(settings)
    customers = [new_id("c") for _ in range(60)]
    complaints = traffic(settings, customers[:30])
    eventually(lambda: len(topic_records(settings, "compensation-decisions")) == 6)

    budget_primary = cluster.primary_of(f"{{{settings.app_id}:comp}}:budget")
    cluster.kill(budget_primary)  # the budget's slot and a third of the mirror's
    complaints += traffic(settings, customers[30:])  # arrives while the slot has no primary
    eventually(lambda: cluster.primary_of(f"{{{settings.app_id}:comp}}:budget") != budget_primary)
    eventually(cluster.healthy)

    decisions = decisions_of(settings, len(complaints))
    assert Counter(d["complaint_id"] for d in decisions) == Counter(
        c["complaint_id"] for c in complaints
    )  # each complaint decided exactly once
    granted = [d for d in decisions if d["outcome"] == "gift_card"]
    assert len(granted) == len(complaints)  # well within the default budget
    eventually(lambda: len(gift_cards(settings)) == len(granted))
    assert sandbox.orders()["created"] == len(granted)
    client = cluster.client()
    try:
        day_keys = list(client.scan_iter(match=f"{{{settings.app_id}:comp}}:budget:EUR:day:*"))
        assert sum(int(client.get(k) or 0) for k in day_keys) == sum(
            d["amount_cents"] for d in granted
        )  # reserved once each, through the failover

        ledger = topic_records(settings, "points-ledger")
        assert len({e["entry_id"] for e in ledger}) == len(ledger) == len(customers)

        def mirrored() -> bool:
            for c in customers:
                stored = client.hgetall(f"{mirror_namespace(settings.app_id)}:{c}")
                assert stored.get(b"pending") == b"10", (c, stored)
            return True

        eventually(mirrored)
    finally:
        client.close()
    # a client (a worker restarting) whose URL names the dead node first asks the next one
    others = ",".join(f"127.0.0.1:{p}" for p in cluster.ports() if p != budget_primary)
    with connect_sync(f"redis+cluster://127.0.0.1:{budget_primary},{others}/0") as late:
        assert late.get(f"{{{settings.app_id}:comp}}:budget:none") is None
    for c in customers[:3]:
        assert http_balance(worker, c)[1]["pending"] == 10
    assert worker.proc is not None and worker.proc.poll() is None
