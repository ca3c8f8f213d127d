"""PostgreSQL physical full backup, controller side.

The controller holds ``pg_backup_start``/``pg_backup_stop`` on one session while the host command streams
the data directory into the repository from the database host itself. The backup becomes visible only
when its manifest is written, and that happens only after the WAL up to the stop LSN is in the
repository: a listed backup always restores.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dbrunbook import __version__
from dbrunbook.engines.access import DEFAULT_MAX_CHAIN, ClusterAccess, pick_source
from dbrunbook.engines.postgresql.archive import ARCHIVING_SQL
from dbrunbook.engines.postgresql.incremental import FILE_LIST
from dbrunbook.engines.postgresql.lsn import parse_backup_label, parse_lsn, segment_of_stop
from dbrunbook.engines.postgresql.wal import WalName
from dbrunbook.errors import BackupError
from dbrunbook.execution.command import Command, SqlStatement
from dbrunbook.execution.executor import HostExecutor
from dbrunbook.execution.poll import REAL, Clock, wait_until
from dbrunbook.execution.sql import DbSession, Row
from dbrunbook.repository import hostconfig
from dbrunbook.repository.catalog import Catalog
from dbrunbook.repository.manifest import Manifest, ObjectEntry, object_key
from dbrunbook.repository.objects import load_bytes, store

Step = Callable[[str], None]
WAL_WAIT_SECONDS = 120


@dataclass(frozen=True)
class ServerFacts:
    """What decides whether page LSNs can be trusted against a parent backup."""

    system_id: str
    timeline: int
    hint_bits_logged: bool  # wal_log_hints or data checksums: every page change moves the page LSN
    data_checksums: int  # pg_control's data_page_checksum_version
    source_host: str


def pick_parent(catalog: Catalog, server: ServerFacts, max_chain: int | None) -> tuple[Manifest | None, str]:
    """The backup an incremental builds on, or None and why the next backup has to be a full one."""
    # The newest backup of this very host: another host's files have other inodes, so nothing would match.
    parent = next(
        (
            m
            for m in reversed(catalog.manifests)
            if m.kind in ("physical", "incremental") and m.source_host == server.source_host
        ),
        None,
    )
    why = _cannot_build_on(catalog, parent, server, DEFAULT_MAX_CHAIN if max_chain is None else max_chain)
    if why or parent is None:
        return None, why or "no parent"
    return parent, f"incremental on {parent.backup_id}"


def _cannot_build_on(catalog: Catalog, parent: Manifest | None, server: ServerFacts, limit: int) -> str | None:
    if not server.hint_bits_logged:
        # Without them, VACUUM sets PD_ALL_VISIBLE (and hint bits) without moving the page LSN: a page
        # left out as "unchanged" would restore without the flag, and index-only scans would then see
        # deleted rows. pg_rewind has the same requirement.
        return "page-level incrementals need wal_log_hints = on or data checksums"
    if parent is None:
        return f"there is no physical backup of {server.source_host} to build on"
    p = parent.backup_id
    refusals = [
        (parent.system_identifier != server.system_id, f"the newest backup {p} is of another system identifier"),
        (
            parent.timeline != server.timeline,
            f"the timeline changed since {p} ({parent.timeline} -> {server.timeline})",
        ),
        (not any(o.name == FILE_LIST for o in parent.objects), f"{p} has no file list (taken by an older dbrunbook)"),
        (not parent.extra.get("hint_bits_logged"), f"{p} was taken without wal_log_hints or data checksums"),
        # pg_checksums rewrites every page without moving its LSN.
        (parent.extra.get("data_checksums") != server.data_checksums, f"data checksums changed since {p}"),
    ]
    why = next((message for failed, message in refusals if failed), None)
    if why:
        return why
    try:
        chain = catalog.chain(parent)
    except BackupError as exc:
        return exc.message
    if len(chain) - 1 >= limit:
        return f"the chain from {chain[0].backup_id} already has {len(chain) - 1} incrementals (max_chain {limit})"
    return None


IDENTITY_SQL = SqlStatement(
    "SELECT current_setting('server_version'), "
    "(SELECT system_identifier::text FROM pg_control_system()), "
    "(SELECT timeline_id FROM pg_control_checkpoint()), "
    # In bytes (unit B) since PostgreSQL 11, whatever --wal-segsize initdb was given.
    "(SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'), "
    "current_setting('wal_log_hints') = 'on' OR current_setting('data_checksums') = 'on', "
    "(SELECT data_page_checksum_version FROM pg_control_init())",
    description="cluster identity",
    mutating=False,
)


def physical_backup(
    ctx: ClusterAccess,
    *,
    source: str = "primary",
    jobs: int = 2,
    step: Step = lambda _m: None,
    incremental: bool = False,
) -> Manifest:
    host_name = pick_source(ctx, source)
    host = ctx.host(host_name)
    ex = ctx.executor(host_name)
    agent = ctx.agent(host_name)
    recipients = ctx.recipients
    require_archiving(ctx)

    with (
        hostconfig.temporary(ex, ctx.name, ctx.cluster, ctx.resolver, with_identities=False) as config,
        ctx.engine.session(ex, host, ctx.login()) as db,
    ):
        identity = db.execute(IDENTITY_SQL)[0]
        parent, why = _choose_parent(ctx, identity, host_name, incremental=incremental, step=step)
        backup_id = ctx.new_backup_id("incremental" if parent else "physical")
        label = f"dbrunbook {backup_id}"
        push = _push_command(ctx, agent, config, host.data_dir, backup_id, jobs=jobs, parent=parent)
        step(f"pg_backup_start on {host_name}")
        start_time = datetime.now(UTC)
        db.execute(SqlStatement("SELECT pg_backup_start(%s, true)", params=(label,), description="start backup"))
        objects, (stop_lsn, labelfile, spcmap) = _stream_then_stop(ctx, ex, db, push, host_name, step)
        stop_time = datetime.now(UTC)
    timeline, seg_size = identity[2:4]  # in IDENTITY_SQL's order
    label_info = parse_backup_label(labelfile)
    tli = int(label_info.get("START TIMELINE") or timeline)
    stop_wal = segment_of_stop(tli, parse_lsn(stop_lsn), int(seg_size))
    objects += [
        store(ctx.storage, name, object_key(backup_id, name), [text.encode()], recipients)
        for name, text in (("backup_label", labelfile), ("tablespace_map", spcmap))
        if text
    ]
    step(f"waiting for WAL {stop_wal} in the repository")
    switch_and_wait(ctx, stop_wal)
    manifest = _manifest(
        ctx,
        identity,
        backup_id=backup_id,
        parent=parent,
        extra={"label": label, "why": why},
        label_info=label_info,
        timeline=tli,
        stop=(stop_lsn, stop_wal),
        times=(start_time, stop_time),
        source_host=host_name,
        objects=objects,
        recipients=recipients,
    )
    step("writing the manifest")
    ctx.write_manifest(manifest)
    return manifest


def _choose_parent(
    ctx: ClusterAccess, identity: Row, host_name: str, *, incremental: bool, step: Step
) -> tuple[Manifest | None, str]:
    """The backup an incremental builds on (None for a full backup), and why."""
    _, system_id, timeline, _, hints, checksums = identity
    parent: Manifest | None = None
    why = "full backup requested"
    # A repository prefix that already holds another system's backups (a re-initialised cluster, a copied
    # inventory) would mix two WAL streams under the same names: refuse before writing anything.
    catalog = ctx.catalog(system_id) if incremental or ctx.has_identities() else None
    if incremental and catalog is not None:
        retention = ctx.cluster.retention
        server = ServerFacts(system_id, int(timeline), bool(hints), int(checksums), host_name)
        parent, why = pick_parent(catalog, server, retention.max_chain if retention else None)
        step(why if parent else f"full backup: {why}")
    return parent, why


def _push_command(
    ctx: ClusterAccess, agent: str, config: str, data_dir: str, backup_id: str, *, jobs: int, parent: Manifest | None
) -> Command:
    """The agent's backup-push; an incremental also gets the parent's file list on stdin."""
    push = [agent, "backup-push", "--config", config, "--data-dir", data_dir]
    push += ["--backup-id", backup_id, "--jobs", str(jobs)]
    parent_files = None
    if parent is not None:
        assert parent.start_lsn is not None
        push += ["--parent-lsn", parent.start_lsn]
        parent_files = load_bytes(ctx.storage, parent.object(FILE_LIST).key, ctx.identities()).decode()
    what = "stream the pages changed since the parent" if parent else "stream data directory"
    return Command(tuple(push), stdin=parent_files, description=what)


def _stream_then_stop(
    ctx: ClusterAccess, ex: HostExecutor, db: DbSession, push: Command, host_name: str, step: Step
) -> tuple[list[ObjectEntry], Row]:
    """Stream the files while the backup is started; pg_backup_stop runs whatever happens to the stream.
    Returns the streamed objects and pg_backup_stop's (stop LSN, backup_label, tablespace_map)."""
    try:
        step(f"streaming the data directory of {host_name}")
        res = ex.run(push)
        lines = res.stdout.strip().splitlines()
        if not lines and not ctx.settings.dry_run:
            raise BackupError(f"{host_name}: dbrunbook-host backup-push printed no object list")
        objects = [ObjectEntry.model_validate(o) for o in json.loads(lines[-1])] if lines else []
    finally:
        step("pg_backup_stop")
        # wait_for_archive=false: we wait ourselves, for the repository, which is what matters.
        stopped = db.execute(
            SqlStatement(
                "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)",
                description="stop backup",
            )
        )[0]
    return objects, stopped


