"""The points ledger in the stream: settle purchases, release holds, publish, mirror, store.

Order of effects per batch, chosen for crash safety without Kafka transactions:
1. settle every touched account (pure, `processors.settlement`);
2. publish ledger entries, rewards and anomalies, and mirror balances to Redis, and wait for both;
3. only then store the accounts: the changelog, and once the broker has it, RocksDB.
A crash before 3 re-runs the batch from the last committed offset: the same events settle to the
same entries with the same ids, so outputs are at-least-once and never lost, balances never double.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from processors.fraud import FraudPolicy, evaluate
from processors.ids import stable_id
from processors.points import Account
from processors.settlement import Event, Policies, Settlement, settle
from schemas.models import FraudDecision, GiftCardOrder, Purchase, Referral
from streams.advocacy import AdvocacyWindows
from streams.compensation import CompensationDesk
from streams.emitter import Emitter
from streams.identity_index import IdentityIndex
from streams.ingest import Admitted, Rejected
from streams.metrics import PointsMetrics
from streams.points_mirror import BalanceMirror
from streams.points_records import anomaly_record, ledger_json, points_moved, reward_record
from streams.points_state import AccountTable
from streams.referral_intake import ReferralIntake, alert_record
from streams.referral_metrics import ReferralMetrics
from streams.release_schedule import ReleaseSchedule

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
SWEEP_LIMIT = 5000  # customers per release sweep, so a backlog of hold ends never stalls a batch


@dataclass(frozen=True, slots=True)
class Settled:
    """One customer's settlement, with the partition it lives in and the account it started from."""

    partition: int
    before: Account
    settlement: Settlement


