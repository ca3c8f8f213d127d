"""A backup's summary: the fields every task prints for it."""

from __future__ import annotations

from typing import Any

from dbrunbook.repository.manifest import Manifest


def summary(m: Manifest) -> dict[str, Any]:
    """One backup as backup.full, backup.list and drill.history print it (the --json fields)."""
    return {
        "cluster": m.cluster,
        "backup_id": m.backup_id,
        "kind": m.kind,
        "parent": m.parent,
        "why": m.extra.get("why"),
        "source_host": m.source_host,
        "start_time": m.start_time.isoformat(),
        "stop_time": m.stop_time.isoformat(),
        "seconds": round((m.stop_time - m.start_time).total_seconds(), 1),
        "start_lsn": m.start_lsn,
        "stop_lsn": m.stop_lsn,
        "start_wal": m.start_wal,
        "stop_wal": m.stop_wal,
        "timeline": m.timeline,
        "objects": len(m.objects),
        "binlog": m.extra.get("binlog"),
        "stored_mib": round(m.total_size / 2**20, 1),
        "stored_bytes": m.total_size,
        "plain_mib": round(m.plain_size / 2**20, 1),
    }
