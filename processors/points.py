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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from msgspec import Struct
from msgspec.structs import replace

from processors.advocacy_state import InviteFact, SurveyFact
from processors.compensation_state import ComplaintRecord
from processors.ids import stable_id
from processors.referral_state import Grant, Referee
from schemas.outputs import AnomalyKind

EntryKind = Literal["earn", "release", "reversal", "redemption", "referral", "adjustment", "expiry"]


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


class Order(Struct, frozen=True, gc=False, array_like=True):
    """What one order earned and what happened to those points since (stored: fields are only
    ever added at the end, with a default)."""

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
    conflicting_event_ids: tuple[str, ...] = ()
    """Later purchase events that reused this order id with another amount or currency."""


class Account(Struct, frozen=True, gc=False, array_like=True):
    """A customer's points: balances and the orders that can still change them (stored: fields
    are only ever added at the end, with a default)."""

    customer_id: str
    pending: int = 0
    available: int = 0
    sequence: int = 0
    """How many ledger entries the account has had: the `sequence` of its latest entry."""
    orders: dict[str, Order] = {}
    orphan_refunds: dict[str, datetime] = {}
    """Refund event ids that named an unknown order, with their time: reported once, ever."""
    referral: Referee | None = None
    """The referral that brought this customer, if any (they are its referee)."""
    grants: tuple[Grant, ...] = ()
    """Referral rewards this customer earned as a referrer, within the longest cap period."""
    complaints: dict[str, ComplaintRecord] = {}
    """Every complaint decided for this customer, by complaint id (compensation limits)."""
    surveys: tuple[SurveyFact, ...] = ()
    """Survey answers within the longest advocacy window."""
    invites: tuple[InviteFact, ...] = ()
    """Invitations this customer sent within the longest advocacy window."""
    release_due_at: datetime | None = None
    """No order has pending points to release before this (kept by `with_order` and
    `release_due`, so a release check costs nothing until then); None: nothing pending."""
    oldest_at: datetime | None = None
    """No order was purchased, and no orphan refund seen, before this (kept like
    `release_due_at`, so that a retention check costs nothing until it can find something)."""
    adjustments: tuple[str, ...] = ()
    """The latest manual adjustment ids applied, oldest first (at most `ADJUSTMENT_MEMORY`)."""
    tier: str | None = None
    """The loyalty tier held (processors/tiers.py); None: no tier."""
    tier_days: tuple[tuple[int, int], ...] = ()
    """(UTC day number, qualifying amount) of the days within the tier period plus grace."""
    tier_checked: int = 0
    """The UTC day number up to which tier downgrades were checked."""
    lots: tuple[tuple[datetime, int], ...] | None = None
    """Available points by when they became available, oldest first (processors/expiry.py);
    None: not tracked (no expiry policy). Kept by `entry_for`."""
    active_at: datetime | None = None
    """The last activity (purchase, refund, redemption, adjustment), with an inactivity expiry."""
    warned_until: datetime | None = None
    """Lots expiring up to this time have had their expiry warning."""
    inactivity_warned: datetime | None = None
    """The inactivity expiry time last warned about."""
    inactivity_expired: datetime | None = None
    """The inactivity expiry time that already expired the points."""
    expiry_due_at: datetime | None = None
    """When time next warns or expires points (the sweep visits the account then)."""
    tier_due_at: datetime | None = None
    """When time alone next downgrades the tier (the sweep visits the account then)."""


class LedgerEntry(Struct, frozen=True, gc=False, omit_defaults=True):
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
    operator: str | None = None
    """Who made a manual adjustment (`adjustment` entries only)."""
    reason: str | None = None
    """Why, in the operator's words (`adjustment` entries only)."""


class Anomaly(Struct, frozen=True, gc=False):
    """Something to report and count, not an input error: its `kind` and the `points` short."""

    anomaly_id: str
    kind: AnomalyKind
    order_id: str
    points: int
    source_event_id: str
    occurred_at: datetime
    amount_cents: int | None = None
    """The refund beyond the order, or the reused order id's other amount."""
    currency: str | None = None
    """The refund's or the reused order id's currency, where it matters."""


class Outcome(Struct, frozen=True, gc=False):
    """The result of applying one event or one release to an account."""

    account: Account
    entries: tuple[LedgerEntry, ...] = ()
    anomalies: tuple[Anomaly, ...] = ()
    rejection: str | None = None


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


def entry_for(  # noqa: PLR0917 - one balance change, all of it needed
    account: Account, kind: EntryKind, order: str, event_id: str, at: datetime, dp: int, da: int
) -> tuple[Account, LedgerEntry]:
    """Apply a balance change and describe it."""
    after = replace(
        account,
        pending=account.pending + dp,
        available=account.available + da,
        sequence=account.sequence + 1,
    )
    if da and account.lots is not None:  # expiry on: keep the lots (a new one may be due first)
        due = account.expiry_due_at if da < 0 else at
        after = replace(after, lots=with_lots(account.lots, at, da), expiry_due_at=due)
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


def with_lots(
    lots: tuple[tuple[datetime, int], ...], at: datetime, delta: int
) -> tuple[tuple[datetime, int], ...]:
    """Lots after an available change: a credit is a lot at `at`, a debit takes oldest first."""
    if delta > 0:
        index = len(lots)
        while index and lots[index - 1][0] > at:
            index -= 1
        if index and lots[index - 1][0] == at:
            return (*lots[: index - 1], (at, lots[index - 1][1] + delta), *lots[index:])
        return (*lots[:index], (at, delta), *lots[index:])
    owed, kept = -delta, list(lots)
    while owed and kept:
        taken = min(owed, kept[0][1])
        owed -= taken
        kept[0] = (kept[0][0], kept[0][1] - taken)
        if not kept[0][1]:
            kept.pop(0)
    return tuple(kept)


