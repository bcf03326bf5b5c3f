"""The stored form of an account: a format byte, then msgpack; older formats still decode.

Format 2 (written): `processors.account.Account`, one msgpack array per domain part (fields
only ever appended to a part, with defaults, so older records of the format decode).
Format 1 (read only, written before the account was split by domain): one flat array of 24
fields, converted on read; a record is rewritten in format 2 the next time its account changes,
so a changelog moves to format 2 as it is compacted, and a downgrade past this change cannot
read it (StateFormatError).
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from msgspec import Struct

from processors.account import Account
from processors.advocacy_state import AdvocacyState, InviteFact, SurveyFact
from processors.compensation_state import ComplaintRecord
from processors.expiry_state import ExpiryState
from processors.points_state import Order, PointsState
from processors.referral_state import Grant, Referee, ReferralState
from processors.tier_state import TierState

FORMAT = b"\x02"
FLAT_FORMAT = b"\x01"
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Account)


class StateFormatError(RuntimeError):
    """A stored account is in a format this version cannot read."""


class FlatAccount(Struct, frozen=True, gc=False, array_like=True):
    """Format 1: the account before its split by domain (fields in stored order)."""

    customer_id: str
    pending: int = 0
    available: int = 0
    sequence: int = 0
    orders: dict[str, Order] = {}
    orphan_refunds: dict[str, datetime] = {}
    referral: Referee | None = None
    grants: tuple[Grant, ...] = ()
    complaints: dict[str, ComplaintRecord] = {}
    surveys: tuple[SurveyFact, ...] = ()
    invites: tuple[InviteFact, ...] = ()
    release_due_at: datetime | None = None
    oldest_at: datetime | None = None
    adjustments: tuple[str, ...] = ()
    tier: str | None = None
    tier_days: tuple[tuple[int, int], ...] = ()
    tier_checked: int = 0
    lots: tuple[tuple[datetime, int], ...] | None = None
    active_at: datetime | None = None
    warned_until: datetime | None = None
    inactivity_warned: datetime | None = None
    inactivity_expired: datetime | None = None
    expiry_due_at: datetime | None = None
    tier_due_at: datetime | None = None


_flat_decoder = msgspec.msgpack.Decoder(FlatAccount)


def encode_account(account: Account) -> bytes:
    """The stored form of an account."""
    return FORMAT + _encoder.encode(account)


def decode_account(raw: bytes) -> Account:
    """An account from its stored form (either format)."""
    version = raw[:1]
    if version == FORMAT:
        return _decoder.decode(memoryview(raw)[1:])
    if version == FLAT_FORMAT:
        return unflatten(_flat_decoder.decode(memoryview(raw)[1:]))
    raise StateFormatError(
        f"account record of format {version!r}: written by another version of the worker"
    )


def unflatten(flat: FlatAccount) -> Account:
    """A format 1 account, by domain."""
    f = flat
    points = PointsState(f.pending, f.available, f.sequence, f.orders, f.orphan_refunds,
                         f.release_due_at, f.oldest_at, f.adjustments)  # fmt: skip
    expiry = ExpiryState(f.lots, f.active_at, f.warned_until, f.inactivity_warned,
                         f.inactivity_expired, f.expiry_due_at)  # fmt: skip
    return Account(
        customer_id=f.customer_id,
        points=points,
        referral=ReferralState(f.referral, f.grants),
        complaints=f.complaints,
        advocacy=AdvocacyState(f.surveys, f.invites),
        tier=TierState(f.tier, f.tier_days, f.tier_checked, f.tier_due_at),
        expiry=expiry,
    )
