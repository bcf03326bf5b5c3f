"""An upgrade in-process: accounts stored flat (format 1) are recovered and carried on."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import msgspec

from processors.points_state import Order
from streams.adapters.account_codec import FlatAccount, decode_account
from tests.events import purchase
from tests.worker.fakes.kafka import Cluster
from tests.worker.fakes.world import NOW, in_process, settings, world


@in_process
async def test_a_changelog_of_flat_accounts_recovers_and_moves_to_the_current_format(
    tmp_path: Path,
) -> None:
    made = settings(tmp_path)
    cluster = Cluster(made.partitions)
    old = Order(
        "o-old", "e-old", NOW - timedelta(days=30), 10_000, 100, 0, NOW - timedelta(days=16)
    )
    flat = FlatAccount("c-0", available=100, sequence=4, orders={"o-old": old}, tier="gold")
    cluster.append(made.changelog_topic(), b"c-0", b"\x01" + msgspec.msgpack.encode(flat))
    w = await world(tmp_path, cluster=cluster)
    w.publish("purchases", purchase(customer_id="c-0", order_id="o-new", points_redeemed=30))
    w.publish("purchases", purchase(customer_id="c-0", order_id="o-old", type="refund",
                                    amount_cents=5_000))  # fmt: skip
    await w.run()
    ledger = [(e["kind"], e["sequence"], e["available_after"]) for e in w.output("points-ledger")]
    assert ("redemption", 6, 70) in ledger  # the old balance and sequence carried on
    assert ledger[-1] == ("reversal", 7, 20)  # the old order is still there to refund
    stored = [
        m.value() or b"" for m in cluster.records(made.changelog_topic()) if m.key() == b"c-0"
    ]
    assert stored[0][:1] == b"\x01" and stored[-1][:1] == b"\x02"
    account = decode_account(stored[-1])
    assert (account.points.available, account.points.sequence) == (20, 7)
    assert account.tier.name == "gold" and "o-new" in account.points.orders
