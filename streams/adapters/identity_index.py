"""The cross-partition identity index in Redis: keyed hashes of who used which email, device, card.

A referrer's signals and a referee's live on different partitions, so this index is shared by all
workers. It stores no personal data: every email, IP, address and payment fingerprint is an HMAC
(`processors.identity.keyed_hash`, key from settings). Key layout (all expire):

- `<app>:id:<kind>:<hmac>`      sorted set: customer id -> last seen (epoch s); `identity_ttl`
- `<app>:vel:<who>:<subject>`   sorted set: sign-up event id -> its time; twice the velocity window
- `<app>:ref:by:<customer>`     set: the customers who referred this one; `identity_ttl`
- `<app>:ref:of:<customer>`     set: the customers this one referred; `identity_ttl`
- `<app>:fraud:rejected:<id>`   string: this customer was rejected for fraud; `identity_ttl`

A batch's reads and writes go in one script call (`identity_lua.py`); writes are idempotent (same
members, same scores), so a redelivered batch leaves the index as it was. An unreachable Redis
holds the batch (RedisRetry). A forget command erases a customer's keys and memberships
(`identity_erasure`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from redis.asyncio import Redis

from processors.fraud import FraudFacts, FraudPolicy, SharedSignal
from processors.identity import email_domain, identity_signals, is_disposable, keyed_hash
from processors.referrals import ConversionCheck
from schemas.models import Context, Referral
from streams.adapters.identity_erasure import customer_hash, erase_customers
from streams.adapters.identity_lua import FACTS_SCRIPT, RECORD_SCRIPT
from streams.adapters.redis_retry import RedisRetry

SHARED_KINDS = ("email", "device", "payment", "address", "ip_ua")
HASH_CACHE = 50_000
"""Contexts whose keyed hashes are remembered (oldest forgotten first)."""
RECORD_REFRESH_S = 600
RECORDED_CACHE = 200_000
"""(customer, signal) pairs whose last write to the index is remembered."""
VELOCITY = (("referrer", None), ("ip", "ip"), ("device", "device"))
LATE_KINDS = ("email", "device", "payment", "address")
"""Signals that count as evidence whenever they show up (IP and agent count only close in time)."""
Seen = tuple[str, Context | None, datetime, str]
"""(customer, context, time, event id) of a purchase."""


@dataclass(frozen=True, slots=True)
class LateMatch:
    """A party of a referral edge showed a signal the other party had shown before."""

    referrer_id: str
    referee_id: str
    signal: SharedSignal
    event_id: str
    """The purchase whose context showed it."""


@dataclass(frozen=True, slots=True)
class _Hashed:
    """A subject's keyed-hash signals and its plain email domain (domains are not personal)."""

    signals: dict[str, str]
    domain: str | None
    disposable: bool