def _manifest(
    ctx: ClusterAccess,
    identity: Row,
    *,
    backup_id: str,
    parent: Manifest | None,
    extra: dict[str, Any],
    label_info: dict[str, str],
    timeline: int,
    stop: tuple[str, str],
    times: tuple[datetime, datetime],
    source_host: str,
    objects: list[ObjectEntry],
    recipients: list[str],
) -> Manifest:
    version, system_id, _, seg_size, hints, checksums = identity
    return Manifest(
        backup_id=backup_id,
        kind="incremental" if parent else "physical",
        parent=parent.backup_id if parent else None,
        engine="postgresql",
        cluster=ctx.name,
        system_identifier=system_id,
        server_version=version,
        timeline=timeline,
        start_lsn=label_info.get("start_lsn"),
        stop_lsn=stop[0],
        start_wal=label_info.get("start_wal"),
        stop_wal=stop[1],
        start_time=times[0],
        stop_time=times[1],
        source_host=source_host,
        objects=objects,
        recipients=recipients,
        tool_version=__version__,
        extra={
            **extra,
            "wal_segment_size": int(seg_size),
            "hint_bits_logged": bool(hints),
            "data_checksums": int(checksums),
        },
    )


def require_archiving(ctx: ClusterAccess) -> None:
    primary_name, primary = ctx.cluster.primary()
    with ctx.engine.session(ctx.executor(primary_name), primary, ctx.login()) as pdb:
        mode, command = pdb.execute(ARCHIVING_SQL)[0]
    if mode == "off" or not command or "wal-push" not in command:
        raise BackupError(
            f"WAL archiving into the repository is not configured on {primary_name}",
            hint=f"run: invoke archive.setup --cluster {ctx.name}",
        )


