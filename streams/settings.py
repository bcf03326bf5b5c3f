"""The one settings object, read from the environment once and passed down."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

import orjson
from pydantic import (
    AliasChoices,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from processors.advocacy import AdvocacyPolicy
from processors.compensation import CompensationPolicy
from schemas.codec import CONTROL_TOPICS, INPUT_TOPICS, OUTPUT_TOPICS

__all__ = ["CONTROL_TOPICS", "INPUT_TOPICS", "OUTPUT_TOPICS", "Settings", "settings_env"]


PositiveInt = Annotated[int, Field(gt=0)]


class CampaignMultiplier(BaseModel):
    """A points multiplier in force for purchases made in [starts_at, ends_at)."""

    model_config = ConfigDict(frozen=True)

    name: str
    percent: int = Field(ge=0)
    starts_at: AwareDatetime
    ends_at: AwareDatetime


class ReferralCap(BaseModel):
    """At most `max_count` referral rewards and `max_points` points per referrer per `period`."""

    model_config = ConfigDict(frozen=True)

    period: timedelta
    max_count: int = Field(ge=0)
    max_points: int = Field(ge=0)


DEFAULT_CAPS = (
    ReferralCap(period=timedelta(days=30), max_count=10, max_points=5_000),
    ReferralCap(period=timedelta(days=365), max_count=50, max_points=25_000),
)
DEFAULT_MIN_AMOUNTS = {"EUR": 2000, "USD": 2000, "GBP": 2000}
DEFAULT_VELOCITY_LIMITS = {"referrer": 10, "ip": 5, "device": 3}


class CompensationTier(BaseModel):
    """A compensation policy row: complaints it matches get `amount_cents` of `currency`."""

    model_config = ConfigDict(frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=64)]
    severities: frozenset[Literal["low", "medium", "high", "critical"]]
    amount_cents: int = Field(ge=0)
    currency: Annotated[str, Field(pattern="^[A-Z]{3}$")] = "EUR"
    categories: frozenset[str] = frozenset()
    min_spend_cents: int = Field(default=0, ge=0)


class BudgetCaps(BaseModel):
    """A currency's compensation budget in minor units per UTC day and month (null: no cap)."""

    model_config = ConfigDict(frozen=True)

    day: int | None = Field(default=None, ge=0)
    month: int | None = Field(default=None, ge=0)


DEFAULT_TIERS = tuple(
    CompensationTier(
        name=t.name,
        severities=frozenset(t.severities),  # type: ignore[arg-type]
        amount_cents=t.amount_cents,
        currency=t.currency,
    )
    for t in CompensationPolicy().tiers
)
"""The processors' default policy table (EUR 10 / 25 / 50 for medium / high / critical)."""
DEFAULT_BUDGETS = {"EUR": BudgetCaps(day=100_000, month=2_000_000)}


DEFAULT_RATES: dict[str, tuple[int, int]] = {"EUR": (1, 100), "USD": (1, 100), "GBP": (1, 100)}
"""1 point per whole EUR, USD or GBP (100 minor units); other currencies need a configured rate."""


