"""The balance mirror and the compensation budget on one Redis and on a Redis Cluster."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import pytest
from prometheus_client import CollectorRegistry

from processors.compensation import BudgetRequest
from streams.adapters.compensation_budget import CompensationBudget, Reserved
from streams.adapters.metrics import PipelineMetrics
from streams.adapters.points_mirror import BalanceMirror, mirror_namespace
from streams.adapters.redis_client import RedisClient, connect, connect_sync, is_cluster
from streams.adapters.redis_retry import RedisRetry
from streams.settings_models import BudgetCaps

pytestmark = pytest.mark.integration
NOW = datetime(2026, 12, 7, 10, tzinfo=UTC)
T = TypeVar("T")


def run(url: str, body: Callable[[RedisClient], Awaitable[T]]) -> T:
    """Run `body` with a client of `url`, closed in the loop that used it."""

    async def scenario() -> T:
        client = connect(url, cluster=False, timeout_s=2)
        try:
            return await body(client)
        finally:
            await client.aclose()

    return asyncio.run(scenario())


def metrics() -> PipelineMetrics:
    return PipelineMetrics.create(CollectorRegistry())


@pytest.mark.redis
def test_mirror_writes_every_slot_and_never_goes_back(services):
    app = f"test-{uuid.uuid4().hex[:8]}"
    customers = [f"c-{i}" for i in range(60)]  # spread over many hash slots on a cluster

    async def scenario(client: RedisClient) -> None:
        mirror = BalanceMirror(
            client, namespace=mirror_namespace(app), retry_max_s=0.5, metrics=metrics()
        )
        await mirror.write([(c, 5, i, 2 * i, False) for i, c in enumerate(customers)])
        # an older sequence (a worker that lost the partition) does not overwrite
        await mirror.write([(customers[0], 4, 999, 999, False)])
        # an erased account is deleted first, so its new sequence starts again
        await mirror.write([(customers[1], 0, 7, 0, True)])
        await mirror.write([(customers[2], -1, 0, 0, True)])  # erased, nothing left to write

    run(services.redis_url, scenario)
    sync = connect_sync(services.redis_url)
    try:
        stored = {c: sync.hgetall(f"{mirror_namespace(app)}:{c}") for c in customers}
        for c in customers:
            sync.delete(f"{mirror_namespace(app)}:{c}")
    finally:
        sync.close()
    assert stored[customers[0]][b"pending"] == b"0" and stored[customers[0]][b"sequence"] == b"5"
    assert stored[customers[1]][b"pending"] == b"7" and stored[customers[1]][b"sequence"] == b"0"
    assert stored[customers[2]] == {}
    for i, c in enumerate(customers[3:], start=3):
        assert (stored[c][b"pending"], stored[c][b"available"]) == (b"%d" % i, b"%d" % (2 * i))


def budget(client: RedisClient, app: str, caps: dict[str, BudgetCaps]) -> CompensationBudget:
    return CompensationBudget(
        client, namespace=app, caps=caps, retry=RedisRetry("budget", 0.5, metrics())
    )


def request(n: int, customer: str, cents: int, currency: str = "EUR") -> BudgetRequest:
    return BudgetRequest(f"ev-{n}", customer, f"cmp-{n}", cents, currency)


@pytest.mark.redis
def test_budget_reserves_once_in_order_and_remembers_each_answer(services):
    app = f"test-{uuid.uuid4().hex[:8]}"
    caps = {"EUR": BudgetCaps(day=5_000, month=6_000), "USD": BudgetCaps(day=None, month=None)}
    batch = [
        request(1, "ann", 2_000), request(2, "bob", 2_500), request(3, "cy", 1_000),
        request(4, "dee", 400, "USD"), request(5, "eve", 100), request(6, "fay", 100, "GBP"),
    ]  # fmt: skip

    async def scenario(
        client: RedisClient,
    ) -> tuple[Reserved, Reserved, dict[str, tuple[int, int]]]:
        await client.set(f"{app}:fraud:rejected:eve", 1)
        first = await budget(client, app, caps).reserve(batch, NOW)
        again = await budget(client, app, caps).reserve(batch[::-1], NOW)  # redelivered
        return first, again, await budget(client, app, caps).used(NOW)

    first, again, used = run(services.redis_url, scenario)
    assert first.answers == {
        "ev-1": "granted", "ev-2": "granted", "ev-3": "budget_day", "ev-4": "granted",
        "ev-5": "fraud_rejected", "ev-6": "budget_day",
    }  # fmt: skip
    assert first.used["EUR"] == (4_500, 4_500) and first.used["USD"] == (400, 400)
    assert again.answers == first.answers
    assert used == {"EUR": (4_500, 4_500), "USD": (400, 400)}


def test_budget_counts_what_the_layout_before_reserved(services):
    """Single Redis only (not marked `redis`): no version before this one ran on a cluster."""
    app = f"test-{uuid.uuid4().hex[:8]}"
    caps = {"EUR": BudgetCaps(day=1_000, month=None)}

    async def scenario(client: RedisClient) -> tuple[Reserved, dict[str, tuple[int, int]]]:
        if is_cluster(client):
            pytest.skip("no version before this one ran on a Redis Cluster")
        await client.set(f"{app}:comp:budget:EUR:day:{NOW:%Y-%m-%d}", 700)
        await client.set(f"{app}:comp:reservation:ev-1", "budget_month")
        found = await budget(client, app, caps).reserve(
            [request(1, "ann", 100), request(2, "bob", 200), request(3, "cy", 300)], NOW
        )
        return found, await budget(client, app, caps).used(NOW)

    found, used = run(services.redis_url, scenario)
    assert found.answers == {"ev-1": "budget_month", "ev-2": "granted", "ev-3": "budget_day"}
    assert used["EUR"][0] == 900
