"""What a worker's state costs per event: Redis memory, local disk and changelog after N purchases.

Run from a checkout, with the stack up (`deploy/stack.sh up`); it starts a private redis-server
of its own, so `used_memory` counts only this run:

    .venv/bin/python deploy/bench/redis_memory.py --events 1000000 --customers 100000 [--compact]

Run it with another checkout's interpreter to measure that version the same way (the worker is
started with the interpreter that runs this script). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis  # noqa: TID251 - a measurement from a checkout, not processors/

from streams.adapters.kafka_io import ensure_topics
from streams.adapters.topic_reader import read_to_end
from streams.bench.compaction import compact_now
from streams.bench.complaints import with_provider
from streams.bench.harness import publish_all
from streams.bench.housekeeping import purge
from streams.bench.run import catch_up_events, isolated, purchase_stream
from streams.bench.sandbox_process import SandboxProcess
from streams.bench.worker_process import free_port
from streams.settings import Settings


def private_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server of this run's own (no persistence), and its URL."""
    port = free_port()
    binary = shutil.which("redis-server") or sys.exit("redis-server is not installed")
    proc = subprocess.Popen(  # noqa: S603 - Debian's redis-server, our arguments
        [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            return proc, url
        except redis.ConnectionError:
            time.sleep(0.05)
    sys.exit("redis-server did not start")


def changelog_size(settings: Settings) -> dict[str, int]:
    """Records and bytes of the accounts' changelog, and how many are first-seen marks."""
    records = size = marks = 0
    for msg in read_to_end(settings.kafka_bootstrap_servers, settings.changelog_topic(), 60):
        records += 1
        size += len(msg.key() or b"") + len(msg.value() or b"")
        marks += (msg.key() or b"").startswith(b"\x00s")
    return {"changelog_records": records, "changelog_bytes": size, "changelog_marks": marks}


def compacted_size(settings: Settings, before: int, wait_s: float = 600.0) -> dict[str, int]:
    """The changelog after the broker's log cleaner went over it: its segments rolled (a probe
    tombstone appended to every partition once `segment.ms` passed), no dirty-ratio or lag
    threshold; measured once it holds fewer than the `before` records and two reads 20 s apart
    agree (or after `wait_s`)."""
    compact_now(settings, settings.changelog_topic(), settings.partitions)
    deadline, last = time.monotonic() + wait_s, changelog_size(settings)
    while time.monotonic() < deadline:
        time.sleep(20.0)
        now = changelog_size(settings)
        if now == last and now["changelog_records"] < before:
            break
        last = now
    return {f"compacted_{k}": v for k, v in last.items()}


def measure(events: int, customers: int, compact: bool = False) -> dict[str, Any]:
    """A private Redis and a provider sandbox, and the measurement on them."""
    workdir = Path(tempfile.mkdtemp(prefix="rewards-memory-"))
    proc, url = private_redis(workdir)
    try:
        with SandboxProcess(log_path=workdir / "sandbox.log") as sandbox:
            base = with_provider(Settings(redis_url=url), sandbox)
            return _measure(isolated(base, f"mem-{uuid.uuid4().hex[:8]}", workdir), url, events,
                            customers, workdir, compact)  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def _measure(  # noqa: PLR0917 - a script's one measurement
    settings: Settings, url: str, events: int, customers: int, workdir: Path, compact: bool
) -> dict[str, Any]:
    """Run the worker over `events` purchases of `customers` and measure what it left."""
    client = redis.Redis.from_url(url)
    before = int(client.info("memory")["used_memory"])
    ensure_topics(settings)
    publish_all(settings, purchase_stream(events, customers, seed=5))
    busy, rss_mib, _ = catch_up_events(settings, events, workdir / "worker.log")
    after = int(client.info("memory")["used_memory"])
    disk = sum(f.stat().st_size for f in settings.data_dir.rglob("*") if f.is_file())
    found = {
        "events": events, "customers": customers,
        "worker_per_s": round(busy.records / busy.seconds),
        "worker_per_cpu_s": round(busy.records / busy.cpu_s),
        "worker_peak_rss_mib": round(rss_mib), "redis_keys": int(client.dbsize()),
        "redis_used_memory_delta_bytes": after - before,
        "redis_bytes_per_event": round((after - before) / events, 1),
        "local_store_bytes": disk, **changelog_size(settings),
    }  # fmt: skip
    if compact:
        found |= compacted_size(settings, int(found["changelog_records"]))
    purge(settings)
    return found


def main() -> None:
    """Parse the arguments, measure, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument(
        "--compact", action="store_true", help="also measure the changelog once compacted"
    )
    args = parser.parse_args()
    print(orjson.dumps(measure(args.events, args.customers, args.compact)).decode())


if __name__ == "__main__":
    main()
