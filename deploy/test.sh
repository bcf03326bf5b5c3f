#!/usr/bin/env bash
# The whole test suite: lint, types, unit tests and integration tests against real Kafka and Redis.
# Extra arguments go to pytest (e.g. deploy/test.sh -k dead_letter). The tests marked `redis` then
# run a second time against a Redis Cluster (`deploy/stack.sh up --redis-cluster`, or the cluster
# at REWARDS_TEST_REDIS_CLUSTER_URL); REWARDS_TEST_REDIS=single skips that pass.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash deploy/setup.sh
export PATH="$ROOT/.venv/bin:$PATH"
echo "[test] ruff" && ruff check . && ruff format --check .
echo "[test] mypy (strict)" && mypy
echo "[test] pytest"
pytest "$@"
[[ "${REWARDS_TEST_REDIS:-}" == single ]] && exit 0
echo "[test] pytest -m redis, against a Redis Cluster"
if [[ -n "${REWARDS_TEST_REDIS_CLUSTER_URL:-}" ]]; then
  export REDIS_URL="$REWARDS_TEST_REDIS_CLUSTER_URL"
else
  unset REDIS_URL KAFKA_BOOTSTRAP_SERVERS  # the cluster stack brings its own broker
fi
status=0
REWARDS_TEST_REDIS=cluster pytest -m redis "$@" || status=$?
((status == 5)) && status=0  # the arguments selected no test marked redis
exit "$status"
