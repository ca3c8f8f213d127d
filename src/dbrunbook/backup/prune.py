"""``backup.prune``: apply the cluster's retention policy to its repository.

The plan is made from one snapshot of the repository (the catalog, the WAL listing, the objects of
backups that never completed) by :func:`dbrunbook.backup.retention.plan_retention`; this module only
reads that snapshot and deletes what the plan says. A backup is deleted manifest first, so it stops
existing (and can no longer be chosen by a restore) before any of its data goes; if the manifest is
refused (Object Lock), its data is left alone. Refusals are reported, never errors: a locked object is
the repository doing its job.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dbrunbook.backup.retention import (
    BackupFacts,
    RetentionPlan,
    expired_wal,
    plan_retention,
    stale_incomplete,
)
from dbrunbook.context import ClusterContext
from dbrunbook.engines.postgresql.lsn import segment_position
from dbrunbook.execution.audit import AuditLog
from dbrunbook.repository.catalog import Catalog, Refused
from dbrunbook.repository.logs import name_of
from dbrunbook.repository.manifest import backup_prefix, manifest_key
from dbrunbook.repository.storage import Storage

Confirm = Callable[[str], None]


@dataclass(frozen=True)
class PrunePlan:
    cluster: str
    retention: RetentionPlan
    wal_keys: list[str]  # expired WAL objects
    incomplete: list[str]  # ids of backups that never got a manifest, past the grace period
    starts: dict[str, str] = field(default_factory=dict)  # backup id -> its start WAL segment
    binlog_keys: list[str] = field(default_factory=list)  # expired MariaDB binlogs
    binlog_keep_from: dict[int, str] = field(default_factory=dict)  # server id -> first binlog still needed
    refused: list[Refused] = field(default_factory=list)  # manifests not trusted: never acted on

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "keep": self.retention.keep,
            "delete": self.retention.delete,
            "decisions": [
                {"backup_id": d.backup_id, "keep": d.keep, "reasons": list(d.reasons)} for d in self.retention.decisions
            ],
            "wal_keep_from": self.retention.wal_keep_from,
            "wal_expired": len(self.wal_keys),
            "binlog_keep_from": {str(k): v for k, v in self.binlog_keep_from.items()},
            "binlogs_expired": len(self.binlog_keys),
            "incomplete": self.incomplete,
            "refused": [r.as_dict() for r in self.refused],
            "notes": self.retention.notes,
        }

    def reasons(self, backup_id: str) -> tuple[str, ...]:
        return next(d.reasons for d in self.retention.decisions if d.backup_id == backup_id)

    def explain(self) -> list[str]:
        lines = [f"{self.cluster}: {line}" for line in self.retention.explain()]
        if self.wal_keys:
            lines.append(f"{self.cluster}: delete {len(self.wal_keys)} WAL files before {self.retention.wal_keep_from}")
        for server, first in self.binlog_keep_from.items():
            lines.append(f"{self.cluster}: binlogs of server {server}: keep from {first}")
        if self.binlog_keys:
            lines.append(f"{self.cluster}: delete {len(self.binlog_keys)} archived binlogs no kept backup needs")
        lines += [f"{self.cluster}: delete incomplete backup {i} (it never got a manifest)" for i in self.incomplete]
        lines += [f"{self.cluster}: {r.line()}" for r in self.refused]
        if self.refused:
            lines.append(
                f"{self.cluster}: every WAL file and binlog is kept while {len(self.refused)} manifests are refused "
                "(a backup written before signing may still need them)"
            )
        return lines


def facts(catalog: Catalog) -> list[BackupFacts]:
    return [
        BackupFacts(m.backup_id, m.kind, m.stop_time, m.parent, m.start_wal, True if m.extra.get("binlog") else None)
        for m in catalog.manifests
    ]


def binlog_expiry(storage: Storage, catalog: Catalog, keep: set[str]) -> tuple[list[str], dict[int, str]]:
    """Archived binlogs no kept backup needs, per server: those before the oldest kept backup's start file."""
    from dbrunbook.engines.mariadb.binlog import ROOT, BinlogName, archived, expired_binlogs, number

    keys = [info.key for info in storage.list(ROOT)]
    servers = set()
    for key in keys:
        try:
            servers.add(BinlogName.of_key(key).server_id)
        except ValueError:
            continue
    doomed: list[str] = []
    keep_from: dict[int, str] = {}
    for server in sorted(servers):
        starts = [
            str(m.extra["binlog"]["file"])
            for m in catalog.manifests
            if m.backup_id in keep and m.extra.get("binlog") and int(m.extra.get("server_id", -1)) == server
        ]
        if not starts:
            continue  # no kept backup starts in this server's binlogs: nothing tells what is useless
        first = min(starts, key=number)
        keep_from[server] = first
        doomed += expired_binlogs(archived(keys, server), first)
    return doomed, keep_from


