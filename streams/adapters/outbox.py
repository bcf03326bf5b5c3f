"""Everything a batch produces, in one Kafka transaction with the batch's input offsets.

A batch's outputs (ledger entries, rewards, alerts, commands, dead letters) and its state changes
(the accounts' changelog records) are produced inside a transaction, and the input offsets are
committed in the same transaction (`send_offsets_to_transaction`, KIP-447): either all of it is
visible to `read_committed` consumers, or none of it and the batch is processed again. The
consumer group's generation goes with the offsets, so a worker that lost its partitions (a
zombie) cannot commit: the broker fences it.

The transactional id is stable per worker instance (derived from its state directory), so a
restarted worker aborts whatever its previous incarnation left open at once instead of blocking
readers until `transaction.timeout.ms`.

A fatal error of the producer (INVALID_TXN_STATE after a broker outage, a fencing) is recovered
in-process: the producer is replaced by a new one with the same transactional id, whose
`init_transactions` aborts what the old one left open, and the batch is processed again. At most
RENEWALS a RENEWAL_WINDOW_S: a producer fenced again at once (two live workers with one id) is one
that truly cannot go on, and the error is raised.

Faust's own exactly-once mode is not used (faust-streaming #517); this is the client's API.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka import TopicPartition as KafkaPartition

from schemas.codec import encode

log = logging.getLogger(__name__)
DeliveryCallback = Callable[[KafkaError | None, Message], None]


class Emitter(Protocol):
    """What produces into the open transaction (the outbox, or the unit of work around it)."""

    def topic(self, base_topic: str) -> str:
        """The full name of an output topic."""

    def emit_raw(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int = -1,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Produce raw bytes on a full topic name, to `partition` (-1: the key's partition)."""


RENEWALS = 3
RENEWAL_WINDOW_S = 300.0


class TransactionAborted(Exception):
    """The transaction had to be aborted (e.g. the group rebalanced): process the batch again."""


