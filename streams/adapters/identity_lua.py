"""The identity index's Redis script: per key, its reads then its writes; one call per hash slot.

Each row of a call reads and writes only its own key (declared in KEYS), and `SlotScript` sends one
call per hash slot (one call in all on a single Redis), so it runs on one Redis and on a Redis
Cluster alike. `Rows` gathers a round's rows by key; `Got` reads the replies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streams.adapters.redis_client import SlotScript

# KEYS: keys of one hash slot. ARGV: ttl_s, velocity_window_s, then a JSON list of one object
# per key. Reads: `score` [member]: their ZSCOREs; `exists`: EXISTS; `members`: SMEMBERS;
# `velocity` [at, event id, ...]: each in turn ZADD, trim to twice the window, EXPIRE, ZCOUNT the
# window. Then writes: `zadd` [score, member, ...] ZADD GT, `sadd` [member] SADD, each followed
# by EXPIRE ttl_s. Returns, per key, its read's reply (0 for writes only).
STEPS_SCRIPT = """
local ttl, vwin = tonumber(ARGV[1]), tonumber(ARGV[2])
local rows = cjson.decode(ARGV[3])
local function write(cmd, key, flag, list)
  for j = 1, #list, 500 do
    local last = math.min(j + 499, #list)
    if flag then redis.call(cmd, key, flag, unpack(list, j, last))
    else redis.call(cmd, key, unpack(list, j, last)) end
  end
  redis.call('EXPIRE', key, ttl)
end
local out = {}
for i, key in ipairs(KEYS) do
  local row, reply = rows[i], 0
  if row.score then
    reply = {}
    for j, member in ipairs(row.score) do reply[j] = redis.call('ZSCORE', key, member) end
  elseif row.exists then
    reply = redis.call('EXISTS', key)
  elseif row.members then
    reply = redis.call('SMEMBERS', key)
  elseif row.velocity then
    reply = {}
    for j = 1, #row.velocity, 2 do
      local at = row.velocity[j]
      redis.call('ZADD', key, at, row.velocity[j + 1])
      redis.call('ZREMRANGEBYSCORE', key, '-inf', at - 2 * vwin)
      redis.call('EXPIRE', key, 2 * vwin + 60)
      table.insert(reply, redis.call('ZCOUNT', key, at - vwin, at))
    end
  end
  if row.zadd then write('ZADD', key, 'GT', row.zadd) end
  if row.sadd then write('SADD', key, nil, row.sadd) end
  out[i] = reply
end
return out
"""


# The purchases' signals, one row per KEY (a key may come more than once; a key's rows run in
# order). ARGV: ttl_s, then a JSON list of rows: [1, score, member, partner, ...]: the
# partners' ZSCOREs, then ZADD GT score member and EXPIRE; [2, member, ...]: SADD and EXPIRE;
# [3]: SMEMBERS. Returns, per key, the partners' scores (nil: absent), 0, or the members.
RECORD_SCRIPT = """
local ttl = tonumber(ARGV[1])
local rows = cjson.decode(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  local row = rows[i]
  local op = row[1]
  if op == 1 then
    local reply = {}
    for j = 4, #row do reply[j - 3] = redis.call('ZSCORE', key, row[j]) end
    redis.call('ZADD', key, 'GT', row[2], row[3])
    redis.call('EXPIRE', key, ttl)
    out[i] = reply
  elseif op == 2 then
    for j = 2, #row, 500 do redis.call('SADD', key, unpack(row, j, math.min(j + 499, #row))) end
    redis.call('EXPIRE', key, ttl)
    out[i] = 0
  else
    out[i] = redis.call('SMEMBERS', key)
  end
end
return out
"""


class Rows:
    """One round's calls, one row per key (the script's JSON): what to read, then what to write.
    A member may come twice: SADD keeps one, ZADD GT the highest score, ZSCOREs answer alike."""

    def __init__(self, script: SlotScript, head: Sequence[int]) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self._script, self._head = script, head

    def read(self, key: str, op: str) -> None:
        """`exists` or `members` (SMEMBERS)."""
        self.rows.setdefault(key, {})[op] = 1

    def add(self, key: str, op: str, *items: str | int) -> int:
        """Items for `score` (a member), `zadd` (score, member), `sadd` (a member) or `velocity`
        (time, event id); the row's length after."""
        row = self.rows.get(key)
        if row is None:
            self.rows[key] = {op: list(items)}
            return len(items)
        found = row.get(op)
        if found is None:
            found = row[op] = []
        found.extend(items)
        return len(found)

    async def send(self) -> Got:
        """Run the round: one call per hash slot (none for no rows)."""
        if not self.rows:
            return Got({}, {})
        # Keys as bytes: redis-py packs them at a third of the cost of str (it encodes each
        # argument in Python, and a round has thousands); SlotScript and redis-py take bytes.
        keys = [key.encode() for key in self.rows]
        replies = await self._script.call(keys, self._head, list(self.rows.values()))
        return Got(self.rows, dict(zip(self.rows, replies, strict=True)))


class Got:
    """A round's replies by key, read where needed: a `score` row's scores, a `members` row's
    set, else the reply as it came (EXISTS, the velocity counts in order, 0 for writes)."""

    __slots__ = ("_scores", "raw", "rows")

    def __init__(self, rows: dict[str, dict[str, Any]], raw: dict[str, Any]) -> None:
        self.rows, self.raw = rows, raw
        self._scores: dict[str, dict[str, bytes | None]] = {}

    def scores(self, key: str) -> dict[str, bytes | None]:
        """A `score` row's members -> their scores before the round's writes (None: absent)."""
        scores = self._scores.get(key)
        if scores is None:
            members = self.rows[key]["score"]
            scores = self._scores[key] = dict(zip(members, self.raw[key], strict=True))
        return scores

    def score(self, key: str, member: str) -> float | None:
        """The member's score in the key before the round's writes (None: not a member)."""
        found = self.scores(key)[member]
        return None if found is None else float(found)

    def members(self, key: str) -> set[str]:
        """The set before the round's writes."""
        return {m.decode() if isinstance(m, bytes) else m for m in self.raw[key]}
