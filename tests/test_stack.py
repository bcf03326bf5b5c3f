"""deploy/stack.sh: a 3-broker KRaft cluster on one machine that survives losing a broker."""

from __future__ import annotations

import os

import pytest
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # admin does not re-export NewTopic
    AdminClient,
    ClusterMetadata,
    NewTopic,
)

from tests.support import eventually

pytestmark = pytest.mark.integration


def create_replicated(admin: AdminClient) -> bool:
    """Create the RF-3 topic; False (retry) while fewer than three brokers are unfenced."""
    try:
        admin.create_topics([NewTopic("replicated", 3, 3)])["replicated"].result(30)
    except KafkaException as exc:
        if exc.args[0].name() == "TOPIC_ALREADY_EXISTS":
            return True
        raise AssertionError(str(exc)) from exc
    return True


def test_three_broker_cluster_replicates_and_survives_a_broker_loss(cluster):
    bootstrap, state = cluster
    assert len(bootstrap.split(",")) == 3
    admin = AdminClient({"bootstrap.servers": bootstrap})
    # A just-started broker can be registered yet fenced for a moment: RF 3 waits for all three.
    eventually(lambda: create_replicated(admin), timeout_s=90, every_s=1.0)

    def replicated() -> ClusterMetadata:
        metadata = admin.list_topics(timeout=20)
        assert "replicated" in metadata.topics, sorted(metadata.topics)
        return metadata

    metadata = eventually(replicated)
    assert sorted(metadata.brokers) == [1, 2, 3]
    for partition in metadata.topics["replicated"].partitions.values():
        assert sorted(partition.replicas) == [1, 2, 3]

    pid = int((state / "kafka-2" / "pid").read_text())
    os.kill(pid, 9)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 60000}
    )
    failures: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(err)

    for i in range(30):
        producer.produce("replicated", value=b"x", key=str(i).encode(), on_delivery=delivered)
    assert producer.flush(90) == 0
    assert failures == [], "min.insync.replicas=2 must still accept writes with one broker down"
