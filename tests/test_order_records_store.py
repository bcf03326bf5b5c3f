"""Orders as records of their own (format 3) in the store: what a change writes, what is read."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from confluent_kafka import Consumer, KafkaError, Message

from processors.account import Account
from processors.points import EarnRate, PointsPolicy, earn, prune, release_due, reverse
from processors.points_state import PointsState
from streams.adapters.account_codec import FORMAT, decode_order, encode_inline, is_order
from streams.adapters.account_store import META_OFFSET, AccountStore
from streams.adapters.order_records import ORDER_INFIX
from streams.cli.account_table import table_of
from tests.worker.fakes.kafka import Cluster

CHANGELOG = "rewards-accounts-changelog"
POLICY = PointsPolicy({"EUR": EarnRate(1, 100)}, order_retention=timedelta(days=30))
T0 = datetime(2026, 3, 1, tzinfo=UTC)
KINDS = ["rocksdb", "memory"]


class Changelog:
    """The changelog on a fake cluster: what `stage` produces is appended once committed, and
    the record that carries a delivery callback gets it with its offset (as the producer does)."""

    def __init__(self) -> None:
        self.cluster = Cluster(partitions=2)
        self.pending: list[tuple[bytes, bytes | None, int, Any]] = []

    def produce(self, topic: str, key: bytes, value: bytes | None, partition: int,
                on_delivery: Any = None) -> None:  # fmt: skip
        assert topic == CHANGELOG
        self.pending.append((key, value, partition, on_delivery))

    def commit(self) -> list[tuple[bytes, bytes | None]]:
        """Append the transaction's records; them, in order."""
        for key, value, partition, on_delivery in self.pending:
            at, offset = self.cluster.append(CHANGELOG, key, value, partition)
            if on_delivery is not None:
                on_delivery(None, Message(topic=CHANGELOG, partition=at, offset=offset))
        done = [(key, value) for key, value, _, _ in self.pending]
        self.pending = []
        return done

    def log(self, partition: int) -> list[Message]:
        return self.cluster.logs.get((CHANGELOG, partition), [])


class Reader:
    """A changelog consumer as `AccountStore._replay` reads it: the records, then the end."""

    def __init__(self, changelog: Changelog, starts: dict[int, int]) -> None:
        self._batches = [[m for p, s in starts.items() for m in changelog.log(p)[s:]]]
        eof = KafkaError(KafkaError._PARTITION_EOF)
        self._batches.append([Message(partition=p, error=eof) for p in starts])

    def consume(self, _n: int, _timeout: float) -> list[Message]:
        return self._batches.pop(0) if self._batches else []


def open_store(directory: Path, kind: str = "rocksdb", cache_size: int = 1000) -> AccountStore:
    store = AccountStore(directory=directory, changelog_topic=CHANGELOG, recovery_config={},
                         cache_size=cache_size, in_memory=kind == "memory")  # fmt: skip
    store.open([0, 1])
    return store


def recovered(directory: Path, changelog: Changelog, kind: str = "rocksdb") -> AccountStore:
    """A new store that has read the changelog alone (through the store's own replay)."""
    store = AccountStore(directory=directory, changelog_topic=CHANGELOG, recovery_config={},
                         cache_size=1000, in_memory=kind == "memory")  # fmt: skip
    starts = store.open([0, 1])
    reader = cast(Consumer, Reader(changelog, starts))  # what `_replay` calls of a consumer
    asyncio.run(store._replay(reader, starts))
    return store


def write(
    store: AccountStore, changelog: Changelog, *accounts: Account, partition: int = 0
) -> list[tuple[bytes, bytes | None]]:
    """Stage the accounts in one transaction, commit it; the records it produced."""
    store.stage(changelog.produce, [(partition, a) for a in accounts], {})
    records = changelog.commit()
    store.committed()
    return records


def buy(account: Account, n: int, at: datetime = T0) -> Account:
    return earn(account, event_id=f"e-{n}", order_id=f"o-{n}", amount_cents=1_000 + n,
                currency="EUR", points_redeemed=0, at=at, policy=POLICY).account  # fmt: skip


