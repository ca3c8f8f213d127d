"""MariaDB/MySQL's side of each capability in :mod:`dbrunbook.engines.capabilities`: thin classes that route to
the modules doing the work (backup, restore, binlog, rowcount), imported when first used."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dbrunbook.engines.mariadb.binlog import ReplayTarget

from dbrunbook.engines.access import ClusterAccess, Confirm, FindHost, Step
from dbrunbook.engines.capabilities import Check, RestoreRequest
from dbrunbook.engines.restore_result import RestoreResult, RowCounts
from dbrunbook.engines.target import RecoveryTarget
from dbrunbook.errors import RestoreError
from dbrunbook.execution.command import Command
from dbrunbook.execution.executor import HostExecutor
from dbrunbook.inventory.model import Cluster, Host
from dbrunbook.repository.manifest import Manifest


class MyBackups:
    default_kind = "logical"

    def take(self, ctx: ClusterAccess, kind: str, *, source: str, jobs: int, step: Step) -> Manifest:
        from dbrunbook.engines.mariadb import backup

        if kind == "logical":
            return backup.logical_backup(ctx, source=source, jobs=jobs, step=step)
        return backup.physical_backup(ctx, source=source, jobs=jobs, step=step, incremental=kind == "incremental")


def _replay_target(target: RecoveryTarget) -> ReplayTarget:
    """The one recovery target as binlog replay reads it (times need a zone, positions FILE:POS...)."""
    from dbrunbook.engines.mariadb.binlog import ReplayTarget

    value = target.value
    return ReplayTarget.from_flags(
        value if target.kind == "time" else None,
        value if target.kind == "position" else None,
        value if target.kind == "gtid" else None,
    )


def _restore_chain(
    ctx: ClusterAccess,
    backup: Manifest,
    chain: list[Manifest],
    replay: ReplayTarget,
    place: tuple[str, Cluster, str, int],
    *,
    check_rows: bool,
    force: bool,
    confirm: Confirm,
    jobs: int,
    step: Step,
) -> RestoreResult:
    from dbrunbook.engines.mariadb.backup import binlog_keys
    from dbrunbook.engines.mariadb.restore import plan_my_restore, run_my_restore

    name, cluster, data_dir, port = place
    archive = binlog_keys(ctx, int(backup.extra.get("server_id", 0)))
    plan = plan_my_restore(ctx.name, backup, chain, archive, name, data_dir, port, replay, check_rows=check_rows)
    return run_my_restore(ctx, plan, cluster, force=force, confirm=confirm, jobs=jobs, step=step)


class MyRestores:
    target_kinds: tuple[str, ...] = ("time", "position", "gtid")

    def restore(
        self, ctx: ClusterAccess, request: RestoreRequest, find_host: FindHost, *, confirm: Confirm, step: Step
    ) -> RestoreResult:
        request.target.require(self.target_kinds, "MariaDB")
        replay = _replay_target(request.target)  # a malformed target fails before anything is read
        _, target_cluster = find_host(request.to)
        host = target_cluster.hosts[request.to]
        catalog = ctx.catalog()
        manifest = catalog.find(request.backup)
        chain = catalog.chain(manifest)
        if not request.data_dir:
            raise RestoreError(
                "a MariaDB restore makes a new server: give it a new, empty --data-dir (and a free --port)",
                hint=f"for example: --data-dir {host.data_dir.rstrip('/')}-restore --port {host.port + 100}",
            )
        place = (request.to, target_cluster, request.data_dir, request.port or host.port)
        result = _restore_chain(
            ctx,
            manifest,
            chain,
            replay,
            place,
            check_rows=request.check_rows,
            force=request.force,
            confirm=confirm,
            jobs=request.jobs,
            step=step,
        )
        counted = result.row_counts
        if counted is not None and counted.mismatched:
            line = counted.mismatch_line("restored with other row counts than the dump recorded")
            raise RestoreError(f"{line} (the server runs on port {place[3]})")
        return result


class MyArchive:
    name = "binlog"
    sync_task = "binlog.sync"

    def newest_archived(self, ctx: ClusterAccess, manifest: Manifest | None) -> datetime | None:
        server = int(manifest.extra.get("server_id", 0)) if manifest else 0
        infos = list(ctx.storage.list(f"binlog/{server}/"))
        return max((i.last_modified for i in infos), default=None)


class MyDrills:
    drillable_hint = ""

    def drillable(self, manifests: Sequence[Manifest]) -> list[Manifest]:
        return [m for m in manifests if m.extra.get("binlog")]  # each records its binlog position

    def server_bin_dir(self, cluster: Cluster) -> str | None:
        from pathlib import Path

        primary = cluster.primary()[1]
        if primary.bin_dir and Path(primary.bin_dir, "mariadbd").is_file():
            return primary.bin_dir
        return None

    def restore_copy(
        self,
        ctx: ClusterAccess,
        backup: Manifest,
        chain: list[Manifest],
        target_time: datetime | None,
        place: tuple[str, Cluster, str, int],
        step: Step,
    ) -> RestoreResult:
        from dbrunbook.engines.mariadb.rowcount import uncounted

        when = target_time.isoformat() if target_time else None
        target = RecoveryTarget.from_flags(time=when)
        counted = uncounted(backup) is None
        return _restore_chain(
            ctx,
            backup,
            chain,
            _replay_target(target),
            place,
            check_rows=counted,
            force=False,
            confirm=lambda _q: None,
            jobs=2,
            step=step,
        )

    def stop_copy(self, ex: HostExecutor, host: Host, data_dir: str) -> None:
        from dbrunbook.engines.mariadb.restore import stop_server

        stop_server(ex, data_dir, grace=0)  # disposable: no clean shutdown to wait for

    def integrity(self, ctx: ClusterAccess, ex: HostExecutor, host: Host, port: int, data_dir: str) -> Check:
        from dbrunbook.engines.mariadb.driver import client_defaults

        login = ctx.login()
        password = login.password.reveal() if login.password else ""
        with ex.secret_file(client_defaults(login.user, password), "client.cnf") as defaults:
            res = ex.run(
                Command(
                    (
                        host.binary("mariadb-check"),
                        f"--defaults-extra-file={defaults}",
                        "--host=127.0.0.1",
                        f"--port={port}",
                        # Else the client takes the charset from the locale: over SSH or cron (LANG=C) it is
                        # latin1, and a table named in UTF-8 "doesn't exist".
                        "--default-character-set=utf8mb4",
                        "--all-databases",
                        "--check",
                        "--extended",
                    ),
                    check=False,
                    mutating=False,
                    description="CHECK TABLE every table",
                )
            )
        lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
        bad = [ln for ln in lines if not ln.rstrip().endswith("OK") and "note" not in ln]
        problems = [ln for ln in bad if "error" in ln.lower() or "corrupt" in ln.lower()]
        ok = res.ok and not problems
        return Check("mariadb-check", ok, "every table checked" if ok else (problems or [res.tail(2)])[0])

    def extra_checks(self, backup: Manifest, restored: RestoreResult) -> list[Check]:
        if backup.kind != "logical":
            return []
        return [row_check(backup, restored.row_counts)]


def row_check(backup: Manifest, counted: RowCounts | None) -> Check:
    """The loaded dump's tables, counted before any binlog replay, against the counts the dump recorded."""
    from dbrunbook.engines.mariadb.rowcount import uncounted

    name = "row counts match the backup's snapshot"
    why = uncounted(backup)
    if why is not None:
        return Check(name, True, f"not checked: {why}")
    if counted is None:
        return Check(name, False, "the restore did not count the rows")
    ok = counted.mismatched == 0
    detail = (
        f"{counted.tables} table{'' if counted.tables == 1 else 's'}, {counted.rows} rows "
        f"(counted in {counted.seconds}s, not in the RTO)"
        if ok
        else counted.mismatch_line("differ")
    )
    return Check(name, ok, detail, {"tables": counted.tables, "rows": counted.rows})
