"""One end for every worker's event-time advocacy windows: the newest fact time of all workers,
kept in Redis as a maximum that only moves forward (so sums over workers add equal windows)."""

from __future__ import annotations

from streams.adapters.redis_client import RedisClient

_AGREE = """
local stored = redis.call('GET', KEYS[1])
if stored and tonumber(stored) >= tonumber(ARGV[1]) then
  return stored
end
if not stored and tonumber(ARGV[1]) < 0 then
  return '-1'
end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""
"""The stored string itself is returned (Lua's `tostring` of a number keeps 14 significant
digits: 1791408447.533985 came back as 1791408447.534, later than any worker's newest fact)."""


def window_end_key(app_id: str) -> str:
    """The Redis key of an app's shared advocacy window end (unix seconds)."""
    return f"{app_id}:advocacy:window-end"


class SharedWindowEnd:
    """The workers' agreed window end: each offers its newest fact time and reads the maximum."""

    def __init__(self, redis: RedisClient, app_id: str) -> None:
        self._key = window_end_key(app_id)
        self._script = redis.register_script(_AGREE)

    async def agree(self, newest: float | None) -> float | None:
        """Offer this worker's newest fact time (None: it has none); the newest of all workers."""
        value = await self._script(keys=[self._key], args=[repr(newest if newest else -1.0)])
        end = float(value)
        return end if end >= 0 else None
