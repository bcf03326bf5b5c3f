"""Tiers and expiry in the worker: their policies from settings and the customers-per-tier gauge."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from processors.account import Account
from processors.expiry import ExpiryPolicy
from processors.tiers import Tier, TierPolicy
from streams.settings import Settings


def tier_policy(settings: Settings) -> TierPolicy:
    """The tier ladder from settings (no tiers: the feature is off)."""
    tiers = settings.tiers
    if not tiers:
        return TierPolicy()
    return TierPolicy(
        tiers=tuple(Tier(t.name, t.threshold, t.multiplier_percent) for t in tiers),
        basis=tiers[0].basis,
        period_days=tiers[0].period.days,
        grace_days=tiers[0].grace.days,
    )


def expiry_policy(settings: Settings) -> ExpiryPolicy:
    """The points expiry from settings (unset: points never expire)."""
    expiry = settings.points_expiry
    if expiry is None:
        return ExpiryPolicy()
    return ExpiryPolicy(expiry.lifetime, expiry.inactivity, expiry.warning)


class TierCounts(Collector):
    """How many of the owned partitions' customers hold each tier (moved on commit, rebuilt
    after a recovery); exported as a gauge labelled by tier name only."""

    def __init__(self, policy: TierPolicy) -> None:
        self.policy = policy
        self._counts: dict[int, Counter[str]] = {}

    def track(self, partition: int, before: Account, after: Account) -> None:
        """One saved account moved from `before` to `after`."""
        if before.tier.name == after.tier.name:
            return
        counts = self._counts.setdefault(partition, Counter())
        if before.tier.name is not None:
            counts[before.tier.name] -= 1
        if after.tier.name is not None:
            counts[after.tier.name] += 1

    def rebuilding(
        self, partitions: Iterable[int], accounts: Iterable[tuple[int, Account]]
    ) -> Iterator[tuple[int, Account]]:
        """Start over for `partitions`, counting each account as it passes through."""
        for partition in partitions:
            self._counts[partition] = Counter()
        for partition, account in accounts:
            if account.tier.name is not None:
                self._counts[partition][account.tier.name] += 1
            yield partition, account

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop revoked partitions: their next owner counts them."""
        for partition in partitions:
            self._counts.pop(partition, None)

    def totals(self) -> Counter[str]:
        """Customers per tier over the owned partitions."""
        total: Counter[str] = Counter()
        for counts in self._counts.values():
            total.update(counts)
        return total

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauge, every configured tier included (zeros too)."""
        gauge = GaugeMetricFamily(
            "rewards_tier_customers",
            "Customers of this worker's partitions holding each loyalty tier.",
            labels=["tier"],
        )
        totals = self.totals()
        for tier in self.policy.tiers:
            gauge.add_metric([tier.name], totals.get(tier.name, 0))
        yield gauge
