"""Watch one system run: its output topic as records arrive, its durable input position, its CPU.

The measured interval starts when the system's first burst of output records has reached the
harness (start-up before that, imports, connecting, group join or partition assignment and state
restore, is excluded alike for every system) and ends when every expected ledger record has
arrived AND the system's durable input position (committed group offsets, or Bytewax's recovery
snapshot) covers the input's end. The burst is the output up to the first pause of GAP_S in
arrivals, at most BURST_MAX_S long; the events behind it are not counted, as their work was done
before the interval: a batching system's first batch, a streaming system's first instants.
CPU time of the process tree is sampled at both ends.
"""

from __future__ import annotations

import contextlib
import pickle
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from streams.bench.peer_procs import cpu_seconds, peak_rss_bytes

Progress = Callable[[], Mapping[int, int]]
"""Partition -> the next input offset the system will not process again after a crash."""

POLL_S = 0.05
GAP_S = 0.015
"""A pause in arrivals this long ends the first burst of output records ..."""
BURST_MAX_S = 0.25
"""... or this long after it began (a system that streams its outputs never pauses)."""


def group_progress(admin: AdminClient, group: str, topic: str, partitions: int) -> Progress:
    """Committed offsets of a consumer group."""
    request = [
        ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    ]

    def read() -> Mapping[int, int]:
        answer = admin.list_consumer_group_offsets(request)[group].result(timeout=10)
        return {tp.partition: tp.offset for tp in answer.topic_partitions if tp.error is None}

    return read


_RESUME = """
WITH ex AS (SELECT MAX(ex_num) AS n FROM exs),
front AS (SELECT COALESCE(
    (SELECT MIN(worker_frontier) FROM fronts WHERE ex_num = (SELECT n FROM ex)),
    (SELECT resume_epoch FROM exs WHERE ex_num = (SELECT n FROM ex))) AS epoch)
SELECT s.state_key, s.ser_change FROM snaps s
WHERE s.snap_epoch = (SELECT MAX(t.snap_epoch) FROM snaps t WHERE t.step_id = s.step_id
                      AND t.state_key = s.state_key AND t.snap_epoch < (SELECT epoch FROM front))
"""  # fmt: skip


def bytewax_progress(recovery_dir: Path, topic: str) -> Progress:
    """The input offsets Bytewax would resume from: its Kafka source's snapshots (pickled offsets,
    state key `<partition>-<topic>`) in the newest epoch below the workers' frontier, as
    Bytewax 0.21 computes its resume point."""
    suffix = f"-{topic}"

    def read() -> Mapping[int, int]:
        out: dict[int, int] = {}
        for part in recovery_dir.glob("part-*.sqlite3"):
            with contextlib.closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True)) as db:
                for key, blob in db.execute(_RESUME):
                    if key.endswith(suffix) and key[: -len(suffix)].isdigit() and blob:
                        out[int(key[: -len(suffix)])] = int(pickle.loads(blob))  # noqa: S301 - ours
        return out

    return read


@dataclass
class Watch:
    """What a run needs to be watched and what the watching found."""

    bootstrap: str
    output: str
    expected: frozenset[bytes]
    ends: Mapping[int, int]
    progress: Progress
    pid: Callable[[], int | None]
    startup_s: float = 180.0
    stall_s: float = 60.0
    status: str = "running"
    t0: float = 0.0
    t1: float = 0.0
    complete: float = 0.0
    """When the last expected record arrived (t1 is later by the wait for durable offsets)."""
    cpu0: float = 0.0
    cpu1: float = 0.0
    rss_bytes: int = 0
    first: float = 0.0
    """When the first output record arrived."""
    burst: list[bytes] = field(default_factory=list)
    """The first burst of output records: their events' work was done before t0."""
    burst_cpu: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)


def watch(w: Watch) -> None:
    """Follow the output until the end rule holds, the system stalls or `w.stop` is set."""
    consumer = Consumer({"bootstrap.servers": w.bootstrap, "group.id": f"watch-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 10})  # fmt: skip
    try:
        parts = consumer.list_topics(w.output, timeout=30).topics[w.output].partitions
        consumer.assign([TopicPartition(w.output, p, OFFSET_BEGINNING) for p in parts])
        _follow(w, consumer)
    except Exception as exc:
        w.status = f"harness error: {exc!r}"
        raise
    finally:
        consumer.close()


def _follow(w: Watch, consumer: Consumer) -> None:
    seen: set[bytes] = set()
    started = last = time.monotonic()
    complete_at = 0.0
    while not w.stop.is_set():
        # what is queued now, else wait for one record: a record's arrival time is its own
        got = consumer.consume(10_000, 0) or consumer.consume(1, POLL_S)
        batch = [m.value() or b"" for m in got if m.error() is None]
        now = time.monotonic()
        if w.first and not w.t0 and (now - last >= GAP_S or now - w.first >= BURST_MAX_S):
            w.t0, w.cpu0 = last, w.burst_cpu  # the first burst is over: the interval starts
        if batch:
            if not w.t0:
                w.first = w.first or now
                w.burst += batch
                w.burst_cpu = cpu_seconds(w.pid())
            seen.update(v for v in batch if v in w.expected)
            last = now
        if not complete_at and len(seen) == len(w.expected):
            complete_at = w.complete = now
        if complete_at and _durable(w):
            w.t1, w.cpu1, w.rss_bytes = now, cpu_seconds(w.pid()), peak_rss_bytes(w.pid())
            w.status = "done" if w.t0 else "too short to time: all output came in one burst"
            return
        w.status = _stalled(w, now - (complete_at or last), started, len(seen))
        if w.status != "running":
            return


def _durable(w: Watch) -> bool:
    try:
        position = w.progress()
    except (sqlite3.Error, KafkaException):  # busy or not there yet: ask again next time
        return False
    return all(position.get(p, -1) >= end for p, end in w.ends.items() if end > 0)


def _stalled(w: Watch, idle_s: float, started: float, seen: int) -> str:
    if not w.first and time.monotonic() - started > w.startup_s:
        return f"no output within {w.startup_s:.0f} s"
    if w.first and idle_s > w.stall_s:
        what = "input offsets not durable" if seen == len(w.expected) else "output stalled"
        return f"{what} ({seen}/{len(w.expected)} expected records) for {w.stall_s:.0f} s"
    return "running"
