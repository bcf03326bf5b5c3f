"""`GET /points/<id>` while the partition's owner does not answer: the Redis mirror's balance,
marked stale with its age (two real workers, a real broker and Redis; one worker frozen)."""

from __future__ import annotations

import os
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from itertools import islice
from typing import Any

import orjson
import pytest

from streams.adapters.points_mirror import mirror_namespace
from streams.adapters.redis_client import connect_sync
from streams.bench.worker_process import free_port
from streams.web import partition_of
from tests.events import new_id, purchase, record
from tests.support import eventually, http_get, publish

pytestmark = [pytest.mark.integration, pytest.mark.redis]


def get(worker: Any, customer: str) -> tuple[int, dict[str, Any], str | None]:
    """Status, body and Retry-After of a balance request, waiting out the forward's timeout."""
    url = f"http://127.0.0.1:{worker.web_port}/points/{customer}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, orjson.loads(response.read()), None
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read()), err.headers.get("Retry-After")


def mirrored(settings: Any, customer: str) -> bool:
    client = connect_sync(settings.redis_url)
    try:
        return bool(client.hgetall(f"{mirror_namespace(settings.app_id)}:{customer}"))
    finally:
        client.close()


def test_a_frozen_owners_balances_come_from_the_mirror_marked_stale(settings, start_worker):
    slow = settings.model_copy(update={"session_timeout_s": 45.0})  # the group keeps the owner
    first = start_worker(slow)
    second = start_worker(slow.model_copy(update={
        "web_port": free_port(), "data_dir": slow.data_dir.parent / "data-2"}))  # fmt: skip
    owned = eventually(lambda: _split(first, second, slow.partitions))
    theirs = list(islice(ids_in(owned, slow.partitions), 3))
    publish(slow, "purchases", [record("purchases", purchase(customer_id=c, amount_cents=1_000))
                                for c in theirs])  # fmt: skip
    eventually(lambda: all(mirrored(slow, c) for c in theirs))
    fresh = get(second, theirs[0])
    assert fresh[0] == 200 and "stale" not in fresh[1]  # routed to the owner while it answers

    os.kill(first.proc.pid, signal.SIGSTOP)
    try:
        status, body, _ = get(second, theirs[0])
        unknown = next(ids_in(owned, slow.partitions))
        missing = get(second, unknown)
    finally:
        os.kill(first.proc.pid, signal.SIGCONT)

    assert status == 200 and body["stale"] is True
    assert (body["customer_id"], body["pending"], body["available"]) == (theirs[0], 10, 0)
    assert body["sequence"] == fresh[1]["sequence"] and 0 <= body["age_s"] < 60
    assert missing[0] == 503 and missing[2] == "1"  # the mirror has none: retry later


def ids_in(partitions: frozenset[int], count: int) -> Iterator[str]:
    """Fresh customer ids whose partition (of `count`) is one of `partitions`."""
    while True:
        customer = new_id("c")
        if partition_of(customer, count) in partitions:
            yield customer


def _split(first: Any, second: Any, partitions: int) -> frozenset[int]:
    """The partitions the first worker owns, once both own some and all are ready."""
    mine = frozenset(http_get(first, "/ready")[1].get("partitions", ()))
    other = frozenset(http_get(second, "/ready")[1].get("partitions", ()))
    if mine and other and mine | other == frozenset(range(partitions)) and not mine & other:
        return mine
    return frozenset()
