"""Referral sign-ups on the referrer's partition: score them for fraud, then hand them to the
referee's partition as `signup` commands (the referee's account decides attribution); a sign-up
that closes a referral cycle also sends each other edge of the cycle a `ring_review` command."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Protocol

from processors.fraud import FraudFacts, FraudPolicy, Verdict, evaluate
from processors.ids import stable_id
from processors.referral_rings import ring_review_commands
from processors.referrals import ConversionCheck, referral_key
from schemas.models import Purchase, Referral, ReferralCommand
from schemas.outputs import FraudAlert, FraudRuleHit, FraudThresholds
from streams.adapters.identity_index import LateMatch, Seen
from streams.adapters.referral_metrics import ReferralMetrics
from streams.ingest import Admitted, Rejected
from streams.transaction import Transaction


class Identity(Protocol):
    """The identity index in Redis (`streams.adapters.identity_index.IdentityIndex`): keyed
    hashes of who used which signal; a participant of the transaction (pairs recorded by an
    aborted one are recorded again)."""

    async def signup_facts(self, signups: Sequence[Referral]) -> list[FraudFacts]:
        """Facts for each sign-up, and record it."""

    async def conversion_facts(self, checks: Sequence[ConversionCheck]) -> list[FraudFacts]:
        """Facts for each converting purchase."""

    async def record(self, seen: Sequence[Seen]) -> list[LateMatch]:
        """Remember the signals purchases showed; the late evidence they reveal."""

    async def mark_rejected(self, customers: Iterable[str]) -> None:
        """Remember customers rejected for fraud."""

    async def forget(self, customers: Sequence[str]) -> None:
        """Erase customers."""

    def customer_hash(self, customer_id: str) -> str:
        """The customer's keyed hash."""

    def committed(self) -> None:
        """The transaction committed."""

    def discarded(self) -> None:
        """The transaction was aborted."""


