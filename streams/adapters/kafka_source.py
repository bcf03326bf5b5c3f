"""The hot path's consumer: whole batches from librdkafka, with positions owned and checked here.

Faust's consumer delivers one record at a time through its own machinery, and during recovery it
can fold a range of offsets it never delivered into a commit (faust-streaming #596, #606). This
source instead hands out whole batches (`consume(n, 0)`, no per-record task or channel), starts
every assigned partition at its committed offset, and checks the first record of every fetch
session (after an assignment, a seek or a rewind) against that offset. A first record further on
is a gap: the partition is re-seeked to the expected offset and fetched again. Only when the
broker answers the same way twice (the offsets in between hold no record to read: transaction
markers, aborted or compacted records, or records deleted by retention) is the gap accepted,
counted and logged; it is never silently acked. Within a session the client delivers a
partition's records in log order and skips only what `read_committed` must skip (markers and
aborted records: every transaction leaves a marker), counted as `skipped`. Offsets are committed
by the caller inside its producer transaction, from `commit_offsets`: the client's position,
which is past the markers that follow the last record handed out.

A client call failing inside a rebalance callback (a broker just restarted) is retried there; if
it keeps failing, the next `poll` raises it: the loop fails loudly instead of waiting forever.

Partitions are assigned with the range assignor: every input topic has the same number of
partitions, so each worker gets the same partition numbers of every topic, and partition p of
every topic (and of the state's changelog) holds the same customers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as KafkaPartition
from prometheus_client import Counter

from streams.adapters.kafka_retry import in_callback

log = logging.getLogger(__name__)
RETRY_WITHIN_S = 60.0
"""How long an assignment's offset lookups are retried before the failure is the worker's."""

TP = tuple[str, int]


class RebalanceListener(Protocol):
    """Told which partition numbers this consumer gained or lost (all topics at once)."""

    def partitions_assigned(self, partitions: frozenset[int]) -> None:
        """The partitions are assigned and paused: resume them once their state is ready."""

    def partitions_revoked(self, partitions: frozenset[int]) -> None:
        """The partitions are no longer this consumer's (revoked, or lost to a timeout)."""


@dataclass(frozen=True)
class SourceMetrics:
    """What the source counts (labelled with its loop): gaps by topic and outcome, rebalance
    events, consumer errors."""

    loop: str
    gaps: Counter
    rebalances: Counter
    errors: Counter


@dataclass
class _Gap:
    """A gap seen once: re-seeked, waiting to see whether the broker answers the same again."""

    expected: int
    found: int


