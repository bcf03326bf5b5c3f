"""Metrics of referrals and fraud scoring (totals by outcome and rule; never a customer id)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from processors.fraud import RULES, Verdict
from schemas.outputs import ReferralReward

ROLES = ("referrer", "referee")
STATUSES = ("credited", "capped", "held", "cancelled", "rejected", "ineligible")


@dataclass(frozen=True)
class ReferralMetrics:
    """Counters for the referral funnel and fraud decisions."""

    events: Counter
    decisions: Counter
    rule_hits: Counter
    rewards: Counter
    commands: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ReferralMetrics:
        """Register every referral metric in `registry`, each known label set at zero."""
        made = cls(
            events=Counter(
                "rewards_referral_events", "Referral events consumed, by type (invited, "
                "signed_up).", ["type"], registry=registry,
            ),
            decisions=Counter(
                "rewards_fraud_decisions", "Fraud decisions taken by the scorer, by subject "
                "(signup, conversion) and decision (approve, review, reject).",
                ["subject", "decision"], registry=registry,
            ),
            rule_hits=Counter(
                "rewards_fraud_rule_hits", "Fraud rules that fired, by subject and rule.",
                ["subject", "rule"], registry=registry,
            ),
            rewards=Counter(
                "rewards_referral_rewards", "Referral reward outcomes published to "
                "referral-rewards, by role and status.", ["role", "status"], registry=registry,
            ),
            commands=Counter(
                "rewards_referral_commands", "Commands sent to another partition's account "
                "(signup, credit_referrer, cancel_referrer).", ["command"], registry=registry,
            ),
        )  # fmt: skip
        for kind in ("invited", "signed_up"):
            made.events.labels(kind)
        for subject in ("signup", "conversion"):
            for decision in ("approve", "review", "reject"):
                made.decisions.labels(subject, decision)
            for rule in RULES:
                made.rule_hits.labels(subject, rule)
        for role in ROLES:
            for status in STATUSES:
                made.rewards.labels(role, status)
        for command in ("signup", "credit_referrer", "cancel_referrer"):
            made.commands.labels(command)
        return made

    def count_referral_events(self, by_type: Mapping[str, int]) -> None:
        """Count a batch's referral events by type."""
        for kind, count in by_type.items():
            self.events.labels(kind).inc(count)

    def count_decision(self, subject: str, verdict: Verdict) -> None:
        """Count one scorer decision and every rule that fired in it."""
        self.decisions.labels(subject, verdict.decision).inc()
        for hit in verdict.hits:
            self.rule_hits.labels(subject, hit.rule).inc()

    def count_rewards(self, rewards: Iterable[ReferralReward]) -> None:
        """Count published referral reward outcomes."""
        for reward in rewards:
            self.rewards.labels(reward.role, reward.status).inc()
