"""`rewards bench`: worker throughput, latency and memory beside a raw-consumer baseline."""

from __future__ import annotations

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
from pydantic import SecretStr

from streams.adapters.kafka_io import ensure_topics
from streams.bench.complaints import (
    catch_up,
    complaint_stream,
    paced_latency,
    with_provider,
)
from streams.bench.harness import (
    SETTLE_S,
    Busy,
    baseline_consume,
    codec_rate,
    latency_buckets,
    publish_all,
    quantile,
    scrape_cost,
    wait_committed,
    wait_consumed,
)
from streams.bench.housekeeping import purge
from streams.bench.sandbox_process import SandboxProcess
from streams.bench.worker_process import WorkerProcess, free_port
from streams.cli.simulator import ShopSimulator, SimEvent
from streams.settings import Settings
from streams.settings_env import settings_env


@dataclass(frozen=True)
class BenchOptions:
    """What to run."""

    events: int
    latency_rate: float
    latency_seconds: float
    json_path: Path | None
    workload: Literal["shop", "purchases", "referrals", "complaints", "advocacy"] = "shop"
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
    scrape_bytes: int = 0
    scrape_ms: float = 0.0
    """/metrics after the catch-up: response size, and the median time of five scrapes."""
    worker_per_cpu_s: float = 0.0
    """Catch-up records per CPU-second of the worker process (0: not measured, complaints)."""


