"""``drill.run``: restore a backup into a disposable server, prove it, measure RTO and RPO, tear it down.

The restore is the real one (``restore.run``'s code, PostgreSQL or MariaDB); the drill adds the choice of
backup and target, the integrity checks and the inventory's validation queries, the measurements, the
teardown, and a result stored in the repository under ``drills/`` so the history outlives the machine.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from dbrunbook import __version__
from dbrunbook.context import ClusterContext
from dbrunbook.drill.place import LOCAL, local_place
from dbrunbook.drill.plan import DrillAsk, DrillChoice, choose, consistent_at, judge, verdict
from dbrunbook.drill.result import (
    DrillCheck,
    DrillPick,
    DrillPlace,
    DrillRecovery,
    DrillResult,
    Plain,
    Validation,
)
from dbrunbook.engines.capabilities import Check, DrillSupport
from dbrunbook.engines.restore_result import RestoreResult
from dbrunbook.errors import (
    DbrunbookError,
    DrillError,
    DrillRestoreFailed,
    DrillTargetMissed,
    DrillValidationFailed,
)
from dbrunbook.execution.command import Command, SqlStatement
from dbrunbook.execution.executor import HostExecutor
from dbrunbook.inventory.model import Cluster, Host
from dbrunbook.repository.manifest import SUFFIX, Manifest
from dbrunbook.repository.objects import load_bytes, store

Step = Callable[[str], None]
FindHost = Callable[[str], tuple[str, Cluster]]
MARKER = ".dbrunbook-drill"
RESULTS = "drills/"


def drill_place(ctx: ClusterContext, find_host: FindHost) -> tuple[str, Cluster, str, int]:
    """Where the drill restores: ``drill.host`` (an inventory host) or, by default, ``local``: this machine,
    as the sandbox's unprivileged user, never a live server's host unless the inventory says so. The data
    directory defaults to ``~/dbrunbook-drill-<cluster>``, the port to the primary's + 1000."""
    settings = ctx.cluster.drill_settings()
    local = local_place(ctx.cluster)
    if local is not None:
        name, cluster = LOCAL, local
    else:
        name = str(settings.host)
        _, cluster = find_host(name)
    host = cluster.hosts[name]  # local: the primary's port, so both defaults below read the same
    data_dir = settings.data_dir or f"{ctx.executor_for(cluster, name).home()}/dbrunbook-drill-{ctx.name}"
    port = settings.port or host.port + 1000
    if local is not None:
        local.hosts[LOCAL] = host.model_copy(update={"data_dir": data_dir, "port": port})
    return name, cluster, data_dir, port


def newest_point(ctx: ClusterContext, manifest: Manifest | None) -> datetime | None:
    """The newest restorable point: when the newest archived WAL segment or binlog reached the repository."""
    archive = ctx.engine.log_archive
    return archive.newest_archived(ctx, manifest) if archive is not None else None


def _teardown(ctx: ClusterContext, ex: HostExecutor, host: Host, data_dir: str) -> None:
    """Stop the drill's server and delete its directory, only if a drill made it (its marker file)."""
    script = 'test -e "$1' + MARKER + '" || test ! -e "$1" || { echo "not a drill directory"; exit 3; }'
    owned = ex.run(Command(("sh", "-c", script, "sh", data_dir), mutating=False, check=False))
    if not owned.ok:
        raise DrillError(
            f"{data_dir} on {ex.name} exists and was not made by a drill; refusing to touch it",
            hint="point the cluster's drill.data_dir at a directory of its own",
        )
    drills(ctx).stop_copy(ex, host, data_dir)
    ex.run(
        Command(
            ("rm", "-rf", data_dir, f"{data_dir}-tblspc", f"{data_dir}{MARKER}"),
            check=False,
            description="remove the drill's files",
        )
    )


def _restore(
    ctx: ClusterContext,
    choice: DrillChoice,
    chain: list[Manifest],
    place: tuple[str, Cluster, str, int],
    step: Step,
) -> RestoreResult:
    return drills(ctx).restore_copy(ctx, choice.backup, chain, choice.target_time, place, step)


def _integrity(ctx: ClusterContext, ex: HostExecutor, host: Host, port: int, data_dir: str) -> Check:
    """pg_amcheck of every relation (PostgreSQL) or CHECK TABLE of every table (MariaDB) on the copy."""
    return drills(ctx).integrity(ctx, ex, host, port, data_dir)


