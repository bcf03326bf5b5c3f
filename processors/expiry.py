"""Points expiry: earned lots that reach their lifetime, inactivity, and warnings ahead (pure).

With an expiry policy an account's available points are kept as lots (its `expiry` part:
processors/expiry_state.py), (time made available,
points), oldest first: `entry_for` adds a lot for every positive available change and takes
every negative one from the oldest lots. Time passing (`advance`) then does, in time order,
what is due by `now`: releases of held points, a warning `warning` ahead of each expiry, the
expiry of a lot `lifetime` after it became available, and the expiry of all available points
`inactivity` after the last activity (a purchase, refund, redemption or manual adjustment).
Every step happens at its own deterministic time, so the result never depends on batch cuts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeAlias

from msgspec.structs import replace

from processors.account import Account
from processors.expiry_state import ExpiryState
from processors.ids import stable_id
from processors.ledger import Outcome, entry_for
from processors.points import release_due
from schemas.outputs import ExpiryWarning

LIFETIME_ORDER = "expiry:lifetime"
INACTIVITY_ORDER = "expiry:inactivity"


@dataclass(frozen=True, slots=True)
class ExpiryPolicy:
    """When available points expire (None: never for that reason) and how long ahead to warn."""

    lifetime: timedelta | None = None
    inactivity: timedelta | None = None
    warning: timedelta | None = None

    @property
    def on(self) -> bool:
        """Points can expire at all (then lots are tracked)."""
        return self.lifetime is not None or self.inactivity is not None


def start_lots(account: Account, at: datetime) -> Account:
    """Begin tracking lots: what is available now counts as one lot made available at `at`."""
    if account.expiry.lots is not None:
        return account
    available = account.points.available
    lots = ((at, available),) if available else ()
    return _with(account, lots=lots, due_at=at)


def _with(account: Account, **changes: object) -> Account:
    """The account with these fields of its expiry part changed."""
    return replace(account, expiry=replace(account.expiry, **changes))


def _candidates(account: Account, policy: ExpiryPolicy) -> list[tuple[datetime, int]]:
    """The next time of each kind of step (0 release, 1 warning, 2 lot expiry, 3 inactivity
    warning, 4 inactivity expiry), earliest first."""
    found: list[tuple[datetime, int]] = []
    state, release = account.expiry, account.points.release_due_at
    if release is not None:
        found.append((release, 0))
    lots = state.lots or ()
    if policy.lifetime is not None and lots:
        found.append((lots[0][0] + policy.lifetime, 2))
        if policy.warning is not None and (lot := _unwarned(state, policy.lifetime)):
            found.append((lot[0] + policy.lifetime - policy.warning, 1))
    deadline = _inactive_at(state, policy)
    if deadline is not None and account.points.available:
        if policy.warning is not None and state.inactivity_warned != deadline:
            found.append((deadline - policy.warning, 3))
        found.append((deadline, 4))
    return sorted(found)


def _unwarned(state: ExpiryState, lifetime: timedelta) -> tuple[datetime, int] | None:
    """The oldest lot whose expiry has not been warned about yet."""
    warned = state.warned_until
    return next((lot for lot in state.lots or () if warned is None or lot[0] + lifetime > warned),
                None)  # fmt: skip


def _inactive_at(state: ExpiryState, policy: ExpiryPolicy) -> datetime | None:
    """When all available points expire for inactivity (None: not due, or already expired)."""
    if policy.inactivity is None or state.active_at is None:
        return None
    deadline = state.active_at + policy.inactivity
    return None if state.inactivity_expired == deadline else deadline


TimeStep: TypeAlias = Outcome | ExpiryWarning
"""What one due step of time did: a release or an expiry (an outcome), or a warning."""


def advance(
    account: Account, now: datetime, policy: ExpiryPolicy
) -> tuple[Account, Sequence[TimeStep]]:
    """Everything time does by `now`, in time order (releases first on a tie), and each step's
    outcome or warning. Costs nothing until the account's next due time (kept never later than
    the true one: a new lot or a first activity pulls it in)."""
    release, expiry = account.points.release_due_at, account.expiry.due_at
    if (release is None or release > now) and (expiry is None or expiry > now):
        return account, ()
    steps: list[TimeStep] = []
    while (due := _candidates(account, policy)) and due[0][0] <= now:
        at, kind = due[0]
        account, step = _step(account, at, kind, policy)
        if step is not None:
            steps.append(step)
    return _with(account, due_at=next_due(account, policy)), steps


def _step(
    account: Account, at: datetime, kind: int, policy: ExpiryPolicy
) -> tuple[Account, TimeStep | None]:
    """Do one due step (None: it had nothing to say, e.g. an empty lot dropped)."""
    if kind == 0:
        released = release_due(account, at)
        return released.account, released
    if kind in {1, 3}:
        return _warn(account, at, kind, policy)
    if kind == 2:
        lot_at, points = (account.expiry.lots or ())[0]
        order, source = LIFETIME_ORDER, f"lot:{lot_at.isoformat()}"
    else:
        points, order = account.points.available, INACTIVITY_ORDER
        source = f"inactive:{at.isoformat()}"
        account = _with(account, inactivity_expired=at)
    points = min(points, account.points.available)
    if points <= 0:  # nothing left to expire: drop the empty lot
        if kind == 2:
            account = _with(account, lots=(account.expiry.lots or ())[1:])
        return account, None
    account, entry = entry_for(account, "expiry", order, source, at, 0, -points)
    return account, Outcome(account, (entry,))


def _warn(
    account: Account, at: datetime, kind: int, policy: ExpiryPolicy
) -> tuple[Account, ExpiryWarning | None]:
    """Warn about the next lot's expiry (kind 1) or the inactivity expiry (kind 3)."""
    assert policy.warning is not None
    expires = at + policy.warning
    if kind == 1:
        lot = _unwarned(account.expiry, policy.lifetime or timedelta(0))
        points = lot[1] if lot else 0
        account = _with(account, warned_until=expires)
        reason = "lifetime"
    else:
        points, reason = account.points.available, "inactivity"
        account = _with(account, inactivity_warned=expires)
    if points <= 0:
        return account, None
    return account, ExpiryWarning(
        warning_id=stable_id("ew", account.customer_id, reason, expires.isoformat()),
        customer_id=account.customer_id, reason=reason, points=points,  # type: ignore[arg-type]  # 'lifetime' or 'inactivity'
        expires_at=expires, warned_at=at,
    )  # fmt: skip


def next_due(account: Account, policy: ExpiryPolicy) -> datetime | None:
    """When time next changes the account for expiry (a warning or an expiry), if ever."""
    due = [at for at, kind in _candidates(account, policy) if kind]
    return due[0] if due else None


def activity(account: Account, at: datetime, policy: ExpiryPolicy) -> Account:
    """A purchase, refund, redemption or adjustment at `at` restarts the inactivity period."""
    if policy.inactivity is None or account.expiry.active_at == at:
        return account
    if account.expiry.active_at is None:  # a first deadline: make the next tick look
        return _with(account, active_at=at, due_at=at)
    return _with(account, active_at=at)
