"""A database host can write any object to the repository and encrypt it to the recipients: only a manifest
the controller signed makes a backup. Forged manifests are refused with one line naming their key, and
nothing is deleted because of them. Backups an older dbrunbook wrote (unsigned) are signed after proof."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dbrunbook.inventory import LoadedInventory
from dbrunbook.repository.manifest import Manifest, manifest_key, object_key
from dbrunbook.repository.objects import store

from .conftest import run_cli
from .forged import ForgedRepo, private_repo, store_manifest


def _history(forged: ForgedRepo) -> tuple[list[Manifest], datetime]:
    """Two real (signed) backups, a day apart, with their WAL."""
    day = datetime.now(UTC).replace(hour=3, minute=10, second=0, microsecond=0) - timedelta(days=2)
    first = forged.backup(f"{day:%Y%m%dT%H%M%SZ}-F", day, "000000010000000000000010", "000000010000000000000011")
    later = day + timedelta(days=1)
    second = forged.backup(f"{later:%Y%m%dT%H%M%SZ}-F", later, "000000010000000000000014", "000000010000000000000015")
    return [first, second], later


def _forge(forged: ForgedRepo, folder: str, **changes: Any) -> str:
    """What a compromised host can write: a manifest encrypted to the recipients, with no signature."""
    base = dict(
        backup_id=folder,
        kind="physical",
        engine="postgresql",
        cluster="pg-main",
        server_version="15",
        timeline=1,
        start_wal="0000000100000FFF000000FF",
        stop_wal="0000000100000FFF000000FF",
        start_time=datetime(2999, 1, 1, tzinfo=UTC),
        stop_time=datetime(2999, 1, 1, 0, 10, tzinfo=UTC),
        source_host="pg-main-1",
        objects=[],
        recipients=forged.recipients,
        tool_version="forged",
    )
    base.update(changes)
    manifest = Manifest(**base)
    key = manifest_key(folder)
    store(forged.storage, "manifest", key, [manifest.to_json()], forged.recipients)
    return key


def _keys(forged: ForgedRepo) -> list[str]:
    return sorted(i.key for i in forged.storage.list("") if not i.key.startswith("locks/"))


def test_forged_manifests_are_refused_and_prune_deletes_nothing_because_of_them(
    sandbox: dict[str, Any], dev: LoadedInventory, tmp_path: Path
) -> None:
    forged = private_repo(dev, tmp_path, {"keep_last": 1})
    env = f"--env={forged.inventory}"
    try:
        real, _ = _history(forged)
        # 1. From the future, with a start segment far past the archive: it would be "latest" and expire all WAL.
        future = _forge(forged, "29990101T000000Z-F")
        # 2. In its own folder, claiming the newest real backup's id (prune deleted by the claimed id).
        impostor = _forge(forged, "20200101T000000Z-F", backup_id=real[1].backup_id)
        # 3. Signed by the real key, but listing another backup's objects as its own.
        stolen = Manifest(**{**real[0].model_dump(), "backup_id": "20200102T000000Z-F", "objects": real[0].objects})
        store_manifest(forged.storage, stolen, forged.signer, forged.recipients)
        # 4. A real signed manifest copied into another folder: the signature covers where it was written.
        moved = manifest_key("20200103T000000Z-F")
        with forged.storage.open(manifest_key(real[0].backup_id)) as fh:
            forged.storage.put(moved, [fh.read()])
        before = _keys(forged)

        listed = run_cli("backup.list", env, "--json")
        assert listed.returncode == 77, listed.stderr  # listed, then the exit code says something is wrong
        doc = json.loads(listed.stdout)
        assert [b["backup_id"] for b in doc["backups"]] == [m.backup_id for m in real]
        reasons = {r["key"]: r["reason"] for r in doc["refused"]}
        assert set(reasons) == {future, impostor, manifest_key("20200102T000000Z-F"), moved}
        assert "not signed" in reasons[future]
        assert f"claims backup id {real[1].backup_id}" in reasons[impostor]
        assert (
            f"lists object {real[0].objects[0].key}, outside its folder" in reasons[manifest_key("20200102T000000Z-F")]
        )
        assert "does not match its content" in reasons[moved]
        text = run_cli("backup.list", env).stdout
        assert f"REFUSED manifest {future}: it is not signed" in text

        res = run_cli("backup.prune", env, "--yes", "--json")
        assert res.returncode == 77, res.stderr
        assert res.stderr.count("\n") == 1 and "manifests refused" in res.stderr and "Traceback" not in res.stderr
        result = json.loads(res.stdout)["clusters"][0]
        # keep_last 1 still deletes the older real backup, as it would without the forgeries; nothing else goes:
        # not the newest real backup, not a forged folder, not one WAL file.
        assert result["deleted"] == [real[0].backup_id] and result["wal_deleted"] == 0
        after = _keys(forged)
        assert [k for k in before if k not in after] == [
            k for k in before if k.startswith(f"backups/{real[0].backup_id}/")
        ]

        # Restore and drill refuse a refused backup by name, with one line.
        res = run_cli("restore.run", env, "--to=pg-main-2", "--backup=29990101T000000Z-F", "--data-dir=/nonexistent")
        assert res.returncode == 80 and f"backup 29990101T000000Z-F is not trusted: manifest {future}" in res.stderr
    finally:
        forged.wipe()


def test_backups_of_an_older_dbrunbook_are_signed_after_proof(
    sandbox: dict[str, Any], dev: LoadedInventory, tmp_path: Path
) -> None:
    forged = private_repo(dev, tmp_path)
    env = f"--env={forged.inventory}"
    try:
        forged.signer = None  # written the way dbrunbook wrote manifests before signing
        legacy, _ = _history(forged)
        # One of them damaged since: it must not be signed.
        bad = legacy[0].objects[0].key
        forged.storage.delete([bad])
        store(forged.storage, "data/0001.tar", bad, [b"something else"], forged.recipients)
        listed = json.loads(run_cli("backup.list", env, "--json").stdout)
        assert listed["backups"] == [] and len(listed["refused"]) == 2

        dry = run_cli("backup.sign", env, "--dry-run", "--json")
        assert dry.returncode == 0, dry.stderr
        assert [b["backup_id"] for b in json.loads(dry.stdout)["unsigned"]] == [m.backup_id for m in legacy]
        assert run_cli("backup.sign", env).returncode == 50  # no terminal and no --yes: refuses, signs nothing

        res = run_cli("backup.sign", env, "--yes", "--json")
        assert res.returncode == 81, res.stderr
        assert bad in res.stderr and "Traceback" not in res.stderr
        assert json.loads(res.stdout)["signed"] == [legacy[1].backup_id]
        listed = json.loads(run_cli("backup.list", env, "--json").stdout)
        assert [b["backup_id"] for b in listed["backups"]] == [legacy[1].backup_id]
        assert [r["folder"] for r in listed["refused"]] == [legacy[0].backup_id]
        # The manifest itself was not rewritten: the signature is a new object beside it.
        assert forged.storage.exists(object_key(legacy[1].backup_id, "manifest.sig"))
    finally:
        forged.wipe()
