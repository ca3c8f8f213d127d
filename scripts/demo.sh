#!/usr/bin/env bash
# The main job on the built-in sandbox: start it, check every host, back up both clusters (full, then
# incremental), archive the MariaDB binlogs, prove the newest backups read back, check the WAL and binlog
# archives, list the catalog, and end with a restore drill of each cluster (and its report).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/invoke sandbox.up
.venv/bin/invoke inventory.check --env=dev
.venv/bin/invoke hosts.setup --env=dev
.venv/bin/invoke archive.setup --env=dev --cluster=pg-main --yes
# Every sandbox cluster: PostgreSQL physical (its default), MariaDB logical (its default).
.venv/bin/invoke backup.full --env=dev
.venv/bin/invoke backup.full --env=dev --cluster=mariadb-main --kind=physical
.venv/bin/invoke backup.incremental --env=dev
.venv/bin/invoke binlog.sync --env=dev --cluster=mariadb-main
.venv/bin/invoke backup.verify --env=dev --cluster=pg-main
.venv/bin/invoke backup.verify --env=dev --cluster=mariadb-main
.venv/bin/invoke wal.check --env=dev --cluster=pg-main
.venv/bin/invoke binlog.check --env=dev --cluster=mariadb-main
.venv/bin/invoke backup.list --env=dev
# Prove it: restore each cluster into a disposable server, check every table, measure RTO and RPO.
.venv/bin/invoke drill.run --env=dev --cluster=pg-main
.venv/bin/invoke drill.run --env=dev --cluster=mariadb-main
# The newest MariaDB backup is physical; the logical one is drilled too: its row counts are checked.
.venv/bin/invoke drill.run --env=dev --cluster=mariadb-main --kind=logical
.venv/bin/invoke drill.report --env=dev --out=.sandbox/drill-report.html
