"""confluent-kafka clients: topic creation, the worker's client configurations, fast publishing."""

from __future__ import annotations

import functools
import hashlib
import logging
import socket
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # not re-exported by admin

from streams.adapters.kafka_retry import retried
from streams.settings import CONTROL_TOPICS, INPUT_TOPICS, OUTPUT_TOPICS, Settings

log = logging.getLogger(__name__)

DEAD_LETTER_MAX_BYTES = 4 * 1024 * 1024
BROKER_TIME = {"message.timestamp.type": "LogAppendTime"}
"""Input and control topics carry the broker's append time: the stream's clock never depends on a
producer's clock, and it never goes back within a partition."""
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    "dead-letter": {
        "max.message.bytes": str(DEAD_LETTER_MAX_BYTES),
        "retention.ms": str(30 * 86_400_000),
    },
    **{name: BROKER_TIME for name in INPUT_TOPICS + CONTROL_TOPICS},
    "dead-letter-replays": {"cleanup.policy": "compact"},  # `rewards dead-letters replay`
}
CHANGELOG_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
WORKER_TOPICS = INPUT_TOPICS + CONTROL_TOPICS + OUTPUT_TOPICS


class TopicLayoutError(ValueError):
    """The topics cannot be processed together (their partition counts differ)."""


@functools.cache
def admin_client(bootstrap_servers: str) -> AdminClient:
    """One AdminClient per cluster for the whole process (no new connection per topic call)."""
    return AdminClient(
        {
            "bootstrap.servers": bootstrap_servers,
            "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 5000,
        }
    )


def ensure_topics(
    settings: Settings, names: Iterable[str] = WORKER_TOPICS, timeout_s: float = 60.0
) -> None:
    """Create the product's topics (and the accounts' changelog) if missing, with the configured
    partitions and replication; while the cluster cannot answer (a broker starting or gone),
    retry with backoff for up to `timeout_s`."""
    wanted = [
        NewTopic(
            settings.topic(name),
            num_partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            config=TOPIC_CONFIGS.get(name, {}),
        )
        for name in names
    ]
    if set(names) >= set(INPUT_TOPICS):
        wanted.append(
            NewTopic(
                settings.changelog_topic(),
                num_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                config=CHANGELOG_CONFIG,
            )
        )
    deadline, attempt = time.monotonic() + timeout_s, 0
    while wanted:
        wanted = _create(settings, wanted)
        if wanted:
            attempt += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not create topics {[t.topic for t in wanted]}")
            delay = min(5.0, 0.2 * 2**attempt)
            log.warning("cluster not ready to create %d topics; retry %d in %.1fs",
                        len(wanted), attempt, delay)  # fmt: skip
            time.sleep(delay)


def _create(settings: Settings, wanted: list[NewTopic]) -> list[NewTopic]:
    """Create what is missing; returns the topics to try again (transient errors).

    A new client each attempt: with KRaft a broker names a random live broker as the controller,
    and a client that learnt a broker which then died waits for it ("Timed out waiting for
    controller") until its next metadata refresh, minutes later; a new one asks afresh."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    again = []
    by_name = {t.topic: t for t in wanted}
    for topic, future in admin.create_topics(wanted, operation_timeout=30).items():
        try:
            future.result()
            log.info("created topic %s", topic)
        except KafkaException as exc:
            error = exc.args[0]
            if error.name() == "TOPIC_ALREADY_EXISTS":
                continue
            if error.name() in _DEFINITIVE:
                raise
            log.warning("creating %s: %s (retrying)", topic, error)
            again.append(by_name[topic])
    return again


_DEFINITIVE = {
    "INVALID_CONFIG", "INVALID_PARTITIONS", "INVALID_TOPIC_EXCEPTION", "POLICY_VIOLATION",
    "TOPIC_AUTHORIZATION_FAILED", "CLUSTER_AUTHORIZATION_FAILED", "INVALID_REQUEST",
    "UNSUPPORTED_VERSION",
}  # fmt: skip
"""Creation errors that retrying cannot fix; any other (a broker or the controller away, a
timeout, too few brokers for the replication factor yet) is retried until the start-up timeout."""


def partition_count(settings: Settings, names: Iterable[str], timeout_s: float = 60.0) -> int:
    """The partition count shared by `names` (and the changelog); TopicLayoutError if they
    differ: partition p of each must hold the same customers."""
    topics = [settings.topic(n) for n in names] + [settings.changelog_topic()]
    deadline = time.monotonic() + timeout_s
    while True:
        found = topic_partitions(settings, topics, timeout_s)
        counts = {t: n for t, n in found.items() if n is not None}
        if len(counts) == len(topics) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    missing = sorted(set(topics) - set(counts))
    if missing:
        raise TopicLayoutError(f"topics missing: {', '.join(missing)}")
    if len(set(counts.values())) != 1:
        listed = ", ".join(f"{t}={n}" for t, n in sorted(counts.items()))
        raise TopicLayoutError(f"topics must have the same number of partitions: {listed}")
    return next(iter(counts.values()))


def topic_partitions(
    settings: Settings, topics: Iterable[str], wait_s: float = 60.0
) -> dict[str, int | None]:
    """Each topic's partition count as the cluster has it (None: the topic does not exist)."""
    admin = admin_client(settings.kafka_bootstrap_servers)
    found = retried(functools.partial(admin.list_topics, timeout=30), "listing topics", wait_s)
    return {
        t: len(found.topics[t].partitions)
        if t in found.topics and not found.topics[t].error
        else None
        for t in topics
    }


