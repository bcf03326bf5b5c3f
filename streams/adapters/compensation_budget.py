"""The compensation budget in Redis: per currency, day and month, reserved atomically.

Key layout (all in one hash slot, `{<app>:comp}`, so one script call reserves a whole batch on a
Redis Cluster too; all keys expire):

- `{<app>:comp}:budget:<currency>:day:<YYYY-MM-DD>`  integer: minor units reserved that UTC day
- `{<app>:comp}:budget:<currency>:month:<YYYY-MM>`   integer: minor units reserved that UTC month
- `{<app>:comp}:reservation:<complaint event id>`    the answer given for that complaint event,
  kept `REWARDS_DEDUPE_TTL_S` (7 days; a day at least): a complaint event the account has
  settled is a no-op for it (`processors.compensation.assess`), so the answer only has to
  outlive the transaction that settles it (an abort repeats the batch, and the reservation with
  it); the marks that drop copies of the event last as long

One script call per batch checks and reserves every request in turn, so no two workers can both
take the last of a budget. The answer per complaint event is remembered: a redelivered complaint
gets the same answer and never reserves twice. A customer the fraud index remembers as rejected
(`<app>:fraud:rejected:<customer>`, another slot: read just before) reserves nothing
(`fraud_rejected`). Days and months are the worker clock's UTC calendar.

Upgrade from the layout before 2026-12 (`<app>:comp:...`, no hash tag; single Redis only): the
script also reads the old keys of the same day, month and complaint, so what was reserved before
the upgrade still counts and an old answer is still given; they expire as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from processors.compensation import BudgetRequest
from streams.adapters.redis_client import RedisClient, is_cluster, pipelined
from streams.adapters.redis_retry import RedisRetry
from streams.settings_models import BudgetCaps

# KEYS: every key the batch touches; ARGV: keep, day_ttl, month_ttl, then a JSON list of requests
# {amount, day_cap, month_cap, rejected, k: [reservation, day, month, old reservation, old day,
# old month]} where k holds indexes into KEYS (0: no such key).
RESERVE_SCRIPT = """
local keep, day_ttl, month_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local requests = cjson.decode(ARGV[4])
local function get(i) if i == 0 then return nil end return redis.call('GET', KEYS[i]) end
local function num(i) return tonumber(get(i) or '0') end
local answers, used = {}, {}
for n, r in ipairs(requests) do
  local k = r.k
  local answer = get(k[1]) or get(k[4])
  local day_used, month_used = num(k[2]) + num(k[5]), num(k[3]) + num(k[6])
  if not answer then
    if r.rejected == 1 then
      answer = 'fraud_rejected'
    elseif r.day_cap >= 0 and day_used + r.amount > r.day_cap then
      answer = 'budget_day'
    elseif r.month_cap >= 0 and month_used + r.amount > r.month_cap then
      answer = 'budget_month'
    else
      redis.call('INCRBY', KEYS[k[2]], r.amount)
      redis.call('EXPIRE', KEYS[k[2]], day_ttl)
      redis.call('INCRBY', KEYS[k[3]], r.amount)
      redis.call('EXPIRE', KEYS[k[3]], month_ttl)
      day_used, month_used = day_used + r.amount, month_used + r.amount
      answer = 'granted'
    end
    redis.call('SET', KEYS[k[1]], answer, 'EX', keep)
  end
  answers[n] = answer
  used[n] = {day_used, month_used}
