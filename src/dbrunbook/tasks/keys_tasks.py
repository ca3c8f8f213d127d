"""keys.*: the age keyring of a cluster's repository: what needs which identity, and rotation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke.context import Context

from dbrunbook.tasks.common import CLUSTER, CLUSTERS, ENV, FORKS, LIMIT, TaskRun, guarded, task

if TYPE_CHECKING:
    from dbrunbook.backup.keys import KeyStatus
    from dbrunbook.context import ClusterContext
    from dbrunbook.tasks.fleet_report import ClusterReport


def _status(ctx: ClusterContext) -> KeyStatus:
    from dbrunbook.backup.keys import key_status

    return key_status(ctx.name, ctx.storage, ctx.catalog(), ctx.identities(), ctx.recipients)


def _human(report: KeyStatus) -> Callable[[Any], None]:
    def render(console: Any) -> None:
        console.print(f"{report.cluster}: new objects are encrypted to {', '.join(report.recipients)}")
        for ident in report.identities:
            state = (
                "REMOVABLE: nothing kept needs it"
                if ident.removable
                else (f"only key for {ident.only_key_for_backups} backups and {ident.only_key_for_wal} WAL files")
            )
            console.print(f"  identity {ident.recipient}: {state}", markup=False)
        for w in report.wal:
            console.print(f"  WAL {w.first}..{w.last} ({w.count}): {', '.join(w.opened_by)}", markup=False)
        for item in report.unreadable:
            console.print(f"  NO IDENTITY OPENS {item}", markup=False)
        for r in report.recipients_without_identity:
            console.print(f"  warning: no identity in the keyring for recipient {r}", markup=False)

    return render


@task(
    help={
        "env": ENV,
        "cluster": CLUSTERS,
        "limit": LIMIT,
        "forks": FORKS,
        "json": "print JSON",
    }
)
@guarded
def status(
    c: Context,
    env: str | None = None,
    cluster: str | None = None,
    json: bool = False,
    limit: str | None = None,
    forks: int = 1,
) -> None:
    """Which identity each backup and WAL file needs; which identities can leave the keyring."""
    from dbrunbook.tasks.fleet_report import report_fleet

    run = TaskRun.start("keys.status", env=env, json_mode=json)
    try:
        report_fleet(
            run,
            "keys.status",
            cluster,
            limit,
            forks,
            _status_one,
            applies=_has_repository,
        )
    finally:
        run.close()


def _has_repository(ctx: ClusterContext) -> bool:
    return ctx.cluster.repository is not None


def _status_one(ctx: ClusterContext) -> ClusterReport:
    from dbrunbook.errors import NoMatchingIdentityError
    from dbrunbook.tasks.fleet_report import ClusterReport

    report = _status(ctx)
    finding = None
    if report.unreadable:
        finding = NoMatchingIdentityError(
            f"{len(report.unreadable)} objects cannot be opened by any identity in the keyring; "
            f"first: {report.unreadable[0]}",
            hint="add the identity they were encrypted to (encryption.identities)",
        )
    return ClusterReport(report.as_dict(), _human(report), finding)


@task(
    help={
        "env": ENV,
        "cluster": CLUSTER,
        "identity_file": "the new age identity (created 0600 if missing)",
        "keep_old": "keep encrypting to the old recipients too (default: the new one replaces them)",
        "dry_run": "say what would change, change nothing",
        "yes": "do not ask for confirmation",
        "json": "print JSON",
    }
)
@guarded
def rotate(
    c: Context,
    identity_file: str,
    env: str | None = None,
    cluster: str | None = None,
    keep_old: bool = False,
    dry_run: bool = False,
    yes: bool = False,
    json: bool = False,
) -> None:
    """Encrypt new backups and WAL to a new recipient; old identities stay in the keyring to restore old backups."""
    from dbrunbook.backup.keys import Rotation, new_identity_file
    from dbrunbook.execution.command import Command
    from dbrunbook.inventory.edit import rotate_recipients
    from dbrunbook.output import confirm
    from dbrunbook.repository import hostconfig
    from dbrunbook.repository.crypto import recipient_of

    run = TaskRun.start("keys.rotate", env=env, json_mode=json, dry_run=dry_run)
    ctx = run.cluster_context(cluster)
    path = Path(identity_file).expanduser().absolute()
    if dry_run:
        _rotate_dry_run(run, ctx, path, keep_old=keep_old)
        return
    confirm(f"rotate the encryption key of {ctx.name} (edits {run.loaded.path})", yes=yes)
    # Exclusive: a backup that read the old recipients must not finish after the switch unnoticed.
    with ctx.lease("keys-rotate", exclusive=True):
        recipient = recipient_of(new_identity_file(path))
        retired = rotate_recipients(run.loaded.path, ctx.name, recipient, f"file:{path}", keep_old=keep_old)
    run.close()

    # From here on, everything reads the edited inventory.
    run = TaskRun.start("keys.rotate", env=env, json_mode=json)
    ctx = run.cluster_context(cluster)
    primary_name, _ = ctx.cluster.primary()
    ex = ctx.executor(primary_name)
    config_dir = f"{ex.home()}/.config/dbrunbook/{ctx.name}"
    archiving = ex.run(
        Command(("test", "-f", f"{config_dir}/{hostconfig.CONFIG_NAME}"), mutating=False, check=False)
    ).ok
    if archiving:
        # archive_command reads this file for every segment: WAL is encrypted to the new key from now on.
        hostconfig.install(ex, config_dir, hostconfig.build(ctx.name, ctx.cluster, ctx.resolver, with_identities=False))
    try:
        report = _status(ctx)
    finally:
        run.close()
    result = Rotation(report, recipient, tuple(retired), archiving)

    def human(console: Any) -> None:
        console.print(f"{ctx.name}: new objects are now encrypted to {recipient}", markup=False)
        if archiving:
            console.print(f"  WAL archiving on {primary_name} uses it from the next segment", markup=False)
        _human(report)(console)

    run.out.result(result.as_dict(), human)


def _rotate_dry_run(run: TaskRun, ctx: ClusterContext, path: Path, *, keep_old: bool) -> None:
    from dbrunbook.backup.keys import RotationPlan

    retire = [] if keep_old else ctx.recipients
    plan = RotationPlan(ctx.name, str(path), tuple(retire))
    run.out.result(
        plan.as_dict(),
        lambda console: console.print(
            f"dry run: would encrypt new objects of {ctx.name} to the identity in {path} (created if missing), "
            f"retire {', '.join(retire) or 'no recipient'}, and edit {run.loaded.path}",
            markup=False,
        ),
    )
