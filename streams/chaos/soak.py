"""`rewards chaos`: two workers under kills and broker and Redis outages, judged by an oracle."""

from __future__ import annotations

import argparse
import faulthandler
import hashlib
import importlib.util
import json
import logging
import secrets
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from confluent_kafka import KafkaException
from pydantic import SecretStr

from schemas.codec import CONTROL_TOPICS, FULFILMENT_TOPICS, INPUT_TOPICS
from streams.adapters.kafka_io import ensure_topics
from streams.bench.checkout import NoCheckout, checkout
from streams.bench.sandbox_process import SandboxProcess
from streams.chaos.faults import FaultDriver, FaultPlan, Range
from streams.chaos.observe import observe
from streams.chaos.oracle import expect
from streams.chaos.publish import publish
from streams.chaos.read import LagProbe, read_topic
from streams.chaos.report import Verdict, delay_figures, judge, render
from streams.chaos.stack import Fleet, Stack
from streams.chaos.verdict import LAG_LIMIT_S, Lag
from streams.chaos.workload import Workload
from streams.settings import Settings
from streams.settings_models import BudgetCaps

log = logging.getLogger(__name__)
PUBLISHED = ("purchases", "referrals", "complaints")


@dataclass(frozen=True)
class ChaosOptions:
    """One soak's size, pace, faults and seed."""

    events: int = 60_000
    rate: float = 400.0
    plan: FaultPlan = field(default_factory=FaultPlan)
    seed: int = 1
    partitions: int = 4
    lag_timeout_s: float = 600.0
    http_budget_s: float = 180.0
    """How long the verdict asks the workers for balances (a stuck partition answers 503)."""
    work_dir: Path | None = None
    """Worker data and logs (default: a new temporary directory, kept for the evidence)."""


def soak_settings(base: Settings, stack: Stack, run: str, sandbox: SandboxProcess) -> Settings:
    """The workers' settings: this run's topics and Redis namespace, RF 3, commits every 0.1 s,
    a 10 s session timeout (a killed worker's partitions move on in seconds), the budget
    uncapped (every eligible complaint is one gift card) and the sandbox as the provider."""
    return base.model_copy(
        update={
            "kafka_bootstrap_servers": stack.bootstrap,
            "redis_url": stack.redis_url,
            "app_id": f"chaos-{run}",
            "topic_prefix": f"chaos-{run}-",
            "replication_factor": 3,
            "commit_interval_s": 0.1,
            "session_timeout_s": 10.0,
            "lag_interval_s": 1.0,
            "points_hold": timedelta(days=14),
            "pii_hash_key": SecretStr(f"chaos-pii-{secrets.token_hex(12)}"),
            "compensation_budgets": {"EUR": BudgetCaps(day=None, month=None)},
            "gift_card_provider_url": sandbox.url,
            "gift_card_api_key": SecretStr(sandbox.api_key),
            "log_level": "info",
        }
    )