end
return cjson.encode({answers = answers, used = used})
"""

KEEP_ANSWERS_S = 7 * 86_400  # the default first-seen TTL (REWARDS_DEDUPE_TTL_S)
DAY_TTL_S = 8 * 86_400  # a week of days stays readable (status, metrics)
MONTH_TTL_S = 62 * 86_400


@dataclass(frozen=True, slots=True)
class Reserved:
    """The answers of one reservation call, and what each currency has used today and this month."""

    answers: dict[str, str]
    used: dict[str, tuple[int, int]]


class CompensationBudget:
    """Reserves compensations against the shared budget, one Redis round trip per batch."""

    def __init__(
        self,
        redis: RedisClient,
        *,
        namespace: str,
        caps: Mapping[str, BudgetCaps],
        retry: RedisRetry,
        keep_answers_s: int = KEEP_ANSWERS_S,
    ) -> None:
        self._redis = redis
        self._ns = namespace
        self._caps = dict(caps)
        self._retry = retry
        self._keep_s = keep_answers_s
        self._script = redis.register_script(RESERVE_SCRIPT)
        self._old_keys = not is_cluster(redis)
        """Also read the layout before 2026-12 (single Redis only)."""

    @property
    def caps(self) -> dict[str, BudgetCaps]:
        """The configured caps by currency."""
        return dict(self._caps)

    async def reserve(self, requests: Sequence[BudgetRequest], now: datetime) -> Reserved:
        """Reserve each request in order; a currency without caps configured is never granted."""
        if not requests:
            return Reserved({}, {})
        return await self._retry.call(lambda: self._reserve(requests, now))

    async def _reserve(self, requests: Sequence[BudgetRequest], now: datetime) -> Reserved:
        rejected = await self._rejected(sorted({r.customer_id for r in requests}))
        keys: dict[str, int] = {}

        def index(key: str | None) -> int:
            return 0 if key is None else keys.setdefault(key, len(keys) + 1)

        specs = [
            {
                "amount": r.amount_cents,
                "day_cap": _cap(self._caps.get(r.currency), "day"),
                "month_cap": _cap(self._caps.get(r.currency), "month"),
                "rejected": int(r.customer_id in rejected),
                "k": [index(key) for key in self._keys(r, now)],
            }
            for r in requests
        ]
        args: list[int | bytes] = [self._keep_s, DAY_TTL_S, MONTH_TTL_S, orjson.dumps(specs)]
        found = orjson.loads(await self._script(keys=list(keys), args=args))
        answers = dict(zip((r.event_id for r in requests), found["answers"], strict=True))
        used = {
            r.currency: (int(d), int(m)) for r, (d, m) in zip(requests, found["used"], strict=True)
        }
        return Reserved(answers, used)

    def _keys(self, request: BudgetRequest, now: datetime) -> list[str | None]:
        """The request's reservation, day and month keys, then the same in the old layout."""
        new = [
            f"{self._tag}:reservation:{request.event_id}",
            f"{self._tag}:budget:{request.currency}:day:{now:%Y-%m-%d}",
            f"{self._tag}:budget:{request.currency}:month:{now:%Y-%m}",
        ]
        old = [key.replace(self._tag, f"{self._ns}:comp", 1) for key in new]
        return [*new, *(old if self._old_keys else [None, None, None])]

    @property
    def _tag(self) -> str:
        return f"{{{self._ns}:comp}}"

    async def _rejected(self, customers: list[str]) -> set[str]:
        """The customers the fraud index remembers as rejected (one pipelined read)."""
        keys = [f"{self._ns}:fraud:rejected:{c}" for c in customers]
        found = await pipelined(self._redis, lambda pipe: [pipe.exists(k) for k in keys])
        return {c for c, n in zip(customers, found, strict=True) if n}

    async def used(self, now: datetime) -> dict[str, tuple[int, int]]:
        """What each configured currency has reserved today and this month (for the gauges)."""
        currencies = sorted(self._caps)
        periods = (f"day:{now:%Y-%m-%d}", f"month:{now:%Y-%m}")
        prefixes = [self._tag, f"{self._ns}:comp"] if self._old_keys else [self._tag]
        keys = [
            f"{p}:budget:{c}:{period}" for c in currencies for period in periods for p in prefixes
        ]
        if not keys:
            return {}
        values = [int(v or 0) for v in await self._redis.mget(keys)]
        width = len(prefixes)
        sums = [sum(values[i : i + width]) for i in range(0, len(values), width)]
        return {c: (sums[2 * i], sums[2 * i + 1]) for i, c in enumerate(currencies)}


def _cap(caps: BudgetCaps | None, period: str) -> int:
    """The cap for the script: -1 for none, 0 (nothing allowed) for an unconfigured currency."""
    if caps is None:
        return 0
    value = caps.day if period == "day" else caps.month
    return -1 if value is None else value
