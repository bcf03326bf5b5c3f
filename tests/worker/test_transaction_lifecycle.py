"""The hot path in-process: a batch, an abort and its replay, a revoke, duplicates, Redis away."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError

from tests.events import complaint, purchase, referral, survey
from tests.worker.fakes.world import World, in_process, world

OUTPUTS = ("points-ledger", "rewards-issued", "compensation-decisions", "gift-card-orders",
           "referral-commands", "fraud-alerts", "dead-letter")  # fmt: skip


def shop(customers: int = 6) -> list[tuple[str, dict[str, Any]]]:
    """A small mix of every kind of event, for a few customers."""
    events: list[tuple[str, dict[str, Any]]] = []
    for n in range(customers):
        who = f"c-{n}"
        events += [
            ("purchases", purchase(customer_id=who, event_id=f"p-{n}", order_id=f"o-{n}")),
            ("purchases", purchase(customer_id=who, event_id=f"q-{n}", order_id=f"q-{n}")),
            ("survey-responses", survey(customer_id=who, event_id=f"s-{n}", survey_id=f"s-{n}")),
            ("complaints", complaint(customer_id=who, event_id=f"k-{n}", complaint_id=f"k-{n}")),
            ("referrals", referral(referrer_id=who, event_id=f"r-{n}")),
        ]
    return events


def outputs(w: World) -> dict[str, list[dict[str, Any]]]:
    """Every committed output, without what is only the moment it was written."""
    found = {t: w.output(t) for t in OUTPUTS}
    for letter in found["dead-letter"]:
        letter.pop("failed_at"), letter.pop("worker")
    return found


async def fed(tmp_path: Path, name: str, **overrides: Any) -> World:
    w = await world(tmp_path / name, **overrides)
    for topic, event in shop():
        w.publish(topic, event)
    return w


@in_process
async def test_a_batch_commits_outputs_offsets_and_state_together(tmp_path: Path) -> None:
    w = await fed(tmp_path, "w")
    await w.run()
    out = outputs(w)
    assert len(out["points-ledger"]) >= 12 and not out["dead-letter"]
    assert w.metric("rewards_events_processed_total", topic="purchases") == 12
    assert w.producer.commits >= 1 and w.producer.aborts == 0
    read = [tp for tp in w.consumer.lag() if tp in w.cluster.logs]
    assert read and all(w.cluster.offsets[tp] == len(w.cluster.logs[tp]) for tp in read)
    assert (
        w.mirror.balances["c-0"][2]
        == w.hot.accounts.load(w.consumer.partition_of("c-0"), "c-0").points.sequence
    )


MUST_ABORT = {
    "fenced": KafkaError(KafkaError._FENCED, "fake", txn_requires_abort=True),
    # what produce() raised in the chaos soak after OUT_OF_ORDER_SEQUENCE_NUMBER ("requires epoch
    # bump"): the transaction is in an abortable state, and the error does not say so
    "out-of-sequence": KafkaError(KafkaError._STATE, "Unable to produce message: Erroneous state"),
}


@pytest.mark.parametrize("batch_max", [1, 3, 7, 1000])
@pytest.mark.parametrize("error", list(MUST_ABORT))
@in_process
async def test_an_abort_mid_batch_replays_to_identical_outputs(
    tmp_path: Path, batch_max: int, error: str
) -> None:
    control = await fed(tmp_path, "control")
    await control.run()
    w = await fed(tmp_path, "aborted", batch_max=batch_max, commit_interval_s=3600.0)
    w.producer.fail_emit_at = 9  # the broker tells the client the transaction must be aborted
    w.producer.fail_emit_with = MUST_ABORT[error]
    for _ in range(4):
        await w.hot.pipeline.step()
    assert w.producer.aborts == 1
    await w.hot.pipeline.commit()
    await w.run(max_steps=500)
    assert outputs(w) == outputs(control)
    assert w.metric("rewards_events_processed_total", topic="purchases") == 12


@in_process
async def test_a_commit_the_broker_refuses_is_processed_again_once(tmp_path: Path) -> None:
    control = await fed(tmp_path, "control")
    await control.run()
    w = await fed(tmp_path, "refused")
    w.producer.refuse_commits = 1
    await w.run()
    assert w.producer.aborts == 1 and outputs(w) == outputs(control)
    assert w.metric("rewards_transactions_total", loop="ingest", outcome="aborted") == 1
    assert w.metric("rewards_events_consumed_total", topic="purchases") == 12


@in_process
async def test_a_revoke_mid_batch_leaves_the_records_to_the_next_owner(tmp_path: Path) -> None:
    control = await fed(tmp_path, "control")
    await control.run()
    w = await fed(tmp_path, "revoked", commit_interval_s=3600.0)
    await w.hot.pipeline.step()  # handled into the open transaction, not committed
    assert w.hot.transaction.open
    w.consumer.revoke([0, 1])
    assert not w.hot.transaction.open and w.producer.aborts == 1
    assert w.cluster.records(w.topic("points-ledger")) == []
    assert w.hot.accounts.store.owned() == frozenset()
    nxt = await world(tmp_path / "next", cluster=w.cluster)  # the partitions' next owner
    await nxt.run()
    assert outputs(nxt) == outputs(control)


@in_process
async def test_a_duplicate_is_counted_and_settles_once(tmp_path: Path) -> None:
    w = await world(tmp_path)
    event = purchase(customer_id="c-1", event_id="dup-1")
    w.publish("purchases", event)
    w.publish("purchases", event)  # a producer's retry
    await w.run()
    assert len([e for e in w.output("points-ledger") if e["source_event_id"] == "dup-1"]) == 1
    assert w.metric("rewards_duplicate_events_total", topic="purchases") == 1


@in_process
async def test_redis_away_holds_the_batch_and_nothing_is_lost(tmp_path: Path) -> None:
    control = await fed(tmp_path, "control")
    await control.run()
    w = await fed(tmp_path, "outage")
    w.redis.down = True
    running = asyncio.ensure_future(w.run(max_steps=500))
    while w.redis.failures < 5:
        await asyncio.sleep(0.01)
    assert w.cluster.records(w.topic("points-ledger")) == [] and not running.done()
    w.redis.down = False
    await asyncio.wait_for(running, 10)
    assert outputs(w) == outputs(control)


@in_process
async def test_a_poison_record_is_dead_lettered_and_the_partition_goes_on(tmp_path: Path) -> None:
    events = shop()
    events.insert(7, ("referrals", referral(type="signed_up", referrer_id="c-poison",
                                            referee_id="c-new", event_id="r-poison",
                                            referral_id="ref-9", invitee_email=None,
                                            context={"email": "new@example.org"})))  # fmt: skip
    control, w = await world(tmp_path / "control"), await world(tmp_path / "poisoned")
    w.identity.bug_for = {"c-poison"}  # the sign-up makes handling raise, every time
    for topic, event in events:
        control.publish(topic, event)
        w.publish(topic, event)
    await control.run()
    await w.run(max_steps=500)
    letters = w.output("dead-letter")
    assert [(d["reason"], d["source"]["topic"]) for d in letters] == [
        ("processing_error", w.topic("referrals"))
    ]
    assert "a bug only this record hits" in letters[0]["detail"]
    assert w.metric("rewards_events_processed_total", topic="purchases") == 12
    for topic in ("points-ledger", "rewards-issued", "compensation-decisions"):
        assert w.output(topic) == control.output(topic)


@in_process
async def test_a_revoke_while_a_batch_fills_up_hands_over_what_was_not_handled(
    tmp_path: Path,
) -> None:
    control = await fed(tmp_path, "control")
    await control.run()
    w = await fed(tmp_path, "revoked", batch_max=10, batch_within_s=0.05)
    w.consumer.revoke_at_poll = (w.consumer.polls + 2, frozenset({0}))
    await w.run()
    assert w.hot.accounts.store.owned() == frozenset({1})
    left = [tp for tp in w.cluster.logs if tp[1] == 0 and tp[0] == w.topic("purchases")]
    assert all(w.cluster.offsets.get(tp, 0) < len(w.cluster.logs[tp]) for tp in left)
    nxt = await world(tmp_path / "next", cluster=w.cluster)  # gets partition 0
    await nxt.run()
    both = {t: sorted(map(repr, w.output(t))) for t in ("points-ledger", "rewards-issued")}
    assert both == {t: sorted(map(repr, control.output(t))) for t in both}