class IdentityIndex:
    """Reads fraud facts for sign-ups and conversions, and records who used which signal."""

    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str,
        key: bytes,
        ttl: timedelta,
        policy: FraudPolicy,
        retry: RedisRetry,
    ) -> None:
        self._redis = redis
        self._ns = namespace
        self._key = key
        self._ttl_s = int(ttl.total_seconds())
        self._policy = policy
        self._retry = retry
        self._hashed: dict[Context, _Hashed] = {}
        self._recorded: dict[tuple[str, str], int] = {}
        self._unconfirmed: list[tuple[str, str]] = []
        """Pairs marked recorded by the open transaction (forgotten if it aborts)."""
        self._facts_script = redis.register_script(FACTS_SCRIPT)
        self._record_script = redis.register_script(RECORD_SCRIPT)

    async def signup_facts(self, signups: Sequence[Referral]) -> list[FraudFacts]:
        """Facts for each sign-up, then record its referee, edge and velocity (one round trip)."""
        if not signups:
            return []
        return await self._retry.call(lambda: self._signup_facts(signups))

    async def conversion_facts(self, checks: Sequence[ConversionCheck]) -> list[FraudFacts]:
        """Facts for each converting purchase: does the referrer share its card, address, device?"""
        if not checks:
            return []
        return await self._retry.call(lambda: self._conversion_facts(checks))

    async def record(self, seen: Sequence[Seen]) -> list[LateMatch]:
        """Remember the signals each purchase showed, and return the parties of the customers'
        referral edges who had shown the same (late evidence). A signal this worker recorded for
        the customer less than RECORD_REFRESH_S earlier (a customer's partition has one worker)
        is not written again: its last-seen time moves in steps of that size."""
        rows = self._fresh_rows(seen)
        if not rows:
            return []
        found = await self._retry.call(lambda: self._record(rows))
        return [
            LateMatch(referrer, referee, SharedSignal(kind, digest), event_id)
            for referrer, referee, kind, digest, event_id in found
        ]

    def committed(self) -> None:
        """The transaction that recorded the pairs committed."""
        self._unconfirmed.clear()

    def discarded(self) -> None:
        """It aborted: its purchases come again, so record (and match) them again."""
        for pair in self._unconfirmed:
            self._recorded.pop(pair, None)
        self._unconfirmed.clear()

    def _fresh_rows(self, seen: Sequence[Seen]) -> list[tuple[str, int, str, str, str]]:
        rows: list[tuple[str, int, str, str, str]] = []
        recorded = self._recorded
        for customer, context, at, event_id in seen:
            if context is None:
                continue
            stamp = int(at.timestamp())
            for kind, digest in self._hash(context).signals.items():
                key = (customer, digest)
                last = recorded.get(key)
                if last is None or not 0 <= stamp - last < RECORD_REFRESH_S:
                    recorded[key] = stamp
                    self._unconfirmed.append(key)
                    rows.append((customer, stamp, kind, digest, event_id))
        while len(recorded) > RECORDED_CACHE:
            del recorded[next(iter(recorded))]
        return rows

    async def mark_rejected(self, customers: Iterable[str]) -> None:
        """Remember customers rejected for fraud (the `*_rejected` rules read it)."""
        keys = sorted({self._rejected_key(c) for c in customers})
        if keys:
            await self._retry.call(lambda: self._mark(keys))

    async def forget(self, customers: Sequence[str]) -> None:
        """Erase the customers from the index (`identity_erasure`; a forget command)."""
        if customers:
            gone = set(customers)
            self._recorded = {k: v for k, v in self._recorded.items() if k[0] not in gone}
            await self._retry.call(lambda: erase_customers(self._redis, self._ns, customers))

    def customer_hash(self, customer_id: str) -> str:
        """The customer's keyed hash (under the PII key): names them without their id."""
        return customer_hash(self._key, customer_id)

    def _hash(self, context: Context | None) -> _Hashed:
        """The context's keyed hashes (remembered: customers come back with the same device,
        card and address, and normalising and hashing them is most of a purchase's cost)."""
        if context is None:
            return _NO_SIGNALS
        found = self._hashed.get(context)
        if found is None:
            found = self._hashed[context] = self._hash_now(context)
            if len(self._hashed) > HASH_CACHE:
                del self._hashed[next(iter(self._hashed))]
        return found

    def _hash_now(self, context: Context) -> _Hashed:
        plain = identity_signals(context)
        email = plain.get("email")
        return _Hashed(
            signals={kind: keyed_hash(self._key, kind, value) for kind, value in plain.items()},
            domain=email_domain(email) if email else None,
            disposable=bool(email and is_disposable(email)),
        )

    def _spec(
        self,
        referrer: str,
        referee: str,
        event_id: str,
        at: float,
        hashed: _Hashed,
        *,
        signup: bool,
    ) -> dict[str, Any]:
        velocity = [
            [who, referrer if kind is None else hashed.signals[kind]]
            for who, kind in VELOCITY
            if kind is None or kind in hashed.signals
        ]
        return {
            "referrer": referrer, "referee": referee, "event_id": event_id, "at": int(at),
            "signals": hashed.signals, "check": [k for k in SHARED_KINDS if k in hashed.signals],
            "ring": signup, "velocity": velocity if signup else [], "record": signup,
        }  # fmt: skip

    async def _facts(self, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        policy = self._policy
        reply = await self._facts_script(
            args=[self._ns, self._ttl_s, int(policy.velocity_window.total_seconds()),
                  policy.ring_depth, orjson.dumps(specs)],
        )  # fmt: skip
        found: list[dict[str, Any]] = orjson.loads(reply)
        return found

    async def _signup_facts(self, signups: Sequence[Referral]) -> list[FraudFacts]:
        hashed = [self._hash(signup.context) for signup in signups]
        specs = [
            self._spec(s.referrer_id, s.referee_id or "", s.event_id, s.occurred_at.timestamp(), h,
                       signup=True)
            for s, h in zip(signups, hashed, strict=True)
        ]  # fmt: skip
        found = await self._facts(specs)
        return [
            FraudFacts(
                subject="signup",
                referrer_id=signup.referrer_id,
                referee_id=signup.referee_id or "",
                shared=self._shared(reply, signals, signup.occurred_at.timestamp()),
                disposable_domain=signals.domain if signals.disposable else None,
                velocity={who: int(n) for who, n in (reply["velocity"] or {}).items()},
                ring=tuple(reply["ring"] or ()),
                rejected=_rejected(reply),
            )
            for signup, signals, reply in zip(signups, hashed, found, strict=True)
        ]

    async def _conversion_facts(self, checks: Sequence[ConversionCheck]) -> list[FraudFacts]:
        hashed = [self._hash(check.purchase.context) for check in checks]
        specs = [
            self._spec(c.referral.referrer_id, c.purchase.customer_id, c.purchase.event_id,
                       c.purchase.occurred_at.timestamp(), h, signup=False)
            for c, h in zip(checks, hashed, strict=True)
        ]  # fmt: skip
        found = await self._facts(specs)
        return [
            FraudFacts(
                subject="conversion",
                referrer_id=check.referral.referrer_id,
                referee_id=check.purchase.customer_id,
                shared=self._shared(reply, signals, check.purchase.occurred_at.timestamp()),
                rejected=_rejected(reply),
            )
            for check, signals, reply in zip(checks, hashed, found, strict=True)
        ]

    def _shared(
        self, reply: dict[str, Any], hashed: _Hashed, at: float
    ) -> tuple[SharedSignal, ...]:
        """The referee's signals the referrer was seen with (IP + agent: within the window)."""
        window = self._policy.ip_ua_window.total_seconds()
        seen = reply["shared"] or {}
        return tuple(
            SharedSignal(kind, hashed.signals[kind])
            for kind in SHARED_KINDS
            if seen.get(kind) not in (None, False)
            and (kind != "ip_ua" or abs(float(seen[kind]) - at) <= window)
        )

    async def _record(self, rows: list[tuple[str, int, str, str, str]]) -> list[list[str]]:
        reply = await self._record_script(
            args=[self._ns, self._ttl_s, orjson.dumps(rows), orjson.dumps(LATE_KINDS)]
        )
        found: list[list[str]] = orjson.loads(reply)
        return found

    async def _mark(self, keys: list[str]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.set(key, 1, ex=self._ttl_s)
        await pipe.execute()

    def _rejected_key(self, customer: str) -> str:
        return f"{self._ns}:fraud:rejected:{customer}"


_NO_SIGNALS = _Hashed(signals={}, domain=None, disposable=False)


def _rejected(reply: dict[str, Any]) -> tuple[str, ...]:
    """The roles the index remembers as rejected for fraud."""
    flags = reply["rejected"]
    return tuple(role for role, flag in zip(("referrer", "referee"), flags, strict=True) if flag)
