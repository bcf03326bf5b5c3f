"""An upgrade in-process: accounts stored flat (format 1) or with their orders inline (format 2)
are recovered, carried on, and written in the current format (orders as records of their own)."""

from __future__ import annotations

import zlib
from datetime import timedelta
from pathlib import Path

import msgspec

from processors.account import Account
from processors.points_state import Order, PointsState
from streams.adapters.account_codec import FlatAccount, encode_inline, is_order
from streams.cli.account_table import table_of
from tests.events import purchase
from tests.worker.fakes.kafka import Cluster
from tests.worker.fakes.world import NOW, World, in_process, settings, world

OLD = Order("o-old", "e-old", NOW - timedelta(days=30), 10_000, 100, 0, NOW - timedelta(days=16))


def records_of(w: World, customer_id: str) -> list[tuple[bytes, bytes | None]]:
    """The customer's changelog records (its account's and its orders'), oldest first."""
    mine = customer_id.encode()
    return [
        (m.key() or b"", m.value())
        for m in w.cluster.records(w.settings.changelog_topic())
        if (m.key() or b"") == mine or (m.key() or b"").startswith(mine + b"\x00o")
    ]


async def carried_on(w: World, customer_id: str) -> Account:
    """A purchase redeeming 30 and a refund of half the old order are applied on top of the old
    account; its account as stored, checked against the changelog and a recovered worker."""
    w.publish("purchases", purchase(customer_id=customer_id, order_id="o-new",
                                    points_redeemed=30))  # fmt: skip
    w.publish("purchases", purchase(customer_id=customer_id, order_id="o-old", type="refund",
                                    amount_cents=5_000))  # fmt: skip
    await w.run()
    ledger = [(e["kind"], e["sequence"], e["available_after"]) for e in w.output("points-ledger")]
    assert ("redemption", 6, 70) in ledger  # the old balance and sequence carried on
    assert ledger[-1] == ("reversal", 7, 20)  # the old order is still there to refund
    partition = zlib.crc32(customer_id.encode()) % w.settings.partitions
    account = w.hot.accounts.store.get(partition, customer_id)
    assert account is not None and set(account.points.orders) == {"o-old", "o-new"}
    assert table_of(w.cluster.records(w.settings.changelog_topic()))[customer_id] == account
    successor = await world(w.settings.data_dir.parent / "successor", cluster=w.cluster)
    assert successor.hot.accounts.store.get(partition, customer_id) == account
    return account


@in_process
async def test_a_changelog_of_flat_accounts_recovers_and_moves_to_the_current_format(
    tmp_path: Path,
) -> None:
    made = settings(tmp_path)
    cluster = Cluster(made.partitions)
    flat = FlatAccount("c-0", available=100, sequence=4, orders={"o-old": OLD}, tier="gold")
    cluster.append(made.changelog_topic(), b"c-0", b"\x01" + msgspec.msgpack.encode(flat))
    w = await world(tmp_path, cluster=cluster)
    account = await carried_on(w, "c-0")
    assert (account.points.available, account.points.sequence) == (20, 7)
    assert account.tier.name == "gold"
    stored = [v or b"" for k, v in records_of(w, "c-0") if k == b"c-0"]
    assert stored[0][:1] == b"\x01" and stored[-1][:1] == b"\x03"


@in_process
async def test_an_account_of_format_2_moves_its_orders_to_records_of_their_own(
    tmp_path: Path,
) -> None:
    made = settings(tmp_path)
    cluster = Cluster(made.partitions)
    old = Account("c-2", PointsState(available=100, sequence=4, orders={"o-old": OLD}))
    cluster.append(made.changelog_topic(), b"c-2", encode_inline(old))
    w = await world(tmp_path, cluster=cluster)
    await carried_on(w, "c-2")
    written = records_of(w, "c-2")[1:]  # what the worker wrote after the format 2 record
    assert {v[:1] for k, v in written if k == b"c-2" and v} == {b"\x03"}
    orders = {k for k, v in written if v is not None and is_order(v)}
    assert orders == {b"c-2\x00oo-old", b"c-2\x00oo-new"}  # the old order too, once apart
