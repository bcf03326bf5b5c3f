"""`rewards bench`: worker throughput, latency and memory beside a raw-consumer baseline."""

from __future__ import annotations

import contextlib
import random
import secrets
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import orjson
from confluent_kafka import Consumer
from pydantic import SecretStr

from schemas.codec import Codec, DecodeError
from streams.housekeeping import purge
from streams.kafka_io import ensure_topics, fast_producer, produce
from streams.publish import paced
from streams.settings import INPUT_TOPICS, Settings, settings_env
from streams.simulator import ShopSimulator, SimEvent
from streams.worker_process import WorkerProcess, free_port

LATENCY = "rewards_processing_latency_seconds_bucket"
SETTLE_S = 2.0


@dataclass(frozen=True)
class BenchOptions:
    """What to run."""

    events: int
    latency_rate: float
    latency_seconds: float
    json_path: Path | None
    workload: Literal["shop", "purchases", "referrals"] = "shop"
    customers: int = 10_000


@dataclass(frozen=True)
class BenchResult:
    """The figures one run produced."""

    workload: str
    customers: int
    events: int
    produce_per_s: float
    baseline_consume_decode_per_s: float
    codec_decode_per_s: float
    worker_per_s: float
    latency_rate: float
    latency_p50_ms: float
    latency_p99_ms: float
    worker_peak_rss_mib: float