def drills(ctx: ClusterContext) -> DrillSupport:
    """The engine's drill support, or a one-line refusal for an engine without it."""
    support = ctx.engine.drills
    if support is None:
        raise DrillError(f"cluster {ctx.name}: {ctx.engine.name} drills are not available yet")
    return support


def _validations(ctx: ClusterContext, cluster: Cluster, name: str, port: int) -> list[Validation]:
    settings = ctx.cluster.drill_settings()
    if not settings.validations:
        return []
    host = cluster.hosts[name].model_copy(update={"port": port})
    ex = ctx.executor_for(cluster, name)
    out: list[Validation] = []
    for v in settings.validations:
        try:
            with ctx.engine.session(ex, host, ctx.login(v.database)) as db:
                rows = db.execute(SqlStatement(v.sql, mutating=False, description=f"validation {v.name}"))
            actual = rows[0][0] if rows and rows[0] else None
            ok = actual is not None and judge(actual, v.compare, v.expect)
            detail = f"got {actual!r}, expected {v.compare} {v.expect!r}"
        except DbrunbookError as exc:
            ok, actual, detail = False, None, exc.one_line()
        out.append(Validation(f"validation {v.name}", ok, _plain(actual), detail))
    return out


def _plain(value: object) -> Plain:
    return value if isinstance(value, int | float | str | type(None)) else str(value)


@dataclass(slots=True)
class _Progress:
    """What a drill has learnt so far: a failure at any step keeps everything before it in the result."""

    place: DrillPlace | None = None
    pick: DrillPick | None = None
    recovery: DrillRecovery | None = None
    checks: list[DrillCheck] = field(default_factory=list)
    reason: str = ""


def _pick(choice: DrillChoice, chain: list[Manifest], started: datetime, newest: datetime | None) -> DrillPick:
    """The choice with what it measures at the drill's start: the backup's age and size, and the RPO."""
    return DrillPick(
        backup=choice.backup.backup_id,
        kind=choice.backup.kind,
        target_time=choice.target_time,
        why=choice.why,
        backup_age_seconds=round((started - consistent_at(choice.backup)).total_seconds(), 1),
        backup_size_bytes=sum(m.total_size for m in chain),
        rpo_seconds=round((started - newest).total_seconds(), 1) if newest else None,
    )


def _attempt(
    ctx: ClusterContext,
    progress: _Progress,
    started: datetime,
    place: tuple[str, Cluster, str, int],
    ask: DrillAsk,
    step: Step,
) -> DbrunbookError | None:
    """Choose (what the operator asked), restore, check; fills ``progress``. Returns a failed check's error;
    raises on a failed restore."""
    name, cluster, data_dir, port = place
    ex = ctx.executor_for(cluster, name)
    host = cluster.hosts[name]
    catalog = ctx.catalog()
    rng = random.Random(ask.seed)  # noqa: S311 - picks a drill, not a key
    last = catalog.manifests[-1] if catalog.manifests else None
    newest = newest_point(ctx, last)
    choice = choose(
        catalog.manifests,
        drills(ctx),
        backup=ask.backup,
        target=ask.target,
        kind=ask.kind,
        newest_point=newest,
        rng=rng,
    )
    chain = catalog.chain(choice.backup)
    progress.pick = pick = _pick(choice, chain, started, newest)
    step(f"restoring {choice.backup.backup_id} on {name}:{port} ({choice.why})")
    _teardown(ctx, ex, host, data_dir)  # a drill killed earlier may have left its server behind
    # Beside the directory, not in it: the restore wants an empty directory.
    ex.run(Command(("touch", f"{data_dir}{MARKER}"), description="mark the directory as a drill's"))
    restored, rto_seconds = _timed_restore(ctx, choice, chain, (name, cluster, data_dir, port), step)
    progress.recovery = DrillRecovery(rto_seconds, restored.reached)
    progress.checks.append(Check("server started and reached the target", True, choice.why))
    progress.checks += drills(ctx).extra_checks(choice.backup, restored)
    step("checking every table")
    progress.checks.append(_integrity(ctx, ex, host, port, data_dir))
    progress.checks += _validations(ctx, cluster, name, port)
    progress.reason, failure = _conclude(ctx, progress.checks, rto_seconds, pick.rpo_seconds)
    return failure


