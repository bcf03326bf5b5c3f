"""A worker started while a broker of three is down waits for the cluster instead of exiting."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable

import pytest
from pydantic import SecretStr

from streams.adapters.kafka_io import WORKER_TOPICS, ensure_topics
from streams.bench.housekeeping import purge
from streams.bench.worker_process import free_port
from streams.settings import Settings
from tests.events import new_id
from tests.support import REPO, eventually, settled
from tests.test_points_pipeline import buy, http_balance, send

pytestmark = pytest.mark.integration
STARTUP_S = 180.0
"""The workers' start-up bound: a KRaft quorum that lost a voter can take a minute or more to
answer CreateTopics again on a loaded 2-core machine (seen once in a full run)."""


def cluster_settings(bootstrap: str, tmp_path, redis_url: str, sandbox) -> Settings:
    run = uuid.uuid4().hex[:8]
    return Settings(
        kafka_bootstrap_servers=bootstrap, redis_url=redis_url, topic_prefix=f"c-{run}-",
        app_id=f"cluster-{run}", data_dir=tmp_path / "data", web_port=free_port(),
        partitions=2, replication_factor=3, session_timeout_s=8.0, startup_timeout_s=STARTUP_S,
        pii_hash_key=SecretStr(f"cluster-pii-key-{run}"), gift_card_provider_url=sandbox.url,
        gift_card_api_key=SecretStr(sandbox.api_key),
    )  # fmt: skip


def kill_broker(state, node: int) -> None:
    os.kill(int((state / f"kafka-{node}" / "pid").read_text()), signal.SIGKILL)


def restart_brokers(bootstrap: str, state) -> None:
    """Start the stopped brokers of the fixture's cluster again (`deploy/stack.sh up` is
    idempotent: the running ones are left alone)."""
    env = {**os.environ, "REWARDS_STACK_DIR": str(state),
           "REWARDS_KAFKA_PORT": bootstrap.split(",", maxsplit=1)[0].rsplit(":", 1)[1]}  # fmt: skip
    script = str(REPO / "deploy" / "stack.sh")
    subprocess.run(
        ["bash", script, "up", "--brokers", "3"], env=env, check=True, capture_output=True
    )


def created(settings: Settings, names: Iterable[str] = WORKER_TOPICS) -> bool:
    """The topics exist (created if missing); TimeoutError, an OSError, while a broker is down."""
    ensure_topics(settings, names, timeout_s=60)
    return True


@pytest.fixture
def on_cluster(cluster, tmp_path, services, sandbox_service):
    """(bootstrap, stack dir, settings of a fresh app on the module's 3-broker cluster)."""
    bootstrap, state = cluster
    settings = cluster_settings(bootstrap, tmp_path, services.redis_url, sandbox_service)
    yield bootstrap, state, settings
    purge(settings)


def test_a_worker_started_with_a_broker_down_waits_and_then_works(on_cluster, start_worker):
    bootstrap, state, settings = on_cluster
    eventually(lambda: created(settings), 120, 1.0)
    try:
        kill_broker(state, 2)
        time.sleep(1.0)
        started = time.monotonic()
        worker = start_worker(settings, ready_timeout_s=STARTUP_S)  # it did not exit meanwhile
        assert time.monotonic() - started < STARTUP_S
        customers = [new_id("c") for _ in range(6)]
        send(settings, *(buy(c, 1000) for c in customers))
        settled(worker, 6, topics=["purchases"], topic="purchases")
        eventually(lambda: all(http_balance(worker, c)[1].get("pending") == 10 for c in customers))
    finally:
        restart_brokers(bootstrap, state)


def test_a_worker_creating_its_topics_while_a_broker_is_down_starts(on_cluster, start_worker):
    bootstrap, state, settings = on_cluster
    eventually(lambda: created(settings, ["fraud-alerts"]), 120, 1.0)  # up
    kill_broker(state, 3)
    time.sleep(1.0)
    timer = threading.Timer(12.0, restart_brokers, args=(bootstrap, state))
    timer.start()  # the broker returns while the worker creates its topics and starts
    try:
        worker = start_worker(settings, ready_timeout_s=STARTUP_S)
        send(settings, buy(customer := new_id("c"), 1000))
        eventually(lambda: http_balance(worker, customer)[1].get("pending") == 10)
    finally:
        timer.join()
