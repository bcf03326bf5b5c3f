"""The hold-end sweep: release the points whose hold has ended, in the loop's transaction."""

from __future__ import annotations

import logging

from processors.settlement import Policies, settle
from streams.account_settler import AccountSettler, Clock
from streams.accounts import OwnedAccounts, Settled
from streams.adapters.metrics import PointsMetrics

log = logging.getLogger(__name__)
SWEEP_LIMIT = 5000  # customers per release sweep, so a backlog of hold ends never stalls a batch


class HoldReleaseSweep:
    """Settles, at wall-clock time, the accounts whose next hold end has passed."""

    def __init__(
        self,
        *,
        settler: AccountSettler,
        accounts: OwnedAccounts,
        policies: Policies,
        metrics: PointsMetrics,
        clock: Clock,
    ) -> None:
        self._settler = settler
        self._accounts = accounts
        self._policies = policies
        self._metrics = metrics
        self._clock = clock

    async def release_held_points(self, caught_up: frozenset[int]) -> None:
        """Release every hold that has ended by now in the partitions that are caught up (a
        partition still reading its backlog releases as its events' stream time passes)."""
        now = self._clock()
        due = self._accounts.schedule.pop_due(now, SWEEP_LIMIT, caught_up)
        if not due:
            return
        now_ms = int(now.timestamp() * 1000)
        for partition in {p for p, _ in due}:
            self._accounts.clocks.advance(partition, now_ms, now_ms)
        settled = []
        for partition, customer_id in due:
            before = self._accounts.load(partition, customer_id)
            try:
                done = settle(before, (), now, self._policies)
            except Exception:  # the account's holds stay, and the sweep goes on
                log.exception("releasing the holds of %s raised", customer_id)
                self._metrics.release_errors.inc()
                continue
            settled.append(Settled(partition, before, done))
        self._settler.apply(settled)
