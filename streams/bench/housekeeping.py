"""Remove what a run left behind: its topics and its Redis keys (tests and benchmarks)."""

from __future__ import annotations

from streams.adapters.kafka_io import delete_topics
from streams.adapters.redis_client import connect_sync
from streams.settings import Settings


def purge(settings: Settings) -> None:
    """Delete the topics under `settings.topic_prefix` and every Redis key of the app (first-seen
    marks, balance mirror, identity index, compensation budget and gift-card records)."""
    delete_topics(settings)
    client = connect_sync(settings.redis_url, cluster=settings.redis_cluster_mode)
    try:
        for match in (f"{settings.app_id}:*", f"{{{settings.app_id}:*"):  # hash-tagged keys too
            batch: list[bytes] = []
            for key in client.scan_iter(match=match, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    client.unlink(*batch)
                    batch.clear()
            if batch:
                client.unlink(*batch)
    finally:
        client.close()
