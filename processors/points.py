"""Points rules: earning by currency rate, holds, refund reversals and redemption (pure).

Every function takes a customer's `Account` and an event (or a time) and returns an `Outcome`: the
new account, the ledger entries that explain the change, and any rejection or anomaly. Nothing here
does I/O; the streams layer stores accounts and publishes entries.

Rounding is always down (floor) on non-negative integers: points earned, and points reversed by a
partial refund (cumulative, so several partial refunds never reverse more than a full one would).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from processors.advocacy_state import InviteFact, SurveyFact
from processors.compensation_state import ComplaintRecord
from processors.ids import stable_id
from processors.referral_state import Grant, Referee

EntryKind = Literal["earn", "release", "reversal", "redemption", "referral"]
AnomalyKind = Literal["redemption_shortfall", "reversal_shortfall", "refund_unknown_order"]


@dataclass(frozen=True, slots=True)
class EarnRate:
    """`points` for every whole `per_minor_units` spent, e.g. 1 point per 100 cents (1 EUR)."""

    points: int
    per_minor_units: int


@dataclass(frozen=True, slots=True)
class Multiplier:
    """A campaign or tier bonus: purchases in [starts_at, ends_at) earn `percent` / 100 times."""

    name: str
    percent: int
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True, slots=True)
class PointsPolicy:
    """Configuration of the earning rules (built from settings by the streams layer)."""

    rates: Mapping[str, EarnRate]
    hold: timedelta = timedelta(days=14)
    multipliers: tuple[Multiplier, ...] = ()
    order_retention: timedelta = timedelta(days=400)
    """How long an order is kept for refunds; a refund after that is `refund_unknown_order`."""


@dataclass(frozen=True, slots=True)
class Order:
    """What one order earned and what happened to those points since."""

    order_id: str
    event_id: str
    purchased_at: datetime
    amount_cents: int
    earned: int
    pending: int
    release_at: datetime
    refunded_cents: int = 0
    reversed: int = 0
    refund_event_ids: tuple[str, ...] = ()
    redeemed: int = 0
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class Account:
    """A customer's points: balances and the orders that can still change them."""

    customer_id: str
    pending: int = 0
    available: int = 0
    sequence: int = 0
    """How many ledger entries the account has had: the `sequence` of its latest entry."""
    orders: Mapping[str, Order] = field(default_factory=dict)
    orphan_refunds: Mapping[str, datetime] = field(default_factory=dict)
    """Refund event ids that named an unknown order, with their time: reported once, ever."""
    referral: Referee | None = None
    """The referral that brought this customer, if any (they are its referee)."""
    grants: tuple[Grant, ...] = ()
    """Referral rewards this customer earned as a referrer, within the longest cap period."""
    complaints: Mapping[str, ComplaintRecord] = field(default_factory=dict)
    """Every complaint decided for this customer, by complaint id (compensation limits)."""
    surveys: tuple[SurveyFact, ...] = ()
    """Survey answers within the longest advocacy window."""
    invites: tuple[InviteFact, ...] = ()
    """Invitations this customer sent within the longest advocacy window."""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One balance change, with the balances it leaves (append-only; id deterministic)."""

    entry_id: str
    customer_id: str
    sequence: int
    kind: EntryKind
    pending_delta: int
    available_delta: int
    pending_after: int
    available_after: int
    source_event_id: str
    order_id: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class Anomaly:
    """Something to report and count, not an input error: its `kind` and the `points` short."""

    anomaly_id: str
    kind: AnomalyKind
    order_id: str
    points: int
    source_event_id: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of applying one event or one release to an account."""

    account: Account
    entries: tuple[LedgerEntry, ...] = ()
    anomalies: tuple[Anomaly, ...] = ()
    rejection: str | None = None


def points_for(amount_cents: int, currency: str, at: datetime, policy: PointsPolicy) -> int | None:
    """Points an amount earns at `at`, rounded down; None if the currency has no rate."""
    rate = policy.rates.get(currency)
    if rate is None:
        return None
    active = [m.percent for m in policy.multipliers if m.starts_at <= at < m.ends_at]
    numerator: int = amount_cents * rate.points * math.prod(active)
    denominator: int = rate.per_minor_units * 100 ** len(active)
    return numerator // denominator


def entry_for(  # noqa: PLR0917 - one balance change, all of it needed
    account: Account, kind: EntryKind, order: str, event_id: str, at: datetime, dp: int, da: int
) -> tuple[Account, LedgerEntry]:
    """Apply a balance change and describe it."""
    after = Account(  # not dataclasses.replace: this is the hot path, and replace is 4x slower
        account.customer_id,
        account.pending + dp,
        account.available + da,
        account.sequence + 1,
        account.orders,
        account.orphan_refunds,
        account.referral,
        account.grants,
        account.complaints,
        account.surveys,
        account.invites,
    )
    entry = LedgerEntry(
        entry_id=stable_id("le", kind, account.customer_id, order, event_id),
        customer_id=account.customer_id,
        sequence=after.sequence,
        kind=kind,
        pending_delta=dp,
        available_delta=da,
        pending_after=after.pending,
        available_after=after.available,
        source_event_id=event_id,
        order_id=order,
        occurred_at=at,
    )
    return after, entry


def with_order(account: Account, order: Order) -> Account:
    orders = {**account.orders, order.order_id: order}
    return Account(
        account.customer_id,
        account.pending,
        account.available,
        account.sequence,
        orders,
        account.orphan_refunds,
        account.referral,
        account.grants,
        account.complaints,
        account.surveys,
        account.invites,
    )


