"""Wire the hot path: the consumer, the transactional producer, the accounts and the agents."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from processors.account import Account
from processors.points_state import next_release
from processors.tiers import TierPolicy, progress
from streams.accounts import OwnedAccounts
from streams.adapters.account_store import AccountStore
from streams.adapters.compensation_budget import CompensationBudget
from streams.adapters.dedupe import legacy_marks
from streams.adapters.kafka_io import consumer_config, instance_id, producer_config, recovery_config
from streams.adapters.kafka_source import KafkaSource
from streams.adapters.metrics import loop_metrics as ingest_metrics
from streams.adapters.metrics import source_metrics
from streams.adapters.outbox import Outbox
from streams.adapters.points_mirror import BalanceMirror, mirror_namespace
from streams.adapters.redis_client import RedisClient
from streams.adapters.redis_retry import RedisRetry
from streams.assembly import INGEST_TOPICS, Ports, Wiring, assemble
from streams.compensation import CompensationDesk
from streams.referrals_app import fraud_policy, identity_index
from streams.runtime import Fatal, Loop, StatefulOwnership
from streams.settings import OUTPUT_TOPICS, Settings

__all__ = ["INGEST_TOPICS", "HotPath", "Wiring", "balance_body", "build_hot_path"]


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
    mirror: BalanceMirror
    """The balances' Redis mirror: what the endpoint answers while a partition has no owner."""


def build_hot_path(wiring: Wiring, redis: RedisClient, *, partitions: int, fatal: Fatal) -> HotPath:
    """The real ports (librdkafka, RocksDB, Redis), the hot path on them, and its ownership."""
    settings, metrics = wiring.settings, wiring.metrics
    outbox = Outbox(
        producer_config(settings, f"{settings.app_id}-ingest-{instance_id(settings)}"),
        settings.topic_prefix,
    )
    client_id = f"{settings.app_id}@{settings.web_host}:{settings.web_port}"
    source = KafkaSource(
        consumer_config(settings, settings.app_id, client_id),
        [settings.topic(t) for t in INGEST_TOPICS],
        source_metrics(metrics, "ingest"),
    )
    store = _store(settings)
    mirror = BalanceMirror(
        redis, namespace=mirror_namespace(settings.app_id),
        retry_max_s=settings.redis_retry_max_s, metrics=metrics,
    )  # fmt: skip
    ports = Ports(
        producer=outbox, source=source, store=store,
        legacy_marks=legacy_marks(settings, redis, metrics, INGEST_TOPICS),
        identity=identity_index(settings, redis, fraud_policy(settings), metrics),
        budget=CompensationBudget(
            redis, namespace=settings.app_id, caps=settings.compensation_budgets,
            retry=RedisRetry("compensation_budget", settings.redis_retry_max_s, metrics),
            keep_answers_s=max(settings.dedupe_ttl_s, 86_400),
        ),
        mirror=mirror,
    )  # fmt: skip
    outputs = [*OUTPUT_TOPICS, "referral-commands", "gift-card-orders", settings.changelog_topic()]
    outcome = ingest_metrics(metrics, "ingest", settings.topic_prefix, outputs)
    hot = assemble(wiring, ports, partitions=partitions, outcome=outcome)
    ownership = StatefulOwnership(fatal, outcome, store, hot.accounts)
    ownership.pipeline, ownership.source = hot.pipeline, source
    source.listener = ownership
    topics = [settings.topic(t) for t in ("points-ledger", "rewards-issued", "dead-letter")]

    async def start() -> None:
        await asyncio.to_thread(outbox.start, settings.startup_timeout_s)
        await asyncio.to_thread(outbox.warm_up, [*topics, settings.changelog_topic()])

    async def close() -> None:
        await hot.accounts.mirror.close()  # the balances of the last commits, if Redis answers
        source.close()
        outbox.close()

    return HotPath(
        Loop(hot.pipeline, source, start, close), hot.accounts, hot.care, ownership, partitions,
        settings.kafka_bootstrap_servers, settings.app_id, settings.topic("purchases"), mirror,
    )  # fmt: skip


def _store(settings: Settings) -> AccountStore:
    """The accounts' local store (RocksDB, or memory) and its changelog."""
    return AccountStore(
        directory=settings.data_dir / settings.app_id / "accounts",
        changelog_topic=settings.changelog_topic(),
        recovery_config=recovery_config(settings),
        cache_size=settings.state_cache_accounts,
        in_memory=settings.store.startswith("memory"),
        wait_s=settings.startup_timeout_s,
    )


def balance_body(
    account: Account, tiers: TierPolicy | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """The JSON answer for one customer's balance (with its tier and progress, if configured)."""
    release = next_release(account.points)
    body: dict[str, Any] = {
        "customer_id": account.customer_id,
        "pending": account.points.pending,
        "available": account.points.available,
        "sequence": account.points.sequence,
        "next_release_at": release.isoformat() if release else None,
        "referral": referral_body(account),
        "holds": [
            {"order_id": o.order_id, "points": o.pending, "release_at": o.release_at.isoformat()}
            for o in sorted(account.points.orders.values(), key=lambda o: o.release_at)
            if o.pending > 0
        ],
    }
    if tiers is not None and tiers.tiers:
        body["tier"] = progress(account.tier, now or datetime.now(UTC), tiers)
    return body


def referral_body(account: Account) -> dict[str, Any] | None:
    """The referral that brought the customer, if any, as shown by the balance endpoint."""
    referral = account.referral.referee
    if referral is None:
        return None
    return {
        "referral_key": referral.referral_key,
        "referrer_id": referral.referrer_id,
        "status": referral.status,
        "decision": referral.decision,
        "order_id": referral.order_id,
    }
