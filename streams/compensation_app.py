"""Wire compensation into the app: the policy, the budget desk, the provider and fulfilment."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime
from typing import Any

import faust
from redis.asyncio import Redis
from redis.exceptions import RedisError

from processors.compensation import CompensationPolicy, Tier
from streams.compensation import CompensationDesk
from streams.compensation_budget import CompensationBudget
from streams.compensation_metrics import CompensationMetrics
from streams.emitter import Emitter
from streams.fulfilment import GiftCardFulfilment, OrderRecords
from streams.giftcard_client import GiftCardProvider
from streams.metrics import PipelineMetrics
from streams.redis_retry import RedisRetry
from streams.settings import Settings


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


def compensation_desk(
    settings: Settings,
    redis: Redis,
    emitter: Emitter,
    metrics: CompensationMetrics,
    pipeline_metrics: PipelineMetrics,
) -> CompensationDesk:
    """The budget desk, emitting through the points ledger's emitter (stored after delivery)."""
    caps = settings.compensation_budgets
    metrics.prime(caps, [(t.name, t.currency) for t in settings.compensation_tiers])
    budget = CompensationBudget(
        redis,
        namespace=settings.app_id,
        caps=caps,
        retry=RedisRetry("compensation_budget", settings.redis_retry_max_s, pipeline_metrics),
    )
    return CompensationDesk(
        budget=budget, emitter=emitter, metrics=metrics, code_key=discount_code_key(settings)
    )


def register_budget_timer(
    app: faust.App,
    settings: Settings,
    desk: CompensationDesk,
    clock: Callable[[], datetime],
) -> None:
    """Export the budget used every `lag_interval_s`, also when no complaint comes in."""

    @app.timer(settings.lag_interval_s, name="export-compensation-budget")  # type: ignore[untyped-decorator]
    async def export_compensation_budget() -> None:
        """Read today's and this month's reservations from Redis."""
        with contextlib.suppress(RedisError, OSError):  # a gauge may wait for the next tick
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
    app: faust.App,
    settings: Settings,
    redis: Redis,
    metrics: CompensationMetrics,
    pipeline_metrics: PipelineMetrics,
) -> GiftCardFulfilment:
    """The fulfilment handler with its own emitter; the provider's session closes on shutdown."""
    provider = gift_card_provider(settings, metrics)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_provider(sender: faust.App, **_: Any) -> None:
        """Close the provider's HTTP session."""
        await provider.close()

    records = OrderRecords(
        redis,
        namespace=settings.app_id,
        retry=RedisRetry("gift_card_records", settings.redis_retry_max_s, pipeline_metrics),
    )
    return GiftCardFulfilment(
        provider=provider,
        provider_name=settings.gift_card_provider_name,
        records=records,
        emitter=Emitter(settings),
        metrics=metrics,
    )