class KafkaSource:
    """A librdkafka consumer whose positions are checked record by record."""

    def __init__(
        self,
        config: Mapping[str, Any],
        topics: Sequence[str],
        metrics: SourceMetrics,
        listener: RebalanceListener | None = None,
    ) -> None:
        self._consumer = Consumer({**config, "error_cb": self._client_error})
        self._logged: dict[str, float] = {}
        self._topics = list(topics)
        self.listener = listener
        """Told of every assignment and revocation (set before `subscribe`)."""
        self._metrics = metrics
        self._expected: dict[TP, int] = {}
        self._committed: dict[TP, int] = {}
        self._gaps: dict[TP, _Gap] = {}
        self._verify: set[TP] = set()
        """Partitions whose next record starts a fetch session (checked against `_expected`)."""
        self._failure: BaseException | None = None
        self._read_before: set[int] = set()
        """Partition numbers the group had committed an offset of (any topic) when assigned."""
        self.generation = 0
        """Incremented by every rebalance."""

    def subscribe(self) -> None:
        """Join the group (the rebalance callbacks run inside later `poll` calls)."""
        self._consumer.subscribe(
            self._topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )

    def poll(self, max_records: int) -> list[Message]:
        """Up to `max_records` records already fetched (never waits), in order per partition;
        records after a session's unconfirmed gap are held back until fetched again."""
        accepted: list[Message] = []
        reseeked: set[TP] = set()
        for record in self._consumer.consume(max_records, 0):
            error = record.error()
            if error is not None:
                self._failed(error)
                continue
            tp = (str(record.topic()), int(record.partition() or 0))
            offset = int(record.offset() or 0)
            expected = self._expected.get(tp)
            if expected is None or tp in reseeked or offset < expected:
                continue  # revoked meanwhile, after a gap in this batch, or already handed out
            if offset > expected:
                if tp not in self._verify:
                    self._metrics.gaps.labels(self._metrics.loop, tp[0], "skipped").inc()
                elif not self._accept_gap(tp, expected, offset):
                    reseeked.add(tp)
                    continue
            self._verify.discard(tp)
            self._expected[tp] = offset + 1
            accepted.append(record)
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        return accepted

    def still_assigned(self, records: Iterable[Message]) -> list[Message]:
        """The records whose partitions are still assigned (after a rebalance)."""
        return [r for r in records if (r.topic(), r.partition()) in self._expected]

    def next_offsets(self, records: Iterable[Message]) -> list[KafkaPartition]:
        """The offsets after the last of `records` in each partition."""
        last: dict[TP, int] = {}
        for record in records:
            last[(str(record.topic()), int(record.partition() or 0))] = int(record.offset() or 0)
        return [KafkaPartition(t, p, o + 1) for (t, p), o in last.items()]

    def commit_offsets(self, handled: Iterable[KafkaPartition]) -> list[KafkaPartition]:
        """What to commit for `handled` (offsets after the records handled since the last
        commit): the client's position where it is past them (it steps over the transaction
        markers that follow a record), so that an idle partition's lag reads 0."""
        wanted = {(tp.topic, tp.partition): tp.offset for tp in handled}
        assigned = [KafkaPartition(t, p) for t, p in self._expected if (t, p) not in self._verify]
        for tp in self._consumer.position(assigned) if assigned else []:
            key = (tp.topic, tp.partition)
            mark = self._committed.get(key, -1)
            if tp.offset > max(wanted.get(key, -1), mark):
                wanted[key] = tp.offset  # past the markers after the last record handed out
        return [
            KafkaPartition(t, p, o)
            for (t, p), o in wanted.items()
            if o > self._committed.get((t, p), -1)
        ]

    def committed(self, offsets: Iterable[KafkaPartition]) -> None:
        """Offsets committed (in a transaction): where a rewind goes back to."""
        for tp in offsets:
            if (tp.topic, tp.partition) in self._committed:
                self._committed[(tp.topic, tp.partition)] = tp.offset

    def rewind(self) -> None:
        """After an aborted transaction: fetch again from the offsets last committed."""
        for tp, offset in self._committed.items():
            if self._expected.get(tp) != offset:
                self._expected[tp] = offset
                self._gaps.pop(tp, None)
                self._verify.add(tp)
                self._consumer.seek(KafkaPartition(tp[0], tp[1], offset))

    def resume(self, partitions: Iterable[int]) -> None:
        """Start fetching the given partition numbers of every topic (their state is ready)."""
        wanted = set(partitions)
        self._consumer.resume([KafkaPartition(t, p) for (t, p) in self._expected if p in wanted])

    def lag(self) -> dict[TP, int]:
        """Records behind the high watermark of each assigned partition that holds any (the
        client's cached view, as of its last fetch; its position steps over transaction
        markers, so an idle partition of a transactional topic reads 0)."""
        out: dict[TP, int] = {}
        keys = [KafkaPartition(t, p) for t, p in self._expected if (t, p) not in self._verify]
        positions = {(tp.topic, tp.partition): tp.offset for tp in self._consumer.position(keys)}
        for (topic, partition), expected in list(self._expected.items()):
            _, high = self._consumer.get_watermark_offsets(
                KafkaPartition(topic, partition), cached=True
            )
            if high > 0:
                at = max(expected, positions.get((topic, partition), -1))
                out[(topic, partition)] = max(0, high - at)
        return out

    def positions(self) -> dict[TP, int]:
        """The next offset expected of each assigned partition."""
        return dict(self._expected)

    def group_metadata(self) -> Any:
        """The consumer group's generation, for offsets committed in a producer transaction."""
        return self._consumer.consumer_group_metadata()

    def close(self) -> None:
        """Leave the group now (the partitions move without waiting for the session timeout)."""
        self._consumer.close()

    def _client_error(self, error: KafkaError) -> None:
        """An error the client reports on its own (a broker unreachable, a response too large):
        counted, and logged at most once a minute per kind."""
        self._metrics.errors.labels(self._metrics.loop, error.name()).inc()
        now = time.monotonic()
        if now - self._logged.get(error.name(), -60.0) >= 60.0:
            self._logged[error.name()] = now
            log.warning("kafka client (%s): %s", self._metrics.loop, error)

    def _failed(self, error: KafkaError) -> None:
        """A consumer error: a fatal one (the client reports it as `_FATAL`, its flag unset)
        is raised; any other is the client's to retry."""
        if error.code() == KafkaError._PARTITION_EOF:
            return
        self._metrics.errors.labels(self._metrics.loop, error.name()).inc()
        if "group.instance.id" in error.str() or error.code() == KafkaError.FENCED_INSTANCE_ID:
            log.error("another worker joined the group with this worker's id: REWARDS_WORKER_ID "
                      "must be unique per worker (%s)", error)  # fmt: skip
        if error.fatal() or error.code() == KafkaError._FATAL:
            raise KafkaException(error)
        log.warning("consumer error (the client retries): %s", error)

    def _accept_gap(self, tp: TP, expected: int, found: int) -> bool:
        """A record past the expected offset: re-seek once; accept only the same answer twice."""
        seen = self._gaps.pop(tp, None)
        if seen is not None and (seen.expected, seen.found) == (expected, found):
            low, _ = self._consumer.get_watermark_offsets(KafkaPartition(*tp), timeout=10)
            outcome = "lost_to_retention" if expected < low else "absent"
            self._metrics.gaps.labels(self._metrics.loop, tp[0], outcome).inc()
            logger = log.error if outcome == "lost_to_retention" else log.info
            logger("%s[%d]: offsets %d..%d hold no record to read (%s); going on from %d",
                   tp[0], tp[1], expected, found - 1, outcome, found)  # fmt: skip
            return True
        self._gaps[tp] = _Gap(expected, found)
        self._metrics.gaps.labels(self._metrics.loop, tp[0], "reseeked").inc()
        log.info(
            "%s[%d]: expected offset %d, got %d: fetching again", tp[0], tp[1], expected, found
        )
        self._consumer.seek(KafkaPartition(tp[0], tp[1], expected))
        return False

    def _assigned(self, consumer: Consumer, partitions: list[KafkaPartition]) -> None:
        """Start each partition at its committed offset (or the log start), paused."""
        self._metrics.rebalances.labels(self._metrics.loop, "assigned").inc()
        self.generation += 1
        try:
            start = in_callback(lambda: self._starts(consumer, partitions), RETRY_WITHIN_S)
            consumer.assign(start)
            consumer.pause(start)
            for tp in start:
                key = (tp.topic, tp.partition)
                self._expected[key] = self._committed[key] = tp.offset
                self._gaps.pop(key, None)
                self._verify.add(key)
            numbers = frozenset(tp.partition for tp in start)
            log.info("assigned partitions %s of %s", sorted(numbers), self._topics)
            self._check_co_partitioned(start)
            assert self.listener is not None, "subscribe() before a listener was set"
            self.listener.partitions_assigned(numbers)
        except Exception as exc:  # raised by the next poll: never lost inside the client
            log.exception("handling the assignment failed")
            self._failure = exc

    def read_before(self, partition: int) -> bool:
        """Whether the group had committed an offset of any topic of `partition` when it was
        assigned: False for a partition no worker of this group (of any version) has read."""
        return partition in self._read_before

    def _starts(self, consumer: Consumer, partitions: list[KafkaPartition]) -> list[KafkaPartition]:
        committed = consumer.committed(partitions, timeout=60)
        self._read_before.update(tp.partition for tp in committed if tp.offset >= 0)
        return [
            KafkaPartition(tp.topic, tp.partition, self._start_of(consumer, tp)) for tp in committed
        ]

    def _start_of(self, consumer: Consumer, tp: KafkaPartition) -> int:
        if tp.offset >= 0:
            return int(tp.offset)
        low, _ = consumer.get_watermark_offsets(KafkaPartition(tp.topic, tp.partition), timeout=30)
        return int(low)

    def _check_co_partitioned(self, assigned: Sequence[KafkaPartition]) -> None:
        by_topic: dict[str, set[int]] = {}
        for tp in assigned:
            by_topic.setdefault(tp.topic, set()).add(tp.partition)
        if len({frozenset(v) for v in by_topic.values()}) > 1:
            raise RuntimeError(f"topics are not co-partitioned in this assignment: {by_topic}")

    def _revoked(self, consumer: Consumer, partitions: list[KafkaPartition]) -> None:
        self._metrics.rebalances.labels(self._metrics.loop, "revoked").inc()
        self._drop(partitions)

    def _lost(self, consumer: Consumer, partitions: list[KafkaPartition]) -> None:
        self._metrics.rebalances.labels(self._metrics.loop, "lost").inc()
        log.warning("partitions lost (session timed out): %s", partitions)
        self._drop(partitions)

    def _drop(self, partitions: list[KafkaPartition]) -> None:
        self.generation += 1
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self._expected.pop(key, None)
            self._committed.pop(key, None)
            self._gaps.pop(key, None)
            self._verify.discard(key)
        try:
            assert self.listener is not None, "subscribe() before a listener was set"
            self.listener.partitions_revoked(frozenset(tp.partition for tp in partitions))
        except Exception as exc:  # raised by the next poll: never lost inside the client
            log.exception("handling the revocation failed")
            self._failure = exc
