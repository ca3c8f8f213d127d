"""wal.*: the archived WAL of a PostgreSQL cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from invoke.context import Context

from dbrunbook.errors import DbrunbookError
from dbrunbook.tasks.common import CLUSTERS, ENV, FORKS, LIMIT, TaskRun, guarded, task

if TYPE_CHECKING:
    from dbrunbook.backup.verify import WalCheck
    from dbrunbook.context import ClusterContext
    from dbrunbook.tasks.fleet_report import ClusterReport


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
    """Find gaps in the archived WAL between the oldest backup and the newest segment; list timelines."""
    from dbrunbook.tasks.fleet_report import report_fleet

    def applies(ctx: ClusterContext) -> bool:
        return ctx.engine.log_archive is not None and ctx.engine.log_archive.name == "wal"

    run = TaskRun.start("wal.check", env=env, json_mode=json)
    try:
        report_fleet(run, "wal.check", cluster, limit, forks, _check_one, applies=applies)
    finally:
        run.close()


def _check_one(ctx: ClusterContext) -> ClusterReport:
    from collections import Counter

    from dbrunbook.backup.verify import WalCheck, recorded_segment_size, wal_report
    from dbrunbook.engines.postgresql.lsn import segment_position
    from dbrunbook.repository.logs import name_of
    from dbrunbook.tasks.fleet_report import ClusterReport

    catalog = ctx.catalog()
    physical = [m for m in catalog.manifests if m.kind != "logical" and m.start_wal]
    start = min((m.start_wal for m in physical if m.start_wal), key=segment_position, default=None)
    keys = [info.key for info in ctx.storage.list("wal/")]
    names = [name_of(k) for k in keys]
    # Pushes never archive a name twice; two objects under one name were written by something else, and
    # wal-fetch refuses to choose between them: a restore stops there as it would at a gap.
    twice = sorted(n for n, count in Counter(names).items() if count > 1)
    spans = [(m.start_wal, m.stop_wal) for m in physical if m.start_wal and m.stop_wal]
    # Positions are counted in segments, so the size must be the cluster's: a backup records it; before
    # the first backup only the server knows (the names alone cannot tell 16 from 64 MiB).
    recorded = recorded_segment_size(physical)
    if recorded:
        seg_size, size_from = recorded[0], f"backup {recorded[1]}"
    else:
        from dbrunbook.engines.postgresql.backup import server_segment_size

        seg_size, primary = server_segment_size(ctx)
        size_from = f"server {primary}"
    window_from = None
    retention = ctx.cluster.retention
    if retention and retention.pitr_window and physical:
        from datetime import UTC, datetime

        from dbrunbook.backup.retention import parse_window

        since = datetime.now(UTC) - parse_window(retention.pitr_window)
        base = [m for m in physical if m.stop_time <= since] or physical[:1]
        window_from = base[-1].start_wal
    report = WalCheck(
        ctx.name, wal_report(names, start, seg_size, spans, window_from), seg_size, size_from, tuple(twice)
    )
    return ClusterReport(report.as_dict(), _wal_human(report), _finding(report))


def _finding(report: WalCheck) -> DbrunbookError | None:
    from dbrunbook.errors import WalCheckFailed

    cluster = report.cluster
    critical = [g for g in report.archive.gaps if g.critical]
    failure = None
    if critical:
        g = critical[0]
        failure = WalCheckFailed(
            f"{cluster}: {len(critical)} gaps in the archived WAL break a backup or recovery to now; "
            f"first: {g.missing} segments {g.first}..{g.last}; point-in-time recovery cannot cross it",
            hint="take a new full backup and check archive_command errors in the PostgreSQL log",
        )
    elif report.archived_twice:
        twice = report.archived_twice
        failure = WalCheckFailed(
            f"{cluster}: {len(twice)} WAL files are archived twice with different content, first {twice[0]}: "
            "something other than this cluster's archive_command wrote them; a restore stops there",
            hint="see docs/security.md; find out which credentials wrote the second object",
        )
    return failure


def _wal_human(report: WalCheck) -> Callable[[Any], None]:
    archive = report.archive

    def human(console: Any) -> None:
        console.print(
            f"{report.cluster}: WAL from {archive.first} to {archive.newest} "
            f"({report.wal_segment_size >> 20} MiB segments)",
            markup=False,
        )
        for t in archive.timelines:
            history = "" if t.history_file else " (no history file!)"
            console.print(
                f"  timeline {t.timeline}: {t.first}..{t.last}, {t.segments} segments{history}",
                markup=False,
            )
        for g in archive.gaps:
            what = "GAP" if g.critical else "old gap (only older backups cannot replay past it)"
            console.print(f"  {what}: {g.missing} segments missing, {g.first}..{g.last}", markup=False)
        if not archive.gaps:
            console.print("  no gaps", markup=False)
        for n in report.archived_twice:
            console.print(f"  ARCHIVED TWICE with different content: {n} (a restore refuses it)", markup=False)

    return human
