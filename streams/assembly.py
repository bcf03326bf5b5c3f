"""The hot path assembled from its ports: the one wiring the worker and the in-process tests share.

`streams.hot_path` builds the real ports (librdkafka consumer and transactional producer,
RocksDB store, Redis services) and hands them here; `tests/worker` hands in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry

from processors.advocacy import AdvocacyPolicy
from processors.points import EarnRate, Multiplier, PointsPolicy
from processors.settlement import Policies
from schemas.codec import FULFILMENT_TOPICS, Codec
from schemas.models import Referral
from streams.account_settler import AccountSettler, Clock
from streams.accounts import OwnedAccounts
from streams.adapters.account_store import AccountStore
from streams.adapters.compensation_metrics import CompensationMetrics
from streams.adapters.dead_letter import DeadLetterSink
from streams.adapters.metrics import LoopMetrics, PipelineMetrics, PointsMetrics
from streams.adapters.referral_metrics import ReferralMetrics
from streams.adapters.seen_marks import Legacy, SeenMarks
from streams.advocacy import AdvocacyCollector, AdvocacyWindows
from streams.agents import Agents, Handler
from streams.compensation import Budget, CompensationDesk
from streams.compensation_app import compensation_policy, discount_code_key
from streams.ingest import Admitted, Gate, Rejected, StreamClocks
from streams.loyalty import TierCounts, expiry_policy, tier_policy
from streams.mirror_follower import Mirror, MirrorFollower
from streams.pipeline import Pipeline, PoisonRecords, Source
from streams.referral_intake import Identity, ReferralIntake
from streams.referrals_app import fraud_policy, referral_policy
from streams.release_schedule import ReleaseSchedule
from streams.release_sweep import HoldReleaseSweep
from streams.runtime import loop_settings
from streams.settings import CONTROL_TOPICS, INPUT_TOPICS, Settings
from streams.settlement_outputs import SettlementOutputs
from streams.transaction import Positions, Producer, Transaction

INGEST_TOPICS = tuple(t for t in INPUT_TOPICS + CONTROL_TOPICS if t not in FULFILMENT_TOPICS)
"""What the hot path reads: every input and control topic but the fulfilment loop's."""


class HotSource(Source, Positions, Protocol):
    """The hot path's consumer: batches, positions, and how far behind each partition is."""

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the high watermark, per assigned topic partition."""

    def read_before(self, partition: int) -> bool:
        """Whether the group had committed an offset of `partition` when it was assigned."""


@dataclass(frozen=True)
class Ports:
    """What the hot path talks to: Kafka, the local store, and the Redis-backed services."""

    producer: Producer
    source: HotSource
    store: AccountStore
    legacy_marks: Legacy | None
    """The first-seen marks a version before this one left in Redis (read during the cut-over)."""
    identity: Identity
    budget: Budget
    mirror: Mirror


@dataclass(frozen=True)
class Wiring:
    """What the hot path is built from, besides its ports."""

    settings: Settings
    registry: CollectorRegistry
    metrics: PipelineMetrics
    care_metrics: CompensationMetrics
    clock: Clock


@dataclass(frozen=True)
class Assembled:
    """The hot path's loop and the parts the web server and the ownership read."""

    pipeline: Pipeline
    transaction: Transaction
    accounts: OwnedAccounts
    care: CompensationDesk


