"""The identity index in per-slot steps, on one Redis and on a Redis Cluster.

The version before's scripts are the oracle (facts, late evidence, the index left behind); erasure
goes by the reverse index; a batch is a few calls whatever its size.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from processors.fraud import FraudFacts, FraudPolicy, SharedSignal
from processors.identity import email_domain, identity_signals, is_disposable, keyed_hash
from processors.referral_state import Referee
from processors.referrals import ConversionCheck
from schemas.models import Context, Purchase, Referral, ShippingAddress
from streams.adapters import identity_record
from streams.adapters.identity_index import IdentityIndex, LateMatch, Seen
from streams.adapters.metrics import PipelineMetrics
from streams.adapters.redis_client import RedisClient, connect, is_cluster
from streams.adapters.redis_retry import RedisRetry

pytestmark = [pytest.mark.integration, pytest.mark.redis]

KEY = b"test-identity-slots-key"
TTL = timedelta(days=30)
POLICY = FraudPolicy(
    velocity_window=timedelta(hours=1), ip_ua_window=timedelta(minutes=30), ring_depth=4
)
START = datetime(2026, 3, 1, tzinfo=UTC)

# The version before's scripts (identity_lua.py), SMEMBERS sorted as the steps take them.
OLD_FACTS = """
local ns, ttl, vwin, depth = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local specs = cjson.decode(ARGV[5])
local function sorted_members(key)
  local found = redis.call('SMEMBERS', key); table.sort(found); return found
end
local function ring(referrer, referee)
  local prefix = ns .. ':ref:by:'
  local parent = {[referrer] = false}
  local frontier = {referrer}
  for _ = 1, depth - 1 do
    local nxt = {}
    for _, node in ipairs(frontier) do
      for _, up in ipairs(sorted_members(prefix .. node)) do
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
end
local out = {}
for i, s in ipairs(specs) do
  local r = {shared = {}, velocity = {}, ring = {}}
  for _, kind in ipairs(s.check) do
    local key = ns .. ':id:' .. kind .. ':' .. s.signals[kind]
    r.shared[kind] = redis.call('ZSCORE', key, s.referrer) or false
  end
  r.rejected = {redis.call('EXISTS', ns .. ':fraud:rejected:' .. s.referrer),
                redis.call('EXISTS', ns .. ':fraud:rejected:' .. s.referee)}
  if s.ring then r.ring = ring(s.referrer, s.referee) end
  for _, v in ipairs(s.velocity) do
    local key = ns .. ':vel:' .. v[1] .. ':' .. v[2]
    redis.call('ZADD', key, s.at, s.event_id)
    redis.call('ZREMRANGEBYSCORE', key, '-inf', s.at - 2 * vwin)
    redis.call('EXPIRE', key, 2 * vwin + 60)
    r.velocity[v[1]] = redis.call('ZCOUNT', key, s.at - vwin, s.at)
  end
  if s.record then
    for kind, digest in pairs(s.signals) do
      local key = ns .. ':id:' .. kind .. ':' .. digest
      redis.call('ZADD', key, 'GT', s.at, s.referee)
      redis.call('EXPIRE', key, ttl)
    end
    local edge = ns .. ':ref:by:' .. s.referee
    redis.call('SADD', edge, s.referrer)
    redis.call('EXPIRE', edge, ttl)
    local out_edge = ns .. ':ref:of:' .. s.referrer
    redis.call('SADD', out_edge, s.referee)
    redis.call('EXPIRE', out_edge, ttl)
  end
  out[i] = r
end
return cjson.encode(out)
"""
OLD_RECORD = """
local ns, ttl = ARGV[1], tonumber(ARGV[2])
local seen = cjson.decode(ARGV[3])
local late = {}
for _, kind in ipairs(cjson.decode(ARGV[4])) do late[kind] = true end
local found = {}
for _, row in ipairs(seen) do
  local key = ns .. ':id:' .. row[3] .. ':' .. row[4]
  redis.call('ZADD', key, 'GT', row[2], row[1])
  redis.call('EXPIRE', key, ttl)
  if late[row[3]] then
    local ups = redis.call('SMEMBERS', ns .. ':ref:by:' .. row[1]); table.sort(ups)
    for _, referrer in ipairs(ups) do
      if redis.call('ZSCORE', key, referrer) then
        table.insert(found, {referrer, row[1], row[3], row[4], row[5]})
      end
    end
    local downs = redis.call('SMEMBERS', ns .. ':ref:of:' .. row[1]); table.sort(downs)
    for _, referee in ipairs(downs) do
      if redis.call('ZSCORE', key, referee) then
        table.insert(found, {row[1], referee, row[3], row[4], row[5]})
      end
    end
  end
