"""What ``restore.run`` prints, pinned: the ``--json`` document and the human lines of every kind of restore
(PostgreSQL physical, paused, with keys left behind, dry runs, logical; MariaDB dump with replay and row
counts, physical without replay, dry run). The task itself runs, against fake hosts and real repositories,
so these pins hold whatever types carry the result inside."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from invoke.context import Context
from invoke.exceptions import Exit

from dbrunbook.context import ClusterContext
from dbrunbook.execution.executor import HostExecutor, RunSettings
from dbrunbook.execution.testing import FakeDatabase, Reply, Rows
from dbrunbook.inventory.model import Host
from dbrunbook.inventory.secrets import SecretResolver
from dbrunbook.repository.manifest import Manifest, manifest_key
from dbrunbook.tasks import common, restore_tasks

from .servers import FakePostgres, restore_host, restored_server
from .world import NOW, PG_BIN, World, fake_engine, wal_name

DAY = timedelta(days=1)
PG_TO = "pg1-restore"
PG_DATA = "/srv/restore/pg"
PG_KEYS = f"/home/{PG_TO}/.config/dbrunbook/restore-orders-pg-5432"
MY_TO = "my1-restore"
MY_DATA = "/srv/restore/my-copy"
#: what the agent's my-replay prints last: what the replay did, and the dump's tables counted after the load
REPLAYED = {
    "binlogs_replayed": ["mariadb-bin.000004", "mariadb-bin.000005"],
    "stopped_in": None,
    "stop_reason": "end of the archived binlogs",
    "row_counts": {"tables": 3, "rows": 1042, "mismatched": 0, "mismatches": [], "seconds": 0.25},
}


class Task:
    """``restore.run`` as an operator runs it, its hosts the world's fakes (and, given one, its SQL sessions a
    fake server); returns what it printed on stdout."""

    def __init__(self, world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        self.world, self.capsys = world, capsys
        self.database: FakeDatabase | None = None
        monkeypatch.setattr(common, "executor_for", self._executor)
        original = common.TaskRun.cluster_context

        def cluster_context(run: common.TaskRun, name: str | None) -> ClusterContext:
            ctx = original(run, name)
            if self.database is not None:
                ctx.__dict__["engine"] = fake_engine(ctx.cluster.engine.value, self.database)
            return ctx

        monkeypatch.setattr(common.TaskRun, "cluster_context", cluster_context)

    def _executor(self, name: str, _host: Host, settings: RunSettings, _resolver: SecretResolver) -> HostExecutor:
        fake = self.world.fake(name)
        fake.settings = settings  # the task's own: its dry run, its audit
        return fake

    def __call__(self, cluster: str, to: str, **flags: Any) -> str:
        self.capsys.readouterr()
        env = str(self.world.write_inventory())
        restore_tasks.run(Context(), to=to, env=env, cluster=cluster, yes=True, **flags)
        return self.capsys.readouterr().out

    def json(self, cluster: str, to: str, **flags: Any) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self(cluster, to, json=True, **flags))
        return doc


@pytest.fixture
def task(world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Task:
    return Task(world, monkeypatch, capsys)


def timed(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with its measured RTO replaced by 0.0 (after checking it is a measurement)."""
    assert isinstance(doc["rto_seconds"], float) and doc["rto_seconds"] >= 0
    return {**doc, "rto_seconds": 0.0}


def untimed(text: str) -> str:
    return re.sub(r" in [0-9.]+s;", " in Ns;", text)


