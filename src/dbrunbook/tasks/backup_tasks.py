"""backup.*: take, list and inspect backups."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from invoke.context import Context

from dbrunbook.backup.summary import BackupListing, BackupSummary, summary
from dbrunbook.errors import BackupError
from dbrunbook.fleet import FleetResult

if TYPE_CHECKING:
    from dbrunbook.backup.prune import PruneReport
    from dbrunbook.context import ClusterContext
    from dbrunbook.repository.catalog import Catalog
    from dbrunbook.tasks.fleet_report import ClusterReport

from dbrunbook.tasks.common import CLUSTER, CLUSTERS, ENV, FORKS, LIMIT, TaskRun, guarded, task


@task(
    help={
        "env": ENV,
        "cluster": CLUSTERS,
        "limit": LIMIT,
        "forks": FORKS,
        "kind": "PostgreSQL: physical (default: base backup + WAL) or logical (pg_dump of every database + globals); "
        "MariaDB: logical (default: mariadb-dump) or physical (mariabackup)",
        "source": "primary (default) or replica",
        "jobs": "parallel upload streams (default 2)",
        "json": "print JSON",
    }
)
@guarded
def full(
    c: Context,
    env: str | None = None,
    cluster: str | None = None,
    kind: str = "",
    source: str = "primary",
    jobs: int = 2,
    json: bool = False,
    limit: str | None = None,
    forks: int = 1,
) -> None:
    """Take a full backup into the cluster's repository; it is listed only once complete."""
    if kind not in ("", "physical", "logical"):
        raise BackupError(f"--kind must be physical or logical, not {kind!r}")
    _take("backup.full", kind, env, cluster, source, jobs, json, limit, forks)


@task(
    help={
        "env": ENV,
        "cluster": CLUSTERS,
        "limit": LIMIT,
        "forks": FORKS,
        "kind": "physical (the only kind with incrementals; MariaDB's continuous incremental is binlog.sync)",
        "source": "primary (default) or replica",
        "jobs": "parallel upload streams (default 2)",
        "json": "print JSON",
    }
)
@guarded
def incremental(
    c: Context,
    env: str | None = None,
    cluster: str | None = None,
    kind: str = "physical",
    source: str = "primary",
    jobs: int = 2,
    json: bool = False,
    limit: str | None = None,
    forks: int = 1,
) -> None:
    """Store only the pages changed since the newest physical backup (PostgreSQL page deltas, mariabackup
    --incremental-lsn); a full one when the chain cannot grow."""
    if kind != "physical":
        raise BackupError(f"--kind {kind!r}: incremental backups are physical; logical dumps are always full")
    _take("backup.incremental", "incremental", env, cluster, source, jobs, json, limit, forks)


def _take(
    task_name: str,
    kind: str,
    env: str | None,
    cluster: str | None,
    source: str,
    jobs: int,
    json: bool,
    limit: str | None = None,
    forks: int = 1,
) -> None:
    if source not in ("primary", "replica"):
        raise BackupError(f"--source must be primary or replica, not {source!r}")
    from dbrunbook.fleet import run_fleet

    run = TaskRun.start(task_name, env=env, json_mode=json)
    skipped: list[str] = []
    try:
        names = run.select(cluster, limit)
        with run.out.steps(task_name) as step:

            def take(name: str) -> BackupSummary | None:
                ctx = run.cluster_context(name)
                methods = ctx.engine.backups
                if methods is None:
                    if cluster:
                        raise BackupError(f"cluster {name}: {ctx.engine.name} backups are not available yet")
                    skipped.append(name)
                    return None
                chosen = kind if kind else methods.default_kind
                ctx.signer  # noqa: B018 - no signing key is a config error now, not after hours of streaming
                # Progress one cluster at a time: parallel clusters would fight over one bar.
                shown = run.showing_progress(f"{name}: {chosen} backup") if forks == 1 else nullcontext()
                with ctx.lease("backup"), shown:
                    m = methods.take(ctx, chosen, source=source, jobs=jobs, step=_prefixed(step, name))
                return summary(m)

            # One cluster's failure never stops the others; the run exits with the worst code at the end.
            fleet = run_fleet(names, take, forks=forks)
    finally:
        run.close()
    done = [r for r in fleet.results if r is not None]
    human = _backups_human(task_name, done, skipped, names, fleet)
    run.out.result({"backups": [b.as_dict() for b in done], "skipped": skipped, "clusters": fleet.recap()}, human)
    failure = fleet.run_failure()
    if failure is not None:
        failure.reported = json
        raise failure