def instance_id(settings: Settings) -> str:
    """This worker instance's stable id: REWARDS_WORKER_ID, else from host and state directory
    (stable across restarts, so a restarted worker takes over its transactions at once)."""
    if settings.worker_id:
        return settings.worker_id
    seed = f"{socket.gethostname()}:{settings.data_dir.resolve()}"
    return hashlib.sha256(seed.encode()).hexdigest()[:12]


def consumer_config(settings: Settings, group_id: str, client_id: str) -> dict[str, Any]:
    """The hot path's consumer: manual positions, read_committed, range assignment; a static
    member of its group (`group.instance.id`) when REWARDS_WORKER_ID names the worker."""
    static = {"group.instance.id": settings.worker_id} if settings.worker_id else {}
    return {
        **static,
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": group_id,
        "client.id": client_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "partition.assignment.strategy": "range",
        "session.timeout.ms": int(settings.session_timeout_s * 1000),
        "heartbeat.interval.ms": max(1000, int(settings.session_timeout_s * 1000) // 4),
        "max.poll.interval.ms": 300_000,
        "fetch.wait.max.ms": settings.fetch_max_wait_ms,
        "fetch.min.bytes": 1,
        "max.partition.fetch.bytes": settings.fetch_max_partition_bytes,
        "fetch.max.bytes": max(16 << 20, settings.fetch_max_partition_bytes),
        # librdkafka asks for fetch.max.bytes + 512; a response for two dozen partitions carries
        # more framing than that, is refused, and the consumer stalls without an error (measured)
        "receive.message.max.bytes": max(16 << 20, settings.fetch_max_partition_bytes) + (1 << 20),
        "queued.max.messages.kbytes": 4096,
        "queued.min.messages": 20_000,
    }


def producer_config(settings: Settings, transactional_id: str) -> dict[str, Any]:
    """The hot path's transactional producer."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "transactional.id": transactional_id,
        "transaction.timeout.ms": int(settings.transaction_timeout_s * 1000),
        "enable.idempotence": True,
        "linger.ms": 5,
        "batch.size": 1 << 20,
        "compression.type": "lz4",
        "partitioner": "murmur2_random",
        "message.max.bytes": DEAD_LETTER_MAX_BYTES + 65_536,
        "queue.buffering.max.messages": 1_000_000,
        "retry.backoff.ms": 10,
        "retry.backoff.max.ms": 200,
    }


def recovery_config(settings: Settings) -> dict[str, Any]:
    """The consumer that reads a changelog back (no group: positions are the store's)."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": f"{settings.app_id}-recovery",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "fetch.max.bytes": 32 << 20,
        "max.partition.fetch.bytes": 16 << 20,
        "receive.message.max.bytes": (32 << 20) + (1 << 20),
    }


def delete_topics(settings: Settings, names: Iterable[str] = WORKER_TOPICS) -> None:
    """Delete the product's topics under this settings' prefix, and the app's own ones."""
    admin = admin_client(settings.kafka_bootstrap_servers)
    existing = admin.list_topics(timeout=30).topics
    # A name listed twice makes the broker reject the request (INVALID_REQUEST), and converting
    # that answer crashed confluent-kafka 2.16.1 (SIGSEGV): hence the set.
    wanted = {settings.topic(n) for n in names}
    wanted |= {t for t in existing if t.startswith(f"{settings.app_id}-")}  # the changelog
    doomed = sorted(t for t in wanted if t in existing)
    if doomed:
        for future in admin.delete_topics(doomed, operation_timeout=30).values():
            future.result()


def fast_producer(settings: Settings, **overrides: Any) -> Producer:
    """A batching, idempotent producer (acks=all) with the client's default partitioner settings."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "enable.idempotence": True,
        "linger.ms": 10,
        "batch.size": 1 << 20,
        "compression.type": "lz4",
        "partitioner": "murmur2_random",
        "message.max.bytes": 4 * 1024 * 1024,
    }
    config.update(overrides)
    return Producer(config)


def produce(producer: Producer, topic: str, value: bytes, key: bytes | None) -> None:
    """Queue one record, waiting for room when the local queue is full."""
    while True:
        try:
            producer.produce(topic, value=value, key=key)
            return
        except BufferError:
            producer.poll(0.05)