def is_blank(account: Account) -> bool:
    """Nothing but time's bookkeeping (no balance, history or facts): an erased or unused
    account, stored as a tombstone."""
    bare = replace(
        account,
        lots=account.lots or None,
        expiry_due_at=None,
        tier_checked=0,
        tier_due_at=None,
        release_due_at=None,
    )
    return bare == Account(account.customer_id)


def with_order(account: Account, order: Order) -> Account:
    """The account with `order` added or replaced (and its next release and oldest time kept)."""
    due, oldest = account.release_due_at, account.oldest_at
    if order.pending > 0 and (due is None or order.release_at < due):
        due = order.release_at
    if oldest is None or order.purchased_at < oldest:
        oldest = order.purchased_at
    orders = {**account.orders, order.order_id: order}
    return replace(account, orders=orders, release_due_at=due, oldest_at=oldest)


def _anomaly(  # noqa: PLR0917 - one anomaly, all of it needed
    account: Account,
    kind: AnomalyKind,
    order_id: str,
    points: int,
    event_id: str,
    at: datetime,
    amount_cents: int | None = None,
    currency: str | None = None,
) -> Anomaly:
    anomaly_id = stable_id("pa", kind, account.customer_id, order_id, event_id)
    return Anomaly(anomaly_id, kind, order_id, points, event_id, at, amount_cents, currency)


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
    known = account.orders.get(order_id)
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
    account = with_order(redemption.account, order)
    return Outcome(account, (*entries, *redemption.entries), redemption.anomalies)


def _reused(  # noqa: PLR0917 - the order and the event that names it again
    account: Account, order: Order, event_id: str, amount_cents: int, currency: str, at: datetime
) -> Outcome:
    """Another purchase event for a recorded order: the same purchase changes nothing; another
    amount or currency is reported (once per event) and changes nothing either."""
    if (amount_cents, currency) == (order.amount_cents, order.currency):
        return Outcome(account)
    reused = replace(order, conflicting_event_ids=(*order.conflicting_event_ids, event_id))
    anomaly = _anomaly(
        account, "order_id_reused", order.order_id, 0, event_id, at, amount_cents, currency
    )
    return Outcome(with_order(account, reused), anomalies=(anomaly,))


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
    if event_id in account.orphan_refunds:
        return Outcome(account)  # reported as unknown once; stays so even if the order turns up
    order = account.orders.get(order_id)
    if order is None:
        unknown = _anomaly(account, "refund_unknown_order", order_id, 0, event_id, at)
        orphans = {**account.orphan_refunds, event_id: at}
        oldest = at if account.oldest_at is None or at < account.oldest_at else account.oldest_at
        return Outcome(replace(account, orphan_refunds=orphans, oldest_at=oldest), (), (unknown,))
    if event_id in order.refund_event_ids:
        return Outcome(account)
    if currency is not None and order.currency is not None and currency != order.currency:
        seen = replace(order, refund_event_ids=(*order.refund_event_ids, event_id))
        mismatch = _anomaly(account, "refund_currency_mismatch", order_id, 0, event_id, at,
                            refunded_cents, currency)  # fmt: skip
        return Outcome(with_order(account, seen), anomalies=(mismatch,))
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
    from_available = min(due - from_pending, account.available)
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
            _anomaly(account, "reversal_shortfall", order.order_id, shortfall, event_id, at)
        )
    if beyond > 0:
        anomalies.append(_anomaly(account, "refund_exceeds_order", order.order_id, 0, event_id, at,
                                  beyond, order.currency))  # fmt: skip
    order = replace(
        order,
        pending=order.pending - from_pending,
        refunded_cents=refunded,
        reversed=target,
        refund_event_ids=(*order.refund_event_ids, event_id),
    )
    return Outcome(with_order(account, order), entries, tuple(anomalies))


def release_due(account: Account, now: datetime) -> Outcome:
    """Move every order's pending points whose hold has ended (`release_at` <= now) to available."""
    if account.release_due_at is None or account.release_due_at > now:
        return Outcome(account)
    due = [o for o in account.orders.values() if o.pending > 0 and o.release_at <= now]
    entries: list[LedgerEntry] = []
    for order in sorted(due, key=lambda o: (o.release_at, o.order_id)):
        account, entry = entry_for(
            account, "release", order.order_id, order.event_id,
            order.release_at, -order.pending, order.pending,
        )  # fmt: skip
        account = replace(
            account, orders={**account.orders, order.order_id: replace(order, pending=0)}
        )
        entries.append(entry)
    return Outcome(replace(account, release_due_at=next_release(account)), tuple(entries))


def next_release(account: Account) -> datetime | None:
    """When this account next has points to release, if ever."""
    due = [o.release_at for o in account.orders.values() if o.pending > 0]
    return min(due) if due else None


def prune(account: Account, now: datetime, policy: PointsPolicy) -> Account:
    """Forget settled orders (nothing pending) and orphan refunds older than the retention."""
    cutoff = now - policy.order_retention
    if account.oldest_at is None or account.oldest_at >= cutoff:
        return account  # nothing can be that old yet
    stale = {
        o.order_id for o in account.orders.values() if o.purchased_at < cutoff and not o.pending
    }
    orphans = {e for e, at in account.orphan_refunds.items() if at < cutoff}
    if not stale and not orphans:  # only pending orders are that old (a hold beyond retention)
        return account
    orders = {k: o for k, o in account.orders.items() if k not in stale}
    refunds = {e: at for e, at in account.orphan_refunds.items() if e not in orphans}
    times = [o.purchased_at for o in orders.values()] + list(refunds.values())
    return replace(
        account, orders=orders, orphan_refunds=refunds, oldest_at=min(times, default=None)
    )
