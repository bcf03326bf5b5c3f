"""Orders as records of their own, in-process: what each event writes, what a successor reads;
and the diff that finds what to write."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from processors.points_state import Order
from schemas.codec import encode
from schemas.models import AccountCommand
from streams.adapters.account_codec import decode_order, encode_order, is_order
from streams.adapters.order_records import SHORT, order_changes
from streams.cli.account_table import table_of
from tests.events import purchase
from tests.worker.fakes.world import World, in_process, world

CUSTOMER = "c-1"
PARTITION = zlib.crc32(CUSTOMER.encode()) % 2


def records_of(w: World, customer_id: str = CUSTOMER) -> list[tuple[bytes, bytes | None]]:
    """The customer's changelog records (its account's and its orders'), oldest first."""
    mine = customer_id.encode()
    return [
        (m.key() or b"", m.value())
        for m in w.cluster.records(w.settings.changelog_topic())
        if (m.key() or b"") == mine or (m.key() or b"").startswith(mine + b"\x00o")
    ]


async def customer_with_orders(tmp_path: Path, orders: int) -> World:
    w = await world(tmp_path)
    for n in range(orders):
        w.publish("purchases", purchase(customer_id=CUSTOMER, order_id=f"o-{n}"))
    await w.run()
    return w


async def written_by(w: World, topic: str, event: dict[str, object]) -> list[bytes]:
    """The keys of the customer's changelog records written for one more event."""
    before = len(records_of(w))
    w.publish(topic, event)
    await w.run()
    return [k for k, _ in records_of(w)[before:]]


@in_process
async def test_a_purchase_or_a_refund_writes_the_account_and_that_order_only(
    tmp_path: Path,
) -> None:
    w = await customer_with_orders(tmp_path, 40)
    account = w.hot.accounts.store.get(PARTITION, CUSTOMER)
    assert account is not None and len(account.points.orders) == 40
    bought = await written_by(w, "purchases", purchase(customer_id=CUSTOMER, order_id="o-40"))
    assert bought == [b"c-1", b"c-1\x00oo-40"]
    refund = purchase(customer_id=CUSTOMER, order_id="o-7", type="refund", amount_cents=1_000)
    assert await written_by(w, "purchases", refund) == [b"c-1", b"c-1\x00oo-7"]
    last = records_of(w)[-1][1]
    assert last is not None and is_order(last) and decode_order(last).refunded_cents == 1_000


@in_process
async def test_a_successor_recovers_every_order_and_refunds_one_of_them(tmp_path: Path) -> None:
    w = await customer_with_orders(tmp_path / "first", 12)
    account = w.hot.accounts.store.get(PARTITION, CUSTOMER)
    assert table_of(w.cluster.records(w.settings.changelog_topic())) == {CUSTOMER: account}
    successor = await world(tmp_path / "second", cluster=w.cluster)
    store = successor.hot.accounts.store
    assert store.get(PARTITION, CUSTOMER) == account
    assert [a for p, a in store.scan([0, 1])] == [account]
    successor.publish("purchases", purchase(customer_id=CUSTOMER, order_id="o-3", type="refund",
                                            amount_cents=4_599))  # fmt: skip
    await successor.run()
    kinds = [(e["kind"], e["order_id"]) for e in successor.output("points-ledger")]
    assert kinds[-1] == ("reversal", "o-3")  # the order came back from its own record


@in_process
async def test_forget_tombstones_the_account_and_every_order(tmp_path: Path) -> None:
    w = await customer_with_orders(tmp_path / "first", 9)
    command = AccountCommand(event_id="ac-1", occurred_at=datetime.now(UTC), command="forget",
                             customer_id=CUSTOMER, operator="dpo")  # fmt: skip
    w.publish_raw("account-commands", CUSTOMER.encode(), encode(command))
    await w.run()
    latest = dict(records_of(w))
    assert len(latest) == 10 and set(latest.values()) == {None}  # the account and 9 orders
    assert CUSTOMER not in table_of(w.cluster.records(w.settings.changelog_topic()))
    assert w.hot.accounts.store.get(PARTITION, CUSTOMER) is None
    successor = await world(tmp_path / "second", cluster=w.cluster)
    assert successor.hot.accounts.store.get(PARTITION, CUSTOMER) is None
    assert list(successor.hot.accounts.store.scan([0, 1])) == []


def orders(count: int) -> dict[str, Order]:
    """`count` orders, as the rules add them one purchase after another."""
    at = datetime(2026, 3, 1, tzinfo=UTC)
    made: dict[str, Order] = {}
    for n in range(count):
        bought = at + n * timedelta(hours=1)
        made = {**made, f"o-{n}": Order(f"o-{n}", f"e-{n}", bought, 1_000, 10, 10, bought)}
    return made


def changed(old: dict[str, Order], how: str) -> dict[str, Order]:
    """`old` changed as the rules change orders (new dicts, orders replaced, never mutated)."""
    ids = list(old)
    if how == "bought":
        new = Order(
            "o-new",
            "e-new",
            datetime(2026, 4, 1, tzinfo=UTC),
            500,
            5,
            5,
            datetime(2026, 4, 15, tzinfo=UTC),
        )
        return {**old, "o-new": new}
    if how == "refunded" and ids:
        mid = ids[len(ids) // 2]
        return {**old, mid: msgspec.structs.replace(old[mid], refunded_cents=1)}
    if how == "pruned":  # every other one of the oldest third
        return {k: o for k, o in old.items() if k not in ids[: len(ids) // 3 + 1 : 2]}
    if how == "read back":  # equal orders, other objects, in key order
        return {k: msgspec.msgpack.decode(msgspec.msgpack.encode(o), type=Order)
                for k, o in sorted(old.items())}  # fmt: skip
    return old


@pytest.mark.parametrize("size", [0, 1, SHORT, SHORT + 1, 60])
@pytest.mark.parametrize("how", ["bought", "refunded", "pruned", "read back", "unchanged"])
def test_the_diff_writes_exactly_the_orders_that_changed(size: int, how: str) -> None:
    old = orders(size)
    new = changed(old, how)
    records = dict(order_changes(b"c-1", new, old))
    stored: dict[bytes, bytes | None] = {b"c-1\x00o" + k.encode(): encode_order(o)
                                         for k, o in old.items()}  # fmt: skip
    stored.update(records)  # the changelog, compacted
    assert {k: v for k, v in stored.items() if v is not None} == {
        b"c-1\x00o" + k.encode(): encode_order(o) for k, o in new.items()
    }
    differ = {k for k in new.keys() | old.keys() if new.get(k) != old.get(k)}
    assert records.keys() == {b"c-1\x00o" + k.encode() for k in differ}