def assemble(wiring: Wiring, ports: Ports, *, partitions: int, outcome: LoopMetrics) -> Assembled:
    """The transaction, the gate, the accounts, the agents and the loop, on `ports`."""
    settings = wiring.settings
    clocks, poison = StreamClocks(), PoisonRecords()
    txn = Transaction(ports.producer, ports.source, outcome=outcome)
    marks = SeenMarks(ports.store, settings.changelog_topic(), settings.dedupe_ttl_s,
                      txn.emit_raw, legacy=ports.legacy_marks,
                      read_before=ports.source.read_before)  # fmt: skip
    gate = Gate(
        {settings.topic(base): base for base in INGEST_TOPICS},
        Codec(max_event_bytes=settings.max_event_bytes),
        first_seen=marks, dead_letters=DeadLetterSink(txn), metrics=wiring.metrics,
        clocks=clocks, poison=poison,
    )  # fmt: skip
    accounts = _accounts(wiring, ports, clocks)
    settler, sweep, intake = _settler(wiring, ports, txn, accounts)
    # Who is told how each transaction ended, in this order (streams.transaction):
    for participant in (
        ports.store,
        marks,
        accounts,
        settler.outputs,
        intake,
        ports.identity,
        gate,
        clocks,
    ):
        txn.enlist(participant)

    async def release_held_points() -> None:
        """The hold-end sweep, for the partitions that are caught up."""
        await sweep.release_held_points(caught_up(ports.source, partitions))

    pipeline = Pipeline(
        "ingest", ports.source, txn, Agents(gate, _agents(settler, intake)),
        loop=loop_settings(settings), poison=poison, periodic=release_held_points,
    )  # fmt: skip
    return Assembled(pipeline, txn, accounts, settler.care)


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


def policies(settings: Settings) -> Policies:
    """Every rule's configuration from settings."""
    return Policies(
        points_policy(settings), referral_policy(settings), compensation_policy(settings),
        advocacy_policy(settings), tier_policy(settings), expiry_policy(settings),
    )  # fmt: skip


def _accounts(wiring: Wiring, ports: Ports, clocks: StreamClocks) -> OwnedAccounts:
    """The owned accounts with their schedule, advocacy windows and tier counts."""
    advocacy = AdvocacyWindows(advocacy_policy(wiring.settings))
    wiring.registry.register(AdvocacyCollector(advocacy, wiring.clock))
    tiers = TierCounts(tier_policy(wiring.settings))
    wiring.registry.register(tiers)
    metrics, mirror = PointsMetrics.create(wiring.registry), MirrorFollower(ports.mirror)
    metrics.mirror_lag.set_function(lambda: mirror.lag_s)
    metrics.mirror_queued.set_function(lambda: mirror.queued)
    return OwnedAccounts(
        store=ports.store, schedule=ReleaseSchedule(), advocacy=advocacy, clocks=clocks,
        mirror=mirror, metrics=metrics, tiers=tiers,
    )  # fmt: skip


def _settler(
    wiring: Wiring, ports: Ports, txn: Transaction, accounts: OwnedAccounts
) -> tuple[AccountSettler, HoldReleaseSweep, ReferralIntake]:
    """The accounts' settlement, its hold-end sweep and the referral screening it asks."""
    settings = wiring.settings
    referral_metrics = ReferralMetrics.create(wiring.registry)
    intake = ReferralIntake(
        index=ports.identity, transaction=txn, policy=fraud_policy(settings),
        metrics=referral_metrics, alert_on_approve=settings.fraud_alert_on_approve,
    )  # fmt: skip
    caps = settings.compensation_budgets
    wiring.care_metrics.prime(caps, [(t.name, t.currency) for t in settings.compensation_tiers])
    desk = CompensationDesk(
        budget=ports.budget, emitter=txn, metrics=wiring.care_metrics,
        code_key=discount_code_key(settings),
    )  # fmt: skip
    outputs = SettlementOutputs(
        transaction=txn, care=desk, metrics=accounts.metrics, referral_metrics=referral_metrics,
        ledger_topic=settings.topic("points-ledger"),
    )  # fmt: skip
    rules = policies(settings)
    settler = AccountSettler(
        accounts=accounts, outputs=outputs, transaction=txn, policies=rules,
        referrals=intake, care=desk, clock=wiring.clock,
    )  # fmt: skip
    sweep = HoldReleaseSweep(
        settler=settler, accounts=accounts, policies=rules, metrics=accounts.metrics,
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


def caught_up(source: HotSource, partitions: int) -> frozenset[int]:
    """The partition numbers whose every topic has been read to its end."""
    behind = {p for (_, p), lag in source.lag().items() if lag > 0}
    return frozenset(p for p in range(partitions) if p not in behind)
