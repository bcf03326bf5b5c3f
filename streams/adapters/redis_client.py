"""One Redis or a Redis Cluster: the client from settings, and calls grouped by hash slot.

On a Redis Cluster every command and script call must name keys of one hash slot. The adapters
build their calls from `keys` and let `by_slot` and `pipelined` send them: on one Redis a batch is
one script call or one pipeline; on a cluster a script call is split into one call per slot, sent
together in a cluster pipeline (one round trip per node), and a script the node does not know
(a replica promoted by a failover) is loaded and the call repeated.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import orjson
import redis
import redis.cluster
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import ClusterPipeline
from redis.exceptions import NoScriptError

RedisClient: TypeAlias = Redis | RedisCluster
AnyPipeline: TypeAlias = Pipeline | ClusterPipeline
SyncClient: TypeAlias = redis.Redis | redis.RedisCluster


def plain_url(url: str) -> str:
    """The URL redis-py understands: `redis+cluster://` -> `redis://`."""
    return url.replace("+cluster://", "://", 1)


def connect(url: str, *, cluster: bool, timeout_s: float = 5.0) -> RedisClient:
    """An asyncio client of the Redis (or Redis Cluster) at `url`."""
    if cluster or "+cluster://" in url:
        first, others = startup_nodes(url)
        return RedisCluster.from_url(
            first,
            startup_nodes=[AsyncClusterNode(host, port) for host, port in others],
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )
    return Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


def connect_sync(url: str, *, cluster: bool = False, **options: Any) -> SyncClient:
    """A blocking client (tools and tests) of the Redis (or Redis Cluster) at `url`."""
    if cluster or "+cluster://" in url:
        first, others = startup_nodes(url)
        nodes = [redis.cluster.ClusterNode(h, p) for h, p in others]  # type: ignore[no-untyped-call]
        return redis.RedisCluster.from_url(first, startup_nodes=nodes, **options)
    return redis.Redis.from_url(url, **options)


def startup_nodes(url: str) -> tuple[str, list[tuple[str, int]]]:
    """A cluster URL may name several nodes, `redis+cluster://h1:p1,h2:p2/0` (a client that
    starts while one is down asks another): the URL of the first, and the others."""
    parts = urlsplit(plain_url(url))
    credentials, _, hosts = parts.netloc.rpartition("@")
    first, *others = hosts.split(",")
    netloc = f"{credentials}@{first}" if credentials else first
    nodes = []
    for other in others:
        host, _, port = other.rpartition(":")
        nodes.append((host or other, int(port) if port else 6379))
    return urlunsplit(parts._replace(netloc=netloc)), nodes


def is_cluster(client: RedisClient | SyncClient) -> bool:
    """True for a Redis Cluster client."""
    return isinstance(client, RedisCluster | redis.RedisCluster)


class SlotScript:
    """A Lua script whose keys all arrive in KEYS, and whose last ARGV is a JSON list with one
    row per key; it returns a list with one reply per key. `call` sends one call per hash slot
    (one call in all on a single Redis) and returns the replies in the order of `keys`."""

    def __init__(self, client: RedisClient, body: str) -> None:
        self._client = client
        self._script = client.register_script(body)
        self._body = body

    async def call(
        self, keys: Sequence[str | bytes], head: Sequence[str | int | float], rows: Sequence[Any]
    ) -> list[Any]:
        """Run the script over `keys` (and their `rows`), `head` first in ARGV."""
        if not keys:
            return []
        if not is_cluster(self._client):
            reply = await self._script(keys=list(keys), args=[*head, orjson.dumps(list(rows))])
            return list(reply)
        groups: dict[int, list[int]] = defaultdict(list)
        client = self._client
        assert isinstance(client, RedisCluster)
        for i, key in enumerate(keys):
            groups[client.keyslot(key)].append(i)
        calls = [
            ([keys[i] for i in members], [*head, orjson.dumps([rows[i] for i in members])])
            for members in groups.values()
        ]
        replies = await self._each(calls)
        out: list[Any] = [None] * len(keys)
        for members, reply in zip(groups.values(), replies, strict=True):
            for i, value in zip(members, reply, strict=True):
                out[i] = value
        return out

    async def _each(self, calls: list[tuple[list[str | bytes], list[Any]]]) -> list[Any]:
        """One EVALSHA per call in one cluster pipeline; where the node does not know the script
        (a replica promoted since it was loaded), load it everywhere and repeat those calls only
        (the others ran: a script is not repeated on keys it already wrote)."""
        replies = await self._send(calls, raise_errors=False)
        unknown = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if unknown:
            await self._client.script_load(self._body)
            again = await self._send([calls[i] for i in unknown], raise_errors=False)
            for i, reply in zip(unknown, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def _send(
        self, calls: list[tuple[list[str | bytes], list[Any]]], *, raise_errors: bool
    ) -> list[Any]:
        sha = self._script.sha
        return await pipelined(
            self._client,
            lambda pipe: [pipe.evalsha(sha, len(k), *k, *a) for k, a in calls],
            raise_errors=raise_errors,
        )


async def pipelined(
    client: RedisClient, build: Callable[[AnyPipeline], object], *, raise_errors: bool = True
) -> list[Any]:
    """Queue commands with `build` on a pipeline (no MULTI: a cluster pipeline spans slots) and
    send them; the replies in order (an error raised, or returned in its place)."""
    pipe = client.pipeline(transaction=False)
    build(pipe)
    replies = list(await pipe.execute(raise_on_error=False))
    if raise_errors:
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
    return replies
