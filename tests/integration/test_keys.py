"""Key rotation on the real sandbox: a backup before the rotation, one after, the keyring report, a restore
of the old backup with the keyring, a clear error without the old identity, and the old identity
becoming removable once retention deleted the last backup that needed it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import yaml

from dbrunbook.inventory import LoadedInventory, SecretResolver, load_inventory
from dbrunbook.repository.storage import open_storage

from .conftest import Sql, run_cli


def test_rotation_keeps_old_backups_restorable(
    pg_ready: dict[str, Any], dev: LoadedInventory, sql: Sql, tmp_path: Path
) -> None:
    text = Path(dev.path).read_text()
    inv = yaml.safe_load(text)
    cluster = inv["clusters"]["pg-main"]
    cluster["repository"]["url"] = f"s3://dbrunbook-backups/keys-{uuid.uuid4().hex[:10]}"
    cluster["retention"] = {"keep_last": 1}
    inv["clusters"] = {"keys-pg": cluster}
    path = tmp_path / "keys.yaml"
    path.write_text("# operator's comment, kept by keys.rotate\n" + yaml.safe_dump(inv, sort_keys=False))
    old_recipient = cluster["encryption"]["recipients"][0]
    env = f"--env={path}"
    db = f"keys_{uuid.uuid4().hex[:8]}"
    sql(f"CREATE DATABASE {db}")
    sql("CREATE TABLE t (i int); INSERT INTO t VALUES (1)", db=db)
    storage = open_storage(load_inventory(str(path)).inventory.clusters["keys-pg"].repository, SecretResolver(tmp_path))  # type: ignore[arg-type]
    try:
        before = run_cli("backup.full", env, "--kind=logical", "--json")
        assert before.returncode == 0, before.stderr
        old_backup = json.loads(before.stdout)["backups"][0]["backup_id"]

        identity = tmp_path / "keys" / "new-identity.txt"
        rotated = run_cli("keys.rotate", env, f"--identity-file={identity}", "--yes", "--json")
        assert rotated.returncode == 0, rotated.stderr
        result = json.loads(rotated.stdout)
        assert result["retired"] == [old_recipient] and result["new_recipient"] != old_recipient
        assert identity.stat().st_mode & 0o777 == 0o600
        edited = path.read_text()
        assert edited.startswith("# operator's comment, kept by keys.rotate\n")
        enc = yaml.safe_load(edited)["clusters"]["keys-pg"]["encryption"]
        assert enc["recipients"] == [result["new_recipient"]]
        assert enc["identities"][0] == f"file:{identity}" and len(enc["identities"]) == 2

        sql("INSERT INTO t VALUES (2)", db=db)
        after = run_cli("backup.full", env, "--kind=logical", "--json")
        assert after.returncode == 0, after.stderr
        new_backup = json.loads(after.stdout)["backups"][0]["backup_id"]

        status = json.loads(run_cli("keys.status", env, "--json").stdout)
        by_key = {i["recipient"]: i for i in status["identities"]}
        assert by_key[old_recipient]["only_key_for_backups"] == 1 and not by_key[old_recipient]["removable"]
        assert by_key[result["new_recipient"]]["writes_new_objects"]
        assert {b["backup_id"]: b["opened_by"] for b in status["backups"]} == {
            old_backup: [old_recipient],
            new_backup: [result["new_recipient"]],
        }

        # The backup from before the rotation restores with the keyring.
        restored = f"{db}_old"
        res = run_cli(
            "restore.run", env, f"--backup={old_backup}", "--to=pg-main-1", f"--database={db}:{restored}", "--json"
        )
        assert res.returncode == 0, res.stderr
        assert sql("SELECT string_agg(i::text, ',') FROM t", db=restored) == "1"

        # Without the old identity, the old backup's manifest cannot be read: a clear error naming it.
        new_only = tmp_path / "new-only.yaml"
        doc = yaml.safe_load(edited)
        doc["clusters"]["keys-pg"]["encryption"]["identities"] = [f"file:{identity}"]
        new_only.write_text(yaml.safe_dump(doc))
        refused = run_cli("backup.list", f"--env={new_only}", env={"DBRUNBOOK_CACHE_DIR": "off"})
        assert refused.returncode == 76, refused.stderr
        assert f"backups/{old_backup}/manifest" in refused.stderr and "Traceback" not in refused.stderr
        # (With the local manifest cache the list still shows it; verify reads every manifest back, and fails.)
        unreadable = run_cli("backup.verify", f"--env={new_only}", f"--backup-id={old_backup}")
        assert unreadable.returncode == 76, unreadable.stderr
        assert f"backups/{old_backup}/manifest" in unreadable.stderr

        # Retention deletes the old backup; then nothing needs the old identity.
        pruned = run_cli("backup.prune", env, "--yes", "--json")
        assert pruned.returncode == 0, pruned.stderr
        assert json.loads(pruned.stdout)["clusters"][0]["deleted"] == [old_backup]
        status = json.loads(run_cli("keys.status", env, "--json").stdout)
        assert {i["recipient"]: i["removable"] for i in status["identities"]}[old_recipient] is True
        sql(f"DROP DATABASE {restored}")
    finally:
        sql(f"DROP DATABASE IF EXISTS {db}")
        storage.delete([info.key for info in storage.list("")])
