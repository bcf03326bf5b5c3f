"""Customer accounts per partition: RocksDB on local disk, a compacted changelog on Kafka.

The changelog is the durable copy; RocksDB (write-ahead log off, as Kafka Streams runs it) is a
local cache of it that survives restarts, and a bounded cache of decoded accounts sits in front.
Writes are two-phase, inside the batch's producer transaction: `stage` produces the changed
accounts to the changelog; once the transaction (with the input offsets) is committed,
`committed` writes them to RocksDB together with the changelog offset they reach, so the local
store is never ahead of the changelog. An aborted transaction is `discard`ed. After an
assignment `recover` reads the changelog from the offset the local store reached (the whole
changelog on a fresh disk) up to its last committed record, then the partition is processed.

Records (`account_codec.py`, `order_records.py`): the account under its customer id, without
its orders, and each order a record of its own under `customer id\\x00o` + order id; a change
writes the account and only the orders that changed since its previous version (staged, cached,
or else read from RocksDB), so an event costs the same whatever the customer's history. An
empty account (`is_blank`: no more than `Account(customer_id)` and time's bookkeeping, e.g.
after a forget command) is a tombstone, and so is each order gone: a null value that compaction
removes, and a delete in RocksDB; it loads as a new empty account.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message
from confluent_kafka import TopicPartition as KafkaPartition
from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from processors.account import Account, is_blank
from processors.points_state import Order
from streams.adapters.changelog_replay import replay, watermarks
from streams.adapters.order_records import (
    MemoryBatch,
    MemoryDB,
    Record,
    account_value,
    apart,
    assemble,
    order_changes,
    ordered_items,
    read_account,
    read_orders,
)

__all__ = ["META_CLOCK", "META_OFFSET", "AccountStore", "MemoryBatch", "MemoryDB"]
log = logging.getLogger(__name__)

META_OFFSET = b"\x00meta:changelog-next-offset"
META_CLOCK = b"\x00meta:stream-time-ms"
_NO_WAL = WriteOptions()
_NO_WAL.disable_wal = True  # type: ignore[method-assign,assignment]  # the changelog is durable


class AccountStore:
    """Reads and writes accounts of the partitions this worker owns."""

    def __init__(
        self,
        *,
        directory: Path,
        changelog_topic: str,
        recovery_config: dict[str, Any],
        cache_size: int,
        in_memory: bool = False,
        wait_s: float = 120.0,
    ) -> None:
        self._directory = directory
        self._wait_s = wait_s
        self._in_memory = in_memory
        self.changelog_topic = changelog_topic
        self._recovery_config = recovery_config
        self._cache_size = cache_size
        self._dbs: dict[int, Any] = {}  # Rdict, or MemoryDB for throwaway runs
        self._cache: dict[int, dict[str, Account]] = {}
        """Decoded accounts; of a customer id without NUL, only those whose orders are records."""
        self._clock: dict[int, datetime] = {}
        self._staged: dict[int, dict[str, Account]] = {}
        self._writes: dict[int, dict[bytes, bytes | None]] = {}
        """The staged records (accounts and orders) to write to RocksDB once committed."""
        self._staged_clock: dict[int, datetime] = {}
        self._changelog_next: dict[int, int] = {}

    def owned(self) -> frozenset[int]:
        """The partitions whose state is open here."""
        return frozenset(self._dbs)

    async def recover(self, partitions: Iterable[int]) -> int:
        """Open the partitions' stores and bring them up to the changelog's last committed record;
        returns the number of changelog records applied. A local store that is ahead of the
        changelog (the topic was recreated) is wiped and rebuilt from the changelog."""
        wanted = sorted(set(partitions) - set(self._dbs))
        if not wanted:
            return 0
        starts = self.open(wanted)
        _, ends = await asyncio.to_thread(
            watermarks, self._recovery_config, self.changelog_topic, wanted, self._wait_s
        )
        for partition in [p for p in wanted if starts[p] > ends[p]]:
            log.warning("local state of partition %d is ahead of %s: rebuilding it",
                        partition, self.changelog_topic)  # fmt: skip
            self.wipe(partition)
            starts[partition] = self._open(partition)
        consumer = Consumer(self._recovery_config)
        try:
            consumer.assign([KafkaPartition(self.changelog_topic, p, o) for p, o in starts.items()])
            return await self._replay(consumer, starts)
        finally:
            consumer.close()

    def open(self, partitions: Iterable[int]) -> dict[int, int]:
        """Open the partitions' local stores (without reading the changelog); the changelog
        offset each one has reached."""
        return {p: self._open(p) for p in partitions if p not in self._dbs}

    def _open(self, partition: int) -> int:
        path = self._directory / f"p{partition}"
        path.parent.mkdir(parents=True, exist_ok=True)
        db = MemoryDB() if self._in_memory else Rdict(str(path), _options())
        raw_next = db.get(META_OFFSET)
        start = struct.unpack(">q", raw_next)[0] if raw_next else 0
        self._dbs[partition] = db
        self._cache[partition] = {}
        raw_clock = db.get(META_CLOCK)
        if raw_clock:
            self._clock[partition] = _from_ms(struct.unpack(">q", raw_clock)[0])
        return int(start)

    async def _replay(self, consumer: Consumer, starts: dict[int, int]) -> int:
        return await replay(consumer, starts, self._batch, self._write_replayed)

    def _write_replayed(self, partition: int, batch: Any, next_offset: int) -> None:
        batch.put(META_OFFSET, struct.pack(">q", next_offset))
        self._dbs[partition].write(batch, _NO_WAL)

    def _batch(self, ops: Iterable[Record] = ()) -> Any:
        """A write batch of `ops` (None: delete) for a partition's store."""
        batch = MemoryBatch() if self._in_memory else WriteBatch(raw_mode=True)
        for key, value in ops:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        return batch

    def close(self, partitions: Iterable[int]) -> None:
        """Close the partitions' stores (revoked); their files stay for a later assignment."""
        for partition in partitions:
            self._staged.pop(partition, None)
            self._writes.pop(partition, None)
            self._cache.pop(partition, None)
            self._clock.pop(partition, None)
            db = self._dbs.pop(partition, None)
            if db is not None:
                db.close()

    def load(self, partition: int, customer_id: str) -> Account:
        """The customer's account in `partition` (as staged in this batch), or a new empty one."""
        staged = self._staged.get(partition)
        if staged is not None and customer_id in staged:
            return staged[customer_id]
        found = self.get(partition, customer_id)
        return found if found is not None else Account(customer_id)

    def get(self, partition: int, customer_id: str) -> Account | None:
        """The customer's stored account in `partition`, if any (one read in format 2 or 1 is
        not cached: its orders have no records yet, which `_previous` must see)."""
        cache = self._cache[partition]
        account = cache.get(customer_id)
        if account is None:
            found = read_account(self._dbs[partition], customer_id.encode())
            if found is None:
                return None
            account, orders_apart = found
            if orders_apart or not apart(customer_id):
                self._remember(cache, customer_id, account)
        return account

    def _remember(self, cache: dict[str, Account], customer_id: str, account: Account) -> None:
        cache.pop(customer_id, None)
        cache[customer_id] = account
        if len(cache) > self._cache_size // max(1, len(self._cache)):
            del cache[next(iter(cache))]

    def local(self, partition: int) -> Any:
        """The open local store of `partition`, for what is kept beside the accounts (under
        keys starting with `\\x00`, which `scan` skips)."""
        return self._dbs[partition]

    def write_local(self, partition: int, ops: Sequence[tuple[bytes, bytes | None]]) -> None:
        """Write (None: delete) raw keys beside the accounts, once their changelog records are
        committed (a partition closed meanwhile gets them from the changelog)."""
        db = self._dbs.get(partition)
        if db is None:
            return
        db.write(self._batch(ops), _NO_WAL)

    def stream_time(self, partition: int) -> datetime | None:
        """The partition's stream clock as last committed (or staged)."""
        return self._staged_clock.get(partition) or self._clock.get(partition)

    def stage(
        self,
        produce: Callable[..., None],
        accounts: Sequence[tuple[int, Account]],
        clocks: dict[int, datetime],
    ) -> None:
        """Produce changed accounts, and their orders that changed, to the changelog (inside
        the open transaction)."""
        last: dict[int, Record] = {}
        for partition, account in accounts:
            for record in self._records(partition, account):
                if partition in last:
                    produce(self.changelog_topic, *last[partition], partition)
                last[partition] = record
        for partition, (key, value) in last.items():  # the last one reports its offset
            produce(self.changelog_topic, key, value, partition, self._delivered)
        self._staged_clock.update(clocks)

    def _records(self, partition: int, account: Account) -> list[Record]:
        """Stage an account: its record, then those of its orders that changed since its
        previous version (none for a customer id keeping its orders inline)."""
        customer_id, key = account.customer_id, account.customer_id.encode()
        orders = []
        if apart(customer_id):
            orders = order_changes(key, account.points.orders, self._previous(partition, account))
        records = [(key, account_value(account)), *orders]
        self._staged.setdefault(partition, {})[customer_id] = account
        self._writes.setdefault(partition, {}).update(records)
        return records

    def _previous(self, partition: int, account: Account) -> dict[str, Order]:
        """The orders stored (or staged) as records for the account before this change: of
        the version staged in this transaction, else of the cached one, else read from RocksDB
        (the slow path: not cached, or read in format 2 or 1 and so without order records)."""
        customer_id = account.customer_id
        before = self._staged.get(partition, {}).get(customer_id)
        if before is None:
            before = self._cache[partition].get(customer_id)
        if before is None:
            return read_orders(self._dbs[partition], customer_id.encode())
        return before.points.orders

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self._changelog_next[int(msg.partition() or 0)] = int(msg.offset() or 0) + 1

    def committed(self) -> None:
        """The transaction committed: write what was staged to RocksDB and the cache."""
        for partition, accounts in self._staged.items():
            db, cache = self._dbs[partition], self._cache[partition]
            batch = self._batch(self._writes[partition].items())
            for customer_id, account in accounts.items():
                if is_blank(account):
                    cache.pop(customer_id, None)
                else:
                    self._remember(cache, customer_id, account)
            if partition in self._changelog_next:
                batch.put(META_OFFSET, struct.pack(">q", self._changelog_next.pop(partition)))
            db.write(batch, _NO_WAL)
        for partition, clock in self._staged_clock.items():
            if partition in self._dbs:
                self._clock[partition] = clock
                self._dbs[partition].put(META_CLOCK, struct.pack(">q", _to_ms(clock)), _NO_WAL)
        self._staged.clear()
        self._writes.clear()
        self._staged_clock.clear()

    def discarded(self) -> None:
        """The transaction was aborted: forget what was staged."""
        self._staged.clear()
        self._writes.clear()
        self._staged_clock.clear()
        self._changelog_next.clear()

    def scan(self, partitions: Iterable[int]) -> Iterator[tuple[int, Account]]:
        """Every account stored for `partitions`, once, with its orders (after recovery:
        rebuild the indexes)."""
        for partition in partitions:
            for account in assemble(ordered_items(self._dbs[partition])):
                yield partition, account

    def wipe(self, partition: int) -> None:
        """Delete a partition's local files (it is rebuilt from the changelog when next opened)."""
        self.close([partition])
        shutil.rmtree(self._directory / f"p{partition}", ignore_errors=True)


def _options() -> Options:
    """RocksDB options of a partition's store: small memtables (the changelog is the durable
    copy, so they only bound memory: 64 MiB memtables filled while catching up were most of
    the worker's peak RSS with a million customers, measured)."""
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(MEMTABLE_BYTES)
    options.set_max_write_buffer_number(2)
    return options


MEMTABLE_BYTES = 8 << 20


def _to_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
