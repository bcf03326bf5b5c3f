"""The points-accounts Faust table: one account per customer, local to the customer's partition.

The table is keyed by customer id like the input topics, so partition p of `purchases` and partition
p of the changelog hold the same customers and no repartitioning is needed. Values are msgpack.

Reads and writes go straight to the partition's RocksDB. The memory store (throwaway runs) goes
through Faust, which picks the partition from the *current stream event*: that is unset inside
`take_events` batches and in timers, so `partition_scope` sets a stand-in naming the partition.

Writes do not go through `table[key] = value`: Faust then sends one changelog record at a time
through its producer buffer, which capped the whole pipeline at ~2.7k events/s (measured). `save`
produces a batch's changelog records through the fast producer, waits for the broker, records the
changelog offsets as Faust's own send callback would, and only then writes RocksDB: the local store
is never ahead of its changelog. Recovery, standbys and table routing remain Faust's.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import faust
import msgspec
from faust.stores.rocksdb import Store as RocksDBStore
from faust.streams import _current_event
from faust.types import TP, StoreT, TableT

from processors.points import Account
from streams.emitter import Emitter
from streams.settings import Settings

TABLE_NAME = "points-accounts"

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Account)


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    partition: int


class _PartitionEvent:
    """Just enough of a Faust event for a table to pick the partition (weak-referenceable)."""

    def __init__(self, topic: str, partition: int) -> None:
        self.message = _Message(topic, partition)


class AccountTable:
    """Read and write accounts per partition; the only code that knows how they are stored."""

    def __init__(self, table: TableT[bytes, bytes], source_topic: str) -> None:
        self.table = table
        self._source_topic = source_topic

    @functools.cached_property
    def _rocksdb(self) -> RocksDBStore | None:
        store: Any = self.table.data  # created on first use, after the app is configured
        return store if isinstance(store, RocksDBStore) else None

    @contextlib.contextmanager
    def partition_scope(self, partition: int) -> Iterator[None]:
        """Make table reads and writes inside the block address `partition`."""
        event = _PartitionEvent(self._source_topic, partition)
        token = _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
        try:
            yield
        finally:
            _current_event.reset(token)

    def load(self, partition: int, customer_id: str) -> Account:
        """The customer's account in `partition`, or a new empty one."""
        raw = self._get(partition, customer_id.encode())
        return _decoder.decode(raw) if raw is not None else Account(customer_id)

    def _get(self, partition: int, key: bytes) -> bytes | None:
        if self._rocksdb is not None:  # straight to the partition's RocksDB, no Faust hooks
            value: bytes | None = self._rocksdb._db_for_partition(partition).get(key)
            return value
        with self.partition_scope(partition):
            return self.table.data.get(key)

    def _put(self, partition: int, key: bytes, value: bytes) -> None:
        if self._rocksdb is not None:
            self._rocksdb._db_for_partition(partition).put(key, value)
            return
        with self.partition_scope(partition):
            self.table.data[key] = value

    def changelog_topic(self) -> str:
        """The table's changelog topic name."""
        return self.table.changelog_topic.get_topic_name()

    async def save(self, accounts: Sequence[tuple[int, Account]], emitter: Emitter) -> None:
        """Write (partition, account) pairs to the changelog, wait for it, then to RocksDB."""
        if not accounts:
            return
        topic = self.changelog_topic()
        encoded = [(p, a.customer_id.encode(), _encoder.encode(a)) for p, a in accounts]
        for partition, key, value in encoded:
            emitter.emit_raw(topic, key, value, partition)
        offsets = await emitter.delivered()
        for partition, key, value in encoded:
            self._put(partition, key, value)
        store = cast(StoreT[bytes, bytes], self.table.data)
        for (written_topic, partition), offset in offsets.items():
            if written_topic == topic:
                store.set_persisted_offset(TP(topic, partition), offset)

    def read(self, customer_id: str) -> Account | None:
        """The customer's account from whichever local partition holds it (web requests)."""
        raw = self.table.get(customer_id.encode())
        return _decoder.decode(raw) if raw is not None else None

    def scan(self, partitions: Iterable[int]) -> Iterator[tuple[int, Account]]:
        """Every account stored locally for `partitions` (after recovery: rebuild indexes)."""
        store = self._rocksdb
        if store is not None:
            for partition in partitions:
                for _key, raw in store._visible_items(store._db_for_partition(partition)):
                    yield partition, _decoder.decode(raw)
            return
        wanted, topic = set(partitions), self.changelog_topic()  # memory store: ask the partitioner
        for key, raw in list(self.table.items()):
            partition = self.table.app.producer.key_partition(topic, key).partition
            if partition in wanted:
                yield partition, _decoder.decode(raw)


def account_table(app: faust.App, settings: Settings) -> AccountTable:
    """Declare the table (bytes in and out, so Faust uses the raw codec: msgspec encodes)."""
    table = app.Table(
        TABLE_NAME,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        help="Points account per customer (balances, open orders), msgpack.",
    )
    return AccountTable(table, settings.topic("purchases"))
