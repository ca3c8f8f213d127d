"""Prometheus metrics, for the node exporter's textfile collector: what drills and backup listings emit, and
the one atomic writer. The alert rules (templates/prometheus/alerts.yml) read exactly these names."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dbrunbook.drill.plan import parse_duration
from dbrunbook.drill.result import DrillResult
from dbrunbook.repository.manifest import Manifest


def write_metrics(path: str, text: str) -> None:
    """Atomically, as the node exporter's textfile collector wants: never a half-written file."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, target)


def metrics_text(results: Sequence[DrillResult]) -> str:
    """Prometheus textfile-collector lines for drill results (one per cluster), newest result wins."""
    lines = [
        "# HELP dbrunbook_drill_success 1 when the cluster's last restore drill passed.",
        "# TYPE dbrunbook_drill_success gauge",
        "# HELP dbrunbook_drill_last_run_timestamp_seconds When the cluster's last drill ended.",
        "# TYPE dbrunbook_drill_last_run_timestamp_seconds gauge",
        "# HELP dbrunbook_drill_last_success_timestamp_seconds When the cluster's last passing drill ended.",
        "# TYPE dbrunbook_drill_last_success_timestamp_seconds gauge",
        "# HELP dbrunbook_drill_rto_seconds Restore plus recovery time of the last drill.",
        "# TYPE dbrunbook_drill_rto_seconds gauge",
        "# HELP dbrunbook_drill_rpo_seconds Age of the newest restorable point at the last drill.",
        "# TYPE dbrunbook_drill_rpo_seconds gauge",
        "# HELP dbrunbook_drill_backup_age_seconds Age of the backup the last drill restored.",
        "# TYPE dbrunbook_drill_backup_age_seconds gauge",
        "# HELP dbrunbook_drill_backup_size_bytes Stored size of the backup (and chain) the last drill restored.",
        "# TYPE dbrunbook_drill_backup_size_bytes gauge",
        "# HELP dbrunbook_drill_rto_target_seconds The cluster's RTO target.",
        "# TYPE dbrunbook_drill_rto_target_seconds gauge",
        "# HELP dbrunbook_drill_rpo_target_seconds The cluster's RPO target.",
        "# TYPE dbrunbook_drill_rpo_target_seconds gauge",
    ]
    for r in results:
        label = f'cluster="{_escape(r.cluster)}"'
        ended = r.ended.timestamp()
        lines.append(f"dbrunbook_drill_success{{{label}}} {1 if r.ok else 0}")
        lines.append(f"dbrunbook_drill_last_run_timestamp_seconds{{{label}}} {ended:.0f}")
        if r.ok:
            lines.append(f"dbrunbook_drill_last_success_timestamp_seconds{{{label}}} {ended:.0f}")
        pick, recovery = r.pick, r.recovery
        for name, value in (
            ("rto_seconds", recovery.rto_seconds if recovery else None),
            ("rpo_seconds", pick.rpo_seconds if pick else None),
            ("backup_age_seconds", pick.backup_age_seconds if pick else None),
            ("backup_size_bytes", pick.backup_size_bytes if pick else None),
        ):
            if value is not None:
                lines.append(f"dbrunbook_drill_{name}{{{label}}} {float(value):.3f}")
        for name, target in (("rto_target_seconds", r.rto_target), ("rpo_target_seconds", r.rpo_target)):
            if target:
                lines.append(f"dbrunbook_drill_{name}{{{label}}} {parse_duration(target).total_seconds():.0f}")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass(frozen=True)
class BackupPoint:
    """What the backup metrics read of one complete backup."""

    cluster: str
    kind: str
    stop_time: datetime
    stored_bytes: int

    @classmethod
    def of(cls, m: Manifest) -> BackupPoint:
        return cls(m.cluster, m.kind, m.stop_time, m.total_size)


def backup_metrics_text(
    rows: Sequence[BackupPoint],
    newest_log: dict[str, float | None],
    now: float,
    refused: Sequence[str] = (),
) -> str:
    """Backup freshness per cluster and kind, for ``backup.list --metrics-file``: the newest backup's end
    time and size, how many there are, when the newest WAL segment or binlog was archived, and how many
    manifests the repository holds that are not trusted (forged, or unsigned and waiting for backup.sign):
    ``refused`` names each one's cluster."""
    lines = [
        "# HELP dbrunbook_backup_last_timestamp_seconds When the newest complete backup of this kind ended.",
        "# TYPE dbrunbook_backup_last_timestamp_seconds gauge",
        "# HELP dbrunbook_backup_last_size_bytes Stored size of the newest backup of this kind.",
        "# TYPE dbrunbook_backup_last_size_bytes gauge",
        "# HELP dbrunbook_backup_count Complete backups of this kind in the repository.",
        "# TYPE dbrunbook_backup_count gauge",
        "# HELP dbrunbook_log_archive_last_timestamp_seconds When the newest WAL segment or binlog was archived.",
        "# TYPE dbrunbook_log_archive_last_timestamp_seconds gauge",
        "# HELP dbrunbook_backup_metrics_timestamp_seconds When these backup metrics were read from the repository.",
        "# TYPE dbrunbook_backup_metrics_timestamp_seconds gauge",
        "# HELP dbrunbook_manifests_refused Manifests in the repository that are not trusted (unsigned, forged).",
        "# TYPE dbrunbook_manifests_refused gauge",
    ]
    newest: dict[tuple[str, str], BackupPoint] = {}
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (r.cluster, r.kind)
        counts[key] = counts.get(key, 0) + 1
        if key not in newest or r.stop_time > newest[key].stop_time:
            newest[key] = r
    for (cluster, kind), r in sorted(newest.items(), key=lambda item: item[0]):
        label = f'cluster="{_escape(cluster)}",kind="{kind}"'
        ended = r.stop_time.timestamp()
        lines.append(f"dbrunbook_backup_last_timestamp_seconds{{{label}}} {ended:.0f}")
        lines.append(f"dbrunbook_backup_last_size_bytes{{{label}}} {r.stored_bytes}")
        lines.append(f"dbrunbook_backup_count{{{label}}} {counts[(cluster, kind)]}")
    for cluster, when in sorted(newest_log.items()):
        if when is not None:
            lines.append(f'dbrunbook_log_archive_last_timestamp_seconds{{cluster="{_escape(cluster)}"}} {when:.0f}')
    for cluster in sorted({c for c, _ in newest} | set(newest_log)):
        lines.append(f'dbrunbook_backup_metrics_timestamp_seconds{{cluster="{_escape(cluster)}"}} {now:.0f}')
        count = sum(1 for c in refused if c == cluster)
        lines.append(f'dbrunbook_manifests_refused{{cluster="{_escape(cluster)}"}} {count}')
    return "\n".join(lines) + "\n"
