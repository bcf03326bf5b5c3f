"""Wire the points ledger into the app: table, release timer, recovery hook, balance endpoint."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import faust
from faust import web
from faust.types import TP
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from processors.advocacy import AdvocacyPolicy
from processors.points import Account, EarnRate, Multiplier, PointsPolicy, next_release
from processors.settlement import Policies
from streams.advocacy import AdvocacyCollector, AdvocacyWindows
from streams.compensation_app import (
    compensation_desk,
    compensation_policy,
    register_budget_timer,
)
from streams.compensation_metrics import CompensationMetrics
from streams.emitter import Emitter
from streams.metrics import PipelineMetrics, PointsMetrics
from streams.points import Clock, PointsLedger
from streams.points_mirror import BalanceMirror, mirror_namespace
from streams.points_state import account_table
from streams.referral_intake import ReferralIntake
from streams.referral_metrics import ReferralMetrics
from streams.referrals_app import fraud_policy, identity_index, referral_intake, referral_policy
from streams.release_schedule import ReleaseSchedule
from streams.settings import Settings


def wall_clock() -> datetime:
    """The worker's clock for hold ends: UTC now."""
    return datetime.now(UTC)


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
    )


def build_points_ledger(
    app: faust.App,
    settings: Settings,
    *,
    registry: CollectorRegistry,
    pipeline_metrics: PipelineMetrics,
    redis: Redis,
    care_metrics: CompensationMetrics,
    clock: Clock = wall_clock,
) -> tuple[PointsLedger, ReferralIntake]:
    """Create the ledger with its table, schedule and adapters, and register its timer and view;
    and the referral intake that feeds it sign-ups."""
    fraud = fraud_policy(settings)
    index = identity_index(settings, redis, fraud, pipeline_metrics)
    referral_metrics = ReferralMetrics.create(registry)
    intake = referral_intake(settings, index, fraud, referral_metrics)
    emitter = Emitter(settings)
    advocacy = AdvocacyWindows(advocacy_policy(settings))
    desk = compensation_desk(settings, redis, emitter, care_metrics, pipeline_metrics)
    register_budget_timer(app, settings, desk, clock)
    registry.register(AdvocacyCollector(advocacy, clock))
    ledger = PointsLedger(
        accounts=account_table(app, settings),
        schedule=ReleaseSchedule(),
        advocacy=advocacy,
        emitter=emitter,
        mirror=BalanceMirror(
            redis,
            namespace=mirror_namespace(settings.app_id),
            retry_max_s=settings.redis_retry_max_s,
            metrics=pipeline_metrics,
        ),
        metrics=PointsMetrics.create(registry),
        policies=Policies(
            points_policy(settings),
            referral_policy(settings),
            compensation_policy(settings),
            advocacy.policy,
        ),
        fraud=fraud,
        index=index,
        intake=intake,
        referral_metrics=referral_metrics,
        care=desk,
        clock=clock,
        ledger_topic=settings.topic("points-ledger"),
    )
    register_recovery(app, settings, ledger)
    register_release_timer(app, settings, ledger)
    register_balance_view(app, ledger)
    return ledger, intake


def register_recovery(app: faust.App, settings: Settings, ledger: PointsLedger) -> None:
    """Stop releasing for revoked partitions; after every recovery, rebuild the release schedule
    from the partitions now owned."""
    topic = settings.topic("purchases")

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def stop_releases_for_revoked(sender: faust.App, revoked: set[TP], **_: Any) -> None:
        """Faust awaits this before the partitions move to another worker."""
        await ledger.forget_partitions({tp.partition for tp in revoked if tp.topic == topic})

    @ledger.accounts.table.on_recover
    async def rebuild_release_schedule() -> None:
        """Scan the owned partitions' accounts for held points."""
        owned = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}
        ledger.rebuild_schedule(owned)


def register_release_timer(app: faust.App, settings: Settings, ledger: PointsLedger) -> None:
    """Check for ended holds every `release_interval_s`."""

    @app.timer(settings.release_interval_s, name="release-held-points")  # type: ignore[untyped-decorator]
    async def release_held_points() -> None:
        """Release every hold that has ended and announce the points."""
        await ledger.release_held_points()


def balance_body(account: Account) -> dict[str, Any]:
    """The JSON answer for one customer's balance."""
    release = next_release(account)
    return {
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


def register_balance_view(app: faust.App, ledger: PointsLedger) -> None:
    """`GET /points/{customer_id}`, answered by the worker that owns the customer's partition."""

    @app.page("/points/{customer_id}")
    @app.table_route(table=ledger.accounts.table, match_info="customer_id")
    async def get_balance(view: web.View, request: web.Request, customer_id: str) -> web.Response:
        """The customer's pending and available points (404 if the customer has none yet)."""
        account = ledger.accounts.read(customer_id)
        if account is None:
            return view.json({"customer_id": customer_id, "error": "unknown customer"}, status=404)
        return view.json(balance_body(account))


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
