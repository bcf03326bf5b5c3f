"""The cross-partition identity index in Redis: keyed hashes of who used which email, device, card.

A referrer's signals and a referee's live on different partitions, so this index is shared by all
workers. It stores no personal data: every email, IP, address and payment fingerprint is an HMAC
(`processors.identity.keyed_hash`, key from settings). Key layout (all expire):

- `<app>:id:<kind>:<hmac>`      sorted set: customer id -> last seen (epoch s); `identity_ttl`
- `<app>:vel:<who>:<subject>`   sorted set: sign-up event id -> its time; twice the velocity window
- `<app>:ref:by:<customer>`     set: the customers who referred this one; `identity_ttl`
- `<app>:fraud:rejected:<id>`   string: this customer was rejected for fraud; `identity_ttl`

Every read for a batch goes in one pipeline; writes are idempotent (same members, same scores), so
a redelivered batch leaves the index as it was. An unreachable Redis holds the batch (RedisRetry).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from processors.fraud import FraudFacts, FraudPolicy, SharedSignal
from processors.identity import email_domain, identity_signals, is_disposable, keyed_hash
from processors.referrals import ConversionCheck
from schemas.models import Context, Referral
from streams.redis_retry import RedisRetry

SHARED_KINDS = ("email", "device", "payment", "address", "ip_ua")
VELOCITY = (("referrer", None), ("ip", "ip"), ("device", "device"))

# Walk up "who referred whom" from the referrer; finding the referee closes a cycle. Returns the
# cycle as customer ids (referee, ..., referrer, referee), or an empty list.
RING_SCRIPT = """
local prefix, referrer, referee, depth = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local parent = {[referrer] = false}
local frontier = {referrer}
for _ = 1, depth - 1 do
  local nxt = {}
  for _, node in ipairs(frontier) do
    for _, up in ipairs(redis.call('SMEMBERS', prefix .. node)) do
      if up == referee then
        local path = {referee, node}
        local cur = parent[node]
        while cur do table.insert(path, cur); cur = parent[cur] end
        table.insert(path, referee)
        return path
      end
      if parent[up] == nil then parent[up] = node; table.insert(nxt, up) end
    end
  end
  frontier = nxt
