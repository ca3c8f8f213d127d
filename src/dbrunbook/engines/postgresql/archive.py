"""``archive.setup``: make the primary push every WAL file into the repository, and prove it does."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from dbrunbook.engines.access import ClusterAccess
from dbrunbook.errors import BackupError
from dbrunbook.execution.command import Command, SqlStatement
from dbrunbook.execution.poll import REAL, Clock, wait_until
from dbrunbook.repository import hostconfig

Confirm = Callable[[str], None]
ARCHIVING_SQL = SqlStatement(
    "SELECT current_setting('archive_mode'), current_setting('archive_command')",
    description="archiving settings",
    mutating=False,
)


def archive_command(agent: str, config_path: str) -> str:
    return f"{shlex.quote(agent)} wal-push --config {shlex.quote(config_path)} %p"


def plan_statements(mode: str, current: str, wanted: str) -> tuple[list[SqlStatement], bool]:
    """What to change on the server, and whether it needs a restart (archive_mode is a start-up setting)."""
    stmts: list[SqlStatement] = []
    if current != wanted:
        stmts.append(
            SqlStatement("ALTER SYSTEM SET archive_command = %s", params=(wanted,), description="set archive_command")
        )
    restart = mode == "off"
    if restart:
        stmts.append(SqlStatement("ALTER SYSTEM SET archive_mode = 'on'", description="turn archive_mode on"))
    if stmts:
        stmts.append(SqlStatement("SELECT pg_reload_conf()", description="reload configuration"))
    return stmts, restart


@dataclass(frozen=True)
class ArchiveSetup:
    """What ``archive.setup`` did on the primary (``verified_segment`` is None in a dry run)."""

    cluster: str
    host: str
    archive_command: str
    config: str
    changed: bool
    restarted: bool
    verified_segment: str | None = None

    def as_dict(self, plan: Sequence[str]) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "cluster": self.cluster,
            "host": self.host,
            "archive_command": self.archive_command,
            "config": self.config,
            "changed": self.changed,
            "restarted": self.restarted,
        }
        if self.verified_segment is not None:
            doc["verified_segment"] = self.verified_segment
        return {**doc, "plan": list(plan)}


def setup_archiving(ctx: ClusterAccess, *, confirm: Confirm, timeout: float = 60) -> ArchiveSetup:
    primary_name, primary = ctx.cluster.primary()
    ex = ctx.executor(primary_name)
    agent = ctx.agent(primary_name)
    config_dir = f"{ex.home()}/.config/dbrunbook/{ctx.name}"
    config_path = f"{config_dir}/{hostconfig.CONFIG_NAME}"
    wanted = archive_command(agent, config_path)
    with ctx.engine.session(ex, primary, ctx.login()) as db:
        mode, current = db.execute(ARCHIVING_SQL)[0]
        stmts, restart = plan_statements(mode, current, wanted)
        if restart:
            # Ask before anything changes, so "no" leaves the host as it was.
            confirm(f"restart PostgreSQL on {primary_name} to turn archive_mode on")
        hostconfig.install(ex, config_dir, hostconfig.build(ctx.name, ctx.cluster, ctx.resolver, with_identities=False))
        for stmt in stmts:
            db.execute(stmt)
    if restart:
        ex.run(
            Command(
                (primary.binary("pg_ctl"), "restart", "-D", primary.data_dir, "-m", "fast", "-w", "-t", "120"),
                description="restart PostgreSQL",
            )
        )
    result = ArchiveSetup(
        ctx.name, primary_name, wanted, config_path, bool(stmts), restart and not ctx.settings.dry_run
    )
    if ctx.settings.dry_run:
        return result
    return replace(result, verified_segment=verify_archiving(ctx, timeout=timeout))


def verify_archiving(ctx: ClusterAccess, *, timeout: float = 60, clock: Clock = REAL) -> str:
    """Switch WAL and wait for the archiver to report that segment archived (or failing)."""
    primary_name, primary = ctx.cluster.primary()
    with ctx.engine.session(ctx.executor(primary_name), primary, ctx.login()) as db:
        failed_before = db.execute(
            SqlStatement("SELECT failed_count FROM pg_stat_archiver", description="archiver failures", mutating=False)
        )[0][0]
        segment = db.execute(SqlStatement("SELECT pg_walfile_name(pg_switch_wal())", description="switch WAL segment"))[
            0
        ][0]
        started = clock.monotonic()

        def archived() -> str | None:
            last, failed, last_failed = db.execute(
                SqlStatement(
                    "SELECT last_archived_wal, failed_count, last_failed_wal FROM pg_stat_archiver",
                    description="archiver progress",
                    mutating=False,
                )
            )[0]
            if last is not None and last >= segment:
                return str(segment)
            # Failures in the first half may be a retry of an older segment; after that, they are this one.
            if failed > failed_before and clock.monotonic() - started > timeout / 2:
                raise BackupError(
                    f"archive_command fails on {primary_name} (last failed: {last_failed})",
                    hint="see the PostgreSQL log for the dbrunbook-host error",
                )
            return None

        done = wait_until(archived, timeout=timeout, interval=0.3, clock=clock)
        if done is None:
            raise BackupError(f"{segment} was not archived within {timeout:g}s on {primary_name}")
        return done


#: ``wal-fetch`` exit codes (dbrunbook.agent.cli; a unit test keeps them equal): engines never import the agent
NOT_IN_ARCHIVE = 3
FETCH_FAILED = 128


def restore_command(agent: str, config: str) -> str:
    """PostgreSQL's ``restore_command`` for a restore from the repository (``%f``/``%p`` are PostgreSQL's).

    The ``case`` makes the shell, not Python, the last word on the exit status: an interpreter that cannot
    start, a module that fails to import, a killed process all become FETCH_FAILED, never "not in the archive".
    """
    fetch = f"{shlex.quote(agent)} wal-fetch --config {shlex.quote(config)} %f %p"
    return f"{fetch}; case $? in 0) exit 0;; {NOT_IN_ARCHIVE}) exit {NOT_IN_ARCHIVE};; *) exit {FETCH_FAILED};; esac"