def history(customer_id: str, orders: int) -> Account:
    account = Account(customer_id)
    for n in range(orders):
        account = buy(account, n, T0 + n * timedelta(hours=1))
    return account


def keys_of(store: AccountStore, customer_id: str, partition: int = 0) -> list[bytes]:
    """The customer's keys in the local store (the account's, and its orders')."""
    mine = customer_id.encode()
    return sorted(
        k
        for k, _ in store.local(partition).items()
        if k == mine or k.startswith(mine + ORDER_INFIX)
    )


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_one_more_purchase_writes_the_account_and_that_order_whatever_the_history(
    tmp_path: Path, kind: str
) -> None:
    store, changelog = open_store(tmp_path, kind), Changelog()
    sizes = {}
    for orders in (1, 10, 50):
        account = history(f"c-{orders}", orders)
        write(store, changelog, account)
        assert store.get(0, account.customer_id) == account
        records = write(store, changelog, buy(account, orders))
        account_key = account.customer_id.encode()
        assert [k for k, _ in records] == [
            account_key,
            account_key + ORDER_INFIX + f"o-{orders}".encode(),
        ]
        assert records[0][1] is not None and records[0][1][:1] == FORMAT
        sizes[orders] = sum(len(k) + len(v or b"") for k, v in records)
    one_order = len(records[1][0]) + len(records[1][1] or b"")
    assert sizes[50] - sizes[1] < one_order / 4  # a few bytes of larger balances, no orders


def test_a_refund_writes_the_refunded_order_only(tmp_path: Path, kind: str) -> None:
    store, changelog = open_store(tmp_path, kind), Changelog()
    account = history("c-1", 50)
    write(store, changelog, account)
    refunded = reverse(store.load(0, "c-1"), event_id="r-1", order_id="o-7",
                       refunded_cents=500, at=T0 + timedelta(days=3)).account  # fmt: skip
    records = write(store, changelog, refunded)
    assert [k for k, _ in records] == [b"c-1", b"c-1\x00oo-7"]
    assert decode_order(records[1][1] or b"") == refunded.points.orders["o-7"]
    assert refunded.points.orders["o-7"].refunded_cents == 500


def test_releases_write_the_released_orders_and_a_fresh_store_reads_them_back(
    tmp_path: Path,
) -> None:
    store, changelog = open_store(tmp_path), Changelog()
    account = history("c-1", 20)
    write(store, changelog, account)
    released = release_due(store.load(0, "c-1"), T0 + POLICY.hold + timedelta(hours=4)).account
    records = write(store, changelog, released)
    assert sorted(k for k, _ in records) == [b"c-1"] + [b"c-1\x00oo-%d" % n for n in range(5)]
    store.close([0, 1])
    assert open_store(tmp_path).get(0, "c-1") == released  # every order, from RocksDB


def test_retention_tombstones_the_orders_it_forgets(tmp_path: Path, kind: str) -> None:
    store, changelog = open_store(tmp_path, kind), Changelog()
    account = Account("c-1")
    for n in range(12):
        account = buy(account, n, T0 + n * timedelta(days=5))
    account = release_due(account, T0 + timedelta(days=80)).account
    write(store, changelog, account)
    kept = prune(store.load(0, "c-1"), T0 + timedelta(days=62), POLICY)
    gone = account.points.orders.keys() - kept.points.orders.keys()
    assert gone and kept.points.orders
    records = write(store, changelog, kept)
    assert records[0][0] == b"c-1"
    assert {k: v for k, v in records[1:]} == {b"c-1\x00o" + o.encode(): None for o in gone}
    assert len(keys_of(store, "c-1")) == 1 + len(kept.points.orders)
    assert recovered(tmp_path / "new", changelog, kind).get(0, "c-1") == kept


