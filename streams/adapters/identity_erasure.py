"""Erase a customer from the identity index (a forget command), and name them without their id.

What the index keys by customer (see `identity_index`): the referral edges `ref:by:<c>` and
`ref:of:<c>` (and the customer as a member of their partners' edge sets), the fraud flag
`fraud:rejected:<c>`, the referrer velocity set `vel:referrer:<c>`, and the customer as a member
of the signal sets `id:<kind>:<hmac>`. The edges and flags go in one script call; the signal
sets are found by a SCAN of `id:*` (erasures are rare; the sets expire by `identity_ttl` anyway).
Every step is idempotent, so an aborted and repeated batch erases the same way again.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from redis.asyncio import Redis

from processors.identity import keyed_hash

SCAN_COUNT = 1000

# ARGV: namespace, then a JSON list of customer ids. Returns how many customers were erased.
ERASE_SCRIPT = """
local ns = ARGV[1]
local customers = cjson.decode(ARGV[2])
for _, c in ipairs(customers) do
  for _, up in ipairs(redis.call('SMEMBERS', ns .. ':ref:by:' .. c)) do
    redis.call('SREM', ns .. ':ref:of:' .. up, c)
  end
  for _, down in ipairs(redis.call('SMEMBERS', ns .. ':ref:of:' .. c)) do
    redis.call('SREM', ns .. ':ref:by:' .. down, c)
  end
  redis.call('DEL', ns .. ':ref:by:' .. c, ns .. ':ref:of:' .. c,
             ns .. ':fraud:rejected:' .. c, ns .. ':vel:referrer:' .. c)
end
return #customers
"""


def customer_hash(key: bytes, customer_id: str) -> str:
    """The keyed hash that names a customer in records that must carry no personal data."""
    return keyed_hash(key, "customer", customer_id)


async def erase_customers(redis: Redis, namespace: str, customers: Sequence[str]) -> None:
    """Remove the customers' edges, flags and signal memberships from the index."""
    if not customers:
        return
    await redis.eval(ERASE_SCRIPT, 0, namespace, orjson.dumps(list(customers)))
    pipe = redis.pipeline(transaction=False)
    queued = 0
    async for key in redis.scan_iter(match=f"{namespace}:id:*", count=SCAN_COUNT):
        pipe.zrem(key, *customers)
        queued += 1
        if queued >= SCAN_COUNT:
            await pipe.execute()
            queued = 0
    if queued:
        await pipe.execute()
