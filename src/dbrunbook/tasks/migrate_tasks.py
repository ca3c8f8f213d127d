"""migrate.shadow.*: online schema changes through a shadow table (docs/migrate-shadow.md)."""

from __future__ import annotations

from typing import Any

from invoke.context import Context

from dbrunbook.migrate.shadow import manage
from dbrunbook.migrate.shadow.cutover import LockAttempts
from dbrunbook.migrate.shadow.plan import seconds
from dbrunbook.migrate.shadow.run import ShadowOptions, run_shadow
from dbrunbook.migrate.shadow.throttle import Limits, parse_size
from dbrunbook.output import confirm
from dbrunbook.tasks.common import TaskRun, guarded, task

_COMMON = {
    "env": "environment: inventory/<env>.yaml (default $DBRUNBOOK_ENV, else dev)",
    "cluster": "the cluster (optional when the inventory has one)",
    "database": "the database the table is in (default: the login's)",
    "json": "print JSON",
}
_RUN = {
    **_COMMON,
    "table": "SCHEMA.TABLE to change (quote names with dots or capitals in double quotes)",
    "alter": 'the ALTER TABLE clauses, e.g. "ADD COLUMN note text, ALTER COLUMN qty TYPE bigint"',
    "rename_column": "OLD=NEW: a column the ALTER renames (repeat); without it a rename is refused",
    "chunk_time": "target time of one copy chunk (default 0.5s)",
    "max_lag": "pause the copy while a replica lags more (default 1s)",
    "max_active": "pause the copy while more sessions are active",
    "critical_load": "stop the run when this many sessions are active",
    "throttle_query": "SQL returning one value: the copy pauses while it is true",
    "pause_file": "the copy pauses while this file exists",
    "min_free": "free space the data directory keeps (500M, 20G): the copy pauses under it; under half of it the "
    "run removes capture, then the shadow, and stops (exit 100)",
    "lock_timeout": "longest wait for a lock at capture install and cut-over (default 100ms)",
    "cutover_tries": "tries to get the cut-over lock (default 30)",
    "kill_blockers": "none (default) or idle: halfway through the tries, end sessions that hold the table in an "
    "idle transaction",
    "max_xact_age": "refuse to start while a transaction this old holds the table (default 60s)",
    "max_backlog": "captured changes drained under the cut-over lock at most (default 1000)",
    "postpone_cutover": "stop once ready; cut over later with migrate.shadow.cutover RUN",
    "resume": "go on with this run from its checkpoint",
    "yes": "do not ask",
    "dry_run": "preflight and print the plan, change nothing",
}


_OPTION_FLAGS = frozenset(
    {
        "rename_column",
        "chunk_time",
        "max_lag",
        "max_active",
        "critical_load",
        "throttle_query",
        "pause_file",
        "min_free",
        "lock_timeout",
        "cutover_tries",
        "kill_blockers",
        "max_xact_age",
        "max_backlog",
        "postpone_cutover",
        "resume",
    }
)


def _options(table: str, alter: str, database: str | None, **kw: Any) -> ShadowOptions:
    renames = {}
    for item in kw["rename_column"] or ():
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            from dbrunbook.errors import PreflightFailed

            raise PreflightFailed(f"--rename-column {item!r}: give OLD=NEW")
        renames[old] = new
    return ShadowOptions(
        table=table,
        alter=alter,
        database=database,
        renames=renames,
        chunk_time=seconds(kw["chunk_time"], "--chunk-time"),
        limits=Limits(
            max_lag=seconds(kw["max_lag"], "--max-lag"),
            max_active=kw["max_active"],
            critical_active=kw["critical_load"],
            pause_file=kw["pause_file"],
        ),
        locks=LockAttempts(
            tries=kw["cutover_tries"],
            timeout=seconds(kw["lock_timeout"], "--lock-timeout"),
            kill_idle=_kill_idle(kw.get("kill_blockers") or "none"),
        ),
        max_xact_age=seconds(kw["max_xact_age"], "--max-xact-age"),
        max_backlog=kw["max_backlog"],
        postpone_cutover=kw["postpone_cutover"],
        resume=kw["resume"],
        throttle_query=kw["throttle_query"],
        min_free=parse_size(kw["min_free"], "--min-free") if kw.get("min_free") else None,
    )


