"""The drill's result document, pinned key by key and in order: ``drill.run --json`` prints it, the repository
stores it under ``drills/`` (and ``drill.history`` prints it back), dashboards and scripts read it. Only the
values a clock decides are replaced by their kind before the comparison."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from dbrunbook import __version__
from dbrunbook.drill.run import history, run_drill
from dbrunbook.execution.testing import FakeDatabase, Reply, Rows
from dbrunbook.repository.manifest import manifest_key
from dbrunbook.repository.objects import load_bytes

from .servers import FakePostgres, drill_host, restore_host, restored_server
from .world import IDENTITY, NOW, World

DAY = timedelta(days=1)
CLOCKED = ("started", "ended", "duration_seconds", "rto_seconds", "backup_age_seconds", "rpo_seconds")


def document(result: object) -> dict[str, Any]:
    """The JSON document of a drill's result, whatever type carries it."""
    as_dict = getattr(result, "as_dict", None)
    doc = as_dict() if callable(as_dict) else result
    assert isinstance(doc, dict)
    printed: dict[str, Any] = json.loads(
        json.dumps(doc)
    )  # what --json prints: tuples become lists, nothing else changes
    return printed


def unclocked(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    """The document's items in order, clock-decided values replaced by their kind (checked here)."""
    return [(key, _unclocked(doc, key, value)) for key, value in doc.items()]


def _unclocked(doc: dict[str, Any], key: str, value: Any) -> Any:
    if key in ("started", "ended"):
        assert datetime.fromisoformat(value).tzinfo is not None
        return "<time>"
    if key in CLOCKED and value is not None:
        assert isinstance(value, float | int) and not isinstance(value, bool)
        return "<seconds>"
    if key == "stored_as":
        stamp = datetime.fromisoformat(doc["started"]).strftime("%Y%m%dT%H%M%S.%fZ")
        assert value.startswith(f"drills/{stamp}-")
        return value.removeprefix(f"drills/{stamp}")
    return value


def stored_bytes(world: World, cluster: str, key: str) -> bytes:
    return load_bytes(world.context(cluster).storage, key, [IDENTITY])


def assert_stored_as_printed(world: World, cluster: str, doc: dict[str, Any]) -> None:
    """The repository holds the same document, byte for byte as json.dumps(indent=2) wrote it, without
    ``stored_as`` (the key it is stored under); drill.history reads it back unchanged."""
    printed = {k: v for k, v in doc.items() if k != "stored_as"}
    assert stored_bytes(world, cluster, doc["stored_as"]) == json.dumps(printed, indent=2).encode()
    (back,) = history(world.context(cluster))
    assert document(back) == printed


def test_a_passing_postgresql_drill_with_a_validation_prints_this_document(world: World) -> None:
    world.spec["orders-pg"]["drill"].update(
        rto_target="15m", validations=[{"name": "orders", "sql": "SELECT count(*) FROM orders", "compare": ">"}]
    )
    world.spec["orders-pg"]["drill"]["validations"][0]["expect"] = 0
    revenue = {"name": "revenue", "sql": "SELECT sum(total) FROM orders", "compare": ">=", "expect": 10}
    world.spec["orders-pg"]["drill"]["validations"].append(revenue)
    full = world.backup("orders-pg", "physical", 2 * DAY, wal=(2, 3))
    world.wal("orders-pg", range(2, 6))
    fake = drill_host(world.fake("pg1-restore"))
    FakePostgres(reached_lsn="0/5000100").install(fake)
    db = FakeDatabase().on(r"^SELECT count\(\*\) FROM orders$", Rows(("count",), ((42,),)))
    db.on(r"^SELECT sum\(total\) FROM orders$", Rows(("sum",), ((Decimal("12.50"),),)))

    result, failure = run_drill(world.context("orders-pg", database=db), world.find_host)

    assert failure is None
    doc = document(result)
    assert unclocked(doc) == [
        ("cluster", "orders-pg"),
        ("engine", "postgresql"),
        ("started", "<time>"),
        ("rto_target", "15m"),
        ("rpo_target", None),
        ("tool_version", __version__),
        (
            "checks",
            [
                {
                    "name": "server started and reached the target",
                    "ok": True,
                    "detail": "the newest backup; recovered to the newest restorable point",
                },
                {"name": "pg_amcheck", "ok": True, "detail": "every heap and B-tree index checked"},
                {"name": "validation orders", "ok": True, "actual": 42, "detail": "got 42, expected > 0"},
                {
                    "name": "validation revenue",
                    "ok": True,
                    "actual": "12.50",
                    "detail": "got Decimal('12.50'), expected >= 10",
                },
            ],
        ),
        ("host", "pg1-restore"),
        ("data_dir", "/home/pg1-restore/dbrunbook-drill-orders-pg"),
        ("port", 6432),
        ("backup", full.backup_id),
        ("kind", "physical"),
        ("target_time", "latest"),
        ("why", "the newest backup; recovered to the newest restorable point"),
        ("backup_age_seconds", "<seconds>"),
        ("backup_size_bytes", full.total_size),
        ("rpo_seconds", "<seconds>"),
        ("rto_seconds", "<seconds>"),
        ("reached", {"reached_lsn": "0/5000100", "reached_time": NOW.isoformat()}),
        ("reason", doc["reason"]),
        ("torn_down", True),
        ("ok", True),
        ("ended", "<time>"),
        ("duration_seconds", "<seconds>"),
        ("stored_as", "-ok.json.zst.age"),
    ]
    assert doc["reason"] == f"restored and validated in {doc['rto_seconds']:.0f}s, RPO {doc['rpo_seconds']:.0f}s"
    assert doc["backup_age_seconds"] == round(
        (datetime.fromisoformat(doc["started"]) - full.stop_time).total_seconds(), 1
    )
    assert_stored_as_printed(world, "orders-pg", doc)


def test_a_mariadb_logical_drill_prints_its_row_counts_and_binlogs(world: World) -> None:
    dump = world.backup("orders-my", "logical", 2 * DAY, binlog=("mariadb-bin.000002", 4, "0-1-10"))
    dump = dump.model_copy(update={"extra": {**dump.extra, "row_counts": {"shop": {"orders": 2, "items": 5}}}})
    ctx = world.context("orders-my")
    ctx.storage.delete([manifest_key(dump.backup_id)])  # the same dump, as one that recorded its row counts
    ctx.write_manifest(dump)
    world.binlogs("orders-my", range(1, 4))
    fake = drill_host(restore_host(world.fake("my1-restore")))
    counted = {"tables": 2, "rows": 7, "mismatched": 0, "mismatches": [], "seconds": 0.25}
    replayed = {
        "binlogs_replayed": ["mariadb-bin.000002", "mariadb-bin.000003"],
        "stopped_in": None,
        "stop_reason": "end of the archived binlogs",
        "row_counts": counted,
    }
    fake.on(r"dbrunbook-host my-replay ", Reply(stdout=json.dumps(replayed) + "\n"))

    result, failure = run_drill(world.context("orders-my", database=restored_server("0-1-40")), world.find_host)

    assert failure is None, failure
    doc = document(result)
    items = unclocked(doc)
    keys = [k for k, _ in items]
    assert keys == [
        "cluster", "engine", "started", "rto_target", "rpo_target", "tool_version", "checks", "host", "data_dir",
        "port", "backup", "kind", "target_time", "why", "backup_age_seconds", "backup_size_bytes", "rpo_seconds",
        "rto_seconds", "reached", "reason", "torn_down", "ok", "ended", "duration_seconds", "stored_as",
    ]  # fmt: skip
    assert doc["checks"] == [
        {
            "name": "server started and reached the target",
            "ok": True,
            "detail": "the newest backup; recovered to the newest restorable point",
        },
        {
            "name": "row counts match the backup's snapshot",
            "ok": True,
            "detail": "2 tables, 7 rows (counted in 0.25s, not in the RTO)",
            "tables": 2,
            "rows": 7,
        },
        {"name": "mariadb-check", "ok": True, "detail": "every table checked"},
    ]
    assert doc["reached"] == {"binlogs_replayed": replayed["binlogs_replayed"], "reached_gtid": "0-1-40"}
    assert (doc["backup"], doc["kind"], doc["engine"]) == (dump.backup_id, "logical", "mariadb")
    assert fake.find(r"dbrunbook-host my-replay ")
    assert_stored_as_printed(world, "orders-my", doc)


def test_a_drill_with_nothing_to_restore_prints_the_short_failed_document(world: World) -> None:
    world.spec["orders-pg"]["drill"].update(rto_target="1h", rpo_target="5m")
    world.backup("orders-pg", "logical", 1 * DAY, wal=(2, 2))
    drill_host(world.fake("pg1-restore"))

    result, failure = run_drill(world.context("orders-pg"), world.find_host)

    assert failure is not None
    doc = document(result)
    assert unclocked(doc) == [
        ("cluster", "orders-pg"),
        ("engine", "postgresql"),
        ("started", "<time>"),
        ("rto_target", "1h"),
        ("rpo_target", "5m"),
        ("tool_version", __version__),
        ("checks", []),
        ("host", "pg1-restore"),
        ("data_dir", "/home/pg1-restore/dbrunbook-drill-orders-pg"),
        ("port", 6432),
        ("reason", failure.one_line()),
        ("torn_down", True),
        ("ok", False),
        ("ended", "<time>"),
        ("duration_seconds", "<seconds>"),
        ("exit_code", failure.exit_code),
        ("stored_as", "-failed.json.zst.age"),
    ]
    assert_stored_as_printed(world, "orders-pg", doc)


def test_a_failed_restore_keeps_the_choice_and_a_failed_teardown_says_why(world: World) -> None:
    full = world.backup("orders-pg", "physical", 1 * DAY, wal=(2, 3))
    fake = drill_host(world.fake("pg1-restore"))
    FakePostgres(reached_lsn="0/4000100").install(fake)
    fake.on(r"dbrunbook-host restore-files ", Reply(exit_code=1, stderr="disk full"))
    refusals = iter([Reply(), Reply(exit_code=3, stdout="not a drill directory")])
    fake.on(r"^sh -c 'test -e ", lambda _c: next(refusals))

    result, failure = run_drill(world.context("orders-pg"), world.find_host)

    assert failure is not None and failure.exit_code == 91
    doc = document(result)
    assert [k for k, _ in unclocked(doc)] == [
        "cluster", "engine", "started", "rto_target", "rpo_target", "tool_version", "checks", "host", "data_dir",
        "port", "backup", "kind", "target_time", "why", "backup_age_seconds", "backup_size_bytes", "rpo_seconds",
        "reason", "torn_down", "teardown_problem", "ok", "ended", "duration_seconds", "exit_code", "stored_as",
    ]  # fmt: skip
    assert (doc["backup"], doc["rpo_seconds"], doc["torn_down"]) == (full.backup_id, None, False)
    assert doc["teardown_problem"] == (
        "/home/pg1-restore/dbrunbook-drill-orders-pg on pg1-restore exists and was not made by a drill; refusing "
        "to touch it (point the cluster's drill.data_dir at a directory of its own)"
    )
    assert doc["reason"].startswith(f"restore of {full.backup_id} failed: ")
    assert_stored_as_printed(world, "orders-pg", doc)
