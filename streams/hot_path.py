"""Wire the hot path: the consumer, the transactional producer, the accounts and the agents."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from processors.advocacy import AdvocacyPolicy
from processors.points import Account, EarnRate, Multiplier, PointsPolicy, next_release
from processors.settlement import Policies
from processors.tiers import TierPolicy, progress
from schemas.codec import FULFILMENT_TOPICS
from schemas.models import Referral
from streams.account_settler import AccountSettler, Clock
from streams.accounts import OwnedAccounts
from streams.adapters.account_store import AccountStore
from streams.adapters.compensation_metrics import CompensationMetrics
from streams.adapters.kafka_io import consumer_config, instance_id, producer_config, recovery_config
from streams.adapters.kafka_source import KafkaSource
from streams.adapters.metrics import PipelineMetrics, PointsMetrics, source_metrics
from streams.adapters.metrics import loop_metrics as ingest_metrics
from streams.adapters.outbox import Outbox
from streams.adapters.points_mirror import BalanceMirror, mirror_namespace
from streams.adapters.referral_metrics import ReferralMetrics
from streams.advocacy import AdvocacyCollector, AdvocacyWindows
from streams.agents import Agents, Handler
from streams.compensation import CompensationDesk
from streams.compensation_app import compensation_desk, compensation_policy
from streams.ingest import Admitted, Rejected, StreamClocks
from streams.loyalty import TierCounts, expiry_policy, tier_policy
from streams.pipeline import Pipeline, PoisonRecords
from streams.referral_intake import ReferralIntake
from streams.referrals_app import fraud_policy, identity_index, referral_policy
from streams.release_schedule import ReleaseSchedule
from streams.release_sweep import HoldReleaseSweep
from streams.runtime import Fatal, Loop, StatefulOwnership, build_gate, loop_settings
from streams.settings import CONTROL_TOPICS, INPUT_TOPICS, OUTPUT_TOPICS, Settings
from streams.settlement_outputs import SettlementOutputs

INGEST_TOPICS = tuple(t for t in INPUT_TOPICS + CONTROL_TOPICS if t not in FULFILMENT_TOPICS)
"""What the hot path reads: every input and control topic but the fulfilment loop's."""


def points_policy(settings: Settings) -> PointsPolicy:
    """The earning rules from settings."""
    return PointsPolicy(
        rates={c: EarnRate(points, per) for c, (points, per) in settings.points_rates.items()},
        hold=settings.points_hold,
        multipliers=tuple(
            Multiplier(m.name, m.percent, m.starts_at, m.ends_at)
            for m in settings.points_multipliers
        ),
        order_retention=settings.points_order_retention,
    )


def advocacy_policy(settings: Settings) -> AdvocacyPolicy:
    """The advocacy metrics' segments and windows from settings."""
    return AdvocacyPolicy(
        channels=frozenset(c.lower() for c in settings.advocacy_channels),
        repurchase_window=settings.advocacy_repurchase_window,
        event_clock=settings.advocacy_clock == "event",
    )


@dataclass(frozen=True)
class HotPath:
    """The hot path's loop and what the web server reads from it."""

    loop: Loop
    accounts: OwnedAccounts
    care: CompensationDesk
    ownership: StatefulOwnership
    partitions: int
    bootstrap_servers: str
    group_id: str
    routing_topic: str
    """The topic whose partition owners the balance endpoint routes by."""


@dataclass(frozen=True)
class Wiring:
    """What the hot path is built from."""

    settings: Settings
    registry: CollectorRegistry
    metrics: PipelineMetrics
    redis: Redis
    care_metrics: CompensationMetrics
    clock: Clock


def build_hot_path(wiring: Wiring, *, partitions: int, fatal: Fatal) -> HotPath:
    """The consumer, the producer, the state and the agents of every topic but gift-card orders."""
    settings, metrics = wiring.settings, wiring.metrics
    outbox = Outbox(
        producer_config(settings, f"{settings.app_id}-ingest-{instance_id(settings)}"),
        settings.topic_prefix,
    )
    clocks, poison = StreamClocks(), PoisonRecords()
    store = AccountStore(
        directory=settings.data_dir / settings.app_id / "accounts",
        changelog_topic=settings.changelog_topic(),
        recovery_config=recovery_config(settings),
        cache_size=settings.state_cache_accounts,
        in_memory=settings.store.startswith("memory"),
    )
    accounts = _accounts(wiring, store, clocks)
    settler, sweep, intake = _settler(wiring, outbox, accounts)
    gate = build_gate(
        settings, INGEST_TOPICS, redis=wiring.redis, metrics=metrics, outbox=outbox,
        clocks=clocks, poison=poison,
    )  # fmt: skip
    agents = Agents(gate, _agents(settler, intake), [settler, intake])
    outputs = [*OUTPUT_TOPICS, "referral-commands", "gift-card-orders", settings.changelog_topic()]
    loop_metrics = ingest_metrics(metrics, "ingest", settings.topic_prefix, outputs)
    ownership = StatefulOwnership(fatal, loop_metrics, store, accounts)
    client_id = f"{settings.app_id}@{settings.web_host}:{settings.web_port}"
    source = KafkaSource(
        consumer_config(settings, settings.app_id, client_id),
        [settings.topic(t) for t in INGEST_TOPICS],
        ownership,
        source_metrics(metrics, "ingest"),
    )

    async def release_held_points() -> None:
        """The hold-end sweep, for the partitions that are caught up."""
        await sweep.release_held_points(caught_up(source, partitions))

    pipeline = Pipeline(
        "ingest", source, outbox, agents, loop=loop_settings(settings), poison=poison,
        periodic=release_held_points, metrics=loop_metrics,
    )  # fmt: skip
    ownership.pipeline, ownership.source = pipeline, source
    topics = [settings.topic(t) for t in ("points-ledger", "rewards-issued", "dead-letter")]

    async def start() -> None:
        await asyncio.to_thread(outbox.start, settings.startup_timeout_s)
        await asyncio.to_thread(outbox.warm_up, [*topics, settings.changelog_topic()])

    async def close() -> None:
        source.close()
        outbox.close()

    return HotPath(
        Loop(pipeline, source, start, close), accounts, settler.care, ownership, partitions,
        settings.kafka_bootstrap_servers, settings.app_id, settings.topic("purchases"),
    )  # fmt: skip


