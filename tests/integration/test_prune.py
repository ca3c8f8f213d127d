"""backup.prune against SeaweedFS on a forged history: 60 daily backups with their WAL, and a backup that
never completed, written through the real object pipeline under a private prefix. The planner's clock
(``--now``) makes the dates mean something."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from dbrunbook.backup.manifest import Manifest, manifest_key, object_key
from dbrunbook.backup.objects import store
from dbrunbook.backup.storage import open_storage
from dbrunbook.inventory import LoadedInventory, SecretResolver

from .conftest import run_cli

DAYS = 60


def forge(dev: LoadedInventory, tmp_path: Path) -> tuple[Any, Path, datetime, list[str]]:
    pg = dev.inventory.clusters["pg-main"]
    assert pg.repository is not None and pg.encryption is not None
    prefix = f"prune-{uuid.uuid4().hex[:10]}"
    repo = pg.repository.model_copy(update={"url": f"s3://dbrunbook-backups/{prefix}"})
    storage = open_storage(repo, SecretResolver(dev.base_dir))
    recipients = list(pg.encryption.recipients)
    last_day = datetime.now(UTC).date() - timedelta(days=1)
    ids = []
    for i in range(DAYS):
        day = last_day - timedelta(days=DAYS - 1 - i)
        stop = datetime(day.year, day.month, day.day, 3, 10, tzinfo=UTC)
        backup_id = f"{stop:%Y%m%dT%H%M%SZ}-F"
        segment = f"00000001000000000000{i:04X}"
        entry = store(storage, "data/0001.tar", object_key(backup_id, "data/0001.tar"), [b"d" * 100], recipients)
        wal = f"wal/00000001/{segment}.sha256-{i:016x}.zst.age"
        store(storage, segment, wal, [b"w"], recipients)
        manifest = Manifest(
            backup_id=backup_id,
            kind="physical",
            engine="postgresql",
            cluster="pg-main",
            server_version="15",
            timeline=1,
            start_wal=segment,
            stop_wal=segment,
            start_time=stop - timedelta(minutes=10),
            stop_time=stop,
            source_host="pg-main-1",
            objects=[entry],
            recipients=recipients,
            tool_version="forged",
        )
        store(storage, "manifest", manifest_key(backup_id), [manifest.to_json()], recipients)
        ids.append(backup_id)
    # A backup killed half-way: data, no manifest.
    store(storage, "data/0001.tar", object_key("20200101T000000Z-F", "data/0001.tar"), [b"x"], recipients)
    inv = yaml.safe_load((Path(dev.path)).read_text())
    cluster = inv["clusters"]["pg-main"]
    cluster["repository"]["url"] = repo.url
    cluster["retention"] = {"daily": 3, "weekly": 2, "monthly": 2}
    inv["clusters"] = {"pg-main": cluster}
    path = tmp_path / "prune.yaml"
    path.write_text(yaml.safe_dump(inv))
    return storage, path, datetime(last_day.year, last_day.month, last_day.day, 12, tzinfo=UTC), ids


def test_prune_keeps_exactly_the_policy_set(sandbox: dict[str, Any], dev: LoadedInventory, tmp_path: Path) -> None:
    storage, inventory, last, ids = forge(dev, tmp_path)
    now = (last + timedelta(days=2)).isoformat()  # also ages the incomplete backup past its grace period
    prune = ("backup.prune", f"--env={inventory}", f"--now={now}", "--json")
    before = sorted(info.key for info in storage.list(""))

    dry = run_cli(*prune, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert sorted(info.key for info in storage.list("")) == before
    refused = run_cli(*prune)  # no terminal, no --yes: refuses, deletes nothing
    assert refused.returncode == 50, refused.stderr
    assert sorted(info.key for info in storage.list("")) == before

    res = run_cli(*prune, "--yes")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)["clusters"][0]
    days = [date(int(i[:4]), int(i[4:6]), int(i[6:8])) for i in ids]
    newest = days[-1]
    expected = {newest - timedelta(days=n) for n in range(3)}  # daily 3
    expected.add(max(d for d in days if d.isocalendar()[:2] < newest.isocalendar()[:2]))  # weekly 2
    expected.add(max(d for d in days if (d.year, d.month) < (newest.year, newest.month)))  # monthly 2
    kept = sorted(i for i, d in zip(ids, days, strict=True) if d in expected)
    assert result["keep"] == kept
    assert sorted(result["deleted"]) == sorted(set(ids) - set(kept))
    assert result["incomplete"] == ["20200101T000000Z-F"]

    remaining = [info.key for info in storage.list("")]
    assert {k.split("/")[1] for k in remaining if k.startswith("backups/")} == set(kept)
    # Each kept backup is whole; WAL before the oldest kept backup's start is gone, the rest is all there.
    for backup_id in kept:
        assert any(k.startswith(f"backups/{backup_id}/data/") for k in remaining)
    oldest = ids.index(kept[0])
    wal = sorted(k.split("/")[2][:24] for k in remaining if k.startswith("wal/"))
    assert wal == [f"00000001000000000000{i:04X}" for i in range(oldest, DAYS)]
    assert result["wal_deleted"] == oldest

    again = run_cli(*prune, "--yes")
    assert again.returncode == 0 and json.loads(again.stdout)["clusters"][0]["delete"] == []
    storage.delete([info.key for info in storage.list("")])
