"""Redis away: purchases settle and commit without it; the balance mirror catches up after."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.events import purchase
from tests.worker.fakes.world import in_process, world


@in_process
async def test_purchases_commit_while_redis_is_away_and_the_mirror_catches_up(
    tmp_path: Path,
) -> None:
    w = await world(tmp_path)
    w.redis.down = True
    for n in range(6):
        w.publish("purchases", purchase(customer_id=f"c-{n}", event_id=f"p-{n}"))
    await asyncio.wait_for(w.run(), 10)  # no Redis round trip before the commit
    assert len(w.output("points-ledger")) == 6 and w.producer.commits >= 1
    follower = w.hot.accounts.mirror
    assert w.mirror.balances == {} and follower.queued == 6
    await asyncio.sleep(0.05)
    assert follower.lag_s >= 0.05 and w.redis.failures > 0
    assert w.metric("rewards_mirror_queued") == 6
    w.redis.down = False
    for _ in range(500):
        if not follower.queued:
            break
        await asyncio.sleep(0.01)
    accounts = {f"c-{n}": w.hot.accounts.load(w.consumer.partition_of(f"c-{n}"), f"c-{n}")
                for n in range(6)}  # fmt: skip
    assert w.mirror.balances == {
        c: (a.points.pending, a.points.available, a.points.sequence) for c, a in accounts.items()
    }
    assert follower.lag_s == 0 and w.metric("rewards_mirror_lag_seconds") == 0


@in_process
async def test_a_recovery_queues_every_account_for_the_mirror(tmp_path: Path) -> None:
    w = await world(tmp_path / "first")
    w.redis.down = True  # the first worker never gets to mirror
    for n in range(4):
        w.publish("purchases", purchase(customer_id=f"c-{n}", event_id=f"p-{n}"))
    await asyncio.wait_for(w.run(), 10)
    successor = await world(tmp_path / "second", cluster=w.cluster)  # the first one died
    for _ in range(500):
        if len(successor.mirror.balances) == 4:
            break
        await asyncio.sleep(0.01)
    assert sorted(successor.mirror.balances) == [f"c-{n}" for n in range(4)]


@in_process
async def test_a_shutdown_writes_what_is_queued_or_gives_up_in_time(tmp_path: Path) -> None:
    w = await world(tmp_path)
    w.redis.down = True
    w.publish("purchases", purchase(customer_id="c-0", event_id="p-0"))
    await asyncio.wait_for(w.run(), 10)
    follower = w.hot.accounts.mirror
    await asyncio.wait_for(follower.close(timeout_s=0.2), 2)  # Redis away: it gives up
    assert follower.queued == 1 and w.mirror.balances == {}
    w.publish("purchases", purchase(customer_id="c-1", event_id="p-1"))
    await asyncio.wait_for(w.run(), 10)  # a writer retrying again
    w.redis.down = False
    await asyncio.wait_for(follower.close(), 5)  # Redis back: the writer finishes its queue
    assert follower.queued == 0 and sorted(w.mirror.balances) == ["c-0", "c-1"]
