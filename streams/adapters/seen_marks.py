"""First-seen marks in the partition's own state: staged in the transaction, expired by time.

A record's key is its customer, so every copy of an event lands on the same partition: the marks
of a partition live in that partition's local store (`AccountStore`, RocksDB) and its changelog,
written in the same Kafka transaction as the outputs, the accounts and the input offsets. An abort
discards them with everything else; a new owner recovers them with the accounts.

Key layout (beside the accounts, under the `\\x00` prefix no account key uses):
`\\x00s` + bucket (8 bytes, big-endian) + topic + `\\x00` + event id -> `partition:offset`
of the first record seen. A bucket is a quarter of the TTL of the partition's stream time, so
a lookup reads the (at most 5) buckets that can hold a live mark, none older than the partition's
oldest mark (one RocksDB multi-get per batch), and
expiry drops whole buckets: once stream time is a TTL past a bucket's end, its marks are deleted
locally and tombstoned in the changelog (compaction then removes them), so the store and the
changelog hold between 1 and 1.25 TTL of marks. Memory and disk grow with the event rate times the
TTL, never with the number of events ever seen.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from processors.delivery import Position

PREFIX = b"\x00s"
LEGACY_GONE = b"\x00legacy-marks-gone"
"""Set (and changelogged) once Redis has no mark of the version before for the partition."""
LEGACY_SINCE = b"\x00legacy-marks-asked-since"
"""When (wall ms) the partition first asked Redis: a TTL later no old mark can be left."""
BUCKETS_PER_TTL = 4
EXPIRE_PER_BATCH = 5_000


class Emit(Protocol):
    """Produce raw bytes into the open transaction (`Transaction.emit_raw`)."""

    def __call__(self, topic: str, key: bytes | None, value: bytes | None, partition: int) -> None:
        """Produce one record."""


class LocalState(Protocol):
    """The partitions' local stores (`AccountStore`): marks are kept beside the accounts."""

    def local(self, partition: int) -> Any:
        """The open store of `partition` (Rdict, or a dict in memory)."""

    def write_local(self, partition: int, ops: Sequence[tuple[bytes, bytes | None]]) -> None:
        """Write (None: delete) raw keys of `partition`, once their changelog records committed."""


class Legacy(Protocol):
    """The Redis marks of a version before this one, read during the cut-over only."""

    async def peek(self, entries: Sequence[tuple[str, Position]]) -> list[str | None] | None:
        """The first position Redis recorded for each entry (None: no mark of the version
        before is left at all, so there is nothing to ask ever again)."""


