"""The Prometheus textfile output, byte for byte: dashboards and alert rules read these names and labels, so
any change to them is a change for operators, never a side effect of a refactoring."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from dbrunbook.drill.result import DrillPick, DrillRecovery, DrillResult
from dbrunbook.metrics import BackupPoint, backup_metrics_text, metrics_text


def drill(
    cluster: str,
    ended: str,
    ok: bool,
    *,
    rto: float | None = None,
    rpo: float | None = None,
    age: float | None = None,
    size: int | None = None,
    rto_target: str | None = None,
    rpo_target: str | None = None,
) -> DrillResult:
    """A drill's result with only what the metrics read: a pick when the backup's age is known, a recovery
    when the RTO is."""
    at = datetime.fromisoformat(ended)
    pick = None if age is None else DrillPick("B", "physical", None, "why", age, size or 0, rpo)
    return DrillResult(
        cluster=cluster,
        engine="postgresql",
        started=at,
        rto_target=rto_target,
        rpo_target=rpo_target,
        tool_version="test",
        checks=(),
        place=None,
        pick=pick,
        recovery=None if rto is None else DrillRecovery(rto, None),
        reason="",
        torn_down=True,
        ok=ok,
        ended=at,
        duration_seconds=1.0,
    )


DRILLS = [
    drill(
        'orders"pg',
        "2026-12-01T03:00:00+00:00",
        True,
        rto=12.5,
        rpo=30,
        age=3600,
        size=1048576,
        rto_target="15m",
        rpo_target="1h",
    ),
    drill("shop-my", "2026-12-01T04:00:00+00:00", False),
]
BACKUPS = [
    BackupPoint("orders", "physical", datetime(2026, 12, 1, 1, 0, tzinfo=UTC), 10),
    BackupPoint("orders", "physical", datetime(2026, 12, 1, 2, 0, tzinfo=UTC), 20),
    BackupPoint("orders", "logical", datetime(2026, 12, 1, 0, 30, tzinfo=UTC), 5),
]


def test_drill_metrics_are_pinned() -> None:
    text = metrics_text(DRILLS)
    assert text.splitlines()[18:] == [
        'dbrunbook_drill_success{cluster="orders\\"pg"} 1',
        'dbrunbook_drill_last_run_timestamp_seconds{cluster="orders\\"pg"} 1796094000',
        'dbrunbook_drill_last_success_timestamp_seconds{cluster="orders\\"pg"} 1796094000',
        'dbrunbook_drill_rto_seconds{cluster="orders\\"pg"} 12.500',
        'dbrunbook_drill_rpo_seconds{cluster="orders\\"pg"} 30.000',
        'dbrunbook_drill_backup_age_seconds{cluster="orders\\"pg"} 3600.000',
        'dbrunbook_drill_backup_size_bytes{cluster="orders\\"pg"} 1048576.000',
        'dbrunbook_drill_rto_target_seconds{cluster="orders\\"pg"} 900',
        'dbrunbook_drill_rpo_target_seconds{cluster="orders\\"pg"} 3600',
        'dbrunbook_drill_success{cluster="shop-my"} 0',
        'dbrunbook_drill_last_run_timestamp_seconds{cluster="shop-my"} 1796097600',
    ]
    # The HELP and TYPE header too, whole: its digest was taken from the output before the restructure.
    assert hashlib.sha256(text.encode()).hexdigest() == DRILL_DIGEST


def test_backup_metrics_are_pinned() -> None:
    text = backup_metrics_text(BACKUPS, {"orders": 1764554400.4, "idle": None}, 1764558000.0, ["orders"])
    assert text.splitlines()[12:] == [
        'dbrunbook_backup_last_timestamp_seconds{cluster="orders",kind="logical"} 1796085000',
        'dbrunbook_backup_last_size_bytes{cluster="orders",kind="logical"} 5',
        'dbrunbook_backup_count{cluster="orders",kind="logical"} 1',
        'dbrunbook_backup_last_timestamp_seconds{cluster="orders",kind="physical"} 1796090400',
        'dbrunbook_backup_last_size_bytes{cluster="orders",kind="physical"} 20',
        'dbrunbook_backup_count{cluster="orders",kind="physical"} 2',
        'dbrunbook_log_archive_last_timestamp_seconds{cluster="orders"} 1764554400',
        'dbrunbook_backup_metrics_timestamp_seconds{cluster="idle"} 1764558000',
        'dbrunbook_manifests_refused{cluster="idle"} 0',
        'dbrunbook_backup_metrics_timestamp_seconds{cluster="orders"} 1764558000',
        'dbrunbook_manifests_refused{cluster="orders"} 1',
    ]
    assert hashlib.sha256(text.encode()).hexdigest() == BACKUP_DIGEST


DRILL_DIGEST = "26ed647e694a0a90962f76716f640d203cf640f316ced0b1c03344a1a9d79cf9"
BACKUP_DIGEST = "fd0a426734551908ac9b2c221cbac33f184940f6d6d7b26d37948aa4de8c7ffc"
