"""What orchestration asks of an engine: one small Protocol per capability.

An :class:`~dbrunbook.engines.base.EngineDriver` hands each out as an attribute (``engine.backups``,
``engine.restores``, ``engine.drills``...), imported only when first used, so a MariaDB-only fleet never loads
psycopg. Orchestrators call ``engine.<capability>`` and never branch on the engine's name (a test greps for
that). Wave 2 fills in the stubs at the end, each where its docstring says."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from dbrunbook.engines.access import ClusterAccess, Confirm, FindHost, Step
from dbrunbook.engines.restore_result import RestoreResult
from dbrunbook.engines.target import RecoveryTarget
from dbrunbook.execution.executor import HostExecutor
from dbrunbook.inventory.model import Cluster, Host
from dbrunbook.repository.manifest import Manifest


class BackupMethods(Protocol):
    """``backup.full`` and ``backup.incremental``: physical, incremental and logical backups."""

    #: what ``backup.full`` takes without ``--kind``
    default_kind: str

    def take(self, ctx: ClusterAccess, kind: str, *, source: str, jobs: int, step: Step) -> Manifest:
        """Take one backup of ``kind`` (physical, incremental or logical) from the ``source`` role's host and
        write its manifest last. An incremental with nothing to build on is a full backup (the manifest says)."""
        ...


@dataclass(frozen=True)
class RestoreRequest:
    """``restore.run`` as the operator asked for it, before any engine looked at it."""

    to: str
    backup: str = "latest"
    target: RecoveryTarget = field(default_factory=RecoveryTarget)
    data_dir: str | None = None
    port: int = 0
    database: str | None = None  # logical backups: SOURCE or SOURCE:NEW_NAME
    tablespaces: Sequence[str] = ()  # OID=DIR
    force: bool = False
    jobs: int = 2
    check_rows: bool = False
    dry_run: bool = False


class RestoreMethod(Protocol):
    """``restore.run``: rebuild a server from a backup chain and replay the archived log to a target."""

    #: the ``RecoveryTarget`` kinds this engine replays to (besides ``latest``)
    target_kinds: tuple[str, ...]

    def restore(
        self, ctx: ClusterAccess, request: RestoreRequest, find_host: FindHost, *, confirm: Confirm, step: Step
    ) -> RestoreResult:
        """Plan, then (unless a dry run) restore; the result prints itself (``summary_lines``, ``as_dict``)."""
        ...


class LogArchive(Protocol):
    """The archived log (WAL or binlogs) in the repository."""

    #: ``wal`` or ``binlog``: the task collection that manages it
    name: str
    #: the task a schedule's log job runs (``wal.check``; ``binlog.sync``, which also pushes)
    sync_task: str

    def newest_archived(self, ctx: ClusterAccess, manifest: Manifest | None) -> datetime | None:
        """When the newest archived log file reached the repository: the newest restorable point. ``manifest``:
        the newest backup, for engines whose archive is per server."""
        ...


@dataclass(frozen=True)
class Check:
    """One proof a drill (or, later, a health check) reports: what was checked, whether it held, and why."""

    name: str
    ok: bool
    detail: str
    counts: dict[str, int] = field(default_factory=dict)  # e.g. tables and rows a row-count check compared

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, **self.counts}


class DrillSupport(Protocol):
    """``drill.run``: which backups a drill can restore, how it restores, checks and removes the copy."""

    #: said when no backup can be drilled (" (PostgreSQL drills need a physical backup)")
    drillable_hint: str

    def drillable(self, manifests: Sequence[Manifest]) -> list[Manifest]:
        """The backups a drill can restore into a whole server."""
        ...

    def server_bin_dir(self, cluster: Cluster) -> str | None:
        """Server binaries on this machine for a local drill (None: from PATH); raises when there are none."""
        ...

    def restore_copy(
        self,
        ctx: ClusterAccess,
        backup: Manifest,
        chain: list[Manifest],
        target_time: datetime | None,
        place: tuple[str, Cluster, str, int],
        step: Step,
    ) -> RestoreResult:
        """Restore ``chain`` (ending with ``backup``) at ``place`` (host, its cluster, data directory, port) to
        ``target_time`` (None: the end of the archive)."""
        ...

    def stop_copy(self, ex: HostExecutor, host: Host, data_dir: str) -> None:
        """Stop the drill's server at once: the copy is disposable."""
        ...

    def integrity(self, ctx: ClusterAccess, ex: HostExecutor, host: Host, port: int, data_dir: str) -> Check:
        """The engine's own consistency check of every relation of the copy."""
        ...

    def extra_checks(self, backup: Manifest, restored: RestoreResult) -> list[Check]:
        """Checks only this engine's restores can make (MariaDB: the dump's row counts)."""
        ...


# -- wave 2: stubs, so the next issues know where they plug in -------------------------------------------


class SchemaIntrospection(Protocol):
    """Read-only catalog queries (tables, columns, keys, indexes, dependent objects, sizes), identifiers quoted by
    the driver (``psycopg.sql`` / backticks). Filled in by shadow migrations; used by migrations and health."""


class ReplicaMethod(Protocol):
    """Replica provisioning: seed from the repository or the primary, standby settings, slots or GTID
    positions, promote, rewind or rejoin, lag. ``engines/<engine>/replica.py``."""


class RoutineDialect(Protocol):
    """Stored procedures, functions, triggers and views: read their definitions, normalise for drift checks,
    deploy in dependency order. ``engines/<engine>/routines.py``."""


class HealthQueries(Protocol):
    """Health checks' SQL and its parsing into snapshots (connections, locks, bloat, replication, archive).
    ``engines/<engine>/health.py``."""
