"""Referral attribution, conversion and two-sided rewards through the points ledger (pure).

A referee's referral (`Account.referral.referee`) moves through these states:

    signup ── existing customer, or a later sign-up ──> not attributed (`ineligible` record)
      │ ── fraud reject ──> rejected
      v
    attributed ── first qualifying purchase in the window ──> converted: both sides credited
      │   (decision review)                              ──> held: awaiting an operator
      │                                                   ──> rejected (conversion fraud reject)
    held ── operator approve ──> converted;  ── operator reject ──> rejected
    converted | held ── refund of the qualifying order inside the hold ──> cancelled
    attributed ── a referral cycle found through another edge (`ring_review`) ──> decision review
    converted ── the same, its rewards still on hold ──> cancelled (`referral_ring`)

The referee's reward lives on the referee's partition; the referrer's on the referrer's, so it
travels as a `credit_referrer` / `cancel_referrer` command keyed by the referrer. Caps are checked
there (`Account.referral.grants`). Rewards are pending points (a synthetic order
`referral:<key>:<role>` whose `amount_cents` is its points, so a full reversal is a refund of all of
it) released by the ordinary hold-end sweep. Every id is deterministic, and every step is a no-op
when replayed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from msgspec import Struct
from msgspec.structs import replace

from processors.account import Account
from processors.fraud import strictest
from processors.ids import stable_id
from processors.ledger import Anomaly, LedgerEntry, entry_for
from processors.points_state import Order, with_order
from processors.referral_records import both_outcomes, command_outcome, side_outcome
from processors.referral_state import Referee
from schemas.models import FraudDecision, Purchase, ReferralCommand
from schemas.outputs import ReferralReward

REFERRAL_ORDER_PREFIX = "referral:"


def shop_orders(account: Account) -> Iterator[Order]:
    """The orders the customer placed (not the synthetic orders of referral rewards)."""
    orders = account.points.orders.values()
    return (o for o in orders if not o.order_id.startswith(REFERRAL_ORDER_PREFIX))


def with_referee(account: Account, referee: Referee) -> Account:
    """The account with the referral that brought the customer set to `referee`."""
    return replace(account, referral=replace(account.referral, referee=referee))


@dataclass(frozen=True, slots=True)
class Cap:
    """At most `max_count` rewards and `max_points` points per referrer in any rolling `period`."""

    period: timedelta
    max_count: int
    max_points: int


@dataclass(frozen=True, slots=True)
class ReferralPolicy:
    """Configuration of referral rewards (built from settings by the streams layer)."""

    referrer_points: int = 500
    referee_points: int = 500
    min_amount_cents: Mapping[str, int] = field(
        default_factory=lambda: {"EUR": 2000, "USD": 2000, "GBP": 2000}
    )
    """Minimum qualifying order per currency; a currency not listed never qualifies."""
    window: timedelta = timedelta(days=30)
    hold: timedelta = timedelta(days=14)
    caps: tuple[Cap, ...] = (
        Cap(timedelta(days=30), 10, 5_000),
        Cap(timedelta(days=365), 50, 25_000),
    )


class ConversionCheck(Struct, frozen=True, gc=False):
    """A purchase that converts a referral once the fraud scorer has had its say."""

    purchase: Purchase
    referral: Referee


class Step(Struct, frozen=True, gc=False):
    """What one referral step did to an account, and what the world must hear about it."""

    account: Account
    entries: tuple[LedgerEntry, ...] = ()
    anomalies: tuple[Anomaly, ...] = ()
    commands: tuple[ReferralCommand, ...] = ()
    rewards: tuple[ReferralReward, ...] = ()
    rejected: tuple[str, ...] = ()
    """Customers to remember as rejected for fraud."""
    check: ConversionCheck | None = None
    """Set when a conversion is waiting for a fraud verdict: settle again with one."""


def referral_key(referrer_id: str, referee_id: str) -> str:
    """The referral's stable id."""
    return stable_id("rf", referrer_id, referee_id)


def referral_order_id(key: str, role: str) -> str:
    """The synthetic order that holds one side's reward points."""
    return f"{REFERRAL_ORDER_PREFIX}{key}:{role}"


def attribute(
    account: Account, cmd: ReferralCommand, policy: ReferralPolicy, verdicts: Mapping[str, str]
) -> Step:
    """A sign-up (on the referee's partition): the earliest sign-up before conversion wins."""
    current = account.referral.referee
    if current is not None and current.signup_event_id == cmd.source_event_id:
        return Step(account)
    if _existing_customer(account, cmd.occurred_at):
        return Step(account, rewards=(command_outcome(cmd, "ineligible", "existing_customer"),))
    if current is not None and (
        current.order_id is not None
        or (current.signed_up_at, current.signup_event_id) <= (cmd.occurred_at, cmd.source_event_id)
    ):
        return Step(account, rewards=(command_outcome(cmd, "ineligible", "already_referred"),))
    decision = cmd.decision or "review"
    referee = Referee(
        referral_key=cmd.referral_key,
        referrer_id=cmd.referrer_id,
        signup_event_id=cmd.source_event_id,
        signed_up_at=cmd.occurred_at,
        decision=decision,
        status="rejected" if decision == "reject" else "attributed",
        alert_id=cmd.alert_id or "",
        referral_code=cmd.referral_code,
        referral_id=cmd.referral_id,
    )
    rewards: list[ReferralReward] = []
    if current is not None:
        rewards.append(
            side_outcome(
                account.customer_id, current, "referee", "ineligible", 0, cmd, "earlier_referral"
            )
        )
    if decision == "reject":
        rewards.extend(
            both_outcomes(account.customer_id, referee, "rejected", 0, cmd, "fraud_signup")
        )
    account = with_referee(account, referee)
    late = _earlier_qualifying_purchase(account, policy)
    if late is None:
        return Step(account, rewards=tuple(rewards))
    step = convert(account, late, verdicts.get(late.event_id), policy)
    return replace(step, rewards=(*rewards, *step.rewards))


