#!/usr/bin/env bash
# Chaos soak on a throwaway stack: three KRaft brokers (RF 3, min.insync 2) and Redis on free
# ports in a temporary directory, `rewards chaos` against it, then the stack torn down.
# Exit status: 0 only on a PASS verdict.
#
#   deploy/chaos.sh [--redis-cluster] [rewards chaos options]
#                                   e.g. deploy/chaos.sh --events 20000 --json v.json
# --redis-cluster: Redis is a 3-primary, 3-replica Redis Cluster, and the Redis fault is a primary
# killed (SIGKILL; its replica takes over) instead of redis-server stopped.
#
# The workers' data directories and logs stay in the directory `rewards chaos` prints.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PYTHON="$REPO/.venv/bin/python"

free_ports() { # a base port below the ephemeral range with $1 bindable ports from it on
  (cd "$REPO" && "$PYTHON" -c \
    "import sys; from streams.chaos.stack import free_port_range as f; print(f(int(sys.argv[1])))" "$1")
}

REWARDS_STACK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/rewards-chaos-stack.XXXXXX")"
REWARDS_KAFKA_PORT="$(free_ports 6)"
REWARDS_REDIS_PORT="$(free_ports 1)"
export REWARDS_STACK_DIR REWARDS_KAFKA_PORT REWARDS_REDIS_PORT
redis=()
if [[ "${1:-}" == --redis-cluster ]]; then
  shift
  redis=(--redis-cluster)
  REWARDS_REDIS_CLUSTER_PORT="$(free_ports 6)"
  export REWARDS_REDIS_CLUSTER_PORT REWARDS_CHAOS_REDIS=cluster
fi
trap 'bash "$HERE/stack.sh" down --purge || true' EXIT

bash "$HERE/stack.sh" up --brokers 3 "${redis[@]}"
eval "$(bash "$HERE/stack.sh" env)"
export KAFKA_BOOTSTRAP_SERVERS REDIS_URL

status=0  # this checkout's code and deploy/stack.sh, for the soak and the workers it starts
export REWARDS_CHECKOUT="$REPO"
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m streams.cli chaos "$@" || status=$?
exit "$status"