def _backups_human(
    task_name: str,
    done: list[BackupSummary],
    skipped: list[str],
    names: list[str],
    fleet: FleetResult[BackupSummary | None],
) -> Callable[[Any], None]:
    from dbrunbook.fleet import recap_lines

    taken = {b.cluster for b in done}

    def human(console: Any) -> None:
        for b in done:
            on = f" on {b.parent}" if b.parent else ""
            console.print(
                f"{b.cluster}: {b.kind}{on} backup {b.backup_id} complete, {b.stored_mib} MiB stored "
                f"({b.plain_mib} MiB of data) in {b.seconds}s, {b.what()}",
                markup=False,
            )
            if task_name == "backup.incremental" and b.kind != "incremental":
                console.print(f"{b.cluster}: took a full backup: {b.why}", markup=False)

        for name in skipped:
            console.print(f"{name}: skipped, backups of its engine are not available yet", markup=False)
        if len(names) > 1 or fleet.failures:
            console.print(f"{task_name}: {len(taken)} of {len(names)} clusters backed up", markup=False)
            for line in recap_lines(fleet):
                console.print(line, markup=False)

    return human


def _prefixed(step: Callable[[str], None], name: str) -> Callable[[str], None]:
    return lambda message: step(f"{name}: {message}")


@task(
    name="list",
    help={
        "env": ENV,
        "cluster": "only this cluster (default: all)",
        "metrics_file": "also write Prometheus textfile metrics of backup freshness here",
        "json": "print JSON",
    },
)
@guarded
def list_(
    c: Context, env: str | None = None, cluster: str | None = None, metrics_file: str | None = None, json: bool = False
) -> None:
    """List complete backups (those with a manifest), oldest first, read from the repository itself."""
    from dbrunbook.backup.summary import HeldLease, RefusedManifest
    from dbrunbook.repository.lease import held as held_leases

    run = TaskRun.start("backup.list", env=env, json_mode=json)
    rows: list[BackupSummary] = []
    refused: list[RefusedManifest] = []
    leases: list[HeldLease] = []
    listed: list[tuple[ClusterContext, Catalog]] = []
    for name in run.clusters(cluster):
        ctx = run.cluster_context(name)
        if ctx.cluster.repository is None:
            continue
        catalog = ctx.catalog()
        rows += [summary(m) for m in catalog.manifests]
        refused += [RefusedManifest(name, r) for r in catalog.refused]
        leases += [HeldLease(name, h.purpose, h.mode, h.lease_id, h.holder) for h in held_leases(ctx.storage)]
        listed.append((ctx, catalog))
    listing = BackupListing(tuple(rows), tuple(refused), tuple(leases))
    if metrics_file:
        _write_backup_metrics(metrics_file, listed)

    run.out.result(listing.as_dict(), lambda console: _listing_human(console, listing))
    if refused:
        from dbrunbook.errors import ManifestRefused, NoMatchingIdentityError

        kind = NoMatchingIdentityError if any(r.refused.no_identity for r in refused) else ManifestRefused
        first = refused[0]
        failure = kind(
            f"{len(refused)} manifests refused; first: {first.cluster} {first.refused.key}: {first.refused.reason}",
            hint="see docs/runbooks/manifest-refused.md",
        )
        failure.reported = True
        raise failure


def _listing_human(console: Any, listing: BackupListing) -> None:
    if not listing.backups:
        console.print("no backups")
    for r in listing.refused:
        console.print(f"{r.cluster:<14} REFUSED manifest {r.refused.key}: {r.refused.reason}", markup=False)
    for lease in listing.leases:
        console.print(f"{lease.cluster:<14} busy: {lease.holder}", markup=False)
    for b in listing.backups:
        console.print(
            f"{b.cluster:<14} {b.backup_id:<20} {b.kind:<11} {b.stop_time[:19]}  "
            f"{b.stored_mib:>9} MiB  from {b.source_host}  {b.what()}",
            markup=False,
        )


def _write_backup_metrics(path: str, listed: list[tuple[ClusterContext, Catalog]]) -> None:
    """``backup.list --metrics-file``: each listed cluster's backups, refused manifests and newest archived log."""
    import time

    from dbrunbook.drill.run import newest_point
    from dbrunbook.metrics import BackupPoint, backup_metrics_text, write_metrics

    points: list[BackupPoint] = []
    refused: list[str] = []
    newest_log: dict[str, float | None] = {}
    for ctx, catalog in listed:
        points += [BackupPoint.of(m) for m in catalog.manifests]
        refused += [ctx.name] * len(catalog.refused)
        when = newest_point(ctx, catalog.manifests[-1] if catalog.manifests else None)
        newest_log[ctx.name] = when.timestamp() if when else None
    write_metrics(path, backup_metrics_text(points, newest_log, time.time(), refused))


