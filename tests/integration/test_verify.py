"""backup.verify and wal.check on a forged chain in SeaweedFS: clean, then with a flipped byte in the
incremental and a WAL segment gone. Each problem is named by its key; nothing is restored."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dbrunbook.inventory import LoadedInventory
from dbrunbook.repository.manifest import manifest_key
from dbrunbook.repository.storage_s3 import S3Storage

from .conftest import run_cli
from .forged import private_repo


def flip_byte(storage: S3Storage, key: str, at: int = -40) -> None:
    """Damage an object in place, as bit rot or a bad copy would (the repository API itself never rewrites)."""
    full = f"{storage.prefix}/{key}"
    body = bytearray(storage._client.get_object(Bucket=storage.bucket, Key=full)["Body"].read())
    body[at] ^= 0x01
    storage._client.delete_object(Bucket=storage.bucket, Key=full)
    storage._client.put_object(Bucket=storage.bucket, Key=full, Body=bytes(body))


def test_verify_and_wal_check_name_what_is_broken(
    sandbox: dict[str, Any], dev: LoadedInventory, tmp_path: Path
) -> None:
    forged = private_repo(dev, tmp_path)
    day = datetime(2026, 11, 1, 3, tzinfo=UTC)
    full = forged.backup("20261101T030000Z-F", day, "000000010000000000000010", "000000010000000000000011")
    inc = forged.backup(
        "20261102T030000Z-I",
        day.replace(day=2),
        "000000010000000000000014",
        "000000010000000000000014",
        kind="incremental",
        parent=full.backup_id,
    )
    for seg in ("000000010000000000000012", "000000010000000000000013"):
        forged.wal(seg)
    args = (f"--env={forged.inventory}", "--json")
    try:
        ok = run_cli("backup.verify", "--backup-id=all", *args)
        assert ok.returncode == 0, ok.stderr
        reports = json.loads(ok.stdout)["backups"]
        assert [(r["backup_id"], r["ok"], r["wal_segments"]) for r in reports] == [
            (full.backup_id, True, 2),
            (inc.backup_id, True, 1),
        ]
        assert reports[1]["chain"] == [full.backup_id, inc.backup_id]
        clean = run_cli("wal.check", *args)
        assert clean.returncode == 0, clean.stderr
        assert json.loads(clean.stdout)["gaps"] == []

        assert isinstance(forged.storage, S3Storage)
        flip_byte(forged.storage, inc.objects[0].key)
        missing = forged.wal("000000010000000000000011")
        forged.storage.delete([missing, forged.wal("000000010000000000000013")])

        bad = run_cli("backup.verify", "--backup-id=all", *args)
        assert bad.returncode == 81, bad.stderr
        reports = {r["backup_id"]: r for r in json.loads(bad.stdout)["backups"]}
        assert reports[full.backup_id]["problems"] == [
            {
                "key": "wal/00000001/000000010000000000000011.sha256-*",
                "problem": "WAL segment 000000010000000000000011 is not in the repository",
            }
        ]
        [damaged] = reports[inc.backup_id]["problems"]
        assert damaged["key"] == inc.objects[0].key
        assert inc.objects[0].key in damaged["problem"]
        # One line on stderr for the operator: how many failed, and the first problem with its key.
        assert "2 of 2 backups failed verification" in bad.stderr
        assert "000000010000000000000011" in bad.stderr and "Traceback" not in bad.stderr
        # The incremental's chain is broken by its parent's missing WAL only for the parent: the latest verifies
        # its own chain's objects and its own WAL.
        latest = run_cli("backup.verify", *args)
        assert latest.returncode == 81
        assert [p["key"] for p in json.loads(latest.stdout)["backups"][0]["problems"]] == [inc.objects[0].key]

        gaps = run_cli("wal.check", *args)
        assert gaps.returncode == 82, gaps.stderr
        # 11 breaks the full backup itself: critical. 13 lies between the two backups: the full backup can no
        # longer replay past it, but the incremental restores to now; reported, not critical.
        assert json.loads(gaps.stdout)["gaps"] == [
            {"from": "000000010000000000000011", "to": "000000010000000000000011", "missing": 1, "critical": True},
            {"from": "000000010000000000000013", "to": "000000010000000000000013", "missing": 1, "critical": False},
        ]
        assert "1 gaps in the archived WAL break a backup" in gaps.stderr
        # The full backup gone: the incremental's chain is broken, reported as its problem, not a crash.
        forged.storage.delete([manifest_key(full.backup_id)])
        orphan = run_cli("backup.verify", "--backup-id=all", *args)
        assert orphan.returncode == 81, orphan.stderr
        [report] = json.loads(orphan.stdout)["backups"]
        assert "chain is broken" in report["problems"][0]["problem"]
    finally:
        forged.wipe()
