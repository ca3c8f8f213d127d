"""drill.*: scheduled proof that the backups restore, with RTO/RPO evidence."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke.context import Context

from dbrunbook.errors import DbrunbookError, DrillError, LeaseHeld
from dbrunbook.tasks.common import CLUSTERS, ENV, LIMIT, TaskRun, guarded, task

if TYPE_CHECKING:
    from dbrunbook.drill.plan import DrillAsk
    from dbrunbook.drill.result import DrillPick, DrillResult, ReportCluster
    from dbrunbook.inventory.model import Cluster
    from dbrunbook.repository.manifest import Manifest


@dataclass(frozen=True)
class Busy:
    """A cluster drill.run did not drill: another drill (or a prune) holds its repository."""

    cluster: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "reason": self.reason}


def heartbeat(url: str) -> str | None:
    """Ping a dead man's switch (healthchecks.io, Cronitor, …) after a passing drill; the problem, if any."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - the operator's own URL
            return None if 200 <= resp.status < 300 else f"heartbeat answered {resp.status}"
    except OSError as exc:
        return f"heartbeat failed: {exc}"


@task(
    help={
        "env": ENV,
        "cluster": CLUSTERS,
        "limit": LIMIT,
        "backup": "latest (default), random (any restorable backup), or a backup id",
        "target": "latest (default: the newest restorable point) or random (a time inside the backup's window)",
        "kind": "only backups of this kind: logical, physical (incrementals included) or any (default)",
        "keep": "leave the restored server running for inspection (default: always torn down)",
        "seed": "seed for --backup/--target random (to repeat a drill exactly)",
        "metrics_file": "write Prometheus textfile-collector metrics here",
        "heartbeat_url": "GET this URL after a passing drill (a dead man's switch)",
        "json": "print JSON",
    }
)
@guarded
def run(
    c: Context,
    env: str | None = None,
    cluster: str | None = None,
    backup: str = "latest",
    target: str = "latest",
    kind: str = "any",
    keep: bool = False,
    seed: int | None = None,
    metrics_file: str | None = None,
    heartbeat_url: str | None = None,
    json: bool = False,
    limit: str | None = None,
) -> None:
    """Restore a backup into a disposable server, check every table, run the validation queries, measure
    RTO and RPO against the targets, tear it down, and store the result in the repository."""
    import signal

    from dbrunbook.drill.plan import DrillAsk
    from dbrunbook.metrics import metrics_text, write_metrics

    def interrupted(_sig: int, _frame: object) -> None:
        # systemd and Kubernetes stop a job with SIGTERM: unwind like Ctrl-C, so the drill's server is
        # torn down by the drill's own cleanup instead of being left running.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    task_run = TaskRun.start("drill.run", env=env, json_mode=json)
    results: list[DrillResult] = []
    failures: list[DbrunbookError] = []
    busy: list[Busy] = []
    try:
        clusters = task_run.loaded.inventory.clusters
        names = [n for n in task_run.select(cluster, limit) if clusters[n].repository is not None]
        if not names:
            raise DrillError("no cluster with a repository to drill")
        for name in names:
            _drill_one(task_run, name, results, failures, busy, DrillAsk(backup, target, kind, seed), keep)
    finally:
        task_run.close()
    if metrics_file:
        write_metrics(metrics_file, metrics_text(results))
    if heartbeat_url and not failures:
        problem = heartbeat(heartbeat_url)
        results = [replace(r, heartbeat=problem or "sent") for r in results]

    doc = {"ok": not failures, "drills": [r.as_dict() for r in results], "busy": [b.as_dict() for b in busy]}
    task_run.out.result(doc, _drill_human(results, busy))
    if failures:
        worst = max(failures, key=lambda e: e.exit_code)  # the first of the most severe
        worst.reported = True
        raise worst


def _drill_one(
    task_run: TaskRun,
    name: str,
    results: list[DrillResult],
    failures: list[DbrunbookError],
    busy: list[Busy],
    ask: DrillAsk,
    keep: bool,
) -> None:
    """One cluster's drill, its result and failure appended; a busy cluster is not a failed drill."""
    from dbrunbook.drill.run import run_drill

    ctx = task_run.cluster_context(name)
    try:
        # One drill per cluster at a time (a second one would tear down the first one's server), and no prune
        # under it. A busy cluster gets no result and no metrics.
        with ctx.lease("drill"), task_run.out.steps(f"drill.run {name}") as step:
            result, failure = run_drill(
                ctx,
                task_run.find_host,
                backup=ask.backup,
                target=ask.target,
                kind=ask.kind,
                keep=keep,
                seed=ask.seed,
                step=step,
            )
    except LeaseHeld as exc:
        busy.append(Busy(name, exc.one_line()))
        failures.append(exc)
        return
    results.append(result)
    if failure is not None:
        failures.append(failure)


def _drill_human(results: Sequence[DrillResult], busy: Sequence[Busy]) -> Callable[[Any], None]:
    def human(console: Any) -> None:
        for b in busy:
            console.print(f"{b.cluster}: drill NOT RUN: {b.reason}", markup=False)
        for r in results:
            console.print(f"{r.cluster}: drill {'PASSED' if r.ok else 'FAILED'}: {r.reason}", markup=False)
            if r.pick is not None and r.pick.backup:
                console.print(_pick_line(r, r.pick), markup=False)
            for check in r.checks:
                console.print(f"  {'ok ' if check.ok else 'BAD'} {check.name}: {check.detail}", markup=False)
            where = "torn down" if r.torn_down else f"left running: {r.place.data_dir if r.place else None}"
            console.print(f"  {where}; result stored as {r.stored_as}", markup=False)

    return human


