"""The one settings object, read from the environment once and passed down."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from processors.advocacy import AdvocacyPolicy
from schemas.codec import CONTROL_TOPICS, INPUT_TOPICS, OUTPUT_TOPICS
from streams.settings_models import (
    DEFAULT_BUDGETS,
    DEFAULT_CAPS,
    DEFAULT_MIN_AMOUNTS,
    DEFAULT_RATES,
    DEFAULT_TIERS,
    DEFAULT_VELOCITY_LIMITS,
    MAX_DURATION,
    BudgetCaps,
    CampaignMultiplier,
    CompensationTier,
    LoyaltyTier,
    PointsExpiry,
    PositiveInt,
    ReferralCap,
)

__all__ = ["CONTROL_TOPICS", "INPUT_TOPICS", "OUTPUT_TOPICS", "Settings"]


class Settings(BaseSettings):
    """Worker configuration; every field can be set as REWARDS_<FIELD> (see README)."""

    model_config = SettingsConfigDict(
        env_prefix="REWARDS_", frozen=True, extra="ignore", populate_by_name=True
    )

    app_id: str = Field(
        default="rewards",
        pattern="^[A-Za-z0-9._-]{1,100}$",
        description="consumer group of the hot path (`<app_id>-fulfilment` for gift cards), name "
        "of the accounts' changelog topic (`<app_id>-points-accounts-changelog`), Redis key "
        "namespace",
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        min_length=1,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "REWARDS_KAFKA_BOOTSTRAP_SERVERS"),
        description="brokers, comma-separated (`REWARDS_KAFKA_BOOTSTRAP_SERVERS` also works)",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:16379/0",
        pattern=r"^rediss?(\+cluster)?://",
        validation_alias=AliasChoices("REDIS_URL", "REWARDS_REDIS_URL"),
        description="Redis for the balance mirror, the identity index, the compensation budget, "
        "gift-card records and the fulfilment loop's first-seen marks (`REWARDS_REDIS_URL` also "
        "works); `redis+cluster://host:port` (any node) selects Redis Cluster",
    )
    redis_cluster: bool = Field(
        default=False,
        description="the Redis at `REDIS_URL` is a Redis Cluster (as `redis+cluster://` says)",
    )
    topic_prefix: str = Field(
        default="", description="prefix of every topic name (tests and benchmarks use their own)"
    )
    partitions: int = Field(default=4, ge=1, description="partitions of the topics it creates")
    replication_factor: int = Field(
        default=1, ge=1, description="replication of the topics it creates (3 on a real cluster)"
    )
    store: str = Field(
        default="rocksdb://",
        pattern="^(rocksdb|memory)://",
        description="where accounts live locally: `rocksdb://`, or `memory://` for throwaway runs "
        "(every start reads the whole changelog back)",
    )
    data_dir: Path = Field(
        default=Path.home() / ".local/state/rewards/data",
        description="local state (RocksDB per partition); one per worker, kept across restarts",
    )
    web_bind: str = Field(default="127.0.0.1", description="address the web server binds")
    web_host: str = Field(
        default="127.0.0.1",
        description="host other workers reach this one at (balance requests are forwarded to "
        "the owner of the customer's partition); bind `0.0.0.0` and set this in containers",
    )
    web_port: int = Field(
        default=6066,
        ge=1,
        le=65535,
        description="web server: `/metrics`, `/points/<id>`, `/live`, `/ready`",
    )
    max_event_bytes: int = Field(
        default=65_536, ge=1024, description="larger records are dead-lettered as `oversized`"
    )
    fetch_max_partition_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024 * 1024,
        description="bytes per partition per fetch (must exceed the largest record batch)",
    )
    fetch_max_wait_ms: int = Field(
        default=100, ge=1, le=1500, description="consumer long-poll limit when there is no data"
    )
    batch_max: int = Field(default=2000, ge=1, description="records per batch at most")
    batch_within_s: float = Field(
        default=0.005, ge=0, description="how long a started batch waits to fill up"
    )
    session_timeout_s: float = Field(
        default=45.0, ge=6.0,
        description="how long a crashed worker keeps its partitions before the group rebalances",
    )  # fmt: skip
    commit_interval_s: float = Field(
        default=0.05,
        gt=0,
        description="how often the open transaction commits (outputs become visible, offsets "
        "are committed); 1 s while catching up on a backlog",
    )
    transaction_timeout_s: float = Field(
        default=30.0,
        ge=1.0,
        le=900.0,
        description="`transaction.timeout.ms`: how long a crashed worker's open transaction can "
        "hold back readers (at least twice the commit interval)",
    )
    startup_timeout_s: float = Field(
        default=120.0, gt=0,
        description="how long start-up retries while the cluster cannot create topics or "
        "register the transactional producers",
    )  # fmt: skip
    shutdown_timeout_s: float = Field(
        default=10.0, gt=0, description="SIGTERM: how long the loops get to finish and commit"
    )
    worker_id: Annotated[str, Field(pattern="^[A-Za-z0-9._-]{1,64}$")] | None = Field(
        default=None,
        description="this worker's stable id, unique per worker: names its transactional "
        "producers and makes it a static member of its consumer groups (a restart within "
        "`REWARDS_SESSION_TIMEOUT_S` moves no partition; a stop no longer hands its partitions on "
        "before that timeout); default: none (dynamic membership), the producers' id from the "
        "host name and the state directory",
    )
    state_cache_accounts: int = Field(
        default=100_000, ge=0, description="decoded accounts kept in memory in front of RocksDB"
    )
    dedupe_ttl_s: int = Field(
        default=7 * 24 * 3600,
        ge=1,
        description="how long (stream time) an event id is remembered to drop copies (7 days)",
    )
    redis_retry_max_s: float = Field(
        default=5.0, gt=0, description="cap of the backoff while Redis is unreachable"
    )
    lag_interval_s: float = Field(
        default=5.0, gt=0, description="how often consumer lag and the budget used are exported"
    )
    points_rates: dict[str, tuple[PositiveInt, PositiveInt]] = Field(
        default_factory=lambda: dict(DEFAULT_RATES),
        description="points per minor units, per currency (JSON): `[1,100]` = 1 point per whole "
        "unit; a currency without a rate is rejected (`no_points_rate`)",
    )
    points_multipliers: tuple[CampaignMultiplier, ...] = Field(
        default=(),
        description='campaign multipliers (JSON list of `{"name","percent","starts_at",'
        '"ends_at"}`): purchases in `[starts_at, ends_at)` earn `percent`/100 times (several '
        "multiply)",
    )
    tiers: tuple[LoyaltyTier, ...] = Field(
        default=(),
        description='loyalty tiers (JSON list, thresholds ascending: `{"name","threshold",'
        '"basis","period","multiplier_percent","grace"}`); `basis` `spend` (minor units) or '
        "`points` earned in the rolling `period` (whole days, default `P365D`); purchases earn "
        "`multiplier_percent`/100 times; a downgrade waits `grace`; one basis, period and grace "
        "for all tiers",
    )
    points_expiry: PointsExpiry | None = Field(
        default=None,
        description='points expiry (JSON object `{"lifetime","inactivity","warning"}`, ISO 8601 '
        "durations): available points expire `lifetime` after they became available (oldest "
        "spent first) and/or all of them after `inactivity` without a purchase, refund, "
        "redemption or adjustment; a warning goes to `points-expiry-warnings` `warning` ahead; "
        "unset: points never expire",
    )
    points_hold: timedelta = Field(
        default=timedelta(days=14),
        description="how long earned points stay pending (the return window); ISO 8601 "
        "duration or seconds",
    )
    points_order_retention: timedelta = Field(
        default=timedelta(days=400),
        description="how long an order is kept for refunds; later refunds are "
        "`refund_unknown_order` anomalies",
    )
    release_interval_s: float = Field(
        default=1.0, gt=0, description="how often the worker releases the holds that ended"
    )
    pii_hash_key: SecretStr | None = Field(
        default=None,
        min_length=16,
        description="**required** by the worker: secret HMAC key (16+ characters) for emails, "
        "IPs, addresses and payment fingerprints; the same on every worker; never logged",
    )
    identity_ttl: timedelta = Field(
        default=timedelta(days=400),
        description="how long identity signals, referral edges and fraud rejections are "
        "remembered in Redis",
    )
    referral_referrer_points: int = Field(
        default=500, ge=0, description="points for the referrer of a converted referral"
    )
    referral_referee_points: int = Field(
        default=500, ge=0, description="points for the referee of a converted referral"
    )
    referral_min_amounts: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: dict(DEFAULT_MIN_AMOUNTS),
        description="minimum qualifying order in minor units, per currency (JSON); other "
        "currencies never qualify",
    )
    referral_window: timedelta = Field(
        default=timedelta(days=30),
        description="a referee's first qualifying purchase must fall within this after sign-up",
    )
    referral_hold: timedelta | None = Field(
        default=None,
        description="how long referral points stay pending (default: `REWARDS_POINTS_HOLD`); a "
        "refund inside it cancels both sides",
    )
    referral_caps: tuple[ReferralCap, ...] = Field(
        default=DEFAULT_CAPS,
        description='per referrer and rolling period (JSON list of `{"period","max_count",'
        '"max_points"}`): rewards beyond a cap are recorded as `capped`, not issued',
    )
    fraud_weights: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict,
        description="per-rule weight overrides (JSON), merged onto the defaults (deploy/README.md)",
    )
    fraud_review_at: float = Field(
        default=40.0, ge=0, description="score from which a referral is held for review"
    )
    fraud_reject_at: float = Field(
        default=80.0, ge=0, description="score from which a referral is rejected"
    )
    fraud_velocity_limits: dict[str, PositiveInt] = Field(
        default_factory=lambda: dict(DEFAULT_VELOCITY_LIMITS),
        description="sign-ups allowed per referrer, IP or device in the window; one more fires "
        "the rule",
    )
    fraud_velocity_window: timedelta = Field(
        default=timedelta(days=1), description="the velocity rules' window"
    )
    fraud_ip_ua_window: timedelta = Field(
        default=timedelta(days=1), description="how close in time a shared IP + user agent counts"
    )
    fraud_ring_depth: int = Field(
        default=3, ge=2, le=6,
        description="longest referral cycle looked for, in customers (2 = mutual)",
    )  # fmt: skip
    fraud_alert_on_approve: bool = Field(
        default=False, description="also publish approve decisions on `fraud-alerts`"
    )
    compensation_tiers: tuple[CompensationTier, ...] = Field(
        default=DEFAULT_TIERS,
        description='the policy table (JSON list, first match wins: `{"name","severities",'
        '"amount_cents","currency","categories","min_spend_cents"}`); default EUR 50 / 25 / 10 '
        "for critical / high / medium, nothing for low; `[]` turns compensation off",
    )
    compensation_customer_period: timedelta = Field(
        default=timedelta(days=30),
        description="at most one compensation per customer in this period (by complaint time)",
    )
    compensation_budgets: dict[str, BudgetCaps] = Field(
        default_factory=lambda: dict(DEFAULT_BUDGETS),
        description="minor units per UTC day and month, per currency (JSON, `null` = uncapped); "
        "every paying tier's currency needs an entry",
    )
    compensation_discount_share: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="share (0..1) of eligible complaints in the experiment's discount arm",
    )  # fmt: skip
    compensation_experiment: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        default="complaint-arm-v1",
        description="salt of the arm assignment (a new value re-draws the arms)",
    )
    advocacy_channels: tuple[Annotated[str, Field(min_length=1, max_length=32)], ...] = Field(
        default=tuple(sorted(AdvocacyPolicy().channels)),
        description="survey channels kept as their own label value; any other is `other`, none "
        "`unknown`",
    )
    advocacy_repurchase_window: timedelta = Field(
        default=AdvocacyPolicy().repurchase_window,
        description="recovery: a purchase within this after a complaint counts as buying again",
    )
    advocacy_clock: Literal["wall", "event"] = Field(
        default="wall",
        description="where the advocacy windows end: `wall` (now) or `event` (the newest event "
        "time the worker has seen: for backfills and replays of history)",
    )
    gift_card_provider_url: str = Field(
        default="http://127.0.0.1:18080",
        pattern="^https?://",
        description="the gift-card provider's API (the sandbox: `rewards sandbox-provider`)",
    )
    gift_card_provider_name: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        default="sandbox", description="the provider's name written to `rewards-issued`"
    )
    gift_card_api_key: SecretStr | None = Field(
        default=None,
        min_length=8,
        description="**required** when a tier pays: the provider's API key (secret, never logged)",
    )
    gift_card_timeout_s: float = Field(default=5.0, gt=0, description="per HTTP attempt")
    gift_card_max_attempts: int = Field(
        default=5, ge=1, le=20,
        description="attempts for 5xx, 408, 429 and timeouts before the order is dead-lettered",
    )  # fmt: skip
    gift_card_backoff_initial_s: float = Field(
        default=0.2, gt=0, description="first backoff between attempts (full jitter)"
    )
    gift_card_backoff_max_s: float = Field(
        default=5.0, gt=0, description="largest backoff between attempts"
    )
    gift_card_pending_timeout_s: float = Field(
        default=30.0, gt=0,
        description="how long an order in progress is polled before it counts as unavailable",
    )  # fmt: skip
    gift_card_concurrency: int = Field(
        default=16, ge=1, le=256, description="provider requests in flight per worker"
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        default="info", description="worker log level"
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop", description="`uvloop` (~20% more throughput, measured) or `asyncio`"
    )

    @model_validator(mode="after")
    def _durations_fit_the_calendar(self) -> Settings:
        """Durations from zero to ten years: the rules add them to dates (2000-2099)."""
        for name, value in self:
            if isinstance(value, timedelta) and not timedelta(0) <= value <= MAX_DURATION:
                raise ValueError(f"REWARDS_{name.upper()} must be between 0 and 10 years")
        for cap in self.referral_caps:
            if not timedelta(0) < cap.period <= MAX_DURATION:
                raise ValueError("REWARDS_REFERRAL_CAPS: a period must be between 0 and 10 years")
        return self

    @model_validator(mode="after")
    def _tiers_form_a_ladder(self) -> Settings:
        """Tiers: unique names, ascending thresholds, one basis, period and grace in whole days."""
        tiers = self.tiers
        if not tiers:
            return self
        problem = None
        if len({t.name for t in tiers}) < len(tiers):
            problem = "tier names must be unique"
        elif any(a.threshold >= b.threshold for a, b in itertools.pairwise(tiers)):
            problem = "thresholds must be strictly ascending"
        elif len({(t.basis, t.period, t.grace) for t in tiers}) > 1:
            problem = "every tier must have the same basis, period and grace"
        elif not timedelta(days=1) <= tiers[0].period <= MAX_DURATION or tiers[0].period.seconds:
            problem = "the period must be whole days, from 1 day to 10 years"
        elif not timedelta(0) <= tiers[0].grace <= MAX_DURATION or tiers[0].grace.seconds:
            problem = "the grace must be whole days, up to 10 years"
        if problem:
            raise ValueError(f"REWARDS_TIERS: {problem}")
        return self

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

    @model_validator(mode="after")
    def _cluster_has_one_database(self) -> Settings:
        """Redis Cluster has database 0 only: a URL naming another would be silently ignored."""
        database = urlsplit(self.redis_url).path.strip("/")
        if self.redis_cluster_mode and database not in ("", "0"):
            raise ValueError(f"REDIS_URL: Redis Cluster has database 0 only (got /{database})")
        return self

    @property
    def redis_cluster_mode(self) -> bool:
        """True when Redis is a Redis Cluster (the setting, or a `redis+cluster://` URL)."""
        return self.redis_cluster or "+cluster://" in self.redis_url

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
