"""The ``--json`` documents of the repository reports, pinned key by key and value by value: backup.list,
backup.verify, keys.status, wal.check, backup.prune and backup.sign print exactly these, whatever types carry
them inside. The tasks run as an operator runs them (an inventory file), on real file repositories."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from invoke.context import Context
from invoke.exceptions import Exit

from dbrunbook.repository.manifest import Manifest, manifest_key
from dbrunbook.repository.objects import store

from .world import RECIPIENT, World

DAY = timedelta(days=1)


@dataclass
class Repo:
    old: Manifest
    new: Manifest
    my: Manifest


@pytest.fixture
def repo(world: World) -> Repo:
    world.spec["orders-pg"]["retention"] = {"keep_last": 1}
    old = world.backup("orders-pg", "physical", 2 * DAY, wal=(2, 3))
    new = world.backup("orders-pg", "physical", 1 * DAY, wal=(4, 5))
    world.wal("orders-pg", [2, 3, 4, 5, 7])  # segment 6 is missing: a critical gap
    my = world.backup("orders-my", "logical", 1 * DAY, binlog=("mariadb-bin.000002", 4, "0-1-10"))
    return Repo(old, new, my)


def unsign(world: World, cluster: str, m: Manifest) -> None:
    """Store ``m``'s manifest again without its signature, as a dbrunbook older than signing wrote it."""
    storage = world.context(cluster).storage
    storage.delete([manifest_key(m.backup_id)])
    store(storage, "manifest", manifest_key(m.backup_id), [m.to_json()], [RECIPIENT])


def run_task(world: World, capsys: pytest.CaptureFixture[str], task: Any, **flags: object) -> tuple[int, Any]:
    code = 0
    try:
        task(Context(), env=str(world.write_inventory()), json=True, **flags)
    except Exit as exc:
        code = exc.code
    return code, json.loads(capsys.readouterr().out)


def summary_of(m: Manifest, *, binlog: dict[str, Any] | None = None) -> dict[str, Any]:
    pg = m.engine == "postgresql"
    return {
        "cluster": m.cluster,
        "backup_id": m.backup_id,
        "kind": m.kind,
        "parent": None,
        "why": None,
        "source_host": m.source_host,
        "start_time": m.start_time.isoformat(),
        "stop_time": m.stop_time.isoformat(),
        "seconds": 300.0,
        "start_lsn": m.start_lsn if pg else None,
        "stop_lsn": m.stop_lsn if pg else None,
        "start_wal": m.start_wal if pg else None,
        "stop_wal": m.stop_wal if pg else None,
        "timeline": 1 if pg else None,
        "objects": 1,
        "binlog": binlog,
        "stored_mib": 0.0,
        "stored_bytes": m.total_size,
        "plain_mib": 0.0,
    }


