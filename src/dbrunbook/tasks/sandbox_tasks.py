"""sandbox.*: the built-in local environment (PostgreSQL, MariaDB, SeaweedFS S3, sshd on loopback)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from invoke.context import Context

from dbrunbook.inventory.loader import inventory_path
from dbrunbook.output import confirm
from dbrunbook.sandbox.layout import Layout
from dbrunbook.sandbox.manager import Sandbox
from dbrunbook.sandbox.state import SandboxDown, SandboxStatus
from dbrunbook.tasks.common import TaskRun, guarded, task


def _sandbox(run: TaskRun, step: Any = None) -> Sandbox:
    return Sandbox(Layout.from_env(), run.settings, inventory_path(run.env), step=step or (lambda _m: None))


ENV_HELP = "name of the inventory the sandbox writes and describes (default dev: inventory/dev.yaml)"


@task(help={"env": ENV_HELP, "json": "print JSON"})
@guarded
def up(c: Context, env: str = "dev", json: bool = False) -> None:
    """Start the sandbox (idempotent): pg-main and mariadb-main, each with a replica, S3 and sshd."""
    run = TaskRun.start("sandbox.up", env=env, json_mode=json)
    with run.out.steps("sandbox.up") as step:
        status = _sandbox(run, step).up()
    run.out.result(status.as_dict(), lambda console: _render(console, status))


@task(help={"env": ENV_HELP, "json": "print JSON"})
@guarded
def status(c: Context, env: str = "dev", json: bool = False) -> None:
    """Show the sandbox's clusters, ports, connection strings and what is running."""
    run = TaskRun.start("sandbox.status", env=env, json_mode=json)
    state = _sandbox(run).status()
    run.out.result(state.as_dict(), lambda console: _render(console, state))


@task(
    help={
        "env": ENV_HELP,
        "purge": "also delete .sandbox/ (all data, keys, passwords) and inventory/dev.yaml",
        "yes": "do not ask for confirmation",
        "dry_run": "print what would be done, change nothing",
        "json": "print JSON",
    }
)
@guarded
def down(
    c: Context, env: str = "dev", purge: bool = False, yes: bool = False, dry_run: bool = False, json: bool = False
) -> None:
    """Stop every sandbox server; with --purge, delete its data too."""
    run = TaskRun.start("sandbox.down", env=env, json_mode=json, dry_run=dry_run)
    sandbox = _sandbox(run)
    if purge:
        confirm(f"delete every sandbox database and key under {sandbox.layout.root}", yes=yes, dry_run=dry_run)
    result = replace(sandbox.down(purge=purge), dry_run=dry_run, plan=tuple(run.settings.plan))
    run.out.result(result.as_dict(), lambda console: _render_plan(console, result))


def _render_plan(console: Any, result: SandboxDown) -> None:
    if result.dry_run:
        console.print("[bold]dry run[/]: nothing was changed. Plan:")
        for line in result.plan or ():
            console.print(f"  {line}", markup=False)
    else:
        console.print("sandbox stopped" + (" and purged" if result.purged else ""))


def _render(console: Any, state: SandboxStatus) -> None:
    for cl in state.clusters:
        console.print(f"[bold]{cl.name}[/] ({cl.engine})  primary: {cl.primary_dsn}")
        for h in cl.hosts:
            mark = "[green]running[/]" if h.running else "[red]stopped[/]"
            console.print(f"  {h.name:<16} {h.role:<8} port {h.port:<6} via {h.via:<8} {mark}")
    running = state.running
    s3 = "[green]running[/]" if running["s3"] else "[red]stopped[/]"
    ssh = "[green]running[/]" if running["sshd"] else "[red]stopped[/]"
    console.print(f"S3: {state.s3_endpoint} bucket {state.bucket} {s3}")
    console.print(f"sshd: {state.ssh} {ssh}")
    if state.ssh_sudo:
        ops = "[green]running[/]" if running.get("sshd-ops") else "[red]stopped[/]"
        console.print(f"sshd (pg-main-2): {state.ssh_sudo} {ops}")
    for note in state.notes:
        console.print(f"[yellow]note[/]: {note}")
    console.print(f"passwords: {state.root}/secrets/   inventory: {state.inventory}")
