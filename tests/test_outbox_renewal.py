"""A producer that fails fatally is replaced in-process, the batch processed again (or raised)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.adapters.outbox import RENEWALS, Outbox, TransactionAborted

FATAL = KafkaError(KafkaError.INVALID_TXN_STATE, "invalid state", fatal=True)


class Client:
    """The transactional calls of a librdkafka producer, failing fatally where told."""

    def __init__(self, fail: set[str]) -> None:
        self.fail = fail
        self.calls: list[str] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail:
            raise KafkaException(FATAL)

    def init_transactions(self, timeout: float) -> None:
        self._call("init")

    def begin_transaction(self) -> None:
        self._call("begin")

    def produce(self, topic: str, **_: Any) -> None:
        self._call("produce")

    def send_offsets_to_transaction(self, *_: Any) -> None:
        self._call("offsets")

    def commit_transaction(self, timeout: float) -> None:
        self._call("commit")

    def abort_transaction(self, timeout: float) -> None:
        self._call("abort")

    def poll(self, timeout: float) -> int:
        return 0


def outbox(*failing: set[str]) -> tuple[Outbox, list[Client]]:
    """An outbox whose n-th producer fails on `failing[n]` (later ones never)."""
    made: list[Client] = []

    def new(config: dict[str, Any]) -> Client:
        made.append(Client(failing[len(made)] if len(made) < len(failing) else set()))
        return made[-1]

    box = Outbox({}, "t-", producer=new)
    box.start(5.0)
    return box, made


def test_a_fatal_produce_renews_the_producer_and_asks_for_an_abort() -> None:
    box, made = outbox({"produce"})
    with pytest.raises(KafkaException) as raised:
        box.emit_raw("t-out", b"k", b"v")
    assert raised.value.args[0].code() == KafkaError._STATE  # the pipeline aborts and replays
    assert len(made) == 2 and made[1].calls == ["init"] and not box.open
    asyncio.run(box.abort())  # nothing open on the new producer: nothing to abort
    box.emit_raw("t-out", b"k", b"v")
    asyncio.run(box.commit([], None))
    assert made[1].calls == ["init", "begin", "produce", "commit"]


def test_a_fatal_commit_renews_and_the_batch_is_processed_again() -> None:
    box, made = outbox({"commit"})
    box.emit_raw("t-out", b"k", b"v")
    with pytest.raises(TransactionAborted):
        asyncio.run(box.commit([], None))
    assert len(made) == 2 and not box.open


def test_a_fatal_abort_in_a_revocation_renews() -> None:
    box, made = outbox({"abort"})
    box.emit_raw("t-out", b"k", b"v")
    box.abort_now()
    assert len(made) == 2 and made[1].calls == ["init"]


def test_a_producer_that_fails_again_and_again_is_raised() -> None:
    box, made = outbox(*[{"produce"}] * (RENEWALS + 1))
    for _ in range(RENEWALS):
        with pytest.raises(KafkaException):
            box.emit_raw("t-out", b"k", b"v")
    with pytest.raises(KafkaException) as raised:
        box.emit_raw("t-out", b"k", b"v")
    assert raised.value.args[0].fatal()  # the fatal error itself: the worker exits
    assert len(made) == RENEWALS + 1
