"""MariaDB restore, driven like restore.run: the catalog and the binlog archive in a real repository make
the plan (chain, binlogs to replay, refusals), and run_my_restore sends its commands to a fake restore host
and asks a fake server how far the replay got."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from dbrunbook.engines.mariadb.backup import binlog_keys
from dbrunbook.engines.mariadb.binlog import ReplayTarget
from dbrunbook.engines.mariadb.restore import plan_my_restore, run_my_restore
from dbrunbook.errors import RestoreError
from dbrunbook.execution.testing import FakeDatabase, Ran
from dbrunbook.repository.manifest import Manifest, manifest_key

from .servers import restore_host, restored_server
from .world import NOW, World

TO = "my1-restore"
DATA = "/srv/restore/my-copy"
PORT = 3406
DAY = timedelta(days=1)


def restore(world: World, db: FakeDatabase, *, backup: str = "latest", **target: Any) -> dict[str, Any]:
    """restore.run --to my1-restore --data-dir ... --port 3406 for orders-my: the same calls the task makes."""
    restore_host(world.fake(TO))
    ctx = world.context("orders-my", database=db)
    replay = ReplayTarget.from_flags(target.get("time"), target.get("position"), target.get("gtid"))
    catalog = ctx.catalog()
    manifest = catalog.find(backup)
    chain = catalog.chain(manifest)
    archive = binlog_keys(ctx, int(manifest.extra.get("server_id", 0)))
    _, target_cluster = world.find_host(TO)
    plan = plan_my_restore(ctx.name, manifest, chain, archive, TO, DATA, PORT, replay)
    return run_my_restore(ctx, plan, target_cluster, force=False, confirm=lambda _q: None).as_dict()


def values(ran: Ran, flag: str) -> list[str]:
    return [ran.argv[i + 1] for i, a in enumerate(ran.argv) if a == flag]


def dumps(world: World) -> tuple[Manifest, Manifest]:
    old = world.backup("orders-my", "logical", 2 * DAY, binlog=("mariadb-bin.000002", 4, "0-1-10"))
    new = world.backup("orders-my", "logical", 1 * DAY, binlog=("mariadb-bin.000004", 120, "0-1-20"))
    return old, new


def test_a_dump_and_the_binlogs_after_it_are_replayed_to_the_end(world: World) -> None:
    _, newest = dumps(world)
    keys = world.binlogs("orders-my", range(1, 7))
    db = restored_server("0-1-35")
    result = restore(world, db)

    fake = world.fake(TO)
    (replay,) = fake.find(r"dbrunbook-host my-replay ")
    assert values(replay, "--dump-manifest-key") == [manifest_key(newest.backup_id)]
    assert values(replay, "--dump-manifest-digest") == [newest.digest()]
    assert values(replay, "--start") == ["mariadb-bin.000004:120"]
    assert values(replay, "--binlog-key") == keys[3:]  # 000004 .. 000006, in order
    assert "--target-time" not in replay.argv and "--target-gtid" not in replay.argv
    assert replay.argv[replay.argv.index("--") + 1 :][:2] == ("mariadb", f"--socket={DATA}/mariadbd.sock")
    assert fake.find(rf"^mariadb-install-db --no-defaults --datadir={DATA} ")
    start = fake.find(r"^sh -c 'log=\$1")[0]
    assert f"--port={PORT}" in start.argv and f"--datadir={DATA}" in start.argv
    assert result["backup"] == newest.backup_id and result["reached_gtid"] == "0-1-35"
    assert db.connections == [{"address": "127.0.0.1", "port": PORT, "user": "dbrunbook", "database": None}]
    assert db.texts() == ["SELECT @@gtid_binlog_pos"]


def test_replay_to_a_position_reads_only_the_binlogs_up_to_it(world: World) -> None:
    dumps(world)
    keys = world.binlogs("orders-my", range(1, 8))
    restore(world, restored_server(), position="mariadb-bin.000005:300")
    (replay,) = world.fake(TO).find(r"dbrunbook-host my-replay ")
    assert values(replay, "--binlog-key") == keys[3:5]
    assert values(replay, "--target-position") == ["mariadb-bin.000005:300"]


def test_replay_to_a_time_picks_the_named_backup(world: World) -> None:
    old, _ = dumps(world)
    world.binlogs("orders-my", range(1, 7))
    when = (NOW - DAY - timedelta(hours=12)).isoformat()
    result = restore(world, restored_server(), backup=old.backup_id, time=when)
    (replay,) = world.fake(TO).find(r"dbrunbook-host my-replay ")
    assert values(replay, "--start") == ["mariadb-bin.000002:4"] and values(replay, "--target-time") == [when]
    assert result["backup"] == old.backup_id


@pytest.mark.parametrize(
    ("target", "binlogs", "refusal"),
    [
        ({"time": (NOW - 3 * DAY).isoformat()}, range(1, 7), r"target time .* is before backup"),
        ({"gtid": "0-1-15"}, range(1, 7), r"GTID 0-1-15 is already in backup"),
        ({"position": "mariadb-bin.000003:100"}, range(1, 7), r"target mariadb-bin.000003:100 is before the backup"),
        ({}, [1, 2, 3, 4, 6, 7], r"binlog mariadb-bin.000005 is missing from the repository"),
        ({"position": "mariadb-bin.000009:4"}, range(1, 7), r"binlog mariadb-bin.000009 is not in the repository"),
    ],
)
def test_refusals_come_before_anything_reaches_the_host(
    world: World, target: dict[str, str], binlogs: list[int], refusal: str
) -> None:
    dumps(world)
    world.binlogs("orders-my", binlogs)
    with pytest.raises(RestoreError, match=refusal):
        restore(world, restored_server(), **target)
    assert world.fake(TO).ran == []


def test_a_physical_chain_is_extracted_and_prepared_in_order(world: World) -> None:
    full = world.backup("orders-my", "physical", 3 * DAY, binlog=("mariadb-bin.000002", 4, "0-1-10"))
    inc1 = world.backup("orders-my", "incremental", 2 * DAY, parent=full, binlog=("mariadb-bin.000004", 4, "0-1-20"))
    inc2 = world.backup("orders-my", "incremental", 1 * DAY, parent=inc1, binlog=("mariadb-bin.000006", 4, "0-1-30"))
    keys = world.binlogs("orders-my", range(1, 8))
    result = restore(world, restored_server())

    fake = world.fake(TO)
    extracts = fake.find(r"dbrunbook-host my-extract ")
    assert [values(r, "--manifest-key") for r in extracts] == [[manifest_key(m.backup_id)] for m in (full, inc1, inc2)]
    scratch = "/tmp/dbrunbook.my1-restore"
    assert [r.argv[-1] for r in extracts] == [DATA, f"{scratch}/inc1", f"{scratch}/inc2"]
    assert [r.shell() for r in fake.find(r"^mariadb-backup --prepare")] == [
        f"mariadb-backup --prepare --target-dir={DATA}",
        f"mariadb-backup --prepare --target-dir={DATA} --incremental-dir={scratch}/inc1",
        f"mariadb-backup --prepare --target-dir={DATA} --incremental-dir={scratch}/inc2",
    ]
    (replay,) = fake.find(r"dbrunbook-host my-replay ")
    assert values(replay, "--start") == ["mariadb-bin.000006:4"] and values(replay, "--binlog-key") == keys[5:]
    assert "--dump-manifest-key" not in replay.argv  # nothing to load: the data files are the backup
    # The restored server's login reaches the client through a 0600 file, never argv.
    defaults = next(a for a in replay.argv if a.startswith("--defaults-extra-file="))
    assert defaults.startswith(f"--defaults-extra-file={scratch}/")
    assert not fake.find(r"^mariadb-install-db")
    assert result["chain"] == [full.backup_id, inc1.backup_id, inc2.backup_id]