def _earlier_qualifying_purchase(account: Account, policy: ReferralPolicy) -> Purchase | None:
    """A purchase made after the sign-up but processed before it (the two travel different topics),
    rebuilt from its order; it converts like any other (without the purchase's context)."""
    candidates = [
        Purchase(
            event_id=order.event_id,
            occurred_at=order.purchased_at,
            customer_id=account.customer_id,
            type="purchase",
            order_id=order.order_id,
            amount_cents=order.amount_cents - order.refunded_cents,
            currency=order.currency,
        )
        for order in shop_orders(account)
        if order.currency is not None
    ]
    qualifying = [p for p in candidates if converts(account, p, policy)]
    return min(qualifying, key=lambda p: (p.occurred_at, p.order_id), default=None)


def _existing_customer(account: Account, signed_up_at: datetime) -> bool:
    return any(order.purchased_at < signed_up_at for order in shop_orders(account))


def converts(account: Account, purchase: Purchase, policy: ReferralPolicy) -> bool:
    """Whether this purchase is the referee's first qualifying one within the window."""
    referral = account.referral.referee
    if referral is None or referral.status != "attributed" or purchase.type != "purchase":
        return False
    minimum = policy.min_amount_cents.get(purchase.currency)
    return (
        minimum is not None
        and purchase.amount_cents >= minimum
        and referral.signed_up_at <= purchase.occurred_at <= referral.signed_up_at + policy.window
    )


def convert(
    account: Account, purchase: Purchase, verdict: str | None, policy: ReferralPolicy
) -> Step:
    """A qualifying purchase: reward both sides, hold them for review, or reject (fraud)."""
    referral = account.referral.referee
    if referral is None or not converts(account, purchase, policy):
        return Step(account)
    if verdict is None:
        return Step(account, check=ConversionCheck(purchase, referral))
    decision = strictest(referral.decision, verdict)  # type: ignore[arg-type]  # Decision values kept as str
    referral = replace(
        referral,
        decision=decision,
        order_id=purchase.order_id,
        converted_at=purchase.occurred_at,
        conversion_event_id=purchase.event_id,
        status={"approve": "converted", "review": "held"}.get(decision, "rejected"),
    )
    account = with_referee(account, referral)
    if decision == "approve":
        return _creditboth_outcomes(account, policy, purchase)
    if decision == "review":
        return Step(
            account, rewards=both_outcomes(account.customer_id, referral, "held", 0, purchase)
        )
    rewards = both_outcomes(
        account.customer_id, referral, "rejected", 0, purchase, "fraud_conversion"
    )
    return Step(account, rewards=rewards, rejected=(referral.referrer_id, account.customer_id))


def _creditboth_outcomes(
    account: Account, policy: ReferralPolicy, source: Purchase | FraudDecision
) -> Step:
    referral = account.referral.referee
    assert referral is not None and referral.converted_at is not None
    at, key = referral.converted_at, referral.referral_key
    release_at = at + policy.hold
    event_id = referral.conversion_event_id or source.event_id
    account, entries = credit_points(
        account, referral_order_id(key, "referee"), event_id, policy.referee_points, at, release_at
    )
    command = ReferralCommand(
        event_id=stable_id("rc", "credit_referrer", key),
        occurred_at=at,
        command="credit_referrer",
        customer_id=referral.referrer_id,
        referral_key=key,
        referrer_id=referral.referrer_id,
        referee_id=account.customer_id,
        source_event_id=event_id,
        referral_code=referral.referral_code,
        referral_id=referral.referral_id,
        points=policy.referrer_points,
        release_at=release_at,
        order_id=referral.order_id,
    )
    reward = side_outcome(
        account.customer_id, referral, "referee", "credited", policy.referee_points, source
    )
    return Step(account, entries, commands=(command,), rewards=(reward,))


def credit_points(  # noqa: PLR0917 - one credit, all of it needed
    account: Account, order_id: str, event_id: str, points: int, at: datetime, release_at: datetime
) -> tuple[Account, tuple[LedgerEntry, ...]]:
    """Pending referral points as a synthetic order (idempotent: an order is credited once)."""
    if order_id in account.points.orders or points <= 0:
        return account, ()
    account, entry = entry_for(account, "referral", order_id, event_id, at, points, 0)
    order = Order(order_id, event_id, at, points, points, points, release_at)
    return replace(account, points=with_order(account.points, order)), (entry,)


def decide(account: Account, decision: FraudDecision, policy: ReferralPolicy) -> Step:
    """An operator's decision on a referral held for review (anything else is left as it is)."""
    referral = account.referral.referee
    if (
        referral is None
        or referral.decision != "review"
        or referral.status not in {"attributed", "held"}
        or decision.event_id in referral.decision_event_ids
    ):
        return Step(account)
    decided = (*referral.decision_event_ids, decision.event_id)
    if decision.decision == "reject":
        referral = replace(
            referral, decision="reject", status="rejected", decision_event_ids=decided
        )
        account = with_referee(account, referral)
        rewards = both_outcomes(
            account.customer_id, referral, "rejected", 0, decision, "fraud_review"
        )
        return Step(account, rewards=rewards, rejected=(referral.referrer_id, account.customer_id))
    held = referral.status == "held"
    referral = replace(
        referral,
        decision="approve",
        status="converted" if held else "attributed",
        decision_event_ids=decided,
    )
    account = with_referee(account, referral)
    return _creditboth_outcomes(account, policy, decision) if held else Step(account)
