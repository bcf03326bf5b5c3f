"""Points rules: earning by currency rate, holds, refund reversals and redemption (pure).

Every function takes a customer's `Account` (its `points` part: processors/points_state.py) and an
event (or a time) and returns an `Outcome`: the new account, the ledger entries that explain the
change, and any rejection or anomaly. Nothing here does I/O; the streams layer stores accounts and
publishes entries.

Rounding is always down (floor) on non-negative integers: points earned, and points reversed by a
partial refund (cumulative, so several partial refunds never reverse more than a full one would).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from msgspec.structs import replace

from processors.account import Account
from processors.ledger import Anomaly, LedgerEntry, Outcome, anomaly, entry_for
from processors.points_state import Order, next_release, with_order


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


def points_for(
    amount_cents: int, currency: str, at: datetime, policy: PointsPolicy, tier_percent: int = 100
) -> int | None:
    """Points an amount earns at `at` (campaigns and the tier's percent compose), rounded down;
    None if the currency has no rate."""
    rate = policy.rates.get(currency)
    if rate is None:
        return None
    active = [m.percent for m in policy.multipliers if m.starts_at <= at < m.ends_at]
    numerator: int = amount_cents * rate.points * math.prod(active) * tier_percent
    denominator: int = rate.per_minor_units * 100 ** (len(active) + 1)
    return numerator // denominator


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
    tier_percent: int = 100,
) -> Outcome:
    """A purchase: earn pending points for the order and debit the points redeemed at checkout.

    A second purchase event for an order already recorded changes nothing (idempotent); one that
    names another amount or currency is an `order_id_reused` anomaly, reported once.
    """
    known = account.points.orders.get(order_id)
    if known is not None and (
        event_id == known.event_id or event_id in known.conflicting_event_ids
    ):
        return Outcome(account)
    points = points_for(amount_cents, currency, at, policy, tier_percent)
    if points is None:
        return Outcome(account, rejection=f"no points rate for currency {currency}")
    if known is not None:
        return _reused(account, known, event_id, amount_cents, currency, at)
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
    account = _with_order(redemption.account, order)
    return Outcome(account, (*entries, *redemption.entries), redemption.anomalies)


def _reused(  # noqa: PLR0917 - the order and the event that names it again
    account: Account, order: Order, event_id: str, amount_cents: int, currency: str, at: datetime
) -> Outcome:
    """Another purchase event for a recorded order: the same purchase changes nothing; another
    amount or currency is reported (once per event) and changes nothing either."""
    if (amount_cents, currency) == (order.amount_cents, order.currency):
        return Outcome(account)
    reused = replace(order, conflicting_event_ids=(*order.conflicting_event_ids, event_id))
    reported = anomaly(
        account, "order_id_reused", order.order_id, 0, event_id, at, amount_cents, currency
    )
    return Outcome(_with_order(account, reused), anomalies=(reported,))


def _redeem(account: Account, order_id: str, event_id: str, wanted: int, at: datetime) -> Outcome:
    """Debit up to `wanted` available points; a shortfall is an anomaly, not a negative balance."""
    if wanted <= 0:
        return Outcome(account)
    debit = min(wanted, account.points.available)
    entries: tuple[LedgerEntry, ...] = ()
    if debit:
        account, entry = entry_for(account, "redemption", order_id, event_id, at, 0, -debit)
        entries = (entry,)
    anomalies: tuple[Anomaly, ...] = ()
    if debit < wanted:
        anomalies = (
            anomaly(account, "redemption_shortfall", order_id, wanted - debit, event_id, at),
        )
    return Outcome(account, entries, anomalies)


def reverse(
    account: Account,
    *,
    event_id: str,
    order_id: str,
    refunded_cents: int,
    at: datetime,
    currency: str | None = None,
) -> Outcome:
    """A refund: remove the order's points in proportion to the amount refunded so far.

    Pending points of the order go first, then available ones. If the customer already spent them,
    the rest is a `reversal_shortfall` anomaly and the balance stays at zero. A refund event seen
    before changes nothing; a refund for an unknown order is reported as an anomaly, and so are a
    refund beyond what is left of the order (`refund_exceeds_order`: the rest is reversed) and one
    in another currency than the order's (`refund_currency_mismatch`: nothing is reversed, an
    operator decides).
    """
    points = account.points
    if event_id in points.orphan_refunds:
        return Outcome(account)  # reported as unknown once; stays so even if the order turns up
    order = points.orders.get(order_id)
    if order is None:
        unknown = anomaly(account, "refund_unknown_order", order_id, 0, event_id, at)
        orphans = {**points.orphan_refunds, event_id: at}
        oldest = at if points.oldest_at is None or at < points.oldest_at else points.oldest_at
        points = replace(points, orphan_refunds=orphans, oldest_at=oldest)
        return Outcome(replace(account, points=points), (), (unknown,))
    if event_id in order.refund_event_ids:
        return Outcome(account)
    if currency is not None and order.currency is not None and currency != order.currency:
        seen = replace(order, refund_event_ids=(*order.refund_event_ids, event_id))
        mismatch = anomaly(account, "refund_currency_mismatch", order_id, 0, event_id, at,
                            refunded_cents, currency)  # fmt: skip
        return Outcome(_with_order(account, seen), anomalies=(mismatch,))
    return _reverse_share(account, order, event_id, refunded_cents, at)


def _reverse_share(
    account: Account, order: Order, event_id: str, refunded_cents: int, at: datetime
) -> Outcome:
    """Reverse the order's points for the share refunded so far (capped at the whole order)."""
    beyond = order.refunded_cents + refunded_cents - order.amount_cents
    refunded = min(order.amount_cents, order.refunded_cents + refunded_cents)
    target = order.earned * refunded // order.amount_cents if order.amount_cents else order.earned
    due = target - order.reversed
    from_pending = min(due, order.pending)
    from_available = min(due - from_pending, account.points.available)
    entries: tuple[LedgerEntry, ...] = ()
    if from_pending or from_available:
        account, entry = entry_for(
            account, "reversal", order.order_id, event_id, at, -from_pending, -from_available
        )
        entries = (entry,)
    shortfall = due - from_pending - from_available
    anomalies: list[Anomaly] = []
    if shortfall:
        anomalies.append(
            anomaly(account, "reversal_shortfall", order.order_id, shortfall, event_id, at)
        )
    if beyond > 0:
        anomalies.append(anomaly(account, "refund_exceeds_order", order.order_id, 0, event_id, at,
                                  beyond, order.currency))  # fmt: skip
    order = replace(
        order,
        pending=order.pending - from_pending,
        refunded_cents=refunded,
        reversed=target,
        refund_event_ids=(*order.refund_event_ids, event_id),
    )
    return Outcome(_with_order(account, order), entries, tuple(anomalies))


