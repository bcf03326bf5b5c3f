#!/usr/bin/env bash
# One-time (idempotent) set-up of a fresh machine: system packages, the virtualenv, the Kafka jars.
#   REWARDS_SKIP_APT=1  do not try to install system packages
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v promtool >/dev/null || missing+=(prometheus)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v curl >/dev/null || missing+=(curl)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})) && [[ "${REWARDS_SKIP_APT:-0}" != 1 ]]; then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  if command -v apt-get >/dev/null; then
    say "installing system packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "please install: ${missing[*]} (no apt-get here)"
    exit 1
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  say "creating .venv"
  python3 -m venv .venv
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  say "installing the project and its test tools into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
bash deploy/stack.sh jars >/dev/null
say "ready"
