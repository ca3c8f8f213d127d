"""Prune's effects on a real file repository: exactly the expected keys go, a dry run and a held lease
change nothing. Backups, WAL and binlogs are written by the repository code the backup tasks use."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from invoke.context import Context
from invoke.exceptions import Exit

from dbrunbook.backup.prune import plan_prune, run_prune
from dbrunbook.errors import InventoryError, LeaseHeld
from dbrunbook.repository.lease import acquire
from dbrunbook.repository.manifest import Manifest, backup_prefix, new_backup_id, object_key
from dbrunbook.repository.objects import store

from .world import RECIPIENT, World

DAY = timedelta(days=1)


@dataclass
class PgRepo:
    old: Manifest
    kept: list[Manifest]
    expired_wal: set[str]
    kept_wal: set[str]
    abandoned: set[str]  # objects of a backup that never got a manifest, two days ago
    running: set[str]  # objects of a backup started an hour ago, still without a manifest


def started_backup(world: World, age: timedelta) -> set[str]:
    """Objects of a backup that has no manifest (killed, or still running), last written ``age`` ago."""
    storage = world.context("orders-pg").storage
    backup_id = new_backup_id("physical", datetime.now(UTC) - age)
    key = object_key(backup_id, "data/0001.tar")
    store(storage, "data/0001.tar", key, [b"partial"], [RECIPIENT])
    then = (datetime.now(UTC) - age).timestamp()
    os.utime(world.root / "repos" / "orders-pg" / key, (then, then))  # the file backend's Last-Modified
    return {i.key for i in storage.list(backup_prefix(backup_id))}


@pytest.fixture
def pg_repo(world: World) -> PgRepo:
    world.spec["orders-pg"]["retention"] = {"keep_last": 2}
    old = world.backup("orders-pg", "physical", 3 * DAY, wal=(2, 3))
    kept = [
        world.backup("orders-pg", "physical", 2 * DAY, wal=(4, 5)),
        world.backup("orders-pg", "physical", 1 * DAY, wal=(6, 7)),
    ]
    expired = set(world.wal("orders-pg", [1, 2, 3]))
    kept_wal = set(world.wal("orders-pg", range(4, 9)))
    return PgRepo(
        old,
        kept,
        expired,
        kept_wal,
        started_backup(world, 2 * DAY + timedelta(hours=3)),
        started_backup(world, timedelta(hours=1)),
    )


def prune(world: World, cluster: str, *, dry_run: bool = False) -> dict[str, object]:
    """backup.prune's work on one cluster: plan under the exclusive lease, then delete (unless a dry run)."""
    ctx = world.context(cluster)
    with ctx.lease("prune", exclusive=True, dry_run=dry_run):
        plan = plan_prune(ctx, datetime.now(UTC))
        if dry_run:
            return {**plan.as_dict(), "dry_run": True}
        return run_prune(ctx.storage, plan, world.settings.audit).as_dict()


def test_prune_deletes_exactly_what_the_policy_does_not_keep(world: World, pg_repo: PgRepo) -> None:
    before = world.keys("orders-pg")
    result = prune(world, "orders-pg")
    gone = before - world.keys("orders-pg")
    old_backup = {k for k in before if k.startswith(backup_prefix(pg_repo.old.backup_id))}
    assert gone == old_backup | pg_repo.expired_wal | pg_repo.abandoned
    assert len(old_backup) == 2  # its data object and its manifest
    assert result["deleted"] == [pg_repo.old.backup_id]
    assert result["keep"] == [m.backup_id for m in pg_repo.kept]
    assert result["wal_deleted"] == 3 and result["wal_keep_from"] == pg_repo.kept[0].start_wal
    assert pg_repo.kept_wal | pg_repo.running <= world.keys("orders-pg")
    # The catalog the next restore reads no longer has the deleted backup, and still has the others.
    assert [m.backup_id for m in world.context("orders-pg").catalog().manifests] == [m.backup_id for m in pg_repo.kept]
    deletes = [json.loads(line) for line in (world.root / "audit.jsonl").read_text().splitlines()]
    assert next(d["text"] for d in deletes if d["kind"] == "delete").startswith(f"backup {pg_repo.old.backup_id}: ")


