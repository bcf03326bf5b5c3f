"""The upgrade from first-seen marks in Redis, through a real broker and Redis: a partition an
earlier version read still honours its marks; a partition the group never read never asks."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, TopicPartition

from streams.adapters.dedupe import seen_namespace
from streams.adapters.redis_client import connect_sync
from streams.assembly import INGEST_TOPICS
from streams.settings import Settings
from tests.events import purchase, record
from tests.support import publish, settled

pytestmark = pytest.mark.integration  # single Redis only: no version before ran on a cluster


def leave_a_mark(settings: Settings, event_id: str) -> None:
    """The mark a version before this one set in Redis when it first saw `event_id`."""
    client = connect_sync(settings.redis_url)
    key = f"{seen_namespace(settings.app_id)}:{settings.topic('purchases')}:{event_id}"
    client.set(key, "0:999", ex=3600)
    client.close()


def commit_as_a_version_before(settings: Settings) -> None:
    """The consumer group's offsets, committed as a worker of the version before left them."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers,
                         "group.id": settings.app_id, "enable.auto.commit": False})  # fmt: skip
    offsets = [TopicPartition(settings.topic(t), p, 0)
               for t in INGEST_TOPICS for p in range(settings.partitions)]  # fmt: skip
    consumer.commit(offsets=offsets, asynchronous=False)
    consumer.close()


def test_an_upgraded_deployment_still_finds_the_marks_the_version_before_left(
    settings, start_worker
):
    if settings.redis_cluster_mode:
        pytest.skip("no version before this one ran on a Redis Cluster: there are no old marks")
    commit_as_a_version_before(settings)
    leave_a_mark(settings, "seen-before")
    publish(settings, "purchases", [record("purchases", purchase(event_id="seen-before")),
                                    record("purchases", purchase(event_id="new"))])  # fmt: skip
    counts = settled(start_worker(settings), 2, topic="purchases")
    assert (counts["events_processed"], counts["duplicate_events"]) == (1, 1)


def test_a_new_consumer_group_asks_redis_for_no_old_mark(settings, start_worker):
    leave_a_mark(settings, "seen-elsewhere")  # the group has committed nothing: never read
    publish(settings, "purchases", [record("purchases", purchase(event_id="seen-elsewhere"))])
    counts = settled(start_worker(settings), 1, topic="purchases")
    assert (counts["events_processed"], counts["duplicate_events"]) == (1, 0)
