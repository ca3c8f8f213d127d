#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, lint, types, then unit and integration tests
# (the integration tests start the real sandbox servers themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/pytest -n 2 "$@"
