"""`rewards bench --workload complaints`: complaints to gift cards through the provider sandbox.

Throughput is complaints per second through the whole path (decode, decide, reserve the budget,
order from the sandbox over HTTP, announce on rewards-issued), measured on a worker catching up;
latency is the time from a complaint's Kafka timestamp to its reward's on `rewards-issued`, at a
fixed rate on a fresh worker. Every complaint is by a new customer and compensated (no budget cap).
"""

from __future__ import annotations

import time
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path

import orjson
from pydantic import SecretStr

from streams.adapters.topic_reader import read_topic
from streams.bench.harness import SETTLE_S, publish_all, scrape_cost
from streams.bench.sandbox_process import SandboxProcess
from streams.bench.worker_process import WorkerProcess, free_port
from streams.cli.simulator import SimEvent
from streams.settings import Settings
from streams.settings_env import settings_env
from streams.settings_models import BudgetCaps

SEVERITIES = ("medium", "high", "critical")


def complaint_stream(n: int, seed: int) -> list[SimEvent]:
    """`n` complaints, each by a customer of its own, medium, high and critical in turn."""
    now = datetime.now(UTC).isoformat()
    out = []
    for i in range(n):
        customer = f"cust-{seed}-{i:07d}"
        body = {"event_id": f"bench-c-{seed}-{i}", "occurred_at": now, "customer_id": customer,
                "complaint_id": f"cmp-{seed}-{i}", "severity": SEVERITIES[i % 3],
                "category": "late_delivery"}  # fmt: skip
        out.append(SimEvent("complaints", customer.encode(), orjson.dumps(body), "complaint"))
    return out


def with_provider(settings: Settings, sandbox: SandboxProcess) -> Settings:
    """Settings that order from the sandbox with no budget cap."""
    return settings.model_copy(
        update={
            "gift_card_provider_url": sandbox.url,
            "gift_card_api_key": SecretStr(sandbox.api_key),
            "compensation_budgets": {"EUR": BudgetCaps(day=None, month=None)},
        }
    )


def wait_issued(worker: WorkerProcess, target: int, timeout_s: float = 600) -> float:
    """Seconds from the first complaint consumed until `target` gift cards were issued."""
    first: float | None = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if first is None and worker.total("rewards_events_consumed_total", topic="complaints"):
            first = time.perf_counter()
        if worker.total("rewards_gift_cards_issued_total") >= target:
            return time.perf_counter() - (first or time.perf_counter())
        time.sleep(1.0)  # each scrape costs the worker CPU
    raise TimeoutError(f"fewer than {target} gift cards issued in {timeout_s}s")


def reward_latencies_ms(settings: Settings, skip: Collection[str] = ()) -> list[float]:
    """Per complaint (but those in `skip`): its reward's Kafka timestamp minus its own, in ms."""
    complained = {
        cid: m.timestamp()[1]
        for m in read_topic(settings, settings.topic("complaints"), timeout_s=30)
        if (cid := orjson.loads(m.value() or b"{}")["complaint_id"]) not in skip
    }
    out = []
    for m in read_topic(settings, settings.topic("rewards-issued"), timeout_s=30):
        reward = orjson.loads(m.value() or b"{}")
        if reward.get("complaint_id") in complained:
            out.append(float(m.timestamp()[1] - complained[reward["complaint_id"]]))
    return sorted(out)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile of sorted `values` (nearest rank)."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))]


def catch_up(settings: Settings, count: int, log: Path) -> tuple[float, float, tuple[int, float]]:
    """A worker catching up on `count` published complaints: complaints/s, peak RSS in MiB and
    the /metrics scrape (bytes, ms)."""
    worker = WorkerProcess(settings_env(settings), free_port(), log).start()
    try:
        seconds = wait_issued(worker, count)
        rate = count / max(seconds, 1e-9)
        return rate, worker.peak_rss_bytes() / 2**20, scrape_cost(worker)
    finally:
        worker.stop()


def paced_latency(
    settings: Settings, events: list[SimEvent], rate: float, log: Path
) -> tuple[float, float]:
    """A fresh worker fed at `rate`: p50 and p99 complaint -> rewards-issued latency in ms; the
    first tenth of the events warms the worker up and is not counted."""
    worker = WorkerProcess(settings_env(settings), free_port(), log).start()
    try:
        time.sleep(SETTLE_S)
        publish_all(settings, events, rate)
        wait_issued(worker, len(events))
    finally:
        worker.stop()
    warm_up = {orjson.loads(e.value)["complaint_id"] for e in events[: len(events) // 10]}
    latencies = reward_latencies_ms(settings, skip=warm_up)
    return percentile(latencies, 0.50), percentile(latencies, 0.99)
