"""Redis mirror of points balances, for services that read a balance without calling the worker.

Key layout (documented in the README): `<app_id>:points:<customer_id>`, a hash with `pending`,
`available`, `sequence` (the account's ledger sequence) and `updated_at` (RFC 3339). A write only
lands if its `sequence` is not older than the stored one, so a worker that lost a partition in a
rebalance can never overwrite the newer balance written by the partition's next owner. An
erased account's hash is deleted first (its sequence starts again); an empty one is not written.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
from redis.asyncio import Redis

from streams.adapters.metrics import PipelineMetrics
from streams.adapters.redis_retry import RedisRetry

# One script call per batch, the balances packed in one argument (see
# streams/adapters/dedupe.py): ARGV[1] is updated_at, ARGV[2] a JSON list of
# [key, sequence, pending, available, erased (0|1)]; a sequence of -1: nothing to write.
MIRROR_SCRIPT = """
local at = ARGV[1]
local rows = cjson.decode(ARGV[2])
for _, row in ipairs(rows) do
  if row[5] == 1 then redis.call('DEL', row[1]) end
  local current = tonumber(redis.call('HGET', row[1], 'sequence') or '-1')
  if row[2] >= 0 and row[2] >= current then
    redis.call('HSET', row[1], 'sequence', row[2], 'pending', row[3], 'available', row[4],
               'updated_at', at)
  end
end
return #rows
"""


def mirror_namespace(app_id: str) -> str:
    """The Redis key prefix of an app's balance hashes."""
    return f"{app_id}:points"


class BalanceMirror:
    """Writes the balances of changed accounts to Redis, one round trip per batch."""

    def __init__(
        self, redis: Redis, *, namespace: str, retry_max_s: float, metrics: PipelineMetrics
    ) -> None:
        self._namespace = namespace
        self._retry = RedisRetry("points_mirror", retry_max_s, metrics)
        self._script = redis.register_script(MIRROR_SCRIPT)

    async def write(self, rows: Sequence[tuple[str, int, int, int, bool]]) -> None:
        """Mirror the rows (customer id, sequence (-1: an empty account, not written), pending,
        available, erased (its hash deleted first)); waits (retrying) until Redis has them."""
        if not rows:
            return
        ns = self._namespace
        packed = orjson.dumps([(f"{ns}:{c}", seq, p, a, int(gone)) for c, seq, p, a, gone in rows])
        at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        await self._retry.call(lambda: self._script(keys=[], args=[at, packed]))
