#!/usr/bin/env bash
# The main job on the built-in sandbox: start it, then check every host of the dev inventory.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/invoke sandbox.up
.venv/bin/invoke inventory.check --env=dev
