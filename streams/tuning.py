"""Kafka client tuning that Faust does not expose as a setting."""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as driver

_ORIGINAL = driver.AIOKafkaConsumerThread._create_worker_consumer


def limit_fetch_wait(max_wait_ms: int) -> None:
    """Make Faust's aiokafka consumer long-poll at most `max_wait_ms`, not a fixed 1500 ms.

    aiokafka keeps one fetch in flight per broker and leaves out partitions that still hold buffered
    records. After a backlog, the in-flight fetch often covers only idle partitions (Faust's leader
    topic), so fresh records waited up to the full 1.5 s: measured p50 1.45 s at 5k events/s after a
    100k-record catch-up, 28-38 ms with 100 ms. aiokafka reads the value when the consumer starts.
    """

    def create(self: Any, transport: Any) -> Any:
        consumer = _ORIGINAL(self, transport)
        if not hasattr(consumer, "_fetch_max_wait_ms"):
            raise RuntimeError("aiokafka changed: AIOKafkaConsumer._fetch_max_wait_ms is gone")
        consumer._fetch_max_wait_ms = max_wait_ms
        return consumer

    driver.AIOKafkaConsumerThread._create_worker_consumer = create  # type: ignore[method-assign]