def test_an_erased_account_leaves_no_record_behind(tmp_path: Path, kind: str) -> None:
    store, changelog = open_store(tmp_path, kind), Changelog()
    account = history("c-1", 20)
    write(store, changelog, account, history("c-10", 3))
    records = write(store, changelog, Account("c-1"))  # what a forget command stages
    order_keys = [b"c-1\x00o" + o.encode() for o in account.points.orders]
    assert dict(records) == dict.fromkeys([b"c-1", *order_keys])
    assert keys_of(store, "c-1") == [] and store.get(0, "c-1") is None
    assert store.load(0, "c-1") == Account("c-1")
    assert store.get(0, "c-10") == history("c-10", 3)  # the neighbour is untouched
    again = recovered(tmp_path / "new", changelog, kind)
    assert again.get(0, "c-1") is None and keys_of(again, "c-1") == []


def test_changes_of_one_account_within_a_transaction_are_diffed_against_the_staged_one(
    tmp_path: Path, kind: str
) -> None:
    store, changelog = open_store(tmp_path, kind), Changelog()
    account = history("c-1", 5)
    write(store, changelog, account)
    bought = buy(store.load(0, "c-1"), 5)
    erased = Account("c-1")
    reborn = buy(erased, 6)
    records = write(store, changelog, bought, erased, reborn)  # one transaction
    order_keys = [k for k, _ in records if ORDER_INFIX in k]
    assert order_keys.count(b"c-1\x00oo-5") == 2  # put, then tombstoned by the erasure
    assert keys_of(store, "c-1") == [b"c-1", b"c-1\x00oo-6"]
    assert store.get(0, "c-1") == reborn
    assert recovered(tmp_path / "new", changelog, kind).get(0, "c-1") == reborn


def test_an_account_read_back_from_rocksdb_is_the_one_written(tmp_path: Path) -> None:
    store, changelog = open_store(tmp_path, cache_size=2), Changelog()
    accounts = {f"c-{n}": history(f"c-{n}", n) for n in range(1, 7)}
    write(store, changelog, *accounts.values())
    for customer_id, account in accounts.items():  # a cache of 2 (1 a partition): misses
        assert store.get(0, customer_id) == account
    changed = buy(store.load(0, "c-3"), 99)  # staged after its account left the cache
    store.get(0, "c-4")
    store.get(0, "c-5")
    assert [k for k, _ in write(store, changelog, changed)] == [b"c-3", b"c-3\x00oo-99"]
    store.close([0, 1])
    fresh = open_store(tmp_path)
    assert fresh.get(0, "c-3") == changed
    assert all(fresh.get(0, c) == a for c, a in accounts.items() if c != "c-3")


def test_recovery_from_the_changelog_alone_gives_the_same_accounts(
    tmp_path: Path, kind: str
) -> None:
    store, changelog = open_store(tmp_path / "old", kind), Changelog()
    accounts = [history(f"c-{n}", n + 1) for n in range(8)]
    write(store, changelog, *accounts[:4], partition=0)
    write(store, changelog, *accounts[4:], partition=1)
    for n in (2, 5):
        partition = 0 if n < 4 else 1
        accounts[n] = buy(store.load(partition, f"c-{n}"), 100 + n)
        write(store, changelog, accounts[n], partition=partition)
    changelog.cluster.append(CHANGELOG, b"\x00s-a-first-seen-mark", b"p:1", 0)
    table = table_of(changelog.cluster.records(CHANGELOG))  # as `rewards ledger verify` reads it
    assert table == {a.customer_id: a for a in accounts}
    again = recovered(tmp_path / "new", changelog, kind)
    for n, account in enumerate(accounts):
        assert again.get(0 if n < 4 else 1, account.customer_id) == account
    scanned = list(again.scan([0, 1]))
    assert sorted((a.customer_id for _, a in scanned)) == sorted(a.customer_id for a in accounts)
    assert sorted(scanned, key=lambda s: s[1].customer_id) == sorted(
        ((0 if n < 4 else 1, a) for n, a in enumerate(accounts)), key=lambda s: s[1].customer_id
    )