end
return cjson.encode(found)
"""
SHARED_KINDS = ("email", "device", "payment", "address", "ip_ua")
VELOCITY = (("referrer", None), ("ip", "ip"), ("device", "device"))
Pair = tuple[str, str, str, datetime, Context | None]
"""(referrer, referee, event id, time, context) of a sign-up or a conversion."""
Outcome = tuple[list[FraudFacts], list[FraudFacts], list[LateMatch]]
Dump = dict[str, tuple[str, Any, int]]


class OldIndex:
    """The version before's adapter around those scripts (one Redis), as it built their
    arguments and read their replies."""

    def __init__(self, client: Redis, ns: str) -> None:
        self.client, self.ns = client, ns
        self.recorded: dict[tuple[str, str], int] = {}

    async def facts(self, subject: str, pairs: list[Pair]) -> list[FraudFacts]:
        signup, specs = subject == "signup", []
        for referrer, referee, event_id, at, context in pairs:
            hashed = hashes(context)
            velocity = [[who, referrer if k is None else hashed[k]] for who, k in VELOCITY
                        if k is None or k in hashed]  # fmt: skip
            specs.append({"referrer": referrer, "referee": referee, "event_id": event_id,
                          "at": int(at.timestamp()), "signals": hashed,
                          "check": [k for k in SHARED_KINDS if k in hashed], "ring": signup,
                          "velocity": velocity if signup else [], "record": signup})  # fmt: skip
        window = int(POLICY.velocity_window.total_seconds())
        args = (self.ns, int(TTL.total_seconds()), window, POLICY.ring_depth, orjson.dumps(specs))
        replies = orjson.loads(await self.client.eval(OLD_FACTS, 0, *args))
        return [old_facts(subject, p, r) for p, r in zip(pairs, replies, strict=True)]

    async def record(self, seen: Sequence[Seen]) -> list[LateMatch]:
        rows = []
        for customer, context, at, event_id in seen:
            stamp = int(at.timestamp())
            for kind, digest in hashes(context).items():
                last = self.recorded.get((customer, digest))
                if last is None or not 0 <= stamp - last < 600:
                    self.recorded[customer, digest] = stamp
                    rows.append((customer, stamp, kind, digest, event_id))
        late = orjson.dumps(("email", "device", "payment", "address"))
        args = (self.ns, int(TTL.total_seconds()), orjson.dumps(rows), late)
        found = orjson.loads(await self.client.eval(OLD_RECORD, 0, *args)) if rows else []
        return [LateMatch(a, b, SharedSignal(k, d), e) for a, b, k, d, e in found]


def hashes(context: Context | None) -> dict[str, str]:
    return {k: keyed_hash(KEY, k, v) for k, v in identity_signals(context).items()}


def old_facts(subject: str, pair: Pair, reply: dict[str, Any]) -> FraudFacts:
    referrer, referee, _, at, context = pair
    hashed, window = hashes(context), POLICY.ip_ua_window.total_seconds()
    seen = reply["shared"] or {}
    shared = tuple(
        SharedSignal(kind, hashed[kind])
        for kind in SHARED_KINDS
        if seen.get(kind) not in (None, False)
        and (kind != "ip_ua" or abs(float(seen[kind]) - at.timestamp()) <= window)
    )
    flags = zip(("referrer", "referee"), reply["rejected"], strict=True)
    rejected = tuple(role for role, flag in flags if flag)
    if subject == "conversion":
        return FraudFacts("conversion", referrer, referee, shared=shared, rejected=rejected)
    email = identity_signals(context).get("email")
    return FraudFacts(
        "signup", referrer, referee, shared=shared,
        disposable_domain=email_domain(email) if email and is_disposable(email) else None,
        velocity={who: int(n) for who, n in (reply["velocity"] or {}).items()},
        ring=tuple(reply["ring"] or ()), rejected=rejected,
    )  # fmt: skip


@dataclass
class Batch:
    signups: list[Referral] = field(default_factory=list)
    checks: list[ConversionCheck] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


PLANTED: dict[int, list[tuple[str, str, int | None]]] = {
    0: [("r00", "r01", None), ("r01", "r02", None), ("r02", "r00", None), ("s00", "s01", None)],
    1: [("s01", "s02", None)], 2: [("s02", "s03", None)], 3: [("s03", "s00", None)],
    4: [("q00", "q01", 600), ("q00", "q01", -1200), ("q01", "q02", 2100)],
}  # fmt: skip
"""A 3-ring closed inside one batch, a 4-ring closed across four, and q01 seen (one IP and agent)
at +600 s, then at -1200 s (GT keeps +600: within the IP window of q01's own sign-up at +2100)."""


def scenario(seed: int, batches: int = 6) -> list[Batch]:
    """Random sign-ups, conversions and purchases over 20 customers sharing a few emails,
    devices, cards, addresses and IPs, times out of order, and PLANTED."""
    rng = random.Random(seed)
    people = [f"c{i:03d}" for i in range(20)]
    same = Context(ip="203.0.113.9", user_agent="UA/q")
    out, n = [], 0
    for b in range(batches):
        batch, base = Batch(), START + timedelta(minutes=40 * b)
        pairs = [(rng.choice(people), rng.choice(people), None) for _ in range(30)]
        for referrer, referee, fixed in PLANTED.get(b, []) + pairs:
            n += 1
            at = base + timedelta(seconds=rng.randrange(-1800, 1800) if fixed is None else fixed)
            batch.signups.append(Referral(event_id=f"s{n}", occurred_at=at, type="signed_up",
                referrer_id=referrer, referral_code="x", referee_id=referee,
                context=context(rng) if fixed is None else same))  # fmt: skip
        for referrer, referee, _ in pairs[:12]:
            n += 1
            at = base + timedelta(seconds=rng.randrange(-1800, 1800))
            buy = Purchase(event_id=f"p{n}", occurred_at=at, customer_id=referee,
                           type="purchase", order_id=f"o{n}", amount_cents=100, currency="EUR",
                           context=context(rng))  # fmt: skip
            ref = Referee("k", referrer, "s", at, "approve", "attributed", "a")
            batch.checks.append(ConversionCheck(buy, ref))
        for _ in range(30):
            n += 1
            at = base + timedelta(seconds=rng.randrange(0, 2400))
            batch.seen.append((rng.choice(people), context(rng), at, f"e{n}"))
        batch.rejected = rng.sample(people, 2)
        out.append(batch)
    return out


def context(rng: random.Random) -> Context:
    place = ShippingAddress(line1=f"{rng.randrange(4)} High St", city="London",
                            postal_code="NW1 6XE", country="GB")  # fmt: skip
    return Context(
        email=rng.choice([f"u{rng.randrange(6)}@example.org", "x@mailinator.com", None]),
        ip=f"198.51.100.{rng.randrange(4)}", user_agent=rng.choice(["UA/1", "UA/2", None]),
        device_id=rng.choice([f"d{rng.randrange(5)}", None]),
        payment_fingerprint=rng.choice([f"p{rng.randrange(5)}", None]),
        shipping_address=rng.choice([place, None]),
    )  # fmt: skip


def new_index(client: RedisClient, ns: str) -> IdentityIndex:
    retry = RedisRetry("identity", 1.0, PipelineMetrics.create(CollectorRegistry()))
    return IdentityIndex(client, namespace=ns, key=KEY, ttl=TTL, policy=POLICY, retry=retry)


async def run_new(index: IdentityIndex, batch: Batch) -> Outcome:
    signups = await index.signup_facts(batch.signups)
    conversions = await index.conversion_facts(batch.checks)
    late = await index.record(batch.seen)
    index.committed()
    await index.mark_rejected(batch.rejected)
    return signups, conversions, late


async def run_old(old: OldIndex, batch: Batch) -> Outcome:
    signups = await old.facts("signup", [
        (s.referrer_id, s.referee_id or "", s.event_id, s.occurred_at, s.context)
        for s in batch.signups])  # fmt: skip
    conversions = await old.facts("conversion", [
        (c.referral.referrer_id, c.purchase.customer_id, c.purchase.event_id,
         c.purchase.occurred_at, c.purchase.context) for c in batch.checks])  # fmt: skip
    late = await old.record(batch.seen)
    for who in batch.rejected:
        await old.client.set(f"{old.ns}:fraud:rejected:{who}", 1, ex=int(TTL.total_seconds()))
    return signups, conversions, late


async def dump(client: RedisClient, ns: str) -> Dump:
    """Every key of the namespace (a SCAN of every node): (type, contents, TTL)."""
    out: Dump = {}
    async for raw in client.scan_iter(match=f"{ns}:*", count=1000):
        kind: Any = await client.type(raw)
        kind = kind.decode()
        value: Any = await client.get(raw) if kind == "string" else None
        if kind == "zset":
            scored: Any = await client.zrange(raw, 0, -1, withscores=True)
            value = dict(scored)
        elif kind == "set":
            value = set(await client.smembers(raw))
        out[bytes(raw).decode()[len(ns) + 1 :]] = (kind, value, await client.ttl(raw))
    return out


async def drop(client: RedisClient, ns: str) -> None:
    async for raw in client.scan_iter(match=f"{ns}:*", count=1000):
        await client.delete(raw)


def oracle_url(services: Any, request: pytest.FixtureRequest) -> str:
    """A single Redis for the scripts: the suite's, or one of this test's beside a cluster."""
    if "+cluster://" not in services.redis_url:
        return str(services.redis_url)
    return str(request.getfixturevalue("private_redis").url)


@pytest.mark.parametrize(("seed", "limit"), [(1, None), (2, None), (3, None), (1, 0)])
def test_steps_give_what_the_scripts_gave(
    services: Any, request: Any, monkeypatch: pytest.MonkeyPatch, seed: int, limit: int | None
) -> None:
    """limit 0: a set answers with its members only up to the partners looked for, and the
    larger ones with the partners' scores (a round of their own)."""
    batches, ns = scenario(seed), f"slots-{uuid.uuid4().hex[:8]}"
    url = oracle_url(services, request)
    large: list[int] = []
    if limit is not None:
        monkeypatch.setattr(identity_record, "MEMBERS_LIMIT", limit)
        asked = identity_record.SignalRecorder._large

        async def counted(self: Any, sets: Any, partners: Any, names: list[str]) -> Any:
            large.append(len(names))
            return await asked(self, sets, partners, names)

        monkeypatch.setattr(identity_record.SignalRecorder, "_large", counted)

    async def both() -> tuple[list[Outcome], list[Outcome], Dump, Dump]:
        client, single = connect(services.redis_url, cluster=False), Redis.from_url(url)
        try:
            index, old = new_index(client, ns), OldIndex(single, ns + "-old")
            new = [await run_new(index, b) for b in batches]
            was = [await run_old(old, b) for b in batches]
            return new, was, await dump(client, ns), await dump(single, ns + "-old")
        finally:
            await drop(client, ns)
            await drop(single, ns + "-old")
            await client.aclose()
            await single.aclose()

    new, was, index, old_index = asyncio.run(both())
    assert new == was
    assert bool(large) is (limit is not None), large
    facts = [f for signups, conversions, _ in was for f in signups + conversions]
    assert any(f.rejected for f in facts) and any(late for *_, late in was)
    assert any(f.shared for f in facts) and any(n > 1 for f in facts for n in f.velocity.values())
    assert {"r00", "r01", "r02", "s00", "s01", "s02", "s03"} <= {c for f in facts for c in f.ring}
    assert any(f.shared and f.referrer_id == "q01" for f in facts)
    reverse = {k: v for k, v in index.items() if k.startswith("id-of:") or k == "id:reverse-since"}
    rest = {k: v for k, v in index.items() if k not in reverse}
    assert {k: v[:2] for k, v in rest.items()} == {k: v[:2] for k, v in old_index.items()}
    assert all(abs(ttl - old_index[key][2]) <= 5 for key, (_, _, ttl) in rest.items())
    for key, (_, members, _) in rest.items():  # every membership is in the reverse index
        if key.startswith("id:"):
            for member in members:
                assert f"{ns}:{key}".encode() in reverse[f"id-of:{member.decode()}"][1]


def test_erasure_uses_the_reverse_index_and_scans_only_while_young(services: Any) -> None:
    ns, ttl_s, victims = f"erase-{uuid.uuid4().hex[:8]}", int(TTL.total_seconds()), ["c001", "r01"]

    async def erase() -> tuple[bool, Dump, Dump]:
        client = connect(services.redis_url, cluster=False)
        cluster, marker = is_cluster(client), f"{ns}:id:reverse-since"
        try:
            if not cluster:  # an old marker: no SCAN
                await client.set(marker, int(time.time()) - ttl_s - 60)
            index = new_index(client, ns)
            for batch in scenario(7, batches=3):
                await run_new(index, batch)
            await client.zadd(f"{ns}:id:email:legacy", {"c001": 1, "c003": 1})  # no id-of
            before = await dump(client, ns)
            await index.forget(victims)
            after = await dump(client, ns)
            if not cluster:  # a young marker: the SCAN finds the legacy membership too
                await client.set(marker, int(time.time()))
                await new_index(client, ns).forget(["c001"])
                left = (await dump(client, ns))["id:email:legacy"][1]
                assert b"c001" not in left and b"c003" in left
            return cluster, before, after
        finally:
            await drop(client, ns)
            await client.aclose()

    cluster, before, after = asyncio.run(erase())
    gone = {v.encode() for v in victims}
    assert all(
        any(g in v for _, v, _ in before.values() if isinstance(v, dict | set)) for g in gone
    )
    for key, (_, value, _) in after.items():
        assert not any(key.endswith(f":{v}") for v in victims), key
        if key == "id:email:legacy":
            assert b"c001" in value and b"c003" in value  # no SCAN (a cluster, or an old marker)
        elif isinstance(value, dict | set):
            assert not gone & set(value), key
    assert ("id:reverse-since" in after) is not cluster


async def calls(client: RedisClient, step: Callable[[], Awaitable[object]]) -> int:
    """Script calls the step made (on a Redis of its own), not counting a first call that found
    the script not loaded yet (NOSCRIPT: redis-py loads it and calls again)."""
    await client.config_resetstat()
    await step()
    stats: Any = await client.info("commandstats")
    found = stats.get("cmdstat_evalsha", {})
    return int(found.get("calls", 0)) - int(found.get("failed_calls", 0))


def test_a_batch_is_a_few_calls_whatever_its_size(private_redis: Any) -> None:
    """Sign-ups: one call, and one per further ring level; conversions one; purchases two."""
    ns, (first, *rest) = f"rounds-{uuid.uuid4().hex[:8]}", scenario(5, batches=4)
    one = Batch(first.signups[:1], first.checks[:1], first.seen[:1])
    merged = Batch([s for b in rest for s in b.signups], [c for b in rest for c in b.checks],
                   [p for b in rest for p in b.seen])  # fmt: skip

    async def count() -> list[tuple[int, int, int]]:
        client = connect(private_redis.url, cluster=False)
        index, rounds = new_index(client, ns), []
        try:
            for b in (first, one, merged):
                rounds.append((await calls(client, partial(index.signup_facts, b.signups)),
                               await calls(client, partial(index.conversion_facts, b.checks)),
                               await calls(client, partial(index.record, b.seen))))  # fmt: skip
            return rounds
        finally:
            await client.aclose()

    rounds = asyncio.run(count())
    assert len(merged.signups) > 90
    assert all(s <= POLICY.ring_depth - 1 and c == 1 and r <= 2 for s, c, r in rounds), rounds
    assert rounds[2][2] == 2  # the merged batch's purchases: edges, then the signal sets
    assert max(s for s, _, _ in rounds) > 1  # a walk went a level further