def advocacy_stream(n: int, customers: int, seed: int) -> list[SimEvent]:
    """Customers in turn, each with a purchase, then a survey answer (random score and channel,
    a CES every other one), one in ten inviting a friend: the advocacy windows fill with
    `customers` accounts' facts."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    channels = ("email", "app", "web", "sms", None, "kiosk")
    out: list[SimEvent] = []
    for i in range(n):
        customer = f"cust-{i % customers:07d}"
        at = (now - timedelta(minutes=rng.randrange(60 * 24 * 30))).isoformat()
        base = {"event_id": f"bench-a-{seed}-{i}", "occurred_at": at}
        step = (i // customers) % 3
        if step == 0:
            body = {**base, "customer_id": customer, "type": "purchase", "order_id": f"o-{i}",
                    "amount_cents": rng.randint(100, 20_000), "currency": "EUR"}  # fmt: skip
            out.append(SimEvent("purchases", customer.encode(), orjson.dumps(body), "purchase"))
        elif step == 1 or rng.random() > 0.1:
            ces = rng.choice((None, rng.randint(1, 7)))
            body = {**base, "customer_id": customer, "survey_id": "nps", "ces": ces,
                    "score": rng.randint(0, 10), "channel": rng.choice(channels)}  # fmt: skip
            out.append(
                SimEvent("survey-responses", customer.encode(), orjson.dumps(body), "survey")
            )
        else:
            body = {**base, "type": "invited", "referrer_id": customer, "referral_code": customer}
            out.append(SimEvent("referrals", customer.encode(), orjson.dumps(body), "invited"))
    return out


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
        out.append(SimEvent("purchases", customer.encode(), orjson.dumps(body), body["type"]))  # type: ignore[arg-type]  # a str, set above
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
    if options.workload == "complaints":
        return complaint_stream(n, seed)
    if options.workload == "advocacy":
        return advocacy_stream(n, options.customers, seed)
    return list(ShopSimulator(seed=seed, bad_event_ratio=0.002 if seed == 11 else 0.0).events(n))


WARM_UP_S = 10.0


def measure_latency(settings: Settings, options: BenchOptions, log: Path) -> tuple[float, float]:
    """A fresh worker on fresh topics fed at a fixed rate: p50 and p99 in ms from its histogram,
    after a warm-up at the same rate that is not counted.

    Separate from the catch-up run so that its backlog (and the garbage it leaves) does not count.
    The warm-up matters: a fresh worker's first seconds (first batches, first commit, caches) held
    a 20 s phase's p99 at ~500 ms where 60 s measured ~165 ms (purchases at 1,000/s).
    """
    n = int(options.latency_rate * options.latency_seconds)
    warm = int(options.latency_rate * WARM_UP_S)
    events = workload_events(options, warm + n, seed=99)
    worker = WorkerProcess(settings_env(settings), free_port(), log).start()  # creates the topics
    try:
        time.sleep(SETTLE_S)  # let the consumer finish joining and fetching
        publish_all(settings, events[:warm], options.latency_rate)
        wait_consumed(worker, warm)
        time.sleep(0.5)
        before = latency_buckets(worker)
        publish_all(settings, events[warm:], options.latency_rate)
        wait_consumed(worker, warm + n)
        time.sleep(0.5)
        buckets = {le: count - before.get(le, 0.0) for le, count in latency_buckets(worker).items()}
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
    """Run every phase beside a provider sandbox and print (and optionally save) the results."""
    run = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix=f"rewards-bench-{run}-"))
    with SandboxProcess(log_path=workdir / "sandbox.log") as sandbox:
        result = run_phases(with_provider(base, sandbox), options, run, workdir)
    print_table(result)
    if options.json_path:
        options.json_path.write_bytes(orjson.dumps(asdict(result), option=orjson.OPT_INDENT_2))
    return 0


def run_phases(base: Settings, options: BenchOptions, run: str, workdir: Path) -> BenchResult:
    """Produce, the baseline, the worker's catch-up, then latency on a fresh worker."""
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
    complaints, per_cpu_s = options.workload == "complaints", 0.0
    if complaints:  # through the provider: until every gift card is announced
        rate, rss_mib, scraped = catch_up(settings, len(events), workdir / "worker.log")
    else:
        busy, rss_mib, scraped = catch_up_events(settings, len(events), workdir / "worker.log")
        rate, per_cpu_s = busy.records / busy.seconds, busy.records / max(busy.cpu_s, 1e-9)
    print(f"[bench] worker: latency at {options.latency_rate:.0f} events/s (fresh worker)")
    latency_settings = isolated(base, f"bench-{run}-lat", workdir)
    log = workdir / "latency-worker.log"
    if complaints:
        n = int(options.latency_rate * options.latency_seconds)
        latency_events = workload_events(options, n, seed=99)
        p50, p99 = paced_latency(latency_settings, latency_events, options.latency_rate, log)
    else:
        p50, p99 = measure_latency(latency_settings, options, log)
    purge(settings)
    purge(latency_settings)
    return BenchResult(
        workload=options.workload,
        customers=options.customers if options.workload not in ("shop", "complaints") else 0,
        events=len(events),
        produce_per_s=produce_rate,
        baseline_consume_decode_per_s=baseline,
        codec_decode_per_s=codec_rate(events),
        worker_per_s=rate,
        latency_rate=options.latency_rate,
        latency_p50_ms=p50,
        latency_p99_ms=p99,
        worker_peak_rss_mib=rss_mib,
        scrape_bytes=scraped[0],
        scrape_ms=scraped[1],
        worker_per_cpu_s=per_cpu_s,
    )


def catch_up_events(
    settings: Settings, count: int, log: Path
) -> tuple[Busy, float, tuple[int, float]]:
    """A worker catching up on `count` input records: its time, records and CPU, peak RSS in
    MiB, and the /metrics scrape (bytes, ms) with all of it in state."""
    worker = WorkerProcess(settings_env(settings), free_port(), log).start()
    try:
        busy = wait_committed(settings, worker, count)
        return busy, worker.peak_rss_bytes() / 2**20, scrape_cost(worker)
    finally:
        worker.stop()


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
        ("worker: per CPU-second", f"{r.worker_per_cpu_s:,.0f} ev/CPU-s"
         if r.worker_per_cpu_s else "not measured"),
        (f"worker latency p50 @ {r.latency_rate:,.0f} ev/s", f"{r.latency_p50_ms:.1f} ms"),
        (f"worker latency p99 @ {r.latency_rate:,.0f} ev/s", f"{r.latency_p99_ms:.1f} ms"),
        ("worker peak RSS", f"{r.worker_peak_rss_mib:,.0f} MiB"),
        ("/metrics after catch-up", f"{r.scrape_bytes:,} bytes in {r.scrape_ms:.1f} ms"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
