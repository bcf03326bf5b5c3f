"""Remove what a run left behind: its topics and its Redis keys (tests and benchmarks)."""

from __future__ import annotations

import redis

from streams.dedupe import seen_namespace
from streams.kafka_io import delete_topics
from streams.points_mirror import mirror_namespace
from streams.settings import Settings


def purge(settings: Settings) -> None:
    """Delete the topics under `settings.topic_prefix`, the app's first-seen marks and mirror."""
    delete_topics(settings)
    client = redis.Redis.from_url(settings.redis_url)
    for namespace in (seen_namespace(settings.app_id), mirror_namespace(settings.app_id)):
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{namespace}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