def _pick_line(r: DrillResult, pick: DrillPick) -> str:
    """The chosen backup, where it was restored, and the RTO and RPO against their targets."""
    place = r.place
    rpo = f"{pick.rpo_seconds:.0f}s" if pick.rpo_seconds is not None else "unknown"
    on = f"{place.host}:{place.port}" if place else "?"  # a drill chooses only once it has a place
    return (
        f"  backup {pick.backup} ({pick.kind}) to {pick.target} on {on}; "
        f"RTO {r.recovery.rto_seconds if r.recovery else '-'}s (target {r.rto_target or 'none'}), "
        f"RPO {rpo} (target {r.rpo_target or 'none'})"
    )


@task(
    help={
        "env": ENV,
        "cluster": CLUSTERS,
        "limit": LIMIT,
        "last": "newest results per cluster (default 20)",
        "json": "print JSON",
    }
)
@guarded
def history(
    c: Context,
    env: str | None = None,
    cluster: str | None = None,
    last: int = 20,
    json: bool = False,
    limit: str | None = None,
) -> None:
    """Stored drill results from the repository, oldest first."""
    from dbrunbook.drill.run import history as load_history

    task_run = TaskRun.start("drill.history", env=env, json_mode=json)
    out: dict[str, list[DrillResult]] = {}
    try:
        clusters = task_run.loaded.inventory.clusters
        for name in task_run.select(cluster, limit):
            if clusters[name].repository is not None:
                out[name] = load_history(task_run.cluster_context(name), last)
    finally:
        task_run.close()

    doc = {"clusters": {name: [r.as_dict() for r in rows] for name, rows in out.items()}}
    task_run.out.result(doc, _history_human(out))


def _history_human(out: dict[str, list[DrillResult]]) -> Callable[[Any], None]:
    def human(console: Any) -> None:
        for name, rows in out.items():
            console.print(f"{name}: {len(rows)} drills", markup=False)
            for r in rows:
                pick = r.pick
                rto = r.recovery.rto_seconds if r.recovery else "-"
                rpo = pick.rpo_seconds if pick else "-"
                console.print(
                    f"  {r.started.isoformat()[:19]}  {'PASSED' if r.ok else 'FAILED'}  RTO {rto}s  "
                    f"RPO {rpo}s  {pick.backup if pick else '-'}  {r.reason}",
                    markup=False,
                )

    return human


def report_cluster(
    name: str, cluster: Cluster, drills: Sequence[DrillResult], backups: Sequence[Manifest]
) -> ReportCluster:
    """What the report page draws for one cluster: its targets in seconds, its drill results, its backups."""
    from dbrunbook.drill.plan import parse_duration
    from dbrunbook.drill.result import ReportCluster

    settings = cluster.drill
    rto, rpo = (settings.rto_target, settings.rpo_target) if settings else (None, None)
    return ReportCluster(
        name=name,
        engine=cluster.engine.value,
        rto_target=parse_duration(rto).total_seconds() if rto else None,
        rpo_target=parse_duration(rpo).total_seconds() if rpo else None,
        drills=drills,
        backups=backups,
    )


@task(
    help={
        "env": ENV,
        "cluster": CLUSTERS,
        "limit": LIMIT,
        "out": "the HTML file to write (default report.html)",
        "last": "newest drills per cluster (default 200)",
        "templates": "folder of the Jinja2 templates (default: the ones shipped with dbrunbook)",
        "json": "print JSON (the page is written all the same)",
    }
)
@guarded
def report(
    c: Context,
    env: str | None = None,
    cluster: str | None = None,
    out: str = "report.html",
    last: int = 200,
    templates: str | None = None,
    json: bool = False,
    limit: str | None = None,
) -> None:
    """One self-contained HTML page (no network): RTO and RPO over time, the last results, backup sizes."""
    from datetime import UTC, datetime

    import jinja2

    from dbrunbook import __version__
    from dbrunbook.drill.run import history as load_history
    from dbrunbook.tasks.schedule_tasks import TEMPLATES

    task_run = TaskRun.start("drill.report", env=env, json_mode=json)
    clusters: list[ReportCluster] = []
    try:
        for name in task_run.select(cluster, limit):
            cl = task_run.loaded.inventory.clusters[name]
            if cl.repository is None:
                continue
            ctx = task_run.cluster_context(name)
            clusters.append(report_cluster(name, cl, load_history(ctx, last), ctx.catalog().manifests))
    finally:
        task_run.close()
    folder = Path(templates) if templates else TEMPLATES
    page = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)), autoescape=True, undefined=jinja2.StrictUndefined
    ).get_template("report/drills.html.j2")
    html = page.render(
        env=task_run.env,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        data={"clusters": [c.as_dict() for c in clusters]},
    )
    Path(out).write_text(html)
    drills = sum(len(c.drills) for c in clusters)
    task_run.out.result(
        {"out": out, "clusters": [c.name for c in clusters], "drills": drills},
        lambda console: console.print(f"wrote {out}: {drills} drills of {len(clusters)} clusters", markup=False),
    )
