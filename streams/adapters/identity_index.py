"""The cross-partition identity index in Redis: keyed hashes of who used which email, device, card.

A referrer's signals and a referee's live on different partitions, so this index is shared by all
workers. It stores no personal data: every email, IP, address and payment fingerprint is an HMAC
(`processors.identity.keyed_hash`, key from settings). Key layout (all expire):

- `<app>:id:<kind>:<hmac>`      sorted set: customer id -> last seen (epoch s); `identity_ttl`
- `<app>:vel:<who>:<subject>`   sorted set: sign-up event id -> its time; twice the velocity window
- `<app>:ref:by:<customer>`     set: the customers who referred this one; `identity_ttl`
- `<app>:ref:of:<customer>`     set: the customers this one referred; `identity_ttl`
- `<app>:fraud:rejected:<id>`   string: this customer was rejected for fraud; `identity_ttl`
- `<app>:id-of:<customer>`      set: the signal sets this customer was added to; `identity_ttl`
- `<app>:id:reverse-since`      string: when `id-of` was first written (single Redis; no TTL)

Every call touches keys of one hash slot (`identity_steps`), so the index runs on one Redis or a
Redis Cluster alike; a batch is a few pipelined rounds that give what the version before's one
script per batch gave. Writes are idempotent (same members, scores with GT), so a redelivered
batch leaves the index as it was. An unreachable Redis holds the batch (RedisRetry). A forget
command erases a customer's keys and memberships through `id-of` (`identity_erasure`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from processors.fraud import FraudFacts, FraudPolicy, SharedSignal
from processors.identity import email_domain, identity_signals, is_disposable, keyed_hash
from processors.referrals import ConversionCheck
from schemas.models import Context, Referral
from streams.adapters.identity_erasure import (
    customer_hash,
    erase_customers,
    legacy_scan_due,
    reverse_since,
)
from streams.adapters.identity_record import Found, Row, SignalRecorder
from streams.adapters.identity_steps import IdentitySteps, Spec, SpecFacts
from streams.adapters.redis_client import RedisClient, pipelined
from streams.adapters.redis_retry import RedisRetry

SHARED_KINDS = ("email", "device", "payment", "address", "ip_ua")
HASH_CACHE = 50_000
"""Contexts whose keyed hashes are remembered (oldest forgotten first)."""
RECORD_REFRESH_S = 600
RECORDED_CACHE = 200_000
"""(customer, signal) pairs whose last write to the index is remembered."""
VELOCITY = (("referrer", None), ("ip", "ip"), ("device", "device"))
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
        redis: RedisClient,
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
        velocity_s = int(policy.velocity_window.total_seconds())
        self._steps = IdentitySteps(redis, namespace, self._ttl_s, velocity_s, policy.ring_depth)
        self._recorder = SignalRecorder(redis, namespace, self._ttl_s)
        self._started = False
        self._since: float | None = None
        """When the reverse index started (None on a cluster: no version before ran there)."""

    async def signup_facts(self, signups: Sequence[Referral]) -> list[FraudFacts]:
        """Facts for each sign-up, then record its referee, edge and velocity (a few rounds)."""
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

    def _fresh_rows(self, seen: Sequence[Seen]) -> list[Row]:
        rows: list[Row] = []
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
            await self._retry.call(lambda: self._erase(customers))

    async def _erase(self, customers: Sequence[str]) -> None:
        await self._start()
        scan = legacy_scan_due(self._since, self._ttl_s)
        await erase_customers(self._redis, self._ns, customers, legacy_scan=scan)

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
    ) -> Spec:
        signals = hashed.signals
        velocity = tuple(
            (who, referrer if kind is None else signals[kind])
            for who, kind in VELOCITY
            if kind is None or kind in signals
        )
        check = tuple(k for k in SHARED_KINDS if k in signals)
        return Spec(referrer, referee, event_id, int(at), signals, check,
                    velocity if signup else (), signup)  # fmt: skip

    async def _signup_facts(self, signups: Sequence[Referral]) -> list[FraudFacts]:
        await self._start()
        hashed = [self._hash(signup.context) for signup in signups]
        specs = [
            self._spec(s.referrer_id, s.referee_id or "", s.event_id, s.occurred_at.timestamp(), h,
                       signup=True)
            for s, h in zip(signups, hashed, strict=True)
        ]  # fmt: skip
        found = await self._steps.facts(specs)
        return [
            FraudFacts(
                subject="signup",
                referrer_id=signup.referrer_id,
                referee_id=signup.referee_id or "",
                shared=self._shared(facts, signals, signup.occurred_at.timestamp()),
                disposable_domain=signals.domain if signals.disposable else None,
                velocity=facts.velocity,
                ring=facts.ring,
                rejected=_rejected(facts),
            )
            for signup, signals, facts in zip(signups, hashed, found, strict=True)
        ]

    async def _conversion_facts(self, checks: Sequence[ConversionCheck]) -> list[FraudFacts]:
        hashed = [self._hash(check.purchase.context) for check in checks]
        specs = [
            self._spec(c.referral.referrer_id, c.purchase.customer_id, c.purchase.event_id,
                       c.purchase.occurred_at.timestamp(), h, signup=False)
            for c, h in zip(checks, hashed, strict=True)
        ]  # fmt: skip
        found = await self._steps.facts(specs)
        return [
            FraudFacts(
                subject="conversion",
                referrer_id=check.referral.referrer_id,
                referee_id=check.purchase.customer_id,
                shared=self._shared(facts, signals, check.purchase.occurred_at.timestamp()),
                rejected=_rejected(facts),
            )
            for check, signals, facts in zip(checks, hashed, found, strict=True)
        ]

    def _shared(self, facts: SpecFacts, hashed: _Hashed, at: float) -> tuple[SharedSignal, ...]:
        """The referee's signals the referrer was seen with (IP + agent: within the window)."""
        window = self._policy.ip_ua_window.total_seconds()
        seen = facts.shared
        return tuple(
            SharedSignal(kind, hashed.signals[kind])
            for kind in SHARED_KINDS
            if kind in seen and (kind != "ip_ua" or abs(seen[kind] - at) <= window)
        )

    async def _record(self, rows: list[Row]) -> list[Found]:
        await self._start()
        return await self._recorder.record(rows)

    async def _start(self) -> None:
        """Once: the reverse index's start marker (single Redis; `identity_erasure`)."""
        if not self._started:
            self._since = await reverse_since(self._redis, self._ns)
            self._started = True

    async def _mark(self, keys: list[str]) -> None:
        ttl = self._ttl_s
        await pipelined(self._redis, lambda pipe: [pipe.set(key, 1, ex=ttl) for key in keys])

    def _rejected_key(self, customer: str) -> str:
        return f"{self._ns}:fraud:rejected:{customer}"


_NO_SIGNALS = _Hashed(signals={}, domain=None, disposable=False)


def _rejected(facts: SpecFacts) -> tuple[str, ...]:
    """The roles the index remembers as rejected for fraud."""
    flags = facts.rejected
    return tuple(role for role, flag in zip(("referrer", "referee"), flags, strict=True) if flag)
