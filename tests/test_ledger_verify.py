"""`rewards ledger verify`: every balance rebuilt from points-ledger, compared with the state."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.codec import encode
from schemas.outputs import PointsLedgerEntry
from streams.adapters.points_mirror import mirror_namespace
from streams.adapters.redis_client import connect_sync
from streams.adapters.topic_reader import read_to_end
from streams.cli.ledger_verify import add_entry, rebuild
from tests.events import new_id
from tests.support import eventually, publish
from tests.test_points_pipeline import balance_is, buy, refund, send
from tests.test_review_queue import rewards


def entry(customer: str, sequence: int, pending: int, pending_after: int) -> PointsLedgerEntry:
    """An earn entry (available untouched)."""
    return PointsLedgerEntry(
        entry_id=f"le-{customer}-{sequence}", customer_id=customer, sequence=sequence,
        kind="earn", pending_delta=pending, available_delta=0, pending_after=pending_after,
        available_after=0, source_event_id=f"e-{sequence}", order_id="o-1",
        occurred_at=datetime.now(UTC),
    )  # fmt: skip


def test_a_chain_is_rebuilt_and_its_gaps_and_wrong_afters_are_named():
    ok = {1: entry("c", 1, 10, 10), 2: entry("c", 2, 5, 15)}
    assert rebuild("c", ok) == (rebuild("c", ok)[0], [])
    assert (rebuild("c", ok)[0].pending, rebuild("c", ok)[0].sequence) == (15, 2)
    _, gap = rebuild("c", {1: ok[1], 3: entry("c", 3, 5, 15)})
    assert gap == ["customer c: ledger sequence 2 missing"]
    _, wrong = rebuild("c", {1: ok[1], 2: entry("c", 2, 5, 99)})
    assert len(wrong) == 1 and "le-c-2" in wrong[0] and "15/0" in wrong[0]


def test_a_new_sequence_one_starts_the_chain_again_and_redeliveries_replace():
    chains: dict[str, Any] = {}
    for e in (entry("c", 1, 10, 10), entry("c", 2, 5, 15), entry("d", 1, 3, 3)):
        add_entry(chains, e)
    add_entry(chains, entry("c", 2, 5, 15))
    assert sorted(chains["c"]) == [1, 2] and sorted(chains["d"]) == [1]
    add_entry(chains, entry("c", 1, 4, 4))  # erased, then a new account
    assert sorted(chains["c"]) == [1] and rebuild("c", chains["c"])[0].pending == 4


def verify(settings) -> tuple[int, str]:
    done = rewards(settings, "ledger", "verify", "--quiet")
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout


@pytest.mark.integration
@pytest.mark.redis
def test_verify_passes_on_a_consistent_state_and_names_each_difference(settings, start_worker):
    worker = start_worker(settings)
    alice, bob = new_id("alice"), new_id("bob")
    bought = buy(alice, 4000)
    send(settings, bought, buy(bob, 2500), refund(bought, 1000))
    eventually(lambda: balance_is(worker, settings, alice, 30, 0))
    eventually(lambda: balance_is(worker, settings, bob, 25, 0))
    ledger = list(read_to_end(settings.kafka_bootstrap_servers, settings.topic("points-ledger")))
    assert len(ledger) == 3
    first = ledger[0].value()
    assert first is not None
    publish(settings, "points-ledger", [(ledger[0].key(), first)])  # redelivered

    code, out = verify(settings)
    assert code == 0, out
    assert "4 records, 3 distinct entries, 2 customers" in out and "OK" in out

    client = connect_sync(settings.redis_url)
    key = f"{mirror_namespace(settings.app_id)}:{bob}"
    client.hset(key, "available", 7)
    code, out = verify(settings)
    assert code == 1
    differences = [x for x in out.splitlines() if x.startswith("DIFFERENCE")]
    assert len(differences) == 1 and bob in differences[0] and "Redis" in differences[0], out
    client.hset(key, "available", 0)
    assert verify(settings)[0] == 0

    bogus = entry(alice, 3, 5, 35)
    publish(settings, "points-ledger", [(alice.encode(), encode(bogus))])
    code, out = verify(settings)
    assert code == 1
    differences = [x for x in out.splitlines() if x.startswith("DIFFERENCE")]
    assert len(differences) == 1 and alice in differences[0], out
    assert "ledger rebuilds 35 pending/0 available at sequence 3" in differences[0]
    assert "FAIL: 1 differences" in out