@task(help={"env": ENV, "cluster": CLUSTER, "json": "print JSON"})
@guarded
def show(
    c: Context, backup_id: str = "latest", env: str | None = None, cluster: str | None = None, json: bool = False
) -> None:
    """Print one backup's manifest (latest by default): LSNs, WAL range, every object with its digests."""
    run = TaskRun.start("backup.show", env=env, json_mode=json)
    ctx = run.cluster_context(cluster)
    manifest = ctx.catalog().find(backup_id)
    run.out.result(manifest.model_dump(mode="json"))


@task(name="restore-point", help={"env": ENV, "cluster": CLUSTER, "name": "restore point name", "json": "print JSON"})
@guarded
def restore_point(
    c: Context, name: str, env: str | None = None, cluster: str | None = None, json: bool = False
) -> None:
    """Create a named restore point on the primary (a target for restore.run --target-name)."""
    from dbrunbook.execution.command import SqlStatement

    run = TaskRun.start("backup.restore-point", env=env, json_mode=json)
    ctx = run.cluster_context(cluster)
    primary_name, primary = ctx.cluster.primary()
    try:
        with ctx.engine.session(ctx.executor(primary_name), primary, ctx.login()) as db:
            lsn = db.execute(
                SqlStatement("SELECT pg_create_restore_point(%s)::text", params=(name,), description="restore point")
            )[0][0]
            # Close the segment so the point is in the archive now, not whenever the segment fills up.
            db.execute(SqlStatement("SELECT pg_switch_wal()", description="close the current WAL segment"))
    finally:
        run.close()
    run.out.result(
        {"cluster": ctx.name, "name": name, "lsn": lsn},
        lambda console: console.print(f"{ctx.name}: restore point {name!r} at {lsn}", markup=False),
    )


