"""restore.*: rebuild a server from a backup, to the end of the archive or to a point in time."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from invoke.context import Context

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
    from dbrunbook.engines.postgresql.restore import RecoveryTarget, backup_tablespaces, plan_restore, run_restore

    task_run = TaskRun.start("restore.run", env=env, json_mode=json, dry_run=dry_run)
    held = ExitStack()
    try:
        ctx = task_run.cluster_context(cluster)
        # Shared: backups may go on, but no prune deletes what this restore reads (WAL included, until done).
        held.enter_context(ctx.lease("restore", dry_run=dry_run or ignore_leases))
        if ctx.cluster.engine.value in ("mariadb", "mysql"):
            if target_lsn or target_xid or target_name:
                raise RestoreError("MariaDB targets are --target-time, --target-position and --target-gtid")
            _restore_mariadb(
                task_run,
                ctx,
                to=to,
                backup=backup,
                target=(target_time, target_position, target_gtid),
                data_dir=data_dir,
                port=port,
                force=force,
                yes=yes,
                jobs=jobs,
                dry_run=dry_run,
                check_rows=check_rows,
            )
            return
        if target_position or target_gtid:
            raise RestoreError("--target-position and --target-gtid are MariaDB targets; PostgreSQL takes --target-lsn")
        target = RecoveryTarget.from_flags(
            time=target_time, lsn=target_lsn, xid=target_xid, name=target_name, action=target_action
        )
        _, target_cluster = task_run.find_host(to)
        host = target_cluster.hosts[to]
        catalog = ctx.catalog()
        manifest = catalog.find(backup)
        if manifest.kind == "logical" or database:
            from dbrunbook.engines.postgresql.dump import restore_logical
            from dbrunbook.engines.postgresql.dump_host import dump_name

            if manifest.kind != "logical" or not database:
                raise RestoreError("--database goes with a logical backup, and a logical backup needs --database")
            source_db, _, new_name = database.partition(":")
            logical: dict[str, Any]
            if dry_run:
                logical = {
                    "dry_run": True,
                    "backup": manifest.backup_id,
                    "to": to,
                    "database": new_name or source_db,
                    "steps": [
                        f"create database {new_name or source_db} on {to}",
                        f"stream {dump_name(source_db)} of {manifest.backup_id} into pg_restore",
                    ],
                }
            else:
                with task_run.out.steps("restore.run") as step:
                    logical = restore_logical(
                        ctx,
                        manifest,
                        target_cluster,
                        to,
                        source_database=source_db,
                        database=new_name or source_db,
                        step=step,
                    )
            task_run.out.result(logical)
            return
        chain = catalog.chain(manifest)
        plan = plan_restore(
            manifest,
            ctx.name,
            to,
            data_dir or host.data_dir,
            port or host.port,
            target,
            chain,
            tablespaces=backup_tablespaces(ctx, chain),
            remap=tablespace or [],
        )
        with task_run.out.steps("restore.run") as step:
            result = run_restore(
                ctx,
                plan,
                target_cluster,
                force=force,
                confirm=lambda q: confirm(q, yes=yes, dry_run=dry_run),
                jobs=jobs,
                step=step,
            )
    finally:
        held.close()
        task_run.close()

    def human(console: Any) -> None:
        if dry_run:
            console.print(f"dry run: restore {result['backup']} to {result['to']}:{result['data_dir']}", markup=False)
            for s in result["steps"]:
                console.print(f"  - {s}", markup=False)
            return
        state = "promoted" if result["promoted"] else "paused at the target"
        console.print(
            f"restored {result['backup']} on {result['to']} port {result['port']} ({state}) in "
            f"{result['rto_seconds']}s; reached LSN {result['reached_lsn']}, last transaction {result['reached_time']}",
            markup=False,
        )

    task_run.out.result(result, human)


def _restore_mariadb(
    task_run: TaskRun,
    ctx: Any,
    *,
    to: str,
    backup: str,
    target: tuple[str | None, str | None, str | None],
    data_dir: str | None,
    port: int,
    force: bool,
    yes: bool,
    jobs: int,
    dry_run: bool,
    check_rows: bool,
) -> None:
    from dbrunbook.engines.mariadb.backup import binlog_keys
    from dbrunbook.engines.mariadb.binlog import ReplayTarget
    from dbrunbook.engines.mariadb.restore import plan_my_restore, run_my_restore
    from dbrunbook.engines.mariadb.rowcount import mismatch_line

    replay_target = ReplayTarget.from_flags(*target)
    _, target_cluster = task_run.find_host(to)
    host = target_cluster.hosts[to]
    catalog = ctx.catalog()
    manifest = catalog.find(backup)
    chain = catalog.chain(manifest)
    if not data_dir:
        raise RestoreError(
            "a MariaDB restore makes a new server: give it a new, empty --data-dir (and a free --port)",
            hint=f"for example: --data-dir {host.data_dir.rstrip('/')}-restore --port {host.port + 100}",
        )
    plan = plan_my_restore(
        ctx.name,
        manifest,
        chain,
        binlog_keys(ctx, int(manifest.extra.get("server_id", 0))),
        to,
        data_dir,
        port or host.port,
        replay_target,
        check_rows=check_rows,
    )
    with task_run.out.steps("restore.run") as step:
        result = run_my_restore(
            ctx,
            plan,
            target_cluster,
            force=force,
            confirm=lambda q: confirm(q, yes=yes, dry_run=dry_run),
            jobs=jobs,
            step=step,
        )
    counted = result.get("row_counts") or {}
    if counted.get("mismatched"):
        line = mismatch_line(counted, "restored with other row counts than the dump recorded")
        raise RestoreError(f"{line} (the server runs on port {result['port']})")

    def human(console: Any) -> None:
        if dry_run:
            console.print(f"dry run: restore {result['backup']} to {result['to']}:{result['data_dir']}", markup=False)
            for s in result["steps"]:
                console.print(f"  - {s}", markup=False)
            return
        if counted:
            console.print(f"row counts of {counted['tables']} tables ({counted['rows']} rows) match the dump's")
        console.print(
            f"restored {result['backup']} on {result['to']} port {result['port']} in {result['rto_seconds']}s; "
            f"replayed {len(result.get('binlogs_replayed', []))} binlogs up to {result['target']}; "
            f"reached GTID {result['reached_gtid'] or '-'}",
            markup=False,
        )
        console.print(f"  socket {result['socket']}; stop it with: {result['stop']}", markup=False)

    task_run.out.result(result, human)
