"""binlog.*: the archived binlogs of a MariaDB/MySQL cluster, its continuous incremental backup."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from invoke.context import Context

from dbrunbook.errors import BackupError, UsageError, WalCheckFailed
from dbrunbook.tasks.common import CLUSTERS, ENV, FORKS, LIMIT, TaskRun, guarded, task

if TYPE_CHECKING:
    from dbrunbook.context import ClusterContext
    from dbrunbook.engines.mariadb.binlog import BinlogCheck
    from dbrunbook.tasks.fleet_report import ClusterReport


@task(
    help={
        "env": ENV,
        "cluster": CLUSTERS + "; with --host or --follow, one cluster",
        "limit": LIMIT,
        "forks": FORKS,
        "host": "archive this host's binlogs (default: the primary); with --follow, the host that streams them "
        "(default: a replica host)",
        "rotate": "close the open binlog first when it holds a transaction (default; --no-rotate to leave it)",
        "follow": "then stream the open binlog like a replica (mariadb-binlog --stop-never) and archive each "
        "file as it closes, until interrupted or --duration ends; runs on --host (default: a replica host)",
        "duration": "with --follow: stop after this many seconds (0: run until interrupted)",
        "interval": "with --follow: seconds between looks for closed files (default 1)",
        "json": "print JSON",
    }
)
@guarded
def sync(
    c: Context,
    env: str | None = None,
    cluster: str | None = None,
    host: str | None = None,
    rotate: bool = True,
    follow: bool = False,
    duration: float = 0.0,
    interval: float = 1.0,
    json: bool = False,
    limit: str | None = None,
    forks: int = 1,
) -> None:
    """Copy every closed binlog the repository lacks (idempotent, cron-friendly)."""
    from dbrunbook.tasks.fleet_report import report_fleet

    run = TaskRun.start("binlog.sync", env=env, json_mode=json)
    try:
        if (follow or host) and len(run.select(cluster, limit)) != 1:
            raise UsageError("--follow and --host work on one cluster: name it with --cluster")

        def one(ctx: ClusterContext) -> ClusterReport:
            return _sync_one(run, ctx, host=host, rotate=rotate, follow=follow, duration=duration, interval=interval)

        report_fleet(run, "binlog.sync", cluster, limit, forks, one, applies=_has_binlogs)
    finally:
        run.close()


def _sync_one(
    run: TaskRun, ctx: ClusterContext, *, host: str | None, rotate: bool, follow: bool, duration: float, interval: float
) -> ClusterReport:
    from dbrunbook.engines.mariadb.backup import binlog_follow, binlog_sync
    from dbrunbook.tasks.fleet_report import ClusterReport

    _require_binlogs(ctx)
    with run.out.steps("binlog.sync") as step:
        followed = None
        if follow:
            followed = binlog_follow(ctx, host_name=host, duration=duration or None, interval=interval, step=step)
            r = followed.sync
        else:
            r = binlog_sync(ctx, host_name=host, rotate=rotate, step=step)

    def human(console: Any) -> None:
        console.print(
            f"{r.cluster}: {len(r.archived)} binlogs archived from {r.host} (server {r.server_id}), "
            f"{len(r.already_archived)} already there; open: {r.open}"
            + (" (rotated)" if r.rotated else "")
            + f"; GTID {r.gtid or '-'}",
            markup=False,
        )
        if followed is not None:
            console.print(
                f"{r.cluster}: streamed from {followed.follower}: {len(followed.streamed)} binlogs archived as they "
                f"closed; {followed.streaming or 'nothing'} was still open",
                markup=False,
            )

    return ClusterReport((followed or r).as_dict(), human)


@task(help={"env": ENV, "cluster": CLUSTERS, "limit": LIMIT, "forks": FORKS, "json": "print JSON"})
@guarded
def check(
    c: Context,
    env: str | None = None,
    cluster: str | None = None,
    json: bool = False,
    limit: str | None = None,
    forks: int = 1,
) -> None:
    """Find binlogs a recovery would miss: gaps since the oldest backup, and closed ones not archived yet."""
    from dbrunbook.tasks.fleet_report import report_fleet

    run = TaskRun.start("binlog.check", env=env, json_mode=json)
    try:
        report_fleet(run, "binlog.check", cluster, limit, forks, _check_one, applies=_has_binlogs)
    finally:
        run.close()


def _has_binlogs(ctx: ClusterContext) -> bool:
    return ctx.engine.log_archive is not None and ctx.engine.log_archive.name == "binlog"


def _require_binlogs(ctx: ClusterContext) -> None:
    """A cluster named explicitly gets a reason; without a selection, report_fleet skips it (``applies``)."""
    if not _has_binlogs(ctx):
        raise BackupError(f"cluster {ctx.name} is {ctx.cluster.engine.value}: binlogs are MariaDB/MySQL (see wal.*)")


def _check_one(ctx: ClusterContext) -> ClusterReport:
    from dbrunbook.engines.mariadb.backup import binlog_keys, facts, server_binlogs
    from dbrunbook.engines.mariadb.binlog import BinlogCheck, binlog_report
    from dbrunbook.engines.mariadb.binlog import number as binlog_number
    from dbrunbook.execution.command import SqlStatement
    from dbrunbook.tasks.fleet_report import ClusterReport

    _require_binlogs(ctx)
    primary_name, primary = ctx.cluster.primary()
    with ctx.engine.session(ctx.executor(primary_name), primary, ctx.login()) as db:
        f = facts(db)
        on_server = [n for n, _ in server_binlogs(db)]
        expire = float(
            db.scalar(
                SqlStatement(
                    "SELECT GREATEST(@@binlog_expire_logs_seconds, @@expire_logs_days * 86400)",
                    mutating=False,
                    description="binlog expiry",
                )
            )
            or 0
        )
    catalog = ctx.catalog()
    starts = [
        m.extra["binlog"]["file"]
        for m in catalog.manifests
        if m.extra.get("binlog") and m.extra.get("server_id") == f.server_id
    ]
    oldest = min(starts, key=binlog_number, default=None)
    report = BinlogCheck(
        ctx.name, f.server_id, binlog_report(list(binlog_keys(ctx, f.server_id)), on_server, oldest, expire)
    )
    gaps = report.archive.gaps
    finding = None
    if gaps:
        g = gaps[0]
        finding = WalCheckFailed(
            f"{ctx.name}: {len(gaps)} gaps in the archived binlogs; first: {g.missing} binlogs "
            f"{g.first}..{g.last} were purged before they were archived; recovery cannot cross them",
            hint="take a new full backup now, and run binlog.sync more often than the server's binlog expiry",
        )
    return ClusterReport(report.as_dict(), _binlog_check_human(report), finding)


def _binlog_check_human(report: BinlogCheck) -> Callable[[Any], None]:
    archive = report.archive

    def human(console: Any) -> None:
        console.print(
            f"{report.cluster}: {archive.archived} binlogs archived from server {report.server_id}, newest "
            f"{archive.newest_archived}; recovery starts at {archive.first or '(no backup)'}",
            markup=False,
        )
        for g in archive.gaps:
            console.print(
                f"  GAP: {g.missing} binlogs neither archived nor on the server: {g.first}..{g.last}",
                markup=False,
            )
        if archive.at_risk:
            days = archive.expiry_seconds / 86400
            console.print(
                f"  WARNING: {len(archive.at_risk)} closed binlogs are not archived and the server purges binlogs "
                f"after {days:g} days: {', '.join(archive.at_risk)}",
                markup=False,
            )
        elif archive.not_archived_yet:
            console.print(f"  not archived yet: {', '.join(archive.not_archived_yet)}", markup=False)
        if not archive.gaps:
            console.print("  no gaps", markup=False)

    return human
