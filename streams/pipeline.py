"""The worker's loop: whole batches from the source, processed into one open transaction.

One loop per consumer, on the event loop's thread: poll what the client has fetched (never
waiting), hand the batch to its handler, which produces every output and state change into the
open transaction (`streams.transaction`: what it carries, and what committing or aborting it
does), and add the batch's offsets to it. Every `commit_interval_s` (longer while catching up on
a backlog, so that commits cost little of the throughput) the transaction commits. Between
batches the loop runs its periodic work (the hold-end sweep) in the same transaction.

Everything that touches the state runs in this loop, one step at a time, so a rebalance (which
the client reports inside `poll`) never meets a batch half done: it aborts the open transaction
and the partitions' next owner processes those records again.

No single record can stop a partition: when handling a batch raises, the transaction is
aborted, the records are read again from the committed offsets and handled one at a time up to
the end of the failed batch; the record that raises again is a poison record, dead-lettered
(`processing_error`, with the exception) the next time it is read, and the rest goes on. If
three records in a row fail the same way, the failure is not the records' (a bug or a broken
dependency): the loop stops and tells `on_fatal`, which makes the worker exit non-zero so that
its supervisor restarts it (no process that answers HTTP but consumes nothing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException, Message

from streams.transaction import Transaction

log = logging.getLogger(__name__)
CATCH_UP_COMMIT_S = 1.0
"""The commit interval while the source is well behind (latency is moot then)."""
CATCH_UP_AFTER = 3
"""Full batches in a row that mean the source is well behind, not a burst."""
COMMIT_SHARE = 4.0
"""The interval is at least this many times the last commit's duration, so that waiting on
commits never takes more than a fifth of the loop's time (a slow broker would otherwise make a
loop that keeps up fall behind)."""


class Source(Protocol):
    """Where the loop's records come from (`streams.adapters.kafka_source.KafkaSource`)."""

    generation: int
    """Incremented by every rebalance."""

    def poll(self, max_records: int) -> list[Message]:
        """Up to `max_records` records already fetched (never waits)."""

    def still_assigned(self, records: list[Message]) -> list[Message]:
        """The records whose partitions are still assigned."""


class BatchHandler(Protocol):
    """Processes a batch into the open transaction (outputs, dead letters, staged state)."""

    async def handle(self, records: list[Message]) -> None:
        """Produce everything the batch causes into the transaction."""


class PoisonRecords:
    """Records whose handling raised, by position, with why: the gate dead-letters them."""

    def __init__(self) -> None:
        self._found: dict[tuple[str, int, int], str] = {}

    def add(self, record: Message, exc: BaseException) -> None:
        """Remember a record that made the handler raise."""
        key = (str(record.topic()), int(record.partition() or 0), int(record.offset() or 0))
        self._found[key] = f"{type(exc).__name__}: {exc}"[:500]

    def why(self, record: Message) -> str | None:
        """Why the record is poison, or None if it is not."""
        if not self._found:
            return None
        return self._found.get(
            (str(record.topic()), int(record.partition() or 0), int(record.offset() or 0))
        )

    def __len__(self) -> int:
        return len(self._found)


@dataclass(frozen=True)
class LoopSettings:
    """How the loop batches, commits and idles."""

    batch_max: int
    batch_within_s: float
    commit_interval_s: float
    idle_s: float = 0.002
    periodic_s: float = 1.0


