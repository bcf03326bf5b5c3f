"""Lean peer: a hand-written confluent-kafka batch loop with RocksDB + changelog state."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from confluent_kafka import (  # noqa: TID251 - a benchmark peer, not processors/
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # noqa: TID251
from ledger_work import apply
from peer_common import peer_args
from rocksdict import Options, Rdict, WriteBatch

BATCH = 1000
"""Records per consume() call, as the worker's REWARDS_BATCH_MAX."""

_stopping = False


def _stop(*_: object) -> None:
    global _stopping  # noqa: PLW0603 - the signal handler's flag
    _stopping = True


def ensure_changelog(brokers: str, source: str, changelog: str) -> None:
    """A compacted changelog topic with the input's partition count (partition-local state)."""
    admin = AdminClient({"bootstrap.servers": brokers})
    partitions = len(admin.list_topics(source, timeout=30).topics[source].partitions)
    config = {"cleanup.policy": "compact"}
    future = admin.create_topics([NewTopic(changelog, partitions, config=config)])[changelog]
    try:
        future.result()
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise


class Loop:
    """consume -> work -> produce outputs, wait -> changelog, wait -> RocksDB -> commit."""

    def __init__(self, consumer: Consumer, producer: Producer, db: Rdict, topics: tuple[str, str]):
        self.consumer, self.producer, self.db = consumer, producer, db
        self.output, self.changelog = topics
        self.errors: list[KafkaError] = []

    def delivered(self, err: KafkaError | None, _: Message) -> None:
        if err is not None:
            self.errors.append(err)

    def send(self, topic: str, key: bytes, value: bytes, partition: int = -1) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key, partition, on_delivery=self.delivered)
                return
            except BufferError:
                self.producer.poll(0.05)

    def wait(self) -> None:
        if self.producer.flush(60) or self.errors:
            raise RuntimeError(f"delivery failed: {self.errors[:3]}")

    def batch(self, messages: list[Message]) -> None:
        changed: dict[bytes, tuple[int, bytes]] = {}
        offsets: dict[tuple[str, int], int] = {}
        for msg in messages:
            if msg.error() is not None:
                raise KafkaException(msg.error())
            key, partition = msg.key() or b"", msg.partition() or 0
            before = changed[key][1] if key in changed else self.db.get(key)
            state, outputs = apply(before, msg.value() or b"", msg.timestamp()[1])
            changed[key] = (partition, state)
            for out_key, value in outputs:
                self.send(self.output, out_key, value)
            offsets[(msg.topic() or "", partition)] = (msg.offset() or 0) + 1
        self.wait()
        for key, (partition, state) in changed.items():
            self.send(self.changelog, key, state, partition)
        self.wait()
        writes = WriteBatch(raw_mode=True)
        for key, (_, state) in changed.items():
            writes.put(key, state)
        self.db.write(writes)
        self.consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False
        )


def main() -> None:
    """Run until SIGTERM."""
    args = peer_args(__doc__ or "")
    changelog = f"{args.group}-accounts-changelog"
    ensure_changelog(args.brokers, args.input, changelog)
    common: dict[str, Any] = {"bootstrap.servers": args.brokers}
    consumer = Consumer(
        common
        | {
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
            "max.partition.fetch.bytes": 8 << 20,
        }
    )
    producer = Producer(
        common | {"enable.idempotence": True, "linger.ms": 5, "batch.size": 1 << 20}
    )
    Path(args.state_dir).mkdir(parents=True, exist_ok=True)
    db = Rdict(str(Path(args.state_dir) / "accounts"), Options(raw_mode=True))
    loop = Loop(consumer, producer, db, (args.output, changelog))
    signal.signal(signal.SIGTERM, _stop)
    consumer.subscribe([args.input])
    try:
        while not _stopping:
            messages = consumer.consume(num_messages=BATCH, timeout=0.5)
            if messages:
                loop.batch(messages)
    finally:
        consumer.close()
        db.close()


if __name__ == "__main__":
    main()
