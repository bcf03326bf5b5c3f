"""First-seen marks in the partition's state: caught across commits and owners, expired by time."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.adapters import seen_marks
from streams.assembly import INGEST_TOPICS
from tests.events import purchase
from tests.worker.fakes.gate import FirstSeenMarks
from tests.worker.fakes.kafka import Cluster
from tests.worker.fakes.world import World, in_process, settings, world


def read_by_a_version_before(tmp_path: Path) -> Cluster:
    """A cluster whose consumer group has committed offsets of every partition (a worker of
    the version before read them), as an upgrade finds it."""
    made = settings(tmp_path)
    cluster = Cluster(made.partitions)
    for topic in INGEST_TOPICS:
        for partition in range(made.partitions):
            cluster.offsets[(made.topic(topic), partition)] = 0
    return cluster


HOUR_MS = 3600 * 1000
DUPLICATES = "rewards_duplicate_events_total"


def ledger_of(w: World, event_id: str) -> list[dict[str, object]]:
    return [e for e in w.output("points-ledger") if e["source_event_id"] == event_id]


def marks(w: World) -> tuple[list[bytes], list[bytes]]:
    """The mark keys in the changelog: set, and tombstoned."""
    changelog = w.cluster.records(w.settings.changelog_topic())
    keyed = [
        (m.key() or b"", m.value()) for m in changelog if (m.key() or b"").startswith(b"\x00s")
    ]
    return [k for k, v in keyed if v is not None], [k for k, v in keyed if v is None]


@in_process
async def test_a_copy_after_the_commit_is_a_duplicate_here_and_for_the_next_owner(
    tmp_path: Path,
) -> None:
    w = await world(tmp_path / "first")
    event = purchase(customer_id="c-1", event_id="dup-1")
    w.publish("purchases", event)
    await w.run()
    w.publish("purchases", event)  # an upstream double send, after the first one committed
    await w.run()
    assert len(ledger_of(w, "dup-1")) == 1 and w.metric(DUPLICATES, topic="purchases") == 1
    successor = await world(tmp_path / "second", cluster=w.cluster)  # recovers the changelog
    successor.publish("purchases", event)
    await successor.run()
    assert successor.metric(DUPLICATES, topic="purchases") == 1
    assert len(ledger_of(successor, "dup-1")) == 1


@in_process
async def test_marks_expire_a_ttl_of_stream_time_later_and_are_tombstoned(tmp_path: Path) -> None:
    w = await world(tmp_path, dedupe_ttl_s=4 * 3600)  # buckets of an hour
    for n in range(10):
        w.publish("purchases", purchase(customer_id="c-1", event_id=f"e-{n}"))
    await w.run()
    kept, gone = marks(w)
    assert len(kept) == 10 and gone == []
    w.cluster.clock_ms += 6 * HOUR_MS  # stream time moves past the TTL and a bucket
    w.publish("purchases", purchase(customer_id="c-1", event_id="late"))
    await w.run()
    kept, gone = marks(w)
    assert sorted(gone) == sorted(kept[:10]) and len(kept) == 11
    partition = w.consumer.partition_of("c-1")
    local = w.hot.accounts.store.local(partition)
    assert [k for k in local if k.startswith(b"\x00s")] == [kept[10]]
    w.publish("purchases", purchase(customer_id="c-1", event_id="e-0"))  # beyond the TTL
    await w.run()
    assert w.metric(DUPLICATES, topic="purchases") == 0  # not caught any more, by design


@in_process
async def test_a_mark_the_version_before_left_in_redis_still_catches_its_copy(
    tmp_path: Path,
) -> None:
    legacy = FirstSeenMarks()
    legacy.marks[(settings(tmp_path).topic("purchases"), "old-1")] = "0:999"
    w = await world(tmp_path, cluster=read_by_a_version_before(tmp_path), legacy=legacy)
    w.publish("purchases", purchase(customer_id="c-1", event_id="old-1"))
    w.publish("purchases", purchase(customer_id="c-1", event_id="new-1"))
    await w.run()
    assert w.metric(DUPLICATES, topic="purchases") == 1
    assert ledger_of(w, "old-1") == [] and len(ledger_of(w, "new-1")) == 1
    legacy.marks.clear()  # they expired in Redis: the next question is the last one
    for n in range(3):
        w.publish("purchases", purchase(customer_id="c-1", event_id=f"after-{n}"))
        await w.run()
    assert legacy.peeks == 2
    successor = await world(tmp_path / "next", cluster=w.cluster, legacy=legacy)
    successor.publish("purchases", purchase(customer_id="c-1", event_id="later"))
    successor.publish("purchases", purchase(customer_id="c-1", event_id="old-1"))
    await successor.run()
    assert legacy.peeks == 2  # the partition's state says Redis has nothing left to ask
    assert successor.metric(DUPLICATES, topic="purchases") == 1  # the mark moved into it


@in_process
async def test_a_partition_the_group_never_read_never_asks_redis_for_old_marks(
    tmp_path: Path,
) -> None:
    legacy = FirstSeenMarks()  # a Redis with marks of another deployment's events
    legacy.marks[(settings(tmp_path).topic("purchases"), "elsewhere")] = "0:5"
    w = await world(tmp_path, legacy=legacy)  # a new consumer group: no offset committed
    w.publish("purchases", purchase(customer_id="c-1", event_id="elsewhere"))
    await w.run()
    assert legacy.peeks == 0 and len(ledger_of(w, "elsewhere")) == 1
    successor = await world(tmp_path / "next", cluster=w.cluster, legacy=legacy)
    successor.publish("purchases", purchase(customer_id="c-1", event_id="later"))
    await successor.run()
    assert legacy.peeks == 0  # the partition's state says so: asked on no owner, ever


@in_process
async def test_a_refused_event_is_forgotten_so_its_correction_is_processed(tmp_path: Path) -> None:
    w = await world(tmp_path)
    event = purchase(customer_id="c-1", event_id="fix-1", currency="JPY")
    w.publish("purchases", event)
    await w.run()
    assert [d["reason"] for d in w.output("dead-letter")] == ["no_points_rate"]
    w.publish("purchases", {**event, "currency": "EUR"})
    await w.run()
    assert len(ledger_of(w, "fix-1")) == 1 and w.metric(DUPLICATES, topic="purchases") == 0


@in_process
async def test_redis_is_asked_for_old_marks_for_one_ttl_at_most(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wall = [1_800_000_000.0]
    monkeypatch.setattr(seen_marks, "_wall", lambda: wall[0])
    legacy = FirstSeenMarks()  # a Redis too large to be found empty: it always has a mark
    legacy.marks[(settings(tmp_path).topic("purchases"), "someone-else")] = "1:1"
    cluster = read_by_a_version_before(tmp_path)
    w = await world(tmp_path, cluster=cluster, legacy=legacy, dedupe_ttl_s=3600)
    w.publish("purchases", purchase(customer_id="c-1", event_id="a"))
    await w.run()
    assert legacy.peeks == 1
    wall[0] += 3601  # the old marks' TTL has passed since the partition first asked
    w.publish("purchases", purchase(customer_id="c-1", event_id="b"))
    await w.run()
    successor = await world(tmp_path / "next", cluster=w.cluster, legacy=legacy, dedupe_ttl_s=3600)
    successor.publish("purchases", purchase(customer_id="c-1", event_id="c"))
    await successor.run()
    assert legacy.peeks == 1