class SeenMarks:
    """The first-seen index of the owned partitions (the gate's `FirstSeen` port and a
    participant of the transaction)."""

    def __init__(
        self,
        store: LocalState,
        changelog_topic: str,
        ttl_s: int,
        emit: Emit,
        *,
        legacy: Legacy | None,
        read_before: Callable[[int], bool],
    ) -> None:
        self._store = store
        self._topic = changelog_topic
        self._bucket_ms = max(1, -(-ttl_s * 1000 // BUCKETS_PER_TTL))
        self._ttl_s = ttl_s
        self._emit = emit
        self.legacy = legacy
        self._read_before = read_before
        """Whether the group had committed offsets of a partition (so a version before this one
        may have read it and left marks in Redis)."""
        self._staged: dict[bytes, tuple[int, bytes | None]] = {}
        self._oldest: dict[int, int] = {}
        """Per partition: no mark is stored in a bucket before this one."""
        self._expired_to: dict[int, bytes] = {}
        """Per partition: an expiry under way has tombstoned the keys before this one."""
        self._legacy_until: dict[int, float] = {}
        """Per partition: the wall time after which Redis is not asked any more."""
        self._meta: dict[tuple[int, bytes], bytes] = {}
        """Per-partition flags staged in the transaction (changelogged, written on commit)."""

    async def mark(self, entries: Sequence[tuple[str, Position, datetime]]) -> list[str | None]:
        """Mark each event id at its position unless a live mark exists; the first position
        seen for each (None: new). One multi-get per partition for the whole batch."""
        keyed: list[list[bytes]] = []
        heads: dict[tuple[int, int], list[bytes]] = {}
        for event_id, position, at in entries:
            place = (position.partition, int(at.timestamp() * 1000) // self._bucket_ms)
            found_heads = heads.get(place)
            if found_heads is None:
                found_heads = heads[place] = self._heads(*place)
            suffix = position.topic.encode() + b"\x00" + event_id.encode()
            keyed.append([head + suffix for head in found_heads])
        stored = self._stored(entries, keyed)
        found: list[str | None] = []
        misses: list[int] = []
        for index, (entry, keys) in enumerate(zip(entries, keyed, strict=True)):
            first = self._first(keys, stored[index])
            if first is None:
                misses.append(index)
                self._put(keys[0], entry[1])  # a later copy in this batch finds it
            found.append(first)
        if self.legacy is not None and misses:
            await self._ask_legacy(entries, misses, found)
        for index in misses:
            if found[index] is None:
                key, partition = keyed[index][0], entries[index][1].partition
                self._emit(self._topic, key, self._staged[key][1], partition)
        return found

    def _heads(self, partition: int, bucket: int) -> list[bytes]:
        """Expire what a lookup at `bucket` no longer reads; the key prefixes of the buckets that
        can hold a live mark, newest first (none older than the partition's oldest mark: a store
        younger than the TTL reads fewer than 5)."""
        self._expire(partition, bucket)
        oldest = max(self._oldest.get(partition, bucket), bucket - BUCKETS_PER_TTL)
        return [_key(b, b"") for b in range(bucket, min(oldest, bucket) - 1, -1)]

    def _stored(
        self, entries: Sequence[tuple[str, Position, datetime]], keyed: list[list[bytes]]
    ) -> list[list[Any]]:
        """The stored values of every entry's keys (read before any of the batch is staged)."""
        by_partition: dict[int, list[int]] = {}
        for index, (_, position, _) in enumerate(entries):
            by_partition.setdefault(position.partition, []).append(index)
        out: list[list[Any]] = [[] for _ in entries]
        for partition, indexes in by_partition.items():
            keys = [key for index in indexes for key in keyed[index]]
            values = iter(_get_many(self._store.local(partition), keys))
            for index in indexes:
                out[index] = [next(values) for _ in keyed[index]]
        return out

    def _first(self, keys: list[bytes], values: list[Any]) -> str | None:
        """The first position in a live bucket: staged in this transaction, else stored."""
        for key, value in zip(keys, values, strict=True):
            hit = self._staged.get(key)
            if hit is not None:
                if hit[1] is not None:
                    return hit[1].decode()
                continue  # expired or forgotten in this transaction
            if value is not None:
                return bytes(value).decode()
        return None

    async def _ask_legacy(
        self,
        entries: Sequence[tuple[str, Position, datetime]],
        misses: list[int],
        found: list[str | None],
    ) -> None:
        """During the cut-over: a mark only Redis has (set by the version before) still counts."""
        assert self.legacy is not None
        asking = [i for i in misses if not self._gone(entries[i][1].partition)]
        if not asking:
            return
        earlier = await self.legacy.peek([(entries[i][0], entries[i][1]) for i in asking])
        if earlier is None:  # none left: never ask again for these partitions
            for partition in {entries[i][1].partition for i in asking}:
                self._set_meta(partition, LEGACY_GONE, b"1")
                self._legacy_until[partition] = 0.0
            return
        for index, first in zip(asking, earlier, strict=True):
            if first is not None and first != entries[index][1].token():
                found[index] = first  # kept here too, with the first position Redis had
                event_id, position, at = entries[index]
                key = self._mark_key(event_id, position, at)
                self._staged[key] = (position.partition, first.encode())
                self._emit(self._topic, key, first.encode(), position.partition)

    def _gone(self, partition: int) -> bool:
        """Whether Redis can hold no mark of the version before for `partition` any more: it
        said so once, or a TTL (the old marks' own) has passed since the partition first asked
        (so a Redis too large to scan quickly is not asked for ever)."""
        until = self._legacy_until.get(partition)
        if until is None:
            until = self._legacy_until[partition] = self._asking_until(partition)
        return _wall() >= until

    def _asking_until(self, partition: int) -> float:
        db = self._store.local(partition)
        if db.get(LEGACY_GONE) is not None:
            return 0.0
        if not self._read_before(partition):  # no version before read it: no mark to find
            self._set_meta(partition, LEGACY_GONE, b"1")
            return 0.0
        since = db.get(LEGACY_SINCE)
        if since is None:  # the first question: from now on, for a TTL at most
            now = _wall()
            self._set_meta(partition, LEGACY_SINCE, b"%d" % int(now * 1000))
            return now + self._ttl_s
        return int(since) / 1000 + self._ttl_s

    def _set_meta(self, partition: int, key: bytes, value: bytes) -> None:
        self._meta[(partition, key)] = value
        self._emit(self._topic, key, value, partition)

    async def forget(self, entries: Sequence[tuple[str, Position, datetime]]) -> None:
        """Drop the marks made for events the rules refused (a corrected one may come again)."""
        for event_id, position, at in entries:
            self._unstage(event_id, position, at)

    def committed(self) -> None:
        """The transaction committed: the staged marks (and expiries) become local."""
        writes: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for key, (partition, value) in self._staged.items():
            writes.setdefault(partition, []).append((key, value))
        for (partition, key), flag in self._meta.items():
            writes.setdefault(partition, []).append((key, flag))
        for partition, ops in writes.items():
            self._store.write_local(partition, ops)
        self._staged.clear()
        self._meta.clear()

    def discarded(self) -> None:
        """The transaction was aborted: its marks and expiries are forgotten."""
        self._staged.clear()
        self._oldest.clear()  # looked up again: an expiry may have been undone
        self._expired_to.clear()
        self._legacy_until.clear()
        self._meta.clear()

    def _put(self, key: bytes, position: Position) -> None:
        """Stage a new mark (produced once the batch's marks are settled)."""
        self._staged[key] = (position.partition, position.token().encode())
        oldest = self._oldest.get(position.partition)
        if oldest is not None:
            self._oldest[position.partition] = min(oldest, _bucket_of(key))

    def _mark_key(self, event_id: str, position: Position, at: datetime) -> bytes:
        bucket = int(at.timestamp() * 1000) // self._bucket_ms
        return _key(bucket, position.topic.encode() + b"\x00" + event_id.encode())

    def _unstage(self, event_id: str, position: Position, at: datetime) -> None:
        key = self._mark_key(event_id, position, at)
        if self._staged.get(key, (0, None))[1] == position.token().encode():
            self._staged[key] = (position.partition, None)
            self._emit(self._topic, key, None, position.partition)

    def _expire(self, partition: int, bucket: int) -> None:
        """Drop the marks of `partition` in buckets no lookup at `bucket` or later reads, at
        most EXPIRE_PER_BATCH a call (the rest at the next ones: a batch never waits long)."""
        live_from = bucket - BUCKETS_PER_TTL
        oldest, db = self._oldest.get(partition), self._store.local(partition)
        if oldest is None:  # no mark at all: nothing is older than this bucket
            oldest = self._oldest[partition] = _first_bucket(db, bucket)
        if oldest >= live_from:
            return
        start = self._expired_to.get(partition, PREFIX)
        keys = _keys_between(db, start, _key(live_from, b""), EXPIRE_PER_BATCH)
        for key in keys:
            self._staged[key] = (partition, None)
            self._emit(self._topic, key, None, partition)
        if len(keys) < EXPIRE_PER_BATCH:
            self._oldest[partition] = live_from
            self._expired_to.pop(partition, None)
        else:
            self._expired_to[partition] = keys[-1] + b"\x00"


def _wall() -> float:
    """Wall-clock seconds (the old Redis marks expire in wall time)."""
    return time.time()


def _bucket_of(key: bytes) -> int:
    return int(struct.unpack(">Q", key[2:10])[0])


def _key(bucket: int, suffix: bytes) -> bytes:
    return PREFIX + struct.pack(">Q", bucket) + suffix


def _get_many(db: Any, keys: list[bytes]) -> list[Any]:
    """Several keys at once: one multi-get in RocksDB."""
    if isinstance(db, dict):
        return [db.get(k) for k in keys]
    return list(db[keys])


def _first_bucket(db: Any, default: int) -> int:
    """The oldest bucket with a mark in `db` (`default` if there is none)."""
    found = _keys_between(db, PREFIX, PREFIX + b"\xff" * 9, 1)
    return _bucket_of(found[0]) if found else default


def _keys_between(db: Any, start: bytes, end: bytes, limit: int) -> list[bytes]:
    """Up to `limit` mark keys of `db` in [start, end), in order."""
    if isinstance(db, dict):
        return sorted(k for k in db if start <= k < end and k.startswith(PREFIX))[:limit]
    found: list[bytes] = []
    iterator = db.iter()
    iterator.seek(start)
    while iterator.valid() and len(found) < limit:
        key = iterator.key()
        if not key.startswith(PREFIX) or key >= end:
            break
        found.append(key)
        iterator.next()
    return found
