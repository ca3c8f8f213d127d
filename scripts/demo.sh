#!/usr/bin/env bash
# The main job on the built-in sandbox: start it, check every host, back up (full, then incremental),
# prove the newest backup reads back, check the WAL archive, and list the catalog.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/invoke sandbox.up
.venv/bin/invoke inventory.check --env=dev
.venv/bin/invoke hosts.setup --env=dev --cluster=pg-main
.venv/bin/invoke archive.setup --env=dev --cluster=pg-main --yes
# Every sandbox cluster whose engine has backups today (PostgreSQL; MariaDB is reported as skipped).
.venv/bin/invoke backup.full --env=dev
.venv/bin/invoke backup.incremental --env=dev --cluster=pg-main
.venv/bin/invoke backup.verify --env=dev --cluster=pg-main
.venv/bin/invoke wal.check --env=dev --cluster=pg-main
.venv/bin/invoke backup.list --env=dev