def purchase_stream(n: int, customers: int, seed: int) -> list[SimEvent]:
    """Purchases only, customers in turn (so `customers` accounts exist once n >= customers); one
    in five refunds an earlier order and one in ten redeems points; a third of the purchases are
    back-dated past the hold, so releases and rewards are in the measured path too."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    out: list[SimEvent] = []
    for i in range(n):
        customer = f"cust-{i % customers:07d}"
        bought_at = now - timedelta(days=rng.choice((0, 1, 20)))
        body: dict[str, object] = {
            "event_id": f"bench-{seed}-{i}", "occurred_at": bought_at.isoformat(),
            "customer_id": customer, "type": "purchase", "order_id": f"o-{i}",
            "amount_cents": rng.randint(100, 20_000), "currency": "EUR",
        }  # fmt: skip
        if i >= customers and rng.random() < 0.2:
            body |= {"type": "refund", "order_id": f"o-{i - customers}",
                     "amount_cents": rng.randint(1, 100)}  # fmt: skip
        elif rng.random() < 0.1:
            body["points_redeemed"] = rng.randint(1, 50)
        out.append(SimEvent("purchases", customer.encode(), orjson.dumps(body), body["type"]))  # type: ignore[arg-type]
    return out


def referral_stream(n: int, customers: int, seed: int) -> list[SimEvent]:
    """Referral-heavy: of every five events two are sign-ups (scored against the identity index,
    forwarded to the referee's partition), two are referees' purchases (conversions, so the
    referrer's credit crosses partitions again) and one a referrer's purchase with its context;
    one sign-up in 50 shares the referrer's device (a self-referral to review)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    out: list[SimEvent] = []
    referees: list[tuple[str, str]] = []

    def context(who: str) -> dict[str, str]:
        ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.9"
        return {"email": f"{who}@example.org", "ip": ip, "device_id": f"dev-{who}",
                "payment_fingerprint": f"fp-{who}"}  # fmt: skip

    for i in range(n):
        at, kind = (now - timedelta(seconds=n - i)).isoformat(), i % 5
        referrer = f"cust-{rng.randrange(customers):07d}"
        body: dict[str, object]
        if kind < 2 or not referees:
            referee = f"ref-{seed}-{i}"
            ctx = context(referee) | ({"device_id": f"dev-{referrer}"} if i % 50 == 0 else {})
            body = {"event_id": f"bench-{seed}-{i}", "occurred_at": at, "type": "signed_up",
                    "referrer_id": referrer, "referral_code": f"code-{referrer}",
                    "referee_id": referee, "context": ctx}  # fmt: skip
            referees.append((referee, referrer))
            out.append(SimEvent("referrals", referrer.encode(), orjson.dumps(body), "signed_up"))
            continue
        buyer = referees.pop(rng.randrange(len(referees)))[0] if kind < 4 else referrer
        body = {"event_id": f"bench-{seed}-{i}", "occurred_at": at, "customer_id": buyer,
                "type": "purchase", "order_id": f"o-{seed}-{i}", "currency": "EUR",
                "amount_cents": rng.randint(2_500, 9_000), "context": context(buyer)}  # fmt: skip
        out.append(SimEvent("purchases", buyer.encode(), orjson.dumps(body), "purchase"))
    return out


def workload_events(options: BenchOptions, n: int, seed: int) -> list[SimEvent]:
    """The events of the chosen workload."""
    if options.workload == "purchases":
        return purchase_stream(n, options.customers, seed)
    if options.workload == "referrals":
        return referral_stream(n, options.customers, seed)
    return list(ShopSimulator(seed=seed, bad_event_ratio=0.002 if seed == 11 else 0.0).events(n))


def publish_all(settings: Settings, events: list[SimEvent], rate: float = 0) -> float:
    """Publish events (paced when `rate` > 0); returns records per second."""
    producer = fast_producer(settings, **{"linger.ms": 2 if rate else 20})
    for topic in {sim.topic for sim in events}:  # a cold producer holds its first records ~0.5 s
        producer.list_topics(settings.topic(topic), timeout=10)
    start = time.perf_counter()
    for n, sim in enumerate(paced(events, rate)):
        produce(producer, settings.topic(sim.topic), sim.value, sim.key)
        if n % 500 == 0:
            producer.poll(0)
    producer.flush(60)
    return len(events) / (time.perf_counter() - start)


def baseline_consume(settings: Settings, expected: int) -> float:
    """Plain confluent-kafka consumer with orjson decode of every record: records per second."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"baseline-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 << 20,
            "max.partition.fetch.bytes": 8 << 20,  # the 1 MiB default halves the rate
        }
    )
    consumer.subscribe([settings.topic(t) for t in INPUT_TOPICS])
    seen, start = 0, None
    deadline = time.monotonic() + 300
    while seen < expected and time.monotonic() < deadline:
        batch = consumer.consume(num_messages=10_000, timeout=1.0)
        if batch and start is None:
            start = time.perf_counter()
        for msg in batch:
            if msg.error() is None:
                seen += 1
                with contextlib.suppress(orjson.JSONDecodeError):
                    orjson.loads(msg.value() or b"")
    consumer.close()
    return seen / (time.perf_counter() - start) if start else 0.0


def codec_rate(events: list[SimEvent]) -> float:
    """Validating decodes per second of the same records, in process (no Kafka)."""
    codec = Codec()
    start = time.perf_counter()
    for sim in events:
        with contextlib.suppress(DecodeError):
            codec.decode(sim.topic, sim.value)
    return len(events) / (time.perf_counter() - start)


def wait_consumed(
    worker: WorkerProcess, target: float, timeout_s: float = 600
) -> tuple[float, float]:
    """Poll until the worker consumed `target` input records (not counting the control topics'
    records it sends itself); returns (seconds busy, input records counted)."""
    first: tuple[float, float] | None = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        consumed = sum(
            worker.total("rewards_events_consumed_total", topic=topic) for topic in INPUT_TOPICS
        )
        now = time.perf_counter()
        if consumed > 0 and first is None:
            first = (now, consumed)
        if consumed >= target:
            assert first is not None
            return max(now - first[0], 1e-9), consumed - first[1]
        time.sleep(0.5)  # each scrape costs the worker CPU: poll gently
    raise TimeoutError(f"worker consumed fewer than {target} records in {timeout_s}s")


def latency_buckets(worker: WorkerProcess) -> dict[float, float]:
    """Cumulative latency histogram buckets summed over topics."""
    out: dict[float, float] = {}
    for (name, labels), value in worker.samples().items():
        if name == LATENCY:
            le = float(dict(labels)["le"])
            out[le] = out.get(le, 0.0) + value
    return out


def quantile(buckets: dict[float, float], q: float) -> float:
    """Quantile from cumulative buckets, interpolated linearly inside a bucket (as PromQL does)."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for upper in bounds:
        if buckets[upper] >= rank:
            if upper == float("inf"):
                return lower
            width = buckets[upper] - below
            return lower + (upper - lower) * ((rank - below) / width if width else 1.0)
        lower, below = upper, buckets[upper]
    return lower


def measure_latency(settings: Settings, options: BenchOptions, log: Path) -> tuple[float, float]:
    """A fresh worker on fresh topics fed at a fixed rate: p50 and p99 in ms from its histogram.

    Separate from the catch-up run so that its backlog (and the garbage it leaves) does not count.
    """
    n = int(options.latency_rate * options.latency_seconds)
    events = workload_events(options, n, seed=99)
    worker = WorkerProcess(settings_env(settings), free_port(), log).start()  # creates the topics
    try:
        time.sleep(SETTLE_S)  # let the consumer finish joining and fetching
        publish_all(settings, events, options.latency_rate)
        wait_consumed(worker, n)
        time.sleep(0.5)
        buckets = latency_buckets(worker)
    finally:
        worker.stop()
    return quantile(buckets, 0.50) * 1000, quantile(buckets, 0.99) * 1000


def isolated(base: Settings, name: str, workdir: Path) -> Settings:
    """Settings with topics, consumer group and Redis namespace of their own."""
    key = base.pii_hash_key or SecretStr(secrets.token_hex(16))  # a throwaway key if none set
    return base.model_copy(
        update={
            "topic_prefix": f"{name}-",
            "app_id": name,
            "data_dir": workdir / name,
            "pii_hash_key": key,
        }
    )


def run_bench(base: Settings, options: BenchOptions) -> int:
    """Run every phase and print (and optionally save) the results table."""
    run = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix=f"rewards-bench-{run}-"))
    settings = isolated(base, f"bench-{run}", workdir)
    ensure_topics(settings)
    # Small JSON events as in production; a few bad ones (some of them 100 KB) keep dead-lettering
    # in the measured path without letting oversized records dominate the bytes moved.
    events = workload_events(options, options.events, seed=11)
    print(f"[bench] publishing {len(events)} events to bench-{run}-*")
    produce_rate = publish_all(settings, events)
    print("[bench] baseline: raw consume + decode")
    baseline = baseline_consume(settings, len(events))
    print("[bench] worker: catch-up throughput")
    worker = WorkerProcess(settings_env(settings), free_port(), workdir / "worker.log").start()
    try:
        seconds, counted = wait_consumed(worker, len(events))
        rss = worker.peak_rss_bytes()
    finally:
        worker.stop()
    print(f"[bench] worker: latency at {options.latency_rate:.0f} events/s (fresh worker)")
    latency_settings = isolated(base, f"bench-{run}-lat", workdir)
    p50, p99 = measure_latency(latency_settings, options, workdir / "latency-worker.log")
    result = BenchResult(
        workload=options.workload,
        customers=options.customers if options.workload != "shop" else 0,
        events=len(events),
        produce_per_s=produce_rate,
        baseline_consume_decode_per_s=baseline,
        codec_decode_per_s=codec_rate(events),
        worker_per_s=counted / seconds,
        latency_rate=options.latency_rate,
        latency_p50_ms=p50,
        latency_p99_ms=p99,
        worker_peak_rss_mib=rss / 2**20,
    )
    purge(settings)
    purge(latency_settings)
    print_table(result)
    if options.json_path:
        options.json_path.write_bytes(orjson.dumps(asdict(result), option=orjson.OPT_INDENT_2))
    return 0


def print_table(r: BenchResult) -> None:
    """The human-readable summary."""
    rows = [
        ("workload", r.workload + (f" ({r.customers:,} customers)" if r.customers else "")),
        ("events", f"{r.events:,}"),
        ("produce (confluent-kafka, lz4)", f"{r.produce_per_s:,.0f} ev/s"),
        ("baseline: raw consume + orjson", f"{r.baseline_consume_decode_per_s:,.0f} ev/s"),
        ("codec validate+decode (no I/O)", f"{r.codec_decode_per_s:,.0f} ev/s"),
        ("worker: whole pipeline", f"{r.worker_per_s:,.0f} ev/s "
         f"({r.worker_per_s / max(r.baseline_consume_decode_per_s, 1):.1%} of baseline)"),
        (f"worker latency p50 @ {r.latency_rate:,.0f} ev/s", f"{r.latency_p50_ms:.1f} ms"),
        (f"worker latency p99 @ {r.latency_rate:,.0f} ev/s", f"{r.latency_p99_ms:.1f} ms"),
        ("worker peak RSS", f"{r.worker_peak_rss_mib:,.0f} MiB"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
