"""The chaos soak, short (4,000 events, its own 3-broker cluster): every verdict figure asserted."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from streams.bench.worker_process import free_port
from streams.chaos.faults import FaultPlan
from streams.chaos.report import Verdict, render
from streams.chaos.soak import ChaosOptions, run_chaos
from streams.chaos.stack import Stack, free_port_range
from streams.chaos.verdict import Check
from streams.settings import Settings
from tests.support import unavailable

pytestmark = pytest.mark.integration

SHORT = ChaosOptions(
    events=4_000,
    rate=200.0,
    plan=FaultPlan(
        kill_every=(7.0, 8.0),
        broker_outage=(15.0, 15.0),
        broker_kills=1,
        redis_outage=(3.0, 3.0),
        first_outage_share=0.1,
        gap_s=2.0,
    ),
    seed=7,
    lag_timeout_s=100.0,
    http_budget_s=30.0,
)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """Three brokers and Redis on free ports, in this test's directory."""
    for tool in ("java", "mvn", "redis-server"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is needed for the 3-broker stack")
    made = Stack(tmp_path / "stack", free_port_range(6), free_port())
    made.up()
    yield made
    made.run("down", "--purge")


@pytest.fixture
def verdict(stack: Stack, tmp_path: Path) -> Verdict:
    """One short soak, judged (the table is printed for the log)."""
    base = Settings(kafka_bootstrap_servers=stack.bootstrap, redis_url=stack.redis_url)
    found = run_chaos(base, stack, replace(SHORT, work_dir=tmp_path / "run"))
    print(render(found))
    return found


def explain(check: Check) -> str:
    return f"{check.name}: expected {check.expected}, observed {check.observed}; " + "; ".join(
        check.evidence
    )


@pytest.mark.timeout(360)
def test_short_chaos_soak_passes(verdict: Verdict) -> None:
    figures = verdict.figures
    checks = {check.name: check for check in verdict.checks}
    # The faults happened, so a PASS means something.
    assert figures["published"] == 4_000 and figures["publish_failures"] == 0, figures
    assert figures["worker_kills"] >= 2, figures
    assert figures["worker_restarts"] >= 2, figures
    assert figures["broker_outages"] == 1 and figures["broker_restarts"] == 1, figures
    assert figures["redis_outages"] == 1 and figures["redis_restarts"] == 1, figures
    assert figures["gift_cards_expected"] > 50 and figures["customers"] > 500, figures
    # The PASS verdict's figures, one by one.
    for name in (
        "input events unprocessed",
        "balances off (HTTP, Redis, ledger, oracle)",
        "reward_ids with two contents",
        "gift cards ordered at the provider",
        "gift cards doubled (by complaint)",
        "committed lag 0 after the last fault/event",
    ):
        assert checks[name].gating and checks[name].ok, explain(checks[name])
    assert verdict.passed
    # The figures reported beside the verdict: the worker should not fail these either.
    for name in (
        "rewards announced (missing, unexpected)",
        "ledger entries (missing, unexpected, repeated)",
        "complaints decided as expected",
        "gift cards announced with the provider's order",
        "budget reserved (cents)",
        "fraud alerts (honest referrals)",
        "worker crashes (exits nobody caused)",
    ):
        assert checks[name].ok, explain(checks[name]) + " (reported beside the verdict)"
