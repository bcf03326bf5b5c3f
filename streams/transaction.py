"""The unit of work: one Kafka transaction and every change staged into it, kept or undone together.

This module is the whole story of a transaction:

1. **begin**: the producer opens a Kafka transaction (on the first record or batch after the last
   commit).
2. **handle batches**: the agents emit outputs and dead letters into it (`emit`, `emit_raw`), the
   participants stage their changes (each keeps its own staged buffer until it is told), work
   that must be done before the commit but need not hold the loop is handed over (`meanwhile`:
   the Redis mirror's and the identity index's writes, and the late-evidence rescoring that
   emits into the transaction once Redis answers), and the loop adds each handled batch's input
   offsets (`handled`).
3. **flush**: before committing, the work handed over is awaited (the Redis mirror never stays
   behind a committed account; late evidence commits with the purchases that revealed it).
4. **commit or abort**: the producer commits the outputs, the changelog records and the input
   offsets in one Kafka transaction (`send_offsets_to_transaction`, KIP-447), or aborts it.
5. **apply or discard**: after a commit every participant is told `committed()` once and makes its
   staged changes local; after an abort (asked for, refused by the broker, or a rebalance) every
   participant is told `discarded()` once and forgets them, the writes still under way are
   cancelled (they are idempotent and made again), and the source goes back to the committed
   offsets, so the records are processed again from the same state.

What an abort undoes, then, is exactly: the Kafka transaction (nothing of it is visible to
`read_committed` readers), the offsets, and what each participant staged. The participants of the
hot path (`streams.assembly`): the accounts' store (RocksDB writes), the first-seen marks (their
RocksDB writes: an aborted batch's events are new again), the owned accounts' indexes (hold
ends, advocacy windows, tier counts), the settlement outputs' counters, the referral counters,
the identity index's recorded pairs, the gate's counts and the stream clocks. No one else keeps
transaction state.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, Protocol

from confluent_kafka import Message
from confluent_kafka import TopicPartition as KafkaPartition

from streams.adapters.outbox import DeliveryCallback, Emitter, TransactionAborted


class Participant(Protocol):
    """State a transaction changes: staged while it is open, told once how it ended."""

    def committed(self) -> None:
        """The transaction committed: make what was staged local."""

    def discarded(self) -> None:
        """The transaction was aborted: forget what was staged."""


class Producer(Emitter, Protocol):
    """The transactional producer (`streams.adapters.outbox.Outbox`)."""

    open: bool
    produced: Counter[str]

    def begin(self) -> None:
        """Open a transaction."""

    def emit(self, base_topic: str, key: str, record: Any) -> None:
        """Produce an output model."""

    async def commit(self, offsets: list[KafkaPartition], group_metadata: Any) -> None:
        """Commit with the input offsets; TransactionAborted if the broker refused."""

    async def abort(self) -> None:
        """Abort the open transaction."""

    def abort_now(self) -> None:
        """Abort, blocking (inside a rebalance callback)."""


class Positions(Protocol):
    """The source's side of a transaction: which offsets to commit, and where to go back to."""

    def next_offsets(self, records: Iterable[Message]) -> list[KafkaPartition]:
        """The offsets after the last of `records` in each partition."""

    def commit_offsets(self, handled: Iterable[KafkaPartition]) -> list[KafkaPartition]:
        """What to commit for the offsets handled."""

    def group_metadata(self) -> Any:
        """The consumer group's generation (fences a zombie's commit)."""

    def committed(self, offsets: Iterable[KafkaPartition]) -> None:
        """Offsets committed: where a rewind goes back to."""

    def rewind(self) -> None:
        """Fetch again from the offsets last committed."""


class Outcome(Protocol):
    """Told how each transaction ended (the loop's metrics)."""

    def committed(self, seconds: float, produced: Counter[str]) -> None:
        """Committed in `seconds`, with `produced` records per topic."""

    def aborted(self) -> None:
        """Aborted."""


class Transaction:
    """One open Kafka transaction at a time, with the offsets and participants it carries."""

    def __init__(
        self,
        producer: Producer,
        positions: Positions,
        outcome: Outcome | None = None,
    ) -> None:
        self._producer = producer
        self._positions = positions
        self.participants: list[Participant] = []
        """Told how each transaction ended, in the order they were enlisted."""
        self._outcome = outcome
        self._offsets: dict[tuple[str, int], KafkaPartition] = {}
        self._writes: list[asyncio.Future[Any]] = []
        self.opened_at = 0.0
        """When the open transaction began (monotonic)."""
        self.last_commit_s = 0.0
        """How long the last commit took."""

    @property
    def open(self) -> bool:
        """Whether a transaction is open."""
        return self._producer.open

    def enlist(self, participant: Participant) -> None:
        """Tell `participant` how every later transaction ends."""
        self.participants.append(participant)

    def begin(self) -> None:
        """Open a transaction, unless one is open."""
        if not self._producer.open:
            self._producer.begin()
            self.opened_at = time.monotonic()

    def topic(self, base_topic: str) -> str:
        """The full name of an output topic."""
        return self._producer.topic(base_topic)

    def emit(self, base_topic: str, key: str, record: Any) -> None:
        """Produce an output model on `base_topic` into the transaction."""
        self.begin()
        self._producer.emit(base_topic, key, record)

    def emit_raw(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int = -1,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Produce raw bytes on a full topic name into the transaction."""
        self.begin()
        self._producer.emit_raw(topic, key, value, partition, on_delivery)

    def meanwhile(self, write: Awaitable[Any]) -> None:
        """A write elsewhere (Redis) that must be done before the transaction commits."""
        self._writes.append(asyncio.ensure_future(write))

    def handled(self, records: Sequence[Message]) -> None:
        """The records are handled: their offsets commit with the transaction."""
        for tp in self._positions.next_offsets(records):
            self._offsets[(tp.topic, tp.partition)] = tp

    def handled_up_to(self, key: tuple[str, int]) -> int:
        """The next offset to commit for a partition (-1 if none handled yet)."""
        tp = self._offsets.get(key)
        return -1 if tp is None else int(tp.offset)

    async def commit(self) -> bool:
        """Flush, commit with the handled offsets, and tell every participant; False if the
        broker refused the commit (then everything was discarded)."""
        if not self._producer.open:
            return True
        writes, self._writes = self._writes, []
        await asyncio.gather(*writes)
        offsets = self._positions.commit_offsets(self._offsets.values())
        started = time.monotonic()
        try:
            await self._producer.commit(offsets, self._positions.group_metadata())
        except TransactionAborted:
            self._discard()
            return False
        self.last_commit_s = time.monotonic() - started
        if self._outcome is not None:
            self._outcome.committed(self.last_commit_s, self._producer.produced)
        self._offsets.clear()
        self._positions.committed(offsets)
        for participant in self.participants:
            participant.committed()
        return True

    async def abort(self) -> None:
        """Abort the open transaction and discard everything staged into it."""
        if self._producer.open:
            await self._producer.abort()
        self._discard()

    def abort_now(self) -> None:
        """Abort at once, blocking (inside the client's rebalance callback)."""
        if self._producer.open:
            self._producer.abort_now()
            self._discard()

    def _discard(self) -> None:
        if self._outcome is not None:
            self._outcome.aborted()
        for write in self._writes:
            write.cancel()
        self._writes.clear()
        self._offsets.clear()
        for participant in self.participants:
            participant.discarded()
        self._positions.rewind()
