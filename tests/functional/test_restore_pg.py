"""PostgreSQL restore, driven like restore.run: the catalog in a real repository picks the chain, the plan
checks the target, and run_restore sends its commands to a fake restore host, whose PostgreSQL says how far
recovery got."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from dbrunbook.engines.postgresql.restore import backup_tablespaces, run_restore
from dbrunbook.engines.postgresql.restore_plan import plan_restore
from dbrunbook.engines.target import RecoveryTarget
from dbrunbook.errors import RecoveryStoppedEarly, RestoreError
from dbrunbook.repository.manifest import Manifest, manifest_key

from .servers import FakePostgres
from .world import NOW, World, segment_lsn, wal_name

TO = "pg1-restore"
DATA = "/srv/restore/pg"
DAY = timedelta(days=1)


def restore(world: World, server: FakePostgres, *, backup: str = "latest", **target: Any) -> dict[str, Any]:
    """restore.run --to pg1-restore for orders-pg: the same calls the task makes."""
    server.install(world.fake(TO))
    ctx = world.context("orders-pg")
    flags = {"time": None, "lsn": None, "xid": None, "name": None, **target}
    recovery = RecoveryTarget.from_flags(**flags)
    catalog = ctx.catalog()
    manifest = catalog.find(backup)
    chain = catalog.chain(manifest)
    _, target_cluster = world.find_host(TO)
    host = target_cluster.hosts[TO]
    plan = plan_restore(
        manifest, ctx.name, TO, host.data_dir, host.port, recovery, chain, tablespaces=backup_tablespaces(ctx, chain)
    )
    return run_restore(ctx, plan, target_cluster, force=False, confirm=lambda _q: None).as_dict()


def chain_of_three(world: World) -> list[Manifest]:
    full = world.backup("orders-pg", "physical", 3 * DAY, wal=(2, 3))
    inc1 = world.backup("orders-pg", "incremental", 2 * DAY, parent=full, wal=(4, 5))
    inc2 = world.backup("orders-pg", "incremental", 1 * DAY, parent=inc1, wal=(6, 7))
    return [full, inc1, inc2]


def manifest_args(argv: tuple[str, ...]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "--manifest-key"]


def test_restore_to_latest_unpacks_the_whole_chain_and_replays_to_the_archive_end(world: World) -> None:
    chain = chain_of_three(world)
    world.wal("orders-pg", range(2, 10))
    server = FakePostgres(reached_lsn="0/9000148")
    result = restore(world, server)

    fake = world.fake(TO)
    (unpack,) = fake.find(r"dbrunbook-host restore-files ")
    assert manifest_args(unpack.argv) == [manifest_key(m.backup_id) for m in chain]  # full first
    digests = [unpack.argv[i + 1] for i, a in enumerate(unpack.argv) if a == "--manifest-digest"]
    assert digests == [m.digest() for m in chain]
    assert unpack.argv[unpack.argv.index("--dest") + 1] == DATA
    assert result["chain"] == [m.backup_id for m in chain] and result["promoted"] is True
    (settings,) = server.settings
    assert "recovery_target_timeline = 'latest'" in settings and "recovery_target_time =" not in settings
    assert "archive_mode = 'off'" in settings
    # Checks first, then unpack, settings, start; the private keys are removed at the end.
    order = [
        next(i for i, line in enumerate(fake.lines()) if re.search(p, line))
        for p in (r"^sh -c 'test ! -e", r"pg_isready", r"restore-files", r"postgresql\.auto\.conf", r"pg_ctl start")
    ]
    assert order == sorted(order)
    config_dir = f"/home/{TO}/.config/dbrunbook/restore-orders-pg-5432"
    assert fake.lines()[-1] == f"rm -rf {config_dir}" and result["keys_on_host"] is None
    assert all(r.env_names == () for r in fake.ran)  # nothing secret travels in the environment
    assert [r.description for r in fake.ran if r.stdin] == [
        "write identity-0",
        "write config",
        "write recovery settings",
        "write a private file",
    ]


def test_restore_to_a_time_writes_the_target_and_refuses_a_time_before_the_backup(world: World) -> None:
    old = world.backup("orders-pg", "physical", 3 * DAY, wal=(2, 3))
    world.backup("orders-pg", "physical", 1 * DAY, wal=(6, 7))
    world.wal("orders-pg", range(2, 9))
    when = (NOW - 2 * DAY).isoformat()

    # The newest backup became consistent after that time: the plan refuses before any host is reached.
    with pytest.raises(RestoreError, match=r"is before backup .* became consistent.*choose an older backup"):
        restore(world, FakePostgres(reached_lsn="0/5000000"), time=when)
    assert world.fake(TO).ran == []

    server = FakePostgres(reached_lsn="0/5000100")
    result = restore(world, server, backup=old.backup_id, time=when)
    assert result["backup"] == old.backup_id and result["target"] == f"time {when}"
    assert f"recovery_target_time = '{when}'" in server.settings[0]
    assert "recovery_target_action = 'promote'" in server.settings[0]


def test_a_time_before_the_oldest_backup_is_refused(world: World) -> None:
    oldest = world.backup("orders-pg", "physical", 3 * DAY, wal=(2, 3))
    with pytest.raises(RestoreError, match=f"before backup {oldest.backup_id}"):
        restore(world, FakePostgres(reached_lsn="0/0"), backup=oldest.backup_id, time=(NOW - 4 * DAY).isoformat())
    assert world.fake(TO).ran == []


def test_restore_to_a_named_point_that_pauses_keeps_the_keys_for_the_paused_copy(world: World) -> None:
    world.backup("orders-pg", "physical", 1 * DAY, wal=(2, 3))
    world.wal("orders-pg", range(2, 6))
    server = FakePostgres(reached_lsn="0/4000200", paused=True)
    result = restore(world, server, name="before-migration", action="pause")
    assert "recovery_target_name = 'before-migration'" in server.settings[0]
    assert "recovery_target_action = 'pause'" in server.settings[0]
    assert result["paused"] is True and result["keys_on_host"].endswith("/restore-orders-pg-5432")
    assert not world.fake(TO).find(r"^rm -rf .*/restore-orders-pg-5432$")


def test_restore_to_an_lsn(world: World) -> None:
    world.backup("orders-pg", "physical", 1 * DAY, wal=(2, 3))
    world.wal("orders-pg", range(2, 6))
    server = FakePostgres(reached_lsn="0/4000028")
    restore(world, server, lsn="0/4000028")
    assert "recovery_target_lsn = '0/4000028'" in server.settings[0]


def test_a_gap_in_the_wal_archive_fails_a_restore_to_latest(world: World) -> None:
    world.backup("orders-pg", "physical", 1 * DAY, wal=(2, 3))
    world.wal("orders-pg", [2, 3, 4, 6, 7])  # segment 5 never reached the repository
    # PostgreSQL stops quietly at the first segment it cannot fetch, and promotes.
    server = FakePostgres(reached_lsn="0/4FFFFD8")
    with pytest.raises(
        RecoveryStoppedEarly, match=f"segment {wal_name(4)}.*before the newest archived WAL segment {wal_name(7)}"
    ):
        restore(world, server)
    # The copy stays for a look, but the private keys do not.
    assert world.fake(TO).lines()[-1] == f"rm -rf /home/{TO}/.config/dbrunbook/restore-orders-pg-5432"
    assert segment_lsn(7) == "0/7000000"


def test_a_dry_run_plans_the_mutating_commands_and_runs_only_the_checks(world: World) -> None:
    world.backup("orders-pg", "physical", 1 * DAY, wal=(2, 3))
    world.wal("orders-pg", range(2, 5))
    world.settings.dry_run = True
    result = restore(world, FakePostgres(reached_lsn="0/0"))
    fake = world.fake(TO)
    assert result["dry_run"] is True
    assert all(r.planned for r in fake.find(r"restore-files|pg_ctl start|postgresql\.auto\.conf|mkdir|chmod"))
    ran = fake.lines(planned=False)
    assert any("pg_isready" in line for line in ran) and not any("restore-files" in line for line in ran)
    assert any("restore-files" in line for line in result["plan"])
