"""backup.prune against SeaweedFS on a forged history: 60 daily backups with their WAL, and a backup that
never completed, written through the real object pipeline under a private prefix. The planner's clock
(``--now``) makes the dates mean something."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from dbrunbook.inventory import LoadedInventory
from dbrunbook.repository.manifest import object_key
from dbrunbook.repository.objects import store

from .conftest import run_cli
from .forged import ForgedRepo, private_repo

DAYS = 60


def forge(dev: LoadedInventory, tmp_path: Path) -> tuple[ForgedRepo, datetime, list[str]]:
    forged = private_repo(dev, tmp_path, {"daily": 3, "weekly": 2, "monthly": 2})
    last_day = datetime.now(UTC).date() - timedelta(days=1)
    ids = []
    for i in range(DAYS):
        day = last_day - timedelta(days=DAYS - 1 - i)
        stop = datetime(day.year, day.month, day.day, 3, 10, tzinfo=UTC)
        segment = f"00000001000000000000{i:04X}"
        ids.append(forged.backup(f"{stop:%Y%m%dT%H%M%SZ}-F", stop, segment, segment).backup_id)
    # A backup killed half-way: data, no manifest.
    store(forged.storage, "data/0001.tar", object_key("20200101T000000Z-F", "data/0001.tar"), [b"x"], forged.recipients)
    return forged, datetime(last_day.year, last_day.month, last_day.day, 12, tzinfo=UTC), ids


def test_prune_keeps_exactly_the_policy_set(sandbox: dict[str, Any], dev: LoadedInventory, tmp_path: Path) -> None:
    forged, last, ids = forge(dev, tmp_path)
    storage, inventory = forged.storage, forged.inventory
    now = (last + timedelta(days=2)).isoformat()
    prune = ("backup.prune", f"--env={inventory}", f"--now={now}", "--json")

    def contents() -> list[str]:  # the backups and WAL (a run's lease leaves its end marker in locks/)
        return sorted(info.key for info in storage.list("") if not info.key.startswith("locks/"))

    before = contents()

    dry = run_cli(*prune, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert contents() == before
    refused = run_cli(*prune)  # no terminal, no --yes: refuses, deletes nothing
    assert refused.returncode == 50, refused.stderr
    assert contents() == before

    audit = tmp_path / "audit.jsonl"
    res = run_cli(*prune, "--yes", audit=audit)
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)["clusters"][0]
    # Every deletion is in the audit log, with the reason the policy gave.
    deletes = [e for e in map(json.loads, audit.read_text().splitlines()) if e["kind"] == "delete"]
    assert len(deletes) == len(result["deleted"]) + 1  # + one line for the WAL
    assert all("outside the policy" in e["text"] for e in deletes if e["text"].startswith("backup "))
    days = [date(int(i[:4]), int(i[4:6]), int(i[6:8])) for i in ids]
    newest = days[-1]
    expected = {newest - timedelta(days=n) for n in range(3)}  # daily 3
    expected.add(max(d for d in days if d.isocalendar()[:2] < newest.isocalendar()[:2]))  # weekly 2
    expected.add(max(d for d in days if (d.year, d.month) < (newest.year, newest.month)))  # monthly 2
    kept = sorted(i for i, d in zip(ids, days, strict=True) if d in expected)
    assert result["keep"] == kept
    assert sorted(result["deleted"]) == sorted(set(ids) - set(kept))
    # The backup without a manifest was written seconds ago by the real clock: it may still be running, so
    # it is left alone whatever --now says (its grace period is 24 hours of real time).
    assert result["incomplete"] == []

    remaining = [info.key for info in storage.list("")]
    assert {k.split("/")[1] for k in remaining if k.startswith("backups/")} == {*kept, "20200101T000000Z-F"}
    # Each kept backup is whole; WAL before the oldest kept backup's start is gone, the rest is all there.
    for backup_id in kept:
        assert any(k.startswith(f"backups/{backup_id}/data/") for k in remaining)
    oldest = ids.index(kept[0])
    wal = sorted(k.split("/")[2][:24] for k in remaining if k.startswith("wal/"))
    assert wal == [f"00000001000000000000{i:04X}" for i in range(oldest, DAYS)]
    assert result["wal_deleted"] == oldest

    again = run_cli(*prune, "--yes")
    assert again.returncode == 0 and json.loads(again.stdout)["clusters"][0]["delete"] == []
    forged.wipe()