@task(
    help={
        "env": ENV,
        "cluster": "clusters: names or globs, comma-separated, !name excludes; required to delete when the "
        "inventory has several clusters ('*' for all)",
        "limit": LIMIT,
        "dry_run": "print the plan (keep or delete, and why, for every backup) and change nothing",
        "yes": "do not ask for confirmation",
        "now": "plan as if it were this ISO 8601 time (what-if; default: now)",
        "json": "print JSON",
    }
)
@guarded
def prune(
    c: Context,
    env: str | None = None,
    cluster: str | None = None,
    dry_run: bool = False,
    yes: bool = False,
    now: str | None = None,
    json: bool = False,
    limit: str | None = None,
) -> None:
    """Apply the retention policy: delete backups and WAL it does not keep; never a needed or locked one."""
    from datetime import UTC, datetime

    from dbrunbook.backup.prune import PruneReport, plan_prune, run_prune
    from dbrunbook.output import confirm

    try:
        when = datetime.fromisoformat(now) if now else datetime.now(UTC)
    except ValueError:
        raise BackupError(f"--now {now!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    from dbrunbook.fleet import run_fleet

    run = TaskRun.start("backup.prune", env=env, json_mode=json, dry_run=dry_run)
    try:
        if cluster is None and not dry_run and len(run.loaded.inventory.clusters) > 1:
            from dbrunbook.errors import InventoryError

            raise InventoryError(
                "backup.prune deletes: name the clusters with --cluster (names, globs; '*' for all of them)",
                hint="--dry-run shows every cluster's plan without a selection",
            )
        names = [n for n in run.select(cluster, limit) if run.loaded.inventory.clusters[n].repository is not None]

        def prune_one(name: str) -> PruneReport:
            ctx = run.cluster_context(name)
            # Exclusive, and planned under it: no backup can be half-way while its siblings are weighed.
            with ctx.lease("prune", exclusive=True, dry_run=dry_run):
                plan = plan_prune(ctx, when)
                doomed = len(plan.retention.delete) + len(plan.incomplete) + len(plan.wal_keys) + len(plan.binlog_keys)
                if dry_run or not doomed:
                    return PruneReport(plan, None, dry_run)
                confirm(
                    f"delete {len(plan.retention.delete)} backups, {len(plan.incomplete)} incomplete backups and "
                    f"{len(plan.wal_keys)} WAL files and {len(plan.binlog_keys)} binlogs of {name}",
                    yes=yes,
                )
                ctx.check_leases()
                pruned = run_prune(ctx.storage, plan, run.settings.audit)
            return PruneReport(plan, pruned, dry_run)

        fleet = run_fleet(names, prune_one)  # one at a time: each may ask on the terminal
    finally:
        run.close()
    run.out.result(
        {"clusters": [r.as_dict() for r in fleet.results], "recap": fleet.recap()},
        lambda console: _prune_human(console, fleet, names),
    )
    _raise_prune_findings(fleet, json)


def _prune_human(console: Any, fleet: FleetResult[PruneReport], names: list[str]) -> None:
    from dbrunbook.fleet import recap_lines

    for r in fleet.results:
        for line in r.plan.explain():
            console.print(line, markup=False)
        if r.done is None and r.dry_run:
            console.print(f"{r.plan.cluster}: dry run, nothing deleted", markup=False)
        elif r.done is not None:
            console.print(
                f"{r.plan.cluster}: deleted {len(r.done.deleted)} backups and {r.done.wal_deleted} WAL files; "
                f"{len(r.done.locked)} backups and {r.done.wal_locked} WAL files are under Object Lock, kept",
                markup=False,
            )
    if len(names) > 1 or fleet.failures:
        console.print(f"backup.prune: {len(fleet.results)} of {len(names)} clusters done", markup=False)
        for line in recap_lines(fleet):
            console.print(line, markup=False)


def _raise_prune_findings(fleet: FleetResult[PruneReport], json: bool) -> None:
    """The worst cluster failure; else refused manifests (77), after the work on the trusted backups."""
    from dbrunbook.errors import ManifestRefused

    failure = fleet.worst()
    if failure is not None:
        failure.reported = json
        raise failure
    refused = [(r.plan.cluster, f) for r in fleet.results for f in r.plan.refused]
    if refused:
        cname, first = refused[0]
        failure = ManifestRefused(
            f"{len(refused)} manifests refused, nothing done because of them; first: {cname} "
            f"{first.key}: {first.reason}",
            hint="sign backups an older dbrunbook wrote with backup.sign; anything else is not ours (docs/security.md)",
        )
        failure.reported = True
        raise failure


@task(
    help={
        "env": ENV,
        "cluster": CLUSTERS,
        "limit": LIMIT,
        "forks": FORKS,
        "backup_id": "latest (default), all, or a backup id",
        "jobs": "objects read in parallel (default 4)",
        "json": "print JSON",
    }
)
@guarded
def verify(
    c: Context,
    backup_id: str = "latest",
    env: str | None = None,
    cluster: str | None = None,
    jobs: int = 4,
    json: bool = False,
    limit: str | None = None,
    forks: int = 1,
) -> None:
    """Read back every object of a backup, its chain and its WAL; check digests and decryption; restore nothing."""
    from dbrunbook.tasks.fleet_report import report_fleet

    run = TaskRun.start("backup.verify", env=env, json_mode=json)
    try:
        report_fleet(run, "backup.verify", cluster, limit, forks, lambda ctx: _verify_one(ctx, backup_id, jobs))
    finally:
        run.close()


def _verify_one(ctx: ClusterContext, backup_id: str, jobs: int) -> ClusterReport:
    from dbrunbook.backup.verify import BackupCheck, Problem, VerifyReport
    from dbrunbook.backup.verify import verify as verify_backups
    from dbrunbook.errors import VerifyFailed
    from dbrunbook.tasks.fleet_report import ClusterReport

    with ctx.lease("verify"):  # shared: a prune must not delete what is being read
        catalog = ctx.catalog(cached=False)  # every manifest read back from the repository, not the local cache
        targets = catalog.manifests if backup_id == "all" else [catalog.find(backup_id)]
        if not targets:
            raise BackupError(f"cluster {ctx.name} has no backup to verify")
        reports = verify_backups(ctx.storage, catalog, targets, ctx.identities(), jobs=jobs)
    reports += [
        # A refused manifest restores nothing: a backup with one problem, nothing read.
        BackupCheck(
            r.folder,
            r.manifest.kind if r.manifest else "unknown",
            (),
            objects=0,
            stored_bytes=0,
            wal_segments=0,
            problems=(Problem(r.key, f"refused: {r.reason}"),),
        )
        for r in catalog.refused
        if backup_id in ("all", "latest") or r.folder == backup_id
    ]
    report = VerifyReport(ctx.name, tuple(reports))
    bad = [r for r in reports if not r.ok]

    def human(console: Any) -> None:
        for r in reports:
            state = "ok" if r.ok else f"{len(r.problems)} PROBLEMS"
            console.print(
                f"{ctx.name} {r.backup_id} ({r.kind}, chain of {len(r.chain)}): {r.objects} objects, "
                f"{r.wal_segments} WAL segments read: {state}",
                markup=False,
            )
            for p in r.problems:
                console.print(f"  {p.key}: {p.what}", markup=False)

    finding = None
    if bad:
        first = bad[0].problems[0]
        finding = VerifyFailed(
            f"{len(bad)} of {len(reports)} backups failed verification; first: {first.key}: {first.what}"
        )
    return ClusterReport(report.as_dict(), human, finding)
