"""What a drill records of its restore, pinned in the stored result: where replay reached, the checks only
the engine's restore can make (a dump's row counts), and an RTO without the time spent counting rows."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from dbrunbook.drill.run import run_drill
from dbrunbook.execution.testing import Reply
from dbrunbook.repository.manifest import manifest_key
from dbrunbook.repository.objects import load_bytes

from .servers import FakePostgres, drill_host, restore_host, restored_server
from .world import IDENTITY, NOW, World

DAY = timedelta(days=1)


def stored(world: World, cluster: str) -> dict[str, Any]:
    ctx = world.context(cluster)
    (info,) = ctx.storage.list("drills/")
    doc: dict[str, Any] = json.loads(load_bytes(ctx.storage, info.key, [IDENTITY]))
    return doc


def test_a_pg_drill_records_the_lsn_and_time_replay_reached(world: World) -> None:
    world.backup("orders-pg", "physical", 1 * DAY, wal=(2, 3))
    world.wal("orders-pg", range(2, 6))
    FakePostgres(reached_lsn="0/5000100").install(drill_host(world.fake("pg1-restore")))

    _, failure = run_drill(world.context("orders-pg"), world.find_host)

    assert failure is None
    doc = stored(world, "orders-pg")
    assert list(doc["reached"].items()) == [("reached_lsn", "0/5000100"), ("reached_time", NOW.isoformat())]
    assert doc["checks"][:2] == [
        {
            "name": "server started and reached the target",
            "ok": True,
            "detail": "the newest backup; recovered to the newest restorable point",
        },
        {"name": "pg_amcheck", "ok": True, "detail": "every heap and B-tree index checked"},
    ]
    assert isinstance(doc["rto_seconds"], float) and doc["rto_seconds"] >= 0


def test_a_mariadb_drill_records_the_binlogs_replayed_and_checks_the_dump_row_counts(world: World) -> None:
    dump = world.backup("orders-my", "logical", 1 * DAY, binlog=("mariadb-bin.000002", 4, "0-1-10"))
    # The dump recorded its tables' row counts: the drill compares them after the load.
    dump = dump.model_copy(update={"extra": {**dump.extra, "row_counts": {"shop": {"orders": 40, "lines": 2}}}})
    ctx = world.context("orders-my")
    ctx.storage.delete([manifest_key(dump.backup_id)])
    ctx.write_manifest(dump)
    world.binlogs("orders-my", range(1, 4))
    counted = {"tables": 2, "rows": 42, "mismatched": 0, "mismatches": [], "seconds": 1000.0}
    replayed = {
        "binlogs_replayed": ["mariadb-bin.000002", "mariadb-bin.000003"],
        "stopped_in": None,
        "stop_reason": "end of the archived binlogs",
        "row_counts": counted,
    }
    fake = drill_host(restore_host(world.fake("my1-restore")))
    fake.on(r"dbrunbook-host my-replay ", Reply(stdout=json.dumps(replayed) + "\n"))

    _, failure = run_drill(world.context("orders-my", database=restored_server("0-1-40")), world.find_host)

    assert failure is None, failure
    (replay,) = fake.find(r"dbrunbook-host my-replay ")
    assert "--check-rows" in replay.argv
    doc = stored(world, "orders-my")
    assert list(doc["reached"].items()) == [
        ("binlogs_replayed", ["mariadb-bin.000002", "mariadb-bin.000003"]),
        ("reached_gtid", "0-1-40"),
    ]
    assert doc["checks"][:3] == [
        {
            "name": "server started and reached the target",
            "ok": True,
            "detail": "the newest backup; recovered to the newest restorable point",
        },
        {
            "name": "row counts match the backup's snapshot",
            "ok": True,
            "detail": "2 tables, 42 rows (counted in 1000.0s, not in the RTO)",
            "tables": 2,
            "rows": 42,
        },
        {"name": "mariadb-check", "ok": True, "detail": "every table checked"},
    ]
    # The counting took "1000 s" inside the restore: proof, not restore time.
    assert doc["rto_seconds"] < -990


def test_a_mariadb_drill_of_a_dump_without_counts_says_it_did_not_check_them(world: World) -> None:
    dump = world.backup("orders-my", "logical", 1 * DAY, binlog=("mariadb-bin.000002", 4, "0-1-10"))
    world.binlogs("orders-my", range(1, 3))
    drill_host(restore_host(world.fake("my1-restore")))

    _, failure = run_drill(world.context("orders-my", database=restored_server("0-1-40")), world.find_host)

    assert failure is None, failure
    doc = stored(world, "orders-my")
    assert list(doc["reached"].items()) == [("binlogs_replayed", []), ("reached_gtid", "0-1-40")]
    assert doc["checks"][1] == {
        "name": "row counts match the backup's snapshot",
        "ok": True,
        "detail": f"not checked: backup {dump.backup_id} recorded no row counts (taken before dbrunbook recorded them)",
    }
