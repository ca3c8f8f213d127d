"""The life of a run after ``migrate.shadow.run``: plan, status, cut-over, rollback, cleanup."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from dbrunbook.context import ClusterContext
from dbrunbook.engines.shadow_base import ShadowDialect
from dbrunbook.errors import ChecksumMismatch, MigrationError
from dbrunbook.execution.sql import DbSession
from dbrunbook.migrate.shadow import state
from dbrunbook.migrate.shadow.cutover import LockAttempts, with_lock_retries
from dbrunbook.migrate.shadow.plan import Phase, ShadowPlan, advance, derive_phase
from dbrunbook.migrate.shadow.run import (
    ShadowOptions,
    _load,
    cut_over,
    dialect_of,
    lock_name,
    plain_session,
    preflight,
    prepare_plan,
    primary_session,
    table_lock,
)
from dbrunbook.toolstate import lock_name as full_lock_name

Step = Callable[[str], None]


@dataclass(frozen=True)
class PlanReport:
    cluster: str
    plan: ShadowPlan
    preflight: str  # "ok" or what stops a run now

    def as_dict(self) -> dict[str, Any]:
        p = self.plan
        return {
            "cluster": self.cluster,
            "table": p.table,
            "alter": p.alter,
            "key": list(p.key),
            "rows_estimate": p.rows_estimate,
            "total_bytes": p.total_bytes,
            "free_bytes": p.free_bytes,
            "columns": {
                "mapped": [asdict(m) for m in p.columns.mapped],
                "added": list(p.columns.added),
                "dropped": list(p.columns.dropped),
                "generated": list(p.columns.generated),
            },
            "dependents": list(p.dependents),
            "steps": p.steps(),
            "preflight": self.preflight,
        }

    def lines(self) -> list[str]:
        return [*self.plan.explain(), f"preflight: {self.preflight}"]


def plan(ctx: ClusterContext, options: ShadowOptions) -> PlanReport:
    with primary_session(ctx, options.database) as db:
        found, run = prepare_plan(ctx, db, options, secrets.token_hex(3))
        try:
            preflight(ctx, db, found, run, options)
            verdict = "ok"
        except MigrationError as exc:
            verdict = exc.message
    return PlanReport(ctx.name, found, verdict)


@dataclass(frozen=True)
class RunStatus:
    record: state.RunRecord
    phase: Phase  # what the catalog proves, when the record is behind (a run killed during a swap)
    held_by_session: int | None
    backlog: int
    events: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.record.as_dict(),
            "phase": self.phase.value,
            "held_by_session": self.held_by_session,
            "backlog": self.backlog,
            "events": list(self.events),
        }

    def line(self) -> str:
        r = self.record
        who = f"worked on by server session {self.held_by_session}" if self.held_by_session else "no process holds it"
        return (
            f"{r.run_id}  {r.schema}.{r.table}  {self.phase.value}  {r.rows_copied} rows copied, backlog "
            f"{self.backlog}; {who}" + (f"; {r.message}" if r.message else "")
        )


@dataclass(frozen=True)
class StatusReport:
    cluster: str
    runs: tuple[RunStatus, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "runs": [r.as_dict() for r in self.runs]}

    def lines(self) -> list[str]:
        if not self.runs:
            return [f"{self.cluster}: no shadow migration runs"]
        out = []
        for r in self.runs:
            out.append(r.line())
            out += [f"    event: {e}" for e in r.events[-3:]]
        return out


@dataclass(frozen=True)
class StepResult:
    """What ``cutover``, ``rollback`` or ``cleanup`` did to one run."""

    run_id: str
    phase: Phase
    dry_run: bool = False
    tries: int | None = None
    seconds: float | None = None
    dropped: tuple[str, ...] | None = None
    #: the JSON names of tries and seconds (``cutover_tries`` for a cut-over)
    prefix: str = ""

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"run": self.run_id, "phase": self.phase.value}
        if self.dry_run:
            doc["dry_run"] = True
        if self.tries is not None and self.seconds is not None:
            doc[f"{self.prefix}tries"] = self.tries
            doc[f"{self.prefix}seconds"] = round(self.seconds, 3)
        if self.dropped is not None:
            doc["dropped"] = list(self.dropped)
        return doc


def current_phase(db: DbSession, dialect: ShadowDialect, record: state.RunRecord) -> Phase:
    """The recorded phase, corrected by the catalog (MariaDB records a swap after its RENAME)."""
    return derive_phase(record.phase, dialect.catalog_facts(db, record.run))


def status(ctx: ClusterContext, database: str | None, run_id: str | None) -> StatusReport:
    dialect = dialect_of(ctx)
    with primary_session(ctx, database) as db:
        records = [_load(db, dialect, run_id)] if run_id else state.runs(db, dialect.runs_table)
        if database and not dialect.state_per_database:
            records = [r for r in records if r.schema == database]
        tool = ctx.engine.tool_state()
        out = []
        for r in records:
            holder = db.scalar(tool.lock_holder(full_lock_name(lock_name(r.schema, r.table))))
            phase = current_phase(db, dialect, r) if r.phase is not Phase.CLEANED else r.phase
            backlog = dialect.backlog(db, r.run) if phase in _CAPTURING and dialect.logs_changes else 0
            events = tuple(state.events(db, dialect.events_table, r.run_id))
            out.append(RunStatus(r, phase, None if holder is None else int(holder), backlog, events))
    return StatusReport(ctx.name, tuple(out))


_CAPTURING = (Phase.CAPTURE, Phase.COPY, Phase.INDEX, Phase.CHECKSUM, Phase.READY)


def cutover(ctx: ClusterContext, database: str | None, run_id: str, locks: LockAttempts, step: Step) -> StepResult:
    dialect = dialect_of(ctx)
    with primary_session(ctx, database) as db:
        record = _load(db, dialect, run_id)
        phase = current_phase(db, dialect, record)
        if phase is not Phase.READY:
            raise MigrationError(f"run {run_id} is in phase {phase}: only a ready run cuts over")
        if ctx.settings.dry_run:
            return StepResult(run_id, Phase.READY, dry_run=True)
        with table_lock(db, ctx, dialect, record.schema, record.table):
            options = ShadowOptions(table=record.run.info.qualified, locks=locks)
            tries, secs = cut_over(db, dialect, record.run, options, step, lambda: plain_session(ctx, database))
    return StepResult(run_id, Phase.SWAPPED, tries=tries, seconds=secs, prefix="cutover_")


def rollback(ctx: ClusterContext, database: str | None, run_id: str, locks: LockAttempts, step: Step) -> StepResult:
    dialect = dialect_of(ctx)
    with primary_session(ctx, database) as db:
        record = _load(db, dialect, run_id)
        phase = current_phase(db, dialect, record)
        advance(phase, Phase.ROLLED_BACK)
        failures = [e for e in state.events(db, dialect.events_table, run_id) if e.startswith("reverse sync failed")]
        if failures:
            raise ChecksumMismatch(
                f"run {run_id}: the rollback window is closed: {failures[0]}",
                hint="the old table missed that write; fix forward instead",
            )
        run = record.run
        step("checking that the old table still holds what the new one holds")
        if not dialect.in_sync(db, run):
            raise ChecksumMismatch(
                f"run {run_id}: the rollback window is closed: the old table differs from the new one",
                hint="a write did not reach the old table; fix forward instead",
            )
        if ctx.settings.dry_run:
            return StepResult(run_id, phase, dry_run=True)

        def record_phase(s: DbSession) -> None:
            s.execute(state.set_phase(dialect.runs_table, run_id, Phase.ROLLED_BACK))

        with table_lock(db, ctx, dialect, record.schema, record.table):
            step(f"swapping {run.names.old} back in")
            tries, secs = with_lock_retries(
                db, dialect, run, "the rollback", lambda: dialect.rollback(db, run, locks.timeout, record_phase), locks
            )
            dialect.after_cutover(db, run)
    return StepResult(run_id, Phase.ROLLED_BACK, tries=tries, seconds=secs)


def cleanup(ctx: ClusterContext, database: str | None, run_id: str, locks: LockAttempts, step: Step) -> StepResult:
    dialect = dialect_of(ctx)
    with primary_session(ctx, database) as db:
        record = _load(db, dialect, run_id)
        if ctx.settings.dry_run:
            return StepResult(run_id, record.phase, dry_run=True)
        with table_lock(db, ctx, dialect, record.schema, record.table):
            step("removing triggers, then tables")
            dropped = dialect.cleanup(db, record.run)
            db.execute(state.set_phase(dialect.runs_table, run_id, Phase.CLEANED, f"cleaned up from {record.phase}"))
    del locks
    return StepResult(run_id, Phase.CLEANED, dropped=tuple(dropped))
