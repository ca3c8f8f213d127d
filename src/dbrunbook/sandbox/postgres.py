"""The sandbox's PostgreSQL cluster: a primary and a streaming replica made by a real pg_basebackup."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from dbrunbook.engines.postgresql.driver import pgpass_line
from dbrunbook.errors import SandboxError
from dbrunbook.execution.command import Command, SqlStatement
from dbrunbook.execution.executor import HostExecutor
from dbrunbook.execution.sql import DbSession
from dbrunbook.redact import Secret
from dbrunbook.sandbox.files import make_dirs, write_file
from dbrunbook.sandbox.layout import Layout
from dbrunbook.sandbox.proc import ensure_port_free, port_open, wait_for

ADMIN_USER = "postgres"
REPLICATION_USER = "replicator"
SLOT = "sandbox_replica"
#: The sandbox's settings live in a file of their own in each data directory, included last from
#: postgresql.conf, so that ``sandbox.up`` can rewrite them on an existing sandbox.
SETTINGS_FILE = "dbrunbook.conf"
INCLUDE_LINE = f"include_if_exists = '{SETTINGS_FILE}'"
#: Settings in the files that the running server could not take without a restart. PostgreSQL reads the
#: files anew for this view and compares them with its live values, so no reload race is involved.
NEEDS_RESTART_SQL = SqlStatement(
    "SELECT DISTINCT name FROM pg_file_settings WHERE error IS NOT NULL ORDER BY name",
    description="settings waiting for a restart",
    mutating=False,
)
RELOAD_SQL = SqlStatement("SELECT pg_reload_conf()", description="reload settings")
SessionFactory = Callable[[], AbstractContextManager[DbSession]]


def data_dir(layout: Layout, member: str) -> Path:
    return layout.pg / member


def server_settings(layout: Layout, port: int) -> str:
    """postgresql.conf additions. Archiving is on with an empty command: WAL is kept until the backup
    issue's ``archive.setup`` sets a command, which then needs only a reload, not a restart."""
    return "\n".join(
        [
            "# added by dbrunbook sandbox",
            "listen_addresses = '127.0.0.1'",
            f"port = {port}",
            f"unix_socket_directories = '{layout.pg / 'run'}'",
            "wal_level = replica",
            # Page-level incrementals need every page change to move the page LSN, hint bits included.
            "wal_log_hints = on",
            "max_wal_senders = 10",
            "max_replication_slots = 10",
            "archive_mode = on",
            "archive_command = ''",
            "hot_standby = on",
            # Wave 2's health checks and migration reports read pg_stat_statements.
            "shared_preload_libraries = 'pg_stat_statements'",
            "shared_buffers = 64MB",
            "max_connections = 50",
            "wal_keep_size = 128MB",
            "log_line_prefix = '%m [%p] %q%u@%d '",
            "",
        ]
    )


def is_running(x: HostExecutor, bindir: str, member: str, layout: Layout) -> bool:
    res = x.run(
        Command(
            (f"{bindir}/pg_ctl", "status", "-D", str(data_dir(layout, member))),
            description=f"pg_ctl status {member}",
            mutating=False,
            check=False,
        )
    )
    return res.exit_code == 0


def start(x: HostExecutor, bindir: str, member: str, layout: Layout, port: int) -> None:
    if is_running(x, bindir, member, layout):
        return
    ensure_port_free(port, f"PostgreSQL {member}")
    log = layout.logs / f"pg-{member}.log"
    x.run(
        Command(
            (
                f"{bindir}/pg_ctl",
                "start",
                "-D",
                str(data_dir(layout, member)),
                "-l",
                str(log),
                "-w",
                "-t",
                "60",
            ),
            description=f"start PostgreSQL {member}",
        )
    )
    wait_for(lambda: port_open(port), f"PostgreSQL {member} on port {port}", 30, log=log)


def stop(x: HostExecutor, bindir: str, member: str, layout: Layout) -> None:
    if data_dir(layout, member).exists() and is_running(x, bindir, member, layout):
        x.run(
            Command(
                (
                    f"{bindir}/pg_ctl",
                    "stop",
                    "-D",
                    str(data_dir(layout, member)),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "60",
                ),
                description=f"stop PostgreSQL {member}",
            )
        )


def init_primary(
    x: HostExecutor, bindir: str, layout: Layout, admin_pw: Secret, initdb_options: Sequence[str] = ()
) -> None:
    """``initdb_options`` go to initdb after the sandbox's own (tests that need another layout pass
    ``--wal-segsize=1``, for example); the sandbox itself passes none."""
    target = data_dir(layout, "primary")
    if (target / "PG_VERSION").exists():
        return
    make_dirs(x, layout.pg / "run")
    with x.secret_file(admin_pw, "pwfile") as pwfile:
        x.run(
            Command(
                (
                    f"{bindir}/initdb",
                    "-D",
                    str(target),
                    "-U",
                    ADMIN_USER,
                    f"--pwfile={pwfile}",
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    # Checksums let later issues' verification and pg_amcheck catch torn pages.
                    "--data-checksums",
                    "--no-instructions",
                    *initdb_options,
                ),
                description="initdb primary",
            )
        )
    write_settings(x, layout, "primary", layout.port("pg-primary"))


