"""Wire referrals into the app: policies from settings, the identity index and sign-up intake."""

from __future__ import annotations

from processors.fraud import DEFAULT_WEIGHTS, FraudPolicy
from processors.referrals import Cap, ReferralPolicy
from streams.adapters.identity_index import IdentityIndex
from streams.adapters.metrics import PipelineMetrics
from streams.adapters.redis_client import RedisClient
from streams.adapters.redis_retry import RedisRetry
from streams.settings import Settings


def referral_policy(settings: Settings) -> ReferralPolicy:
    """Referral rewards from settings; the hold defaults to the points hold (the return window)."""
    return ReferralPolicy(
        referrer_points=settings.referral_referrer_points,
        referee_points=settings.referral_referee_points,
        min_amount_cents=dict(settings.referral_min_amounts),
        window=settings.referral_window,
        hold=settings.referral_hold or settings.points_hold,
        caps=tuple(Cap(c.period, c.max_count, c.max_points) for c in settings.referral_caps),
    )


def fraud_policy(settings: Settings) -> FraudPolicy:
    """Fraud rules from settings: configured weights override the defaults rule by rule."""
    return FraudPolicy(
        weights={**DEFAULT_WEIGHTS, **settings.fraud_weights},
        review_at=settings.fraud_review_at,
        reject_at=settings.fraud_reject_at,
        velocity_limits=dict(settings.fraud_velocity_limits),
        velocity_window=settings.fraud_velocity_window,
        ip_ua_window=settings.fraud_ip_ua_window,
        ring_depth=settings.fraud_ring_depth,
    )


def identity_index(
    settings: Settings, redis: RedisClient, policy: FraudPolicy, metrics: PipelineMetrics
) -> IdentityIndex:
    """The Redis identity index, keyed with the HMAC secret from settings (required)."""
    if settings.pii_hash_key is None:
        raise ValueError(
            "REWARDS_PII_HASH_KEY must be set (16+ characters, secret): emails, IPs, "
            "addresses and payment fingerprints are stored only as HMACs under this key"
        )
    return IdentityIndex(
        redis,
        namespace=settings.app_id,
        key=settings.pii_hash_key.get_secret_value().encode(),
        ttl=settings.identity_ttl,
        policy=policy,
        retry=RedisRetry("identity", settings.redis_retry_max_s, metrics),
    )
