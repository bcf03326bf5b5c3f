"""When each locally owned customer next has held points to release: a heap, rebuilt on recovery.

Invariant: every account with pending points has an entry at its `next_release` time, and every
account with points to warn about or expire (REWARDS_POINTS_EXPIRY) one at its `expiry_due_at`.
An entry is pushed whenever a saved account's due time changes; entries left behind by such a
change are harmless (popping one just re-checks that customer). The heap lives in memory only:
after a restart or a rebalance it is rebuilt from the recovered table, so hold ends survive
worker restarts.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Iterable
from datetime import datetime

from processors.account import Account

Due = tuple[float, int, str]  # (release time as epoch seconds, partition, customer id)


def due_at(account: Account) -> datetime | None:
    """When time next changes the account: a hold ends, points are warned about or expire, or
    the tier is downgraded."""
    if account.expiry.due_at is None and account.tier.due_at is None:
        return account.points.release_due_at
    times = [
        t for t in (account.points.release_due_at, account.expiry.due_at, account.tier.due_at) if t
    ]
    return min(times) if times else None


class ReleaseSchedule:
    """Customers to look at when their earliest hold ends, for the partitions this worker owns."""

    def __init__(self) -> None:
        self._heap: list[Due] = []
        self._partitions: set[int] = set()

    def __len__(self) -> int:
        return len(self._heap)

    async def rebuild(
        self,
        partitions: Iterable[int],
        accounts: Iterable[tuple[int, Account]],
        chunk: int = 20_000,
    ) -> None:
        """Start over for `partitions` from their accounts (after recovery), yielding to the event
        loop every `chunk` accounts so that a large scan never stalls the worker's other work."""
        fresh = set(partitions)
        self._partitions |= fresh
        heap = [due for due in self._heap if due[1] not in fresh]
        for n, (partition, account) in enumerate(accounts, 1):
            at = due_at(account)
            if at is not None:
                heap.append((at.timestamp(), partition, account.customer_id))
            if n % chunk == 0:
                await asyncio.sleep(0)
        heapq.heapify(heap)
        self._heap = heap

    def forget(self, partitions: Iterable[int]) -> None:
        """Stop releasing for partitions no longer owned (their entries are skipped when popped)."""
        self._partitions -= set(partitions)

    def track(self, partition: int, before: Account | None, after: Account) -> None:
        """Schedule `after`'s next hold end if saving it changed that time (the account keeps
        it: `release_due_at`, never later than the true one, so nothing is released late)."""
        at = due_at(after)
        if at is not None and (before is None or due_at(before) != at):
            heapq.heappush(self._heap, (at.timestamp(), partition, after.customer_id))

    def pop_due(
        self, now: datetime, limit: int, partitions: Iterable[int] | None = None
    ) -> dict[tuple[int, str], None]:
        """Remove and return up to `limit` (partition, customer) due by `now`, owned partitions
        only (and only `partitions`, if given: the others' entries stay), de-duplicated and in due
        order; the rest stay for the next call."""
        cutoff = now.timestamp()
        wanted = self._partitions if partitions is None else self._partitions & set(partitions)
        due: dict[tuple[int, str], None] = {}
        kept: list[Due] = []
        while self._heap and self._heap[0][0] <= cutoff and len(due) < limit:
            entry = heapq.heappop(self._heap)
            if entry[1] in wanted:
                due[(entry[1], entry[2])] = None
            elif entry[1] in self._partitions:
                kept.append(entry)
        for entry in kept:
            heapq.heappush(self._heap, entry)
        return due
