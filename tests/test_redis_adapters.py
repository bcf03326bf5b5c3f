"""The Redis adapters against a real redis-server or Redis Cluster, including an outage."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from processors.delivery import Delivery, Position, classify_delivery
from streams.adapters.dedupe import FirstSeenIndex
from streams.adapters.metrics import PipelineMetrics
from streams.adapters.points_mirror import mirror_namespace
from streams.adapters.redis_client import RedisClient, connect, connect_sync
from tests.events import new_id, purchase, record
from tests.support import eventually, publish
from tests.test_points_pipeline import topic_records

AT = datetime(2026, 12, 7, tzinfo=UTC)

pytestmark = pytest.mark.integration


def index(
    url: str, namespace: str, metrics: PipelineMetrics | None = None
) -> tuple[FirstSeenIndex, RedisClient]:
    """The index and its client (to close in the event loop that used it)."""
    client = connect(url, cluster=False, timeout_s=1)
    first_seen = FirstSeenIndex(
        client,
        namespace=namespace,
        ttl_s=3600,
        retry_max_s=0.2,
        metrics=metrics or PipelineMetrics.create(CollectorRegistry()),
    )
    return first_seen, client


@pytest.mark.redis
def test_first_seen_index_tells_new_redelivered_and_duplicate(settings):
    first_seen, client = index(settings.redis_url, settings.app_id)
    a, b = Position("t", 0, 10), Position("t", 1, 99)

    async def scenario() -> tuple[list[str | None], list[str | None]]:
        async with client:
            return (
                await first_seen.mark([("e-1", a, AT), ("e-2", a, AT), ("e-1", b, AT)]),
                await first_seen.mark([("e-1", a, AT), ("e-2", b, AT)]),
            )

    first, second = asyncio.run(scenario())
    assert [classify_delivery(m, p) for m, p in zip(first, [a, a, b], strict=True)] == [
        Delivery.NEW, Delivery.NEW, Delivery.DUPLICATE,
    ]  # fmt: skip
    assert [classify_delivery(m, p) for m, p in zip(second, [a, b], strict=True)] == [
        Delivery.REDELIVERY, Delivery.DUPLICATE,
    ]  # fmt: skip


@pytest.mark.redis
def test_marks_expire(settings):
    first_seen, client = index(settings.redis_url, settings.app_id)

    async def scenario() -> None:
        async with client:
            await first_seen.mark([("e-ttl", Position("t", 0, 1), AT)])

    asyncio.run(scenario())
    with connect_sync(settings.redis_url) as sync:
        ttl = sync.ttl(f"{settings.app_id}:t:e-ttl")
    assert 3500 < ttl <= 3600


def test_outage_holds_the_batch_and_catches_up(private_redis):
    metrics = PipelineMetrics.create(CollectorRegistry())
    first_seen, client = index(private_redis.url, "outage", metrics)
    private_redis.stop()

    async def scenario() -> tuple[bool, list[str | None]]:
        async with client:
            task = asyncio.create_task(first_seen.mark([("e-1", Position("t", 0, 1), AT)]))
            await asyncio.sleep(1.5)
            held = not task.done()
            await asyncio.to_thread(private_redis.start)
            return held, await asyncio.wait_for(task, 30)

    held, marks = asyncio.run(scenario())
    assert held, "an unreachable Redis must hold the batch, not decide blindly"
    assert marks == [None]
    assert metrics.redis_errors.labels("dedupe")._value.get() >= 1


def test_purchases_settle_through_a_redis_outage_and_the_mirror_catches_up(
    settings, start_worker, private_redis
):
    settings = settings.model_copy(update={"redis_url": private_redis.url})
    worker = start_worker(settings)
    publish(settings, "purchases", [record("purchases", purchase())])
    eventually(lambda: worker.total("rewards_events_processed_total", topic="purchases") == 1)
    eventually(lambda: worker.total("rewards_mirror_queued") == 0)

    private_redis.stop()
    later = [purchase(customer_id=new_id("c")) for _ in range(3)]
    publish(settings, "purchases", [record("purchases", e) for e in later])
    # settled and committed while Redis is away: no Redis round trip on the purchases' path
    eventually(lambda: worker.total("rewards_events_processed_total", topic="purchases") == 4)
    ledger = {e["customer_id"] for e in topic_records(settings, "points-ledger")}
    assert {e["customer_id"] for e in later} <= ledger
    assert worker.total("rewards_mirror_queued") == 3
    assert worker.total("rewards_mirror_lag_seconds") > 0
    assert worker.proc is not None and worker.proc.poll() is None

    private_redis.start()
    eventually(lambda: worker.total("rewards_mirror_queued") == 0)
    mirror = connect_sync(private_redis.url, decode_responses=True)
    for event in later:
        stored = mirror.hgetall(f"{mirror_namespace(settings.app_id)}:{event['customer_id']}")
        assert stored["pending"] == "45" and stored["available"] == "0", stored
    assert worker.total("rewards_duplicate_events_total") == 0