def write_settings(x: HostExecutor, layout: Layout, member: str, port: int) -> None:
    """(Re)write the member's settings file, and include it from postgresql.conf once. A sandbox made before
    the file existed has its settings appended to postgresql.conf: the include comes after them, so the
    file wins."""
    target = data_dir(layout, member)
    write_file(x, target / SETTINGS_FILE, server_settings(layout, port))
    conf = target / "postgresql.conf"
    x.run(
        Command(
            ("sh", "-c", 'grep -qxF "$2" "$1" || printf "%s\\n" "$2" >> "$1"', "sh", str(conf), INCLUDE_LINE),
            description=f"include {SETTINGS_FILE} ({member})",
        )
    )


def apply_settings(
    x: HostExecutor, bindir: str, member: str, layout: Layout, port: int, session: SessionFactory
) -> str | None:
    """Write the settings; a running server whose settings changed is reloaded, or restarted when a changed
    setting needs it. Returns what was restarted and why, or None."""
    write_settings(x, layout, member, port)
    if not is_running(x, bindir, member, layout):
        return None
    with session() as db:
        changed = [str(row[0]) for row in db.execute(NEEDS_RESTART_SQL)]
        if not changed:
            db.execute(RELOAD_SQL)
            return None
    restart(x, bindir, member, layout, port)
    return f"restarted PostgreSQL {member}: {', '.join(changed)} changed"


def restart(x: HostExecutor, bindir: str, member: str, layout: Layout, port: int) -> None:
    log = layout.logs / f"pg-{member}.log"
    x.run(
        Command(
            (f"{bindir}/pg_ctl", "restart", "-D", str(data_dir(layout, member)), "-m", "fast", "-w", "-l", str(log)),
            description=f"restart PostgreSQL {member}",
        )
    )
    wait_for(lambda: port_open(port), f"PostgreSQL {member} on port {port}", 30, log=log)


def replication_role_sql(repl_pw: Secret) -> list[SqlStatement]:
    """The statements that make the replication role; the password travels as a bound parameter."""
    return [
        SqlStatement(
            f"DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{REPLICATION_USER}') "
            f"THEN CREATE ROLE {REPLICATION_USER} WITH REPLICATION LOGIN; END IF; END$$",
            description="create replication role",
        ),
        SqlStatement(
            f"ALTER ROLE {REPLICATION_USER} WITH PASSWORD %s",
            params=(repl_pw,),
            description="set replication password",
        ),
    ]


def init_replica(x: HostExecutor, bindir: str, layout: Layout, repl_pw: Secret) -> None:
    target = data_dir(layout, "replica")
    if (target / "PG_VERSION").exists():
        return
    primary_port = layout.port("pg-primary")
    # The replica keeps this pgpass to reconnect after restarts; it lives beside the data, 0600.
    passfile = layout.pg / "replica.pgpass"
    write_file(x, passfile, pgpass_line(primary_port, REPLICATION_USER, repl_pw.reveal()), private=True)
    x.run(
        Command(
            (
                f"{bindir}/pg_basebackup",
                "-h",
                "127.0.0.1",
                "-p",
                str(primary_port),
                "-U",
                REPLICATION_USER,
                "-D",
                str(target),
                "-X",
                "stream",
                "-c",
                "fast",
                "-C",
                "-S",
                SLOT,
                "-R",
                "-w",
            ),
            env={"PGPASSFILE": str(passfile)},
            description="pg_basebackup replica from primary",
        )
    )
    conninfo = (
        f"host=127.0.0.1 port={primary_port} user={REPLICATION_USER} passfile={passfile} application_name=pg-main-2"
    )
    x.run(
        Command(
            ("sh", "-c", 'cat >> "$1"', "sh", str(target / "postgresql.auto.conf")),
            description="configure replica",
            stdin=(
                f"port = {layout.port('pg-replica')}\nprimary_conninfo = '{conninfo}'\nprimary_slot_name = '{SLOT}'\n"
            ),
        )
    )


def require_binaries(bindir: str) -> None:
    if not Path(bindir, "initdb").exists():
        raise SandboxError(
            f"PostgreSQL 15 server binaries not found in {bindir}",
            hint="apt-get install postgresql-15, or set DBRUNBOOK_PG_BINDIR",
        )
