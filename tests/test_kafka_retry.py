"""Kafka calls on a settling cluster are retried; a changelog not yet known is waited for."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from streams.adapters.account_store import AccountStore
from streams.adapters.kafka_io import admin_client, recovery_config
from streams.adapters.kafka_retry import retried, settling


def failing(*codes: int):
    """A call that fails with each of `codes` in turn, then answers "ok"."""
    left = list(codes)

    def call() -> str:
        if left:
            raise KafkaException(KafkaError(left.pop(0)))
        return "ok"

    return call


def test_settling_errors_are_retried_until_the_call_answers():
    call = failing(KafkaError._UNKNOWN_PARTITION, KafkaError._TRANSPORT, KafkaError._TIMED_OUT)
    assert retried(call, "test", wait_s=10) == "ok"


def test_a_definitive_error_is_raised_at_once():
    started = time.monotonic()
    with pytest.raises(KafkaException) as raised:
        retried(failing(KafkaError.TOPIC_AUTHORIZATION_FAILED), "test", wait_s=10)
    assert raised.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert time.monotonic() - started < 1


def test_a_settling_error_is_raised_once_the_wait_is_over():
    with pytest.raises(KafkaException):
        retried(failing(*[KafkaError._TRANSPORT] * 100), "test", wait_s=0.5)


def test_what_settles_and_what_does_not():
    assert settling(KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)))
    assert settling(KafkaException(KafkaError(KafkaError.LEADER_NOT_AVAILABLE)))
    assert not settling(KafkaException(KafkaError(KafkaError.INVALID_CONFIG)))
    assert not settling(KafkaException("not a KafkaError"))


@pytest.mark.integration
def test_recovery_waits_for_a_changelog_not_yet_known(settings, tmp_path):
    """A worker that starts while its changelog is being created (or not yet known to the
    broker it asks) waits for it instead of failing its recovery and exiting."""
    changelog = f"{settings.app_id}-late-changelog"  # removed with the app's topics
    store = AccountStore(
        directory=tmp_path / "accounts", changelog_topic=changelog,
        recovery_config=recovery_config(settings), cache_size=100, wait_s=60,
    )  # fmt: skip

    def create_later() -> None:
        time.sleep(2.0)
        admin = admin_client(settings.kafka_bootstrap_servers)
        admin.create_topics([NewTopic(changelog, num_partitions=2, replication_factor=1)])[
            changelog
        ].result()

    creator = threading.Thread(target=create_later)
    creator.start()
    started = time.monotonic()
    try:
        assert asyncio.run(store.recover([0, 1])) == 0  # an empty changelog: nothing to apply
    finally:
        creator.join()
        store.close([0, 1])
    assert time.monotonic() - started >= 2.0  # it did wait for the topic
    assert store.owned() == frozenset()
