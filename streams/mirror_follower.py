"""The balance mirror, written after the commit: it follows the accounts and never holds them.

Redis is not a condition of a commit any more: once a transaction commits, the balances it
changed join a queue of one row per customer (the latest wins), and one background task writes
them to Redis (`streams.adapters.points_mirror`), retrying while Redis is away. The mirror is
therefore eventually consistent: `rewards_mirror_lag_seconds` is the age of the oldest balance
not yet written (0 when caught up). A row is never older than what Redis has (the script keeps
the highest ledger sequence), so late writes after a rebalance are harmless; a worker that dies
with rows queued loses them, and the partitions' next recovery queues every account it scans, so
the mirror catches up after a crash as after an outage.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterable
from typing import Protocol

from processors.account import Account, is_blank

log = logging.getLogger(__name__)
BATCH = 2_000
"""Rows written per round trip."""
Row = tuple[str, int, int, int, bool]
"""(customer id, ledger sequence or -1 for an empty account, pending, available, erased)."""


class Mirror(Protocol):
    """The balances' mirror in Redis (`streams.adapters.points_mirror.BalanceMirror`)."""

    async def write(self, rows: list[Row]) -> None:
        """Write the balances (retrying while Redis is away); an erased customer's hash is
        deleted first, and an empty account is not written."""


def row_of(account: Account, erased: bool = False) -> Row:
    """What the mirror keeps of an account."""
    points = account.points
    sequence = -1 if is_blank(account) else points.sequence
    return (account.customer_id, sequence, points.pending, points.available, erased)


class MirrorFollower:
    """Queues the committed balances and writes them to the mirror in the background."""

    def __init__(self, mirror: Mirror) -> None:
        self._mirror = mirror
        self._staged: list[Row] = []
        self._queue: dict[str, tuple[Row, float]] = {}
        """customer id -> (its latest row, erased since the last write; queued since)."""
        self._task: asyncio.Task[None] | None = None

    def stage(self, accounts: Iterable[Account], erased: set[str]) -> None:
        """The open transaction changed these accounts (and erased these customers)."""
        self._staged += [row_of(a, a.customer_id in erased) for a in accounts]

    def committed(self) -> None:
        """The transaction committed: queue its balances and make sure a writer runs."""
        self.follow(self._staged)
        self._staged.clear()

    def discarded(self) -> None:
        """The transaction was aborted: nothing of it is mirrored."""
        self._staged.clear()

    def follow(self, rows: Iterable[Row]) -> None:
        """Queue balances to write (also every account a recovery scanned)."""
        now = time.monotonic()
        for row in rows:
            old = self._queue.get(row[0])
            if old is None:
                self._queue[row[0]] = (row, now)
            else:  # an erasure queued before stays (its hash is deleted first)
                self._queue[row[0]] = ((*row[:4], row[4] or old[0][4]), old[1])
        if self._queue and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._write_all())

    @property
    def lag_s(self) -> float:
        """Age of the oldest balance not yet mirrored (0: caught up)."""
        if not self._queue:
            return 0.0
        return time.monotonic() - min(since for _, since in self._queue.values())

    @property
    def queued(self) -> int:
        """Balances waiting to be mirrored."""
        return len(self._queue)

    async def _write_all(self) -> None:
        """Write until the queue is empty (rows queued meanwhile included)."""
        while self._queue:
            taken = list(itertools.islice(self._queue.items(), BATCH))
            await self._mirror.write([row for _, (row, _) in taken])
            for customer, queued in taken:
                if self._queue.get(customer) is queued:  # not changed again meanwhile
                    del self._queue[customer]

    async def close(self, timeout_s: float = 2.0) -> None:
        """On shutdown: give the writer `timeout_s` to finish what is queued, then stop it (what
        is left is written by the next recovery's catch-up)."""
        if self._task is None or self._task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            self._task.cancel()
            log.info("mirror: %d balances left for the next catch-up", len(self._queue))