class Outbox:
    """A transactional producer: `begin`, `emit` records, then `commit` with the offsets."""

    def __init__(
        self,
        config: dict[str, Any],
        topic_prefix: str,
        producer: Callable[[dict[str, Any]], Any] = Producer,
    ) -> None:
        self._config = config
        self._prefix = topic_prefix
        self._new_producer = producer
        self._producer = producer(config)
        self._renewed_at: list[float] = []
        self._start_timeout_s = 60.0
        self.open = False
        """Whether a transaction is open."""
        self.produced: Counter[str] = Counter()
        """Records produced in the open transaction, by full topic name."""
        self._warm: set[str] = set()

    def start(self, timeout_s: float) -> None:
        """Register the transactional id with its coordinator (aborting what an earlier
        incarnation left open), retrying until the cluster answers or `timeout_s` passes."""
        self._start_timeout_s = timeout_s
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._producer.init_transactions(min(30.0, max(1.0, deadline - time.monotonic())))
                return
            except KafkaException as exc:
                if not exc.args[0].retriable() or time.monotonic() > deadline:
                    raise
                log.warning("transaction coordinator not ready (%s); retrying", exc.args[0])

    def topic(self, base_topic: str) -> str:
        """The full name of an output topic."""
        return f"{self._prefix}{base_topic}"

    def warm_up(self, topics: Sequence[str]) -> None:
        """Fetch the topics' metadata now, not on a batch's first record (if the cluster does
        not answer in time, the first batch waits for it instead)."""
        for topic in set(topics) - self._warm:
            try:
                self._producer.list_topics(topic, timeout=10)
            except KafkaException as exc:
                log.warning("no metadata for %s yet (%s); the first batch will wait", topic, exc)
                continue
            self._warm.add(topic)

    def begin(self) -> None:
        """Open the batch's transaction."""
        if not self.open:
            self._producer.begin_transaction()
            self.open = True
            self.produced = Counter()

    def emit(self, base_topic: str, key: str, record: Any) -> None:
        """Produce `record` (an output model) on `base_topic`, keyed by `key`."""
        self.emit_raw(f"{self._prefix}{base_topic}", key.encode(), encode(record))

    def emit_raw(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int = -1,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Produce raw bytes on a full topic name, to `partition` (-1: the key's partition)."""
        if not self.open:
            self.begin()
        self.produced[topic] += 1
        produce, poll = self._producer.produce, self._producer.poll
        while True:
            try:
                if on_delivery is None:
                    produce(topic, value=value, key=key, partition=partition)
                else:
                    produce(
                        topic, value=value, key=key, partition=partition, on_delivery=on_delivery
                    )
                return
            except BufferError:
                poll(0.01)
            except KafkaException as exc:
                if not self._renewed(exc.args[0]):
                    raise
                # the new producer has no transaction: the batch must be processed again
                raise KafkaException(KafkaError(KafkaError._STATE, "producer renewed")) from exc

    async def commit(self, offsets: list[KafkaPartition], group_metadata: Any) -> None:
        """Commit the transaction with the input offsets; raises TransactionAborted if the
        broker refused it (the batch is then processed again)."""
        if not self.open:
            return
        try:
            await asyncio.to_thread(self._commit, offsets, group_metadata)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.fatal():
                if not await asyncio.to_thread(self._renewed, error):
                    raise
                raise TransactionAborted(str(error)) from exc
            log.warning("transaction aborted (%s): the batch is processed again", error)
            await self.abort()
            raise TransactionAborted(str(error)) from exc
        finally:
            self.open = False

    def _commit(self, offsets: list[KafkaPartition], group_metadata: Any) -> None:
        """Blocking: send the offsets and commit, retrying what the client calls retriable."""
        if offsets:
            _retrying(
                lambda: self._producer.send_offsets_to_transaction(offsets, group_metadata, 60)
            )
        _retrying(lambda: self._producer.commit_transaction(60))

    async def abort(self) -> None:
        """Abort the open transaction (nothing of it becomes visible)."""
        await asyncio.to_thread(self.abort_now)

    def abort_now(self) -> None:
        """Abort the open transaction, blocking (inside a rebalance callback); none open (a
        renewed producer): nothing to do."""
        if not self.open:
            return
        self.open = False
        try:
            _retrying(lambda: self._producer.abort_transaction(60))
        except KafkaException as exc:
            if not self._renewed(exc.args[0]):
                raise

    def _renewed(self, error: KafkaError) -> bool:
        """After a fatal error, replace the producer (blocking: `init_transactions` aborts what
        the old one left open); False if the error is not fatal or renewals come too often."""
        now = time.monotonic()
        self._renewed_at = [t for t in self._renewed_at if now - t < RENEWAL_WINDOW_S]
        if not error.fatal():
            return False
        if len(self._renewed_at) >= RENEWALS:
            log.error("producer failed fatally %d times in %.0f s (%s): another live worker may "
                      "use this worker's id (REWARDS_WORKER_ID, or the same host and state "
                      "directory)", RENEWALS, RENEWAL_WINDOW_S, error)  # fmt: skip
            return False
        self._renewed_at.append(now)
        log.warning(
            "producer failed fatally (%s): replacing it, the batch is processed again", error
        )
        self.open = False
        self._producer = self._new_producer(self._config)
        self.start(self._start_timeout_s)
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Abort anything open and let go of the producer."""
        if self.open:
            try:
                self._producer.abort_transaction(timeout_s)
            except KafkaException as exc:
                log.warning("abort on close failed: %s", exc)
            self.open = False
        self._producer.flush(timeout_s)


def _retrying(call: Callable[[], object], attempts: int = 10) -> None:
    """Call a transactional API again while the client says the error is retriable."""
    for attempt in range(attempts):
        try:
            call()
            return
        except KafkaException as exc:
            if not exc.args[0].retriable() or attempt == attempts - 1:
                raise
            time.sleep(min(1.0, 0.05 * 2**attempt))
