"""Retry a Redis call until Redis answers: an outage holds the batch, it never decides blindly."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import (
    AskError,
    ClusterError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.adapters.metrics import PipelineMetrics

log = logging.getLogger(__name__)
T = TypeVar("T")
AWAY = (
    RedisConnectionError, RedisTimeoutError, OSError,
    ClusterError, RedisClusterException, TryAgainError, AskError, ReadOnlyError,
)  # fmt: skip
"""Redis (or a node, a slot of a Redis Cluster during a failover) is away for now: a
`CLUSTERDOWN`, `TRYAGAIN`, `MOVED`/`ASK` not yet followed, a write to a primary just demoted."""


class RedisRetry:
    """Calls an operation again with capped, jittered exponential backoff while Redis is away."""

    def __init__(self, operation: str, retry_max_s: float, metrics: PipelineMetrics) -> None:
        self._operation = operation
        self._backoff = ExponentialWithJitterBackoff(cap=retry_max_s, base=0.05)
        self._errors = metrics.redis_errors.labels(operation)

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """`await attempt()` until it succeeds; count and log every connection failure."""
        failures = 0
        while True:
            try:
                return await attempt()
            except AWAY as exc:
                failures += 1
                self._errors.inc()
                delay = self._backoff.compute(failures)
                log.warning(
                    "redis unavailable for %s (%s); retry %d in %.2fs",
                    self._operation, exc, failures, delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
