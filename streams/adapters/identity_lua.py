"""The identity index's Redis scripts: a whole batch's reads and writes in one call each.

A pipeline of ~35 commands per sign-up cost ~0.4 ms of Python per sign-up in redis-py (measured:
2.4k events/s on a referral-heavy stream); one script call per batch, with the batch as JSON, moves
that work into Redis. Like the first-seen index, the scripts derive key names from their arguments,
so they need one Redis, not Cluster.
"""

from __future__ import annotations

# ARGV: namespace, ttl_s, velocity_window_s, ring_depth, then a JSON list of specs:
#   {referrer, referee, event_id, at, signals: {kind: hmac}, check: [kind], ring: bool,
#    velocity: [[who, subject]], record: bool}
# Returns JSON: per spec {shared: {kind: last-seen or false}, rejected: [0|1, 0|1],
#   ring: [customer ids of a cycle], velocity: {who: sign-ups in the window}}.
FACTS_SCRIPT = """
local ns, ttl, vwin, depth = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local specs = cjson.decode(ARGV[5])
local function ring(referrer, referee)
  local prefix = ns .. ':ref:by:'
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

# ARGV: namespace, ttl_s, then a JSON list of [customer, at, kind, hmac, event_id], one per signal
# seen, then a JSON list of the kinds that count as late evidence.
# Returns JSON: [[referrer, referee, kind, hmac, event_id], ...] for each party of a referral edge
# of the customer (who referred them, whom they referred) who has shown the same signal.
RECORD_SCRIPT = """
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
    for _, referrer in ipairs(redis.call('SMEMBERS', ns .. ':ref:by:' .. row[1])) do
      if redis.call('ZSCORE', key, referrer) then
        table.insert(found, {referrer, row[1], row[3], row[4], row[5]})
      end
    end
    for _, referee in ipairs(redis.call('SMEMBERS', ns .. ':ref:of:' .. row[1])) do
      if redis.call('ZSCORE', key, referee) then
        table.insert(found, {row[1], referee, row[3], row[4], row[5]})
      end
    end
  end
end
return cjson.encode(found)
"""
