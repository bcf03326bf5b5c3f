"""Publish JSON-lines files and simulated demo traffic to Kafka, with a progress bar."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import orjson
from tqdm import tqdm

from processors.routing import KEY_FIELDS
from streams.adapters.kafka_io import fast_producer, produce
from streams.cli.simulator import ShopSimulator
from streams.settings import Settings

T = TypeVar("T")


def jsonl_records(path: Path, base_topic: str) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) per non-empty line; the key is the topic's key field when the line has it."""
    key_field = KEY_FIELDS.get(base_topic)
    with path.open("rb") as lines:
        for line in lines:
            raw = line.strip()
            if not raw:
                continue
            key = None
            if key_field is not None:
                try:
                    value = orjson.loads(raw)
                    key = str(value[key_field]).encode() if isinstance(value, dict) else None
                except (orjson.JSONDecodeError, KeyError):
                    key = None  # published as is: the worker dead-letters what is invalid
            yield key, raw


def publish_file(settings: Settings, base_topic: str, path: Path) -> int:
    """Send every line of `path` to the topic; returns the number of records sent."""
    with path.open("rb") as lines:
        total = sum(1 for line in lines if line.strip())
    producer = fast_producer(settings)
    topic = settings.topic(base_topic)
    sent = 0
    with tqdm(total=total, unit="ev", desc=f"publish {topic}") as bar:
        for key, value in jsonl_records(path, base_topic):
            produce(producer, topic, value, key)
            sent += 1
            bar.update()
            if sent % 1000 == 0:
                producer.poll(0)
    producer.flush(30)
    return sent


def paced(items: Iterable[T], rate: float) -> Iterator[T]:
    """Yield items no faster than `rate` per second (0 = as fast as possible)."""
    start = time.monotonic()
    for n, item in enumerate(items):
        if rate > 0:
            ahead = n / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
        yield item


def publish_demo(settings: Settings, events: int, rate: float, seed: int) -> Counter[str]:
    """Publish `events` simulated shop events at `rate`/s; returns the count per kind."""
    producer = fast_producer(settings, **{"linger.ms": 5})
    kinds: Counter[str] = Counter()
    simulator = ShopSimulator(seed=seed)
    with tqdm(total=events, unit="ev", desc="demo events") as bar:
        for sim in paced(simulator.events(events), rate):
            produce(producer, settings.topic(sim.topic), sim.value, sim.key)
            kinds[sim.kind] += 1
            bar.update()
            producer.poll(0)
    producer.flush(30)
    return kinds