class PointsLedger:
    """Keeps every owned customer's points account; the agent and the release timer share it."""

    def __init__(
        self,
        *,
        accounts: AccountTable,
        schedule: ReleaseSchedule,
        advocacy: AdvocacyWindows,
        emitter: Emitter,
        mirror: BalanceMirror,
        metrics: PointsMetrics,
        policies: Policies,
        fraud: FraudPolicy,
        index: IdentityIndex,
        intake: ReferralIntake,
        referral_metrics: ReferralMetrics,
        care: CompensationDesk,
        clock: Clock,
        ledger_topic: str,
    ) -> None:
        self.accounts = accounts
        self.schedule = schedule
        self.advocacy = advocacy
        self._emitter = emitter
        self._mirror = mirror
        self._metrics = metrics
        self._policies = policies
        self._fraud = fraud
        self._index = index
        self._intake = intake
        self._referral_metrics = referral_metrics
        self._care = care
        self._clock = clock
        self._ledger_topic = ledger_topic
        self._output_topics = [
            emitter.topic(base)
            for base in (
                "rewards-issued",
                "points-anomalies",
                "referral-commands",
                "referral-rewards",
                "compensation-decisions",
                "gift-card-orders",
            )
        ]
        self._lock = asyncio.Lock()  # one batch or sweep at a time: no lost update across awaits

    async def settle_customer_events(self, admitted: Sequence[Admitted]) -> Sequence[Rejected]:
        """Settle each customer's purchases, complaints, referral steps and review decisions,
        then publish and store."""
        by_customer: defaultdict[tuple[int, str], list[Event]] = defaultdict(list)
        for item in admitted:
            event = item.event
            assert not isinstance(event, GiftCardOrder)
            by_customer[(item.position.partition, _customer_of(event))].append(event)
        async with self._lock:
            now = self._clock()
            await self._index.record(
                [(e.customer_id, e.context, e.occurred_at) for e in _purchases(admitted)]
            )
            settled = [self._settle(p, c, events, now) for (p, c), events in by_customer.items()]
            verdicts = await self._score_conversions(settled)
            settled = self._resettle(settled, by_customer, now, verdicts, {})
            settled = await self._reserve_budget(settled, by_customer, now, verdicts)
            await self._apply(settled, store_unchanged=True)
        by_id = {item.event.event_id: item for item in admitted}
        return [
            Rejected(by_id[r.event_id], r.reason, r.detail)
            for done in settled
            for r in done.settlement.rejections
        ]

    async def _score_conversions(self, settled: list[Settled]) -> dict[str, str]:
        """Score the batch's conversions for fraud (one Redis round trip) and publish the alerts;
        the verdicts by converting purchase's event id."""
        checks = [check for done in settled for check in done.settlement.checks]
        if not checks:
            return {}
        facts = await self._index.conversion_facts(checks)
        verdicts: dict[str, str] = {}
        for check, fact in zip(checks, facts, strict=True):
            verdict = evaluate(fact, self._fraud)
            key = check.referral.referral_key
            alert_id = stable_id("fa", "conversion", key, check.purchase.event_id)
            self._intake.publish_alert(
                alert_record(alert_id, fact, verdict, check.purchase), verdict
            )
            verdicts[check.purchase.event_id] = verdict.decision
        return verdicts

    async def _reserve_budget(
        self,
        settled: list[Settled],
        events: Mapping[tuple[int, str], Sequence[Event]],
        now: datetime,
        verdicts: Mapping[str, str],
    ) -> list[Settled]:
        """Reserve the batch's compensations (one Redis call per round) and settle again with the
        answers, until none waits: a refusal can make a customer's later complaint eligible,
        which then asks in the next round (a complaint event is answered once, so it ends)."""
        grants: dict[str, str] = {}
        while asked := [
            r
            for done in settled
            for r in done.settlement.budget_requests
            if r.event_id not in grants
        ]:
            grants |= await self._care.reserve(asked, now)
            settled = self._resettle(settled, events, now, verdicts, grants)
        return settled

    def _resettle(
        self,
        settled: list[Settled],
        events: Mapping[tuple[int, str], Sequence[Event]],
        now: datetime,
        verdicts: Mapping[str, str],
        grants: Mapping[str, str],
    ) -> list[Settled]:
        """Settle again, from the same starting account, the customers still waiting for a
        fraud verdict or a budget answer that has now arrived."""
        if not verdicts and not grants:
            return settled
        return [
            done
            if not (done.settlement.checks or done.settlement.budget_requests)
            else Settled(
                done.partition,
                done.before,
                settle(
                    done.before,
                    events[(done.partition, done.before.customer_id)],
                    now,
                    self._policies,
                    verdicts,
                    grants=grants,
                ),
            )
            for done in settled
        ]

    async def release_held_points(self) -> None:
        """Release every hold that has ended by now and announce the points."""
        async with self._lock:
            now = self._clock()
            due = self.schedule.pop_due(now, SWEEP_LIMIT)
            settled = [self._settle(p, c, (), now) for p, c in due]
            await self._apply(settled, store_unchanged=False)
            self._metrics.held_customers.set(len(self.schedule))

    async def forget_partitions(self, revoked: set[int]) -> None:
        """On revocation: finish any sweep in progress (the lock), then stop releasing there, so
        the partition's next owner is the only writer of its accounts."""
        async with self._lock:
            self.schedule.forget(revoked)
            self.advocacy.forget(revoked)
        log.info("hold-end releases stopped for revoked partitions %s", sorted(revoked))

    def rebuild_schedule(self, owned: set[int]) -> None:
        """After a recovery: schedule the hold ends of every account in the owned partitions."""
        self._emitter.warm_up(
            [self._ledger_topic, *self._output_topics, self.accounts.changelog_topic()]
        )
        accounts = self.accounts.scan(sorted(owned))
        self.schedule.rebuild(owned, self.advocacy.rebuilding(owned, accounts))
        self._metrics.held_customers.set(len(self.schedule))
        self._metrics.recoveries.inc()

    def _settle(
        self, partition: int, customer_id: str, events: Sequence[Event], now: datetime
    ) -> Settled:
        before = self.accounts.load(partition, customer_id)
        return Settled(partition, before, settle(before, events, now, self._policies))

    async def _apply(self, settled: Sequence[Settled], *, store_unchanged: bool) -> None:
        """Publish and mirror, wait for both, then store (see the module docstring)."""
        stored = [s for s in settled if _worth_storing(s, store_unchanged)]
        moved: Counter[str] = Counter()
        entries: Counter[str] = Counter()
        for done in settled:
            self._publish(done.settlement, moved, entries)
        discounts = sum(self._care.publish(done.settlement) for done in settled)
        credits = sum(len(done.settlement.credits) for done in settled)
        self._count(moved, entries, rewards=credits, discounts=discounts)
        await asyncio.gather(
            self._emitter.delivered(),
            self._mirror.write([s.settlement.account for s in stored]),
            self._index.mark_rejected(c for s in settled for c in s.settlement.fraud_rejected),
        )
        await self.accounts.save(
            [(s.partition, s.settlement.account) for s in stored], self._emitter
        )
        for done in stored:
            self.schedule.track(done.partition, done.before, done.settlement.account)
            self.advocacy.track(done.partition, done.before, done.settlement.account)

    def _publish(self, settlement: Settlement, moved: Counter[str], entries: Counter[str]) -> None:
        customer_id = settlement.account.customer_id
        for entry in settlement.entries:
            self._emitter.emit_raw(self._ledger_topic, customer_id.encode(), ledger_json(entry))
            entries[entry.kind] += 1
            moved[entry.kind] += points_moved(entry)
        for credit in settlement.credits:
            self._emitter.emit("rewards-issued", customer_id, reward_record(credit))
        for command in settlement.commands:
            self._emitter.emit("referral-commands", command.customer_id, command)
            self._referral_metrics.commands.labels(command.command).inc()
        for reward in settlement.referral_rewards:
            self._emitter.emit("referral-rewards", reward.customer_id, reward)
        self._referral_metrics.count_rewards(settlement.referral_rewards)
        for anomaly in settlement.anomalies:
            self._emitter.emit(
                "points-anomalies", customer_id, anomaly_record(customer_id, anomaly)
            )
            self._metrics.anomalies.labels(anomaly.kind).inc()

    def _count(
        self, moved: Counter[str], entries: Counter[str], *, rewards: int, discounts: int
    ) -> None:
        """Metrics once per batch and kind, not per entry."""
        if rewards:
            self._metrics.rewards.labels("points").inc(rewards)
        if discounts:
            self._metrics.rewards.labels("discount").inc(discounts)
        for kind, count in entries.items():
            self._metrics.entries.labels(kind).inc(count)
            self._metrics.points.labels(kind).inc(moved[kind])


def _worth_storing(settled: Settled, store_unchanged: bool) -> bool:
    """Changed accounts; with `store_unchanged`, also existing ones a batch touched (a redelivered
    batch re-writes them, so the changelog catches up with a local store that was ahead of it)."""
    if settled.settlement.account != settled.before:
        return True
    return store_unchanged and settled.before != Account(settled.before.customer_id)


def _customer_of(event: Event) -> str:
    """Whose account an event settles against."""
    if isinstance(event, FraudDecision):
        return event.referee_id
    if isinstance(event, Referral):
        return event.referrer_id  # an invitation: the inviting customer's
    return event.customer_id


def _purchases(admitted: Sequence[Admitted]) -> Iterator[Purchase]:
    """The purchases and refunds of a batch (their contexts feed the identity index)."""
    return (item.event for item in admitted if isinstance(item.event, Purchase))
