"""backup.sign and keys.signing-init: the controller's manifest signing key and the backups it vouches for."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from invoke.context import Context

from dbrunbook.errors import ConfigError
from dbrunbook.tasks.common import ENV, TaskRun, guarded, task


@task(
    name="sign",
    help={
        "env": ENV,
        "cluster": "the cluster (optional when the inventory has one)",
        "backup_id": "all (default) or one backup id",
        "jobs": "objects read in parallel while checking (default 4)",
        "dry_run": "list what would be signed, check nothing, write nothing",
        "yes": "do not ask for confirmation",
        "json": "print JSON",
    },
)
@guarded
def sign(
    c: Context,
    env: str | None = None,
    cluster: str | None = None,
    backup_id: str = "all",
    jobs: int = 4,
    dry_run: bool = False,
    yes: bool = False,
    json: bool = False,
) -> None:
    """Sign backups an older dbrunbook wrote without a signature, after reading every object of each back."""
    from dbrunbook.backup.trust import SignResult, plan_signing, sign, verify_candidates
    from dbrunbook.errors import VerifyFailed
    from dbrunbook.output import confirm

    run = TaskRun.start("backup.sign", env=env, json_mode=json, dry_run=dry_run)
    ctx = run.cluster_context(cluster)
    with ctx.lease("sign", exclusive=True, dry_run=dry_run):
        catalog = ctx.catalog(cached=False)
        plan = plan_signing(ctx.name, catalog, backup_id)
        result = SignResult(plan, dry_run)
        if plan.candidates and not dry_run:
            reports = verify_candidates(ctx, catalog, plan, jobs)
            good = {r.backup_id for r in reports if r.ok}
            result = SignResult(plan, dry_run, failed=tuple(r for r in reports if not r.ok))
            chosen = [r for r in plan.candidates if r.folder in good]
            if chosen:
                confirm(f"sign {len(chosen)} backups of {ctx.name} as the controller's own", yes=yes)
                result = SignResult(plan, dry_run, tuple(sign(ctx, chosen)), result.failed)

    def human(console: Any) -> None:
        for b in plan.unsigned:
            state = "signed" if b.backup_id in result.signed else ("dry run" if dry_run else "NOT signed")
            console.print(
                f"{ctx.name} {b.backup_id} {b.kind} ended {b.stop_time[:19]} from {b.source_host}, "
                f"{b.objects} objects: {state}",
                markup=False,
            )
        for f in result.failed:
            console.print(f"  {f.backup_id} failed its check: {f.problems[0].what}", markup=False)
        for r in plan.others:
            console.print(f"{ctx.name} REFUSED, not signable: {r.key}: {r.reason}", markup=False)
        if not plan.candidates and not plan.others:
            console.print(f"{ctx.name}: every manifest is signed")

    run.out.result(result.as_dict(), human)
    if result.failed:
        first = result.failed[0]
        failure = VerifyFailed(
            f"{len(result.failed)} unsigned backups failed their check and were not signed; first: "
            f"{first.backup_id}: {first.problems[0].what}"
        )
        failure.reported = True
        raise failure


@task(
    name="signing-init",
    help={"out": "where to write the new private key (PEM, 0600); refused if the file exists", "json": "print JSON"},
)
@guarded
def signing_init(c: Context, out: str, json: bool = False) -> None:
    """Make the controller's manifest signing key; prints the public key for encryption.signers."""
    from dbrunbook.backup.trust import SigningKeyMade
    from dbrunbook.output import Output
    from dbrunbook.repository.signing import generate

    path = Path(out).expanduser()
    pem, public = generate()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists; a signing key is never overwritten", hint="choose another --out") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(pem)
    made = SigningKeyMade(str(path.absolute()), public)

    def human(console: Any) -> None:
        console.print(f"wrote {made.private_key} (keep it on the controller only; back it up with the identities)")
        console.print("add to every cluster's encryption section:", markup=False)
        console.print(f"    signing_key: file:{made.private_key}\n    signers:\n      - {public}", markup=False)

    Output(json_mode=json).result(made.as_dict(), human)
