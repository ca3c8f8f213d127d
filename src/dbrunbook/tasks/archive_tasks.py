"""archive.*: continuous WAL archiving into the repository."""

from __future__ import annotations

from typing import Any

from invoke.context import Context

from dbrunbook.output import confirm
from dbrunbook.tasks.common import ENV, TaskRun, guarded, task


@task(
    help={
        "env": ENV,
        "cluster": "the cluster (optional when the inventory has one)",
        "yes": "do not ask before restarting PostgreSQL",
        "dry_run": "print what would be done, change nothing",
        "json": "print JSON",
    }
)
@guarded
def setup(
    c: Context,
    env: str | None = None,
    cluster: str | None = None,
    yes: bool = False,
    dry_run: bool = False,
    json: bool = False,
) -> None:
    """Point archive_command at the repository on the primary, then prove a WAL segment gets archived."""
    from dbrunbook.engines.postgresql.archive import setup_archiving

    run = TaskRun.start("archive.setup", env=env, json_mode=json, dry_run=dry_run)
    try:
        ctx = run.cluster_context(cluster)
        result = setup_archiving(ctx, confirm=lambda q: confirm(q, yes=yes, dry_run=dry_run))
    finally:
        run.close()
    plan = list(run.settings.plan)

    def human(console: Any) -> None:
        if dry_run:
            console.print("dry run, nothing changed. Plan:")
            for line in plan:
                console.print(f"  {line}", markup=False)
            return
        console.print(f"{result.cluster}: archiving from {result.host} into the repository", markup=False)
        console.print(f"  archive_command = {result.archive_command}", markup=False)
        console.print(f"  verified: {result.verified_segment} archived", markup=False)

    run.out.result(result.as_dict(plan), human)
