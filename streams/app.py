"""`create_app(settings)`: the Faust app with its topics, adapters, agents and metrics."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import faust
from faust.types import TP
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from schemas.codec import REASONS, Codec
from schemas.models import Referral
from streams.agents import Handler, register_fulfilment_agent, register_ingest_agent
from streams.compensation_app import build_fulfilment
from streams.compensation_metrics import CompensationMetrics
from streams.dead_letter import DeadLetterSink
from streams.dedupe import FirstSeenIndex, seen_namespace
from streams.ingest import Admitted, Gate, Rejected
from streams.metrics import PipelineMetrics, serve_metrics
from streams.points import Clock
from streams.points_app import build_points_ledger, wall_clock
from streams.referral_intake import ReferralIntake
from streams.settings import CONTROL_TOPICS, INPUT_TOPICS, Settings
from streams.tuning import limit_fetch_wait

DEAD_LETTER_MAX_BYTES = 4 * 1024 * 1024  # base64 of a 1 MiB record plus its envelope


def create_app(settings: Settings, clock: Clock = wall_clock) -> faust.App:
    """Build the worker's Faust app; Faust's own env variables are ignored (`env={}`)."""
    limit_fetch_wait(settings.fetch_max_wait_ms)
    app = faust.App(
        settings.app_id,
        env={},
        broker=settings.brokers(),
        store=settings.store,
        datadir=str(settings.data_dir),
        web_bind=settings.web_bind,
        web_host=settings.web_host,
        web_port=settings.web_port,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_max_poll_records=5000,
        consumer_max_fetch_size=settings.fetch_max_partition_bytes,
        stream_buffer_maxsize=20000,
        producer_max_request_size=DEAD_LETTER_MAX_BYTES + 65_536,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.commit_interval_s,
        broker_session_timeout=settings.session_timeout_s,
    )
    registry = CollectorRegistry()
    serve_metrics(app, registry)
    metrics = PipelineMetrics.create(registry)
    metrics.prime(INPUT_TOPICS + CONTROL_TOPICS, REASONS)
    redis = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    gate = build_gate(app, settings, metrics, redis)
    care_metrics = CompensationMetrics.create(registry)
    ledger, intake = build_points_ledger(
        app,
        settings,
        registry=registry,
        pipeline_metrics=metrics,
        redis=redis,
        care_metrics=care_metrics,
        clock=clock,
    )
    accounts = ledger.settle_customer_events  # one call per batch for all of a customer's events
    handlers = {
        "purchases": accounts,
        "complaints": accounts,
        "survey-responses": accounts,
        "referral-commands": accounts,
        "fraud-decisions": accounts,
        "referrals": referrals_handler(intake, accounts),
    }
    register_ingest_agent(app, settings, gate, handlers)
    fulfilment = build_fulfilment(app, settings, redis, care_metrics, metrics)
    register_fulfilment_agent(app, settings, gate, fulfilment.fulfil_orders)
    register_lag_timer(app, settings, gate, metrics)
    return app


def referrals_handler(intake: ReferralIntake, accounts: Handler) -> Handler:
    """Sign-ups are scored on the referrer's partition; invitations join the referrer's account."""

    async def handle_referrals(admitted: Sequence[Admitted]) -> Sequence[Rejected]:
        """Score and forward the sign-ups, remember the invitations."""
        invites = [
            a for a in admitted if isinstance(a.event, Referral) and a.event.type == "invited"
        ]
        return [*await intake.score_signups(admitted), *await accounts(invites)]

    return handle_referrals


def build_gate(app: faust.App, settings: Settings, metrics: PipelineMetrics, redis: Redis) -> Gate:
    """Wire the codec, the Redis first-seen index and the dead-letter sink."""
    dead_letter_topic = app.topic(
        settings.topic("dead-letter"),
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        replicas=settings.replication_factor,
        config={"max.message.bytes": str(DEAD_LETTER_MAX_BYTES)},
    )
    first_seen = FirstSeenIndex(
        redis,
        namespace=seen_namespace(settings.app_id),
        ttl_s=settings.dedupe_ttl_s,
        retry_max_s=settings.redis_retry_max_s,
        metrics=metrics,
    )
    return Gate(
        {settings.topic(base): base for base in INPUT_TOPICS + CONTROL_TOPICS},
        Codec(max_event_bytes=settings.max_event_bytes),
        first_seen,
        DeadLetterSink(dead_letter_topic, metrics),
        metrics,
    )


def register_lag_timer(
    app: faust.App, settings: Settings, gate: Gate, metrics: PipelineMetrics
) -> None:
    """Export consumer lag per assigned input partition every `lag_interval_s`."""

    @app.timer(settings.lag_interval_s, name="export-consumer-lag")  # type: ignore[untyped-decorator]
    async def export_consumer_lag() -> None:
        """Set the lag gauge from each partition's high watermark and read offset."""
        assigned = app.consumer.assignment()
        for (topic, partition), offset in list(gate.read_offsets.items()):
            tp = TP(topic, partition)
            if tp not in assigned:
                gate.read_offsets.pop((topic, partition), None)
                with contextlib.suppress(KeyError):
                    metrics.lag.remove(topic, str(partition))
                continue
            highwater = app.consumer.highwater(tp)
            if highwater is not None:
                metrics.lag.labels(topic, str(partition)).set(max(0, highwater - offset - 1))
