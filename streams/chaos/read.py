"""Read topics back as `read_committed` consumers see them, and the groups' committed lag."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as KafkaPartition

from streams.adapters.topic_reader import Span, read_spans, read_to_end


@dataclass(frozen=True, slots=True)
class Rec:
    """One record as read: where it sits, its timestamp and its bytes."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None

    def json(self) -> dict[str, Any]:
        """The value as a JSON object (empty if it is not one)."""
        try:
            found = orjson.loads(self.value or b"")
        except orjson.JSONDecodeError:
            return {}
        return found if isinstance(found, dict) else {}


def read_topic(bootstrap: str, topic: str, timeout_s: float = 180.0) -> list[Rec]:
    """Every committed record of `topic`, from the start to its end when reading started."""
    return [
        Rec(int(m.partition() or 0), int(m.offset() or 0), m.timestamp()[1], m.key(), m.value())
        for m in read_to_end(bootstrap, topic, timeout_s)
    ]


class LagProbe:
    """Committed lag of consumer groups: the committed-visible records at or after each
    partition's committed offset, read until caught up (transaction markers and aborted records
    do not count).

    Committed offsets are fetched by a consumer carrying the group's id that never subscribes
    (so it never joins the group), not by the AdminClient: an error answer to the admin's
    offset listing, e.g. during a rebalance, crashed confluent-kafka 2.16.1 (SIGSEGV)."""

    def __init__(self, bootstrap: str, groups: Mapping[str, Sequence[str]]) -> None:
        self._bootstrap = bootstrap
        self._groups = {group: list(topics) for group, topics in groups.items()}

    def lag(self) -> dict[str, int]:
        """Each group's committed lag now (raises KafkaException while the cluster is away)."""
        return {group: self._group_lag(group) for group in self._groups}

    def raw_lag(self) -> dict[str, int]:
        """High watermark minus committed offset, summed per group (markers included)."""
        out = {}
        for group in self._groups:
            behind = self._behind(group)
            out[group] = sum(high - tp.offset for tp, high in behind)
        return out

    def _group_lag(self, group: str) -> int:
        behind = [Span(tp.topic, tp.partition, tp.offset, None) for tp, _ in self._behind(group)]
        return sum(1 for _ in read_spans(self._bootstrap, behind, 60.0)) if behind else 0

    def _behind(self, group: str) -> list[tuple[KafkaPartition, int]]:
        """Each partition whose committed offset (or log start) is below its high watermark."""
        consumer = Consumer(
            {
                "bootstrap.servers": self._bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        try:
            partitions = _partitions(consumer, self._groups[group])
            committed = consumer.committed(partitions, timeout=15) if partitions else []
            behind = []
            for tp in committed:
                low, high = consumer.get_watermark_offsets(tp, timeout=10)
                start = tp.offset if tp.offset >= 0 else low
                if start < high:
                    behind.append((KafkaPartition(tp.topic, tp.partition, start), high))
            return behind
        finally:
            consumer.close()


def _partitions(consumer: Consumer, topics: Iterable[str]) -> list[KafkaPartition]:
    metadata = consumer.list_topics(timeout=10).topics
    return [
        KafkaPartition(topic, p)
        for topic in topics
        if topic in metadata
        for p in sorted(metadata[topic].partitions)
    ]


def group_coordinator(bootstrap: str, group: str) -> int:
    """The node id of the broker that coordinates `group`
    (`AdminClient.describe_consumer_groups`, asked in a child process: see `LagProbe`)."""
    script = (
        "import sys; from confluent_kafka.admin import AdminClient; "
        "a = AdminClient({'bootstrap.servers': sys.argv[1]}); "
        "f = a.describe_consumer_groups([sys.argv[2]], request_timeout=10)[sys.argv[2]]; "
        "print(f.result(timeout=15).coordinator.id)"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", script, bootstrap, group],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"describe_consumer_groups failed: {done.stderr[-500:]}")
    return int(done.stdout.strip())
