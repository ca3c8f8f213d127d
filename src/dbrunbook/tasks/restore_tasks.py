"""restore.*: rebuild a server from a backup, to the end of the archive or to a point in time."""

from __future__ import annotations

from typing import Any

from invoke.context import Context

from dbrunbook.engines.capabilities import RestoreRequest
from dbrunbook.engines.target import RecoveryTarget
from dbrunbook.errors import RestoreError
from dbrunbook.output import confirm
from dbrunbook.tasks.common import TaskRun, guarded, task


@task(
    iterable=["tablespace"],
    help={
        "env": "environment: inventory/<env>.yaml (default $DBRUNBOOK_ENV, else dev)",
        "cluster": "the cluster whose backup to restore (optional when the inventory has one)",
        "backup": "backup id, or latest (default)",
        "target_time": "recover up to this time (ISO 8601, with time zone)",
        "target_lsn": "recover up to this LSN",
        "target_xid": "recover up to this transaction id",
        "target_name": "recover up to this restore point",
        "target_position": "MariaDB: replay binlogs up to FILE:POSITION (mariadb-bin.000042:1234)",
        "target_gtid": "MariaDB: replay binlogs up to and including this GTID (0-1-4242)",
        "target_action": "promote (default) or pause once the target is reached",
        "to": "inventory host to restore on",
        "data_dir": "data directory to create there (default: the host's data_dir)",
        "port": "port for the restored server (default 0: the host's port)",
        "database": "logical backups: restore this database (give as SOURCE or SOURCE:NEW_NAME) into a new database",
        "tablespace": "OID=DIR: restore that tablespace into DIR (repeat; default: its original path)",
        "force": "replace a non-empty data directory and tablespace directories (asks first)",
        "yes": "do not ask",
        "jobs": "parallel download streams (default 2)",
        "check_rows": "MariaDB logical backups: count every table after the load and compare with the dump's counts",
        "ignore_leases": "restore even while another run holds the repository's lease (a holder you know is stale "
        "or not dbrunbook's); nothing then stops a prune from deleting what this restore reads",
        "dry_run": "print the plan, change nothing",
        "json": "print JSON",
    },
)
@guarded
def run(
    c: Context,
    to: str,
    env: str | None = None,
    cluster: str | None = None,
    backup: str = "latest",
    target_time: str | None = None,
    target_lsn: str | None = None,
    target_xid: str | None = None,
    target_name: str | None = None,
    target_position: str | None = None,
    target_gtid: str | None = None,
    target_action: str = "promote",
    data_dir: str | None = None,
    port: int = 0,
    database: str | None = None,
    force: bool = False,
    yes: bool = False,
    jobs: int = 2,
    tablespace: list[str] | None = None,
    check_rows: bool = False,
    ignore_leases: bool = False,
    dry_run: bool = False,
    json: bool = False,
) -> None:
    """Restore a physical backup on a host and replay archived WAL to the target; reports the RTO."""
    # Built and checked before anything is locked or read: a malformed target costs nothing.
    target = RecoveryTarget.from_flags(
        time=target_time,
        lsn=target_lsn,
        xid=target_xid,
        name=target_name,
        position=target_position,
        gtid=target_gtid,
        action=target_action,
    )
    request = RestoreRequest(
        to=to,
        backup=backup,
        target=target,
        data_dir=data_dir,
        port=port,
        database=database,
        tablespaces=tuple(tablespace or ()),
        force=force,
        jobs=jobs,
        check_rows=check_rows,
        dry_run=dry_run,
    )
    task_run = TaskRun.start("restore.run", env=env, json_mode=json, dry_run=dry_run)
    try:
        _restore(task_run, cluster, request, yes=yes, ignore_leases=ignore_leases)
    finally:
        task_run.close()


def _restore(
    task_run: TaskRun, cluster: str | None, request: RestoreRequest, *, yes: bool, ignore_leases: bool
) -> None:
    ctx = task_run.cluster_context(cluster)
    method = ctx.engine.restores
    if method is None:
        raise RestoreError(f"cluster {ctx.name}: {ctx.engine.name} restores are not available yet")
    dry_run = request.dry_run
    # Shared: backups may go on, but no prune deletes what this restore reads (WAL included, until done).
    with (
        ctx.lease("restore", dry_run=dry_run or ignore_leases),
        task_run.out.steps("restore.run") as step,
        task_run.showing_progress(f"restore {request.backup} on {request.to}"),
    ):
        result = method.restore(
            ctx, request, task_run.find_host, confirm=lambda q: confirm(q, yes=yes, dry_run=dry_run), step=step
        )
    lines = result.summary_lines()

    def human(console: Any) -> None:
        for line in lines or ():
            console.print(line, markup=False)

    task_run.out.result(result.as_dict(), human if lines is not None else None)
