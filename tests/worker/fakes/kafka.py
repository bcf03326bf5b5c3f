"""In-memory Kafka for the worker layer: a log of topics, a transactional producer, a consumer."""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as KafkaPartition

from schemas.codec import encode
from streams.adapters.outbox import DeliveryCallback, TransactionAborted
from streams.pipeline import Source

TP = tuple[str, int]


@dataclass
class Cluster:
    """Topics' committed records and a consumer group's committed offsets."""

    partitions: int
    logs: dict[TP, list[Message]] = field(default_factory=dict)
    offsets: dict[TP, int] = field(default_factory=dict)
    """The group's committed offsets (the next record to read)."""
    clock_ms: int = 1_767_225_600_000

    def append(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int = -1
    ) -> tuple[int, int]:
        """Append a committed record; its partition and offset."""
        if partition < 0:
            partition = zlib.crc32(key or b"") % self.partitions
        log = self.logs.setdefault((topic, partition), [])
        self.clock_ms += 1
        record = Message(topic=topic, partition=partition, offset=len(log), key=key, value=value,
                         timestamp=(1, self.clock_ms))  # fmt: skip
        log.append(record)
        return partition, len(log) - 1

    def records(self, topic: str) -> list[Message]:
        """Every committed record of a topic, partition by partition."""
        return [m for (t, _), log in sorted(self.logs.items()) if t == topic for m in log]


class Producer:
    """A transactional producer whose records reach the cluster only when it commits."""

    def __init__(self, cluster: Cluster, prefix: str) -> None:
        self._cluster = cluster
        self._prefix = prefix
        self.open = False
        self.produced: Counter[str] = Counter()
        self._pending: list[tuple[str, bytes | None, bytes | None, int, DeliveryCallback | None]]
        self._pending = []
        self.refuse_commits = 0
        """The next commits the broker refuses (e.g. the group rebalanced meanwhile)."""
        self.commits = 0
        self.aborts = 0
        self.emitted = 0
        self.fail_emit_at: int | None = None
        """The emit (counted over the run) at which the client says the transaction must be
        aborted (e.g. the producer was fenced mid-transaction)."""
        self.fail_emit_with = KafkaError(KafkaError._FENCED, "fake", txn_requires_abort=True)
        """What that emit raises (librdkafka's produce() after an out-of-sequence error raises a
        `_STATE` error that does not say it requires an abort)."""

    def topic(self, base_topic: str) -> str:
        return f"{self._prefix}{base_topic}"

    def begin(self) -> None:
        assert not self.open, "a transaction is already open"
        self.open, self.produced, self._pending = True, Counter(), []

    def emit(self, base_topic: str, key: str, record: Any) -> None:
        self.emit_raw(self.topic(base_topic), key.encode(), encode(record))

    def emit_raw(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int = -1,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        assert self.open, "produced outside a transaction"
        self.emitted += 1
        if self.emitted == self.fail_emit_at:
            raise KafkaException(self.fail_emit_with)
        self.produced[topic] += 1
        self._pending.append((topic, key, value, partition, on_delivery))

    async def commit(self, offsets: list[KafkaPartition], group_metadata: Any) -> None:
        assert self.open
        if self.refuse_commits:
            self.refuse_commits -= 1
            await self.abort()
            raise TransactionAborted("refused by the fake broker")
        for topic, key, value, partition, on_delivery in self._pending:
            at, offset = self._cluster.append(topic, key, value, partition)
            if on_delivery is not None:
                on_delivery(None, Message(topic=topic, partition=at, offset=offset))
        for tp in offsets:
            self._cluster.offsets[(tp.topic, tp.partition)] = tp.offset
        self.open, self._pending = False, []
        self.commits += 1

    async def abort(self) -> None:
        self.abort_now()

    def abort_now(self) -> None:
        self.open, self._pending = False, []
        self.aborts += 1


class Consumer(Source):
    """A consumer of the cluster's topics with the source's positions (`KafkaSource`'s surface)."""

    def __init__(self, cluster: Cluster, topics: Sequence[str]) -> None:
        self._cluster = cluster
        self._topics = list(topics)
        self.generation = 0
        self.listener: Any = None
        self._expected: dict[TP, int] = {}
        self._committed: dict[TP, int] = {}
        self.paused: set[int] = set()
        self.polls = 0
        self.revoke_at_poll: tuple[int, frozenset[int]] | None = None
        """(n, partitions): the group takes `partitions` away inside the n-th poll."""

    def partition_of(self, key: str) -> int:
        """The partition a key's records go to."""
        return zlib.crc32(key.encode()) % self._cluster.partitions

    def assign(self, partitions: Iterable[int]) -> None:
        """The group gives this consumer `partitions` (of every topic), starting at the
        committed offsets."""
        self.generation += 1
        numbers = frozenset(partitions)
        for topic in self._topics:
            for p in numbers:
                start = self._cluster.offsets.get((topic, p), 0)
                self._expected[(topic, p)] = self._committed[(topic, p)] = start
        if self.listener is not None:
            self.listener.partitions_assigned(numbers)

    def revoke(self, partitions: Iterable[int]) -> None:
        """The group takes `partitions` away (a rebalance)."""
        self.generation += 1
        numbers = frozenset(partitions)
        for key in [k for k in self._expected if k[1] in numbers]:
            self._expected.pop(key)
            self._committed.pop(key)
        if self.listener is not None:
            self.listener.partitions_revoked(numbers)

    def poll(self, max_records: int) -> list[Message]:
        self.polls += 1
        if self.revoke_at_poll is not None and self.revoke_at_poll[0] == self.polls:
            self.revoke(self.revoke_at_poll[1])  # the client runs rebalance callbacks in poll
        out: list[Message] = []
        for tp, offset in sorted(self._expected.items()):
            if tp[1] in self.paused:
                continue
            log = self._cluster.logs.get(tp, [])
            taken = log[offset : offset + max_records - len(out)]
            out += taken
            self._expected[tp] = offset + len(taken)
        return out

    def still_assigned(self, records: list[Message]) -> list[Message]:
        return [r for r in records if (r.topic(), r.partition()) in self._expected]

    def next_offsets(self, records: Iterable[Message]) -> list[KafkaPartition]:
        last: dict[TP, int] = {}
        for r in records:
            last[(str(r.topic()), int(r.partition() or 0))] = int(r.offset() or 0)
        return [KafkaPartition(t, p, o + 1) for (t, p), o in last.items()]

    def commit_offsets(self, handled: Iterable[KafkaPartition]) -> list[KafkaPartition]:
        return [
            tp for tp in handled if tp.offset > self._committed.get((tp.topic, tp.partition), -1)
        ]

    def group_metadata(self) -> Any:
        return self.generation

    def committed(self, offsets: Iterable[KafkaPartition]) -> None:
        for tp in offsets:
            if (tp.topic, tp.partition) in self._committed:
                self._committed[(tp.topic, tp.partition)] = tp.offset

    def rewind(self) -> None:
        self._expected.update(self._committed)

    def resume(self, partitions: Iterable[int]) -> None:
        self.paused -= set(partitions)

    def lag(self) -> dict[TP, int]:
        return {tp: len(self._cluster.logs.get(tp, [])) - o for tp, o in self._expected.items()}

    def read_before(self, partition: int) -> bool:
        return any(p == partition for (t, p) in self._cluster.offsets if t in self._topics)
