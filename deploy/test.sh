#!/usr/bin/env bash
# The whole test suite: lint, types, unit tests and integration tests against real Kafka and Redis.
# Extra arguments go to pytest (e.g. deploy/test.sh -k dead_letter).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash deploy/setup.sh
export PATH="$ROOT/.venv/bin:$PATH"
echo "[test] ruff" && ruff check . && ruff format --check .
echo "[test] mypy (strict)" && mypy
echo "[test] pytest"
exec pytest "$@"
