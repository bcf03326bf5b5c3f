"""Settle each customer's events of a batch against their account, inside the open transaction.

Per batch: settle every touched account (pure, `processors.settlement`, each event at its
stream time) up to the first event that needs an answer from outside, ask Redis for every
paused customer at once (fraud facts for conversions, the compensation budget) and continue
each from where it paused, so no event is settled twice; act on the late evidence the batch's
purchases revealed, then publish the outputs, stage the accounts' changelog records and mirror the
balances, all into the open transaction (`streams.transaction`). It commits them with the input
offsets; only then are the accounts durable in RocksDB and the indexes moved on
(`streams.accounts`). A crash or an abort processes the batch again from the same state.

An event that makes the rules raise is found and dead-lettered by the loop
(`streams.pipeline.PoisonRecords`): no record can stop a partition.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from processors.account import Account
from processors.adjustments import ErasureRequest
from processors.settlement import Event, Pending, Policies, Settlement, resume, start
from schemas.models import FraudDecision, GiftCardOrder, Purchase, Referral
from schemas.outputs import Erasure
from streams.accounts import OwnedAccounts, Settled
from streams.compensation import CompensationDesk
from streams.ingest import Admitted, Rejected
from streams.referral_intake import ReferralIntake
from streams.settlement_outputs import SettlementOutputs
from streams.transaction import Transaction

Clock = Callable[[], datetime]


class AccountSettler:
    """The agent of every topic that changes a customer's account."""

    def __init__(
        self,
        *,
        accounts: OwnedAccounts,
        outputs: SettlementOutputs,
        transaction: Transaction,
        policies: Policies,
        referrals: ReferralIntake,
        care: CompensationDesk,
        clock: Clock,
    ) -> None:
        self.accounts = accounts
        self.outputs = outputs
        self._txn = transaction
        self._policies = policies
        self._referrals = referrals
        self.care = care
        self._clock = clock

    async def settle_customer_events(self, admitted: Sequence[Admitted]) -> Sequence[Rejected]:
        """Settle each customer's purchases, complaints, referral steps and review decisions,
        then publish and stage."""
        by_customer: defaultdict[tuple[int, str], list[Admitted]] = defaultdict(list)
        for item in admitted:
            assert not isinstance(item.event, GiftCardOrder)
            by_customer[(item.position.partition, _customer_of(item.event))].append(item)
        purchases = [a.event for a in admitted if isinstance(a.event, Purchase)]
        self._referrals.record_contexts(purchases)
        started = {key: self._start(*key, items) for key, items in by_customer.items()}
        settled = await self._answer(started)
        self.apply(settled)
        by_id = {item.event.event_id: item for item in admitted}
        return [
            Rejected(by_id[r.event_id], r.reason, r.detail)
            for done in settled
            for r in done.settlement.rejections
        ]

    def _start(
        self, partition: int, customer_id: str, items: Sequence[Admitted]
    ) -> tuple[Account, Settlement | Pending]:
        """Settle a customer's events up to the first that needs an answer from outside."""
        before = self.accounts.load(partition, customer_id)
        events: tuple[Event, ...] = tuple(item.event for item in items)  # type: ignore[misc]  # no gift-card orders here
        times = tuple(item.at for item in items)
        now = self.accounts.clocks.now(partition) or (times[-1] if times else self._clock())
        return before, start(before, events, now, self._policies, times=times)

    async def _answer(
        self, started: dict[tuple[int, str], tuple[Account, Settlement | Pending]]
    ) -> list[Settled]:
        """Ask, in one round for every paused customer, what their settlements wait for (fraud
        verdicts for conversions, budget for compensations), and continue each from where it
        paused; again until none waits (an answer can lead to a later question)."""
        progress = {key: done for key, (_, done) in started.items()}
        while paused := {k: p for k, p in progress.items() if isinstance(p, Pending)}:
            checks = [c for p in paused.values() for c in p.checks]
            asked = [r for p in paused.values() for r in p.budget_requests]
            verdicts = await self._referrals.score_conversions(checks) if checks else {}
            grants = await self.care.reserve(asked, self._clock()) if asked else {}
            for key, pending in paused.items():
                progress[key] = resume(pending, verdicts, grants)
        return [
            Settled(key[0], started[key][0], done)
            for key, done in progress.items()
            if isinstance(done, Settlement)
        ]

    def apply(self, settled: Sequence[Settled]) -> None:
        """Publish and stage; the fraud index is written meanwhile (the transaction waits for
        it before it commits)."""
        for done in settled:
            self.outputs.publish(done.settlement)
        self.accounts.stage(self._txn.emit_raw, settled)
        rejected = [c for s in settled for c in s.settlement.fraud_rejected]
        if rejected:
            self._txn.meanwhile(self._referrals.mark_rejected(rejected))
        self._erase([e for s in settled for e in s.settlement.erasures])

    def _erase(self, erasures: Sequence[ErasureRequest]) -> None:
        """Announce the batch's erasures (no personal data) and erase the customers from the
        identity index meanwhile (awaited before the transaction commits)."""
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
            self._txn.emit("erasures", e.erasure_id, record)
        customers = sorted({e.customer_id for e in erasures})
        self._txn.meanwhile(self._referrals.forget(customers))


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