end
return {}
"""


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
        self._ring = redis.register_script(RING_SCRIPT)

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

    async def record(self, seen: Sequence[tuple[str, Context | None, datetime]]) -> None:
        """Remember the signals each (customer, context, time) showed."""
        hashed = [(c, self._hash(ctx), at) for c, ctx, at in seen if ctx is not None]
        if hashed:
            await self._retry.call(lambda: self._record(hashed))

    async def mark_rejected(self, customers: Iterable[str]) -> None:
        """Remember customers rejected for fraud (the `*_rejected` rules read it)."""
        keys = sorted({self._rejected_key(c) for c in customers})
        if keys:
            await self._retry.call(lambda: self._mark(keys))

    def _hash(self, context: Context | None) -> _Hashed:
        plain = identity_signals(context)
        email = plain.get("email")
        return _Hashed(
            signals={kind: keyed_hash(self._key, kind, value) for kind, value in plain.items()},
            domain=email_domain(email) if email else None,
            disposable=bool(email and is_disposable(email)),
        )

    async def _signup_facts(self, signups: Sequence[Referral]) -> list[FraudFacts]:
        pipe = self._redis.pipeline(transaction=False)
        plans = []
        for signup in signups:
            assert signup.referee_id is not None
            hashed = self._hash(signup.context)
            at = signup.occurred_at.timestamp()
            self._queue_shared(pipe, hashed, signup.referrer_id)
            self._queue_rejected(pipe, signup.referrer_id, signup.referee_id)
            await self._ring(
                args=[f"{self._ns}:ref:by:", signup.referrer_id, signup.referee_id,
                      self._policy.ring_depth],
                client=pipe,
            )  # fmt: skip
            velocity = self._queue_velocity(pipe, signup, hashed, at)
            self._queue_record(pipe, signup.referee_id, hashed, at)
            edge = f"{self._ns}:ref:by:{signup.referee_id}"
            pipe.sadd(edge, signup.referrer_id)
            pipe.expire(edge, self._ttl_s)
            plans.append((signup, hashed, velocity))
        replies = list(await pipe.execute())
        return [self._signup_fact(replies, *plan) for plan in plans]

    def _signup_fact(
        self, replies: list[Any], signup: Referral, hashed: _Hashed, velocity: list[str]
    ) -> FraudFacts:
        """Take this sign-up's replies off the front of `replies` (in queued order)."""
        assert signup.referee_id is not None
        shared = self._take_shared(replies, hashed, signup.occurred_at.timestamp())
        rejected = self._take_rejected(replies)
        ring = tuple(_text(node) for node in replies.pop(0))
        counts: dict[str, int] = {}
        for who in velocity:
            del replies[:3]  # zadd, zremrangebyscore, expire
            counts[who] = int(replies.pop(0))
        del replies[: 2 * len(hashed.signals) + 2]  # the referee's signals recorded, the edge
        return FraudFacts(
            subject="signup",
            referrer_id=signup.referrer_id,
            referee_id=signup.referee_id,
            shared=shared,
            disposable_domain=hashed.domain if hashed.disposable else None,
            velocity=counts,
            ring=ring,
            rejected=rejected,
        )

    async def _conversion_facts(self, checks: Sequence[ConversionCheck]) -> list[FraudFacts]:
        pipe = self._redis.pipeline(transaction=False)
        hashed = [self._hash(check.purchase.context) for check in checks]
        for check, signals in zip(checks, hashed, strict=True):
            self._queue_shared(pipe, signals, check.referral.referrer_id)
            self._queue_rejected(pipe, check.referral.referrer_id, check.purchase.customer_id)
        replies = list(await pipe.execute())
        return [
            FraudFacts(
                subject="conversion",
                referrer_id=check.referral.referrer_id,
                referee_id=check.purchase.customer_id,
                shared=self._take_shared(replies, signals, check.purchase.occurred_at.timestamp()),
                rejected=self._take_rejected(replies),
            )
            for check, signals in zip(checks, hashed, strict=True)
        ]

    def _queue_shared(self, pipe: Pipeline, hashed: _Hashed, referrer_id: str) -> None:
        for kind in SHARED_KINDS:
            if kind in hashed.signals:
                pipe.zscore(self._id_key(kind, hashed.signals[kind]), referrer_id)

    def _take_shared(
        self, replies: list[Any], hashed: _Hashed, at: float
    ) -> tuple[SharedSignal, ...]:
        window = self._policy.ip_ua_window.total_seconds()
        shared = []
        for kind in SHARED_KINDS:
            if kind not in hashed.signals:
                continue
            seen = replies.pop(0)
            if seen is not None and (kind != "ip_ua" or abs(float(seen) - at) <= window):
                shared.append(SharedSignal(kind, hashed.signals[kind]))
        return tuple(shared)

    def _queue_rejected(self, pipe: Pipeline, referrer_id: str, referee_id: str) -> None:
        pipe.exists(self._rejected_key(referrer_id))
        pipe.exists(self._rejected_key(referee_id))

    @staticmethod
    def _take_rejected(replies: list[Any]) -> tuple[str, ...]:
        flags = (replies.pop(0), replies.pop(0))
        return tuple(
            role for role, flag in zip(("referrer", "referee"), flags, strict=True) if flag
        )

    def _queue_velocity(
        self, pipe: Pipeline, signup: Referral, hashed: _Hashed, at: float
    ) -> list[str]:
        window = self._policy.velocity_window.total_seconds()
        counted = []
        for who, kind in VELOCITY:
            subject = signup.referrer_id if kind is None else hashed.signals.get(kind)
            if subject is None:
                continue
            key = f"{self._ns}:vel:{who}:{subject}"
            pipe.zadd(key, {signup.event_id: at})
            pipe.zremrangebyscore(key, "-inf", at - 2 * window)
            pipe.expire(key, int(2 * window) + 60)
            pipe.zcount(key, at - window, at)
            counted.append(who)
        return counted

    def _queue_record(self, pipe: Pipeline, customer: str, hashed: _Hashed, at: float) -> None:
        for kind, digest in hashed.signals.items():
            key = self._id_key(kind, digest)
            pipe.zadd(key, {customer: at}, gt=True)
            pipe.expire(key, self._ttl_s)

    async def _record(self, hashed: list[tuple[str, _Hashed, datetime]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for customer, signals, at in hashed:
            self._queue_record(pipe, customer, signals, at.timestamp())
        await pipe.execute()

    async def _mark(self, keys: list[str]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.set(key, 1, ex=self._ttl_s)
        await pipe.execute()

    def _id_key(self, kind: str, digest: str) -> str:
        return f"{self._ns}:id:{kind}:{digest}"

    def _rejected_key(self, customer: str) -> str:
        return f"{self._ns}:fraud:rejected:{customer}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
