"""Referral sign-ups on the referrer's partition: score them for fraud, then hand them to the
referee's partition as `signup` commands (the referee's account decides attribution)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from processors.fraud import FraudFacts, FraudPolicy, Verdict, evaluate
from processors.ids import stable_id
from processors.referrals import referral_key
from schemas.models import Purchase, Referral, ReferralCommand
from schemas.outputs import FraudAlert, FraudRuleHit, FraudThresholds
from streams.adapters.outbox import Outbox
from streams.identity_index import IdentityIndex
from streams.ingest import Admitted, Rejected
from streams.referral_metrics import ReferralMetrics


class ReferralIntake:
    """The `referrals` handler: invitations are counted, sign-ups scored and forwarded."""

    def __init__(
        self,
        *,
        index: IdentityIndex,
        emitter: Outbox,
        policy: FraudPolicy,
        metrics: ReferralMetrics,
        alert_on_approve: bool,
    ) -> None:
        self._index = index
        self._emitter = emitter
        self._policy = policy
        self._metrics = metrics
        self._alert_on_approve = alert_on_approve
        self._pending_events: Counter[str] = Counter()
        self._pending_decisions: list[tuple[str, Verdict]] = []

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
            if verdict.decision == "reject":
                refused += [fact.referrer_id, fact.referee_id]
        await self._index.mark_rejected(refused)
        return ()

    def publish_alert(self, alert: FraudAlert, verdict: Verdict) -> None:
        """Publish the explained decision on `fraud-alerts` (counted once committed)."""
        self._pending_decisions.append((alert.subject, verdict))
        if verdict.decision != "approve" or self._alert_on_approve:
            self._emitter.emit("fraud-alerts", alert.referee_id, alert)

    async def flush(self) -> None:
        """Nothing is written elsewhere without waiting."""

    def committed(self) -> None:
        """The transaction committed: count its referral events and decisions."""
        self._metrics.count_referral_events(self._pending_events)
        for subject, verdict in self._pending_decisions:
            self._metrics.count_decision(subject, verdict)
        self.discarded()

    def discarded(self) -> None:
        """The transaction was aborted: nothing of it was decided."""
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