class ReferralIntake:
    """Referral fraud screening: the `referrals` handler (invitations counted, sign-ups scored
    and forwarded) and the scoring of conversions for the accounts' settlement."""

    def __init__(
        self,
        *,
        index: Identity,
        transaction: Transaction,
        policy: FraudPolicy,
        metrics: ReferralMetrics,
        alert_on_approve: bool,
    ) -> None:
        self._index = index
        self._emitter = transaction
        self._policy = policy
        self._metrics = metrics
        self._alert_on_approve = alert_on_approve
        self._pending_events: Counter[str] = Counter()
        self._pending_decisions: list[tuple[str, Verdict]] = []

    async def forget(self, customers: Sequence[str]) -> None:
        """Erase customers from the identity index (forget commands)."""
        await self._index.forget(customers)

    def customer_hash(self, customer_id: str) -> str:
        """The customer's keyed hash, for records that carry no personal data."""
        return self._index.customer_hash(customer_id)

    async def score_signups(self, admitted: Sequence[Admitted]) -> Sequence[Rejected]:
        """Score each sign-up, publish its fraud alert, forward it to the referee's partition."""
        events = [item.event for item in admitted if isinstance(item.event, Referral)]
        self._pending_events.update(e.type for e in events)
        signups = [e for e in events if e.type == "signed_up" and e.referee_id is not None]
        facts = await self._index.signup_facts(signups)
        refused: list[str] = []
        for signup, fact in zip(signups, facts, strict=True):
            verdict = evaluate(fact, self._policy)
            alert_id = stable_id("fa", "signup", signup.event_id)
            self.publish_alert(alert_record(alert_id, fact, verdict, signup), verdict)
            command = signup_command(signup, verdict, alert_id)
            self._emitter.emit("referral-commands", command.customer_id, command)
            for review in ring_review_commands(
                fact.ring, referrer_id=signup.referrer_id, referee_id=command.customer_id,
                source_event_id=signup.event_id, at=signup.occurred_at, alert_id=alert_id,
            ):  # fmt: skip
                self._emitter.emit("referral-commands", review.customer_id, review)
            if verdict.decision == "reject":
                refused += [fact.referrer_id, fact.referee_id]
        await self._index.mark_rejected(refused)
        return ()

    async def score_conversions(self, checks: Sequence[ConversionCheck]) -> dict[str, str]:
        """Score converting purchases for fraud (one Redis round trip) and publish the alerts;
        the verdicts by converting purchase's event id."""
        facts = await self._index.conversion_facts(checks)
        verdicts: dict[str, str] = {}
        for check, fact in zip(checks, facts, strict=True):
            verdict = evaluate(fact, self._policy)
            key = check.referral.referral_key
            alert_id = stable_id("fa", "conversion", key, check.purchase.event_id)
            self.publish_alert(alert_record(alert_id, fact, verdict, check.purchase), verdict)
            verdicts[check.purchase.event_id] = verdict.decision
        return verdicts

    def record_contexts(self, purchases: Sequence[Purchase]) -> None:
        """Remember the identity signals of purchases (the index the fraud rules read) and act
        on the late evidence they reveal, while the batch settles and the loop goes on; the
        transaction waits for it before it commits."""
        if any(p.context is not None for p in purchases):
            self._emitter.meanwhile(self._late_evidence(purchases))

    async def _late_evidence(self, purchases: Sequence[Purchase]) -> None:
        """Record the purchases' signals; where the other party of one of a customer's referral
        edges showed the same signal, rescore that referral into the transaction."""
        seen = [(p.customer_id, p.context, p.occurred_at, p.event_id) for p in purchases]
        matches = await self._index.record(seen)
        by_id = {p.event_id: p for p in purchases}
        for match in matches:
            self._rescore(match, by_id[match.event_id])

    def _rescore(self, match: LateMatch, purchase: Purchase) -> None:
        """Late evidence: score the match alone; a review or reject goes to the referee."""
        fact = FraudFacts(
            subject="late_evidence", referrer_id=match.referrer_id, referee_id=match.referee_id,
            shared=(match.signal,),
        )  # fmt: skip
        verdict = evaluate(fact, self._policy)
        if verdict.decision == "approve":
            return
        key = referral_key(match.referrer_id, match.referee_id)
        alert_id = stable_id("fa", "late", key, match.signal.kind, match.signal.hashed)
        self.publish_alert(alert_record(alert_id, fact, verdict, purchase), verdict)
        command = ReferralCommand(
            event_id=stable_id("rc", "rescore", key, match.signal.kind, match.signal.hashed),
            occurred_at=purchase.occurred_at, command="rescore", customer_id=match.referee_id,
            referral_key=key, referrer_id=match.referrer_id, referee_id=match.referee_id,
            source_event_id=purchase.event_id, decision=verdict.decision, score=verdict.score,
            alert_id=alert_id,
        )  # fmt: skip
        self._emitter.emit("referral-commands", command.customer_id, command)

    async def mark_rejected(self, customers: Sequence[str]) -> None:
        """Remember customers rejected for fraud."""
        await self._index.mark_rejected(customers)

    def publish_alert(self, alert: FraudAlert, verdict: Verdict) -> None:
        """Publish the explained decision on `fraud-alerts` (counted once committed)."""
        self._pending_decisions.append((alert.subject, verdict))
        if verdict.decision != "approve" or self._alert_on_approve:
            self._emitter.emit("fraud-alerts", alert.referee_id, alert)

    def committed(self) -> None:
        """The transaction committed: count its referral events and decisions."""
        self._metrics.count_referral_events(self._pending_events)
        for subject, verdict in self._pending_decisions:
            self._metrics.count_decision(subject, verdict)
        self._forget()

    def discarded(self) -> None:
        """The transaction was aborted: nothing of it was decided."""
        self._forget()

    def _forget(self) -> None:
        self._pending_events.clear()
        self._pending_decisions.clear()


def signup_command(signup: Referral, verdict: Verdict, alert_id: str) -> ReferralCommand:
    """The sign-up as a command for the referee's partition, with its fraud verdict."""
    assert signup.referee_id is not None
    return ReferralCommand(
        event_id=stable_id("rc", "signup", signup.event_id),
        occurred_at=signup.occurred_at,
        command="signup",
        customer_id=signup.referee_id,
        referral_key=referral_key(signup.referrer_id, signup.referee_id),
        referrer_id=signup.referrer_id,
        referee_id=signup.referee_id,
        source_event_id=signup.event_id,
        referral_code=signup.referral_code,
        referral_id=signup.referral_id,
        decision=verdict.decision,
        score=verdict.score,
        alert_id=alert_id,
    )


def alert_record(
    alert_id: str, facts: FraudFacts, verdict: Verdict, source: Referral | Purchase
) -> FraudAlert:
    """A `fraud-alerts` record: every rule that fired, its weight and hashed evidence."""
    return FraudAlert(
        alert_id=alert_id,
        decided_at=source.occurred_at,
        decision=verdict.decision,
        subject=facts.subject,
        referrer_id=facts.referrer_id,
        referee_id=facts.referee_id,
        referral_code=source.referral_code if isinstance(source, Referral) else None,
        referral_id=source.referral_id if isinstance(source, Referral) else None,
        source_event_id=source.event_id,
        score=verdict.score,
        thresholds=FraudThresholds(review=verdict.review_at, reject=verdict.reject_at),
        rules=tuple(
            FraudRuleHit(rule=hit.rule, weight=hit.weight, evidence=dict(hit.evidence))
            for hit in verdict.hits
        ),
    )
