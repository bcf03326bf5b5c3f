"""The real hot path (`streams.assembly`) on in-memory ports: a worker inside a test."""

from __future__ import annotations

import asyncio
import functools
import struct
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec

import orjson
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from streams.adapters.account_store import META_OFFSET, AccountStore, MemoryBatch
from streams.adapters.compensation_metrics import CompensationMetrics
from streams.adapters.metrics import PipelineMetrics, loop_metrics
from streams.adapters.redis_retry import RedisRetry
from streams.assembly import INGEST_TOPICS, Assembled, Ports, Wiring, assemble
from streams.runtime import StatefulOwnership
from streams.settings import Settings
from tests.events import record
from tests.worker.fakes.gate import FirstSeenMarks
from tests.worker.fakes.kafka import Cluster, Consumer, Producer
from tests.worker.fakes.services import Budget, CleanIdentities, Mirror, Outage

PREFIX = "w-"
P = ParamSpec("P")


def in_process(test: Callable[P, Awaitable[None]]) -> Callable[P, None]:
    """Run an async test on a fresh event loop (pytest sees the test's own fixtures)."""

    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        async def main() -> None:
            await test(*args, **kwargs)

        asyncio.run(main())

    return run


NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class LocalStore(AccountStore):
    """The real store, in memory, recovered from the fake cluster's changelog."""

    def __init__(self, cluster: Cluster, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cluster = cluster

    async def recover(self, partitions: Iterable[int]) -> int:
        applied = 0
        for partition, start in self.open(partitions).items():
            log = self._cluster.logs.get((self.changelog_topic, partition), [])
            batch = MemoryBatch()
            for message in log[start:]:
                value = message.value()
                if value is None:
                    batch.delete(message.key() or b"")
                else:
                    batch.put(message.key() or b"", value)
            batch.put(META_OFFSET, struct.pack(">q", len(log)))
            self._dbs[partition].write(batch)
            applied += len(log) - start
        return applied


@dataclass
class World:
    """A cluster, the hot path on it, and the fakes behind its ports."""

    cluster: Cluster
    settings: Settings
    producer: Producer
    consumer: Consumer
    legacy: FirstSeenMarks | None
    """The Redis marks of a version before (None: a fresh install)."""
    identity: CleanIdentities
    budget: Budget
    mirror: Mirror
    redis: Outage
    hot: Assembled
    ownership: StatefulOwnership
    registry: CollectorRegistry

    def publish(self, topic: str, event: dict[str, Any]) -> None:
        """An upstream service publishes `event` (a dict) on the base `topic`."""
        key, value = record(topic, event)
        self.cluster.append(self.settings.topic(topic), key, value)

    def publish_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        """An upstream service publishes raw bytes."""
        self.cluster.append(self.settings.topic(topic), key, value)

    async def run(self, max_steps: int = 50) -> None:
        """Go round the loop until every record is handled, then commit."""
        for _ in range(max_steps):
            handled = await self.hot.pipeline.step()
            if not handled and not self.backlog():
                await self.hot.pipeline.commit()
                if not self.backlog():
                    return
        raise AssertionError(f"not idle after {max_steps} steps")

    def backlog(self) -> int:
        """Records not yet handled in the assigned partitions."""
        return sum(max(0, n) for n in self.consumer.lag().values())

    def output(self, topic: str) -> list[dict[str, Any]]:
        """The committed records of an output topic, decoded."""
        return [orjson.loads(m.value() or b"null") for m in self.cluster.records(self.topic(topic))]

    def topic(self, base: str) -> str:
        """The full name of a topic."""
        return self.settings.topic(base)

    def metric(self, name: str, **labels: str) -> float:
        """A sample of the worker's registry (0 if absent)."""
        return self.registry.get_sample_value(name, labels) or 0.0


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    """The worker's settings for an in-process run (no broker or Redis is contacted)."""
    values: dict[str, Any] = {
        "topic_prefix": PREFIX, "app_id": "inproc", "store": "memory://",
        "data_dir": tmp_path / "data", "partitions": 2, "commit_interval_s": 0.001,
        "batch_within_s": 0.0, "pii_hash_key": SecretStr("in-process-test-hash-key"),
        "release_interval_s": 3600.0, **overrides,
    }  # fmt: skip
    return Settings(**values)


async def world(
    tmp_path: Path,
    *,
    cluster: Cluster | None = None,
    legacy: FirstSeenMarks | None = None,
    **overrides: Any,
) -> World:
    """A fresh worker on `cluster` (a new one by default), owning every partition, ready."""
    made = settings(tmp_path, **overrides)
    cluster = cluster or Cluster(made.partitions)
    registry = CollectorRegistry()
    metrics = PipelineMetrics.create(registry)
    wiring = Wiring(made, registry, metrics, CompensationMetrics.create(registry), lambda: NOW)
    redis = Outage(RedisRetry("fake-redis", 0.05, metrics))
    consumer = Consumer(cluster, [made.topic(t) for t in INGEST_TOPICS])
    producer = Producer(cluster, made.topic_prefix)
    store = LocalStore(
        cluster, directory=made.data_dir, changelog_topic=made.changelog_topic(),
        recovery_config={}, cache_size=1000, in_memory=True,
    )  # fmt: skip
    fakes = (CleanIdentities(redis), Budget(), Mirror(redis))
    ports = Ports(producer, consumer, store, legacy, *fakes)
    outcome = loop_metrics(metrics, "ingest", made.topic_prefix, ())
    hot = assemble(wiring, ports, partitions=made.partitions, outcome=outcome)
    ownership = StatefulOwnership(lambda exc: None, outcome, store, hot.accounts)
    ownership.pipeline, ownership.source = hot.pipeline, consumer
    consumer.listener = ownership
    consumer.paused = set(range(made.partitions))
    consumer.assign(range(made.partitions))
    for _ in range(100):
        if ownership.ready == frozenset(range(made.partitions)):
            break
        await asyncio.sleep(0)
    identity, budget, mirror = fakes
    return World(cluster, made, producer, consumer, legacy, identity, budget, mirror, redis,
                 hot, ownership, registry)  # fmt: skip
