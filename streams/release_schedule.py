"""When each locally owned customer next has held points to release: a heap, rebuilt on recovery.

Invariant: every account with pending points has an entry at its `next_release` time. An entry is
pushed whenever a saved account's next release changes; entries left behind by such a change are
harmless (popping one just re-checks that customer). The heap lives in memory only: after a restart
or a rebalance it is rebuilt from the recovered table, so hold ends survive worker restarts.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from datetime import datetime

from processors.points import Account, next_release

Due = tuple[float, int, str]  # (release time as epoch seconds, partition, customer id)


class ReleaseSchedule:
    """Customers to look at when their earliest hold ends, for the partitions this worker owns."""

    def __init__(self) -> None:
        self._heap: list[Due] = []
        self._partitions: set[int] = set()

    def __len__(self) -> int:
        return len(self._heap)

    def rebuild(self, partitions: Iterable[int], accounts: Iterable[tuple[int, Account]]) -> None:
        """Start over from the accounts of the partitions now owned (after recovery)."""
        self._partitions = set(partitions)
        heap: list[Due] = []
        for partition, account in accounts:
            at = next_release(account)
            if at is not None:
                heap.append((at.timestamp(), partition, account.customer_id))
        heapq.heapify(heap)
        self._heap = heap

    def forget(self, partitions: Iterable[int]) -> None:
        """Stop releasing for partitions no longer owned (their entries are skipped when popped)."""
        self._partitions -= set(partitions)

    def track(self, partition: int, before: Account | None, after: Account) -> None:
        """Schedule `after`'s next hold end if saving it changed that time."""
        at = next_release(after)
        if at is not None and (before is None or next_release(before) != at):
            heapq.heappush(self._heap, (at.timestamp(), partition, after.customer_id))

    def pop_due(self, now: datetime, limit: int) -> dict[tuple[int, str], None]:
        """Remove and return up to `limit` (partition, customer) due by `now`, owned partitions
        only, de-duplicated and in due order; the rest stay for the next call."""
        cutoff = now.timestamp()
        due: dict[tuple[int, str], None] = {}
        while self._heap and self._heap[0][0] <= cutoff and len(due) < limit:
            _, partition, customer_id = heapq.heappop(self._heap)
            if partition in self._partitions:
                due[(partition, customer_id)] = None
        return due
