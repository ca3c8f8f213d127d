"""PostgreSQL physical full backup, controller side.

The controller holds ``pg_backup_start``/``pg_backup_stop`` on one session while the host command streams
the data directory into the repository from the database host itself. The backup becomes visible only
when its manifest is written, and that happens only after the WAL up to the stop LSN is in the
repository: a listed backup always restores.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

from dbrunbook import __version__
from dbrunbook.backup import hostconfig
from dbrunbook.backup.context import ClusterContext
from dbrunbook.backup.lsn import parse_backup_label, parse_lsn, segment_of_stop
from dbrunbook.backup.manifest import Manifest, ObjectEntry, manifest_key, new_backup_id, object_key
from dbrunbook.backup.objects import store
from dbrunbook.backup.pg_archive import ARCHIVING_SQL
from dbrunbook.backup.wal import WalName
from dbrunbook.errors import BackupError
from dbrunbook.execution.command import Command, SqlStatement
from dbrunbook.inventory.model import Role

Step = Callable[[str], None]
WAL_WAIT_SECONDS = 120


def pick_source(ctx: ClusterContext, source: str) -> str:
    if source == "primary":
        return ctx.cluster.primary()[0]
    replicas = [n for n, h in ctx.cluster.hosts.items() if h.role is Role.REPLICA]
    if not replicas:
        raise BackupError(f"cluster '{ctx.name}' has no replica to back up from")
    return replicas[0]


def physical_backup(
    ctx: ClusterContext, *, source: str = "primary", jobs: int = 2, step: Step = lambda _m: None
) -> Manifest:
    host_name = pick_source(ctx, source)
    host = ctx.host(host_name)
    primary_name, primary = ctx.cluster.primary()
    ex = ctx.executor(host_name)
    agent = ctx.agent(host_name)
    backup_id = new_backup_id("physical")
    label = f"dbrunbook {backup_id}"
    recipients = ctx.recipients

    with ctx.engine.session(ctx.executor(primary_name), primary, ctx.login()) as pdb:
        mode, command = pdb.execute(ARCHIVING_SQL)[0]
        if mode == "off" or not command or "wal-push" not in command:
            raise BackupError(
                f"WAL archiving into the repository is not configured on {primary_name}",
                hint=f"run: invoke archive.setup --cluster {ctx.name}",
            )

    with (
        hostconfig.temporary(ex, ctx.name, ctx.cluster, ctx.resolver, with_identities=False) as config,
        ctx.engine.session(ex, host, ctx.login()) as db,
    ):
        version, system_id, timeline = db.execute(
            SqlStatement(
                "SELECT current_setting('server_version'), "
                "(SELECT system_identifier::text FROM pg_control_system()), "
                "(SELECT timeline_id FROM pg_control_checkpoint())",
                description="cluster identity",
                mutating=False,
            )
        )[0]
        step(f"pg_backup_start on {host_name}")
        start_time = datetime.now(UTC)
        db.execute(SqlStatement("SELECT pg_backup_start(%s, true)", params=(label,), description="start backup"))
        try:
            step(f"streaming the data directory of {host_name}")
            res = ex.run(
                Command(
                    (
                        agent,
                        "backup-push",
                        "--config",
                        config,
                        "--data-dir",
                        host.data_dir,
                        "--backup-id",
                        backup_id,
                        "--jobs",
                        str(jobs),
                    ),
                    description="stream data directory",
                )
            )
            lines = res.stdout.strip().splitlines()
            if not lines and not ctx.settings.dry_run:
                raise BackupError(f"{host_name}: dbrunbook-host backup-push printed no object list")
            objects = [ObjectEntry.model_validate(o) for o in json.loads(lines[-1])] if lines else []
        finally:
            step("pg_backup_stop")
            # wait_for_archive=false: we wait ourselves, for the repository, which is what matters.
            stop_lsn, labelfile, spcmap = db.execute(
                SqlStatement(
                    "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)",
                    description="stop backup",
                )
            )[0]
        stop_time = datetime.now(UTC)
    label_info = parse_backup_label(labelfile)
    tli = int(label_info.get("START TIMELINE") or timeline)
    stop_wal = segment_of_stop(tli, parse_lsn(stop_lsn))
    for name, text in (("backup_label", labelfile), ("tablespace_map", spcmap)):
        if text:
            objects.append(store(ctx.storage, name, object_key(backup_id, name), [text.encode()], recipients))

    step(f"waiting for WAL {stop_wal} in the repository")
    with ctx.engine.session(ctx.executor(primary_name), primary, ctx.login()) as pdb:
        # A replica's stop segment is only archived once the primary leaves it.
        pdb.execute(SqlStatement("SELECT pg_switch_wal()", description="close the current WAL segment"))
    wait_for_wal(ctx, stop_wal)

    manifest = Manifest(
        backup_id=backup_id,
        kind="physical",
        engine="postgresql",
        cluster=ctx.name,
        system_identifier=system_id,
        server_version=version,
        timeline=tli,
        start_lsn=label_info.get("start_lsn"),
        stop_lsn=stop_lsn,
        start_wal=label_info.get("start_wal"),
        stop_wal=stop_wal,
        start_time=start_time,
        stop_time=stop_time,
        source_host=host_name,
        objects=objects,
        recipients=recipients,
        tool_version=__version__,
        extra={"label": label},
    )
    step("writing the manifest")
    store(ctx.storage, "manifest", manifest_key(backup_id), [manifest.to_json()], recipients)
    return manifest


def wait_for_wal(ctx: ClusterContext, segment: str, timeout: float = WAL_WAIT_SECONDS) -> None:
    prefix = WalName(segment).prefix()
    deadline = time.monotonic() + timeout
    while not any(True for _ in ctx.storage.list(prefix)):
        if time.monotonic() > deadline:
            raise BackupError(
                f"WAL segment {segment} did not reach the repository within {timeout:g}s; the backup is not usable",
                hint="check archive_command errors in the PostgreSQL log and pg_stat_archiver",
            )
        time.sleep(0.5)