def run_chaos(base: Settings, stack: Stack, options: ChaosOptions) -> Verdict:
    """The whole soak against a 3-broker stack that is up (and is left up).

    Two workers in one group and the gift-card provider sandbox; a plain producer publishes the
    seeded workload (`workload`) at a steady rate while `faults` SIGKILLs a random worker every
    few seconds (and restarts it), stops Redis for a while and SIGKILLs the broker that
    coordinates the hot path's group for a while (`deploy/stack.sh up` brings each back). After
    the last event it waits until both groups' committed lag is 0, reads the input topics back,
    lets the oracle (`oracle`: the published records and the pure rules only) say what must
    have happened, and compares every view of the outcome with it (`verdict`).
    """
    work_dir = options.work_dir or Path(tempfile.mkdtemp(prefix="rewards-chaos-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    print(f"[chaos] workers' data and logs in {work_dir}", flush=True)
    run, version = f"{options.seed}-{uuid.uuid4().hex[:6]}", code_version()
    with SandboxProcess(log_path=work_dir / "sandbox.log") as sandbox:
        settings = soak_settings(base, stack, run, sandbox)
        settings = settings.model_copy(update={"partitions": options.partitions})
        ensure_topics(settings, timeout_s=120)
        fleet = Fleet(settings, work_dir)
        try:
            fleet.start()
            verdict = _soak(settings, stack, fleet, sandbox, options)
        finally:
            fleet.stop()
    verdict.figures |= {
        "app_id": settings.app_id,
        "work_dir": str(work_dir),
        "code_version": version,
        "code_changed": code_version() != version,
    }
    return verdict


def code_version() -> str:
    """A digest of the worker's sources as this interpreter imports them (a worker restarted
    mid-run loads the files anew)."""
    digest = hashlib.sha256()
    for name in ("streams", "processors", "schemas"):
        spec = importlib.util.find_spec(name)
        for root in (spec.submodule_search_locations or []) if spec else []:
            base = Path(root).parent
            for path in sorted(Path(root).rglob("*")):
                if path.suffix in {".py", ".json"} and path.is_file():
                    digest.update(str(path.relative_to(base)).encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def _soak(
    settings: Settings, stack: Stack, fleet: Fleet, sandbox: SandboxProcess, options: ChaosOptions
) -> Verdict:
    records = Workload(options.seed, options.rate).records(options.events)
    duration = options.events / options.rate
    driver = FaultDriver(options.plan, stack, fleet, settings.app_id, options.seed, duration)
    print(f"[chaos] publishing {len(records):,} events at {options.rate:.0f}/s", flush=True)
    driver.start()
    try:
        stats = publish(
            settings.kafka_bootstrap_servers, settings.topic_prefix, records, options.rate
        )
    finally:
        driver.finish()
    print(f"[chaos] published; {len(driver.faults)} faults; waiting for lag 0", flush=True)
    lag = wait_for_lag(settings, stats.finished, driver, fleet, options.lag_timeout_s)
    inputs = {t: read_topic(stack.bootstrap, settings.topic(t)) for t in PUBLISHED}
    expected = expect(inputs, settings)
    found = observe(settings, expected.customers, fleet.ports, sandbox, options.http_budget_s)
    verdict = judge(
        expected, found, driver.faults, fleet.crashes, stats, lag, settings.topic_prefix
    )
    delay_figures(verdict, found.topics.get("points-ledger", []), expected)
    return verdict


def groups(settings: Settings) -> dict[str, list[str]]:
    """The worker's two consumer groups and the topics each reads."""
    hot = [t for t in INPUT_TOPICS + CONTROL_TOPICS if t not in FULFILMENT_TOPICS]
    return {
        settings.app_id: [settings.topic(t) for t in hot],
        f"{settings.app_id}-fulfilment": [settings.topic(t) for t in FULFILMENT_TOPICS],
    }


def wait_for_lag(
    settings: Settings, last_event_at: float, driver: FaultDriver, fleet: Fleet, timeout_s: float
) -> Lag:
    """Probe both groups' committed lag until it is 0 for a second; once it is late (a minute
    after the last fault), capture the workers' state in `<work dir>/evidence`."""
    probe = LagProbe(settings.kafka_bootstrap_servers, groups(settings))
    ends = [f.restarted for f in driver.faults if f.restarted is not None]
    lag = Lag(None, last_event_at, max(ends, default=None))
    late_at = max(lag.last_fault_at or 0.0, last_event_at) + LAG_LIMIT_S
    deadline, first_zero, captured = time.monotonic() + timeout_s, None, False
    while time.monotonic() < deadline and lag.zero_at is None:
        try:
            found = probe.lag()
        except (KafkaException, TimeoutError) as exc:
            log.warning("lag probe failed: %s", exc)
            found = {"?": -1}
        if all(v == 0 for v in found.values()):
            first_zero = first_zero or time.time()
            lag.zero_at = first_zero if time.time() - first_zero >= 1.0 else None
        else:
            first_zero = None
        if not captured and lag.zero_at is None and time.time() > late_at:
            where = fleet.capture()
            print(f"[chaos] lag {found} a minute after the last fault: evidence in {where}")
            captured = True
        time.sleep(0.5)
    lag.raw = probe.raw_lag()
    return lag


def parse_range(text: str) -> Range | None:
    """`15-20` -> (15.0, 20.0); `30` -> (30.0, 30.0); `0` or `none` -> None."""
    if text.strip().lower() in {"0", "none", "off", ""}:
        return None
    low, _, high = text.partition("-")
    return float(low), float(high or low)


def main(settings: Settings, args: argparse.Namespace) -> int:
    """`rewards chaos`: run the soak against REWARDS_STACK_DIR's stack, print the verdict;
    exit 0 only on PASS."""
    faulthandler.enable()
    try:
        stack = Stack.from_env()
        checkout()  # the soak drives its deploy/stack.sh
    except (ValueError, NoCheckout) as exc:
        print(f"rewards chaos: {exc}")
        return 2
    plan = FaultPlan(
        kill_every=parse_range(args.kill_every),
        broker_outage=parse_range(args.broker_outage),
        broker_kills=args.broker_kills,
        redis_outage=parse_range(args.redis_outage),
    )
    options = ChaosOptions(
        events=args.events,
        rate=args.rate,
        plan=plan,
        seed=args.seed,
        work_dir=Path(args.work_dir) if args.work_dir else None,
    )
    verdict = run_chaos(settings, stack, options)
    print(render(verdict), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(verdict.as_dict(), indent=2, default=str))
    return 0 if verdict.passed else 1
