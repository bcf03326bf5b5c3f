"""Self-referral fraud scoring: named, weighted rules and a decision that explains itself.

The streams layer gathers `FraudFacts` (from the identity index in Redis) and calls `evaluate`.
Every rule that fires becomes a `RuleHit` with its weight and evidence (keyed hashes, counts and
domains only, never a raw email, IP, address or fingerprint); the score is the sum of the weights,
and the thresholds map it to approve (< review_at), review (< reject_at) or reject.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

Decision = Literal["approve", "review", "reject"]
Subject = Literal["signup", "conversion", "late_evidence"]

RULES: tuple[str, ...] = (
    "same_customer",
    "same_email",
    "same_device",
    "same_payment",
    "same_address",
    "same_ip_ua",
    "disposable_email",
    "referrer_velocity",
    "ip_velocity",
    "device_velocity",
    "referral_ring",
    "referrer_rejected",
    "referee_rejected",
)
"""Every rule, in the order hits are listed."""

DEFAULT_WEIGHTS: Mapping[str, float] = {
    "same_customer": 100.0,
    "same_email": 90.0,
    "same_payment": 90.0,
    "same_device": 70.0,
    "same_address": 50.0,
    "same_ip_ua": 40.0,
    "disposable_email": 30.0,
    "referrer_velocity": 40.0,
    "ip_velocity": 30.0,
    "device_velocity": 40.0,
    "referral_ring": 60.0,
    "referrer_rejected": 60.0,
    "referee_rejected": 80.0,
}
SHARED_RULES: Mapping[str, str] = {
    "email": "same_email",
    "device": "same_device",
    "payment": "same_payment",
    "address": "same_address",
    "ip_ua": "same_ip_ua",
}
"""Identity signal kind -> the rule that fires when referrer and referee share it."""
_RANK: Mapping[str, int] = {"approve": 0, "review": 1, "reject": 2}


@dataclass(frozen=True, slots=True)
class FraudPolicy:
    """Weights, thresholds and windows of the rules (built from settings by the streams layer)."""

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    review_at: float = 40.0
    reject_at: float = 80.0
    velocity_limits: Mapping[str, int] = field(
        default_factory=lambda: {"referrer": 10, "ip": 5, "device": 3}
    )
    """Sign-ups allowed per referrer, IP or device in `velocity_window`; one more fires the rule."""
    velocity_window: timedelta = timedelta(days=1)
    ip_ua_window: timedelta = timedelta(days=1)
    ring_depth: int = 3
    """The longest referral cycle looked for, in customers (2: A refers B, B refers A)."""

    def __post_init__(self) -> None:
        """Refuse a policy that cannot mean what it says."""
        if not 0 <= self.review_at <= self.reject_at:
            raise ValueError("thresholds need 0 <= review_at <= reject_at")
        unknown = set(self.weights) - set(RULES)
        if unknown:
            raise ValueError(f"unknown fraud rules: {sorted(unknown)}")
        if any(weight < 0 for weight in self.weights.values()):
            raise ValueError("rule weights cannot be negative")
        if any(limit < 1 for limit in self.velocity_limits.values()):
            raise ValueError("velocity limits must be at least 1")
        if self.ring_depth < 2:
            raise ValueError("ring_depth must be at least 2")


@dataclass(frozen=True, slots=True)
class SharedSignal:
    """An identity signal (`email`, `device`, ...) the referee has and the referrer has too."""

    kind: str
    hashed: str


@dataclass(frozen=True, slots=True)
class FraudFacts:
    """What the identity index knows about one sign-up or conversion."""

    subject: Subject
    referrer_id: str
    referee_id: str
    shared: tuple[SharedSignal, ...] = ()
    disposable_domain: str | None = None
    velocity: Mapping[str, int] = field(default_factory=dict)
    """"referrer" / "ip" / "device" -> sign-ups in the window, this one included."""
    ring: tuple[str, ...] = ()
    """A referral cycle through this pair, e.g. ("c-1", "c-2", "c-1"); empty if none."""
    rejected: tuple[str, ...] = ()
    """Roles ("referrer", "referee") previously rejected for fraud."""


@dataclass(frozen=True, slots=True)
class RuleHit:
    """One rule that fired, its weight and its evidence."""

    rule: str
    weight: float
    evidence: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision, the score behind it, every rule that fired and the thresholds in force."""

    decision: Decision
    score: float
    hits: tuple[RuleHit, ...]
    review_at: float
    reject_at: float


def evaluate(facts: FraudFacts, policy: FraudPolicy) -> Verdict:
    """Score the facts and decide: the sum of the weights of the rules that fired."""
    fired = dict(_fired(facts, policy))
    hits = tuple(
        RuleHit(rule, policy.weights.get(rule, 0.0), fired[rule])
        for rule in RULES
        if rule in fired and policy.weights.get(rule, 0.0) > 0
    )
    score = round(sum(hit.weight for hit in hits), 3)
    decision: Decision = "approve"
    if score >= policy.reject_at:
        decision = "reject"
    elif score >= policy.review_at:
        decision = "review"
    return Verdict(decision, score, hits, policy.review_at, policy.reject_at)


def _fired(facts: FraudFacts, policy: FraudPolicy) -> list[tuple[str, Mapping[str, str]]]:
    """(rule, evidence) for every rule the facts trigger, weight aside."""
    fired: list[tuple[str, Mapping[str, str]]] = []
    if facts.referrer_id == facts.referee_id:
        fired.append(("same_customer", {"customer_id": facts.referee_id}))
    for signal in facts.shared:
        rule = SHARED_RULES.get(signal.kind)
        if rule is not None:
            fired.append((rule, {"signal": signal.kind, "hash": signal.hashed[:16]}))
    if facts.disposable_domain is not None:
        fired.append(("disposable_email", {"domain": facts.disposable_domain}))
    for who, count in facts.velocity.items():
        limit = policy.velocity_limits.get(who)
        if limit is not None and count > limit:
            window = iso_duration(policy.velocity_window)
            counted = {"count": str(count), "limit": str(limit), "window": window}
            fired.append((f"{who}_velocity", counted))
    if facts.ring:
        fired.append(("referral_ring", {"cycle": ">".join(facts.ring)}))
    fired.extend((f"{role}_rejected", {"role": role}) for role in facts.rejected)
    first: dict[str, Mapping[str, str]] = {}
    for rule, found in fired:
        first.setdefault(rule, found)  # one hit per rule
    return list(first.items())


def strictest(*decisions: Decision) -> Decision:
    """The most severe decision: reject over review over approve (approve if none)."""
    return max(decisions, key=_RANK.__getitem__, default="approve")


def iso_duration(span: timedelta) -> str:
    """An ISO 8601 duration such as `P1D`, `PT6H` or `P1DT30M` (whole seconds)."""
    days, rest = divmod(int(span.total_seconds()), 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    time = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    return ("P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")) if span else "PT0S"
