"""MariaDB/MySQL backups, controller side: logical dumps, mariabackup full and incremental copies, binlog sync.

The controller decides and records; the host streams (``dbrunbook-host my-*`` commands). The manifest is
the PostgreSQL one: the binlog coordinates a recovery starts from live in ``extra["binlog"]`` and the
InnoDB LSNs of a physical copy in ``start_lsn``/``stop_lsn``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dbrunbook import __version__
from dbrunbook.engines.access import DEFAULT_MAX_CHAIN, ClusterAccess, pick_source
from dbrunbook.engines.mariadb.binlog import (
    ROOT,
    BinlogName,
    Coordinates,
    archived,
    checkpoint_lsns,
    mariabackup_coordinates,
)
from dbrunbook.engines.mariadb.driver import MariaDB, client_defaults
from dbrunbook.errors import BackupError
from dbrunbook.execution.command import Command, SqlStatement
from dbrunbook.execution.executor import HostExecutor
from dbrunbook.execution.sql import DbSession
from dbrunbook.repository import hostconfig
from dbrunbook.repository.manifest import Manifest, ObjectEntry

Step = Callable[[str], None]
SYSTEM_SCHEMAS = ("information_schema", "performance_schema", "sys")

FACTS_SQL = SqlStatement(
    "SELECT VERSION(), @@server_id, @@log_bin, @@log_bin_basename, @@binlog_format, @@gtid_binlog_pos",
    description="server identity and binlog settings",
    mutating=False,
)


@dataclass(frozen=True)
class MyFacts:
    version: str
    server_id: int
    log_bin: bool
    binlog_basename: str
    binlog_format: str
    gtid: str


def facts(db: DbSession) -> MyFacts:
    version, server_id, log_bin, basename, fmt, gtid = db.execute(FACTS_SQL)[0]
    return MyFacts(
        str(version), int(server_id), bool(int(log_bin)), str(basename or ""), str(fmt or ""), str(gtid or "")
    )


def _require_binlog(f: MyFacts, host: str) -> None:
    if not f.log_bin:
        raise BackupError(
            f"{host}: binary logging is off, so a backup could not record where point-in-time recovery starts",
            hint="set log_bin (and binlog_format=ROW, a server_id) in the server's configuration and restart",
        )


@contextmanager
def _defaults(ctx: ClusterAccess, ex: HostExecutor) -> Iterator[str]:
    login = ctx.login()
    text = client_defaults(login.user, login.password.reveal() if login.password else "")
    with ex.secret_file(text, "client.cnf") as path:
        yield path


def _driver(ctx: ClusterAccess) -> MariaDB:
    engine = ctx.engine
    assert isinstance(engine, MariaDB)
    return engine


def _manifest(
    ctx: ClusterAccess,
    *,
    backup_id: str,
    kind: str,
    f: MyFacts,
    host_name: str,
    started: datetime,
    objects: list[ObjectEntry],
    coords: Coordinates | None,
    databases: Sequence[str] = (),
    parent: str | None = None,
    lsns: dict[str, int] | None = None,
    why: str | None = None,
    row_counts: dict[str, Any] | None = None,
    row_counts_problem: str | None = None,
) -> Manifest:
    extra: dict[str, Any] = {"server_id": f.server_id}
    if row_counts is not None:
        extra["row_counts"] = row_counts
    if row_counts_problem:
        extra["row_counts_problem"] = row_counts_problem
    if coords is not None:
        extra["binlog"] = coords.as_dict()
    if why:
        extra["why"] = why
    manifest = Manifest(
        backup_id=backup_id,
        kind=kind,
        engine=ctx.cluster.engine.value,
        cluster=ctx.name,
        parent=parent,
        server_version=f.version,
        start_lsn=str(lsns["from_lsn"]) if lsns and "from_lsn" in lsns else None,
        stop_lsn=str(lsns["to_lsn"]) if lsns and "to_lsn" in lsns else None,
        start_time=started,
        stop_time=datetime.now(UTC),
        source_host=host_name,
        databases=list(databases),
        objects=objects,
        recipients=ctx.recipients,
        tool_version=__version__,
        extra=extra,
    )
    ctx.write_manifest(manifest)
    return manifest


def logical_backup(
    ctx: ClusterAccess, *, source: str = "primary", jobs: int = 2, step: Step = lambda _m: None
) -> Manifest:
    """One consistent dump of the server, with the binlog position and GTID it was taken at."""
    host_name = pick_source(ctx, source)
    host, ex, agent = ctx.host(host_name), ctx.executor(host_name), ctx.agent(host_name)
    with ctx.engine.session(ex, host, ctx.login()) as db:
        f = facts(db)
        databases = [r[0] for r in db.execute(SqlStatement("SHOW DATABASES", mutating=False, description="databases"))]
    _require_binlog(f, host_name)
    listed = [d for d in databases if d not in SYSTEM_SCHEMAS]
    backup_id = ctx.new_backup_id("logical")
    started = datetime.now(UTC)
    with (
        hostconfig.temporary(ex, ctx.name, ctx.cluster, ctx.resolver, with_identities=False) as config,
        _defaults(ctx, ex) as defaults,
    ):
        step(f"dumping {len(listed)} databases on {host_name}")
        argv = _driver(ctx).dump_argv(host, defaults, [])
        res = ex.run(
            Command(
                (agent, "my-dump-push", "--config", config, "--backup-id", backup_id, "--", *argv),
                description="dump the server",
            )
        )
    out = _last_json(res.stdout, host_name, "my-dump-push")
    step("writing the manifest")
    return _manifest(
        ctx,
        backup_id=backup_id,
        kind="logical",
        f=f,
        host_name=host_name,
        started=started,
        objects=[ObjectEntry.model_validate(out["entry"])],
        coords=Coordinates(**out["coordinates"]),
        databases=listed,
        row_counts=out.get("row_counts"),
        row_counts_problem=out.get("row_counts_problem"),
    )


def pick_physical_parent(
    manifests: Sequence[Manifest], source_host: str, max_chain: int
) -> tuple[Manifest | None, str]:
    """The backup an incremental builds on: the newest physical copy from the same host, while the chain
    is shorter than ``max_chain``. Returns (parent, why not) — the reason is kept in the manifest."""
    copies = [m for m in manifests if m.kind in ("physical", "incremental") and m.stop_lsn]
    if not copies:
        return None, "no earlier physical backup"
    newest = copies[-1]
    if newest.source_host != source_host:
        return None, f"the newest physical backup is from {newest.source_host}, not {source_host}"
    by_id = {m.backup_id: m for m in manifests}
    length, cursor = 1, newest
    while cursor.parent:
        parent = by_id.get(cursor.parent)
        if parent is None:
            return None, f"the chain of {newest.backup_id} is broken ({cursor.parent} is gone)"
        length, cursor = length + 1, parent
    if length >= max_chain:
        return None, f"the chain of {newest.backup_id} already holds {length} backups (max_chain {max_chain})"
    return newest, ""


def physical_backup(
    ctx: ClusterAccess,
    *,
    source: str = "primary",
    jobs: int = 2,
    incremental: bool = False,
    step: Step = lambda _m: None,
) -> Manifest:
    """mariabackup's stream stored as one object; an incremental copies pages newer than the parent's LSN."""
    host_name = pick_source(ctx, source)
    host, ex, agent = ctx.host(host_name), ctx.executor(host_name), ctx.agent(host_name)
    with ctx.engine.session(ex, host, ctx.login()) as db:
        f = facts(db)
    parent, why = _choose_physical_parent(ctx, host_name) if incremental else (None, "asked for a full backup")
    kind = "incremental" if parent else "physical"
    backup_id = ctx.new_backup_id(kind)
    started = datetime.now(UTC)
    with (
        hostconfig.temporary(ex, ctx.name, ctx.cluster, ctx.resolver, with_identities=False) as config,
        _defaults(ctx, ex) as defaults,
        ex.private_dir() as scratch,
    ):
        step(f"streaming mariabackup from {host_name}" + (f" on top of {parent.backup_id}" if parent else ""))
        argv = _driver(ctx).physical_argv(
            host,
            defaults,
            f"{scratch}/tmp",
            f"{scratch}/lsn",
            int(parent.stop_lsn) if parent and parent.stop_lsn else None,
            jobs,
        )
        push = (agent, "my-physical-push", "--config", config, "--backup-id", backup_id, "--lsndir", f"{scratch}/lsn")
        res = ex.run(Command((*push, "--", *argv), description="stream mariabackup"))
    out = _last_json(res.stdout, host_name, "my-physical-push")
    lsns = checkpoint_lsns(out["checkpoints"])
    step("writing the manifest")
    return _manifest(
        ctx,
        backup_id=backup_id,
        kind=kind,
        f=f,
        host_name=host_name,
        started=started,
        objects=[ObjectEntry.model_validate(out["entry"])],
        coords=mariabackup_coordinates(out["info"]),
        parent=parent.backup_id if parent else None,
        lsns=lsns,
        why=None if parent else why,
    )


def _choose_physical_parent(ctx: ClusterAccess, host_name: str) -> tuple[Manifest | None, str]:
    """The parent of an incremental, under the cluster's max_chain (or the default one)."""
    retention = ctx.cluster.retention
    max_chain = retention.max_chain if retention and retention.max_chain is not None else DEFAULT_MAX_CHAIN
    return pick_physical_parent(ctx.catalog().manifests, host_name, max_chain)


