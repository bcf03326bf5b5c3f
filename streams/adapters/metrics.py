"""Prometheus metrics of the ingestion pipeline (no customer id is ever a label)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast, get_args

import faust
from aiohttp.web import Response
from faust import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from schemas.outputs import AnomalyKind
from streams.adapters.kafka_source import SourceMetrics

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
ANOMALY_KINDS = get_args(AnomalyKind)


@dataclass(frozen=True)
class PipelineMetrics:
    """The pipeline's own metrics, registered in one registry per app."""

    registry: CollectorRegistry
    consumed: Counter
    processed: Counter
    dead_letters: Counter
    duplicates: Counter
    redeliveries: Counter
    redis_errors: Counter
    latency: Histogram
    batch_size: Histogram
    lag: Gauge
    gaps: Counter
    rebalances: Counter
    consumer_errors: Counter
    transactions: Counter
    commit_seconds: Histogram
    produced: Counter
    partitions: Gauge
    recovery_seconds: Histogram
    recovered_records: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> PipelineMetrics:
        """Register every metric in `registry`."""
        return cls(
            registry=registry,
            consumed=Counter(
                "rewards_events_consumed", "Records read from an input topic.", ["topic"],
                registry=registry,
            ),
            processed=Counter(
                "rewards_events_processed",
                "Valid, first-seen events handed to the domain processors.",
                ["topic"], registry=registry,
            ),
            dead_letters=Counter(
                "rewards_dead_letters",
                "Records sent to the dead-letter topic, by source topic and reason.",
                ["topic", "reason"], registry=registry,
            ),
            duplicates=Counter(
                "rewards_duplicate_events",
                "Records skipped because their event_id was already processed from another offset.",
                ["topic"], registry=registry,
            ),
            redeliveries=Counter(
                "rewards_redelivered_events",
                "Records seen again at the same offset (crash before commit); reprocessed.",
                ["topic"], registry=registry,
            ),
            redis_errors=Counter(
                "rewards_redis_errors", "Failed Redis calls (retried).", ["operation"],
                registry=registry,
            ),
            latency=Histogram(
                "rewards_processing_latency_seconds",
                "Time from the record's Kafka timestamp to the end of its processing.",
                ["topic"], buckets=LATENCY_BUCKETS, registry=registry,
            ),
            batch_size=Histogram(
                "rewards_batch_size", "Records per processed batch.", ["topic"],
                buckets=BATCH_BUCKETS, registry=registry,
            ),
            lag=Gauge(
                "rewards_consumer_lag",
                "Records between the partition's high watermark and the worker's read position.",
                ["topic", "partition"], registry=registry,
            ),
            gaps=Counter(
                "rewards_offset_gaps",
                "Records found past the offset expected next: reseeked (fetched again), absent "
                "(the offsets hold no record: transaction markers, compaction) or "
                "lost_to_retention (deleted before they were read: an alert).",
                ["loop", "topic", "outcome"], registry=registry,
            ),
            rebalances=Counter(
                "rewards_rebalances", "Consumer group events: assigned, revoked, lost.",
                ["loop", "event"], registry=registry,
            ),
            consumer_errors=Counter(
                "rewards_consumer_errors", "Errors the Kafka consumer reported (it retries).",
                ["loop", "error"], registry=registry,
            ),
            transactions=Counter(
                "rewards_transactions", "Producer transactions, by outcome (committed, aborted).",
                ["loop", "outcome"], registry=registry,
            ),
            commit_seconds=Histogram(
                "rewards_transaction_commit_seconds",
                "Time to commit a transaction (its input offsets and outputs become visible).",
                ["loop"], buckets=LATENCY_BUCKETS, registry=registry,
            ),
            produced=Counter(
                "rewards_records_produced", "Records produced in committed transactions, by topic "
                "(the accounts' changelog included).", ["loop", "topic"], registry=registry,
            ),
            partitions=Gauge(
                "rewards_partitions", "Partitions assigned to this worker, by state (ready: state "
                "recovered and processing; recovering).", ["loop", "state"], registry=registry,
            ),
            recovery_seconds=Histogram(
                "rewards_recovery_seconds", "Time from an assignment to its partitions being "
                "ready (changelog read, indexes rebuilt).", ["loop"],
                buckets=(0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300), registry=registry,
            ),
            recovered_records=Counter(
                "rewards_recovered_records", "Changelog records read back into local state.",
                ["loop"], registry=registry,
            ),
        )  # fmt: skip

    def prime(self, topics: Sequence[str], reasons: Sequence[str]) -> None:
        """Create every known label set at zero, so series exist before the first event."""
        for topic in topics:
            for counter in (self.consumed, self.processed, self.duplicates, self.redeliveries):
                counter.labels(topic)
            self.latency.labels(topic)
            self.batch_size.labels(topic)
            for reason in reasons:
                self.dead_letters.labels(topic, reason)
        for operation in ("dedupe", "points_mirror"):
            self.redis_errors.labels(operation)


