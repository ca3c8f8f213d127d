"""hosts.*: prepare database hosts for host-side work."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from invoke.context import Context

from dbrunbook.drill.place import LOCAL, local_place
from dbrunbook.errors import DrillError, InventoryError
from dbrunbook.execution.executor import LocalExecutor
from dbrunbook.hosts.setup import build_wheel, setup_host, temp_dir, venv_path
from dbrunbook.inventory.model import Cluster
from dbrunbook.tasks.common import TaskRun, guarded, task


def _with_drill_place(cluster: Cluster, only: str | None) -> tuple[list[tuple[str, Cluster]], str | None]:
    """The cluster's hosts, and ``local`` when its drills restore on this machine (the default); or why
    ``local`` cannot be set up here (no such OS user, no server binaries), which does not stop the rest."""
    out = [(name, cluster) for name in cluster.hosts if only in (None, name)]
    if only not in (None, LOCAL):
        return out, None
    try:
        place = local_place(cluster)
    except DrillError as exc:
        return out, exc.one_line()
    return (out if place is None else [*out, (LOCAL, place)]), None


@task(
    help={
        "env": "environment: inventory/<env>.yaml (default $DBRUNBOOK_ENV, else dev)",
        "cluster": "only this cluster's hosts",
        "host": "only this host (local: this machine, where drills restore by default)",
        "force": "reinstall even when the same build is there",
        "dry_run": "print what would be done, change nothing",
        "json": "print JSON",
    }
)
@guarded
def setup(
    c: Context,
    env: str | None = None,
    cluster: str | None = None,
    host: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    json: bool = False,
) -> None:
    """Install this dbrunbook build into a venv on each host (for WAL push and backup streaming there)."""
    run = TaskRun.start("hosts.setup", env=env, json_mode=json, dry_run=dry_run)
    selected = run.clusters(cluster)
    if host and host != LOCAL and not any(host in cl.hosts for cl in selected.values()):
        known = sorted(h for cl in selected.values() for h in cl.hosts)
        raise InventoryError(f"{run.loaded.path}: no host '{host}' (known: {', '.join(known)})")
    results: list[dict[str, str]] = []
    done: dict[tuple[str, str], dict[str, str]] = {}
    try:
        with temp_dir() as tmp, run.out.steps("hosts.setup") as step:
            wheel = build_wheel(LocalExecutor("localhost", run.settings), Path(tmp), sys.executable)
            for listed in selected.values():
                places, local_problem = _with_drill_place(listed, host)
                if local_problem:
                    results.append({"host": LOCAL, "action": "skipped", "reason": local_problem})
                for name, cl in places:
                    step(name)
                    ex = run.executor(cl, name)
                    venv = venv_path(ex, cl.hosts[name].tool_venv)
                    # Several hosts may be one machine and one user (the sandbox): install once.
                    key = (ex.describe(), venv)
                    if key in done:
                        results.append({**done[key], "host": name, "action": "shared"})
                        continue
                    done[key] = {**setup_host(ex, venv, wheel, force=force), "host": name}
                    results.append(done[key])
    finally:
        run.close()

    def human(console: Any) -> None:
        for r in results:
            if r["action"] == "skipped":  # local drills cannot run on this machine; the task goes on
                console.print(f"{r['host']:<20} {r['action']:<14} {r['reason']}", markup=False)
                continue
            console.print(f"{r['host']:<20} {r['action']:<14} dbrunbook {r['version']}  {r['venv']}")
        for line in run.settings.plan:
            console.print(f"  plan: {line}", markup=False)

    run.out.result({"hosts": results, "dry_run": dry_run, "plan": run.settings.plan}, human)
