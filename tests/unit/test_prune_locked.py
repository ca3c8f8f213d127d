"""A backup whose manifest Object Lock refuses to delete stays restorable: prune keeps its WAL too."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dbrunbook.backup.prune import PrunePlan, run_prune
from dbrunbook.backup.retention import BackupFacts, plan_retention
from dbrunbook.inventory.model import Retention
from dbrunbook.repository.manifest import manifest_key
from dbrunbook.repository.storage_file import FileStorage


class LockedManifest(FileStorage):
    """A real file repository where one backup's manifest is under (simulated) Object Lock."""

    locked = manifest_key("b1")

    def delete(self, keys: Sequence[str]) -> list[str]:
        refused = [k for k in keys if k == self.locked]
        super().delete([k for k in keys if k not in refused])
        return refused


def test_wal_of_a_locked_backup_stays(tmp_path: Path) -> None:
    storage = LockedManifest(tmp_path / "repo")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    facts = [
        BackupFacts(f"b{i}", "physical", t0 + timedelta(days=i), start_wal=f"0000000100000000000000{i:02X}")
        for i in (1, 2, 3)
    ]
    for f in facts:
        storage.put_bytes(manifest_key(f.backup_id), b"m")
        storage.put_bytes(f"backups/{f.backup_id}/data/0001.tar.zst.age", b"d")
    wal = [f"wal/00000001/0000000100000000000000{i:02X}.sha256-{i:016x}.zst.age" for i in range(4)]
    for key in wal:
        storage.put_bytes(key, b"w")
    retention = plan_retention(facts, Retention(keep_last=1), t0 + timedelta(days=10))
    assert retention.delete == ["b1", "b2"] and retention.wal_keep_from == facts[2].start_wal
    plan = PrunePlan("c", retention, wal[:3], [], {f.backup_id: f.start_wal for f in facts if f.start_wal})
    result = run_prune(storage, plan).as_dict()
    assert result["deleted"] == ["b2"] and list(result["locked"]) == ["b1"]
    # b1 is still complete, so the WAL from its start on is still needed: only segment 00 goes.
    left = sorted(info.key for info in storage.list("wal/"))
    assert left == wal[1:] and result["wal_deleted"] == 1