@task(iterable=["rename_column"], help=_RUN)
@guarded
def run(
    c: Context,
    table: str = "",
    alter: str = "",
    env: str | None = None,
    cluster: str | None = None,
    database: str | None = None,
    rename_column: list[str] | None = None,
    chunk_time: str = "0.5s",
    max_lag: str = "1s",
    max_active: int | None = None,
    critical_load: int | None = None,
    throttle_query: str | None = None,
    pause_file: str | None = None,
    min_free: str | None = None,
    lock_timeout: str = "100ms",
    cutover_tries: int = 30,
    kill_blockers: str = "none",
    max_xact_age: str = "60s",
    max_backlog: int = 1000,
    postpone_cutover: bool = False,
    resume: str | None = None,
    yes: bool = False,
    dry_run: bool = False,
    json: bool = False,
) -> None:
    """Change a table online: shadow copy, capture, checksum, atomic cut-over (keeps the old table in sync)."""
    flags = dict(locals())  # every flag of the task, by name: what _options reads
    options = _options(table, alter, database, **{k: v for k, v in flags.items() if k in _OPTION_FLAGS})
    task_run = TaskRun.start("migrate.shadow.run", env=env, json_mode=json, dry_run=dry_run)
    try:
        ctx = task_run.cluster_context(cluster)
        if dry_run:
            plan = manage.plan(ctx, options)
            task_run.out.result(plan.as_dict(), _lines(plan.lines()))
            return
        what = f"migrate {options.table} on {ctx.name}" if not resume else f"resume run {resume} on {ctx.name}"
        confirm(what + (" (the cut-over swaps the table)" if not postpone_cutover else ""), yes=yes)
        with task_run.out.steps("migrate.shadow.run") as step:
            result = run_shadow(ctx, options, step)
        task_run.out.result(result.as_dict(), _lines(result.lines()))
    finally:
        task_run.close()


@task(
    iterable=["rename_column"],
    help={
        k: _RUN[k]
        for k in ("env", "cluster", "database", "table", "alter", "rename_column", "max_lag", "max_xact_age", "json")
    },
)
@guarded
def plan(
    c: Context,
    table: str = "",
    alter: str = "",
    env: str | None = None,
    cluster: str | None = None,
    database: str | None = None,
    rename_column: list[str] | None = None,
    max_lag: str = "1s",
    max_xact_age: str = "60s",
    json: bool = False,
) -> None:
    """Preflight and plan a shadow migration: sizes, disk, what happens to each dependent object. Changes nothing."""
    options = _options(
        table,
        alter,
        database,
        rename_column=rename_column,
        chunk_time="0.5s",
        max_lag=max_lag,
        max_active=None,
        critical_load=None,
        throttle_query=None,
        pause_file=None,
        lock_timeout="100ms",
        cutover_tries=30,
        max_xact_age=max_xact_age,
        max_backlog=1000,
        postpone_cutover=True,
        resume=None,
    )
    task_run = TaskRun.start("migrate.shadow.plan", env=env, json_mode=json)
    try:
        found = manage.plan(task_run.cluster_context(cluster), options)
        task_run.out.result(found.as_dict(), _lines(found.lines()))
    finally:
        task_run.close()


@task(help={**_COMMON, "run": "one run id (default: every run)"})
@guarded
def status(
    c: Context,
    run: str | None = None,
    env: str | None = None,
    cluster: str | None = None,
    database: str | None = None,
    json: bool = False,
) -> None:
    """Shadow migration runs: phase, rows copied, backlog, whether a process works on each."""
    task_run = TaskRun.start("migrate.shadow.status", env=env, json_mode=json)
    try:
        report = manage.status(task_run.cluster_context(cluster), database, run)
        task_run.out.result(report.as_dict(), _lines(report.lines()))
    finally:
        task_run.close()


