"""The worker's HTTP endpoints: balances (any worker answers for any customer), liveness, readiness.

A customer's account lives with the worker that owns the customer's partition. Which worker that
is comes from the consumer group itself (the coordinator's description of its members and their
assignments; each member's client id carries its web address), cached for a couple of seconds,
so a fresh worker routes correctly as soon as the group has settled. A request that reaches a
worker which does not own the partition (a rebalance in between) is never forwarded in a loop.
While no owner answers (the partition is moving or recovering, or its owner is unreachable), the
balance comes from the Redis mirror, marked `"stale": true` with its `updated_at` and `age_s`;
only if the mirror has none (or Redis does not answer) is the answer 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
import faust
from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]  # aiokafka ships no types
from faust import web

from streams.adapters.kafka_io import admin_client
from streams.adapters.points_mirror import BalanceMirror
from streams.hot_path import HotPath, balance_body
from streams.runtime import Loop

log = logging.getLogger(__name__)
FORWARDED = "X-Rewards-Forwarded"
OWNERS_TTL_S = 2.0
LIVENESS_S = 60.0


def partition_of(customer_id: str, partitions: int) -> int:
    """The partition a customer's records go to (the Java client's murmur2 partitioner)."""
    hashed: int = murmur2(customer_id.encode())
    return (hashed & 0x7FFFFFFF) % partitions


class PartitionOwners:
    """Which worker's web address owns each partition of the hot path's group."""

    def __init__(self, bootstrap_servers: str, group_id: str, topic: str) -> None:
        self._bootstrap = bootstrap_servers
        self._group = group_id
        self._topic = topic
        self._owners: dict[int, str] = {}
        self._fetched = 0.0

    async def owner(self, partition: int) -> str | None:
        """`host:port` of the worker that owns `partition`, if the group says so."""
        if time.monotonic() - self._fetched > OWNERS_TTL_S or partition not in self._owners:
            self._owners = await asyncio.to_thread(self._describe)
            self._fetched = time.monotonic()
        return self._owners.get(partition)

    def _describe(self) -> dict[int, str]:
        admin = admin_client(self._bootstrap)
        found = admin.describe_consumer_groups([self._group], request_timeout=10)[self._group]
        owners: dict[int, str] = {}
        for member in found.result(timeout=10).members:
            _, _, address = str(member.client_id).partition("@")
            if not address or member.assignment is None:
                continue
            for tp in member.assignment.topic_partitions:
                if tp.topic == self._topic:
                    owners[tp.partition] = address
        return owners


def register_pages(app: faust.App, hot: HotPath, loops: Sequence[Loop], here: str) -> None:
    """`/points/{customer_id}`, `/live` and `/ready` on the worker's web server."""
    owners = PartitionOwners(hot.bootstrap_servers, hot.group_id, hot.routing_topic)
    forward = Forwarder()

    @app.page("/points/{customer_id}")
    async def get_balance(view: web.View, request: web.Request, customer_id: str) -> web.Response:
        """The customer's pending and available points (404 if the customer has none yet)."""
        partition = partition_of(customer_id, hot.partitions)
        if partition in hot.ownership.ready:
            account = hot.accounts.store.get(partition, customer_id)
            if account is None:
                return view.json(
                    {"customer_id": customer_id, "error": "unknown customer"}, status=404
                )
            tiers = hot.accounts.tiers
            now = hot.accounts.clocks.now(partition)
            return view.json(balance_body(account, tiers.policy if tiers else None, now))
        owner = None if request.headers.get(FORWARDED) else await owners.owner(partition)
        if owner is not None and owner != here:
            status, body = await forward(f"http://{owner}/points/{customer_id}")
            if status != 503:
                return view.json(body, status=status)
        return await _mirrored(view, hot.mirror, customer_id, partition)

    @app.page("/live")
    async def live(view: web.View, request: web.Request) -> web.Response:
        """200 while every loop goes round; 503 if one has not for a minute (or has stopped)."""
        now = time.monotonic()
        stalled = [
            loop.pipeline.name for loop in loops if now - loop.pipeline.heartbeat > LIVENESS_S
        ]
        return view.json({"live": not stalled, "stalled": stalled}, status=503 if stalled else 200)

    @app.page("/ready")
    async def ready(view: web.View, request: web.Request) -> web.Response:
        """200 once every assigned partition's state is recovered and being processed."""
        ownership = hot.ownership
        waiting = sorted(ownership.assigned - ownership.ready)
        ok = ownership.recoveries > 0 and not waiting
        body = {"ready": ok, "partitions": sorted(ownership.ready), "recovering": waiting}
        return view.json(body, status=200 if ok else 503)

    app.on_before_shutdown.connect(forward.close)


async def _mirrored(
    view: web.View, mirror: BalanceMirror, customer_id: str, partition: int
) -> web.Response:
    """No owner answers for the partition (it is moving, or recovering): the Redis mirror's
    balance, marked stale with its age; 503 if the mirror has none or Redis does not answer."""
    found = await mirror.read(customer_id)
    if found is None:
        return _unavailable(view, customer_id, partition)
    written = datetime.fromisoformat(str(found["updated_at"]))
    age_s = max(0.0, (datetime.now(UTC) - written).total_seconds())
    body = {"customer_id": customer_id, **found, "stale": True, "age_s": round(age_s, 3)}
    return view.json(body)


def _unavailable(view: web.View, customer_id: str, partition: int) -> web.Response:
    body = {"customer_id": customer_id, "error": f"partition {partition} is moving; retry"}
    response: web.Response = view.json(body, status=503)
    response.headers["Retry-After"] = "1"
    return response


class Forwarder:
    """GETs a balance from the owning worker (one HTTP session per worker)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, url: str) -> tuple[int, Any]:
        """The owner's status and JSON body (503 if it cannot be reached)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        try:
            async with self._session.get(url, headers={FORWARDED: "1"}) as response:
                return response.status, await response.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return 503, {"error": f"owner unreachable: {exc}"}

    async def close(self, *_: Any, **__: Any) -> None:
        """Close the session (on shutdown)."""
        if self._session is not None:
            await self._session.close()
