"""`create_app(settings)`: the Faust app, its two loops, web pages, timers and metrics.

Faust runs the worker: its lifecycle and signals, the web server and the timers. Kafka is not
Faust's here (the app is started with `enable_kafka=False`): the loops own their consumers and
transactional producers (`streams.runtime`, `streams.pipeline`), so that positions, commits and
state recovery are theirs and batches never go through Faust's per-record stream machinery
(faust-streaming #517, #596, #606 are about exactly those).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import faust
from faust.app.base import BootStrategy
from mode import Service
from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError

from schemas.codec import REASONS
from streams.account_settler import Clock, wall_clock
from streams.adapters.compensation_metrics import CompensationMetrics
from streams.adapters.metrics import PipelineMetrics, serve_metrics
from streams.adapters.redis_client import RedisClient, connect
from streams.adapters.redis_retry import AWAY
from streams.adapters.window_end import SharedWindowEnd
from streams.advocacy import AdvocacyWindows
from streams.compensation_app import build_fulfilment, register_budget_timer
from streams.hot_path import HotPath, Wiring, build_hot_path
from streams.runtime import Loop
from streams.settings import CONTROL_TOPICS, INPUT_TOPICS, Settings
from streams.web import register_pages

log = logging.getLogger(__name__)
WINDOW_END_INTERVAL_S = 5.0
"""How often workers agree on the event-time advocacy windows' end."""


class Rewards:
    """What `create_app` built: the loops and how the worker reacts when one fails."""

    def __init__(self, hot: HotPath, loops: list[Loop], shutdown_timeout_s: float) -> None:
        self.hot = hot
        self.loops = loops
        self.shutdown_timeout_s = shutdown_timeout_s
        self.on_fatal: Callable[[BaseException], None] = _exit_now
        """Replaced by the CLI with a graceful stop of the Faust worker (exit code 1)."""

    def fatal(self, exc: BaseException) -> None:
        """A loop or a recovery failed: the worker must exit non-zero, promptly."""
        self.on_fatal(exc)


def create_app(
    settings: Settings, clock: Clock = wall_clock, partitions: int | None = None
) -> faust.App:
    """Build the worker's Faust app; Faust's own env variables are ignored (`env={}`)."""
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
    )
    app.boot_strategy = BootStrategy(app, enable_kafka=False, enable_sensors=False)
    registry = CollectorRegistry()
    serve_metrics(app, registry)
    metrics = PipelineMetrics.create(registry)
    metrics.prime(INPUT_TOPICS + CONTROL_TOPICS, REASONS)
    redis = connect(settings.redis_url, cluster=settings.redis_cluster_mode)
    care_metrics = CompensationMetrics.create(registry)
    rewards: Rewards | None = None

    def fatal(exc: BaseException) -> None:
        assert rewards is not None
        rewards.fatal(exc)

    wiring = Wiring(settings, registry, metrics, care_metrics, clock)
    hot = build_hot_path(wiring, redis, partitions=partitions or settings.partitions, fatal=fatal)
    fulfilment = build_fulfilment(settings, redis, care_metrics, metrics, fatal)
    rewards = Rewards(hot, [hot.loop, fulfilment], settings.shutdown_timeout_s)
    app.rewards = rewards  # type: ignore[attr-defined]  # our handle on the faust.App
    register_pages(app, hot, rewards.loops, f"{settings.web_host}:{settings.web_port}")
    register_budget_timer(app, settings, hot.care, clock)
    register_lag_timer(app, settings, rewards.loops, metrics)
    if settings.advocacy_clock == "event":
        register_window_end_timer(app, settings, hot.accounts.advocacy, redis)
    app.service(loops_service(rewards))
    return app


def loops_service(rewards: Rewards) -> type[Service]:
    """A service that starts the loops with the app and stops them (bounded) before it stops."""

    class Loops(Service):
        """The worker's consumer loops."""

        async def on_start(self) -> None:
            """Set up the clients, join the groups, start the loops."""
            for loop in rewards.loops:
                await loop.start(rewards.fatal)

        async def on_stop(self) -> None:
            """Finish and commit the batch in hand, leave the groups, close the clients."""
            await asyncio.gather(*(loop.stop(rewards.shutdown_timeout_s) for loop in rewards.loops))

    return Loops


def register_lag_timer(
    app: faust.App, settings: Settings, loops: list[Loop], metrics: PipelineMetrics
) -> None:
    """Export consumer lag per assigned partition every `lag_interval_s`."""
    exported: set[tuple[str, str]] = set()

    @app.timer(settings.lag_interval_s, name="export-consumer-lag")  # type: ignore[untyped-decorator]  # faust is untyped
    async def export_consumer_lag() -> None:
        """Set the lag gauge from each partition's high watermark and read position."""
        current: set[tuple[str, str]] = set()
        for loop in loops:
            for (topic, partition), lag in loop.source.lag().items():
                metrics.lag.labels(topic, str(partition)).set(lag)
                current.add((topic, str(partition)))
        for labels in exported - current:
            with contextlib.suppress(KeyError):
                metrics.lag.remove(*labels)
        exported.clear()
        exported.update(current)


def register_window_end_timer(
    app: faust.App, settings: Settings, windows: AdvocacyWindows, redis: RedisClient
) -> None:
    """With the event clock: agree on one window end with the other workers every few seconds."""
    shared = SharedWindowEnd(redis, settings.app_id)

    @app.timer(WINDOW_END_INTERVAL_S, name="agree-advocacy-window-end")  # type: ignore[untyped-decorator]  # faust is untyped
    async def agree_window_end() -> None:
        """Offer this worker's newest fact time; end the windows at the newest of all."""
        try:
            windows.shared_end = await shared.agree(windows.newest_fact())
        except (*AWAY, RedisError) as exc:  # the next round tries again; metrics stay served
            log.warning("advocacy window end not agreed (%s)", exc)


def _exit_now(exc: BaseException) -> None:
    """Without a CLI worker around: exit the process non-zero at once."""
    import os  # noqa: PLC0415

    log.critical("fatal: %r", exc)
    os._exit(1)
