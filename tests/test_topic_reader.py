"""The tools' one topic reader on a real broker: committed records only, to the end at the start."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer

from streams.adapters.topic_reader import (
    IncompleteRead,
    Span,
    end_offsets,
    read_spans,
    read_to_end,
    read_topic,
)
from streams.settings import Settings

pytestmark = pytest.mark.integration


def transactional(settings: Settings) -> Producer:
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "transactional.id": f"reader-test-{uuid.uuid4().hex}",
        }
    )
    producer.init_transactions(30)
    return producer


def in_transaction(producer: Producer, topic: str, values: list[bytes], commit: bool) -> None:
    producer.begin_transaction()
    for value in values:
        producer.produce(topic, value=value, key=b"k", partition=0)
    producer.flush(30)
    if commit:
        producer.commit_transaction(30)
    else:
        producer.abort_transaction(30)


def values(messages) -> list[bytes]:
    return [m.value() for m in messages]


def test_committed_records_only_up_to_an_end_that_is_a_commit_marker(settings):
    topic = settings.topic("points-ledger")
    producer = transactional(settings)
    in_transaction(producer, topic, [b"a", b"b"], commit=True)
    in_transaction(producer, topic, [b"aborted"], commit=False)
    in_transaction(producer, topic, [b"c"], commit=True)
    offsets: list[int] = []
    bootstrap = settings.kafka_bootstrap_servers

    found = list(read_to_end(bootstrap, topic, timeout_s=30, on_start=offsets.append))

    assert values(found) == [b"a", b"b", b"c"]
    assert offsets == [7]  # records and markers
    assert end_offsets(bootstrap, topic) == {0: 7, 1: 0}
    assert values(read_topic(settings, topic)) == [b"a", b"b", b"c"]


def test_an_open_transaction_is_not_waited_for(settings):
    topic = settings.topic("points-ledger")
    producer = transactional(settings)
    in_transaction(producer, topic, [b"a"], commit=True)
    producer.begin_transaction()
    producer.produce(topic, value=b"open", key=b"k", partition=0)
    producer.flush(30)
    bootstrap = settings.kafka_bootstrap_servers
    try:
        assert end_offsets(bootstrap, topic)[0] == 2  # the last stable offset: 'open' is beyond
        assert values(read_to_end(bootstrap, topic, timeout_s=10)) == [b"a"]
        assert values(read_topic(settings, topic)) == [b"a"]
        caught_up = [Span(topic, p, 0, None) for p in end_offsets(bootstrap, topic)]
        assert values(read_spans(bootstrap, caught_up, timeout_s=10)) == [b"a"]
    finally:
        producer.abort_transaction(30)
    assert values(read_to_end(bootstrap, topic, timeout_s=30)) == [b"a"]


def test_an_end_not_reached_in_time_raises(settings):
    topic = settings.topic("points-ledger")
    producer = transactional(settings)
    in_transaction(producer, topic, [b"a"], commit=True)
    unreachable = [Span(topic, 0, 0, 1_000)]  # an end no record will ever reach
    bootstrap = settings.kafka_bootstrap_servers

    with pytest.raises(IncompleteRead, match="not read to their end"):
        list(read_spans(bootstrap, unreachable, timeout_s=2))


def test_a_missing_topic_has_no_records(settings):
    missing = settings.topic(f"missing-{uuid.uuid4().hex[:6]}")
    assert list(read_to_end(settings.kafka_bootstrap_servers, missing, timeout_s=10)) == []
    assert read_topic(settings, missing, timeout_s=3) == []
    assert end_offsets(settings.kafka_bootstrap_servers, missing) == {}
