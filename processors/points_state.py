"""What an account remembers about points: balances, the ledger's sequence and its orders."""

from __future__ import annotations

from datetime import datetime

from msgspec import Struct
from msgspec.structs import replace


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


class PointsState(Struct, frozen=True, gc=False, array_like=True):
    """A customer's balances and the orders that can still change them (stored: fields are only
    ever added at the end, with a default)."""

    pending: int = 0
    available: int = 0
    sequence: int = 0
    """How many ledger entries the account has had: the `sequence` of its latest entry."""
    orders: dict[str, Order] = {}
    orphan_refunds: dict[str, datetime] = {}
    """Refund event ids that named an unknown order, with their time: reported once, ever."""
    release_due_at: datetime | None = None
    """No order has pending points to release before this (kept by `with_order` and
    `release_due`, so a release check costs nothing until then); None: nothing pending."""
    oldest_at: datetime | None = None
    """No order was purchased, and no orphan refund seen, before this (kept like
    `release_due_at`, so that a retention check costs nothing until it can find something)."""
    adjustments: tuple[str, ...] = ()
    """The latest manual adjustment ids applied, oldest first (at most `ADJUSTMENT_MEMORY`)."""


def with_order(points: PointsState, order: Order) -> PointsState:
    """`order` added or replaced (and the next release and the oldest time kept)."""
    due, oldest = points.release_due_at, points.oldest_at
    if order.pending > 0 and (due is None or order.release_at < due):
        due = order.release_at
    if oldest is None or order.purchased_at < oldest:
        oldest = order.purchased_at
    orders = {**points.orders, order.order_id: order}
    return replace(points, orders=orders, release_due_at=due, oldest_at=oldest)


def next_release(points: PointsState) -> datetime | None:
    """When these orders next have points to release, if ever."""
    due = [o.release_at for o in points.orders.values() if o.pending > 0]
    return min(due) if due else None