def _lifecycle(
    name: str,
    verb: str,
    c: Context,
    run_id: str,
    env: str | None,
    cluster: str | None,
    database: str | None,
    yes: bool,
    dry_run: bool,
    json: bool,
    lock_timeout: str,
    tries: int,
    kill_blockers: str = "none",
) -> None:
    task_run = TaskRun.start(f"migrate.shadow.{name}", env=env, json_mode=json, dry_run=dry_run)
    try:
        ctx = task_run.cluster_context(cluster)
        confirm(f"{verb} run {run_id} on {ctx.name}", yes=yes, dry_run=dry_run)
        locks = LockAttempts(
            tries=tries, timeout=seconds(lock_timeout, "--lock-timeout"), kill_idle=_kill_idle(kill_blockers)
        )
        with task_run.out.steps(f"migrate.shadow.{name}") as step:
            done: manage.StepResult = getattr(manage, name)(ctx, database, run_id, locks, step)
        task_run.out.result(done.as_dict(), _lines([f"run {run_id}: {done.phase.value}"]))
    finally:
        task_run.close()


_LIFE = {
    **_COMMON,
    "run": "the run id (migrate.shadow.status lists them)",
    "yes": "do not ask",
    "dry_run": "say what would happen, change nothing",
    "lock_timeout": "longest wait for the lock per try (default 100ms)",
    "tries": "lock tries (default 30)",
}


@task(help={**_LIFE, "kill_blockers": "none (default) or idle: end sessions holding the table in an idle transaction"})
@guarded
def cutover(
    c: Context,
    run: str,
    env: str | None = None,
    cluster: str | None = None,
    database: str | None = None,
    yes: bool = False,
    dry_run: bool = False,
    json: bool = False,
    lock_timeout: str = "100ms",
    tries: int = 30,
    kill_blockers: str = "none",
) -> None:
    """Cut over a run that is ready (after --postpone-cutover, or a cut-over that did not get its lock)."""
    _lifecycle(
        "cutover", "cut over", c, run, env, cluster, database, yes, dry_run, json, lock_timeout, tries, kill_blockers
    )


@task(help=_LIFE)
@guarded
def rollback(
    c: Context,
    run: str,
    env: str | None = None,
    cluster: str | None = None,
    database: str | None = None,
    yes: bool = False,
    dry_run: bool = False,
    json: bool = False,
    lock_timeout: str = "100ms",
    tries: int = 30,
) -> None:
    """Swap the old table back after a cut-over, while the reverse sync has kept it complete."""
    _lifecycle("rollback", "roll back", c, run, env, cluster, database, yes, dry_run, json, lock_timeout, tries)


@task(help=_LIFE)
@guarded
def cleanup(
    c: Context,
    run: str,
    env: str | None = None,
    cluster: str | None = None,
    database: str | None = None,
    yes: bool = False,
    dry_run: bool = False,
    json: bool = False,
    lock_timeout: str = "100ms",
    tries: int = 30,
) -> None:
    """Remove a run's triggers, then its tables (the shadow, or the old table after a cut-over: no rollback after)."""
    _lifecycle("cleanup", "clean up", c, run, env, cluster, database, yes, dry_run, json, lock_timeout, tries)


def _kill_idle(value: str) -> bool:
    if value not in ("none", "idle"):
        from dbrunbook.errors import PreflightFailed

        raise PreflightFailed(f"--kill-blockers {value!r}: give none or idle")
    return value == "idle"


def _lines(lines: list[str]) -> Any:
    def human(console: Any) -> None:
        for line in lines:
            console.print(line, markup=False)

    return human
