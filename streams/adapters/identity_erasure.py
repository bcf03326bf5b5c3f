"""Erase a customer from the identity index (a forget command), and name them without their id.

What the index keys by customer (see `identity_index`): the referral edges `ref:by:<c>` and
`ref:of:<c>` (and the customer as a member of their partners' edge sets), the fraud flag
`fraud:rejected:<c>`, the referrer velocity set `vel:referrer:<c>`, and the customer as a member
of signal sets `id:<kind>:<hmac>`, each listed in the customer's reverse index `id-of:<c>`
(written with every membership, same TTL). Erasure reads every customer's `id-of`, `ref:by` and
`ref:of` (one pipelined round), then removes the customer from those signal sets and from their
partners' edge sets and deletes the customer's own keys (a second round). Every command names one
key, so erasure runs on one Redis and on a Redis Cluster alike, without a SCAN. Every step is
idempotent, so an aborted and repeated batch erases the same way again.

Upgrade from the version before (one Redis only; it kept no reverse index): memberships it wrote
have no `id-of` entry, so until the marker `id:reverse-since` (SET NX with the time this version
first started, no TTL) is `identity_ttl` old, an erasure on one Redis also SCANs `id:*` as the
version before did. Never on a cluster: no cluster ever ran the version before.

A limit of the reverse index: a signal set lives `identity_ttl` past its last write by anyone,
and its members stay until it expires; `id-of:<c>` lives `identity_ttl` past the customer's last
membership write. A set written again by others after that keeps a member its customer's `id-of`
no longer names (the version before's SCAN would have found it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from processors.identity import keyed_hash
from streams.adapters.redis_client import AnyPipeline, RedisClient, is_cluster, pipelined

SCAN_COUNT = 1000
REVERSE_SINCE = "id:reverse-since"
OWN_KEYS = ("ref:by", "ref:of", "fraud:rejected", "vel:referrer", "id-of")
"""The keys named by the customer, deleted whole."""


def customer_hash(key: bytes, customer_id: str) -> str:
    """The keyed hash that names a customer in records that must carry no personal data."""
    return keyed_hash(key, "customer", customer_id)


async def reverse_since(client: RedisClient, namespace: str) -> float | None:
    """When this version first wrote the reverse index (set now if it is the first): one Redis
    only; None on a cluster."""
    if is_cluster(client):
        return None
    key, now = f"{namespace}:{REVERSE_SINCE}", int(time.time())
    _, since = await pipelined(client, lambda pipe: (pipe.set(key, now, nx=True), pipe.get(key)))
    return now if since is None else float(since)


def legacy_scan_due(since: float | None, ttl_s: int) -> bool:
    """Memberships written by the version before may still live (one Redis, marker young)."""
    return since is not None and time.time() - since < ttl_s


async def erase_customers(
    client: RedisClient, namespace: str, customers: Sequence[str], *, legacy_scan: bool = False
) -> None:
    """Remove the customers' edges, flags and signal memberships from the index (with
    `legacy_scan`, on one Redis: also from every signal set a SCAN finds)."""
    if not customers:
        return
    ns = namespace

    def reads(pipe: AnyPipeline) -> None:
        for c in customers:
            pipe.smembers(f"{ns}:id-of:{c}")
            pipe.smembers(f"{ns}:ref:by:{c}")
            pipe.smembers(f"{ns}:ref:of:{c}")

    found = await pipelined(client, reads)

    def removals(pipe: AnyPipeline) -> None:
        for i, c in enumerate(customers):
            signal_sets, ups, downs = found[3 * i : 3 * i + 3]
            for key in sorted(signal_sets):
                pipe.zrem(key, c)
            for up in sorted(ups):
                pipe.srem(f"{ns}:ref:of:{_text(up)}", c)
            for down in sorted(downs):
                pipe.srem(f"{ns}:ref:by:{_text(down)}", c)
            for part in OWN_KEYS:
                pipe.delete(f"{ns}:{part}:{c}")

    await pipelined(client, removals)
    if legacy_scan and not is_cluster(client):
        await _scan_signal_sets(client, ns, customers)


async def _scan_signal_sets(client: RedisClient, ns: str, customers: Sequence[str]) -> None:
    """The version before's way: ZREM the customers from every `id:*` key (but the marker)."""
    marker = f"{ns}:{REVERSE_SINCE}".encode()
    pipe = client.pipeline(transaction=False)
    queued = 0
    async for key in client.scan_iter(match=f"{ns}:id:*", count=SCAN_COUNT):
        if (key if isinstance(key, bytes) else key.encode()) == marker:
            continue
        pipe.zrem(key, *customers)
        queued += 1
        if queued >= SCAN_COUNT:
            await pipe.execute()
            queued = 0
    if queued:
        await pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
