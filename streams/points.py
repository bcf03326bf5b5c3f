"""The points ledger in the stream: settle each customer's events, release holds, publish, store.

Per batch, inside its transaction: settle every touched account (pure, `processors.settlement`,
each event at its stream time), ask Redis what the rules need (fraud facts for conversions, the
compensation budget), publish ledger entries, rewards, anomalies and decisions, mirror the
balances to Redis, and stage the accounts' changelog records. The transaction commits them
with the input offsets; only then are the accounts written to RocksDB and the hold-end schedule
and advocacy windows updated. A crash or an abort processes the batch again from the same state.

An event that makes the rules raise is found and dead-lettered by the loop
(`streams.pipeline.PoisonRecords`): no record can stop a partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime

from msgspec import Struct

from processors.fraud import FraudPolicy, evaluate
from processors.ids import stable_id
from processors.points import Account
from processors.settlement import Event, Policies, Settlement, settle
from schemas.models import FraudDecision, GiftCardOrder, Purchase, Referral
from schemas.outputs import ReferralReward
from streams.adapters.account_store import AccountStore
from streams.adapters.outbox import Outbox
from streams.advocacy import AdvocacyWindows
from streams.compensation import CompensationDesk
from streams.identity_index import IdentityIndex
from streams.ingest import Admitted, Rejected, StreamClocks
from streams.metrics import PointsMetrics
from streams.points_mirror import BalanceMirror
from streams.points_records import anomaly_record, ledger_json, points_moved, reward_record
from streams.referral_intake import ReferralIntake, alert_record
from streams.referral_metrics import ReferralMetrics
from streams.release_schedule import ReleaseSchedule

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
SWEEP_LIMIT = 5000  # customers per release sweep, so a backlog of hold ends never stalls a batch


class Settled(Struct, frozen=True, gc=False):
    """One customer's settlement, with the partition, the account it started from, its events
    and their stream times."""

    partition: int
    before: Account
    settlement: Settlement
    events: tuple[Event, ...] = ()
    times: tuple[datetime, ...] = ()
    now: datetime | None = None


class PointsLedger:
    """Keeps every owned customer's points account; the batches and the release sweep share it."""

    def __init__(
        self,
        *,
        accounts: AccountStore,
        schedule: ReleaseSchedule,
        advocacy: AdvocacyWindows,
        outbox: Outbox,
        mirror: BalanceMirror,
        metrics: PointsMetrics,
        policies: Policies,
        fraud: FraudPolicy,
        index: IdentityIndex,
        intake: ReferralIntake,
        referral_metrics: ReferralMetrics,
        care: CompensationDesk,
        clocks: StreamClocks,
        clock: Clock,
        ledger_topic: str,
    ) -> None:
        self.accounts = accounts
        self.schedule = schedule
        self.advocacy = advocacy
        self._outbox = outbox
        self._mirror = mirror
        self._metrics = metrics
        self._policies = policies
        self._fraud = fraud
        self._index = index
        self._intake = intake
        self._referral_metrics = referral_metrics
        self.care = care
        self._clocks = clocks
        self._clock = clock
        self._ledger_topic = ledger_topic
        self._pending: list[Settled] = []
        """Settled in the open transaction: indexed and counted once it commits."""
        self._writes: list[asyncio.Future[None]] = []
        """Redis writes of the open transaction still under way."""

    async def settle_customer_events(self, admitted: Sequence[Admitted]) -> Sequence[Rejected]:
        """Settle each customer's purchases, complaints, referral steps and review decisions,
        then publish and stage."""
        by_customer: defaultdict[tuple[int, str], list[Admitted]] = defaultdict(list)
        for item in admitted:
            assert not isinstance(item.event, GiftCardOrder)
            by_customer[(item.position.partition, _customer_of(item.event))].append(item)
        recording = asyncio.ensure_future(  # while the batch settles: it needs no answer
            self._index.record(
                [(e.customer_id, e.context, e.occurred_at) for e in _purchases(admitted)]
            )
        )
        self._writes.append(recording)
        settled = [self._settle(p, c, items) for (p, c), items in by_customer.items()]
        verdicts = await self._score_conversions(settled)
        settled = self._resettle(settled, verdicts, {})
        settled = await self._reserve_budget(settled, verdicts)
        self._apply(settled)
        by_id = {item.event.event_id: item for item in admitted}
        return [
            Rejected(by_id[r.event_id], r.reason, r.detail)
            for done in settled
            for r in done.settlement.rejections
        ]

    def _settle(self, partition: int, customer_id: str, items: Sequence[Admitted]) -> Settled:
        before = self.accounts.load(partition, customer_id)
        events: tuple[Event, ...] = tuple(item.event for item in items)  # type: ignore[misc]
        times = tuple(item.at for item in items)
        now = self._clocks.now(partition) or (times[-1] if times else self._clock())
        done = settle(before, events, now, self._policies, times=times)
        return Settled(partition, before, done, events, times, now)

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
        self, settled: list[Settled], verdicts: Mapping[str, str]
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
            grants |= await self.care.reserve(asked, self._clock())
            settled = self._resettle(settled, verdicts, grants)
        return settled

    def _resettle(
        self, settled: list[Settled], verdicts: Mapping[str, str], grants: Mapping[str, str]
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
                    done.events,
                    done.now or self._clock(),
                    self._policies,
                    verdicts,
                    grants=grants,
                    times=done.times,
                ),
                done.events,
                done.times,
                done.now,
            )
            for done in settled
        ]

    async def release_held_points(self, caught_up: frozenset[int]) -> None:
        """Release every hold that has ended by now in the partitions that are caught up (a
        partition still reading its backlog releases as its events' stream time passes)."""
        now = self._clock()
        due = self.schedule.pop_due(now, SWEEP_LIMIT, caught_up)
        if not due:
            return
        now_ms = int(now.timestamp() * 1000)
        for partition in {p for p, _ in due}:
            self._clocks.advance(partition, now_ms, now_ms)
        settled = []
        for partition, customer_id in due:
            before = self.accounts.load(partition, customer_id)
            try:
                done = settle(before, (), now, self._policies)
            except Exception:  # the account's holds stay, and the sweep goes on
                log.exception("releasing the holds of %s raised", customer_id)
                self._metrics.release_errors.inc()
                continue
            settled.append(Settled(partition, before, done))
        self._apply(settled)

    def forget_partitions(self, revoked: frozenset[int]) -> None:
        """Revoked: stop releasing and counting there (the next owner does)."""
        self.schedule.forget(revoked)
        self.advocacy.forget(revoked)
        for partition in revoked:
            self._clocks.forget(partition)
        log.info("partitions %s left this worker", sorted(revoked))

    async def rebuild_indexes(self, owned: frozenset[int]) -> None:
        """After a recovery: schedule the hold ends and count the advocacy facts of every
        account in the recovered partitions."""
        for partition in owned:
            self._clocks.seed(partition, self.accounts.stream_time(partition))
        scanned = self.advocacy.rebuilding(owned, self.accounts.scan(sorted(owned)))
        await self.schedule.rebuild(owned, scanned)
        self._metrics.held_customers.set(len(self.schedule))
        self._metrics.recoveries.inc()

    def _apply(self, settled: Sequence[Settled]) -> None:
        """Publish and stage; the balances' mirror and the fraud index are written meanwhile
        (`flush` waits for them before the transaction commits)."""
        stored = [s for s in settled if s.settlement.account is not s.before]  # rules return the
        # very same account when nothing changed
        for done in settled:
            self._publish(done.settlement)
            self.care.publish(done.settlement)
        clocks = {p: at for p in {s.partition for s in stored} if (at := self._clocks.now(p))}
        self.accounts.stage(
            self._outbox.emit_raw, [(s.partition, s.settlement.account) for s in stored], clocks
        )
        self._pending.extend(settled)
        self._writes.append(
            asyncio.ensure_future(self._mirror.write([s.settlement.account for s in stored]))
        )
        rejected = [c for s in settled for c in s.settlement.fraud_rejected]
        if rejected:
            self._writes.append(asyncio.ensure_future(self._index.mark_rejected(rejected)))

    async def flush(self) -> None:
        """Before the transaction commits: wait until Redis has the batch's writes (the mirror
        never stays behind a committed account)."""
        writes, self._writes = self._writes, []
        await asyncio.gather(*writes)

    def committed(self) -> None:
        """The transaction committed: the accounts are durable; update the indexes and count."""
        self.accounts.committed()
        tally = _Tally()
        for done in self._pending:
            if done.settlement.account is not done.before:
                self.schedule.track(done.partition, done.before, done.settlement.account)
                self.advocacy.track(done.partition, done.before, done.settlement.account)
            tally.add(done.settlement)
            self.care.count(done.settlement)
        tally.count(self._metrics, self._referral_metrics)
        self._metrics.held_customers.set(len(self.schedule))
        self.discarded()

    def discarded(self) -> None:
        """The transaction was aborted: nothing of the batch happened (its Redis writes are
        idempotent: they are made again with the same values)."""
        self.accounts.discard()
        self._pending.clear()
        for write in self._writes:
            write.cancel()
        self._writes.clear()

    def _publish(self, settlement: Settlement) -> None:
        """Produce a settlement's ledger entries, rewards, commands and anomalies."""
        customer_id = settlement.account.customer_id
        key = customer_id.encode()
        for entry in settlement.entries:
            self._outbox.emit_raw(self._ledger_topic, key, ledger_json(entry))
        for credit in settlement.credits:
            self._outbox.emit("rewards-issued", customer_id, reward_record(credit))
        for command in settlement.commands:
            self._outbox.emit("referral-commands", command.customer_id, command)
        for reward in settlement.referral_rewards:
            self._outbox.emit("referral-rewards", reward.customer_id, reward)
        for anomaly in settlement.anomalies:
            self._outbox.emit("points-anomalies", customer_id, anomaly_record(customer_id, anomaly))


