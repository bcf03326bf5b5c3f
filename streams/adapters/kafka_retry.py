"""Kafka client calls retried while the cluster's answer is transient (a broker away, no leader)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT = frozenset(
    {
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
    }
)
"""Answers that a moment later differ: no leader yet (a new topic, a broker away), a timeout."""

_SETTLING = TRANSIENT | {
    KafkaError.UNKNOWN_TOPIC_OR_PART,  # a topic just created, not yet known to every broker
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._UNKNOWN_TOPIC,
}
"""What a topic the worker itself just created, on a cluster that is losing or regaining a
broker, may answer for a while before it answers for good."""


def settling(exc: KafkaException) -> bool:
    """The error says "not yet", not "never"."""
    error = exc.args[0]
    return isinstance(error, KafkaError) and (error.code() in _SETTLING or error.retriable())


def retried(call: Callable[[], T], what: str, wait_s: float) -> T:
    """`call()`, tried again with backoff while it fails with a `settling` error, for up to
    `wait_s`; then (or on any other error) its error is raised."""
    deadline, attempt = time.monotonic() + wait_s, 0
    while True:
        try:
            return call()
        except KafkaException as exc:
            attempt += 1
            if not settling(exc) or time.monotonic() > deadline:
                raise
            delay = min(5.0, 0.1 * 2**attempt)
            log.warning("%s: %s (retry %d in %.1fs)", what, exc.args[0], attempt, delay)
            time.sleep(delay)


def in_callback(call: Callable[[], T], within_s: float) -> T:
    """A client call inside a rebalance callback, again while it fails, with backoff, for up to
    `within_s`: after a broker dies its partitions have no leader until the controller moves
    them (KRaft fences a broker after its session timeout, 9 s by default), and a restarted
    broker's metadata takes a moment to settle."""
    deadline = time.monotonic() + within_s
    attempt = 0
    while True:
        try:
            return call()
        except KafkaException as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("rebalance callback: %s; retrying", exc)
            time.sleep(min(2.0, 0.25 * 2**attempt))
            attempt += 1
