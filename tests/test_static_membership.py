"""Static membership (REWARDS_WORKER_ID), with real workers and a real broker: a restart within
the session timeout moves no partition, and two live workers with one id do not both go on."""

from __future__ import annotations

import time
from typing import Any

import pytest

from streams.bench.worker_process import free_port
from tests.support import eventually, http_get

pytestmark = pytest.mark.integration


def ready(worker: Any) -> frozenset[int]:
    """The partitions the worker has recovered and is processing."""
    status, body = http_get(worker, "/ready")
    return frozenset(body.get("partitions", ())) if status == 200 else frozenset()


def split(first: Any, second: Any, partitions: int) -> frozenset[int]:
    """The first worker's partitions, once the two share all of them."""
    mine, theirs = ready(first), ready(second)
    if mine and theirs and mine | theirs == frozenset(range(partitions)) and not mine & theirs:
        return mine
    return frozenset()


def test_a_restart_within_the_session_timeout_moves_no_partition(settings, start_worker):
    base = settings.model_copy(update={"session_timeout_s": 40.0})
    one = base.model_copy(update={"worker_id": "w-one"})
    two = base.model_copy(update={"worker_id": "w-two", "web_port": free_port(),
                                  "data_dir": base.data_dir.parent / "data-two"})  # fmt: skip
    first, second = start_worker(one), start_worker(two)
    mine = eventually(lambda: split(first, second, base.partitions))
    moves = second.total("rewards_rebalances_total")

    first.stop()
    restarted = start_worker(one)  # the same id and state directory, well within 40 s
    assert eventually(lambda: ready(restarted) == mine, timeout_s=30)
    time.sleep(2)  # a rebalance would have reached the other worker by now
    assert second.total("rewards_rebalances_total") == moves  # it gave up and got back nothing
    assert ready(second) == frozenset(range(base.partitions)) - mine


def test_two_live_workers_with_one_id_do_not_both_go_on(settings, start_worker):
    one = settings.model_copy(update={"worker_id": "w-same", "session_timeout_s": 10.0})
    first = start_worker(one)
    twin = one.model_copy(update={"web_port": free_port(),
                                  "data_dir": one.data_dir.parent / "data-twin"})  # fmt: skip
    start_worker(twin)
    exited = eventually(lambda: first.proc is not None and first.proc.poll() is not None,
                        timeout_s=90)  # fmt: skip
    assert exited and first.proc is not None and first.proc.returncode != 0
    assert "REWARDS_WORKER_ID" in first.log_path.read_text()
