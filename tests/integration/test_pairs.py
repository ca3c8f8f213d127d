"""Isolated primary+replica pairs (pairs.py): each replicates on ports of its own, takes the sandbox's
wave-2 settings (and ``up``'s restart when they changed), and stops cleanly. Also the shared sandbox's
wave-2 settings."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dbrunbook.execution import AuditLog, RunSettings
from dbrunbook.execution.command import Command
from dbrunbook.execution.sql import DbSession
from dbrunbook.inventory import LoadedInventory
from dbrunbook.sandbox import mariadb, postgres
from dbrunbook.sandbox.proc import start_detached, wait_for

from .isolated import wait
from .load import LedgerWriter, Target, compare, drop_database, ensure_database, read_ledger
from .pairs import Pair, stopped
from .test_load_harness import admin_target


def _replicates(pair: Pair, dev: LoadedInventory) -> None:
    sandbox_ports = {h.port for c in dev.inventory.clusters.values() for h in c.hosts.values()}
    assert not {pair.port("primary"), pair.port("replica")} & sandbox_ports
    db = "pair_db"
    primary = ensure_database(pair.primary, db)
    with LedgerWriter(primary, interval=0.01) as writer:
        time.sleep(1.0)
    expected = writer.expected()
    assert len(writer.acknowledged) > 20 and not writer.errors, writer.errors[:3]
    replica = pair.replica.on(db)

    def caught_up() -> bool:
        try:
            return compare(expected, read_ledger(replica)).ok
        except Exception:  # the table has not reached the replica yet
            return False

    started = time.monotonic()
    wait(caught_up, "the replica to have every acknowledged write", 10)
    assert time.monotonic() - started < 5


def test_pg_pair_replicates(pg_pair: Pair, dev: LoadedInventory) -> None:
    assert pg_pair.replica.execute("SELECT pg_is_in_recovery()") == [(True,)]
    _replicates(pg_pair, dev)
    # A standby, not a second primary: it refuses writes.
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        pg_pair.replica.on("pair_db").execute("INSERT INTO dbr_ledger (id, val) VALUES (-1, 'x')")


def test_mariadb_pair_replicates_with_gtid(mariadb_pair: Pair, dev: LoadedInventory) -> None:
    # read_only (the sandbox's admin user has every privilege, so it is not refused a write there)
    assert mariadb_pair.replica.execute("SELECT @@read_only") == [(1,)]
    _replicates(mariadb_pair, dev)
    (gtid,) = mariadb_pair.replica.execute("SELECT @@gtid_slave_pos")[0]
    assert gtid and gtid == mariadb_pair.primary.execute("SELECT @@gtid_binlog_pos")[0][0]


# -- wave-2 settings ------------------------------------------------------------------------------------


def test_shared_sandbox_has_wave2_settings(dev: LoadedInventory) -> None:
    pg = admin_target(dev, "pg-main")
    assert "pg_stat_statements" in pg.execute("SHOW shared_preload_libraries")[0][0]
    db = ensure_database(pg, "dbr_pgss")
    try:
        db.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        assert db.execute("SELECT count(*) FROM pg_stat_statements")[0][0] >= 0
    finally:
        drop_database(pg, "dbr_pgss")
    assert admin_target(dev, "mariadb-main").execute("SELECT @@performance_schema")[0][0] == 1


@contextlib.contextmanager
def _session(target: Target, tmp_path: Path) -> Iterator[DbSession]:
    settings = RunSettings(audit=AuditLog(tmp_path / "audit.jsonl", task="test", env="pair"))
    db = DbSession("pair", settings, target.connect())
    try:
        yield db
    finally:
        db.close()


def _pg_started(target: Target) -> Any:
    return target.execute("SELECT pg_postmaster_start_time()")[0][0]


def test_up_restarts_a_postgresql_server_whose_settings_changed(pg_pair: Pair, tmp_path: Path) -> None:
    p, port = pg_pair, pg_pair.port("primary")
    conf = postgres.data_dir(p.layout, "primary") / postgres.SETTINGS_FILE
    # A server made before wave 2: its settings file has no shared_preload_libraries.
    old = "".join(line for line in conf.read_text().splitlines(True) if "shared_preload" not in line)
    p.server.run(Command(("sh", "-c", 'cat > "$1"', "sh", str(conf)), stdin=old))
    postgres.restart(p.server, p.bindir, "primary", p.layout, port)
    assert p.primary.execute("SHOW shared_preload_libraries") == [("",)]
    before = _pg_started(p.primary)

    def apply() -> str | None:
        return postgres.apply_settings(
            p.server, p.bindir, "primary", p.layout, port, lambda: _session(p.primary, tmp_path)
        )

    assert apply() == "restarted PostgreSQL primary: shared_preload_libraries changed"
    assert p.primary.execute("SHOW shared_preload_libraries") == [("pg_stat_statements",)]
    after = _pg_started(p.primary)
    assert after > before
    assert apply() is None  # nothing changed since: no second restart
    assert _pg_started(p.primary) == after


def test_up_restarts_a_mariadb_server_whose_settings_changed(mariadb_pair: Pair) -> None:
    p, port = mariadb_pair, mariadb_pair.port("primary")
    mariadb.stop(p.server, p.layout, "primary")
    old = tuple(a for a in mariadb.server_argv(p.layout, "primary", port) if "performance-schema" not in a)
    start_detached(p.server, old, p.log("primary"), "start MariaDB primary as before wave 2")
    wait_for(lambda: mariadb.is_running(p.layout, "primary") and _answers(p.primary), "old MariaDB", 60)
    assert p.primary.execute("SELECT @@performance_schema") == [(0,)]

    reason = mariadb.start(p.server, p.layout, "primary", port)
    assert reason == "restarted MariaDB primary: --performance-schema changed"
    assert p.primary.execute("SELECT @@performance_schema") == [(1,)]
    assert mariadb.start(p.server, p.layout, "primary", port) is None


def _answers(target: Target) -> bool:
    try:
        target.execute("SELECT 1")
    except Exception:
        return False
    return True


# -- stopping (last: the module's pairs end here) ----------------------------------------------------------


def test_pg_pair_stops_cleanly(pg_pair: Pair) -> None:
    pg_pair.stop()
    assert stopped(pg_pair)
    states = {
        m: subprocess.run(
            [f"{pg_pair.bindir}/pg_controldata", "-D", str(postgres.data_dir(pg_pair.layout, m))],
            capture_output=True,
            text=True,
            check=True,
            env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"},
        ).stdout
        for m in ("primary", "replica")
    }
    assert "Database cluster state:               shut down\n" in states["primary"]
    assert "Database cluster state:               shut down in recovery\n" in states["replica"]


def test_mariadb_pair_stops_cleanly(mariadb_pair: Pair) -> None:
    mariadb_pair.stop()
    assert stopped(mariadb_pair)
    for member in ("primary", "replica"):
        assert "Shutdown complete" in mariadb_pair.log(member).read_text().rstrip().splitlines()[-1]
