"""inventory.*: look at the inventory and at the hosts it describes."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from invoke.context import Context

from dbrunbook.engines import Login
from dbrunbook.errors import CheckFailed, HostError
from dbrunbook.execution.hostkeys import NewHostKey, is_recorded
from dbrunbook.hosts.check import HostReport, check_clusters, worst_error
from dbrunbook.inventory.model import Cluster
from dbrunbook.output import confirm
from dbrunbook.tasks.common import TaskRun, guarded, task


@task(
    help={
        "env": "environment: inventory/<env>.yaml (default $DBRUNBOOK_ENV, else dev)",
        "cluster": "only this cluster",
        "json": "print JSON",
    }
)
@guarded
def show(c: Context, env: str | None = None, cluster: str | None = None, json: bool = False) -> None:
    """Print the inventory as dbrunbook reads it (defaults filled in, secret references, never values)."""
    run = TaskRun.start("inventory.show", env=env, json_mode=json)
    clusters = run.clusters(cluster)
    data = {
        "env": run.loaded.env,
        "file": str(run.loaded.path),
        "clusters": {name: cl.model_dump(mode="json") for name, cl in clusters.items()},
    }

    def human(console: Any) -> None:
        console.print(f"[bold]{run.loaded.path}[/] (env {run.loaded.env})")
        for name, cl in clusters.items():
            console.print(f"\n[bold]{name}[/]  engine={cl.engine.value} version={cl.version or '-'}")
            for hname, h in cl.hosts.items():
                conn = h.connection
                via = "local" if conn.type == "local" else f"ssh {conn.user}@{conn.host}:{conn.port}"
                up = f" <- {cl.upstream_of(hname)}" if h.replicates_from or h.role.value == "replica" else ""
                console.print(f"  {hname:<20} {h.role.value:<8}{up:<18} {via:<32} port {h.port}  {h.data_dir}")
            if cl.repository:
                console.print(f"  repository: {cl.repository.url}")

    run.out.result(data, human)


@task(
    help={
        "env": "environment: inventory/<env>.yaml (default $DBRUNBOOK_ENV, else dev)",
        "cluster": "only this cluster",
        "json": "print JSON",
        "accept-new-host-keys": "first contact: ask to trust each SSH host key no known_hosts file lists, and "
        "record it in the inventory's known_hosts (a changed key is never accepted)",
        "yes": "with --accept-new-host-keys: trust new host keys without asking",
    }
)
@guarded
def check(
    c: Context,
    env: str | None = None,
    cluster: str | None = None,
    json: bool = False,
    accept_new_host_keys: bool = False,
    yes: bool = False,
) -> None:
    """Connect to every host and server: reachable, version, actual role vs declared, client binaries."""
    run = TaskRun.start("inventory.check", env=env, json_mode=json)
    clusters = run.clusters(cluster)

    def login_for(cl: Cluster) -> Login:
        cred = cl.credentials
        password = run.resolver.resolve(cred.password) if cred.password else None
        return Login(cred.user, password, cred.database)

    try:
        recorded = _first_contact(run, clusters, yes=yes) if accept_new_host_keys else []
        with run.out.steps("checking hosts"):
            reports = check_clusters(clusters, run.executor, login_for)
    finally:
        run.close()
    ok = all(r.ok for r in reports)
    run.out.result(
        {"env": run.loaded.env, "ok": ok, "hosts": [r.as_dict() for r in reports], "recorded_host_keys": recorded},
        lambda console: _render(console, reports, recorded),
    )
    if ok:
        return
    failed = worst_error(reports)
    bad = [r for r in reports if not r.ok]
    if failed is not None:
        exc = type(failed)(
            f"{len(bad)} of {len(reports)} hosts failed the check; first: {failed.message}", hint=failed.hint
        )
    else:
        first = next(r for r in bad)
        exc = CheckFailed(
            f"{len(bad)} of {len(reports)} hosts differ from the inventory; first: "
            f"{first.cluster}/{first.host}: {first.problems[0]}"
        )
    exc.reported = True
    raise exc


def _first_contact(run: TaskRun, clusters: dict[str, Cluster], *, yes: bool) -> list[dict[str, str]]:
    """Connect to each SSH host once, one after the other, asking about every host key no known_hosts file
    lists. An accepted key is recorded before the check, which then reuses the open connection."""
    recorded: list[dict[str, str]] = []

    lines: dict[str, str] = {}

    def ask(key: NewHostKey) -> None:
        confirm(f"trust the SSH host key of {key.host} ({key.describe()}) and record it in {key.file}", yes=yes)
        lines[key.host] = key.line
        recorded.append(
            {
                "host": key.host,
                "name": key.name,
                "key_type": key.key_type,
                "fingerprint": key.fingerprint,
                "file": str(key.file),
            }
        )

    for cl in clusters.values():
        for host_name in cl.hosts:
            # Unreachable, refused, a changed key: the check below reports it for that host.
            with contextlib.suppress(HostError):
                run.executor(cl, host_name).connect(on_new_host_key=ask)
    # Only what really reached the file: writing it can fail after the operator said yes.
    return [r for r in recorded if is_recorded(Path(r["file"]), lines[r["host"]])]


def _render(console: Any, reports: list[HostReport], recorded: list[dict[str, str]]) -> None:
    """One short block per host: narrow terminals and cron mail both read it."""
    for key in recorded:
        console.print(f"recorded host key of {key['host']}: {key['name']} {key['key_type']} {key['fingerprint']}")
    for r in reports:
        if r.error:
            verdict = f"[red]FAILED[/] {r.error['message']}"
        elif r.problems:
            verdict = "[yellow]DIFFERS[/]"
        else:
            verdict = "[green]ok[/]"
        console.print(f"[bold]{r.cluster}/{r.host}[/]  {verdict}")
        console.print(f"    reached via   {r.via} ({'reachable' if r.reachable else 'unreachable'})")
        if r.server_version:
            console.print(f"    server        {r.server_version}")
        role = r.actual_role or "?"
        same = "as declared" if r.actual_role == r.declared_role else f"[red]declared {r.declared_role}[/]"
        if r.actual_role:
            console.print(f"    role          {role} ({same})")
        if r.actual_role == "replica":
            lag = f", lag {r.lag_seconds:.0f}s" if r.lag_seconds is not None else ""
            console.print(f"    replication   {r.replication_state} from {r.upstream}{lag}")
        if r.binaries:
            found = [f"{b['name']} {b['major'] or ''}".strip() for b in r.binaries if b["path"]]
            console.print(f"    binaries      {len(found)}/{len(r.binaries)}: {', '.join(found)}")
        for p in r.problems:
            console.print(f"    [yellow]problem[/]       {p}")
