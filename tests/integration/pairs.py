"""Isolated primary+replica pairs of a test's own: a PostgreSQL primary with a streaming replica
(``pg_basebackup -R`` and a slot) and a MariaDB primary with a GTID replica, built from the sandbox's own
modules under a layout of their own, so that promote, rewind and fault tests never touch the shared
sandbox. Servers run as the sandbox OS user when we are root, like the sandbox's.

Ports: the sandbox's, shifted by ``base`` + DBRUNBOOK_SANDBOX_PORT_OFFSET + 100 per xdist worker. Bases in
use here: -5600 (PostgreSQL pairs) and -5200 (MariaDB pairs); see isolated.py for the others. The logins
are the shared sandbox's (its password files), so a pair needs the sandbox made, not running.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dbrunbook.execution import AuditLog, LocalExecutor, RunSettings
from dbrunbook.execution.command import SqlStatement
from dbrunbook.inventory import LoadedInventory
from dbrunbook.redact import Secret
from dbrunbook.sandbox import mariadb, postgres
from dbrunbook.sandbox.layout import SANDBOX_USER, Layout
from dbrunbook.sandbox.proc import port_open

from .isolated import wait
from .load import Engine, Target

PG_PAIR_BASE = -5600
MARIADB_PAIR_BASE = -5200
OFFSET = int(os.environ.get("DBRUNBOOK_SANDBOX_PORT_OFFSET", "0"))
MEMBERS = ("primary", "replica")


@dataclass
class Pair:
    engine: Engine
    layout: Layout
    server: LocalExecutor
    primary: Target
    replica: Target
    bindir: str
    keys: dict[str, Secret]

    def port(self, member: str) -> int:
        prefix = "pg" if self.engine == "postgresql" else "mariadb"
        return self.layout.port(f"{prefix}-{member}")

    def is_running(self, member: str) -> bool:
        if self.engine == "postgresql":
            return postgres.is_running(self.server, self.bindir, member, self.layout)
        return mariadb.is_running(self.layout, member)

    def stop(self) -> None:
        """Replica first, then primary: each waits for its server to exit (PostgreSQL with a fast shutdown)."""
        for member in reversed(MEMBERS):
            if self.engine == "postgresql":
                postgres.stop(self.server, self.bindir, member, self.layout)
            else:
                mariadb.stop(self.server, self.layout, member)

    def log(self, member: str) -> Path:
        return self.layout.logs / f"{'pg' if self.engine == 'postgresql' else 'mariadb'}-{member}.log"


def pair_layout(name: str, base: int, worker_id: str) -> Layout:
    offset = base + OFFSET + 100 * (int(worker_id[2:]) if worker_id.startswith("gw") else 0)
    as_root = os.geteuid() == 0
    root = Path(f"/var/tmp/dbrunbook-{name}-{offset}")
    return Layout(root, SANDBOX_USER if as_root else getpass.getuser(), offset)


def sandbox_keys(dev: LoadedInventory) -> dict[str, Secret]:
    secrets = Path(str(dev.inventory.clusters["pg-main"].credentials.password).removeprefix("file:")).parent
    names = ("pg-admin.password", "pg-replication.password", "mariadb-admin.password", "mariadb-replication.password")
    return {n: Secret((secrets / n).read_text().strip()) for n in names}


@contextlib.contextmanager
def _built(
    engine: Engine, dev: LoadedInventory, tmp_path: Path, layout: Layout, folders: list[Path]
) -> Iterator[tuple[LocalExecutor, dict[str, Secret]]]:
    """The layout's folders made fresh (owned by the servers' user), torn down again whatever happens."""
    as_root = os.geteuid() == 0
    settings = RunSettings(audit=AuditLog(tmp_path / "audit.jsonl", task=f"{engine}-pair", env="pair"))
    server = LocalExecutor(f"{engine}-pair", settings, os_user=layout.os_user if as_root else None)
    bindir = dev.inventory.clusters["pg-main"].hosts["pg-main-1"].bin_dir or "/usr/lib/postgresql/15/bin"

    def teardown() -> None:
        for member in reversed(MEMBERS):
            if engine == "postgresql":
                postgres.stop(server, bindir, member, layout)
            else:
                mariadb.stop(server, layout, member)
        shutil.rmtree(layout.root, ignore_errors=True)

    teardown()  # a run killed half-way left its servers
    layout.root.mkdir(mode=0o755)
    owner = ["-o", layout.os_user] if as_root else []
    subprocess.run(["install", "-d", "-m", "0700", *owner, *map(str, [layout.logs, *folders])], check=True)
    try:
        yield server, sandbox_keys(dev)
    finally:
        for log in layout.logs.glob("*.log"):
            shutil.copy(log, tmp_path / f"{layout.root.name}-{log.name}")
        teardown()


@contextlib.contextmanager
def pg_pair(dev: LoadedInventory, tmp_path: Path, worker_id: str, base: int = PG_PAIR_BASE) -> Iterator[Pair]:
    """A PostgreSQL primary and a streaming replica (slot ``sandbox_replica``), stopped and removed after."""
    layout = pair_layout("pg-pair", base, worker_id)
    bindir = dev.inventory.clusters["pg-main"].hosts["pg-main-1"].bin_dir or "/usr/lib/postgresql/15/bin"
    with _built("postgresql", dev, tmp_path, layout, [layout.pg]) as (server, keys):
        postgres.init_primary(server, bindir, layout, keys["pg-admin.password"])
        postgres.start(server, bindir, "primary", layout, layout.port("pg-primary"))
        admin = keys["pg-admin.password"]
        primary = Target("postgresql", layout.port("pg-primary"), postgres.ADMIN_USER, admin, "postgres")
        for stmt in postgres.replication_role_sql(keys["pg-replication.password"]):
            _run(primary, stmt)
        postgres.init_replica(server, bindir, layout, keys["pg-replication.password"])
        postgres.write_settings(server, layout, "replica", layout.port("pg-replica"))
        postgres.start(server, bindir, "replica", layout, layout.port("pg-replica"))
        replica = Target("postgresql", layout.port("pg-replica"), postgres.ADMIN_USER, admin, "postgres")
        pair = Pair("postgresql", layout, server, primary, replica, bindir, keys)
        wait(
            lambda: bool(primary.execute("SELECT 1 FROM pg_stat_replication WHERE state = 'streaming'")),
            "the PostgreSQL pair to stream",
            60,
        )
        yield pair


@contextlib.contextmanager
def mariadb_pair(dev: LoadedInventory, tmp_path: Path, worker_id: str, base: int = MARIADB_PAIR_BASE) -> Iterator[Pair]:
    """A MariaDB primary and a read-only replica replicating with GTID (``MASTER_USE_GTID = slave_pos``)."""
    layout = pair_layout("mariadb-pair", base, worker_id)
    with _built("mariadb", dev, tmp_path, layout, [layout.mariadb, layout.mariadb / "run"]) as (server, keys):
        admin, repl = keys["mariadb-admin.password"], keys["mariadb-replication.password"]
        targets = {}
        for member in MEMBERS:
            port = layout.port(f"mariadb-{member}")
            fresh = mariadb.install(server, layout, member)
            mariadb.start(server, layout, member, port)
            if fresh:
                _bootstrap(layout, member, mariadb.bootstrap_sql(admin, repl))
            targets[member] = Target("mariadb", port, mariadb.ADMIN_USER, admin, "")
        for stmt in mariadb.replication_sql(layout.port("mariadb-primary"), repl):
            _run(targets["replica"], stmt)
        pair = Pair("mariadb", layout, server, targets["primary"], targets["replica"], "", keys)

        def replicating() -> bool:
            with contextlib.closing(pair.replica.connect()) as conn, conn.cursor() as cur:
                cur.execute("SHOW SLAVE STATUS")
                columns = [d[0] for d in cur.description]
                rows = [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]
            return bool(rows) and rows[0]["Slave_IO_Running"] == rows[0]["Slave_SQL_Running"] == "Yes"

        wait(replicating, "the MariaDB pair to replicate", 60)
        yield pair


def _run(target: Target, stmt: SqlStatement) -> None:
    target.execute(stmt.text, params=stmt.driver_params())


def _bootstrap(layout: Layout, member: str, statements: list[SqlStatement]) -> None:
    """Over the private socket: before bootstrap, root has no password and no TCP grant."""
    import pymysql

    conn = pymysql.connect(
        unix_socket=str(mariadb.socket_path(layout, member)), user="root", password="", autocommit=True
    )
    with contextlib.closing(conn), conn.cursor() as cur:
        for stmt in statements:
            cur.execute(stmt.text, stmt.driver_params() or None)


def stopped(pair: Pair) -> bool:
    """Both servers gone and their ports closed."""
    return not any(pair.is_running(m) or port_open(pair.port(m)) for m in MEMBERS)
