"""Report tasks over a fleet (``backup.verify``, ``wal.check``, ``binlog.check``, ``keys.status``...): each cluster
gives a document, a human rendering and maybe a finding; the run goes on past a failing cluster, prints a recap
and exits with the worst code.

One selected cluster prints its document exactly as before fleets existed (scripts parse it); several print
``{"results": {cluster: document}, "clusters": recap}``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from dbrunbook.errors import DbrunbookError

if TYPE_CHECKING:
    from dbrunbook.context import ClusterContext
    from dbrunbook.fleet import FleetResult
    from dbrunbook.tasks.common import TaskRun


@dataclass(frozen=True)
class ClusterReport:
    """One cluster's part: what ``--json`` prints, how a person reads it, and what it found wrong."""

    doc: dict[str, Any]
    human: Callable[[Any], None]
    finding: DbrunbookError | None = None


#: whether a task applies to a cluster it was not explicitly given (binlog.* skip PostgreSQL clusters)
Applies = Callable[["ClusterContext"], bool]


def report_fleet(
    run: TaskRun,
    task_name: str,
    spec: str | None,
    limit: str | None,
    forks: int,
    one: Callable[[ClusterContext], ClusterReport],
    *,
    applies: Applies | None = None,
) -> None:
    """Run ``one`` over the selected clusters and print the result; raise the worst failure (already reported)."""
    from dbrunbook.fleet import run_fleet

    names = run.select(spec, limit)
    if applies is not None and not spec:
        names = [n for n in names if applies(run.cluster_context(n))]
        if not names:
            from dbrunbook.errors import InventoryError

            raise InventoryError(f"no cluster of {run.loaded.path} is one {task_name} works on")
    fleet = run_fleet(names, lambda name: one(run.cluster_context(name)), forks=forks)
    fleet = _with_findings(fleet)
    if len(names) == 1:
        _print_one(run, fleet)
    else:
        _print_many(run, task_name, fleet, names)
    worst = fleet.run_failure()
    if worst is not None:
        # One cluster: its finding was printed with its report, an error was not. Several: the recap says it all
        # in JSON; a person still gets the one line on stderr.
        worst.reported = run.out.json_mode if len(names) > 1 else worst is _finding_of(fleet)
        raise worst


def _with_findings(fleet: FleetResult[ClusterReport]) -> FleetResult[ClusterReport]:
    """A cluster whose report carries a finding failed, with the finding's exit code, in the recap too."""
    from dbrunbook.fleet import FleetResult

    return FleetResult(
        [
            replace(o, error=o.result.finding) if o.result is not None and o.result.finding is not None else o
            for o in fleet.outcomes
        ]
    )


def _finding_of(fleet: FleetResult[ClusterReport]) -> DbrunbookError | None:
    results = fleet.results
    return results[0].finding if results else None


def _print_one(run: TaskRun, fleet: FleetResult[ClusterReport]) -> None:
    outcome = fleet.outcomes[0]
    if outcome.result is not None:
        run.out.result(outcome.result.doc, outcome.result.human)


def _print_many(run: TaskRun, task_name: str, fleet: FleetResult[ClusterReport], names: list[str]) -> None:
    from dbrunbook.fleet import recap_lines

    def human(console: Any) -> None:
        for o in fleet.outcomes:
            if o.result is not None:
                o.result.human(console)
        ok = sum(1 for o in fleet.outcomes if o.ok)
        console.print(f"{task_name}: {ok} of {len(names)} clusters ok", markup=False)
        for line in recap_lines(fleet):
            console.print(line, markup=False)

    docs = {o.cluster: o.result.doc for o in fleet.outcomes if o.result is not None}
    run.out.result({"results": docs, "clusters": fleet.recap()}, human)