SEGMENT_SIZE_SQL = SqlStatement(
    "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'",
    description="WAL segment size",
    mutating=False,
)


def server_segment_size(ctx: ClusterAccess) -> tuple[int, str]:
    """The primary's WAL segment size in bytes, and the primary's name."""
    primary_name, primary = ctx.cluster.primary()
    with ctx.engine.session(ctx.executor(primary_name), primary, ctx.login()) as pdb:
        return int(pdb.execute(SEGMENT_SIZE_SQL)[0][0]), primary_name


def switch_and_wait(ctx: ClusterAccess, stop_wal: str) -> None:
    primary_name, primary = ctx.cluster.primary()
    with ctx.engine.session(ctx.executor(primary_name), primary, ctx.login()) as pdb:
        # A replica's stop segment is only archived once the primary leaves it.
        pdb.execute(SqlStatement("SELECT pg_switch_wal()", description="close the current WAL segment"))
    wait_for_wal(ctx, stop_wal)


def wait_for_wal(ctx: ClusterAccess, segment: str, timeout: float = WAL_WAIT_SECONDS, *, clock: Clock = REAL) -> None:
    prefix = WalName(segment).prefix()
    if not wait_until(lambda: any(True for _ in ctx.storage.list(prefix)), timeout=timeout, interval=0.5, clock=clock):
        raise BackupError(
            f"WAL segment {segment} did not reach the repository within {timeout:g}s; the backup is not usable",
            hint="check archive_command errors in the PostgreSQL log and pg_stat_archiver",
        )