def test_the_last_record_of_each_partition_reports_the_offset_the_store_reaches(
    tmp_path: Path,
) -> None:
    store, changelog = open_store(tmp_path), Changelog()
    store.stage(changelog.produce, [(0, history("c-1", 3)), (1, history("c-2", 2)),
                                    (0, history("c-3", 1))], {})  # fmt: skip
    reporting = [(partition, key) for key, _, partition, cb in changelog.pending if cb]
    last = {partition: key for key, _, partition, _ in changelog.pending}
    assert sorted(reporting) == sorted(last.items()) == [(0, b"c-3\x00oo-0"), (1, b"c-2\x00oo-1")]
    changelog.commit()
    store.committed()
    store.close([0, 1])
    reopened = AccountStore(directory=tmp_path, changelog_topic=CHANGELOG, recovery_config={},
                            cache_size=10)  # fmt: skip
    assert reopened.open([0, 1]) == {0: len(changelog.log(0)), 1: len(changelog.log(1))}
    assert reopened.local(0).get(META_OFFSET) is not None


def test_scan_yields_every_account_once_with_its_orders(tmp_path: Path, kind: str) -> None:
    store, changelog = open_store(tmp_path, kind), Changelog()
    accounts = [history(c, n) for c, n in [("c", 3), ("c-1", 4), ("c-10", 0), ("c-1x", 2),
                                           ("c\x00oo-1x", 2), ("d", 1)]]  # fmt: skip
    accounts[2] = Account("c-10", PointsState(sequence=3))  # no order at all
    write(store, changelog, *accounts)
    legacy = history("b-2", 3)  # a format 2 record, as an older worker left it
    marks = [(b"\x00s\x00\x00mark", b"p:1"), (b"\x00meta:x", b"1")]
    store.write_local(0, [(b"b-2", encode_inline(legacy)), *marks])
    scanned = [a for _, a in store.scan([0])]
    assert sorted(a.customer_id for a in scanned) == sorted(
        [a.customer_id for a in accounts] + ["b-2"]
    )
    expected = {a.customer_id: a for a in [*accounts, legacy]}
    assert all(a == expected[a.customer_id] for a in scanned)
    assert all(store.get(0, c) == a for c, a in expected.items())


def test_a_customer_id_holding_a_nul_keeps_its_orders_inline(tmp_path: Path, kind: str) -> None:
    store, changelog = open_store(tmp_path, kind), Changelog()
    owner, tricky = history("c", 2), history("c\x00oo-9", 3)  # under the orders of "c"
    records = write(store, changelog, owner, tricky)
    assert [k for k, v in records if v is not None and is_order(v)] == [b"c\x00oo-0", b"c\x00oo-1"]
    assert store.get(0, "c") == owner
    store.close([0, 1])
    fresh = (
        open_store(tmp_path, kind) if kind == "rocksdb" else recovered(tmp_path, changelog, kind)
    )
    assert fresh.get(0, "c") == owner and fresh.get(0, "c\x00oo-9") == tricky


def test_a_format_2_record_reads_the_same_and_moves_to_format_3_when_written(
    tmp_path: Path, kind: str
) -> None:
    store, changelog = open_store(tmp_path, kind), Changelog()
    legacy = history("c-1", 6)
    store.write_local(0, [(b"c-1", encode_inline(legacy))])  # as recovered from an old changelog
    assert store.get(0, "c-1") == legacy
    records = write(store, changelog, store.load(0, "c-1"))  # rewritten unchanged
    assert records[0][1] is not None and records[0][1][:1] == FORMAT
    assert sorted(k for k, _ in records[1:]) == sorted(
        b"c-1\x00o" + o.encode() for o in legacy.points.orders
    )
    assert store.get(0, "c-1") == legacy
    assert recovered(tmp_path / "new", changelog, kind).get(0, "c-1") == legacy
    records = write(store, changelog, buy(store.load(0, "c-1"), 6))
    assert [k for k, _ in records] == [b"c-1", b"c-1\x00oo-6"]
