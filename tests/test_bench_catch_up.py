"""`rewards bench`'s catch-up phase against the real stack: records, seconds and CPU measured."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.adapters.kafka_io import ensure_topics
from streams.bench.harness import publish_all
from streams.bench.run import catch_up_events, purchase_stream
from streams.settings import Settings

EVENTS = 100_000
"""Enough for several seconds of catch-up: the count starts at the worker's first commit."""


@pytest.mark.integration
def test_a_catch_up_counts_its_records_time_and_worker_cpu(
    settings: Settings, tmp_path: Path
) -> None:
    ensure_topics(settings)
    publish_all(settings, purchase_stream(EVENTS, customers=10_000, seed=3))

    busy, rss_mib, (scrape_bytes, _) = catch_up_events(settings, EVENTS, tmp_path / "w.log")

    assert 0 < busy.records < EVENTS  # counted from the first commit on
    assert busy.seconds > 0 and busy.cpu_s > 0
    assert busy.cpu_s < busy.seconds * 4  # the worker's own CPU, not the machine's
    assert rss_mib > 50 and scrape_bytes > 1_000
