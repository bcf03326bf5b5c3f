"""In-memory fakes of the Redis-backed services: identity index, compensation budget, mirror."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import datetime

from redis.exceptions import ConnectionError as RedisConnectionError

from processors.compensation import GRANTED, BudgetRequest
from processors.fraud import FraudFacts
from processors.referrals import ConversionCheck
from schemas.models import Referral
from streams.adapters.compensation_budget import Reserved
from streams.adapters.identity_index import LateMatch, Seen
from streams.adapters.redis_retry import RedisRetry
from streams.mirror_follower import Row


class Outage:
    """Redis as the services see it: while `down` every call fails with a connection error, and
    is retried by the real `RedisRetry` (an outage holds the batch; nothing is decided blindly)."""

    def __init__(self, retry: RedisRetry) -> None:
        self.down = False
        self.failures = 0
        self._retry = retry

    async def call(self) -> None:
        """Every call of a service passes here first."""
        await self._retry.call(self._once)

    async def _once(self) -> None:
        await asyncio.sleep(0)
        if self.down:
            self.failures += 1
            raise RedisConnectionError("Redis is away (fake)")


class CleanIdentities:
    """An identity index in which nobody shares a signal with anybody: every verdict approves."""

    def __init__(self, outage: Outage) -> None:
        self.outage = outage
        self.recorded: list[Seen] = []
        self.rejected: set[str] = set()
        self.forgotten: set[str] = set()
        self.committed_count = self.discarded_count = 0
        self.bug_for: set[str] = set()
        """Referrers whose sign-ups make the index raise (a bug only some records hit)."""

    async def signup_facts(self, signups: Sequence[Referral]) -> list[FraudFacts]:
        await self.outage.call()
        if any(s.referrer_id in self.bug_for for s in signups):
            raise ValueError("a bug only this record hits")
        return [FraudFacts("signup", s.referrer_id, s.referee_id or "") for s in signups]

    async def conversion_facts(self, checks: Sequence[ConversionCheck]) -> list[FraudFacts]:
        await self.outage.call()
        return [
            FraudFacts("conversion", c.referral.referrer_id, c.purchase.customer_id) for c in checks
        ]

    async def record(self, seen: Sequence[Seen]) -> list[LateMatch]:
        await self.outage.call()
        self.recorded += seen
        return []

    async def mark_rejected(self, customers: Iterable[str]) -> None:
        await self.outage.call()
        self.rejected.update(customers)

    async def forget(self, customers: Sequence[str]) -> None:
        await self.outage.call()
        self.forgotten.update(customers)

    def customer_hash(self, customer_id: str) -> str:
        return f"h-{customer_id}"

    def committed(self) -> None:
        self.committed_count += 1

    def discarded(self) -> None:
        self.discarded_count += 1


class Budget:
    """A compensation budget of `cap_cents` per currency for the whole run; first come first
    served, and the same answer again for a complaint already answered (like the Lua script)."""

    def __init__(self, cap_cents: int = 10**9) -> None:
        self.cap_cents = cap_cents
        self.used_cents: dict[str, int] = {}
        self.answers: dict[str, str] = {}

    async def reserve(self, requests: Sequence[BudgetRequest], now: datetime) -> Reserved:
        for r in requests:
            if r.event_id in self.answers:
                continue
            used = self.used_cents.get(r.currency, 0)
            fits = used + r.amount_cents <= self.cap_cents
            self.answers[r.event_id] = GRANTED if fits else "day_cap"
            self.used_cents[r.currency] = used + r.amount_cents * fits
        answers = {r.event_id: self.answers[r.event_id] for r in requests}
        return Reserved(answers, await self.used(now))

    async def used(self, now: datetime) -> dict[str, tuple[int, int]]:
        return {c: (cents, cents) for c, cents in self.used_cents.items()}


class Mirror:
    """The balances' mirror: the last balances written per customer."""

    def __init__(self, outage: Outage) -> None:
        self.outage = outage
        self.balances: dict[str, tuple[int, int, int]] = {}

    async def write(self, rows: Sequence[Row]) -> None:
        """As the mirror's script does: an erased hash deleted first, then the row written
        unless the account is empty or Redis has a later sequence."""
        await self.outage.call()
        for customer, sequence, pending, available, erased in rows:
            if erased:
                self.balances.pop(customer, None)
            current = self.balances.get(customer)
            if sequence >= 0 and (current is None or sequence >= current[2]):
                self.balances[customer] = (pending, available, sequence)
