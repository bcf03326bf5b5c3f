#!/usr/bin/env bash
# The README's first command: set everything up, start Kafka + Redis + the worker, publish demo traffic.
#   deploy/demo.sh [EVENTS [RATE]]   default 5000 events at 1000/s
#   deploy/demo.sh stop              stop the worker and the local stack
# With a Docker engine, `docker compose up` runs the same demo (see README); this script needs none.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STATE="${REWARDS_STACK_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/rewards-stack}"
PORT="${REWARDS_WEB_PORT:-6066}"
say() { printf '\033[1m[demo]\033[0m %s\n' "$*" >&2; }

SANDBOX_PORT="${REWARDS_SANDBOX_PORT:-18080}"

stop_pid() { # $1 name
  if [[ -f "$STATE/$1.pid" ]] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; then
    kill "$(cat "$STATE/$1.pid")"; say "$1 stopped"
  fi
  rm -f "$STATE/$1.pid"
}

if [[ "${1:-}" == stop ]]; then
  stop_pid worker
  stop_pid giftcard-sandbox
  bash deploy/stack.sh down
  exit 0
fi
EVENTS="${1:-5000}"
RATE="${2:-1000}"

if [[ "${REWARDS_DEMO_DOCKER:-auto}" != no ]] && docker info >/dev/null 2>&1 &&
  docker compose version >/dev/null 2>&1; then
  say "Docker engine found: running the stack with docker compose (REWARDS_DEMO_DOCKER=no to skip)"
  docker compose up --build -d
  docker compose run --rm demo rewards demo --events "$EVENTS" --rate "$RATE" --seed "$(date +%s)"
  docker compose exec worker rewards status
  echo "Grafana: http://localhost:3000 (dashboards 'Rewards & advocacy', 'Rewards pipeline'); stop: docker compose down -v"
  exit 0
fi

bash deploy/setup.sh
bash deploy/stack.sh up
eval "$(bash deploy/stack.sh env)"
export PATH="$ROOT/.venv/bin:$PATH" REWARDS_WEB_PORT="$PORT"
export REWARDS_DATA_DIR="${REWARDS_DATA_DIR:-$STATE/worker-data}"
mkdir -p "$STATE"
# The HMAC key for emails, IPs, addresses and card fingerprints: one per demo stack, kept with it.
[[ -s "$STATE/pii-hash-key" ]] || (umask 077 && head -c 32 /dev/urandom | base64 >"$STATE/pii-hash-key")
export REWARDS_PII_HASH_KEY="${REWARDS_PII_HASH_KEY:-$(cat "$STATE/pii-hash-key")}"
# The gift-card provider: the sandbox in this repo, with an API key of its own (never logged).
[[ -s "$STATE/gift-card-api-key" ]] || (umask 077 && echo "sk_demo_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$STATE/gift-card-api-key")
export REWARDS_GIFT_CARD_API_KEY="${REWARDS_GIFT_CARD_API_KEY:-$(cat "$STATE/gift-card-api-key")}"
export REWARDS_GIFT_CARD_PROVIDER_URL="${REWARDS_GIFT_CARD_PROVIDER_URL:-http://127.0.0.1:$SANDBOX_PORT}"
# Loyalty tiers, and a points lifetime of one day (demo only: a back-dated purchase below expires).
DEMO_TIERS='[{"name":"silver","threshold":15000,"multiplier_percent":125},{"name":"gold","threshold":50000,"multiplier_percent":150}]'
DEMO_EXPIRY='{"lifetime":"P1D","warning":"PT1H"}'
export REWARDS_TIERS="${REWARDS_TIERS:-$DEMO_TIERS}" REWARDS_POINTS_EXPIRY="${REWARDS_POINTS_EXPIRY:-$DEMO_EXPIRY}"
rewards topics >/dev/null

mkdir -p "$STATE"
if [[ -f "$STATE/giftcard-sandbox.pid" ]] && kill -0 "$(cat "$STATE/giftcard-sandbox.pid")" 2>/dev/null; then
  say "gift-card sandbox already running (pid $(cat "$STATE/giftcard-sandbox.pid"))"
else
  nohup rewards sandbox-provider --port "$SANDBOX_PORT" >"$STATE/giftcard-sandbox.log" 2>&1 &
  echo $! >"$STATE/giftcard-sandbox.pid"
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$SANDBOX_PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  say "gift-card sandbox on http://127.0.0.1:$SANDBOX_PORT (orders: curl http://127.0.0.1:$SANDBOX_PORT/sandbox/orders)"
fi

mkdir -p "$STATE"
if [[ -f "$STATE/worker.pid" ]] && kill -0 "$(cat "$STATE/worker.pid")" 2>/dev/null; then
  say "worker already running (pid $(cat "$STATE/worker.pid"))"
else
  nohup rewards worker >"$STATE/worker.log" 2>&1 &
  echo $! >"$STATE/worker.pid"
  say "worker starting (pid $!, log $STATE/worker.log)"
  for _ in $(seq 1 240); do
    curl -fs "http://127.0.0.1:$PORT/metrics" >/dev/null 2>&1 && break
    kill -0 "$(cat "$STATE/worker.pid")" 2>/dev/null || { tail -n 30 "$STATE/worker.log"; exit 1; }
    sleep 0.5
  done
fi

CONSUMED_BEFORE=$(curl -fs "http://127.0.0.1:$PORT/metrics" |
  awk '/^rewards_events_consumed_total\{/ {s += $2} END {printf "%d", s}')
say "publishing $EVENTS simulated shop events at $RATE/s"
rewards demo --events "$EVENTS" --rate "$RATE" --seed "${DEMO_SEED:-$(date +%s)}"
say "waiting for the worker to catch up"
before="${CONSUMED_BEFORE:-0}"
for _ in $(seq 1 120); do
  consumed=$(curl -fs "http://127.0.0.1:$PORT/metrics" |
    awk '/^rewards_events_consumed_total\{/ {s += $2} END {printf "%d", s}')
  ((consumed - before >= EVENTS)) && break
  sleep 1
done
say "points expiry: a purchase whose 14-day hold ended a day ago less 5 s (cust-expiry-demo)"
EXPIRING="$STATE/expiring-purchase.jsonl"
python3 - >"$EXPIRING" <<'PY'
import json, uuid
from datetime import UTC, datetime, timedelta
at = datetime.now(UTC) - timedelta(days=15, seconds=-5)
print(json.dumps({"event_id": str(uuid.uuid4()), "occurred_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "customer_id": "cust-expiry-demo", "type": "purchase",
                  "order_id": f"ord-{uuid.uuid4()}", "amount_cents": 4200, "currency": "EUR"}))
PY
rewards publish --topic purchases "$EXPIRING" >/dev/null
sleep 8
curl -fs "http://127.0.0.1:$PORT/points/cust-expiry-demo" && echo
curl -fs "http://127.0.0.1:$PORT/metrics" |
  grep -E '^rewards_tier_customers|^rewards_points_ledger_entries_total\{kind="expiry"' || true
rewards status
echo
say "dead-letter topic, by reason:"
rewards dead-letters
cat <<MSG

The worker keeps running: metrics at http://127.0.0.1:$PORT/metrics, log at $STATE/worker.log.
A customer's points:      curl http://127.0.0.1:$PORT/points/cust-00001
Gift cards ordered:       curl http://127.0.0.1:$SANDBOX_PORT/sandbox/orders
Publish your own events:  .venv/bin/rewards publish --topic purchases my-events.jsonl
Stop everything:          bash deploy/demo.sh stop
MSG