def plan_prune(ctx: ClusterContext, now: datetime) -> PrunePlan:
    storage = ctx.storage
    catalog = ctx.catalog()
    retention = plan_retention(facts(catalog), ctx.cluster.retention, now)
    wal: dict[str, list[str]] = {}
    for info in storage.list("wal/"):
        wal.setdefault(name_of(info.key), []).append(info.key)
    expired = expired_wal(sorted(wal), retention.wal_keep_from)
    newest: dict[str, datetime] = {}
    for info in storage.list("backups/"):
        backup_id = info.key.split("/")[1]
        newest[backup_id] = max(newest.get(backup_id, info.last_modified), info.last_modified)
    # A folder with any manifest, trusted or refused, is not an abandoned backup: refused ones are left alone.
    complete = {m.backup_id for m in catalog.manifests} | {r.folder for r in catalog.refused}
    binlogs, binlog_from = binlog_expiry(storage, catalog, set(retention.keep))
    wal_keys = [key for name in expired for key in wal[name]]
    if catalog.refused:
        # Until they are signed or removed, they may be real backups of an older dbrunbook that need their logs.
        wal_keys, binlogs = [], []
    return PrunePlan(
        ctx.name,
        retention,
        wal_keys,
        # The real clock, whatever --now says: a what-if date must never make a running backup look abandoned.
        stale_incomplete(newest, complete, datetime.now(UTC)),
        {m.backup_id: m.start_wal for m in catalog.manifests if m.start_wal},
        binlogs,
        binlog_from,
        catalog.refused,
    )


@dataclass(frozen=True)
class PruneResult:
    """What a prune that deleted did: the plan it carried out, the backups gone, those Object Lock kept (with
    the keys it refused) and how many WAL files and binlogs went or stayed locked."""

    plan: PrunePlan
    deleted: tuple[str, ...]
    locked: dict[str, tuple[str, ...]]  # backup id -> its keys under Object Lock
    wal_deleted: int
    wal_locked: int

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.plan.as_dict(),
            "deleted": list(self.deleted),
            "locked": {k: list(v) for k, v in self.locked.items()},
            "wal_deleted": self.wal_deleted,
            "wal_locked": self.wal_locked,
        }


@dataclass(frozen=True)
class PruneReport:
    """One cluster's part of ``backup.prune``: its plan and, unless nothing was deleted, what was done."""

    plan: PrunePlan
    done: PruneResult | None  # None: a dry run, or nothing to delete
    dry_run: bool

    def as_dict(self) -> dict[str, Any]:
        shown = self.done.as_dict() if self.done else {**self.plan.as_dict(), "dry_run": self.dry_run}
        return {**shown, "explain": self.plan.explain()}


def run_prune(storage: Storage, plan: PrunePlan, audit: AuditLog | None = None) -> PruneResult:
    deleted: list[str] = []
    locked: dict[str, list[str]] = defaultdict(list)

    def record(what: str, refused: Sequence[str]) -> None:
        if audit is not None:
            audit.record(
                host=storage.describe(),
                kind="delete",
                text=what,
                duration=0,
                exit_status=0,
                dry_run=False,
                refused=list(refused),
            )

    for backup_id in plan.retention.delete:
        refused = storage.delete([manifest_key(backup_id)])
        if refused:
            locked[backup_id] = refused  # still complete, still restorable: leave its data alone
            record(f"backup {backup_id}: manifest under Object Lock, kept", refused)
            continue
        _delete_prefix(storage, backup_prefix(backup_id), locked[backup_id])
        record(f"backup {backup_id}: {'; '.join(plan.reasons(backup_id))}", locked[backup_id])
        deleted.append(backup_id)
    for backup_id in plan.incomplete:
        _delete_prefix(storage, backup_prefix(backup_id), locked[backup_id])
        record(f"incomplete backup {backup_id} (no manifest)", locked[backup_id])
    wal_keys = plan.wal_keys
    kept_starts = [plan.starts[b] for b in locked if locked[b] and b not in deleted and b in plan.starts]
    if kept_starts:
        # A backup the lock kept is still restorable: its WAL stays, whatever the plan said.
        limit = segment_position(min(kept_starts, key=segment_position))
        wal_keys = [k for k in wal_keys if segment_position(name_of(k)) < limit]
    if any(locked[b] and b not in deleted for b in list(locked)):
        # A locked backup stays restorable, so the binlogs after it stay too: keep them all this round.
        binlog_keys: list[str] = []
    else:
        binlog_keys = plan.binlog_keys
    wal_keys = wal_keys + binlog_keys
    wal_refused = storage.delete(wal_keys) if wal_keys else []
    if wal_keys:
        record(f"{len(wal_keys)} WAL/binlog files no kept backup needs", wal_refused)
    return PruneResult(
        plan,
        tuple(deleted),
        {k: tuple(v) for k, v in locked.items() if v},
        wal_deleted=len(wal_keys) - len(wal_refused),
        wal_locked=len(wal_refused),
    )


def _delete_prefix(storage: Storage, prefix: str, refused: list[str]) -> None:
    keys = [info.key for info in storage.list(prefix)]
    if keys:
        refused += storage.delete(keys)
