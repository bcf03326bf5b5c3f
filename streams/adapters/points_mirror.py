"""Redis mirror of points balances, for services that read a balance without calling the worker.

Key layout (documented in the README): `<app_id>:points:<customer_id>`, a hash with `pending`,
`available`, `sequence` (the account's ledger sequence) and `updated_at` (RFC 3339). A write only
lands if its `sequence` is not older than the stored one, so a worker that lost a partition in a
rebalance can never overwrite the newer balance written by the partition's next owner. An
erased account's hash is deleted first (its sequence starts again); an empty one is not written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from redis.exceptions import RedisError

from streams.adapters.metrics import PipelineMetrics
from streams.adapters.redis_client import RedisClient, SlotScript
from streams.adapters.redis_retry import AWAY, RedisRetry

log = logging.getLogger(__name__)

# One script call per batch (per hash slot on a Redis Cluster: `SlotScript`), the balances packed
# in one argument: KEYS are the hashes, ARGV[1] is updated_at, ARGV[2] a JSON list with one
# [sequence, pending, available, erased (0|1)] per key; a sequence of -1: nothing to write.
MIRROR_SCRIPT = """
local at = ARGV[1]
local rows = cjson.decode(ARGV[2])
local out = {}
for i, row in ipairs(rows) do
  local key = KEYS[i]
  if row[4] == 1 then redis.call('DEL', key) end
  local current = tonumber(redis.call('HGET', key, 'sequence') or '-1')
  if row[1] >= 0 and row[1] >= current then
    redis.call('HSET', key, 'sequence', row[1], 'pending', row[2], 'available', row[3],
               'updated_at', at)
  end
  out[i] = 1
end
return out
"""


def mirror_namespace(app_id: str) -> str:
    """The Redis key prefix of an app's balance hashes."""
    return f"{app_id}:points"


class BalanceMirror:
    """Writes the balances of changed accounts to Redis, one round trip per batch."""

    def __init__(
        self, redis: RedisClient, *, namespace: str, retry_max_s: float, metrics: PipelineMetrics
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self._retry = RedisRetry("points_mirror", retry_max_s, metrics)
        self._script = SlotScript(redis, MIRROR_SCRIPT)

    async def write(self, rows: Sequence[tuple[str, int, int, int, bool]]) -> None:
        """Mirror the rows (customer id, sequence (-1: an empty account, not written), pending,
        available, erased (its hash deleted first)); waits (retrying) until Redis has them."""
        if not rows:
            return
        ns = self._namespace
        keys = [f"{ns}:{c}" for c, *_ in rows]
        values = [(seq, p, a, int(gone)) for _, seq, p, a, gone in rows]
        at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        await self._retry.call(lambda: self._script.call(keys, [at], values))

    async def read(self, customer_id: str) -> dict[str, int | str] | None:
        """The customer's mirrored balance (`pending`, `available`, `sequence`, `updated_at`);
        None if Redis has none, or does not answer (one attempt: for a reader, not the loop)."""
        try:
            stored = await self._redis.hgetall(f"{self._namespace}:{customer_id}")
        except (*AWAY, RedisError) as exc:
            log.warning("balance mirror unreadable: %s", exc)
            return None
        if not stored:
            return None
        text = {_text(k): _text(v) for k, v in stored.items()}
        return {
            "pending": int(text["pending"]),
            "available": int(text["available"]),
            "sequence": int(text["sequence"]),
            "updated_at": text["updated_at"],
        }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
