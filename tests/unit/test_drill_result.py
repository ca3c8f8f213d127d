"""Stored drill results read back: every check, what replay reached, and results written with fewer keys than
today's (older versions, hand-made ones) load instead of failing drill.history and drill.report."""

from __future__ import annotations

from datetime import UTC, datetime

from dbrunbook.drill.result import DrillResult, Validation, check_from, reached_from
from dbrunbook.engines.capabilities import Check
from dbrunbook.engines.restore_result import BinlogReached, WalReached


def test_checks_read_back_as_validations_or_checks_with_their_counts() -> None:
    validation = {"name": "validation orders", "ok": False, "actual": None, "detail": "boom"}
    rows = {"name": "row counts", "ok": True, "detail": "2 tables", "tables": 2, "rows": 7}
    assert check_from(validation) == Validation("validation orders", False, None, "boom")
    assert check_from(rows) == Check("row counts", True, "2 tables", {"tables": 2, "rows": 7})
    assert [check_from(c).as_dict() for c in (validation, rows)] == [validation, rows]


def test_what_replay_reached_keeps_each_engine_shape() -> None:
    wal = {"reached_lsn": None, "reached_time": "2026-11-20T03:00:00+00:00"}
    binlog = {"binlogs_replayed": ["b.000002"], "reached_gtid": "0-1-40"}
    assert reached_from(wal) == WalReached(None, "2026-11-20T03:00:00+00:00")
    assert reached_from(binlog) == BinlogReached("0-1-40", ("b.000002",))
    assert reached_from({"reached_gtid": ""}) == BinlogReached("", None)  # a physical copy: nothing replayed
    for doc in (wal, binlog, {"reached_gtid": ""}):
        reached = reached_from(doc)
        assert reached is not None and reached.as_dict() == doc
    assert reached_from({"promoted": True}) is None


def test_a_result_with_fewer_keys_loads_and_prints_what_it_holds() -> None:
    older = {
        "cluster": "pg-main",
        "started": "2026-11-01T05:30:00+00:00",
        "ended": "2026-11-01T05:31:00+00:00",
        "ok": True,
        "backup": "20261101T020000Z-F",
        "target_time": "2026-11-01T04:00:00+00:00",
        "rto_seconds": 41,
        "rpo_seconds": 60,
        "reason": "restored and validated",
        "checks": [{"name": "pg_amcheck", "ok": True, "detail": "fine"}],
    }
    result = DrillResult.from_dict(older)
    assert result.started == datetime(2026, 11, 1, 5, 30, tzinfo=UTC) and result.ok
    assert result.pick is not None and result.pick.target_time == datetime(2026, 11, 1, 4, tzinfo=UTC)
    assert result.recovery is not None and result.recovery.rto_seconds == 41 and result.recovery.reached is None
    assert result.place is None and result.checks == (Check("pg_amcheck", True, "fine"),)
    doc = result.as_dict()
    # Numbers print as they were stored (41, not 41.0), and what it held is there unchanged.
    assert {k: doc[k] for k in older} == older and doc["reached"] == {}
    assert DrillResult.from_dict(doc).as_dict() == doc


def test_a_failed_result_without_an_end_still_loads() -> None:
    result = DrillResult.from_dict({"started": "2026-11-01T05:30:00+00:00", "ok": False, "reason": "no backup"})
    assert (result.ok, result.reason, result.ended, result.pick) == (False, "no backup", result.started, None)
    assert "backup" not in result.as_dict() and "host" not in result.as_dict()
