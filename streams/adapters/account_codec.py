"""The stored form of an account and of its orders: a format byte, then msgpack.

Format 3 (written): the account record is `processors.account.Account` with `points.orders`
empty, and each order is a record of its own beside it (`streams/adapters/order_records.py`:
key = customer id + `\\x00o` + order id, value = msgpack of the `Order`, with no byte before
it: its first byte is a msgpack array header (0x90-0x9f, 0xdc), never a format byte of an
account record, so a value alone tells an order from an account, and the order records of an
account decode as one msgpack array; a later order format can put a byte of its own first).
So a change of an account writes the account and the orders that changed, never all of them.
A downgrade past this change cannot read it: a worker of format 2 refuses the account records
of format 3 (StateFormatError), and the order records too (read as accounts, by their byte).
Format 2 (read; still written for a customer id holding a NUL byte, whose order keys could
collide with another customer's): the Account with its orders inline, one msgpack array per
domain part (fields only ever appended to a part, with defaults, so older records decode).
A record of format 2 is rewritten in format 3 the next time its account changes, so a
changelog moves to format 3 as accounts change and it is compacted.
Format 1 (read only, written before the account was split by domain): one flat array of 24
fields, converted on read (and rewritten in the current format like format 2).
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from msgspec import Struct
from msgspec.structs import replace

from processors.account import Account
from processors.advocacy_state import AdvocacyState, InviteFact, SurveyFact
from processors.compensation_state import ComplaintRecord
from processors.expiry_state import ExpiryState
from processors.points_state import Order, PointsState
from processors.referral_state import Grant, Referee, ReferralState
from processors.tier_state import TierState

FORMAT = b"\x03"
INLINE_FORMAT = b"\x02"
FLAT_FORMAT = b"\x01"
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Account)
_order_decoder = msgspec.msgpack.Decoder(Order)
_orders_decoder = msgspec.msgpack.Decoder(list[Order])


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
    """The stored form of an account, without its orders (they are records of their own)."""
    if account.points.orders:
        account = replace(account, points=replace(account.points, orders={}))
    return FORMAT + _encoder.encode(account)


def encode_inline(account: Account) -> bytes:
    """The stored form of an account with its orders inline (format 2)."""
    return INLINE_FORMAT + _encoder.encode(account)


def orders_apart(raw: bytes) -> bool:
    """Whether a stored account keeps its orders as records of their own (format 3)."""
    return raw[:1] == FORMAT


def decode_account(raw: bytes) -> Account:
    """An account from its stored form (any format; of format 3 without its orders)."""
    version = raw[:1]
    if version in (FORMAT, INLINE_FORMAT):
        return _decoder.decode(memoryview(raw)[1:])
    if version == FLAT_FORMAT:
        return unflatten(_flat_decoder.decode(memoryview(raw)[1:]))
    raise StateFormatError(
        f"account record of format {version!r}: written by another version of the worker"
    )


def encode_order(order: Order) -> bytes:
    """The stored form of one order (its own record): its msgpack array."""
    return _encoder.encode(order)


def is_order(raw: bytes) -> bool:
    """Whether a stored value is an order record (a msgpack array), else an account record."""
    return bool(raw) and (0x90 <= raw[0] <= 0x9F or raw[0] == 0xDC)


def decode_order(raw: bytes) -> Order:
    """An order from its stored form."""
    if not is_order(raw):
        raise StateFormatError(
            f"order record of format {raw[:1]!r}: written by another version of the worker"
        )
    return _order_decoder.decode(raw)


def decode_orders(raws: list[bytes]) -> list[Order]:
    """Orders from their stored forms (order records), in one msgpack array: one decoding."""
    if not raws:
        return []
    return _orders_decoder.decode(b"\xdd" + len(raws).to_bytes(4, "big") + b"".join(raws))


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
