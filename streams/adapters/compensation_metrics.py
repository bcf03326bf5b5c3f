"""Metrics of complaint compensation: decisions, gift cards, the budget and the provider."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from processors.compensation import BLOCK_REASONS
from streams.settings_models import BudgetCaps

PROVIDER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OUTCOMES = {
    "gift_card": ("compensated",),
    "discount": ("compensated",),
    "none": ("no_compensation_tier",),
    "blocked": BLOCK_REASONS,
}


@dataclass(frozen=True)
class CompensationMetrics:
    """Counters and gauges of compensation (never a customer or complaint id as a label)."""

    decisions: Counter
    granted_cents: Counter
    issued: Counter
    issued_cents: Counter
    failures: Counter
    budget_used: Gauge
    budget_limit: Gauge
    provider_requests: Counter
    provider_latency: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> CompensationMetrics:
        """Register every compensation metric in `registry`."""
        return cls(
            decisions=Counter(
                "rewards_compensation_decisions", "Complaint compensation decisions, by outcome "
                "(gift_card, discount, none, blocked), reason and arm.",
                ["outcome", "reason", "arm"], registry=registry,
            ),
            granted_cents=Counter(
                "rewards_compensation_granted_cents", "Value granted to complaints (minor units, "
                "e.g. cents), by arm, tier and currency.", ["arm", "tier", "currency"],
                registry=registry,
            ),
            issued=Counter(
                "rewards_gift_cards_issued", "Gift cards the provider issued and rewards-issued "
                "announced, by tier and currency.", ["tier", "currency"], registry=registry,
            ),
            issued_cents=Counter(
                "rewards_gift_cards_issued_cents", "Value of the gift cards issued (minor units), "
                "by tier and currency.", ["tier", "currency"], registry=registry,
            ),
            failures=Counter(
                "rewards_gift_card_failures", "Gift-card orders dead-lettered, by reason "
                "(provider_rejected, provider_unavailable).", ["reason"], registry=registry,
            ),
            budget_used=Gauge(
                "rewards_compensation_budget_used_cents", "Compensation budget reserved in the "
                "current UTC day or month (minor units), as last seen by this worker.",
                ["currency", "period"], registry=registry,
            ),
            budget_limit=Gauge(
                "rewards_compensation_budget_limit_cents", "Compensation budget per UTC day or "
                "month (minor units); absent when uncapped.", ["currency", "period"],
                registry=registry,
            ),
            provider_requests=Counter(
                "rewards_gift_card_provider_requests", "HTTP attempts to the gift-card provider, "
                "by operation (create, status) and outcome (2xx, 4xx, 5xx, timeout, error).",
                ["operation", "outcome"], registry=registry,
            ),
            provider_latency=Histogram(
                "rewards_gift_card_provider_latency_seconds", "Duration of one HTTP attempt to "
                "the gift-card provider.", ["operation"], buckets=PROVIDER_BUCKETS,
                registry=registry,
            ),
        )  # fmt: skip

    def prime(self, caps: Mapping[str, BudgetCaps], tiers: Iterable[tuple[str, str]]) -> None:
        """Create the known label sets at zero and export the budget limits."""
        for outcome, reasons in OUTCOMES.items():
            for reason in reasons:
                self.decisions.labels(outcome, reason, _arm(outcome))
        for tier, currency in tiers:
            self.issued.labels(tier, currency)
            self.issued_cents.labels(tier, currency)
            for arm in ("gift_card", "discount"):
                self.granted_cents.labels(arm, tier, currency)
        for reason in ("provider_rejected", "provider_unavailable"):
            self.failures.labels(reason)
        for operation in ("create", "status"):
            self.provider_latency.labels(operation)
            for outcome in ("2xx", "4xx", "5xx", "timeout", "error"):
                self.provider_requests.labels(operation, outcome)
        for currency, cap in caps.items():
            for period, limit in (("day", cap.day), ("month", cap.month)):
                self.budget_used.labels(currency, period)
                if limit is not None:
                    self.budget_limit.labels(currency, period).set(limit)

    def observe_provider(self, operation: str, outcome: str, seconds: float) -> None:
        """One HTTP attempt to the provider (the client's `observe` hook)."""
        self.provider_requests.labels(operation, outcome).inc()
        self.provider_latency.labels(operation).observe(seconds)

    def set_budget_used(self, used: Mapping[str, tuple[int, int]]) -> None:
        """What each currency has reserved today and this month."""
        for currency, (day, month) in used.items():
            self.budget_used.labels(currency, "day").set(day)
            self.budget_used.labels(currency, "month").set(month)


def _arm(outcome: str) -> str:
    return outcome if outcome in ("gift_card", "discount") else "none"
