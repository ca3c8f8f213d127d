"""Drill choice and placement through run_drill: which backup it restores, where the copy goes, what it
checks and stores, and the refusal when no backup can be drilled."""

from __future__ import annotations

import getpass
import json
from datetime import datetime, timedelta

from dbrunbook.drill.result import DrillPlace
from dbrunbook.drill.run import run_drill
from dbrunbook.errors import DrillError
from dbrunbook.repository.manifest import manifest_key
from dbrunbook.repository.objects import load_bytes

from .servers import FakePostgres, drill_host, restore_host, restored_server
from .world import IDENTITY, World

DAY = timedelta(days=1)
PG_PLACE = "/home/pg1-restore/dbrunbook-drill-orders-pg"


def stored(world: World, cluster: str) -> list[dict[str, object]]:
    ctx = world.context(cluster)
    return [json.loads(load_bytes(ctx.storage, i.key, [IDENTITY])) for i in ctx.storage.list("drills/")]


def test_a_drill_restores_the_newest_physical_backup_on_its_drill_host(world: World) -> None:
    full = world.backup("orders-pg", "physical", 3 * DAY, wal=(2, 3))
    inc = world.backup("orders-pg", "incremental", 2 * DAY, parent=full, wal=(4, 5))
    world.backup("orders-pg", "logical", 1 * DAY, wal=(6, 6))  # newer, but a pg_dump cannot make a server
    world.wal("orders-pg", range(2, 8))
    fake = drill_host(world.fake("pg1-restore"))
    FakePostgres(reached_lsn="0/7000100").install(fake)

    result, failure = run_drill(world.context("orders-pg"), world.find_host)

    assert failure is None and result.ok is True
    assert result.pick and (result.pick.backup, result.pick.kind, result.pick.target) == (
        inc.backup_id,
        "incremental",
        "latest",
    )
    assert result.pick.why == "the newest backup; recovered to the newest restorable point"
    assert result.place == DrillPlace("pg1-restore", PG_PLACE, 6432)
    (unpack,) = fake.find(r"restore-files ")
    keys = [unpack.argv[i + 1] for i, a in enumerate(unpack.argv) if a == "--manifest-key"]
    assert keys == [manifest_key(full.backup_id), manifest_key(inc.backup_id)]
    assert unpack.argv[unpack.argv.index("--dest") + 1] == PG_PLACE
    assert fake.find(r"pg_isready -q -h 127.0.0.1 -p 6432 ")
    (amcheck,) = fake.find(r"pg_amcheck ")
    assert amcheck.env_names == ("PGPASSFILE",) and "6432" in amcheck.argv
    # Torn down at the end, only its own directory; the result is kept in the repository.
    assert fake.lines()[-1] == f"rm -rf {PG_PLACE} {PG_PLACE}-tblspc {PG_PLACE}.dbrunbook-drill"
    assert result.torn_down is True and str(result.stored_as).endswith("-ok.json.zst.age")
    assert [r["backup"] for r in stored(world, "orders-pg")] == [inc.backup_id]


def test_a_random_target_lies_inside_the_recovery_window_and_reaches_the_server(world: World) -> None:
    chosen = world.backup("orders-pg", "physical", 1 * DAY, wal=(2, 3))
    world.wal("orders-pg", range(2, 6))
    fake = drill_host(world.fake("pg1-restore"))
    server = FakePostgres(reached_lsn="0/5000100")
    server.install(fake)

    result, failure = run_drill(world.context("orders-pg"), world.find_host, target="random", seed=7)

    assert failure is None
    assert result.pick is not None
    when = result.pick.target_time
    assert when is not None
    assert chosen.stop_time < when < datetime.now(chosen.stop_time.tzinfo)
    assert f"recovery_target_time = '{when.isoformat()}'" in server.settings[0]
    again, _ = run_drill(world.context("orders-pg"), world.find_host, target="random", seed=7)
    assert again.pick is not None and again.pick.target_time == when  # the seed makes the choice repeatable


def test_no_drillable_backup_is_a_failed_drill_that_restores_nothing(world: World) -> None:
    world.backup("orders-pg", "logical", 1 * DAY, wal=(2, 2))
    fake = drill_host(world.fake("pg1-restore"))
    FakePostgres(reached_lsn="0/0").install(fake)

    result, failure = run_drill(world.context("orders-pg"), world.find_host)

    assert isinstance(failure, DrillError)
    assert "no backup a drill can restore (PostgreSQL drills need a physical backup)" in failure.message
    assert result.ok is False and result.exit_code == failure.exit_code
    assert not fake.find(r"restore-files|pg_ctl start|touch ")
    assert str(result.stored_as).endswith("-failed.json.zst.age")
    assert stored(world, "orders-pg")[0]["reason"] == failure.one_line()


def test_a_local_drill_places_the_copy_on_this_machine(world: World) -> None:
    # orders-stg names no drill host: the drill runs here, with the configured binaries and OS user.
    world.spec["orders-stg"]["drill"] = {"bin_dir": "/opt/pg15/bin", "os_user": getpass.getuser()}
    world.backup("orders-stg", "physical", 1 * DAY, wal=(2, 3))
    world.wal("orders-stg", range(2, 5))
    fake = drill_host(world.fake("local"), bin_dir="/opt/pg15/bin")
    FakePostgres(reached_lsn="0/4000100", bin_dir="/opt/pg15/bin").install(fake)

    result, failure = run_drill(world.context("orders-stg"), world.find_host)

    assert failure is None
    place = "/home/local/dbrunbook-drill-orders-stg"
    assert result.place == DrillPlace("local", place, 6432)
    assert fake.find(rf"^/opt/pg15/bin/pg_ctl start -D {place} ")
    assert world.fake("stg1").ran == []  # the live primary's host is never touched


def test_a_mariadb_drill_of_kind_logical_skips_newer_physical_backups(world: World) -> None:
    dump = world.backup("orders-my", "logical", 2 * DAY, binlog=("mariadb-bin.000002", 4, "0-1-10"))
    world.backup("orders-my", "physical", 1 * DAY, binlog=("mariadb-bin.000004", 4, "0-1-20"))
    keys = world.binlogs("orders-my", range(1, 6))
    fake = drill_host(restore_host(world.fake("my1-restore")))
    db = restored_server("0-1-40")

    result, failure = run_drill(world.context("orders-my", database=db), world.find_host, kind="logical")

    assert failure is None, failure
    assert result.pick and (result.pick.backup, result.pick.why) == (
        dump.backup_id,
        "the newest logical backup; recovered to the newest restorable point",
    )
    place = "/home/my1-restore/dbrunbook-drill-orders-my"
    assert result.place and (result.place.data_dir, result.place.port) == (place, 4306)
    (replay,) = fake.find(r"dbrunbook-host my-replay ")
    assert [replay.argv[i + 1] for i, a in enumerate(replay.argv) if a == "--binlog-key"] == keys[1:]
    assert db.connections[0]["port"] == 4306
    assert [c.name for c in result.checks] == [
        "server started and reached the target",
        "row counts match the backup's snapshot",
        "mariadb-check",
    ]
