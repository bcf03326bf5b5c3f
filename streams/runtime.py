"""The worker's two loops and what they own: partitions, their state, and when they are ready.

The hot path (group `<app_id>`) reads every input and control topic but `gift-card-orders`; it
owns the accounts of its partitions. The fulfilment path (group `<app_id>-fulfilment`) reads
`gift-card-orders` alone, so a slow gift-card provider never holds purchases. Each has its own
consumer, its own transactional producer and its own loop (`streams.pipeline`).

When partitions are assigned they stay paused until their state is recovered from the changelog
and the hold-end schedule and advocacy windows are rebuilt from it (in a task: the worker keeps
serving HTTP meanwhile); then they are resumed. When they are revoked the open transaction is
aborted first (the next owner processes those records again) and their state is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol

from schemas.codec import Codec
from streams.accounts import OwnedAccounts
from streams.adapters.account_store import AccountStore
from streams.adapters.dead_letter import DeadLetterSink
from streams.adapters.dedupe import first_seen_index
from streams.adapters.kafka_source import KafkaSource
from streams.adapters.metrics import LoopMetrics, PipelineMetrics
from streams.adapters.outbox import Emitter
from streams.adapters.redis_client import RedisClient
from streams.ingest import Gate, StreamClocks
from streams.pipeline import LoopSettings, Pipeline, PoisonRecords, run_until_fatal
from streams.settings import Settings

log = logging.getLogger(__name__)
Fatal = Callable[[BaseException], None]
GC_THRESHOLDS = (50_000, 20, 10)
"""A young collection per 50,000 allocations, not 700: a batch allocates hundreds of thousands
of short-lived objects, and the default spent ~12% of a catching-up worker's CPU collecting
(2.6k young, 31 full collections in 100,000 shop events; 37 and none with these)."""


def tune_gc() -> None:
    """The worker's garbage collector thresholds (`GC_THRESHOLDS`), once at start."""
    gc.set_threshold(*GC_THRESHOLDS)


class Resumable(Protocol):
    """A source whose assigned partitions stay paused until resumed."""

    def resume(self, partitions: Iterable[int]) -> None:
        """Start fetching the given partition numbers."""


class Ownership:
    """Which partitions a loop owns, and which of them are ready (state recovered)."""

    def __init__(self, on_fatal: Fatal, metrics: LoopMetrics) -> None:
        self.pipeline: Pipeline | None = None
        self._metrics = metrics
        self.source: Resumable | None = None
        self.ready: frozenset[int] = frozenset()
        """Partitions recovered and being processed."""
        self.assigned: frozenset[int] = frozenset()
        self.recoveries = 0
        """Assignments handled so far (the worker is ready once this is >= 1)."""
        self._on_fatal = on_fatal

    def partitions_assigned(self, partitions: frozenset[int]) -> None:
        """Nothing to recover: resume at once."""
        self.assigned = partitions
        self.ready = partitions
        self.recoveries += 1
        self._metrics.partitions(len(self.assigned), len(self.ready))
        assert self.source is not None
        self.source.resume(partitions)

    def partitions_revoked(self, partitions: frozenset[int]) -> None:
        """Abort the open transaction: its records go to the partitions' next owner."""
        if self.pipeline is not None:
            self.pipeline.abandon_now()
        self.assigned -= partitions
        self.ready -= partitions
        self._metrics.partitions(len(self.assigned), len(self.ready))


class StatefulOwnership(Ownership):
    """Ownership of the hot path: partitions carry accounts, recovered before they resume."""

    def __init__(
        self, on_fatal: Fatal, metrics: LoopMetrics, store: AccountStore, accounts: OwnedAccounts
    ) -> None:
        super().__init__(on_fatal, metrics)
        self._store = store
        self._accounts = accounts
        self._recovering: asyncio.Task[None] | None = None

    def partitions_assigned(self, partitions: frozenset[int]) -> None:
        """Recover the partitions' state in a task; they resume when it is done."""
        self.assigned = partitions
        self._metrics.partitions(len(self.assigned), len(self.ready))
        self._recovering = asyncio.ensure_future(self._recover(partitions))
        self._recovering.add_done_callback(self._recovered)

    async def _recover(self, partitions: frozenset[int]) -> None:
        started = time.monotonic()
        records = await self._store.recover(partitions)
        await self._accounts.rebuild_indexes(partitions)
        self.ready |= partitions
        self.recoveries += 1
        self._metrics.partitions(len(self.assigned), len(self.ready))
        self._metrics.recovered(time.monotonic() - started, records)
        gc.freeze()  # what recovery loaded lives long: keep it out of every full collection
        assert self.source is not None
        self.source.resume(partitions)

    def _recovered(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._on_fatal(task.exception())  # type: ignore[arg-type]  # not None: checked above

    def partitions_revoked(self, partitions: frozenset[int]) -> None:
        """Abort the open transaction, stop any recovery, close the partitions' state."""
        super().partitions_revoked(partitions)
        if self._recovering is not None and not self._recovering.done():
            self._recovering.cancel()
        self._accounts.forget(partitions)
        self._store.close(partitions)


class Loop:
    """One consumer's loop as a unit the app starts and stops."""

    def __init__(
        self,
        pipeline: Pipeline,
        source: KafkaSource,
        start: Callable[[], Awaitable[None]],
        close: Callable[[], Awaitable[None]],
    ) -> None:
        self.pipeline = pipeline
        self.source = source
        self._start = start
        self._close = close
        self._task: asyncio.Task[None] | None = None

    async def start(self, on_fatal: Fatal) -> None:
        """Set the clients up (waiting for the cluster), join the group, run the loop."""
        await self._start()
        self.source.subscribe()
        self._task = asyncio.ensure_future(run_until_fatal(self.pipeline, on_fatal))

    async def stop(self, timeout_s: float) -> None:
        """Let the loop finish its batch and commit, then leave the group and close."""
        self.pipeline.stop()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                log.warning(
                    "%s did not stop in %.0fs; cancelling it", self.pipeline.name, timeout_s
                )
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
        await self._close()


def loop_settings(settings: Settings) -> LoopSettings:
    """How the loops batch and commit, from settings."""
    return LoopSettings(
        batch_max=settings.batch_max,
        batch_within_s=settings.batch_within_s,
        commit_interval_s=settings.commit_interval_s,
        periodic_s=settings.release_interval_s,
    )


def build_gate(
    settings: Settings,
    bases: Sequence[str],
    *,
    redis: RedisClient,
    metrics: PipelineMetrics,
    emitter: Emitter,
    clocks: StreamClocks,
    poison: PoisonRecords,
) -> Gate:
    """The gate of a loop reading the topics `bases`: codec, first-seen index, dead letters."""
    return Gate(
        {settings.topic(base): base for base in bases},
        Codec(max_event_bytes=settings.max_event_bytes),
        first_seen=first_seen_index(settings, redis, metrics),
        dead_letters=DeadLetterSink(emitter),
        metrics=metrics,
        clocks=clocks,
        poison=poison,
    )