class _Tally:
    """What committed settlements published, counted once per transaction and label."""

    def __init__(self) -> None:
        self.entries: Counter[str] = Counter()
        self.moved: Counter[str] = Counter()
        self.rewards: Counter[str] = Counter()
        self.anomalies: Counter[str] = Counter()
        self.commands: Counter[str] = Counter()
        self.referral_rewards: list[ReferralReward] = []

    def add(self, settlement: Settlement) -> None:
        """One settlement's outputs."""
        for entry in settlement.entries:
            self.entries[entry.kind] += 1
            self.moved[entry.kind] += points_moved(entry)
        self.rewards["points"] += len(settlement.credits)
        self.rewards["discount"] += sum(d.outcome == "discount" for d in settlement.decisions)
        self.anomalies.update(a.kind for a in settlement.anomalies)
        self.commands.update(c.command for c in settlement.commands)
        self.referral_rewards += settlement.referral_rewards

    def count(self, metrics: PointsMetrics, referral_metrics: ReferralMetrics) -> None:
        """Into the counters."""
        for kind, count in self.entries.items():
            metrics.entries.labels(kind).inc(count)
            metrics.points.labels(kind).inc(self.moved[kind])
        for kind, count in self.rewards.items():
            if count:
                metrics.rewards.labels(kind).inc(count)
        for kind, count in self.anomalies.items():
            metrics.anomalies.labels(kind).inc(count)
        for command, count in self.commands.items():
            referral_metrics.commands.labels(command).inc(count)
        referral_metrics.count_rewards(self.referral_rewards)


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


def wall_clock() -> datetime:
    """The worker's clock for the hold-end sweep and the budget's day: UTC now."""
    return datetime.now(UTC)