def same(doc: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal, keys in the same order."""
    assert list(doc.items()) == list(expected.items())


# --- PostgreSQL ------------------------------------------------------------------------------------------


def pg_backup(world: World) -> Manifest:
    backup = world.backup("orders-pg", "physical", 1 * DAY, wal=(2, 3))
    world.wal("orders-pg", range(2, 7))
    return backup


def pg_steps(backup: Manifest, target: str, action: str = "promote") -> list[str]:
    return [
        f"check that {PG_DATA} on {PG_TO} is empty and port 5432 is free",
        f"unpack full backup {backup.backup_id} (0 MiB in 1 objects)",
        f"write recovery settings: restore_command from the repository, WAL from {wal_name(2)}, "
        f"target {target}, then {action}",
        "start PostgreSQL on port 5432 and wait until the target is reached",
    ]


def pg_plan(backup: Manifest, target: str, action: str = "promote") -> dict[str, Any]:
    return {
        "cluster": "orders-pg",
        "backup": backup.backup_id,
        "backup_stop_time": backup.stop_time.isoformat(),
        "to": PG_TO,
        "data_dir": PG_DATA,
        "port": 5432,
        "target": target,
        "target_action": action,
        "wal_from": wal_name(2),
        "chain": [backup.backup_id],
        "tablespaces": {},
        "steps": pg_steps(backup, target, action),
    }


def test_pg_restore_to_the_end_of_the_archive(world: World, task: Task) -> None:
    backup = pg_backup(world)
    FakePostgres(reached_lsn="0/6000100").install(world.fake(PG_TO))
    latest = "the end of the archived WAL"
    same(
        timed(task.json("orders-pg", PG_TO)),
        {
            **pg_plan(backup, latest),
            "reached_lsn": "0/6000100",
            "reached_time": NOW.isoformat(),
            "promoted": True,
            "paused": False,
            "rto_seconds": 0.0,
            "log": f"{PG_DATA}/dbrunbook-restore.log",
            "keys_on_host": None,
        },
    )
    assert untimed(task("orders-pg", PG_TO)) == (
        f"restored {backup.backup_id} on {PG_TO} port 5432 (promoted) in Ns; reached LSN 0/6000100, "
        f"last transaction {NOW.isoformat()}\n"
    )


def test_pg_restore_paused_at_a_named_point_keeps_its_keys(world: World, task: Task) -> None:
    backup = pg_backup(world)
    FakePostgres(reached_lsn="0/4000200", paused=True).install(world.fake(PG_TO))
    flags = {"target_name": "before-migration", "target_action": "pause"}
    same(
        timed(task.json("orders-pg", PG_TO, **flags)),
        {
            **pg_plan(backup, "name before-migration", "pause"),
            "reached_lsn": "0/4000200",
            "reached_time": NOW.isoformat(),
            "promoted": False,
            "paused": True,
            "rto_seconds": 0.0,
            "log": f"{PG_DATA}/dbrunbook-restore.log",
            "keys_on_host": PG_KEYS,
        },
    )
    assert untimed(task("orders-pg", PG_TO, force=True, **flags)).startswith(
        f"restored {backup.backup_id} on {PG_TO} port 5432 (paused at the target) in Ns; reached LSN 0/4000200"
    )


def test_pg_restore_that_cannot_remove_its_keys_says_so(world: World, task: Task) -> None:
    backup = pg_backup(world)
    fake = world.fake(PG_TO)
    FakePostgres(reached_lsn="0/6000100").install(fake)
    fake.on(rf"^rm -rf {PG_KEYS}$", Reply(exit_code=1, stderr="Permission denied"))
    doc = timed(task.json("orders-pg", PG_TO))
    same(
        doc,
        {
            **pg_plan(backup, "the end of the archived WAL"),
            "reached_lsn": "0/6000100",
            "reached_time": NOW.isoformat(),
            "promoted": True,
            "paused": False,
            "rto_seconds": 0.0,
            "log": f"{PG_DATA}/dbrunbook-restore.log",
            "keys_on_host": PG_KEYS,
            "warning": f"could not remove {PG_KEYS} on {PG_TO}: it holds private keys, remove it",
        },
    )


def test_pg_dry_run(world: World, task: Task) -> None:
    backup = pg_backup(world)
    FakePostgres(reached_lsn="0/0").install(world.fake(PG_TO))
    doc = task.json("orders-pg", PG_TO, dry_run=True)
    plan = doc.pop("plan")
    same(doc, {**pg_plan(backup, "the end of the archived WAL"), "dry_run": True})
    # Every planned command, the removal of the keys (planned as the restore unwinds) included.
    agent = f"/home/{PG_TO}/.local/share/dbrunbook/venv/bin/dbrunbook-host"
    write = """sh -c 'umask 077 && cat > "$1.tmp" && mv -f "$1.tmp" "$1"' sh"""
    assert plan == [
        f"[{PG_TO}] {line}"
        for line in (
            f"mkdir -p -m 0700 {PG_DATA}",
            f"chmod 0700 {PG_DATA}",
            f"mkdir -p -m 0700 {PG_KEYS}",
            f"{write} {PG_KEYS}/identity-0",
            f"{write} {PG_KEYS}/repository.json",
            f"{agent} restore-files --config {PG_KEYS}/repository.json --manifest-key "
            f"{manifest_key(backup.backup_id)} --manifest-digest {backup.digest()} --dest {PG_DATA} --jobs 2",
            """sh -c 'cat >> "$1/postgresql.auto.conf" && rm -f "$1/standby.signal" && touch "$1/recovery.signal"'"""
            f" sh {PG_DATA}",
            f"{PG_BIN}/pg_ctl start -D {PG_DATA} -l {PG_DATA}/dbrunbook-restore.log -W",
            f"rm -rf {PG_KEYS}",
        )
    ]
    assert task("orders-pg", PG_TO, dry_run=True) == "\n".join(
        [f"dry run: restore {backup.backup_id} to {PG_TO}:{PG_DATA}"]
        + [f"  - {s}" for s in pg_steps(backup, "the end of the archived WAL")]
        + [""]
    )


def pg_dump(world: World) -> Manifest:
    dump = world.backup("orders-pg", "logical", 1 * DAY, wal=(2, 2))
    dump = dump.model_copy(update={"databases": ["postgres", "shop"]})
    ctx = world.context("orders-pg")
    ctx.storage.delete([manifest_key(dump.backup_id)])  # written again, naming its databases
    ctx.write_manifest(dump)
    return dump


def test_pg_logical_dry_run(world: World, task: Task) -> None:
    dump = pg_dump(world)
    expected = {
        "dry_run": True,
        "backup": dump.backup_id,
        "to": "pg1",
        "database": "shop_copy",
        "steps": ["create database shop_copy on pg1", f"stream db/shop.dump of {dump.backup_id} into pg_restore"],
    }
    same(task.json("orders-pg", "pg1", database="shop:shop_copy", dry_run=True), expected)
    # Without --json too: a logical restore prints its document as it is.
    assert json.loads(task("orders-pg", "pg1", database="shop:shop_copy", dry_run=True)) == expected


def test_pg_logical_restore(world: World, task: Task) -> None:
    dump = pg_dump(world)
    task.database = (
        FakeDatabase()
        .on(r"pg_is_in_recovery", Rows(("r",), ((False,),)))
        .on(r"FROM pg_database WHERE datname", Rows(("count",), ((0,),)))
        .on(r"^CREATE DATABASE", Rows())
    )
    world.fake("pg1").on(r"dbrunbook-host logical-restore ")
    expected = {"backup": dump.backup_id, "to": "pg1", "port": 5432, "source_database": "shop", "database": "shop"}
    same(task.json("orders-pg", "pg1", database="shop"), expected)


# --- MariaDB ---------------------------------------------------------------------------------------------


def my_dump(world: World) -> Manifest:
    dump = world.backup("orders-my", "logical", 1 * DAY, binlog=("mariadb-bin.000004", 120, "0-1-20"))
    world.binlogs("orders-my", range(1, 6))
    return dump


def my_plan(backup: Manifest, kind: str, steps: list[str], binlogs: list[str], start: tuple[str, int, str]) -> Any:
    return {
        "cluster": "orders-my",
        "backup": backup.backup_id,
        "kind": kind,
        "chain": [backup.backup_id],
        "to": MY_TO,
        "data_dir": MY_DATA,
        "port": 3406,
        "target": "the end of the archived binlogs",
        "start": {"file": start[0], "position": start[1], "gtid": start[2]},
        "binlogs": binlogs,
        "steps": steps,
    }


def my_dump_steps(dump: Manifest) -> list[str]:
    return [
        f"check that {MY_DATA} is empty and port 3406 is free on {MY_TO}",
        f"create a new server in {MY_DATA} (mariadb-install-db) and start it on port 3406",
        f"load dump.sql of {dump.backup_id}",
        "replay 2 archived binlogs of server 1 from mariadb-bin.000004:120 (mariadb-bin.000004..mariadb-bin.000005) "
        "up to the end of the archived binlogs, in the same session",
    ]


MY_FLAGS = {"data_dir": MY_DATA, "port": 3406}
MY_RUNNING = {
    "socket": f"{MY_DATA}/mariadbd.sock",
    "log": f"{MY_DATA}/dbrunbook-restore.log",
    "stop": f"kill $(cat {MY_DATA}/mariadbd.pid)",
}


def test_my_dump_restore_with_replay_and_row_counts(world: World, task: Task) -> None:
    dump = my_dump(world)
    restore_host(world.fake(MY_TO)).on(r"dbrunbook-host my-replay ", Reply(stdout=json.dumps(REPLAYED) + "\n"))
    task.database = restored_server("0-1-35")
    binlogs = ["mariadb-bin.000004", "mariadb-bin.000005"]
    same(
        timed(task.json("orders-my", MY_TO, **MY_FLAGS)),
        {
            **my_plan(dump, "logical", my_dump_steps(dump), binlogs, ("mariadb-bin.000004", 120, "0-1-20")),
            **REPLAYED,
            "reached_gtid": "0-1-35",
            "rto_seconds": 0.0,
            **MY_RUNNING,
        },
    )
    assert untimed(task("orders-my", MY_TO, force=True, **MY_FLAGS)) == (
        "row counts of 3 tables (1042 rows) match the dump's\n"
        f"restored {dump.backup_id} on {MY_TO} port 3406 in Ns; replayed 2 binlogs up to the end of the "
        "archived binlogs; reached GTID 0-1-35\n"
        f"  socket {MY_DATA}/mariadbd.sock; stop it with: kill $(cat {MY_DATA}/mariadbd.pid)\n"
    )


def test_my_physical_restore_without_binlogs_to_replay(world: World, task: Task) -> None:
    full = world.backup("orders-my", "physical", 1 * DAY, binlog=("mariadb-bin.000002", 4, ""))
    world.binlogs("orders-my", [2])
    restore_host(world.fake(MY_TO)).on(r"dbrunbook-host my-replay ", Reply(stdout=""))
    task.database = restored_server("")
    steps = [
        f"check that {MY_DATA} is empty and port 3406 is free on {MY_TO}",
        f"extract {full.backup_id} (mbstream) and prepare (mariabackup --prepare)",
        "start the restored server on port 3406",
        "replay 1 archived binlogs of server 1 from mariadb-bin.000002:4 (mariadb-bin.000002..mariadb-bin.000002) "
        "up to the end of the archived binlogs, in the same session",
    ]
    same(
        timed(task.json("orders-my", MY_TO, **MY_FLAGS)),
        {
            **my_plan(full, "physical", steps, ["mariadb-bin.000002"], ("mariadb-bin.000002", 4, "")),
            "reached_gtid": "",
            "rto_seconds": 0.0,
            **MY_RUNNING,
        },
    )
    assert untimed(task("orders-my", MY_TO, force=True, **MY_FLAGS)).splitlines()[0] == (
        f"restored {full.backup_id} on {MY_TO} port 3406 in Ns; replayed 0 binlogs up to the end of the "
        "archived binlogs; reached GTID -"
    )


def test_my_dry_run(world: World, task: Task) -> None:
    dump = my_dump(world)
    restore_host(world.fake(MY_TO))
    doc = task.json("orders-my", MY_TO, dry_run=True, **MY_FLAGS)
    plan = doc.pop("plan")
    binlogs = ["mariadb-bin.000004", "mariadb-bin.000005"]
    start = ("mariadb-bin.000004", 120, "0-1-20")
    same(doc, {**my_plan(dump, "logical", my_dump_steps(dump), binlogs, start), "dry_run": True})
    assert any("mariadb-install-db" in line for line in plan)
    assert task("orders-my", MY_TO, dry_run=True, **MY_FLAGS) == "\n".join(
        [f"dry run: restore {dump.backup_id} to {MY_TO}:{MY_DATA}"] + [f"  - {s}" for s in my_dump_steps(dump)] + [""]
    )


def test_my_restore_with_other_row_counts_than_the_dump_fails_with_one_line(world: World, task: Task) -> None:
    my_dump(world)
    wrong = ["shop.orders: 40 rows restored, the backup had 41"]
    counted = {"tables": 3, "rows": 1042, "mismatched": 1, "mismatches": wrong, "seconds": 0.25}
    answer = json.dumps({**REPLAYED, "row_counts": counted})
    restore_host(world.fake(MY_TO)).on(r"dbrunbook-host my-replay ", Reply(stdout=answer + "\n"))
    task.database = restored_server("0-1-35")
    with pytest.raises(Exit) as refused:
        task("orders-my", MY_TO, **MY_FLAGS)
    assert refused.value.code == 85
    assert refused.value.message == (
        "dbrunbook: restore error: 1 of 3 tables restored with other row counts than the dump recorded, first "
        "shop.orders: 40 rows restored, the backup had 41 (the server runs on port 3406)"
    )