def _last_json(stdout: str, host: str, what: str) -> Any:
    lines = stdout.strip().splitlines()
    if not lines:
        raise BackupError(f"{host}: dbrunbook-host {what} printed nothing")
    return json.loads(lines[-1])


# -- binlog sync ------------------------------------------------------------------------------------


def server_binlogs(db: DbSession) -> list[tuple[str, int]]:
    rows = db.execute(SqlStatement("SHOW BINARY LOGS", mutating=False, description="binlogs on the server"))
    return [(str(r[0]), int(r[1])) for r in rows]


def current_has_transactions(db: DbSession, current: str, gtid: str) -> bool:
    """Does the open binlog hold a transaction? Its GTID list event says what came before it."""
    events = db.records(
        SqlStatement(
            f"SHOW BINLOG EVENTS IN '{current}' LIMIT 4", mutating=False, description="head of the open binlog"
        )
    )
    before = next((str(e.get("Info", "")) for e in events if e.get("Event_type") == "Gtid_list"), None)
    if before is None:
        return True  # no GTID list to tell: rotating is the safe side
    return before.strip("[]").replace(" ", "") != gtid.replace(" ", "")


@dataclass(frozen=True)
class BinlogSync:
    """What ``binlog.sync`` did on one host: the binlogs it archived, those already there, the open one."""

    cluster: str
    host: str
    server_id: int
    rotated: bool  # the open binlog was closed first (it held a transaction)
    open: str | None
    archived: tuple[str, ...]
    already_archived: tuple[str, ...]
    gtid: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "host": self.host,
            "server_id": self.server_id,
            "rotated": self.rotated,
            "open": self.open,
            "archived": list(self.archived),
            "already_archived": list(self.already_archived),
            "gtid": self.gtid,
        }


