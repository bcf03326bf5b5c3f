"""The stored account: format 3 (orders apart) round-trips, formats 2 and 1 still decode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from processors.account import Account
from processors.advocacy_state import InviteFact, SurveyFact
from processors.compensation_state import ComplaintRecord
from processors.points_state import Order
from processors.referral_state import Grant, Referee
from streams.adapters.account_codec import (
    FlatAccount,
    StateFormatError,
    decode_account,
    decode_order,
    encode_account,
    encode_inline,
    encode_order,
    is_order,
    orders_apart,
)
from streams.adapters.order_records import with_orders

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
ORDER = Order("o1", "e1", T0, 1_000, 10, 0, T0 + 14 * DAY, currency="EUR")


def flat() -> FlatAccount:
    """A format 1 account with every one of its 24 fields set to something not the default."""
    return FlatAccount(
        customer_id="ann", pending=7, available=11, sequence=5,
        orders={"o1": ORDER}, orphan_refunds={"r9": T0},
        referral=Referee("k", "bob", "s1", T0, "approve", "converted", "a1"),
        grants=(Grant("k2", T0, 50, "credited"),),
        complaints={"c1": ComplaintRecord("c1", T0, "gift_card", "late", ("e7",))},
        surveys=(SurveyFact("sv", T0, 9, "web"),), invites=(InviteFact("iv", T0),),
        release_due_at=T0 + DAY, oldest_at=T0 - DAY, adjustments=("adj-1",),
        tier="gold", tier_days=((20_000, 5_000),), tier_checked=20_001,
        lots=((T0, 11),), active_at=T0 + 2 * DAY, warned_until=T0 + 3 * DAY,
        inactivity_warned=T0 + 4 * DAY, inactivity_expired=T0 + 5 * DAY,
        expiry_due_at=T0 + 6 * DAY, tier_due_at=T0 + 7 * DAY,
    )  # fmt: skip


def test_a_flat_account_decodes_into_its_parts_field_for_field():
    old = flat()
    account = decode_account(b"\x01" + msgspec.msgpack.encode(old))
    moved = {
        "customer_id": account.customer_id,
        "pending": account.points.pending, "available": account.points.available,
        "sequence": account.points.sequence, "orders": account.points.orders,
        "orphan_refunds": account.points.orphan_refunds, "referral": account.referral.referee,
        "grants": account.referral.grants, "complaints": account.complaints,
        "surveys": account.advocacy.surveys, "invites": account.advocacy.invites,
        "release_due_at": account.points.release_due_at, "oldest_at": account.points.oldest_at,
        "adjustments": account.points.adjustments, "tier": account.tier.name,
        "tier_days": account.tier.days, "tier_checked": account.tier.checked,
        "lots": account.expiry.lots, "active_at": account.expiry.active_at,
        "warned_until": account.expiry.warned_until,
        "inactivity_warned": account.expiry.inactivity_warned,
        "inactivity_expired": account.expiry.inactivity_expired,
        "expiry_due_at": account.expiry.due_at, "tier_due_at": account.tier.due_at,
    }  # fmt: skip
    assert moved == msgspec.structs.asdict(old)
    assert len(moved) == len(FlatAccount.__struct_fields__) == 24


def test_a_short_flat_account_of_an_older_worker_decodes_with_defaults():
    account = decode_account(b"\x01" + msgspec.msgpack.encode(["ann", 5]))
    assert account.points.pending == 5
    assert account == Account("ann", account.points)


def test_the_current_format_keeps_the_orders_apart_and_round_trips_with_them():
    account = decode_account(b"\x01" + msgspec.msgpack.encode(flat()))
    assert account.points.orders == {"o1": ORDER}
    raw = encode_account(account)
    assert raw[:1] == b"\x03" and orders_apart(raw)
    bare = decode_account(raw)
    assert bare.points.orders == {} and bare != account
    assert with_orders(bare, dict(account.points.orders)) == account
    assert len(raw) == len(encode_account(bare))  # nothing of the orders is in the record


def test_an_order_record_round_trips_and_is_told_from_an_account_by_its_byte():
    raw = encode_order(ORDER)
    assert is_order(raw) and decode_order(raw) == ORDER
    account = Account("ann")
    assert not any(is_order(f(account)) for f in (encode_account, encode_inline))
    with pytest.raises(StateFormatError, match="x03"):
        decode_order(encode_account(account))


def test_format_2_still_decodes_with_its_orders_inline():
    account = decode_account(b"\x01" + msgspec.msgpack.encode(flat()))
    raw = encode_inline(account)
    assert raw[:1] == b"\x02" and not orders_apart(raw)
    assert decode_account(raw) == account


def test_an_unknown_format_is_refused_with_its_byte():
    with pytest.raises(StateFormatError, match="x07"):
        decode_account(b"\x07" + msgspec.msgpack.encode(["ann"]))