def release_due(account: Account, now: datetime) -> Outcome:
    """Move every order's pending points whose hold has ended (`release_at` <= now) to available."""
    due_at = account.points.release_due_at
    if due_at is None or due_at > now:
        return Outcome(account)
    due = [o for o in account.points.orders.values() if o.pending > 0 and o.release_at <= now]
    entries: list[LedgerEntry] = []
    for order in sorted(due, key=lambda o: (o.release_at, o.order_id)):
        account, entry = entry_for(
            account, "release", order.order_id, order.event_id,
            order.release_at, -order.pending, order.pending,
        )  # fmt: skip
        orders = {**account.points.orders, order.order_id: replace(order, pending=0)}
        account = replace(account, points=replace(account.points, orders=orders))
        entries.append(entry)
    points = replace(account.points, release_due_at=next_release(account.points))
    return Outcome(replace(account, points=points), tuple(entries))


def prune(account: Account, now: datetime, policy: PointsPolicy) -> Account:
    """Forget settled orders (nothing pending) and orphan refunds older than the retention."""
    cutoff, points = now - policy.order_retention, account.points
    if points.oldest_at is None or points.oldest_at >= cutoff:
        return account  # nothing can be that old yet
    stale = {
        o.order_id for o in points.orders.values() if o.purchased_at < cutoff and not o.pending
    }
    orphans = {e for e, at in points.orphan_refunds.items() if at < cutoff}
    if not stale and not orphans:  # only pending orders are that old (a hold beyond retention)
        return account
    orders = {k: o for k, o in points.orders.items() if k not in stale}
    refunds = {e: at for e, at in points.orphan_refunds.items() if e not in orphans}
    times = [o.purchased_at for o in orders.values()] + list(refunds.values())
    oldest = min(times, default=None)
    kept = replace(points, orders=orders, orphan_refunds=refunds, oldest_at=oldest)
    return replace(account, points=kept)


def _with_order(account: Account, order: Order) -> Account:
    return replace(account, points=with_order(account.points, order))