@dataclass(frozen=True)
class BinlogFollow:
    """``binlog.sync --follow``: the catch-up sync, then what the follower streamed and archived."""

    sync: BinlogSync
    follower: str
    streamed: tuple[str, ...]
    streaming: str | None  # the file still open when it stopped

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.sync.as_dict(),
            "follower": self.follower,
            "streamed": list(self.streamed),
            "streaming": self.streaming,
        }


def binlog_sync(
    ctx: ClusterAccess, *, host_name: str | None = None, rotate: bool = True, step: Step = lambda _m: None
) -> BinlogSync:
    """Archive every closed binlog the repository lacks; with ``rotate``, first close the open one when it
    holds a transaction, so a cron run bounds the RPO to its interval."""
    host_name = host_name or ctx.cluster.primary()[0]
    host, ex = ctx.host(host_name), ctx.executor(host_name)
    with ctx.engine.session(ex, host, ctx.login()) as db:
        f = facts(db)
        _require_binlog(f, host_name)
        logs = server_binlogs(db)
        rotated = False
        if rotate and logs and current_has_transactions(db, logs[-1][0], f.gtid):
            db.execute(SqlStatement("FLUSH BINARY LOGS", description="close the open binlog"))
            logs = server_binlogs(db)
            rotated = True
    closed = [name for name, _ in logs[:-1]]
    have = archived((o.key for o in ctx.storage.list(f"{ROOT}{f.server_id}/")), f.server_id)
    todo = [n for n in closed if n not in have]
    outcomes: dict[str, str] = {}
    if todo:
        step(f"archiving {len(todo)} binlogs from {host_name}")
        directory = f.binlog_basename.rsplit("/", 1)[0]
        with hostconfig.temporary(ex, ctx.name, ctx.cluster, ctx.resolver, with_identities=False) as config:
            res = ex.run(
                Command(
                    (
                        ctx.agent(host_name),
                        "binlog-push",
                        "--config",
                        config,
                        "--server-id",
                        str(f.server_id),
                        "--dir",
                        directory,
                        *todo,
                    ),
                    description="archive binlogs",
                )
            )
        outcomes = _last_json(res.stdout, host_name, "binlog-push")
    return BinlogSync(
        ctx.name,
        host_name,
        f.server_id,
        rotated,
        logs[-1][0] if logs else None,
        tuple(n for n, o in outcomes.items() if o == "archived"),
        tuple(sorted(set(closed) & set(have)) + [n for n, o in outcomes.items() if o != "archived"]),
        f.gtid,
    )


