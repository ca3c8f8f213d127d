"""drill.*: scheduled proof that the backups restore, with RTO/RPO evidence."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke.context import Context

from dbrunbook.errors import DbrunbookError, DrillError, LeaseHeld
from dbrunbook.tasks.common import CLUSTERS, ENV, LIMIT, TaskRun, guarded, task


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

    from dbrunbook.metrics import metrics_text, write_metrics

    def interrupted(_sig: int, _frame: object) -> None:
        # systemd and Kubernetes stop a job with SIGTERM: unwind like Ctrl-C, so the drill's server is
        # torn down by the drill's own cleanup instead of being left running.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    task_run = TaskRun.start("drill.run", env=env, json_mode=json)
    results: list[dict[str, Any]] = []
    failures: list[DbrunbookError] = []
    busy: list[dict[str, str]] = []
    try:
        clusters = task_run.loaded.inventory.clusters
        names = [n for n in task_run.select(cluster, limit) if clusters[n].repository is not None]
        if not names:
            raise DrillError("no cluster with a repository to drill")
        for name in names:
            ask = {"backup": backup, "target": target, "kind": kind, "keep": keep, "seed": seed}
            _drill_one(task_run, name, results, failures, busy, ask)
    finally:
        task_run.close()
    if metrics_file:
        write_metrics(metrics_file, metrics_text(results))
    if heartbeat_url and not failures:
        problem = heartbeat(heartbeat_url)
        for r in results:
            r["heartbeat"] = problem or "sent"

    task_run.out.result({"ok": not failures, "drills": results, "busy": busy}, _drill_human(results, busy))
    if failures:
        worst = max(failures, key=lambda e: e.exit_code)  # the first of the most severe
        worst.reported = True
        raise worst


def _drill_one(
    task_run: TaskRun,
    name: str,
    results: list[dict[str, Any]],
    failures: list[DbrunbookError],
    busy: list[dict[str, str]],
    ask: dict[str, Any],
) -> None:
    """One cluster's drill, its result and failure appended; a busy cluster is not a failed drill."""
    from dbrunbook.drill.run import run_drill

    ctx = task_run.cluster_context(name)
    try:
        # One drill per cluster at a time (a second one would tear down the first one's server), and no prune
        # under it. A busy cluster gets no result and no metrics.
        with ctx.lease("drill"), task_run.out.steps(f"drill.run {name}") as step:
            result, failure = run_drill(ctx, task_run.find_host, step=step, **ask)
    except LeaseHeld as exc:
        busy.append({"cluster": name, "reason": exc.one_line()})
        failures.append(exc)
        return
    results.append(result)
    if failure is not None:
        failures.append(failure)


def _drill_human(results: list[dict[str, Any]], busy: list[dict[str, str]]) -> Callable[[Any], None]:
    def human(console: Any) -> None:
        for b in busy:
            console.print(f"{b['cluster']}: drill NOT RUN: {b['reason']}", markup=False)
        for r in results:
            state = "PASSED" if r["ok"] else "FAILED"
            console.print(f"{r['cluster']}: drill {state}: {r['reason']}", markup=False)
            if r.get("backup"):
                rpo = f"{r['rpo_seconds']:.0f}s" if r.get("rpo_seconds") is not None else "unknown"
                console.print(
                    f"  backup {r['backup']} ({r['kind']}) to {r['target_time']} on {r['host']}:{r['port']}; "
                    f"RTO {r.get('rto_seconds', '-')}s (target {r['rto_target'] or 'none'}), "
                    f"RPO {rpo} (target {r['rpo_target'] or 'none'})",
                    markup=False,
                )
            for check in r["checks"]:
                console.print(f"  {'ok ' if check['ok'] else 'BAD'} {check['name']}: {check['detail']}", markup=False)
            console.print(
                f"  {'torn down' if r.get('torn_down') else 'left running: ' + str(r.get('data_dir'))}; "
                f"result stored as {r['stored_as']}",
                markup=False,
            )

    return human


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
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        clusters = task_run.loaded.inventory.clusters
        for name in task_run.select(cluster, limit):
            if clusters[name].repository is not None:
                out[name] = load_history(task_run.cluster_context(name), last)
    finally:
        task_run.close()

    task_run.out.result({"clusters": out}, _history_human(out))


def _history_human(out: dict[str, list[dict[str, Any]]]) -> Callable[[Any], None]:
    def human(console: Any) -> None:
        for name, rows in out.items():
            console.print(f"{name}: {len(rows)} drills", markup=False)
            for r in rows:
                console.print(
                    f"  {r['started'][:19]}  {'PASSED' if r['ok'] else 'FAILED'}  RTO {r.get('rto_seconds', '-')}s  "
                    f"RPO {r.get('rpo_seconds', '-')}s  {r.get('backup', '-')}  {r['reason']}",
                    markup=False,
                )

    return human


def report_data(clusters: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the report page draws: per cluster, its drill results and its backups' sizes over time."""
    from dbrunbook.drill.plan import parse_duration

    out = []
    for name, c in clusters.items():
        keep = ("started", "ok", "backup", "target_time", "rto_seconds", "rpo_seconds", "reason")
        out.append(
            {
                "name": name,
                "engine": c["engine"],
                "rto_target": parse_duration(c["rto_target"]).total_seconds() if c.get("rto_target") else None,
                "rpo_target": parse_duration(c["rpo_target"]).total_seconds() if c.get("rpo_target") else None,
                "drills": [{k: d.get(k) for k in keep} for d in c["drills"]],
                "backups": [
                    {"backup_id": b["backup_id"], "stop_time": b["stop_time"], "stored_bytes": b["stored_bytes"]}
                    for b in c["backups"]
                ],
            }
        )
    return {"clusters": out}


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
    from dbrunbook.backup.summary import summary as _summary
    from dbrunbook.drill.run import history as load_history
    from dbrunbook.tasks.schedule_tasks import TEMPLATES

    task_run = TaskRun.start("drill.report", env=env, json_mode=json)
    clusters: dict[str, dict[str, Any]] = {}
    try:
        for name in task_run.select(cluster, limit):
            cl = task_run.loaded.inventory.clusters[name]
            if cl.repository is None:
                continue
            ctx = task_run.cluster_context(name)
            settings = cl.drill
            clusters[name] = {
                "engine": cl.engine.value,
                "rto_target": settings.rto_target if settings else None,
                "rpo_target": settings.rpo_target if settings else None,
                "drills": load_history(ctx, last),
                "backups": [_summary(m) for m in ctx.catalog().manifests],
            }
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
        data=report_data(clusters),
    )
    Path(out).write_text(html)
    drills = sum(len(c["drills"]) for c in clusters.values())
    task_run.out.result(
        {"out": out, "clusters": list(clusters), "drills": drills},
        lambda console: console.print(f"wrote {out}: {drills} drills of {len(clusters)} clusters", markup=False),
    )
