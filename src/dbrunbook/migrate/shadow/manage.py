"""The life of a run after ``migrate.shadow.run``: plan, status, cut-over, rollback, cleanup."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from dbrunbook.context import ClusterContext
from dbrunbook.errors import ChecksumMismatch, MigrationError
from dbrunbook.migrate.shadow import state
from dbrunbook.migrate.shadow.cutover import LockAttempts, with_lock_retries
from dbrunbook.migrate.shadow.plan import Phase, ShadowPlan, advance
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


def status(ctx: ClusterContext, database: str | None, run_id: str | None) -> dict[str, Any]:
    dialect = dialect_of(ctx)
    with primary_session(ctx, database) as db:
        records = [_load(db, dialect, run_id)] if run_id else state.runs(db, dialect.runs_table)
        if database and not dialect.state_per_database:
            records = [r for r in records if r.schema == database]
        tool = ctx.engine.tool_state()
        out = []
        for r in records:
            holder = db.scalar(tool.lock_holder(full_lock_name(lock_name(r.schema, r.table))))
            doc = r.as_dict()
            doc["held_by_session"] = holder
            doc["backlog"] = dialect.backlog(db, r.run) if r.phase in _CAPTURING and dialect.logs_changes else 0
            doc["events"] = state.events(db, dialect.events_table, r.run_id)
            out.append(doc)
    return {"cluster": ctx.name, "runs": out}


_CAPTURING = (Phase.CAPTURE, Phase.COPY, Phase.INDEX, Phase.CHECKSUM, Phase.READY)


def status_lines(report: dict[str, Any]) -> list[str]:
    if not report["runs"]:
        return [f"{report['cluster']}: no shadow migration runs"]
    lines = []
    for r in report["runs"]:
        who = f"worked on by server session {r['held_by_session']}" if r["held_by_session"] else "no process holds it"
        lines.append(
            f"{r['run']}  {r['table']}  {r['phase']}  {r['rows_copied']} rows copied, backlog {r['backlog']}; {who}"
            + (f"; {r['message']}" if r["message"] else "")
        )
        lines += [f"    event: {e}" for e in r["events"][-3:]]
    return lines


def cutover(ctx: ClusterContext, database: str | None, run_id: str, locks: LockAttempts, step: Step) -> dict[str, Any]:
    dialect = dialect_of(ctx)
    with primary_session(ctx, database) as db:
        record = _load(db, dialect, run_id)
        if record.phase is not Phase.READY:
            raise MigrationError(f"run {run_id} is in phase {record.phase}: only a ready run cuts over")
        if ctx.settings.dry_run:
            return {"run": run_id, "phase": "ready", "dry_run": True}
        with table_lock(db, ctx, dialect, record.schema, record.table):
            options = ShadowOptions(table=record.run.info.qualified, locks=locks)
            tries, secs = cut_over(db, dialect, record.run, options, step, lambda: plain_session(ctx, database))
    return {"run": run_id, "phase": Phase.SWAPPED.value, "cutover_tries": tries, "cutover_seconds": round(secs, 3)}


def rollback(ctx: ClusterContext, database: str | None, run_id: str, locks: LockAttempts, step: Step) -> dict[str, Any]:
    dialect = dialect_of(ctx)
    with primary_session(ctx, database) as db:
        record = _load(db, dialect, run_id)
        advance(record.phase, Phase.ROLLED_BACK)
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
            return {"run": run_id, "phase": record.phase.value, "dry_run": True}

        def record_phase(s: Any) -> None:
            s.execute(state.set_phase(dialect.runs_table, run_id, Phase.ROLLED_BACK))

        with table_lock(db, ctx, dialect, record.schema, record.table):
            step(f"swapping {run.names.old} back in")
            tries, secs = with_lock_retries(
                db, dialect, run, "the rollback", lambda: dialect.rollback(db, run, locks.timeout, record_phase), locks
            )
            dialect.after_cutover(db, run)
    return {"run": run_id, "phase": Phase.ROLLED_BACK.value, "tries": tries, "seconds": round(secs, 3)}


def cleanup(ctx: ClusterContext, database: str | None, run_id: str, locks: LockAttempts, step: Step) -> dict[str, Any]:
    dialect = dialect_of(ctx)
    with primary_session(ctx, database) as db:
        record = _load(db, dialect, run_id)
        if ctx.settings.dry_run:
            return {"run": run_id, "phase": record.phase.value, "dry_run": True}
        with table_lock(db, ctx, dialect, record.schema, record.table):
            step("removing triggers, then tables")
            dropped = dialect.cleanup(db, record.run)
            db.execute(state.set_phase(dialect.runs_table, run_id, Phase.CLEANED, f"cleaned up from {record.phase}"))
    del locks
    return {"run": run_id, "phase": Phase.CLEANED.value, "dropped": dropped}
