"""A backup's summary: the fields every task prints for it, and the listing ``backup.list`` prints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dbrunbook.engines.mariadb.binlog import Coordinates
from dbrunbook.repository.catalog import Refused
from dbrunbook.repository.manifest import Manifest


@dataclass(frozen=True)
class BackupSummary:
    """One backup as backup.full, backup.list and drill.history print it (the --json fields)."""

    cluster: str
    backup_id: str
    kind: str
    parent: str | None
    why: str | None
    source_host: str
    start_time: str
    stop_time: str
    seconds: float
    start_lsn: str | None
    stop_lsn: str | None
    start_wal: str | None
    stop_wal: str | None
    timeline: int | None
    objects: int
    binlog: Coordinates | None  # where a MariaDB recovery starts replaying
    stored_mib: float
    stored_bytes: int
    plain_mib: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "backup_id": self.backup_id,
            "kind": self.kind,
            "parent": self.parent,
            "why": self.why,
            "source_host": self.source_host,
            "start_time": self.start_time,
            "stop_time": self.stop_time,
            "seconds": self.seconds,
            "start_lsn": self.start_lsn,
            "stop_lsn": self.stop_lsn,
            "start_wal": self.start_wal,
            "stop_wal": self.stop_wal,
            "timeline": self.timeline,
            "objects": self.objects,
            "binlog": self.binlog.as_dict() if self.binlog else None,
            "stored_mib": self.stored_mib,
            "stored_bytes": self.stored_bytes,
            "plain_mib": self.plain_mib,
        }

    def what(self) -> str:
        """Where a restore of it starts or what it holds, for the human lines."""
        if self.binlog:
            pos = self.binlog
            return f"binlog {pos.file}:{pos.position}" + (f" GTID {pos.gtid}" if pos.gtid else "")
        return f"{self.objects} dumps" if self.kind == "logical" else f"WAL {self.start_wal}..{self.stop_wal}"


def summary(m: Manifest) -> BackupSummary:
    """The summary of one backup, from its manifest."""
    why = m.extra.get("why")
    return BackupSummary(
        cluster=m.cluster,
        backup_id=m.backup_id,
        kind=m.kind,
        parent=m.parent,
        why=str(why) if why is not None else None,
        source_host=m.source_host,
        start_time=m.start_time.isoformat(),
        stop_time=m.stop_time.isoformat(),
        seconds=round((m.stop_time - m.start_time).total_seconds(), 1),
        start_lsn=m.start_lsn,
        stop_lsn=m.stop_lsn,
        start_wal=m.start_wal,
        stop_wal=m.stop_wal,
        timeline=m.timeline,
        objects=len(m.objects),
        binlog=_coordinates(m.extra.get("binlog")),
        stored_mib=round(m.total_size / 2**20, 1),
        stored_bytes=m.total_size,
        plain_mib=round(m.plain_size / 2**20, 1),
    )


def _coordinates(recorded: object) -> Coordinates | None:
    """The binlog position a MariaDB backup recorded in its manifest (written from ``Coordinates.as_dict``)."""
    if not isinstance(recorded, dict) or not recorded:
        return None
    return Coordinates(str(recorded["file"]), int(recorded["position"]), str(recorded.get("gtid", "")))


@dataclass(frozen=True)
class RefusedManifest:
    """A manifest of one cluster that ``backup.list`` does not trust."""

    cluster: str
    refused: Refused

    def as_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, **self.refused.as_dict(), "no_identity": self.refused.no_identity}


@dataclass(frozen=True)
class HeldLease:
    """A live repository lease: someone is working on the cluster's repository now."""

    cluster: str
    purpose: str
    mode: str
    lease_id: str
    holder: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "purpose": self.purpose,
            "mode": self.mode,
            "lease_id": self.lease_id,
            "holder": self.holder,
        }


@dataclass(frozen=True)
class BackupListing:
    """What ``backup.list`` prints: complete backups oldest first, refused manifests, live leases."""

    backups: tuple[BackupSummary, ...]
    refused: tuple[RefusedManifest, ...]
    leases: tuple[HeldLease, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "backups": [b.as_dict() for b in self.backups],
            "refused": [r.as_dict() for r in self.refused],
            "leases": [held.as_dict() for held in self.leases],
        }
