"""The customer accounts a worker owns, and what it derives from them once they are durable.

An account is read from the store (RocksDB, recovered from the changelog), settled by the rules,
and staged into the open transaction as a changelog record. Only when the transaction commits is
the account written to RocksDB, are the hold-end schedule and the advocacy windows moved from
the account's old state to its new one, and is its balance queued for the Redis mirror
(`streams.mirror_follower`, written in the background: Redis is not a condition of the commit).
An aborted transaction leaves all of them as they were. An account erased by a forget command
is staged as a changelog tombstone (it is empty), its mirror hash deleted, and the indexes move
from its old state to the empty one, which forgets it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence

from msgspec import Struct

from processors.account import Account, is_blank
from processors.settlement import Settlement
from streams.adapters.account_store import AccountStore
from streams.adapters.metrics import PointsMetrics
from streams.advocacy import AdvocacyWindows
from streams.ingest import StreamClocks
from streams.loyalty import TierCounts
from streams.mirror_follower import MirrorFollower, row_of
from streams.release_schedule import ReleaseSchedule

log = logging.getLogger(__name__)
Emit = Callable[[str, bytes, bytes], None]


class Settled(Struct, frozen=True, gc=False):
    """One customer's settlement, with the partition and the account it started from."""

    partition: int
    before: Account
    settlement: Settlement

    @property
    def changed(self) -> bool:
        """The rules return the very same account when nothing changed."""
        return self.settlement.account is not self.before


class OwnedAccounts:
    """The owned partitions' accounts, their stream clocks, hold ends and advocacy facts."""

    def __init__(
        self,
        *,
        store: AccountStore,
        schedule: ReleaseSchedule,
        advocacy: AdvocacyWindows,
        clocks: StreamClocks,
        mirror: MirrorFollower,
        metrics: PointsMetrics,
        tiers: TierCounts | None = None,
    ) -> None:
        self.store = store
        self.tiers = tiers
        self.schedule = schedule
        self.advocacy = advocacy
        self.clocks = clocks
        self.mirror = mirror
        self.metrics = metrics
        self._staged: list[Settled] = []
        """Settled in the open transaction: the indexes move once it commits."""

    def load(self, partition: int, customer_id: str) -> Account:
        """The customer's account as the open transaction has it."""
        return self.store.load(partition, customer_id)

    def stage(self, emit: Emit, settled: Sequence[Settled]) -> None:
        """Stage the changed accounts' changelog records (and their balances for the mirror,
        queued once the transaction commits)."""
        stored = [s for s in settled if s.changed]
        self._staged += stored
        clocks = {p: at for p in {s.partition for s in stored} if (at := self.clocks.now(p))}
        self.store.stage(emit, [(s.partition, s.settlement.account) for s in stored], clocks)
        after = [s.settlement.account for s in stored]
        erased = {a.customer_id for a in after if is_blank(a)}  # and any forgotten this batch
        erased |= {e.customer_id for s in stored for e in s.settlement.erasures}
        self.mirror.stage(after, erased)

    def committed(self) -> None:
        """The transaction committed (the store has made the accounts durable): move the hold
        ends, advocacy windows and tier counts from the accounts' old states to their new."""
        for done in self._staged:
            self.schedule.track(done.partition, done.before, done.settlement.account)
            self.advocacy.track(done.partition, done.before, done.settlement.account)
            if self.tiers is not None:
                self.tiers.track(done.partition, done.before, done.settlement.account)
        self._staged.clear()
        self.metrics.held_customers.set(len(self.schedule))
        self.mirror.committed()

    def discarded(self) -> None:
        """The transaction was aborted: the indexes (and the mirror) stay as they were."""
        self._staged.clear()
        self.mirror.discarded()

    def forget(self, revoked: frozenset[int]) -> None:
        """Revoked: stop releasing and counting there (the next owner does)."""
        self.schedule.forget(revoked)
        self.advocacy.forget(revoked)
        if self.tiers is not None:
            self.tiers.forget(revoked)
        for partition in revoked:
            self.clocks.forget(partition)
        log.info("partitions %s left this worker", sorted(revoked))

    async def rebuild_indexes(self, owned: frozenset[int]) -> None:
        """After a recovery: seed the stream clocks, schedule the hold ends and count the
        advocacy facts of every account in the recovered partitions."""
        for partition in owned:
            self.clocks.seed(partition, self.store.stream_time(partition))
        scanned = self._mirrored(self.store.scan(sorted(owned)))
        scanned = self.advocacy.rebuilding(owned, scanned)
        if self.tiers is not None:
            scanned = self.tiers.rebuilding(owned, scanned)
        await self.schedule.rebuild(owned, scanned)
        self.metrics.held_customers.set(len(self.schedule))
        self.metrics.recoveries.inc()

    def _mirrored(self, scanned: Iterable[tuple[int, Account]]) -> Iterator[tuple[int, Account]]:
        """Queue every recovered account's balance for the mirror as it passes (the catch-up:
        what a worker that died had not mirrored yet is written now)."""
        rows = []
        for partition, account in scanned:
            rows.append(row_of(account))
            if len(rows) >= 10_000:
                self.mirror.follow(rows)
                rows = []
            yield partition, account
        self.mirror.follow(rows)
