"""``migrate.shadow.run``: preflight, shadow, capture, chunked copy, indexes, checksum, cut-over.

One session on the primary does everything, holding the table's advisory lock for the run's whole life (a second
run on the table is refused, a killed run frees it). Every step that matters is recorded in the tool state as it
happens, in the same transaction as the work where the engine allows it, so ``--resume`` goes on from there."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from dbrunbook.context import ClusterContext
from dbrunbook.engines.shadow_base import Chunk, Opener, RunTable, ShadowDialect
from dbrunbook.errors import (
    ChecksumMismatch,
    LockTimeout,
    MigrationBusy,
    MigrationError,
    PreflightFailed,
    QueryFailed,
    ToolLockBusy,
)
from dbrunbook.execution.command import Command
from dbrunbook.execution.sql import DbSession
from dbrunbook.inventory.model import Role
from dbrunbook.migrate.shadow import state
from dbrunbook.migrate.shadow.cutover import LockAttempts, with_lock_retries
from dbrunbook.migrate.shadow.plan import (
    Phase,
    ShadowPlan,
    column_map,
    cutover_readiness,
    disk_needed,
    names_for,
    next_chunk_rows,
)
from dbrunbook.migrate.shadow.stop import StopRequests
from dbrunbook.migrate.shadow.throttle import DiskGuard, DiskLow, Limits, Throttle, load_reason
from dbrunbook.toolstate import bootstrap, tool_lock

Step = Callable[[str], None]


@dataclass(frozen=True)
class ShadowOptions:
    table: str
    alter: str = ""
    database: str | None = None
    renames: dict[str, str] = field(default_factory=dict)
    chunk_time: float = 0.5
    limits: Limits = field(default_factory=Limits)
    locks: LockAttempts = field(default_factory=LockAttempts)
    max_xact_age: float = 60.0
    max_backlog: int = 1000
    postpone_cutover: bool = False
    resume: str | None = None
    throttle_query: str | None = None
    min_free: int | None = None  # bytes; under it the copy pauses, under half of it the run removes itself


@dataclass(frozen=True)
class ShadowResult:
    """What one run did; ``--json`` prints :meth:`as_dict`."""

    cluster: str
    run_id: str
    table: str
    phase: Phase
    rows_copied: int
    chunks: int
    copy_seconds: float
    checksum_ranges: int
    recopied_ranges: int
    cutover_tries: int = 0
    cutover_seconds: float | None = None
    throttled_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "run": self.run_id,
            "table": self.table,
            "phase": self.phase.value,
            "rows_copied": self.rows_copied,
            "chunks": self.chunks,
            "copy_seconds": round(self.copy_seconds, 2),
            "checksum_ranges": self.checksum_ranges,
            "recopied_ranges": self.recopied_ranges,
            "cutover_tries": self.cutover_tries,
            "cutover_seconds": None if self.cutover_seconds is None else round(self.cutover_seconds, 3),
            "throttled_seconds": round(self.throttled_seconds, 2),
        }

    def lines(self) -> list[str]:
        line = (
            f"run {self.run_id}: {self.table} {self.phase.value}; {self.rows_copied} rows in {self.copy_seconds:.2f}s"
        )
        if self.cutover_seconds is not None:
            line += f"; cut over in {self.cutover_seconds * 1000:.0f} ms (try {self.cutover_tries})"
        return [line]


def dialect_of(ctx: ClusterContext) -> ShadowDialect:
    found = ctx.engine.shadow
    if found is None:
        raise MigrationError(f"cluster {ctx.name}: shadow migrations of {ctx.engine.name} are not available yet")
    return found


@contextmanager
def plain_session(ctx: ClusterContext, database: str | None) -> Iterator[DbSession]:
    name, host = ctx.cluster.primary()
    with ctx.engine.session(ctx.executor(name), host, ctx.login(database)) as db:
        yield db


@contextmanager
def primary_session(ctx: ClusterContext, database: str | None) -> Iterator[DbSession]:
    with plain_session(ctx, database) as db:
        bootstrap(db, ctx.engine.tool_state())
        yield db


def lock_name(schema: str, table: str) -> str:
    return "shadow-" + hashlib.sha256(f"{schema}.{table}".encode()).hexdigest()[:16]


@contextmanager
def table_lock(db: DbSession, ctx: ClusterContext, dialect: ShadowDialect, schema: str, table: str) -> Iterator[None]:
    """Hold the table for this process; a second run gets MigrationBusy naming the run that holds it."""
    try:
        with tool_lock(db, ctx.engine.tool_state(), lock_name(schema, table)):
            yield
    except ToolLockBusy as exc:
        busy = [r for r in state.runs(db, dialect.runs_table, open_only=True) if (r.schema, r.table) == (schema, table)]
        who = f"run {busy[-1].run_id} (phase {busy[-1].phase}, started by {busy[-1].started_by})" if busy else "a run"
        raise MigrationBusy(f"{schema}.{table} is being migrated by {who}: {exc.message}") from None


def free_bytes(ctx: ClusterContext) -> int | None:
    """Free bytes on the primary's data directory's filesystem, through the seam (None: unknown)."""
    name, host = ctx.cluster.primary()
    if not host.data_dir:
        return None
    res = ctx.executor(name).run(
        Command(("df", "-PB1", host.data_dir), mutating=False, check=False, description="free disk space")
    )
    lines = res.stdout.strip().splitlines()
    try:
        return int(lines[-1].split()[3]) if res.ok and len(lines) >= 2 else None
    except (IndexError, ValueError):
        return None


def prepare_plan(
    ctx: ClusterContext, db: DbSession, options: ShadowOptions, run_id: str
) -> tuple[ShadowPlan, RunTable]:
    """Preflight and plan; changes nothing (the shadow is made and rolled back, or dropped, to prove the ALTER)."""
    dialect = dialect_of(ctx)
    schema, table = dialect.split_name(options.table)
    info = dialect.inspect(db, schema or dialect.default_schema(db), table)
    if info.refusals:
        raise PreflightFailed(f"{info.qualified}: refused: {'; '.join(info.refusals)}")
    if not options.alter.strip():
        raise PreflightFailed("--alter is empty: say what to change (ADD COLUMN ..., ALTER COLUMN ... TYPE ...)")
    names = names_for(run_id, table, dialect.max_identifier, dialect.name_prefix)
    trial = RunTable(info, names, column_map(info.columns, info.columns, info.key), run_id, dialect.runs_table)
    trial = replace(trial, extra=dialect.prepare(db, info, run_id))
    new_columns = dialect.discard_shadow(db, trial, options.alter)
    columns = column_map(info.columns, new_columns, info.key, options.renames)
    free = free_bytes(ctx)
    plan = ShadowPlan(
        info.qualified,
        options.alter,
        names,
        columns,
        info.key,
        info.rows_estimate,
        info.total_bytes,
        free,
        info.dependents,
    )
    return plan, replace(trial, columns=columns)


def preflight(ctx: ClusterContext, db: DbSession, plan: ShadowPlan, run: RunTable, options: ShadowOptions) -> None:
    dialect = dialect_of(ctx)
    problems = dialect.preflight(
        db, run.info, max_xact_age=options.max_xact_age, replicas=_replicas(ctx), max_lag=options.limits.max_lag
    )
    if options.min_free is not None and plan.free_bytes is None:
        problems.append("--min-free needs the data directory's free space, and df could not read it")
    need = disk_needed(plan.total_bytes)
    if plan.free_bytes is not None and plan.free_bytes < need:
        problems.append(f"{plan.free_bytes} bytes free on the data directory's filesystem, {need} needed (2.2x)")
    if problems:
        raise PreflightFailed(f"{plan.table}: {'; '.join(problems)}")


def _replicas(ctx: ClusterContext) -> int:
    return sum(1 for h in ctx.cluster.hosts.values() if h.role is Role.REPLICA)


def run_shadow(ctx: ClusterContext, options: ShadowOptions, step: Step) -> ShadowResult:
    dialect = dialect_of(ctx)
    with primary_session(ctx, options.database) as db:
        if options.resume:
            record = _load(db, dialect, options.resume)
            with table_lock(db, ctx, dialect, record.schema, record.table):
                db.execute(state.claim(dialect.runs_table, record.run_id))
                return _work(ctx, db, dialect, record.run, record.phase, record.checkpoint, options, step)
        schema, table = dialect.split_name(options.table)
        schema = schema or dialect.default_schema(db)
        with table_lock(db, ctx, dialect, schema, table):
            open_runs = _open_runs(db, dialect, schema, table)
            if open_runs:
                r = open_runs[-1]
                raise MigrationBusy(
                    f"{schema}.{table}: run {r.run_id} (phase {r.phase}, started by {r.started_by}) is not finished",
                    hint=f"go on with --resume {r.run_id}, or remove it with migrate.shadow.cleanup --run {r.run_id}",
                )
            run_id = secrets.token_hex(3)
            plan, run = prepare_plan(ctx, db, options, run_id)
            preflight(ctx, db, plan, run, options)
            step(f"run {run_id}: creating {run.names.shadow}")
            dialect.create_shadow(db, run, options.alter)
            db.execute(state.insert(dialect.runs_table, run, options.alter))
            step("installing capture")
            try:
                with_lock_retries(
                    db,
                    dialect,
                    run,
                    "installing capture",
                    lambda: dialect.install_capture(db, run, options.locks.timeout),
                    options.locks,
                    hint="nothing was left behind; run it again once the blocker is gone",
                )
            except LockTimeout:
                dialect.cleanup(db, run)
                db.execute(state.set_phase(dialect.runs_table, run.run_id, Phase.CLEANED, "capture not installed"))
                raise
            return _work(ctx, db, dialect, run, Phase.CAPTURE, None, options, step)


def _open_runs(db: DbSession, dialect: ShadowDialect, schema: str, table: str) -> list[state.RunRecord]:
    """Unfinished runs on this table. One whose tables are all gone (the database was dropped and made again)
    holds nothing any more: it is marked cleaned instead of blocking the table forever."""
    found = []
    for r in state.runs(db, dialect.runs_table, open_only=True):
        if (r.schema, r.table) != (schema, table):
            continue
        facts = dialect.catalog_facts(db, r.run)
        if not (facts.old_exists or facts.shadow_exists):
            db.execute(state.set_phase(dialect.runs_table, r.run_id, Phase.CLEANED, "its tables are gone"))
            continue
        found.append(r)
    return found


def _load(db: DbSession, dialect: ShadowDialect, run_id: str) -> state.RunRecord:
    record = state.load(db, dialect.runs_table, run_id)
    if record is None:
        raise MigrationError(f"no shadow migration run {run_id} in this database")
    return record


@dataclass
class _Progress:
    rows: int = 0
    chunks: int = 0
    copy_seconds: float = 0.0
    ranges: int = 0
    recopied: int = 0
    tries: int = 0
    cutover_seconds: float | None = None


def _work(
    ctx: ClusterContext,
    db: DbSession,
    dialect: ShadowDialect,
    run: RunTable,
    phase: Phase,
    checkpoint: tuple[str, ...] | None,
    options: ShadowOptions,
    step: Step,
) -> ShadowResult:
    progress = _Progress()
    throttle = _throttle(ctx, db, dialect, options)
    try:
        with StopRequests() as stop:
            phase = _phases(db, dialect, run, phase, checkpoint, options, (throttle, stop), progress, step)
    except KeyboardInterrupt:
        step(f"interrupted: go on with invoke migrate.shadow.run --cluster {ctx.name} --resume {run.run_id}")
        raise
    except DiskLow as exc:
        _remove(db, dialect, run, str(exc))
        raise MigrationError(
            f"{run.info.qualified}: {exc}: capture was removed first, then the shadow; the table is unchanged"
        ) from None
    except QueryFailed as exc:
        if exc.code and exc.code[:2] in ("22", "23"):  # data the new table refuses: no resume can help
            _remove(db, dialect, run, exc.message)
            raise MigrationError(
                f"{run.info.qualified}: the changed table refuses a row: {exc.message}; "
                "the run was removed, the table is unchanged"
            ) from None
        raise
    if phase is Phase.READY and not options.postpone_cutover:
        tries, seconds = cut_over(db, dialect, run, options, step, lambda: plain_session(ctx, options.database))
        progress.tries, progress.cutover_seconds = tries, seconds
        phase = Phase.SWAPPED
    p = progress
    return ShadowResult(
        ctx.name,
        run.run_id,
        run.info.qualified,
        phase,
        p.rows,
        p.chunks,
        p.copy_seconds,
        p.ranges,
        p.recopied,
        p.tries,
        p.cutover_seconds,
        throttle.waited,
    )


def _remove(db: DbSession, dialect: ShadowDialect, run: RunTable, why: str) -> None:
    dialect.cleanup(db, run)  # triggers first: the application's writes never depend on the run
    db.execute(state.set_phase(dialect.runs_table, run.run_id, Phase.CLEANED, why))


def _phases(
    db: DbSession,
    dialect: ShadowDialect,
    run: RunTable,
    phase: Phase,
    checkpoint: tuple[str, ...] | None,
    options: ShadowOptions,
    pacing: tuple[Throttle, StopRequests],
    progress: _Progress,
    step: Step,
) -> Phase:
    """Copy, indexes, checksum, each recorded as it completes; returns the phase reached (ready)."""
    runs = dialect.runs_table
    if phase in (Phase.CAPTURE, Phase.COPY):
        db.execute(state.set_phase(runs, run.run_id, Phase.COPY))
        _copy(db, dialect, run, checkpoint, options, pacing, progress, step)
        phase = Phase.INDEX
        db.execute(state.set_phase(runs, run.run_id, phase))
    if phase is Phase.INDEX:
        dialect.build_indexes(db, run, step)
        phase = Phase.CHECKSUM
        db.execute(state.set_phase(runs, run.run_id, phase))
    if phase is Phase.CHECKSUM:
        _checksum(db, dialect, run, options, progress, step)
        phase = Phase.READY
        db.execute(state.set_phase(runs, run.run_id, phase, checksum_ok=True))
    return phase


def _throttle(ctx: ClusterContext, db: DbSession, dialect: ShadowDialect, options: ShadowOptions) -> Throttle:
    replicas = _replicas(ctx)

    def server_load() -> str | None:
        active, lags = dialect.load(db)
        return load_reason(active, lags, options.limits, replicas)

    checks: list[Callable[[], str | None]] = [server_load]
    if options.min_free is not None:
        checks.append(DiskGuard(lambda: free_bytes(ctx), options.min_free))
    if options.throttle_query:
        from dbrunbook.execution.command import SqlStatement

        query = SqlStatement(options.throttle_query, description="--throttle-query", mutating=False)

        def custom() -> str | None:
            return "--throttle-query says wait" if db.scalar(query) else None

        checks.append(custom)
    return Throttle(checks, pause_file=options.limits.pause_file)


def _copy(
    db: DbSession,
    dialect: ShadowDialect,
    run: RunTable,
    after: tuple[str, ...] | None,
    options: ShadowOptions,
    pacing: tuple[Throttle, StopRequests],
    progress: _Progress,
    step: Step,
) -> None:
    throttle, stop = pacing
    rows, said = 1000, 0.0
    started = time.monotonic()

    def record(chunk: Chunk) -> None:
        db.execute(state.checkpoint(dialect.runs_table, run.run_id, chunk))

    while True:
        if stop.requested:
            step(f"{stop.requested}: stopping at a chunk's edge, {progress.rows} rows copied in this session")
            raise KeyboardInterrupt
        throttle.wait(step)
        begun = time.monotonic()
        chunk = dialect.copy_chunk(db, run, after, rows, record)
        took = time.monotonic() - begun
        progress.rows += chunk.rows
        progress.chunks += 1
        if dialect.logs_changes:
            dialect.apply(db, run, max(1000, chunk.rows))
        if chunk.last_key is None:
            break
        after, rows = chunk.last_key, next_chunk_rows(rows, took, options.chunk_time)
        if time.monotonic() - said > 2:
            said = time.monotonic()
            rate = progress.rows / max(said - started, 1e-6)
            step(f"copied {progress.rows} of about {run.info.rows_estimate} rows ({rate:.0f} rows/s)")
    progress.copy_seconds = time.monotonic() - started
    step(f"copied {progress.rows} rows in {progress.copy_seconds:.1f}s")


def drain(db: DbSession, dialect: ShadowDialect, run: RunTable, below: int, batch: int = 5000) -> int:
    """Apply captured changes until fewer than ``below`` wait; the backlog left."""
    if not dialect.logs_changes:
        return 0
    while (left := dialect.backlog(db, run)) > below:
        dialect.apply(db, run, batch)
    return left


def _checksum(
    db: DbSession, dialect: ShadowDialect, run: RunTable, options: ShadowOptions, progress: _Progress, step: Step
) -> None:
    for attempt in range(1, 4):
        drain(db, dialect, run, options.max_backlog)
        step(f"checksum, pass {attempt}")
        sums = dialect.checksum(db, run, max(1, run.info.rows_estimate // 50_000))
        progress.ranges = len(sums)
        bad = [s for s in sums if not s.equal]
        if not bad:
            return
        for b in bad:
            step(f"range after {b.after} up to {b.upto} differs: copying it again")
            dialect.recopy(db, run, b)
            progress.recopied += 1
    raise ChecksumMismatch(
        f"{run.info.qualified}: {len(bad)} key ranges still differ after three recopies; no cut-over"
    )


def cut_over(
    db: DbSession, dialect: ShadowDialect, run: RunTable, options: ShadowOptions, step: Step, open_session: Opener
) -> tuple[int, float]:
    """Swap under a short lock, retried; the run stays ready (for ``migrate.shadow.cutover``) when it never gets it."""
    left = drain(db, dialect, run, options.max_backlog)
    ready = cutover_readiness(Phase.READY, left, options.max_backlog, True)
    if not ready.ok:
        raise MigrationError(f"{run.info.qualified}: not ready to cut over: {ready.why}")
    step(f"cutting over: {ready.why}")

    def record(s: DbSession) -> None:
        s.execute(state.set_phase(dialect.runs_table, run.run_id, Phase.SWAPPED))

    def attempt() -> None:
        drain(db, dialect, run, options.max_backlog)
        dialect.cutover(db, run, options.locks.timeout, record, open_session)

    tries, seconds = with_lock_retries(
        db,
        dialect,
        run,
        "the cut-over",
        attempt,
        options.locks,
        hint=f"the run stays ready: invoke migrate.shadow.cutover --run {run.run_id} once the blocker is gone",
    )
    step(f"swapped in {seconds * 1000:.0f} ms (try {tries}); validating re-pointed foreign keys")
    dialect.after_cutover(db, run)
    return tries, seconds
