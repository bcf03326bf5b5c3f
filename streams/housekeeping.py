"""Remove what a run left behind: its topics and its Redis marks (tests and benchmarks)."""

from __future__ import annotations

import redis

from streams.dedupe import seen_namespace
from streams.kafka_io import delete_topics
from streams.settings import Settings


def purge(settings: Settings) -> None:
    """Delete the topics under `settings.topic_prefix` and the app's first-seen marks in Redis."""
    delete_topics(settings)
    client = redis.Redis.from_url(settings.redis_url)
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{seen_namespace(settings.app_id)}:*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)
