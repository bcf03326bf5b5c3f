"""The settings' value types (multipliers, tiers, expiry, caps, budgets) and their defaults."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from processors.compensation import CompensationPolicy

PositiveInt = Annotated[int, Field(gt=0)]


class CampaignMultiplier(BaseModel):
    """A points multiplier in force for purchases made in [starts_at, ends_at)."""

    model_config = ConfigDict(frozen=True)

    name: str
    percent: int = Field(ge=0)
    starts_at: AwareDatetime
    ends_at: AwareDatetime


class LoyaltyTier(BaseModel):
    """A tier reached at `threshold` of `basis` in the rolling `period` (earn multiplier too)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=64)]
    threshold: int = Field(ge=0)
    basis: Literal["spend", "points"] = "spend"
    period: timedelta = timedelta(days=365)
    multiplier_percent: int = Field(default=100, ge=0, le=10_000)
    grace: timedelta = timedelta(0)


class PointsExpiry(BaseModel):
    """When available points expire: `lifetime` after they became available (oldest spent
    first), and/or all of them after `inactivity`; warned `warning` ahead."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lifetime: timedelta | None = None
    inactivity: timedelta | None = None
    warning: timedelta | None = None

    @model_validator(mode="after")
    def _sensible(self) -> PointsExpiry:
        """At least one reason to expire; every duration above zero and within ten years."""
        if self.lifetime is None and self.inactivity is None:
            raise ValueError("set lifetime and/or inactivity")
        for value in (self.lifetime, self.inactivity, self.warning):
            if value is not None and not timedelta(0) < value <= timedelta(days=3653):
                raise ValueError("durations must be above zero and at most 10 years")
        return self


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
        severities=frozenset(t.severities),  # type: ignore[arg-type]  # str here; pydantic validates
        amount_cents=t.amount_cents,
        currency=t.currency,
    )
    for t in CompensationPolicy().tiers
)
"""The processors' default policy table (EUR 10 / 25 / 50 for medium / high / critical)."""
DEFAULT_BUDGETS = {"EUR": BudgetCaps(day=100_000, month=2_000_000)}


MAX_DURATION = timedelta(days=3653)
"""The longest duration a setting takes (about ten years)."""

DEFAULT_RATES: dict[str, tuple[int, int]] = {"EUR": (1, 100), "USD": (1, 100), "GBP": (1, 100)}
"""1 point per whole EUR, USD or GBP (100 minor units); other currencies need a configured rate."""