def serve_metrics(app: faust.App, registry: CollectorRegistry) -> None:
    """Serve `registry` at /metrics on the worker's web server.

    No `_created` series: they doubled every counter's and histogram's lines (and the scrape's
    cost) and no dashboard or rule reads them.
    """
    disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated in prometheus_client

    @app.page("/metrics")
    async def metrics(view: web.View, request: web.Request) -> web.Response:
        """Prometheus exposition of the worker's metrics."""
        body = generate_latest(registry)
        return cast(
            web.Response, Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
        )


@dataclass(frozen=True)
class LoopMetrics:
    """One loop's transaction counters."""

    loop: str
    prefix: str
    """The topic prefix, stripped from topic labels."""
    metrics: PipelineMetrics

    def committed(self, seconds: float, produced: Mapping[str, int]) -> None:
        """A transaction committed in `seconds`, with `produced` records per full topic name."""
        m = self.metrics
        m.transactions.labels(self.loop, "committed").inc()
        m.commit_seconds.labels(self.loop).observe(seconds)
        for topic, count in produced.items():
            m.produced.labels(self.loop, topic.removeprefix(self.prefix)).inc(count)

    def aborted(self) -> None:
        """A transaction was aborted."""
        self.metrics.transactions.labels(self.loop, "aborted").inc()

    def partitions(self, assigned: int, ready: int) -> None:
        """How many partitions the loop has, and how many are ready."""
        self.metrics.partitions.labels(self.loop, "ready").set(ready)
        self.metrics.partitions.labels(self.loop, "recovering").set(assigned - ready)

    def recovered(self, seconds: float, records: int) -> None:
        """An assignment's partitions are ready."""
        self.metrics.recovery_seconds.labels(self.loop).observe(seconds)
        self.metrics.recovered_records.labels(self.loop).inc(records)


def source_metrics(metrics: PipelineMetrics, loop: str) -> SourceMetrics:
    """The consumer's counters, labelled with its loop (every series primed at zero)."""
    for event in ("assigned", "revoked", "lost"):
        metrics.rebalances.labels(loop, event)
    for outcome in ("committed", "aborted"):
        metrics.transactions.labels(loop, outcome)
    for state in ("ready", "recovering"):
        metrics.partitions.labels(loop, state)
    metrics.commit_seconds.labels(loop)
    metrics.recovery_seconds.labels(loop)
    metrics.recovered_records.labels(loop)
    return SourceMetrics(loop, metrics.gaps, metrics.rebalances, metrics.consumer_errors)


def loop_metrics(
    metrics: PipelineMetrics, loop: str, prefix: str, topics: Sequence[str]
) -> LoopMetrics:
    """A loop's transaction counters, with the topics it produces to primed at zero."""
    for topic in topics:
        metrics.produced.labels(loop, topic)
    return LoopMetrics(loop, prefix, metrics)


@dataclass(frozen=True)
class PointsMetrics:
    """Metrics of the points ledger (totals only: no customer id is ever a label)."""

    points: Counter
    entries: Counter
    anomalies: Counter
    rewards: Counter
    held_customers: Gauge
    recoveries: Counter
    release_errors: Counter
    mirror_lag: Gauge
    mirror_queued: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> PointsMetrics:
        """Register every points metric in `registry`, each known label set at zero."""
        made = cls(
            points=Counter(
                "rewards_points", "Points moved, by ledger entry kind (earn, release, reversal, "
                "redemption, referral).", ["kind"], registry=registry,
            ),
            entries=Counter(
                "rewards_points_ledger_entries", "Entries published to points-ledger.", ["kind"],
                registry=registry,
            ),
            anomalies=Counter(
                "rewards_points_anomalies", "Anomalies published to points-anomalies.", ["kind"],
                registry=registry,
            ),
            rewards=Counter(
                "rewards_issued", "Rewards published to rewards-issued.", ["kind"],
                registry=registry,
            ),
            held_customers=Gauge(
                "rewards_points_release_schedule_size",
                "Scheduled hold ends tracked by this worker (customers with pending points).",
                registry=registry,
            ),
            mirror_lag=Gauge(
                "rewards_mirror_lag_seconds",
                "Age of the oldest committed balance not yet written to the Redis mirror (0: "
                "caught up).", registry=registry,
            ),
            mirror_queued=Gauge(
                "rewards_mirror_queued",
                "Committed balances waiting to be written to the Redis mirror.", registry=registry,
            ),
            release_errors=Counter(
                "rewards_points_release_errors",
                "Accounts whose hold-end release raised (logged; their holds stay scheduled).",
                registry=registry,
            ),
            recoveries=Counter(
                "rewards_points_recoveries",
                "Table recoveries completed (after start-up and every rebalance); the worker "
                "serves balances and processes events once this is >= 1.",
                registry=registry,
            ),
        )  # fmt: skip
        for kind in ("earn", "release", "reversal", "redemption", "referral"):
            made.points.labels(kind)
            made.entries.labels(kind)
        for kind in ANOMALY_KINDS:
            made.anomalies.labels(kind)
        made.rewards.labels("points")
        return made
