"""The identity index's Redis script: one row per key, run in order; one call per hash slot.

Each row reads and writes only its own key (declared in KEYS), and `SlotScript` sends one call
per hash slot (one call in all on a single Redis), so it runs on one Redis and on a Redis Cluster
alike. A key may come in several rows: its rows run in their order (they are in one call), so a
row sees what the key's earlier rows wrote. `Calls` gathers a round's rows; rows are flat lists,
not objects: a batch has thousands, and each costs the Python side once.
"""

from __future__ import annotations

from typing import Any

from streams.adapters.redis_client import SlotScript

# ARGV: ttl_s, velocity_window_s, then a JSON list with one row per KEY, an opcode first:
#   [1, score, member, partner, ...]  the partners' ZSCOREs, then ZADD GT score member, EXPIRE ttl
#   [2, member, ...]                  SADD, EXPIRE ttl                              -> 0
#   [3]                               SMEMBERS                                      -> members
#   [4]                               EXISTS                                        -> 0 or 1
#   [5, at, event id]                 ZADD, trim to twice the window, EXPIRE, ZCOUNT the window
#   [6, partner, ...]                 the partners' ZSCOREs                         -> scores
#   [7, n, partner * n, score, member, ...]  the n partners' ZSCOREs, then ZADD GT every pair
#                                     and EXPIRE ttl                                -> scores
#   [8, limit, score, member, ...]    ZCARD <= limit: its members (before), then ZADD GT every
#                                     pair, EXPIRE ttl; else nothing   -> members, or nil if larger
# Scores reply as strings, nil where absent.
ROWS_SCRIPT = """
local ttl, vwin = tonumber(ARGV[1]), tonumber(ARGV[2])
local rows = cjson.decode(ARGV[3])
local out = {}
local function scores(key, row, from, to)
  local reply = {}
  for j = from, to do reply[j - from + 1] = redis.call('ZSCORE', key, row[j]) end
  return reply
end
for i, key in ipairs(KEYS) do
  local row = rows[i]
  local op = row[1]
  if op == 1 then
    out[i] = scores(key, row, 4, #row)
    redis.call('ZADD', key, 'GT', row[2], row[3])
    redis.call('EXPIRE', key, ttl)
  elseif op == 2 then
    for j = 2, #row, 500 do redis.call('SADD', key, unpack(row, j, math.min(j + 499, #row))) end
    redis.call('EXPIRE', key, ttl)
    out[i] = 0
  elseif op == 3 then
    out[i] = redis.call('SMEMBERS', key)
  elseif op == 4 then
    out[i] = redis.call('EXISTS', key)
  elseif op == 5 then
    local at = row[2]
    redis.call('ZADD', key, at, row[3])
    redis.call('ZREMRANGEBYSCORE', key, '-inf', at - 2 * vwin)
    redis.call('EXPIRE', key, 2 * vwin + 60)
    out[i] = redis.call('ZCOUNT', key, at - vwin, at)
  elseif op == 6 then
    out[i] = scores(key, row, 2, #row)
  else
    local from = 3
    if op == 7 then
      from = 3 + row[2]
      out[i] = scores(key, row, 3, from - 1)
    else
      local held = redis.call('ZRANGE', key, 0, row[2])
      if #held <= row[2] then
        out[i] = held
      else
        out[i] = false
        from = #row + 1
      end
    end
    for j = from, #row, 1000 do
      redis.call('ZADD', key, 'GT', unpack(row, j, math.min(j + 999, #row)))
    end
    if from <= #row then redis.call('EXPIRE', key, ttl) end
  end
end
return out
"""
SCORE_AND_ADD, ADD, MEMBERS, EXISTS, VELOCITY, SCORES = 1, 2, 3, 4, 5, 6
SCORES_AND_ADD_ALL, MEMBERS_AND_ADD_ALL = 7, 8


class Calls:
    """One round's rows, one per key, in order; `send` runs them and returns their replies."""

    __slots__ = ("_args", "_head", "_keys", "_script")

    def __init__(self, script: SlotScript, head: tuple[int, int]) -> None:
        self._script, self._head = script, head
        self._keys: list[bytes] = []
        self._args: list[tuple[Any, ...]] = []

    def row(self, key: str, *args: Any) -> int:
        """Queue a row (an opcode and its arguments) on `key`; its index in the replies."""
        # Keys as bytes: redis-py packs them at a third of the cost of str.
        self._keys.append(key.encode())
        self._args.append(args)
        return len(self._keys) - 1

    async def send(self) -> list[Any]:
        """Run the round: one call per hash slot (none for no rows)."""
        if not self._keys:
            return []
        return await self._script.call(self._keys, self._head, self._args)


def members(reply: list[bytes | str]) -> set[str]:
    """A MEMBERS row's reply as a set of str."""
    return {m.decode() if isinstance(m, bytes) else m for m in reply}