def _timed_restore(
    ctx: ClusterContext, choice: DrillChoice, chain: list[Manifest], place: tuple[str, Cluster, str, int], step: Step
) -> tuple[RestoreResult, float]:
    """The drill's restore and its RTO in seconds; any failure of it is a DrillRestoreFailed."""
    clock = time.monotonic()
    try:
        restored = _restore(ctx, choice, chain, place, step)
    except DrillRestoreFailed:
        raise
    except DbrunbookError as exc:
        raise DrillRestoreFailed(f"restore of {choice.backup.backup_id} failed: {exc.one_line()}") from None
    counting = restored.row_counts.seconds if restored.row_counts is not None else 0.0
    # The row count check runs inside the load session; it is proof, not restore time.
    return restored, round(time.monotonic() - clock - counting, 2)


def _conclude(
    ctx: ClusterContext, checks: list[DrillCheck], rto_seconds: float, rpo_seconds: float | None
) -> tuple[str, DbrunbookError | None]:
    """The verdict on the checks and the RTO/RPO targets: its one line, and the error when it failed."""
    settings = ctx.cluster.drill_settings()
    ok, reason = verdict(checks, rto_seconds, rpo_seconds, settings.rto_target, settings.rpo_target)
    failure: DbrunbookError | None = None
    if not ok:
        failed_check = any(not c.ok for c in checks)
        failure = (DrillValidationFailed if failed_check else DrillTargetMissed)(f"{ctx.name}: {reason}")
    return reason, failure


def run_drill(
    ctx: ClusterContext,
    find_host: FindHost,
    *,
    backup: str = "latest",
    target: str = "latest",
    kind: str = "any",
    keep: bool = False,
    seed: int | None = None,
    step: Step = lambda _m: None,
) -> tuple[DrillResult, DbrunbookError | None]:
    """One drill of one cluster: its result (stored in the repository, passed or failed) and the failure
    the task exits with, if any."""
    started = datetime.now(UTC)
    clock = time.monotonic()
    settings = ctx.cluster.drill_settings()
    progress = _Progress()
    failure: DbrunbookError | None = None
    place: tuple[str, Cluster, str, int] | None = None
    torn_down, teardown_problem = False, None
    try:
        # Inside the try: a place that cannot be set up (no binaries here) is a failed drill with a stored
        # result and metrics, and the next cluster is still drilled.
        place = drill_place(ctx, find_host)
        name, _, data_dir, port = place
        progress.place = DrillPlace(name, data_dir, port)
        failure = _attempt(ctx, progress, started, place, DrillAsk(backup, target, kind, seed), step)
    except DbrunbookError as exc:
        failure = exc if isinstance(exc, DrillError) else DrillError(exc.one_line())
        progress.reason = failure.one_line()
    finally:
        if place is not None and not keep:
            name, cluster, data_dir, _ = place
            step(f"tearing down {data_dir} on {name}")
            try:
                _teardown(ctx, ctx.executor_for(cluster, name), cluster.hosts[name], data_dir)
                torn_down = True
            except DbrunbookError as exc:
                teardown_problem = exc.one_line()
    result = DrillResult(
        cluster=ctx.name,
        engine=ctx.cluster.engine.value,
        started=started,
        rto_target=settings.rto_target,
        rpo_target=settings.rpo_target,
        tool_version=__version__,
        checks=tuple(progress.checks),
        place=progress.place,
        pick=progress.pick,
        recovery=progress.recovery,
        reason=progress.reason,
        torn_down=torn_down,
        teardown_problem=teardown_problem,
        ok=failure is None,
        ended=datetime.now(UTC),
        duration_seconds=round(time.monotonic() - clock, 2),
        exit_code=failure.exit_code if failure is not None else None,
    )
    return replace(result, stored_as=save_result(ctx, result)), failure


def save_result(ctx: ClusterContext, result: DrillResult) -> str:
    """Append the result to the repository (never overwritten: the key holds the start time)."""
    stamp = result.started.strftime("%Y%m%dT%H%M%S.%fZ")
    key = f"{RESULTS}{stamp}{'-ok' if result.ok else '-failed'}.json{SUFFIX}"
    store(ctx.storage, "drill", key, [json.dumps(result.as_dict(), indent=2).encode()], ctx.recipients)
    return key


def history(ctx: ClusterContext, limit: int = 200) -> list[DrillResult]:
    """Stored drill results, oldest first (the newest ``limit``)."""
    keys = sorted(i.key for i in ctx.storage.list(RESULTS))[-limit:]
    identities = ctx.identities()
    return [DrillResult.from_dict(json.loads(load_bytes(ctx.storage, k, identities))) for k in keys]
