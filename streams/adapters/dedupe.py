"""Redis first-seen marks: the fulfilment loop's, and the hot path's of versions before 2026-12.

The hot path keeps its marks in the partition's state (`streams.adapters.seen_marks`); during the
cut-over after an upgrade it still reads the marks the version before left in Redis
(`LegacyMarks`) until none is left (they expire after `REWARDS_DEDUPE_TTL_S`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import datetime

from processors.delivery import Position
from streams.adapters.metrics import PipelineMetrics
from streams.adapters.redis_client import RedisClient, SlotScript, is_cluster
from streams.adapters.redis_retry import RedisRetry
from streams.settings import Settings

log = logging.getLogger(__name__)

# One round trip and one command per batch (per hash slot on a Redis Cluster: `SlotScript`), the
# positions packed in one argument by orjson. KEYS are the marks, ARGV[1] the TTL, ARGV[2] a JSON
# list with each key's position; each key is marked with its position unless it exists, and the
# reply holds the earlier mark (or false) per key.
MARK_SCRIPT = """
local ttl = ARGV[1]
local positions = cjson.decode(ARGV[2])
local out = {}
for i, position in ipairs(positions) do
  out[i] = redis.call('SET', KEYS[i], position, 'NX', 'GET', 'EX', ttl) or false
end
return out
"""


def seen_namespace(app_id: str) -> str:
    """The Redis key prefix of an app's first-seen marks."""
    return f"{app_id}:seen"


class FirstSeenIndex:
    """`SET key position NX GET EX ttl` per event id: None if new, else the first position seen."""

    def __init__(
        self,
        redis: RedisClient,
        *,
        namespace: str,
        ttl_s: int,
        retry_max_s: float,
        metrics: PipelineMetrics,
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self._ttl_s = ttl_s
        self._retry = RedisRetry("dedupe", retry_max_s, metrics)
        self._script = SlotScript(redis, MARK_SCRIPT)

    async def mark(self, entries: Sequence[tuple[str, Position, datetime]]) -> list[str | None]:
        """Record each (event_id, position) if new; return the first-seen token for each entry.

        Redis being unreachable never decides blindly: the call retries with backoff until Redis
        answers, holding the batch (and so the partition) meanwhile.
        """
        if not entries:
            return []
        return await self._retry.call(lambda: self._mark_once(entries))

    async def forget(self, entries: Sequence[tuple[str, Position, datetime]]) -> None:
        """Drop the marks of events that were rejected, so a corrected re-publish is processed."""
        if entries:
            keys = [self._key(event_id, position) for event_id, position, _ in entries]
            await self._retry.call(lambda: self._redis.delete(*keys))

    def _key(self, event_id: str, position: Position) -> str:
        return f"{self._namespace}:{position.topic}:{event_id}"

    async def _mark_once(
        self, entries: Sequence[tuple[str, Position, datetime]]
    ) -> list[str | None]:
        prefix = self._namespace
        keys = [f"{prefix}:{position.topic}:{event_id}" for event_id, position, _ in entries]
        positions = [f"{position.partition}:{position.offset}" for _, position, _ in entries]
        replies = await self._script.call(keys, [self._ttl_s], positions)
        return [r.decode() if isinstance(r, bytes) else None for r in replies]


def first_seen_index(
    settings: Settings, redis: RedisClient, metrics: PipelineMetrics
) -> FirstSeenIndex:
    """The Redis first-seen index of event ids, from settings."""
    return FirstSeenIndex(
        redis,
        namespace=seen_namespace(settings.app_id),
        ttl_s=settings.dedupe_ttl_s,
        retry_max_s=settings.redis_retry_max_s,
        metrics=metrics,
    )


class LegacyMarks:
    """The marks a version before this one left in Redis, read (never written) while any is
    left: an event first seen by that version is still a duplicate after the upgrade."""

    RECHECK_S = 3600.0

    def __init__(
        self, redis: RedisClient, *, namespace: str, topics: Sequence[str], retry: RedisRetry
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self._topics = tuple(topics)
        self._retry = retry
        self._left: bool | None = None
        self._checked_at = 0.0

    async def peek(self, entries: Sequence[tuple[str, Position]]) -> list[str | None] | None:
        """The first position Redis recorded for each entry (None: Redis holds no mark of the
        version before any more)."""
        if not await self.any_left():
            return None
        keys = [f"{self._namespace}:{position.topic}:{event_id}" for event_id, position in entries]
        replies = await self._retry.call(lambda: self._get(keys))
        return [r.decode() if isinstance(r, bytes) else None for r in replies]

    async def _get(self, keys: list[str]) -> list[object]:
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        return list(await pipe.execute())

    async def any_left(self) -> bool:
        """Whether Redis may still hold a mark of the version before (checked hourly)."""
        if self._left is False:
            return False
        if self._left is None or time.monotonic() - self._checked_at > self.RECHECK_S:
            self._left = await self._retry.call(self._scan)
            self._checked_at = time.monotonic()
            if not self._left:
                log.info("no first-seen mark of an earlier version is left in Redis")
        return self._left

    async def _scan(self) -> bool:
        """One mark found (True), none (False); a keyspace too large to scan in 5 s counts as
        found (the check is repeated later)."""

        async def find() -> bool:
            for topic in self._topics:
                match = f"{self._namespace}:{topic}:*"
                async for _ in self._redis.scan_iter(match=match, count=1000):
                    return True
            return False

        try:
            return await asyncio.wait_for(find(), 5.0)
        except TimeoutError:
            return True


def legacy_marks(
    settings: Settings, redis: RedisClient, metrics: PipelineMetrics, bases: Sequence[str]
) -> LegacyMarks | None:
    """The Redis marks that versions before this one set for the topics `bases` (the hot
    path's; the fulfilment loop keeps its marks in Redis under the same namespace). None on a
    Redis Cluster: no version before this one ran on a cluster, so none can have left a mark."""
    if is_cluster(redis):
        return None
    retry = RedisRetry("dedupe", settings.redis_retry_max_s, metrics)
    topics = [settings.topic(base) for base in bases]
    return LegacyMarks(redis, namespace=seen_namespace(settings.app_id), topics=topics, retry=retry)
