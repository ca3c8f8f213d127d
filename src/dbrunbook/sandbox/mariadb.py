"""The sandbox's MariaDB cluster: a primary with binlog and GTID, and a replica replicating from it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dbrunbook.execution.command import Command, SqlStatement
from dbrunbook.execution.executor import HostExecutor
from dbrunbook.redact import Secret
from dbrunbook.sandbox.layout import Layout
from dbrunbook.sandbox.proc import (
    ensure_port_free,
    pid_alive,
    port_open,
    read_pid,
    start_detached,
    stop_pid,
    wait_for,
)

ADMIN_USER = "dbrunbook"
REPLICATION_USER = "repl"
SERVER_IDS = {"primary": 1, "replica": 2}


def data_dir(layout: Layout, member: str) -> Path:
    return layout.mariadb / member


def socket_path(layout: Layout, member: str) -> Path:
    return layout.mariadb / "run" / f"{member}.sock"


def pid_path(layout: Layout, member: str) -> Path:
    return layout.mariadb / "run" / f"{member}.pid"


def is_running(layout: Layout, member: str) -> bool:
    return pid_alive(read_pid(pid_path(layout, member)), "mariadbd")


def server_argv(layout: Layout, member: str, port: int) -> tuple[str, ...]:
    args = [
        "/usr/sbin/mariadbd",
        "--no-defaults",
        f"--datadir={data_dir(layout, member)}",
        f"--port={port}",
        "--bind-address=127.0.0.1",
        f"--socket={socket_path(layout, member)}",
        f"--pid-file={pid_path(layout, member)}",
        f"--server-id={SERVER_IDS[member]}",
        # Binlog with GTID on both: the replica can be promoted, and the backup issue archives binlogs.
        "--log-bin=mariadb-bin",
        "--binlog-format=ROW",
        "--log-slave-updates=ON",
        "--gtid-strict-mode=ON",
        "--innodb-buffer-pool-size=64M",
        "--innodb-log-file-size=48M",
        "--max-connections=50",
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_unicode_ci",
        "--skip-name-resolve",
        # Wave 2's health checks and lock diagnostics read performance_schema.
        "--performance-schema=ON",
    ]
    if member == "replica":
        args.append("--read-only=ON")
    return tuple(args)


def install(x: HostExecutor, layout: Layout, member: str) -> bool:
    """Create the system tables; returns True when this run created them (bootstrap still to do)."""
    target = data_dir(layout, member)
    if (target / "mysql").exists():
        return False
    x.run(
        Command(
            (
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={target}",
                # root@localhost without a password only until bootstrap sets one, over the private socket.
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ),
            description=f"mariadb-install-db {member}",
        )
    )
    return True


def running_argv(layout: Layout, member: str) -> tuple[str, ...]:
    """The command line the running server was started with (empty when it does not run)."""
    pid = read_pid(pid_path(layout, member))
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes() if pid else b""
    except OSError:
        return ()
    return tuple(arg.decode(errors="replace") for arg in raw.split(b"\0") if arg)


def changed_options(running: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """The options (names) set differently, added or dropped between two server command lines."""
    names = {arg.split("=", 1)[0] for arg in set(running) ^ set(wanted)}
    return sorted(names)


def start(x: HostExecutor, layout: Layout, member: str, port: int) -> str | None:
    """Start the member; a running one whose command line differs from today's is restarted. Returns what
    was restarted and why, or None."""
    reason = None
    if is_running(layout, member):
        changed = changed_options(running_argv(layout, member), server_argv(layout, member, port))
        if not changed:
            return None
        stop(x, layout, member)
        reason = f"restarted MariaDB {member}: {', '.join(changed)} changed"
    _launch(x, layout, member, port)
    return reason


def _launch(x: HostExecutor, layout: Layout, member: str, port: int) -> None:
    ensure_port_free(port, f"MariaDB {member}")
    log = layout.logs / f"mariadb-{member}.log"
    start_detached(x, server_argv(layout, member, port), log, f"start MariaDB {member}")
    wait_for(
        lambda: socket_path(layout, member).exists() and port_open(port),
        f"MariaDB {member} on port {port}",
        60,
        log=log,
    )


def stop(x: HostExecutor, layout: Layout, member: str) -> None:
    pid = read_pid(pid_path(layout, member))
    if pid:
        stop_pid(x, pid, "mariadbd", f"MariaDB {member}", grace=60)


def bootstrap_sql(admin_pw: Secret, repl_pw: Secret) -> list[SqlStatement]:
    """Users for the tool and for replication. Not binlogged: each member gets them on its own, so the
    replica's GTID history starts empty and equal to the primary's."""
    stmts = [SqlStatement("SET SESSION sql_log_bin = 0", description="do not binlog bootstrap", mutating=False)]
    for host in ("localhost", "127.0.0.1"):
        stmts += [
            SqlStatement(f"CREATE USER IF NOT EXISTS '{ADMIN_USER}'@'{host}'", description="create admin user"),
            SqlStatement(
                f"ALTER USER '{ADMIN_USER}'@'{host}' IDENTIFIED BY %s",
                params=(admin_pw,),
                description="set admin password",
            ),
            SqlStatement(
                f"GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'{host}' WITH GRANT OPTION",
                description="grant admin",
            ),
        ]
    stmts += [
        SqlStatement(f"CREATE USER IF NOT EXISTS '{REPLICATION_USER}'@'127.0.0.1'", description="create repl user"),
        SqlStatement(
            f"ALTER USER '{REPLICATION_USER}'@'127.0.0.1' IDENTIFIED BY %s",
            params=(repl_pw,),
            description="set replication password",
        ),
        SqlStatement(
            f"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{REPLICATION_USER}'@'127.0.0.1'",
            description="grant replication",
        ),
        # root keeps working only through the socket with the admin password from now on.
        SqlStatement("ALTER USER 'root'@'localhost' IDENTIFIED BY %s", params=(admin_pw,), description="lock root"),
        SqlStatement("FLUSH PRIVILEGES", description="flush privileges"),
    ]
    return stmts


DEMO_EXISTS = SqlStatement(
    "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'shop' AND table_name = 'orders'",
    mutating=False,
    description="demo table there?",
)


def demo_sql() -> list[SqlStatement]:
    """A small ``shop`` database on the primary (replicated, binlogged), so that backups, drills and their
    row counts have something of the user's to show. Idempotent: rows already there are kept."""
    return [
        SqlStatement("CREATE DATABASE IF NOT EXISTS shop", description="demo database"),
        SqlStatement(
            "CREATE TABLE IF NOT EXISTS shop.orders (id INT PRIMARY KEY, customer VARCHAR(40) NOT NULL, "
            "total DECIMAL(10,2) NOT NULL, created_at DATETIME NOT NULL)",
            description="demo table",
        ),
        SqlStatement(
            "INSERT IGNORE INTO shop.orders SELECT seq, CONCAT('customer ', seq % 97), seq * 1.25, "
            "NOW() - INTERVAL seq MINUTE FROM shop.seq_1_to_1000",
            description="demo rows",
        ),
    ]


def replication_sql(primary_port: int, repl_pw: Secret) -> list[SqlStatement]:
    return [
        SqlStatement("STOP SLAVE", description="stop replication"),
        SqlStatement(
            "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', "
            f"MASTER_PORT = {int(primary_port)}, MASTER_USER = '{REPLICATION_USER}', "
            "MASTER_PASSWORD = %s, MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 5",
            params=(repl_pw,),
            description="point replica at primary",
        ),
        SqlStatement("START SLAVE", description="start replication"),
    ]