def test_backup_list(world: World, repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    from dbrunbook.tasks.backup_tasks import list_

    code, doc = run_task(world, capsys, list_)
    assert code == 0
    binlog = {"file": "mariadb-bin.000002", "position": 4, "gtid": "0-1-10"}
    assert doc == {
        "backups": [summary_of(repo.old), summary_of(repo.new), summary_of(repo.my, binlog=binlog)],
        "refused": [],
        "leases": [],
    }
    assert list(doc["backups"][0]) == list(summary_of(repo.old))


def test_backup_list_refused_and_leases(world: World, repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    from dbrunbook.errors import ManifestRefused
    from dbrunbook.repository.lease import acquire
    from dbrunbook.tasks.backup_tasks import list_

    unsign(world, "orders-pg", repo.old)
    storage = world.context("orders-pg").storage
    lease = acquire(storage, "orders-pg", "backup", exclusive=False, command="backup.full", object_lock=False)
    try:
        code, doc = run_task(world, capsys, list_, cluster="orders-pg")
    finally:
        lease.release()
    assert code == ManifestRefused.exit_code
    key = manifest_key(repo.old.backup_id)
    (refused,) = doc["refused"]
    assert list(refused) == ["cluster", "key", "folder", "reason", "no_identity"]
    assert refused["cluster"] == "orders-pg" and refused["key"] == key and refused["folder"] == repo.old.backup_id
    assert "not signed" in refused["reason"] and refused["no_identity"] is False
    (held,) = doc["leases"]
    assert list(held) == ["cluster", "purpose", "mode", "lease_id", "holder"]
    assert (held["cluster"], held["purpose"], held["mode"]) == ("orders-pg", "backup", "shared")
    assert isinstance(held["lease_id"], str) and "backup.full" in held["holder"]
    assert doc["backups"] == [summary_of(repo.new)]


def test_backup_verify(world: World, repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    from dbrunbook.tasks.backup_tasks import verify

    storage = world.context("orders-pg").storage
    storage.delete([i.key for i in storage.list("wal/00000001/000000010000000000000003")])
    code, doc = run_task(world, capsys, verify, cluster="orders-pg", backup_id="all")
    assert code == 81  # the old backup's stop segment is gone
    new_report = {
        "backup_id": repo.new.backup_id,
        "kind": "physical",
        "chain": [repo.new.backup_id],
        "objects": 1,
        "stored_bytes": repo.new.total_size,
        "wal_segments": 2,
        "ok": True,
        "problems": [],
    }
    broken = doc["backups"][0]
    assert doc == {"cluster": "orders-pg", "ok": False, "backups": [broken, new_report]}
    assert broken == {
        "backup_id": repo.old.backup_id,
        "kind": "physical",
        "chain": [repo.old.backup_id],
        "objects": 1,
        "stored_bytes": repo.old.total_size,
        "wal_segments": 2,
        "ok": False,
        "problems": [
            {
                "key": "wal/00000001/000000010000000000000003.sha256-*",
                "problem": "WAL segment 000000010000000000000003 is not in the repository",
            }
        ],
    }


def test_backup_verify_reports_a_refused_manifest(world: World, repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    from dbrunbook.tasks.backup_tasks import verify

    unsign(world, "orders-pg", repo.old)
    code, doc = run_task(world, capsys, verify, cluster="orders-pg", backup_id="latest")
    assert code == 81
    refused = doc["backups"][1]
    assert doc["cluster"] == "orders-pg" and doc["ok"] is False and doc["backups"][0]["ok"] is True
    reason = refused["problems"][0]["problem"]
    assert reason.startswith("refused: ") and "not signed" in reason
    assert refused == {
        "backup_id": repo.old.backup_id,
        "kind": "physical",
        "chain": [],
        "objects": 0,
        "stored_bytes": 0,
        "wal_segments": 0,
        "ok": False,
        "problems": [{"key": manifest_key(repo.old.backup_id), "problem": reason}],
    }


def test_keys_status(world: World, repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    from dbrunbook.tasks.keys_tasks import status

    code, doc = run_task(world, capsys, status, cluster="orders-pg")
    assert code == 0
    backup = {"recipients": [RECIPIENT], "opened_by": [RECIPIENT]}
    assert doc == {
        "cluster": "orders-pg",
        "recipients": [RECIPIENT],
        "identities": [
            {
                "recipient": RECIPIENT,
                "writes_new_objects": True,
                "only_key_for_backups": 2,
                "only_key_for_wal": 5,
                "removable": False,
            }
        ],
        "backups": [{"backup_id": repo.old.backup_id, **backup}, {"backup_id": repo.new.backup_id, **backup}],
        "wal": [
            {
                "opened_by": [RECIPIENT],
                "first": "000000010000000000000002",
                "last": "000000010000000000000007",
                "count": 5,
            }
        ],
        "unreadable": [],
        "recipients_without_identity": [],
    }
    assert list(doc["backups"][0]) == ["backup_id", "recipients", "opened_by"]


def test_wal_check(world: World, repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    from dbrunbook.tasks.wal_tasks import check

    code, doc = run_task(world, capsys, check, cluster="orders-pg")
    assert code == 82
    assert doc == {
        "cluster": "orders-pg",
        "from": "000000010000000000000002",
        "newest": "000000010000000000000007",
        "gaps": [
            {"from": "000000010000000000000006", "to": "000000010000000000000006", "missing": 1, "critical": True}
        ],
        "timelines": [
            {
                "timeline": 1,
                "first": "000000010000000000000002",
                "last": "000000010000000000000007",
                "segments": 5,
                "history_file": True,
            }
        ],
        "timeline_switches": 0,
        "history_files": [],
        "unexpected_names": [],
        "wal_segment_size": 16 << 20,
        "wal_segment_size_from": f"backup {repo.new.backup_id}",
        "archived_twice": [],
    }
    assert list(doc) == [
        "cluster",
        "from",
        "newest",
        "gaps",
        "timelines",
        "timeline_switches",
        "history_files",
        "unexpected_names",
        "wal_segment_size",
        "wal_segment_size_from",
        "archived_twice",
    ]


def pg_plan(repo: Repo) -> dict[str, Any]:
    return {
        "cluster": "orders-pg",
        "keep": [repo.new.backup_id],
        "delete": [repo.old.backup_id],
        "decisions": [
            {"backup_id": repo.old.backup_id, "keep": False, "reasons": ["outside the policy"]},
            {"backup_id": repo.new.backup_id, "keep": True, "reasons": ["one of the last 1"]},
        ],
        "wal_keep_from": "000000010000000000000004",
        "wal_expired": 2,
        "binlog_keep_from": {},
        "binlogs_expired": 0,
        "incomplete": [],
        "refused": [],
        "notes": [],
    }


def pg_explain(repo: Repo) -> list[str]:
    return [
        f"orders-pg: delete {repo.old.backup_id}: outside the policy",
        f"orders-pg: keep   {repo.new.backup_id}: one of the last 1",
        "orders-pg: WAL: keep from segment 000000010000000000000004",
        "orders-pg: delete 2 WAL files before 000000010000000000000004",
    ]


def recap(doc: dict[str, Any]) -> list[dict[str, Any]]:
    for r in doc["recap"]:
        assert isinstance(r.pop("seconds"), float)
    return list(doc["recap"])


OK_RECAP = [{"cluster": "orders-pg", "ok": True, "exit_code": 0, "error": None}]


def test_prune_dry_run(world: World, repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    from dbrunbook.tasks.backup_tasks import prune

    code, doc = run_task(world, capsys, prune, cluster="orders-pg", dry_run=True)
    assert code == 0 and recap(doc) == OK_RECAP
    planned = {**pg_plan(repo), "dry_run": True, "explain": pg_explain(repo)}
    assert doc["clusters"] == [planned]
    assert list(doc["clusters"][0]) == list(planned) and list(doc) == ["clusters", "recap"]


def test_prune_deleting(world: World, repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    from dbrunbook.tasks.backup_tasks import prune

    code, doc = run_task(world, capsys, prune, cluster="orders-pg", yes=True)
    assert code == 0 and recap(doc) == OK_RECAP
    done = {
        **pg_plan(repo),
        "deleted": [repo.old.backup_id],
        "locked": {},
        "wal_deleted": 2,
        "wal_locked": 0,
        "explain": pg_explain(repo),
    }
    assert doc["clusters"] == [done] and list(doc["clusters"][0]) == list(done)


def test_prune_with_nothing_to_delete_and_a_refused_manifest(
    world: World, repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    from dbrunbook.errors import ManifestRefused
    from dbrunbook.tasks.backup_tasks import prune

    world.spec["orders-pg"]["retention"] = {"keep_last": 5}
    unsign(world, "orders-pg", repo.old)
    code, doc = run_task(world, capsys, prune, cluster="orders-pg", yes=True)
    assert code == ManifestRefused.exit_code and recap(doc) == OK_RECAP
    (done,) = doc["clusters"]
    refusal = {
        "key": manifest_key(repo.old.backup_id),
        "folder": repo.old.backup_id,
        "reason": done["refused"][0]["reason"],
    }
    assert done == {
        "cluster": "orders-pg",
        "keep": [repo.new.backup_id],
        "delete": [],
        "decisions": [{"backup_id": repo.new.backup_id, "keep": True, "reasons": ["one of the last 5"]}],
        "wal_keep_from": "000000010000000000000004",
        "wal_expired": 0,
        "binlog_keep_from": {},
        "binlogs_expired": 0,
        "incomplete": [],
        "refused": [refusal],
        "notes": [],
        "dry_run": False,
        "explain": done["explain"],
    }
    assert done["explain"][0] == f"orders-pg: keep   {repo.new.backup_id}: one of the last 5"


def test_prune_mariadb_binlogs(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    from dbrunbook.tasks.backup_tasks import prune

    world.spec["orders-my"]["retention"] = {"keep_last": 1}
    old = world.backup("orders-my", "logical", 2 * DAY, binlog=("mariadb-bin.000002", 4, "0-1-10"))
    new = world.backup("orders-my", "logical", 1 * DAY, binlog=("mariadb-bin.000004", 4, "0-1-20"))
    world.binlogs("orders-my", [1, 2, 3, 4, 5])
    code, doc = run_task(world, capsys, prune, cluster="orders-my", yes=True)
    assert code == 0
    (done,) = doc["clusters"]
    assert {k: done[k] for k in ("keep", "delete", "binlog_keep_from", "binlogs_expired", "wal_keep_from")} == {
        "keep": [new.backup_id],
        "delete": [old.backup_id],
        "binlog_keep_from": {"1": "mariadb-bin.000004"},
        "binlogs_expired": 3,
        "wal_keep_from": None,
    }
    assert (done["deleted"], done["locked"], done["wal_deleted"], done["wal_locked"]) == ([old.backup_id], {}, 3, 0)
    assert done["explain"][-2:] == [
        "orders-my: binlogs of server 1: keep from mariadb-bin.000004",
        "orders-my: delete 3 archived binlogs no kept backup needs",
    ]


def test_backup_sign(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    from dbrunbook.tasks.trust_tasks import sign

    older = world.backup("orders-pg", "physical", 3 * DAY, wal=(2, 3))
    world.backup("orders-pg", "physical", 2 * DAY, wal=(4, 5))
    newer = world.backup("orders-pg", "physical", 1 * DAY, wal=(6, 7))
    world.wal("orders-pg", range(2, 8))
    unsign(world, "orders-pg", older)
    unsign(world, "orders-pg", newer)
    code, doc = run_task(world, capsys, sign, cluster="orders-pg", yes=True)
    assert code == 0
    reason = doc["not_signable"][0]["reason"]
    assert "first signed backup began" in reason
    assert doc == {
        "cluster": "orders-pg",
        "unsigned": [
            {
                "backup_id": older.backup_id,
                "kind": "physical",
                "stop_time": older.stop_time.isoformat(),
                "source_host": "pg1",
                "objects": 1,
                "stored_bytes": older.total_size,
            }
        ],
        "not_signable": [{"key": manifest_key(newer.backup_id), "folder": newer.backup_id, "reason": reason}],
        "dry_run": False,
        "signed": [older.backup_id],
        "failed": [],
    }


def test_backup_sign_a_failed_check(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    from dbrunbook.errors import VerifyFailed
    from dbrunbook.tasks.trust_tasks import sign

    older = world.backup("orders-pg", "physical", 3 * DAY, wal=(2, 3))
    world.backup("orders-pg", "physical", 2 * DAY, wal=(4, 5))
    world.wal("orders-pg", [2])  # segment 3 of its range is missing: it fails its check
    unsign(world, "orders-pg", older)
    code, doc = run_task(world, capsys, sign, cluster="orders-pg", yes=True)
    assert code == VerifyFailed.exit_code
    (failed,) = doc["failed"]
    assert doc["signed"] == [] and doc["dry_run"] is False and doc["not_signable"] == []
    assert failed == {
        "backup_id": older.backup_id,
        "kind": "physical",
        "chain": [older.backup_id],
        "objects": 1,
        "stored_bytes": older.total_size,
        "wal_segments": 2,
        "ok": False,
        "problems": [
            {"key": "wal/00000001/000000010000000000000003.sha256-*", "problem": failed["problems"][0]["problem"]}
        ],
    }
    assert "is not in the repository" in failed["problems"][0]["problem"]


def test_keys_rotate_dry_run(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    from dbrunbook.tasks.keys_tasks import rotate

    identity = world.root / "new-identity.txt"
    code, doc = run_task(world, capsys, rotate, cluster="orders-pg", identity_file=str(identity), dry_run=True)
    assert code == 0 and not identity.exists()
    assert doc == {"cluster": "orders-pg", "dry_run": True, "identity_file": str(identity), "would_retire": [RECIPIENT]}
