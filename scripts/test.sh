#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, lint, types, then unit and integration tests
# (the integration tests start the real sandbox servers themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

# Start the sandbox's servers (some 10 s from nothing) while lint, types and the unit tiers run, unless the
# arguments name only test paths outside tests/integration. The tests' own sandbox.up is idempotent and takes
# the same lock, so it waits for this one and then finds everything up; if this one fails, that one reports why.
named=0 integration=0
for arg in "$@"; do
  case $arg in
    tests/integration*) named=1 integration=1 ;;
    tests/*) named=1 ;;
  esac
done
if ((!named || integration)); then
  .venv/bin/invoke sandbox.up >/dev/null 2>&1 &
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/pytest -n 2 "$@"