class Pipeline:
    """Poll, handle, commit now and then; repeat until stopped."""

    def __init__(
        self,
        name: str,
        source: Source,
        transaction: Transaction,
        handler: BatchHandler,
        *,
        loop: LoopSettings,
        poison: PoisonRecords | None = None,
        periodic: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self._source = source
        self.transaction = transaction
        self._handler = handler
        self._loop = loop
        self._periodic = periodic
        self._poison = poison if poison is not None else PoisonRecords()
        self._suspect: dict[tuple[str, int], int] = {}
        """While set: the offsets up to which records are handled one at a time."""
        self._failures: list[str] = []
        self._stopping = False
        self._full_polls = 0
        self._last_periodic = 0.0
        self.heartbeat = time.monotonic()
        """When the loop last went round (liveness)."""

    def stop(self) -> None:
        """Finish the batch in hand, commit, then return from `run`."""
        self._stopping = True

    async def run(self) -> None:
        """The loop itself."""
        while not self._stopping:
            await self.step()
        await self.commit()

    async def step(self) -> int:
        """One round of the loop: a batch, the periodic work if due, a commit if due; returns
        how many records it handled."""
        self.heartbeat = now = time.monotonic()
        records = await self._next_batch()
        if records:
            await self._handle(records)
        self._full_polls = self._full_polls + 1 if len(records) >= self._loop.batch_max else 0
        if self._periodic is not None and now - self._last_periodic >= self._loop.periodic_s:
            self._last_periodic = now
            await self._in_transaction(self._periodic)
        if self.transaction.open and self._commit_due():
            await self.commit()
        if not records:
            await asyncio.sleep(self._loop.idle_s)
        return len(records)

    def _commit_due(self) -> bool:
        interval = max(self._loop.commit_interval_s, COMMIT_SHARE * self.transaction.last_commit_s)
        if self._full_polls >= CATCH_UP_AFTER:
            interval = max(interval, CATCH_UP_COMMIT_S)
        return time.monotonic() - self.transaction.opened_at >= interval

    async def _next_batch(self) -> list[Message]:
        """What the client has fetched, topped up for up to `batch_within_s` once it started."""
        records = self._source.poll(self._loop.batch_max)
        if not records or self._loop.batch_within_s <= 0:
            return records
        deadline = time.monotonic() + self._loop.batch_within_s
        generation = self._source.generation
        while len(records) < self._loop.batch_max and time.monotonic() < deadline:
            await asyncio.sleep(self._loop.idle_s)
            records += self._source.poll(self._loop.batch_max - len(records))
        if self._source.generation != generation:  # a rebalance while the batch filled up
            records = self._source.still_assigned(records)
        return records

    async def _handle(self, records: list[Message]) -> None:
        """Handle a batch into the transaction; one at a time while a failure is being traced."""
        batches = [[r] for r in records] if self._suspect else [records]
        for batch in batches:
            try:
                handled = await self._in_transaction(self._handling(batch))
            except KafkaException:
                raise
            except Exception as exc:
                await self._failed(batch, exc)
                return
            if handled:
                self.transaction.handled(batch)
        self._suspect = {
            tp: end
            for tp, end in self._suspect.items()
            if self.transaction.handled_up_to(tp) <= end
        }

    async def _failed(self, batch: list[Message], exc: Exception) -> None:
        """Handling raised: abort, read again from the committed offsets; if `batch` is a single
        record, it is poison; trace the failure one record at a time up to its batch's end."""
        log.warning("%s: handling %d record(s) raised %r; tracing it", self.name, len(batch), exc)
        await self.transaction.abort()
        if len(batch) == 1:
            self._poison.add(batch[0], exc)
            self._failures.append(type(exc).__name__)
            if self._failures[-3:] == [type(exc).__name__] * 3:
                raise RuntimeError(f"three records in a row failed with {exc!r}") from exc
            log.error("%s: poison record %s[%d]@%d: %r", self.name, batch[0].topic(),
                      batch[0].partition(), batch[0].offset(), exc)  # fmt: skip
        for record in batch:
            key = (str(record.topic()), int(record.partition() or 0))
            self._suspect[key] = max(self._suspect.get(key, -1), int(record.offset() or 0))

    def _handling(self, records: list[Message]) -> Callable[[], Awaitable[None]]:
        async def handle() -> None:
            await self._handler.handle(records)
            if not self._failures or any(self._poison.why(r) is None for r in records):
                self._failures.clear()  # a record was handled: the failures were the records'

        return handle

    async def _in_transaction(self, work: Callable[[], Awaitable[None]]) -> bool:
        """Run `work` inside the open transaction (opening one if needed); a transaction the
        client says must be aborted is aborted, its records read again, and False returned."""
        self.transaction.begin()
        try:
            await work()
        except KafkaException as exc:
            if not _must_abort(exc.args[0]):
                raise
            log.warning("%s: transaction needs an abort (%s)", self.name, exc.args[0])
            await self.transaction.abort()
            return False
        return True

    async def commit(self) -> None:
        """Commit the open transaction with the offsets after its records."""
        await self.transaction.commit()

    def abandon_now(self) -> None:
        """Abort the open transaction at once (the partitions are being revoked: their next
        owner processes these records again). Called inside the client's rebalance callback."""
        self.transaction.abort_now()


def _must_abort(error: KafkaError) -> bool:
    """The client says the transaction must be aborted; or produce() refused with `_STATE`,
    which is how it says so after an abortable error such as OUT_OF_ORDER_SEQUENCE_NUMBER
    ("requires epoch bump": the abort bumps the epoch). A fatal error is never aborted here."""
    if error.fatal():
        return False
    return bool(error.txn_requires_abort() or error.code() == KafkaError._STATE)


async def run_until_fatal(pipeline: Pipeline, on_fatal: Callable[[BaseException], None]) -> None:
    """Run the loop; an exception that escapes it is fatal for the worker."""
    try:
        await pipeline.run()
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        log.critical("%s loop failed: %r; the worker exits", pipeline.name, exc, exc_info=exc)
        on_fatal(exc)