def binlog_follow(
    ctx: ClusterAccess,
    *,
    host_name: str | None = None,
    duration: float | None = None,
    interval: float = 1.0,
    step: Step = lambda _m: None,
) -> BinlogFollow:
    """Catch up (:func:`binlog_sync`), then stream the open binlog from the primary on ``host_name`` (a
    replica host by default when there is one, so the copy lives off the primary) and archive each file as
    the server closes it."""
    primary_name, primary = ctx.cluster.primary()
    replicas = [n for n in ctx.cluster.hosts if n != primary_name]
    where = host_name or (replicas[0] if replicas else primary_name)
    caught_up = binlog_sync(ctx, step=step)
    first = caught_up.open
    if first is None:  # binary logging is on (binlog_sync checked), so the server always has an open binlog
        raise BackupError(f"{caught_up.host}: SHOW BINARY LOGS lists no binlog to follow")
    host, ex = ctx.host(where), ctx.executor(where)
    # The primary as the follower sees it: its own loopback address when they are one host.
    address = primary.address if where == primary_name else _network_address(ctx, primary_name)
    spool = f"{ex.home()}/.local/state/dbrunbook/binlog-spool/{ctx.name}-{caught_up.server_id}"
    step(f"streaming binlogs of {primary_name} from {first} on {where}")
    with (
        hostconfig.temporary(ex, ctx.name, ctx.cluster, ctx.resolver, with_identities=False) as config,
        _defaults(ctx, ex) as defaults,
    ):
        argv = _driver(ctx).follow_argv(host, defaults, address, primary.port, spool, first, caught_up.server_id)
        res = ex.run(
            Command(
                (
                    ctx.agent(where),
                    "binlog-follow",
                    "--config",
                    config,
                    "--server-id",
                    str(caught_up.server_id),
                    "--spool",
                    spool,
                    "--interval",
                    str(interval),
                    "--duration",
                    str(duration or 0),
                    "--",
                    *argv,
                ),
                description="stream and archive binlogs",
            )
        )
    streamed = _last_json(res.stdout, where, "binlog-follow")
    return BinlogFollow(caught_up, where, tuple(streamed["archived"]), streamed["streaming"])


def _network_address(ctx: ClusterAccess, host_name: str) -> str:
    from dbrunbook.inventory.model import SshConnection

    host = ctx.host(host_name)
    conn = host.connection
    return conn.host if isinstance(conn, SshConnection) else host.address


def binlog_keys(ctx: ClusterAccess, server_id: int) -> dict[str, str]:
    return archived((o.key for o in ctx.storage.list(f"{ROOT}{server_id}/")), server_id, strict=True)


__all__ = ["BinlogName", "binlog_keys", "binlog_sync", "logical_backup", "physical_backup"]
