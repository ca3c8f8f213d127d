"""The load harness itself (load.py), on the sandbox's primaries, each test in a database of its own:
the ledger's replay is the table, the probe sees a held lock as a stall, pgbench and sysbench write."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbrunbook.inventory import LoadedInventory, SecretResolver

from .conftest import MARIADB_GROUP
from .load import (
    LatencyProbe,
    LedgerWriter,
    Target,
    compare,
    drop_database,
    drop_load_user,
    ensure_database,
    load_log,
    pgbench,
    read_ledger,
    replay,
    sysbench,
)

DB = "dbr_harness"


def admin_target(dev: LoadedInventory, cluster: str) -> Target:
    c = dev.inventory.clusters[cluster]
    host = next(h for h in c.hosts.values() if h.role == "primary")
    assert c.credentials.password and host.port
    password = SecretResolver(dev.base_dir).resolve(c.credentials.password)
    if c.engine == "postgresql":
        return Target("postgresql", host.port, c.credentials.user, password, "postgres")
    return Target("mariadb", host.port, c.credentials.user, password, "")


@pytest.fixture(params=["postgresql", pytest.param("mariadb", marks=MARIADB_GROUP)])
def target(request: pytest.FixtureRequest, dev: LoadedInventory) -> Iterator[Target]:
    """A database of this test's own on the sandbox primary; MariaDB tests take the MariaDB lock, since
    their writes move the binlog other tests read."""
    if request.param == "mariadb":
        request.getfixturevalue("mariadb_exclusive")
    admin = admin_target(dev, "pg-main" if request.param == "postgresql" else "mariadb-main")
    # A name of its own: the other xdist worker's teardown drops its database WITH (FORCE).
    name = f"{DB}_{uuid.uuid4().hex[:8]}"
    yield ensure_database(admin, name)
    drop_database(admin, name)


def test_ledger_replay_is_the_table_and_a_lost_write_shows(target: Target, tmp_path: Path) -> None:
    log = tmp_path / "ledger.jsonl"
    with LedgerWriter(target, log=log) as writer:
        time.sleep(1.5)
    ops = {e.op for e in writer.acknowledged}
    assert len(writer.acknowledged) > 50 and ops == {"insert", "update", "delete"}, writer.errors[:3]
    assert not writer.in_doubt and not writer.errors
    expected = replay(writer.acknowledged)
    assert replay(load_log(log)) == expected  # the file holds the same acknowledged commits
    diff = compare(expected, read_ledger(target))
    assert diff.ok, diff.lost
    assert diff.checked >= len(expected)
    # A write lost behind the writer's back is caught, and an in-doubt row is not held against the table.
    victim = next(iter(expected))
    target.execute(f"DELETE FROM dbr_ledger WHERE id = {victim}")
    assert compare(expected, read_ledger(target)).lost == {victim: (expected[victim], None)}
    assert compare(expected, read_ledger(target), in_doubt={victim}).ok


def _hold_lock(target: Target, seconds: float) -> None:
    with contextlib.closing(target.connect(autocommit=target.engine == "mariadb")) as conn, conn.cursor() as cur:
        if target.engine == "postgresql":
            cur.execute("LOCK TABLE probed IN ACCESS EXCLUSIVE MODE")
            time.sleep(seconds)
            conn.commit()
        else:
            cur.execute("LOCK TABLES probed WRITE")
            time.sleep(seconds)
            cur.execute("UNLOCK TABLES")


@pytest.mark.parametrize("update", [False, True], ids=["select", "update"])
def test_probe_reports_a_held_lock_as_a_stall(target: Target, update: bool) -> None:
    target.execute("CREATE TABLE probed (id int PRIMARY KEY, n int NOT NULL)", "INSERT INTO probed VALUES (1, 0)")
    with LatencyProbe(target, "probed", update=update) as probe:
        time.sleep(1.0)
    calm = probe.report()
    assert calm.statements > 50 and calm.errors == 0, calm.error_samples
    assert calm.longest_stall_ms < 450 and calm.p50_ms < 50

    with LatencyProbe(target, "probed", update=update) as probe:
        time.sleep(0.3)
        locker = threading.Thread(target=_hold_lock, args=(target, 0.6))
        locker.start()
        locker.join()
        time.sleep(0.3)
    stalled = probe.report()
    assert stalled.errors == 0, stalled.error_samples
    assert 550 <= stalled.longest_stall_ms < 5000
    assert stalled.max_ms >= 500  # the one statement that waited for the lock
    if update:
        (n,) = target.execute("SELECT n FROM probed")[0]
        assert n == 0  # the UPDATE rewrites the row without changing it


def test_pgbench_runs_out_and_stops(dev: LoadedInventory, tmp_path: Path) -> None:
    admin = admin_target(dev, "pg-main")
    db = ensure_database(admin, "dbr_pgbench")
    bindir = dev.inventory.clusters["pg-main"].hosts["pg-main-1"].bin_dir or ""
    try:
        done = pgbench(db, tmp_path, seconds=2, rate=40, bindir=bindir).start().wait(30)
        assert done.completed and done.errors == 0, done.output[-500:]
        assert 20 <= done.transactions <= 200
        load = pgbench(db, tmp_path, seconds=60, rate=40, bindir=bindir).start()
        time.sleep(1.5)
        cut = load.stop()
        assert not cut.completed and cut.seconds < 10
        assert cut.transactions > 10, cut.output[-500:]
    finally:
        drop_database(admin, "dbr_pgbench")


def test_sysbench_runs_out_and_stops(dev: LoadedInventory, tmp_path: Path, mariadb_exclusive: None) -> None:
    admin = admin_target(dev, "mariadb-main").on("dbr_sysbench")
    try:
        done = sysbench(admin, tmp_path, seconds=2, rate=40).start().wait(30)
        assert done.completed and done.errors == 0, done.output[-500:]
        assert 20 <= done.transactions <= 200
        # The password went through the 0600 config file, never argv.
        assert oct((tmp_path / "sysbench.cfg").stat().st_mode & 0o777) == "0o600"
        load = sysbench(admin, tmp_path, seconds=60, rate=40).start()
        time.sleep(2.5)
        cut = load.stop()
        assert not cut.completed and cut.seconds < 10
        assert cut.transactions > 10, cut.output[-500:]
        assert cut.errors == 0
    finally:
        drop_database(admin, "dbr_sysbench")
        drop_load_user(admin)