def _accounts(wiring: Wiring, store: AccountStore, clocks: StreamClocks) -> OwnedAccounts:
    """The owned accounts with their schedule, advocacy windows and Redis mirror."""
    settings = wiring.settings
    advocacy = AdvocacyWindows(advocacy_policy(settings))
    wiring.registry.register(AdvocacyCollector(advocacy, wiring.clock))
    tiers = TierCounts(tier_policy(settings))
    wiring.registry.register(tiers)
    mirror = BalanceMirror(
        wiring.redis,
        namespace=mirror_namespace(settings.app_id),
        retry_max_s=settings.redis_retry_max_s,
        metrics=wiring.metrics,
    )
    return OwnedAccounts(
        store=store, schedule=ReleaseSchedule(), advocacy=advocacy, clocks=clocks,
        mirror=mirror, metrics=PointsMetrics.create(wiring.registry), tiers=tiers,
    )  # fmt: skip


def _settler(
    wiring: Wiring, outbox: Outbox, accounts: OwnedAccounts
) -> tuple[AccountSettler, HoldReleaseSweep, ReferralIntake]:
    """The accounts' settlement, its hold-end sweep and the referral screening it asks."""
    settings, redis, metrics = wiring.settings, wiring.redis, wiring.metrics
    fraud = fraud_policy(settings)
    referral_metrics = ReferralMetrics.create(wiring.registry)
    intake = ReferralIntake(
        index=identity_index(settings, redis, fraud, metrics),
        emitter=outbox,
        policy=fraud,
        metrics=referral_metrics,
        alert_on_approve=settings.fraud_alert_on_approve,
    )
    policies = Policies(
        points_policy(settings), referral_policy(settings), compensation_policy(settings),
        accounts.advocacy.policy, tier_policy(settings), expiry_policy(settings),
    )  # fmt: skip
    desk = compensation_desk(settings, redis, outbox, wiring.care_metrics, metrics)
    points_metrics = accounts.metrics
    outputs = SettlementOutputs(
        outbox=outbox, care=desk, metrics=points_metrics, referral_metrics=referral_metrics,
        ledger_topic=settings.topic("points-ledger"),
    )  # fmt: skip
    settler = AccountSettler(
        accounts=accounts, outputs=outputs, outbox=outbox, policies=policies,
        referrals=intake, care=desk, clock=wiring.clock,
    )  # fmt: skip
    sweep = HoldReleaseSweep(
        settler=settler, accounts=accounts, policies=policies, metrics=points_metrics,
        clock=wiring.clock,
    )  # fmt: skip
    return settler, sweep, intake


def _agents(settler: AccountSettler, intake: ReferralIntake) -> dict[str, Handler]:
    """Which agent handles which topic."""
    settle = settler.settle_customer_events  # one call per batch for all of a customer's events

    async def score_referrals(admitted: Sequence[Admitted]) -> Sequence[Rejected]:
        """Score and forward the sign-ups; invitations join the inviting customer's account."""
        invites = [
            a for a in admitted if isinstance(a.event, Referral) and a.event.type == "invited"
        ]
        return [*await intake.score_signups(admitted), *await settle(invites)]

    return {
        "purchases": settle,
        "complaints": settle,
        "survey-responses": settle,
        "referral-commands": settle,
        "fraud-decisions": settle,
        "account-commands": settle,
        "referrals": score_referrals,
    }


def caught_up(source: KafkaSource, partitions: int) -> frozenset[int]:
    """The partition numbers whose every topic has been read to its end."""
    behind = {p for (_, p), lag in source.lag().items() if lag > 0}
    return frozenset(p for p in range(partitions) if p not in behind)


def balance_body(
    account: Account, tiers: TierPolicy | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """The JSON answer for one customer's balance (with its tier and progress, if configured)."""
    release = next_release(account)
    body: dict[str, Any] = {
        "customer_id": account.customer_id,
        "pending": account.pending,
        "available": account.available,
        "sequence": account.sequence,
        "next_release_at": release.isoformat() if release else None,
        "referral": referral_body(account),
        "holds": [
            {"order_id": o.order_id, "points": o.pending, "release_at": o.release_at.isoformat()}
            for o in sorted(account.orders.values(), key=lambda o: o.release_at)
            if o.pending > 0
        ],
    }
    if tiers is not None and tiers.tiers:
        body["tier"] = progress(account, now or datetime.now(UTC), tiers)
    return body


def referral_body(account: Account) -> dict[str, Any] | None:
    """The referral that brought the customer, if any, as shown by the balance endpoint."""
    referral = account.referral
    if referral is None:
        return None
    return {
        "referral_key": referral.referral_key,
        "referrer_id": referral.referrer_id,
        "status": referral.status,
        "decision": referral.decision,
        "order_id": referral.order_id,
    }