def test_a_dry_run_deletes_nothing_and_says_what_it_would(world: World, pg_repo: PgRepo) -> None:
    before = world.keys("orders-pg")
    plan = prune(world, "orders-pg", dry_run=True)
    assert world.keys("orders-pg") == before
    assert plan["delete"] == [pg_repo.old.backup_id] and plan["wal_expired"] == 3
    assert plan["incomplete"] == [next(iter(pg_repo.abandoned)).split("/")[1]]


@pytest.fixture
def held_backup_lease(world: World) -> Iterator[None]:
    """Another run (a backup on another controller) holds the cluster's shared lease."""
    lease = acquire(
        world.context("orders-pg").storage,
        "orders-pg",
        "backup",
        exclusive=False,
        command="backup.full",
        object_lock=False,
    )
    yield
    lease.release()


def test_a_held_lease_blocks_prune(world: World, pg_repo: PgRepo, held_backup_lease: None) -> None:
    before = world.keys("orders-pg", "backups/") | world.keys("orders-pg", "wal/")
    with pytest.raises(LeaseHeld, match=r"prune refused: the repository is busy with .*backup"):
        prune(world, "orders-pg")
    assert world.keys("orders-pg", "backups/") | world.keys("orders-pg", "wal/") == before


def test_mariadb_prune_deletes_the_binlogs_no_kept_backup_needs(world: World) -> None:
    world.spec["orders-my"]["retention"] = {"keep_last": 2}
    old = world.backup("orders-my", "logical", 3 * DAY, binlog=("mariadb-bin.000002", 4, "0-1-10"))
    world.backup("orders-my", "logical", 2 * DAY, binlog=("mariadb-bin.000004", 4, "0-1-20"))
    world.backup("orders-my", "logical", 1 * DAY, binlog=("mariadb-bin.000006", 4, "0-1-30"))
    expired = set(world.binlogs("orders-my", [1, 2, 3]))
    kept = set(world.binlogs("orders-my", range(4, 8)))
    before = world.keys("orders-my")
    result = prune(world, "orders-my")
    gone = before - world.keys("orders-my")
    assert gone == expired | {k for k in before if k.startswith(backup_prefix(old.backup_id))}
    assert kept <= world.keys("orders-my")
    assert result["binlog_keep_from"] == {"1": "mariadb-bin.000004"} and result["binlogs_expired"] == 3


# --- the task itself: it loads the same inventory from a file and touches no host --------------------


def run_task(world: World, capsys: pytest.CaptureFixture[str], **flags: object) -> tuple[int, dict[str, Any]]:
    from dbrunbook.tasks.backup_tasks import prune as prune_task

    code = 0
    try:
        prune_task(Context(), env=str(world.write_inventory()), json=True, **flags)
    except Exit as exc:
        code = exc.code
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def test_the_task_dry_run_deletes_nothing(world: World, pg_repo: PgRepo, capsys: pytest.CaptureFixture[str]) -> None:
    before = world.keys("orders-pg")
    code, doc = run_task(world, capsys, cluster="orders-pg", dry_run=True)
    assert code == 0 and world.keys("orders-pg") == before
    (planned,) = doc["clusters"]
    assert planned["dry_run"] is True and planned["delete"] == [pg_repo.old.backup_id]


def test_the_task_refuses_to_delete_without_a_selection(
    world: World, pg_repo: PgRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    before = world.keys("orders-pg")
    code, doc = run_task(world, capsys, yes=True)
    assert code == InventoryError.exit_code and world.keys("orders-pg") == before
    assert "name the clusters with --cluster" in str(doc)


def test_the_task_under_a_held_lease_exits_78_and_deletes_nothing(
    world: World, pg_repo: PgRepo, held_backup_lease: None, capsys: pytest.CaptureFixture[str]
) -> None:
    before = world.keys("orders-pg", "backups/") | world.keys("orders-pg", "wal/")
    code, doc = run_task(world, capsys, cluster="orders-pg", yes=True)
    assert code == LeaseHeld.exit_code == 78
    assert world.keys("orders-pg", "backups/") | world.keys("orders-pg", "wal/") == before
    (recap,) = doc["recap"]
    assert (recap["cluster"], recap["ok"], recap["exit_code"]) == ("orders-pg", False, 78)
    assert "busy with" in recap["error"]
