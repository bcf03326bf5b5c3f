"""The peer benchmark's data: the input topic, the reference ledger, reading and checking output."""

from __future__ import annotations

import contextlib
import importlib.util
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType

import orjson
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]  # not re-exported by admin

from streams.adapters import topic_reader
from streams.adapters.kafka_io import admin_client, fast_producer
from streams.bench.peer_procs import bench_dir
from streams.cli.simulator import SimEvent
from streams.settings import Settings

Work = Callable[[bytes | None, bytes, int], tuple[bytes, list[tuple[bytes, bytes]]]]


@dataclass(frozen=True)
class Record:
    """One input record as the broker stored it."""

    partition: int
    offset: int
    key: bytes
    value: bytes
    timestamp_ms: int


def ledger_work() -> ModuleType:
    """deploy/bench/ledger_work.py, the unit of work every system calls (loaded by path)."""
    spec = importlib.util.spec_from_file_location("ledger_work", bench_dir() / "ledger_work.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def create_topic(settings: Settings, name: str, partitions: int, **config: str) -> None:
    """A new topic (it must not exist: every run's names are fresh)."""
    admin = admin_client(settings.kafka_bootstrap_servers)
    topic = NewTopic(name, partitions, settings.replication_factor, config=config)
    admin.create_topics([topic], operation_timeout=30)[name].result()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # metadata reaches every client a little later
        found = admin.list_topics(name, timeout=10).topics.get(name)
        if found is not None and found.error is None and len(found.partitions) == partitions:
            return
        time.sleep(0.1)


def publish(settings: Settings, topic: str, events: Sequence[SimEvent]) -> None:
    """Publish keyed by customer id with the murmur2 partitioner (the product's producer)."""
    producer = fast_producer(settings)
    for sim in events:
        _produce(producer, topic, sim.key, sim.value)
    if producer.flush(120):
        raise RuntimeError(f"{topic}: records not delivered")


def copy(settings: Settings, records: Iterable[Record], topic: str) -> None:
    """The same records into another topic, each to the same partition number, in order."""
    producer = fast_producer(settings)
    for r in records:
        _produce(producer, topic, r.key, r.value, r.partition)
    if producer.flush(120):
        raise RuntimeError(f"{topic}: records not delivered")


def _produce(
    producer: Producer, topic: str, key: bytes | None, value: bytes, part: int = -1
) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, partition=part)
            return
        except BufferError:
            producer.poll(0.05)


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """Partition -> high watermark."""
    return topic_reader.end_offsets(settings.kafka_bootstrap_servers, topic)


def read_all(settings: Settings, topic: str, timeout_s: float = 120.0) -> list[Record]:
    """Every committed record of `topic` up to its end when reading started, in partition and
    offset order."""
    found = [
        Record(int(m.partition() or 0), int(m.offset() or 0), m.key() or b"", m.value() or b"",
               m.timestamp()[1])
        for m in topic_reader.read_to_end(settings.kafka_bootstrap_servers, topic, timeout_s)
    ]  # fmt: skip
    return sorted(found, key=lambda r: (r.partition, r.offset))


def reference(records: Iterable[Record], apply: Work) -> dict[str, bytes]:
    """The expected ledger, entry_id -> exact JSON: `apply` per record in partition and offset
    order with each record's broker timestamp, state per customer (record key)."""
    state: dict[bytes, bytes] = {}
    expected: dict[str, bytes] = {}
    for r in records:
        state[r.key], outputs = apply(state.get(r.key), r.value, r.timestamp_ms)
        for _, ledger in outputs:
            expected[orjson.loads(ledger)["entry_id"]] = ledger
    return expected


@dataclass(frozen=True)
class Verdict:
    """What a system's output topic held against the reference."""

    records: int
    missing: int
    mismatched: int
    unexpected: int

    @property
    def ok(self) -> bool:
        return not (self.missing or self.mismatched or self.unexpected)

    def describe(self) -> str:
        if self.ok:
            return f"ok ({self.records:,} records)"
        return (f"FAILED: {self.missing} missing, {self.mismatched} differing, "
                f"{self.unexpected} unexpected of {self.records:,} records")  # fmt: skip


def verify(expected: dict[str, bytes], values: Iterable[bytes]) -> Verdict:
    """Every expected entry present, every record with an expected id byte-identical to the
    reference (duplicates allowed: at-least-once), no other records."""
    found: set[str] = set()
    records = mismatched = unexpected = 0
    for value in values:
        records += 1
        try:
            entry_id = orjson.loads(value)["entry_id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            unexpected += 1
            continue
        if entry_id not in expected:
            unexpected += 1
        elif expected[entry_id] != value:
            mismatched += 1
        else:
            found.add(entry_id)
    return Verdict(records, len(expected.keys() - found), mismatched, unexpected)


def source_events(values: Iterable[bytes]) -> set[str]:
    """The input events behind some ledger records (`source_event_id`)."""
    return {orjson.loads(v)["source_event_id"] for v in values}


def cleanup(settings: Settings, tag: str) -> None:
    """Delete every topic and consumer group of this run (their names all hold `tag`)."""
    admin = admin_client(settings.kafka_bootstrap_servers)
    topics = [t for t in admin.list_topics(timeout=30).topics if tag in t]
    futures = dict(admin.delete_topics(topics, operation_timeout=30)) if topics else {}
    listed = admin.list_consumer_groups().result(timeout=30).valid
    groups = [g.group_id for g in listed if tag in g.group_id]
    futures |= admin.delete_consumer_groups(groups, request_timeout=30) if groups else {}
    for future in futures.values():
        with contextlib.suppress(KafkaException):
            future.result()