class Settings(BaseSettings):
    """Worker configuration; every field can be set as REWARDS_<FIELD> (see README)."""

    model_config = SettingsConfigDict(
        env_prefix="REWARDS_", frozen=True, extra="ignore", populate_by_name=True
    )

    app_id: str = "rewards"
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "REWARDS_KAFKA_BOOTSTRAP_SERVERS"),
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:16379/0",
        validation_alias=AliasChoices("REDIS_URL", "REWARDS_REDIS_URL"),
    )
    topic_prefix: str = ""
    partitions: int = Field(default=4, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    store: str = "rocksdb://"
    data_dir: Path = Path.home() / ".local/state/rewards/data"
    web_bind: str = "127.0.0.1"
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)
    max_event_bytes: int = Field(default=65_536, ge=1024)
    fetch_max_partition_bytes: int = Field(default=4 * 1024 * 1024, ge=1024 * 1024)
    fetch_max_wait_ms: int = Field(default=100, ge=1, le=1500)
    batch_max: int = Field(default=2000, ge=1)
    batch_within_s: float = Field(default=0.005, ge=0)
    session_timeout_s: float = Field(default=45.0, ge=6.0)
    commit_interval_s: float = Field(default=2.8, gt=0)
    transaction_timeout_s: float = Field(default=30.0, ge=1.0, le=900.0)
    startup_timeout_s: float = Field(default=120.0, gt=0)
    shutdown_timeout_s: float = Field(default=10.0, gt=0)
    worker_id: Annotated[str, Field(pattern="^[A-Za-z0-9._-]{1,64}$")] | None = None
    state_cache_accounts: int = Field(default=200_000, ge=0)
    dedupe_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    redis_retry_max_s: float = Field(default=5.0, gt=0)
    lag_interval_s: float = Field(default=5.0, gt=0)
    points_rates: dict[str, tuple[PositiveInt, PositiveInt]] = Field(
        default_factory=lambda: dict(DEFAULT_RATES)
    )
    points_multipliers: tuple[CampaignMultiplier, ...] = ()
    points_hold: timedelta = timedelta(days=14)
    points_order_retention: timedelta = timedelta(days=400)
    release_interval_s: float = Field(default=1.0, gt=0)
    pii_hash_key: SecretStr | None = Field(default=None, min_length=16)
    identity_ttl: timedelta = timedelta(days=400)
    referral_referrer_points: int = Field(default=500, ge=0)
    referral_referee_points: int = Field(default=500, ge=0)
    referral_min_amounts: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: dict(DEFAULT_MIN_AMOUNTS)
    )
    referral_window: timedelta = timedelta(days=30)
    referral_hold: timedelta | None = None
    referral_caps: tuple[ReferralCap, ...] = DEFAULT_CAPS
    fraud_weights: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    fraud_review_at: float = Field(default=40.0, ge=0)
    fraud_reject_at: float = Field(default=80.0, ge=0)
    fraud_velocity_limits: dict[str, PositiveInt] = Field(
        default_factory=lambda: dict(DEFAULT_VELOCITY_LIMITS)
    )
    fraud_velocity_window: timedelta = timedelta(days=1)
    fraud_ip_ua_window: timedelta = timedelta(days=1)
    fraud_ring_depth: int = Field(default=3, ge=2, le=6)
    fraud_alert_on_approve: bool = False
    compensation_tiers: tuple[CompensationTier, ...] = DEFAULT_TIERS
    compensation_customer_period: timedelta = timedelta(days=30)
    compensation_budgets: dict[str, BudgetCaps] = Field(
        default_factory=lambda: dict(DEFAULT_BUDGETS)
    )
    compensation_discount_share: float = Field(default=0.0, ge=0.0, le=1.0)
    compensation_experiment: Annotated[str, Field(min_length=1, max_length=64)] = "complaint-arm-v1"
    advocacy_channels: tuple[Annotated[str, Field(min_length=1, max_length=32)], ...] = tuple(
        sorted(AdvocacyPolicy().channels)
    )
    advocacy_repurchase_window: timedelta = AdvocacyPolicy().repurchase_window
    gift_card_provider_url: str = "http://127.0.0.1:18080"
    gift_card_provider_name: Annotated[str, Field(min_length=1, max_length=64)] = "sandbox"
    gift_card_api_key: SecretStr | None = Field(default=None, min_length=8)
    gift_card_timeout_s: float = Field(default=5.0, gt=0)
    gift_card_max_attempts: int = Field(default=5, ge=1, le=20)
    gift_card_backoff_initial_s: float = Field(default=0.2, gt=0)
    gift_card_backoff_max_s: float = Field(default=5.0, gt=0)
    gift_card_pending_timeout_s: float = Field(default=30.0, gt=0)
    gift_card_concurrency: int = Field(default=16, ge=1, le=256)
    log_level: str = "info"
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    @model_validator(mode="after")
    def _budget_for_every_paying_tier(self) -> Settings:
        """A tier that pays in a currency without a budget could never be granted: say so now."""
        missing = sorted(
            {t.currency for t in self.compensation_tiers if t.amount_cents > 0}
            - set(self.compensation_budgets)
        )
        if missing:
            raise ValueError(f"compensation_budgets has no entry for {', '.join(missing)}")
        return self

    def check_worker(self) -> None:
        """What the worker needs beyond what every command needs; ValueError naming the
        variable otherwise (checked before anything is created)."""
        if self.pii_hash_key is None:
            raise ValueError(
                "REWARDS_PII_HASH_KEY must be set (16+ characters, secret): emails, IPs, "
                "addresses and payment fingerprints are stored only as HMACs under this key"
            )
        if self.gift_card_api_key is None and self.compensates():
            raise ValueError(
                "REWARDS_GIFT_CARD_API_KEY must be set (a secret, from the environment): a "
                "compensation tier pays gift cards (or set REWARDS_COMPENSATION_TIERS to pay none)"
            )
        if self.commit_interval_s * 2 > self.transaction_timeout_s:
            raise ValueError(
                "REWARDS_COMMIT_INTERVAL_S must be at most half of REWARDS_TRANSACTION_TIMEOUT_S "
                f"({self.commit_interval_s} > {self.transaction_timeout_s} / 2)"
            )

    def compensates(self) -> bool:
        """True when some tier pays (then the gift-card provider must be configured)."""
        return any(t.amount_cents > 0 for t in self.compensation_tiers)

    def topic(self, name: str) -> str:
        """The full Kafka topic name for a base name such as `purchases`."""
        return f"{self.topic_prefix}{name}"

    def changelog_topic(self) -> str:
        """The compacted topic that holds every customer account (the state's durable copy)."""
        return f"{self.app_id}-points-accounts-changelog"

    def brokers(self) -> list[str]:
        """Faust broker URLs, one per bootstrap server."""
        return [
            f"kafka://{s.strip()}" for s in self.kafka_bootstrap_servers.split(",") if s.strip()
        ]


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that recreate `settings` in a child process."""
    dumped = settings.model_dump(mode="json")
    for secret in ("pii_hash_key", "gift_card_api_key"):
        value = getattr(settings, secret)
        if value is not None:
            dumped[secret] = value.get_secret_value()
    env = {
        f"REWARDS_{name.upper()}": value if isinstance(value, str) else orjson.dumps(value).decode()
        for name, value in dumped.items()
        if value is not None
    }
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
    env["REDIS_URL"] = settings.redis_url
    return env


def settings_error(exc: Exception) -> str:
    """One line naming the environment variable and what is wrong with it."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else ""
    aliases = {"kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS", "redis_url": "REDIS_URL"}
    name = aliases.get(field, f"REWARDS_{field.upper()}") if field else "settings"
    where = "".join(f"[{part}]" for part in error["loc"][1:])
    shown = "" if "secret" in field or "key" in field else f" (got {error.get('input')!r:.60})"
    return f"{name}{where}: {error['msg']}{shown}"
