"""PostgreSQL's side of each capability in :mod:`dbrunbook.engines.capabilities`: thin classes that route to the
modules doing the work (backup, dump, restore, wal), imported when first used."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from dbrunbook.engines.access import ClusterAccess, Confirm, FindHost, Step
from dbrunbook.engines.capabilities import Check, RestoreRequest
from dbrunbook.engines.restore_result import RestoreResult
from dbrunbook.engines.target import RecoveryTarget
from dbrunbook.errors import DrillError, RestoreError
from dbrunbook.execution.command import Command
from dbrunbook.execution.executor import HostExecutor
from dbrunbook.inventory.model import Cluster, Host
from dbrunbook.repository.manifest import Manifest


class PgBackups:
    default_kind = "physical"

    def take(self, ctx: ClusterAccess, kind: str, *, source: str, jobs: int, step: Step) -> Manifest:
        if kind == "logical":
            from dbrunbook.engines.postgresql.dump import logical_backup

            return logical_backup(ctx, source=source, jobs=jobs, step=step)
        from dbrunbook.engines.postgresql.backup import physical_backup

        return physical_backup(ctx, source=source, jobs=jobs, step=step, incremental=kind == "incremental")


class PgRestores:
    target_kinds: tuple[str, ...] = ("time", "lsn", "xid", "name")

    def restore(
        self, ctx: ClusterAccess, request: RestoreRequest, find_host: FindHost, *, confirm: Confirm, step: Step
    ) -> RestoreResult:
        request.target.require(self.target_kinds, "PostgreSQL")
        _, target_cluster = find_host(request.to)
        catalog = ctx.catalog()
        manifest = catalog.find(request.backup)
        if manifest.kind == "logical" or request.database:
            return _restore_logical(ctx, request, manifest, target_cluster, step)
        from dbrunbook.engines.postgresql.restore import backup_tablespaces, run_restore
        from dbrunbook.engines.postgresql.restore_plan import plan_restore

        host = target_cluster.hosts[request.to]
        chain = catalog.chain(manifest)
        plan = plan_restore(
            manifest,
            ctx.name,
            request.to,
            request.data_dir or host.data_dir,
            request.port or host.port,
            request.target,
            chain,
            tablespaces=backup_tablespaces(ctx, chain),
            remap=list(request.tablespaces),
        )
        return run_restore(
            ctx, plan, target_cluster, force=request.force, confirm=confirm, jobs=request.jobs, step=step
        )


def _restore_logical(
    ctx: ClusterAccess, request: RestoreRequest, manifest: Manifest, target_cluster: Cluster, step: Step
) -> RestoreResult:
    from dbrunbook.engines.postgresql.dump import restore_logical
    from dbrunbook.engines.postgresql.dump_host import dump_name
    from dbrunbook.engines.postgresql.restore_result import PgLogicalPlan

    if manifest.kind != "logical" or not request.database:
        raise RestoreError("--database goes with a logical backup, and a logical backup needs --database")
    source_db, _, new_name = request.database.partition(":")
    if request.dry_run:
        steps = (
            f"create database {new_name or source_db} on {request.to}",
            f"stream {dump_name(source_db)} of {manifest.backup_id} into pg_restore",
        )
        return PgLogicalPlan(manifest.backup_id, request.to, new_name or source_db, steps)
    return restore_logical(
        ctx, manifest, target_cluster, request.to, source_database=source_db, database=new_name or source_db, step=step
    )


class PgArchive:
    name = "wal"
    sync_task = "wal.check"  # the archive_command pushes; the schedule's log job checks for gaps

    def newest_archived(self, ctx: ClusterAccess, manifest: Manifest | None) -> datetime | None:
        infos = [i for i in ctx.storage.list("wal/") if "/history/" not in i.key]
        return max((i.last_modified for i in infos), default=None)


class PgDrills:
    drillable_hint = " (PostgreSQL drills need a physical backup)"

    def drillable(self, manifests: Sequence[Manifest]) -> list[Manifest]:
        # A pg_dump restores one database, not a cluster.
        return [m for m in manifests if m.kind in ("physical", "incremental")]

    def server_bin_dir(self, cluster: Cluster) -> str | None:
        import shutil
        import subprocess
        from pathlib import Path

        primary = cluster.primary()[1]
        candidates = [primary.bin_dir, f"/usr/lib/postgresql/{cluster.version}/bin" if cluster.version else None]
        config = shutil.which("pg_config")
        if config:
            out = subprocess.run([config, "--bindir"], capture_output=True, text=True, check=False)
            candidates.append(out.stdout.strip() or None)
        for folder in candidates:
            if folder and Path(folder, "pg_ctl").is_file():
                return folder
        raise DrillError(
            "a local drill needs PostgreSQL's server binaries (pg_ctl) on this machine, and none were found",
            hint=f"install postgresql-{cluster.version or 'N'}, set drill.bin_dir, or set drill.host to a restore host",
        )

    def restore_copy(
        self,
        ctx: ClusterAccess,
        backup: Manifest,
        chain: list[Manifest],
        target_time: datetime | None,
        place: tuple[str, Cluster, str, int],
        step: Step,
    ) -> RestoreResult:
        from dbrunbook.engines.postgresql.restore import backup_tablespaces, run_restore
        from dbrunbook.engines.postgresql.restore_plan import plan_restore

        name, cluster, data_dir, port = place
        when = target_time.isoformat() if target_time else None
        spaces = backup_tablespaces(ctx, chain)
        plan = plan_restore(
            backup,
            ctx.name,
            name,
            data_dir,
            port,
            RecoveryTarget.from_flags(time=when),
            chain,
            tablespaces=spaces,
            remap=[f"{oid}={data_dir}-tblspc/{oid}" for oid in spaces],
        )
        # A restore to the end of the archive checks that it got there (RecoveryStoppedEarly otherwise).
        return run_restore(ctx, plan, cluster, force=False, confirm=lambda _q: None, step=step)

    def stop_copy(self, ex: HostExecutor, host: Host, data_dir: str) -> None:
        stop = (host.binary("pg_ctl"), "stop", "-D", data_dir, "-m", "immediate")
        ex.run(Command(stop, check=False, description="stop the drill's server"))

    def integrity(self, ctx: ClusterAccess, ex: HostExecutor, host: Host, port: int, data_dir: str) -> Check:
        from dbrunbook.engines.postgresql.driver import pgpass_line

        login = ctx.login()
        password = login.password.reveal() if login.password else ""
        argv = (host.binary("pg_amcheck"), "-h", "127.0.0.1", "-p", str(port), "-U", login.user)
        with ex.secret_file(pgpass_line(port, login.user, password), "pgpass") as passfile:
            res = ex.run(
                Command(
                    (*argv, "--all", "--install-missing", "--heapallindexed", "--no-password"),
                    env={"PGPASSFILE": passfile},
                    check=False,
                    description="pg_amcheck every relation",
                )
            )
        detail = res.tail(2) if not res.ok else "every heap and B-tree index checked"
        return Check("pg_amcheck", res.ok, detail)

    def extra_checks(self, backup: Manifest, restored: RestoreResult) -> list[Check]:
        return []  # drills restore physical copies only: no dump row counts to compare