def _anomaly(  # noqa: PLR0917 - one anomaly, all of it needed
    account: Account, kind: AnomalyKind, order_id: str, points: int, event_id: str, at: datetime
) -> Anomaly:
    anomaly_id = stable_id("pa", kind, account.customer_id, order_id, event_id)
    return Anomaly(anomaly_id, kind, order_id, points, event_id, at)


def earn(
    account: Account,
    *,
    event_id: str,
    order_id: str,
    amount_cents: int,
    currency: str,
    points_redeemed: int,
    at: datetime,
    policy: PointsPolicy,
) -> Outcome:
    """A purchase: earn pending points for the order and debit the points redeemed at checkout.

    A second purchase event for an order already recorded changes nothing (idempotent).
    """
    if order_id in account.orders:
        return Outcome(account)
    points = points_for(amount_cents, currency, at, policy)
    if points is None:
        return Outcome(account, rejection=f"no points rate for currency {currency}")
    entries: list[LedgerEntry] = []
    if points > 0:
        account, entry = entry_for(account, "earn", order_id, event_id, at, points, 0)
        entries.append(entry)
    redemption = _redeem(account, order_id, event_id, points_redeemed, at)
    order = Order(
        order_id=order_id,
        event_id=event_id,
        purchased_at=at,
        amount_cents=amount_cents,
        earned=points,
        pending=points,
        release_at=at + policy.hold,
        redeemed=points_redeemed,
        currency=currency,
    )
    account = with_order(redemption.account, order)
    return Outcome(account, (*entries, *redemption.entries), redemption.anomalies)


def _redeem(account: Account, order_id: str, event_id: str, wanted: int, at: datetime) -> Outcome:
    """Debit up to `wanted` available points; a shortfall is an anomaly, not a negative balance."""
    if wanted <= 0:
        return Outcome(account)
    debit = min(wanted, account.available)
    entries: tuple[LedgerEntry, ...] = ()
    if debit:
        account, entry = entry_for(account, "redemption", order_id, event_id, at, 0, -debit)
        entries = (entry,)
    anomalies: tuple[Anomaly, ...] = ()
    if debit < wanted:
        anomalies = (
            _anomaly(account, "redemption_shortfall", order_id, wanted - debit, event_id, at),
        )
    return Outcome(account, entries, anomalies)


def reverse(
    account: Account, *, event_id: str, order_id: str, refunded_cents: int, at: datetime
) -> Outcome:
    """A refund: remove the order's points in proportion to the amount refunded so far.

    Pending points of the order go first, then available ones. If the customer already spent them,
    the rest is a `reversal_shortfall` anomaly and the balance stays at zero. A refund event seen
    before changes nothing; a refund for an unknown order is reported as an anomaly.
    """
    if event_id in account.orphan_refunds:
        return Outcome(account)  # reported as unknown once; stays so even if the order turns up
    order = account.orders.get(order_id)
    if order is None:
        unknown = _anomaly(account, "refund_unknown_order", order_id, 0, event_id, at)
        orphans = {**account.orphan_refunds, event_id: at}
        return Outcome(replace(account, orphan_refunds=orphans), anomalies=(unknown,))
    if event_id in order.refund_event_ids:
        return Outcome(account)
    refunded = min(order.amount_cents, order.refunded_cents + refunded_cents)
    target = order.earned * refunded // order.amount_cents if order.amount_cents else order.earned
    due = target - order.reversed
    from_pending = min(due, order.pending)
    from_available = min(due - from_pending, account.available)
    entries: tuple[LedgerEntry, ...] = ()
    if from_pending or from_available:
        account, entry = entry_for(
            account, "reversal", order_id, event_id, at, -from_pending, -from_available
        )
        entries = (entry,)
    shortfall = due - from_pending - from_available
    anomalies: tuple[Anomaly, ...] = ()
    if shortfall:
        anomalies = (_anomaly(account, "reversal_shortfall", order_id, shortfall, event_id, at),)
    order = replace(
        order,
        pending=order.pending - from_pending,
        refunded_cents=refunded,
        reversed=target,
        refund_event_ids=(*order.refund_event_ids, event_id),
    )
    return Outcome(with_order(account, order), entries, anomalies)


def release_due(account: Account, now: datetime) -> Outcome:
    """Move every order's pending points whose hold has ended (`release_at` <= now) to available."""
    due = [o for o in account.orders.values() if o.pending > 0 and o.release_at <= now]
    if not due:
        return Outcome(account)
    entries: list[LedgerEntry] = []
    for order in sorted(due, key=lambda o: (o.release_at, o.order_id)):
        account, entry = entry_for(
            account, "release", order.order_id, order.event_id,
            order.release_at, -order.pending, order.pending,
        )  # fmt: skip
        account = with_order(account, replace(order, pending=0))
        entries.append(entry)
    return Outcome(account, tuple(entries))


def next_release(account: Account) -> datetime | None:
    """When this account next has points to release, if ever."""
    due = [o.release_at for o in account.orders.values() if o.pending > 0]
    return min(due) if due else None


def prune(account: Account, now: datetime, policy: PointsPolicy) -> Account:
    """Forget settled orders (nothing pending) and orphan refunds older than the retention."""
    cutoff = now - policy.order_retention
    stale = [
        o.order_id for o in account.orders.values() if o.purchased_at < cutoff and not o.pending
    ]
    orphans = [e for e, at in account.orphan_refunds.items() if at < cutoff]
    if not stale and not orphans:
        return account
    return replace(
        account,
        orders={k: o for k, o in account.orders.items() if k not in stale},
        orphan_refunds={e: at for e, at in account.orphan_refunds.items() if e not in orphans},
    )
