"""Rolling-window advocacy metrics from the table: NPS, CES, funnel, recovery, points liability.

Why gauges from table state, not counters with the windows in PromQL: every count here is derived
from the accounts (`processors.advocacy.facts`), which are idempotent (a replayed or redelivered
event changes nothing) and changelog-backed. A worker keeps, for the partitions it owns, each
fact's time in a sorted list per metric key; a scrape counts the facts inside each window
(exact, to the second) and exports the sums as gauges. After a restart or a rebalance the lists
are rebuilt from the recovered accounts, and a revoked partition's facts leave with it, so the
sum over workers neither double counts a replay nor loses what a rebalance moved. Counters with
`increase()` would count a crash-redelivered event twice (once per process) and extrapolate at
the window's edges.

With the event clock (`AdvocacyPolicy.event_clock`, for backfills) the windows end at the newest
fact time of the owned partitions instead of the wall clock; `rewards_advocacy_window_end_seconds`
says where. The workers agree on one end through Redis (`SharedWindowEnd`), so that the sums
over workers add windows with one end.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sortedcontainers import SortedList

from processors.account import Account
from processors.advocacy import (
    FUNNEL_STAGES,
    RECOVERY_ARMS,
    RECOVERY_STAGES,
    AdvocacyPolicy,
    advocacy_changed,
    facts,
)

Key = tuple[str, ...]
CATEGORIES = ("promoter", "passive", "detractor")


class AdvocacyWindows:
    """The facts of the accounts this worker owns, by partition and metric key."""

    def __init__(self, policy: AdvocacyPolicy) -> None:
        self.policy = policy
        self._facts: dict[int, defaultdict[Key, SortedList]] = {}
        self._liability: dict[int, list[int]] = {}
        self.shared_end: float | None = None
        """With the event clock: the newest fact time of all workers (`SharedWindowEnd`), so
        that every worker's windows end at the same time."""

    def rebuilding(
        self, partitions: Iterable[int], accounts: Iterable[tuple[int, Account]]
    ) -> Iterator[tuple[int, Account]]:
        """Start over for `partitions`, indexing each account as it passes through (the scan
        after a recovery feeds the release schedule too)."""
        for partition in partitions:
            self._facts[partition] = defaultdict(SortedList)
            self._liability[partition] = [0, 0]
        for partition, account in accounts:
            self.track(partition, Account(account.customer_id), account)
            yield partition, account

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop revoked partitions: their next owner exports them."""
        for partition in partitions:
            self._facts.pop(partition, None)
            self._liability.pop(partition, None)

    def track(self, partition: int, before: Account, after: Account) -> None:
        """Move the facts and balances of one saved account from `before` to `after`."""
        liability = self._liability.setdefault(partition, [0, 0])
        liability[0] += after.points.pending - before.points.pending
        liability[1] += after.points.available - before.points.available
        if not advocacy_changed(before, after):
            return
        lists = self._facts.setdefault(partition, defaultdict(SortedList))
        gone = Counter((f.key, f.at) for f in facts(before))
        came = Counter((f.key, f.at) for f in facts(after))
        for (key, at), n in (gone - came).items():
            for _ in range(n):
                lists[key].discard(at.timestamp())
        for (key, at), n in (came - gone).items():
            for _ in range(n):
                lists[key].add(at.timestamp())

    def counts(self, now: datetime) -> dict[tuple[Key, str], int]:
        """Facts per (key, window) at `now`, summed over the owned partitions; facts older than
        the longest window are dropped on the way."""
        out: defaultdict[tuple[Key, str], int] = defaultdict(int)
        end = now.timestamp()
        cutoff = end - self.policy.retention.total_seconds()
        for lists in self._facts.values():
            for key, times in lists.items():
                stale = times.bisect_left(cutoff)
                if stale:
                    del times[:stale]
                for window, span in self.policy.windows:
                    out[(key, window)] += len(times) - times.bisect_left(end - span.total_seconds())
        return out

    def window_end(self, wall: datetime) -> datetime:
        """Where the windows end: the wall clock, or with the event clock the newest fact time
        of the owned partitions (never after the wall clock; the wall clock when there is none)."""
        if not self.policy.event_clock:
            return wall
        newest = max((t for t in (self.newest_fact(), self.shared_end) if t is not None),
                     default=None)  # fmt: skip
        if newest is None:
            return wall
        return min(wall, datetime.fromtimestamp(newest, wall.tzinfo or UTC))

    def newest_fact(self) -> float | None:
        """The newest fact time (unix seconds) of the owned partitions, if any."""
        return max((t[-1] for lists in self._facts.values() for t in lists.values() if t),
                   default=None)  # fmt: skip

    def liability(self) -> tuple[int, int]:
        """Pending and available points held by the owned accounts."""
        return (
            sum(v[0] for v in self._liability.values()),
            sum(v[1] for v in self._liability.values()),
        )


class AdvocacyCollector(Collector):
    """Exports the windows as gauges at scrape time (every known label set, zeros included)."""

    def __init__(self, windows: AdvocacyWindows, clock: Callable[[], datetime]) -> None:
        self._windows = windows
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One family per metric; values for this worker's partitions only (sum over workers)."""
        end = self._windows.window_end(self._clock())
        counts = self._windows.counts(end)
        policy = self._windows.policy
        yield GaugeMetricFamily(
            "rewards_advocacy_window_end_seconds",
            "Where this worker's rolling windows end, unix time: the wall clock, or the newest "
            "event time seen with REWARDS_ADVOCACY_CLOCK=event.",
            value=end.timestamp(),
        )
        channels = sorted({*policy.channels, "other", "unknown"})
        windows = [w for w, _ in policy.windows]
        yield from self._nps(counts, channels, windows)
        yield from self._funnel(counts, windows)
        yield self._recovery(counts, windows)
        outstanding = GaugeMetricFamily(
            "rewards_points_outstanding",
            "Points held by the accounts this worker owns (the liability), by state.",
            labels=["state"],
        )
        for state, value in zip(("pending", "available"), self._windows.liability(), strict=True):
            outstanding.add_metric([state], value)
        yield outstanding

    def _nps(
        self, counts: dict[tuple[Key, str], int], channels: list[str], windows: list[str]
    ) -> Iterator[GaugeMetricFamily]:
        responses = GaugeMetricFamily(
            "rewards_nps_responses",
            "Survey answers in the rolling window, by channel and NPS category (promoter 9-10, "
            "passive 7-8, detractor 0-6).",
            labels=["window", "channel", "category"],
        )
        ces = GaugeMetricFamily(
            "rewards_ces_responses",
            "Survey answers with a Customer Effort Score (1-7) in the rolling window.",
            labels=["window", "channel"],
        )
        ces_sum = GaugeMetricFamily(
            "rewards_ces_score_sum",
            "Sum of the Customer Effort Scores in the rolling window (average = sum / responses).",
            labels=["window", "channel"],
        )
        for window in windows:
            for channel in channels:
                for cat in CATEGORIES:
                    responses.add_metric(
                        [window, channel, cat], counts.get((("nps", channel, cat), window), 0)
                    )
                scored = [
                    (v, counts.get((("ces", channel, str(v)), window), 0)) for v in range(1, 8)
                ]
                ces.add_metric([window, channel], sum(n for _, n in scored))
                ces_sum.add_metric([window, channel], sum(v * n for v, n in scored))
        yield from (responses, ces, ces_sum)

    def _funnel(
        self, counts: dict[tuple[Key, str], int], windows: list[str]
    ) -> Iterator[GaugeMetricFamily]:
        funnel = GaugeMetricFamily(
            "rewards_referral_funnel",
            "Referral funnel in the rolling window: invitations sent, referees signed up "
            "(attributed), conversions (first qualifying purchase).",
            labels=["window", "stage"],
        )
        referrers = GaugeMetricFamily(
            "rewards_referrers_active",
            "Customers who sent at least one invitation in the rolling window.",
            labels=["window"],
        )
        for window in windows:
            for stage in FUNNEL_STAGES:
                funnel.add_metric([window, stage], counts.get((("funnel", stage), window), 0))
            referrers.add_metric([window], counts.get((("referrer",), window), 0))
        yield from (funnel, referrers)

    def _recovery(
        self, counts: dict[tuple[Key, str], int], windows: list[str]
    ) -> GaugeMetricFamily:
        recovery = GaugeMetricFamily(
            "rewards_recovery_complaints",
            "Complaints decided in the rolling window (by complaint time), by compensation arm "
            "(gift_card, discount, none: a limit blocked it) and how far the customer recovered: "
            "decided, surveyed (answered a survey since), promoter (next answer 9-10), "
            "passive_or_better (>= 7), repurchased (bought again within 30 days).",
            labels=["window", "arm", "stage"],
        )
        for window in windows:
            for arm in RECOVERY_ARMS:
                for stage in RECOVERY_STAGES:
                    recovery.add_metric(
                        [window, arm, stage], counts.get((("recovery", arm, stage), window), 0)
                    )
        return recovery
