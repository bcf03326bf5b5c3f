"""The compensation budget in Redis: per currency, day and month, reserved atomically.

Key layout (single Redis, like the first-seen index; all keys expire):

- `<app>:comp:budget:<currency>:day:<YYYY-MM-DD>`  integer: minor units reserved that UTC day
- `<app>:comp:budget:<currency>:month:<YYYY-MM>`   integer: minor units reserved that UTC month
- `<app>:comp:reservation:<complaint event id>`    the answer given for that complaint event

One script call per batch checks and reserves every request in turn, so no two workers can both
take the last of a budget. The answer per complaint event is remembered: a redelivered complaint
gets the same answer and never reserves twice. A customer the fraud index remembers as rejected
(`<app>:fraud:rejected:<customer>`) reserves nothing (`fraud_rejected`). Days and months are the
worker clock's UTC calendar.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson
from redis.asyncio import Redis

from processors.compensation import BudgetRequest
from streams.adapters.redis_retry import RedisRetry
from streams.settings import BudgetCaps

RESERVE_SCRIPT = """
local ns, day, month = ARGV[1], ARGV[2], ARGV[3]
local keep, day_ttl, month_ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local requests = cjson.decode(ARGV[7])
local answers, used = {}, {}
for i, r in ipairs(requests) do
  local reservation = ns .. ':comp:reservation:' .. r.event_id
  local answer = redis.call('GET', reservation)
  local day_key = ns .. ':comp:budget:' .. r.currency .. ':day:' .. day
  local month_key = ns .. ':comp:budget:' .. r.currency .. ':month:' .. month
  if not answer then
    local day_used = tonumber(redis.call('GET', day_key) or '0')
    local month_used = tonumber(redis.call('GET', month_key) or '0')
    if redis.call('EXISTS', ns .. ':fraud:rejected:' .. r.customer_id) == 1 then
      answer = 'fraud_rejected'
    elseif r.day_cap >= 0 and day_used + r.amount > r.day_cap then
      answer = 'budget_day'
    elseif r.month_cap >= 0 and month_used + r.amount > r.month_cap then
      answer = 'budget_month'
    else
      redis.call('INCRBY', day_key, r.amount)
      redis.call('EXPIRE', day_key, day_ttl)
      redis.call('INCRBY', month_key, r.amount)
      redis.call('EXPIRE', month_key, month_ttl)
      answer = 'granted'
    end
    redis.call('SET', reservation, answer, 'EX', keep)
  end
  answers[i] = answer
  used[r.currency] = {tonumber(redis.call('GET', day_key) or '0'),
                      tonumber(redis.call('GET', month_key) or '0')}
end
return cjson.encode({answers = answers, used = used})
"""

KEEP_ANSWERS_S = 400 * 86_400  # longer than any redelivery or replay of a complaint
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
        self, redis: Redis, *, namespace: str, caps: Mapping[str, BudgetCaps], retry: RedisRetry
    ) -> None:
        self._redis = redis
        self._ns = namespace
        self._caps = dict(caps)
        self._retry = retry
        self._script = redis.register_script(RESERVE_SCRIPT)

    @property
    def caps(self) -> dict[str, BudgetCaps]:
        """The configured caps by currency."""
        return dict(self._caps)

    async def reserve(self, requests: Sequence[BudgetRequest], now: datetime) -> Reserved:
        """Reserve each request in order; a currency without caps configured is never granted."""
        if not requests:
            return Reserved({}, {})
        specs = [
            {
                "event_id": r.event_id,
                "customer_id": r.customer_id,
                "currency": r.currency,
                "amount": r.amount_cents,
                "day_cap": _cap(self._caps.get(r.currency), "day"),
                "month_cap": _cap(self._caps.get(r.currency), "month"),
            }
            for r in requests
        ]
        args: list[str | int | bytes] = [
            self._ns, f"{now:%Y-%m-%d}", f"{now:%Y-%m}", KEEP_ANSWERS_S, DAY_TTL_S, MONTH_TTL_S,
            orjson.dumps(specs),
        ]  # fmt: skip
        reply = await self._retry.call(lambda: self._script(args=args))
        found = orjson.loads(reply)
        answers = dict(zip((r.event_id for r in requests), found["answers"], strict=True))
        used = {c: (int(d), int(m)) for c, (d, m) in found["used"].items()}
        return Reserved(answers, used)

    async def used(self, now: datetime) -> dict[str, tuple[int, int]]:
        """What each configured currency has reserved today and this month (for the gauges)."""
        currencies = sorted(self._caps)
        keys = [
            f"{self._ns}:comp:budget:{c}:{period}"
            for c in currencies
            for period in (f"day:{now:%Y-%m-%d}", f"month:{now:%Y-%m}")
        ]
        if not keys:
            return {}
        values = [int(v or 0) for v in await self._redis.mget(keys)]
        return {c: (values[2 * i], values[2 * i + 1]) for i, c in enumerate(currencies)}


def _cap(caps: BudgetCaps | None, period: str) -> int:
    """The cap for the script: -1 for none, 0 (nothing allowed) for an unconfigured currency."""
    if caps is None:
        return 0
    value = caps.day if period == "day" else caps.month
    return -1 if value is None else value
