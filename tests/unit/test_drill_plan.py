"""Restore drills, the pure part: choice of backup and target, judging validation answers, the verdict,
the Prometheus metrics and the 'reached the archive's end' rule."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dbrunbook.drill.plan import choose, judge, parse_duration, verdict
from dbrunbook.drill.result import DrillCheck, Validation
from dbrunbook.engines import get_engine
from dbrunbook.engines.capabilities import Check, DrillSupport
from dbrunbook.engines.postgresql.restore import newest_segment_start
from dbrunbook.errors import DrillError
from dbrunbook.metrics import metrics_text
from dbrunbook.repository.manifest import Manifest

from .test_metrics_pinned import drill

T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)


def _drills(engine: str) -> DrillSupport:
    support = get_engine(engine).drills
    assert support is not None
    return support


PG_DRILLS = _drills("postgresql")
MY_DRILLS = _drills("mariadb")


def _m(backup_id: str, kind: str, at: datetime, engine: str = "postgresql") -> Manifest:
    extra = {"binlog": {"file": "b.000001", "position": 4, "gtid": ""}, "server_id": 1} if engine == "mariadb" else {}
    return Manifest(
        backup_id=backup_id,
        kind=kind,
        engine=engine,
        cluster="c",
        server_version="15",
        start_time=at,
        stop_time=at + timedelta(minutes=2),
        source_host="h",
        objects=[],
        recipients=["age1" + "q" * 58],
        tool_version="0",
        extra=extra,
    )


def test_choose_latest_and_random_backups_and_targets() -> None:
    pg = [
        _m("F1", "physical", T0),
        _m("L1", "logical", T0 + timedelta(hours=1)),
        _m("I1", "incremental", T0 + timedelta(hours=2)),
    ]
    latest = choose(pg, PG_DRILLS, backup="latest", target="latest", newest_point=None, rng=random.Random(1))
    assert latest.backup.backup_id == "I1" and latest.target_time is None  # a pg_dump is never a drill's base
    seen = {
        choose(
            pg, PG_DRILLS, backup="random", target="latest", newest_point=None, rng=random.Random(s)
        ).backup.backup_id
        for s in range(30)
    }
    assert seen == {"F1", "I1"}
    newest = T0 + timedelta(hours=5)
    for s in range(30):
        c = choose(pg, PG_DRILLS, backup="F1", target="random", newest_point=newest, rng=random.Random(s))
        assert c.target_time is not None and T0 + timedelta(minutes=2) < c.target_time < newest
    same = [
        choose(pg, PG_DRILLS, backup="random", target="random", newest_point=newest, rng=random.Random(7))
        for _ in range(2)
    ]
    assert same[0] == same[1]  # a seed repeats a drill exactly
    my = [_m("L1", "logical", T0, engine="mariadb")]
    assert (
        choose(my, MY_DRILLS, backup="latest", target="latest", newest_point=None, rng=random.Random()).backup.kind
        == "logical"
    )
    with pytest.raises(DrillError, match="physical"):
        choose(
            [_m("L1", "logical", T0)],
            PG_DRILLS,
            backup="latest",
            target="latest",
            newest_point=None,
            rng=random.Random(),
        )
    with pytest.raises(DrillError, match="no drillable backup"):
        choose(pg, PG_DRILLS, backup="nope", target="latest", newest_point=None, rng=random.Random())


def test_kind_narrows_the_choice() -> None:
    my = [
        _m("L1", "logical", T0, engine="mariadb"),
        _m("F1", "physical", T0 + timedelta(hours=1), engine="mariadb"),
        _m("I1", "incremental", T0 + timedelta(hours=2), engine="mariadb"),
    ]

    def pick(kind: str, backups: list[Manifest] = my) -> str:
        rng = random.Random()
        c = choose(backups, MY_DRILLS, backup="latest", target="latest", kind=kind, newest_point=None, rng=rng)
        return c.backup.backup_id

    assert (pick("any"), pick("logical"), pick("physical")) == ("I1", "L1", "I1")
    with pytest.raises(DrillError, match="no backup a drill can restore of kind logical"):
        pick("logical", my[1:])
    with pytest.raises(DrillError, match="--kind must be one of any, logical, physical"):
        pick("dump")


def test_judge_compares_numbers_as_numbers() -> None:
    assert judge(10, ">", "9") and not judge("10", "<", 9)
    assert judge("2026-11-20", "==", "2026-11-20") and judge("b", ">", "a")
    assert judge(0.5, "<=", 0.5) and judge(3, "!=", 4)
    with pytest.raises(DrillError):
        judge(1, "~", 1)


def test_verdict_first_failure_wins_then_targets() -> None:
    good: list[DrillCheck] = [Check("pg_amcheck", True, "fine")]
    bad = [*good, Validation("validation orders", False, 0, "got 0, expected > 0")]
    assert verdict(bad, 10, 5, "1m", "1m") == (False, "validation orders: got 0, expected > 0")
    assert verdict(good, 120, 5, "1m", None) == (False, "RTO 120s is above the target 1m")
    assert verdict(good, 10, 7200, "1m", "1h") == (False, "RPO 7200s is above the target 1h")
    assert verdict(good, 10, 5, "1m", "1h")[0] is True
    assert parse_duration("2d") == timedelta(days=2)
    with pytest.raises(DrillError):
        parse_duration("soon")


def test_metrics_text_is_prometheus_exposition() -> None:
    ok = drill('pg"main', T0.isoformat(), True, rto=12.5, rpo=30, age=600, size=1024, rto_target="15m")
    failed = replace(ok, cluster="maria", ok=False)
    text = metrics_text([ok, failed])
    assert 'dbrunbook_drill_success{cluster="pg\\"main"} 1' in text
    assert 'dbrunbook_drill_success{cluster="maria"} 0' in text
    assert f'dbrunbook_drill_last_success_timestamp_seconds{{cluster="pg\\"main"}} {T0.timestamp():.0f}' in text
    assert 'dbrunbook_drill_last_success_timestamp_seconds{cluster="maria"}' not in text
    assert 'dbrunbook_drill_rto_target_seconds{cluster="maria"} 900' in text
    assert "dbrunbook_drill_rpo_target_seconds" not in text.split("# TYPE dbrunbook_drill_rpo_target_seconds gauge")[1]
    for line in text.splitlines():
        assert line.startswith("#") or line.split()[-1].replace(".", "").isdigit()


def test_newest_segment_start_ignores_partial_and_backup_files() -> None:
    names = [
        "000000010000000000000003",
        "000000010000000100000002",
        "000000010000000100000002.partial",
        "000000010000000000000004.00000028.backup",
    ]
    assert newest_segment_start(names, 16 << 20) == ("000000010000000100000002", (1 << 32) + 2 * (16 << 20))
    assert newest_segment_start([], 16 << 20) is None


def test_the_archive_end_a_restore_must_reach_ignores_names_recovery_cannot_follow(tmp_path: Path) -> None:
    """A stray segment on a timeline without a history file, or a name no segment of this size can have, is
    not the end of the archive: it would fail every restore to latest (86)."""
    from types import SimpleNamespace
    from typing import Any, cast

    from dbrunbook.engines.postgresql.restore import newest_archived
    from dbrunbook.engines.postgresql.restore_plan import RestorePlan
    from dbrunbook.engines.postgresql.wal import WalName
    from dbrunbook.engines.target import RecoveryTarget
    from dbrunbook.inventory.model import Repository
    from dbrunbook.inventory.secrets import SecretResolver
    from dbrunbook.repository.storage import open_storage

    storage = open_storage(Repository(url=f"file://{tmp_path}/repo"), SecretResolver(tmp_path))
    for name in (
        "000000010000000000000005",
        "000000010000000000000006",
        "000000090000000000000050",  # timeline 9 has no history file: recovery never goes there
        "0000000100000000000001FF",  # segment 0x1FF does not exist with 16 MiB segments
        "000000020000000000000007",
        "00000002.history",
    ):
        storage.put_bytes(WalName(name).key("0" * 16), b"x")
    plan = RestorePlan("c", "b", T0, "h", "/d", 5432, RecoveryTarget(), "000000010000000000000005")
    ctx = cast(Any, SimpleNamespace(storage=storage))
    assert newest_archived(ctx, plan) == ("000000020000000000000007", 7 * (16 << 20))
