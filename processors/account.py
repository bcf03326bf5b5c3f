"""A customer's account: one part per domain, each kept by its own rules (stored as one value)."""

from __future__ import annotations

from msgspec import Struct, field
from msgspec.structs import replace

from processors.advocacy_state import AdvocacyState
from processors.compensation_state import ComplaintRecord
from processors.expiry_state import ExpiryState
from processors.points_state import PointsState
from processors.referral_state import ReferralState
from processors.tier_state import TierState


class Account(Struct, frozen=True, gc=False, array_like=True):
    """Everything the rules remember about one customer (stored: parts and their fields are
    only ever added at the end, with a default)."""

    customer_id: str
    points: PointsState = field(default_factory=PointsState)
    """Balances, the ledger's sequence and the orders that can still change them (points.py)."""
    referral: ReferralState = field(default_factory=ReferralState)
    """The referral that brought the customer and the rewards they earned (referrals.py)."""
    complaints: dict[str, ComplaintRecord] = {}
    """Every complaint decided for this customer, by complaint id (compensation.py)."""
    advocacy: AdvocacyState = field(default_factory=AdvocacyState)
    """Survey answers and invitations within the longest window (advocacy.py)."""
    tier: TierState = field(default_factory=TierState)
    """The loyalty tier and its qualifying days (tiers.py)."""
    expiry: ExpiryState = field(default_factory=ExpiryState)
    """Lots of available points and the warnings and expiries done (expiry.py)."""


def is_blank(account: Account) -> bool:
    """Nothing but time's bookkeeping (no balance, history or facts): an erased or unused
    account, stored as a tombstone."""
    if account.points.sequence or account.points.orders:
        return False  # the common case, answered without building anything
    bare = Account(
        account.customer_id,
        replace(account.points, release_due_at=None),
        account.referral,
        account.complaints,
        account.advocacy,
        replace(account.tier, checked=0, due_at=None),
        replace(account.expiry, lots=account.expiry.lots or None, due_at=None),
    )
    return bare == Account(account.customer_id)
