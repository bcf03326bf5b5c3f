"""Settle each customer's events of a batch against their account, inside the open transaction.

Per batch: settle every touched account (pure, `processors.settlement`, each event at its
stream time), ask Redis what the rules need (fraud facts for conversions, the compensation
budget) and settle again with the answers, then publish the outputs, stage the accounts'
changelog records and mirror the balances. The transaction commits them with the input
offsets; only then are the accounts durable in RocksDB and the indexes moved on
(`streams.accounts`). A crash or an abort processes the batch again from the same state.

An event that makes the rules raise is found and dead-lettered by the loop
(`streams.pipeline.PoisonRecords`): no record can stop a partition.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from processors.adjustments import ErasureRequest
from processors.settlement import Event, Policies, settle
from schemas.models import FraudDecision, GiftCardOrder, Purchase, Referral
from schemas.outputs import Erasure
from streams.accounts import OwnedAccounts, Settled
from streams.adapters.outbox import Outbox
from streams.compensation import CompensationDesk
from streams.ingest import Admitted, Rejected
from streams.referral_intake import ReferralIntake
from streams.settlement_outputs import SettlementOutputs

Clock = Callable[[], datetime]


class AccountSettler:
    """The agent of every topic that changes a customer's account, and its transaction's state."""

    def __init__(
        self,
        *,
        accounts: OwnedAccounts,
        outputs: SettlementOutputs,
        outbox: Outbox,
        policies: Policies,
        referrals: ReferralIntake,
        care: CompensationDesk,
        clock: Clock,
    ) -> None:
        self.accounts = accounts
        self._outputs = outputs
        self._outbox = outbox
        self._policies = policies
        self._referrals = referrals
        self.care = care
        self._clock = clock
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
        purchases = [a.event for a in admitted if isinstance(a.event, Purchase)]
        self._referrals.record_contexts(purchases)
        settled = [self._settle(p, c, items) for (p, c), items in by_customer.items()]
        checks = [check for done in settled for check in done.settlement.checks]
        verdicts = await self._referrals.score_conversions(checks) if checks else {}
        settled = self._resettle(settled, verdicts, {})
        settled = await self._reserve_budget(settled, verdicts)
        self.apply(settled)
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
        now = self.accounts.clocks.now(partition) or (times[-1] if times else self._clock())
        done = settle(before, events, now, self._policies, times=times)
        return Settled(partition, before, done, events, times, now)

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

    def apply(self, settled: Sequence[Settled]) -> None:
        """Publish and stage; the balances' mirror and the fraud index are written meanwhile
        (`flush` waits for them before the transaction commits)."""
        for done in settled:
            self._outputs.publish(done.settlement)
        self._writes.append(self.accounts.stage(self._outbox.emit_raw, settled))
        self._pending.extend(settled)
        rejected = [c for s in settled for c in s.settlement.fraud_rejected]
        if rejected:
            self._writes.append(asyncio.ensure_future(self._referrals.mark_rejected(rejected)))
        self._erase([e for s in settled for e in s.settlement.erasures])

    def _erase(self, erasures: Sequence[ErasureRequest]) -> None:
        """Announce the batch's erasures (no personal data) and erase the customers from the
        identity index meanwhile (awaited before the transaction commits, like the mirror)."""
        if not erasures:
            return
        for e in erasures:
            record = Erasure(
                erasure_id=e.erasure_id,
                customer_hash=self._referrals.customer_hash(e.customer_id),
                operator=e.operator,
                source_event_id=e.source_event_id,
                requested_at=e.requested_at,
                erased_at=e.erased_at,
            )
            self._outbox.emit("erasures", e.erasure_id, record)
        customers = sorted({e.customer_id for e in erasures})
        self._writes.append(asyncio.ensure_future(self._referrals.forget(customers)))

    async def flush(self) -> None:
        """Before the transaction commits: wait until Redis has the batch's writes (the mirror
        never stays behind a committed account)."""
        writes, self._writes = self._writes, []
        await asyncio.gather(*writes)

    def committed(self) -> None:
        """The transaction committed: the accounts are durable; update the indexes and count."""
        self.accounts.committed(self._pending)
        self._outputs.count(done.settlement for done in self._pending)
        self.discarded()

    def discarded(self) -> None:
        """The transaction was aborted: nothing of the batch happened (its Redis writes are
        idempotent: they are made again with the same values)."""
        self.accounts.discard()
        self._pending.clear()
        for write in self._writes:
            write.cancel()
        self._writes.clear()


def _customer_of(event: Event) -> str:
    """Whose account an event settles against (account commands: their `customer_id`)."""
    if isinstance(event, FraudDecision):
        return event.referee_id
    if isinstance(event, Referral):
        return event.referrer_id  # an invitation: the inviting customer's
    return event.customer_id


def wall_clock() -> datetime:
    """The worker's clock for the hold-end sweep and the budget's day: UTC now."""
    return datetime.now(UTC)
