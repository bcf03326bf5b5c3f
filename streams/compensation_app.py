"""Wire compensation into the app: the policy, the budget desk, the provider and fulfilment."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime

import faust
from redis.exceptions import RedisError

from processors.compensation import CompensationPolicy, Tier
from schemas.codec import FULFILMENT_TOPICS
from streams.adapters.compensation_metrics import CompensationMetrics
from streams.adapters.giftcard_client import GiftCardProvider
from streams.adapters.kafka_io import consumer_config, instance_id, producer_config
from streams.adapters.kafka_source import KafkaSource
from streams.adapters.metrics import PipelineMetrics, source_metrics
from streams.adapters.metrics import loop_metrics as fulfilment_metrics
from streams.adapters.outbox import Outbox
from streams.adapters.redis_client import RedisClient
from streams.adapters.redis_retry import AWAY, RedisRetry
from streams.agents import Agents
from streams.compensation import CompensationDesk
from streams.fulfilment import GiftCardFulfilment, OrderRecords
from streams.ingest import StreamClocks
from streams.pipeline import Pipeline, PoisonRecords
from streams.runtime import Fatal, Loop, Ownership, build_gate, loop_settings
from streams.settings import Settings
from streams.transaction import Transaction


def compensation_policy(settings: Settings) -> CompensationPolicy:
    """The policy table and limits from settings."""
    return CompensationPolicy(
        tiers=tuple(
            Tier(
                name=t.name,
                severities=frozenset(t.severities),
                amount_cents=t.amount_cents,
                currency=t.currency,
                categories=frozenset(t.categories),
                min_spend_cents=t.min_spend_cents,
            )
            for t in settings.compensation_tiers
        ),
        customer_period=settings.compensation_customer_period,
        discount_share=settings.compensation_discount_share,
        experiment=settings.compensation_experiment,
    )


def register_budget_timer(
    app: faust.App,
    settings: Settings,
    desk: CompensationDesk,
    clock: Callable[[], datetime],
) -> None:
    """Export the budget used every `lag_interval_s`, also when no complaint comes in."""

    @app.timer(settings.lag_interval_s, name="export-compensation-budget")  # type: ignore[untyped-decorator]  # faust is untyped
    async def export_compensation_budget() -> None:
        """Read today's and this month's reservations from Redis."""
        with contextlib.suppress(*AWAY, RedisError):  # a gauge may wait for the next tick
            await desk.refresh_budget(clock())


def discount_code_key(settings: Settings) -> bytes:
    """The discount codes' secret: derived from the PII hash key (one secret to rotate)."""
    secret = settings.pii_hash_key.get_secret_value() if settings.pii_hash_key else ""
    return hmac.new(secret.encode(), b"discount-codes", hashlib.sha256).digest()


def gift_card_provider(settings: Settings, metrics: CompensationMetrics) -> GiftCardProvider:
    """The provider's HTTP client from settings; the API key is required when a tier pays."""
    key = settings.gift_card_api_key
    if key is None and settings.compensates():
        raise ValueError(
            "REWARDS_GIFT_CARD_API_KEY must be set (a secret, from the environment): a "
            "compensation tier pays gift cards (or set REWARDS_COMPENSATION_TIERS to pay none)"
        )
    return GiftCardProvider(
        settings.gift_card_provider_url,
        key.get_secret_value() if key else "",
        timeout_s=settings.gift_card_timeout_s,
        max_attempts=settings.gift_card_max_attempts,
        backoff_initial_s=settings.gift_card_backoff_initial_s,
        backoff_max_s=settings.gift_card_backoff_max_s,
        pending_timeout_s=settings.gift_card_pending_timeout_s,
        concurrency=settings.gift_card_concurrency,
        observe=metrics.observe_provider,
    )


def build_fulfilment(
    settings: Settings,
    redis: RedisClient,
    metrics: CompensationMetrics,
    pipeline_metrics: PipelineMetrics,
    fatal: Fatal,
) -> Loop:
    """The fulfilment loop: its own consumer group, producer and provider session."""
    provider = gift_card_provider(settings, metrics)
    outbox = Outbox(
        producer_config(settings, f"{settings.app_id}-fulfilment-{instance_id(settings)}"),
        settings.topic_prefix,
    )
    source = _fulfilment_source(settings, pipeline_metrics)
    loop_metrics = fulfilment_metrics(
        pipeline_metrics, "fulfilment", settings.topic_prefix, ("rewards-issued", "dead-letter")
    )
    txn = Transaction(outbox, source, outcome=loop_metrics)
    retry = RedisRetry("gift_card_records", settings.redis_retry_max_s, pipeline_metrics)
    fulfilment = GiftCardFulfilment(
        provider=provider, provider_name=settings.gift_card_provider_name,
        records=OrderRecords(redis, namespace=settings.app_id, retry=retry),
        emitter=txn, metrics=metrics,
    )  # fmt: skip
    poison, clocks = PoisonRecords(), StreamClocks()
    gate = build_gate(
        settings, FULFILMENT_TOPICS, redis=redis, metrics=pipeline_metrics, emitter=txn,
        clocks=clocks, poison=poison,
    )  # fmt: skip
    txn.enlist(gate)  # the fulfilment loop's participants: its counts and clocks
    txn.enlist(clocks)
    agents = Agents(gate, dict.fromkeys(FULFILMENT_TOPICS, fulfilment.fulfil_orders))
    pipeline = Pipeline(
        "fulfilment", source, txn, agents, loop=loop_settings(settings), poison=poison
    )
    ownership = Ownership(fatal, loop_metrics)
    ownership.pipeline, ownership.source = pipeline, source
    source.listener = ownership

    async def start() -> None:
        await asyncio.to_thread(outbox.start, settings.startup_timeout_s)

    async def close() -> None:
        source.close()
        outbox.close()
        await provider.close()

    return Loop(pipeline, source, start, close)


def _fulfilment_source(settings: Settings, pipeline_metrics: PipelineMetrics) -> KafkaSource:
    """The fulfilment loop's consumer: group `<app_id>-fulfilment`, `gift-card-orders` alone."""
    client_id = f"{settings.app_id}-fulfilment@{settings.web_host}:{settings.web_port}"
    return KafkaSource(
        consumer_config(settings, f"{settings.app_id}-fulfilment", client_id),
        [settings.topic(t) for t in FULFILMENT_TOPICS],
        source_metrics(pipeline_metrics, "fulfilment"),
    )
