"""Forged histories in a private prefix of the sandbox's S3: real objects through the real pipeline
(zstd, age, digests), with dates and LSNs chosen by the test. For planners and checkers whose behaviour
depends on time and history, which a test cannot wait for."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from dbrunbook.backup.lsn import DEFAULT_SEGMENT_SIZE, segments_between
from dbrunbook.backup.manifest import Manifest, manifest_key, object_key
from dbrunbook.backup.objects import store
from dbrunbook.backup.storage import Storage, open_storage
from dbrunbook.backup.wal import WalName
from dbrunbook.inventory import LoadedInventory, SecretResolver


@dataclass
class ForgedRepo:
    storage: Storage
    recipients: list[str]
    inventory: Path  # a one-cluster inventory (pg-main) pointing at the private prefix

    def backup(
        self,
        backup_id: str,
        stop: datetime,
        start_wal: str,
        stop_wal: str,
        *,
        kind: str = "physical",
        parent: str | None = None,
    ) -> Manifest:
        entry = store(
            self.storage,
            "data/0001.tar",
            object_key(backup_id, "data/0001.tar"),
            [backup_id.encode() * 50],
            self.recipients,
        )
        for seg in segments_between(start_wal, stop_wal, DEFAULT_SEGMENT_SIZE):
            self.wal(seg)
        manifest = Manifest(
            backup_id=backup_id,
            kind=kind,
            parent=parent,
            engine="postgresql",
            cluster="pg-main",
            server_version="15",
            timeline=int(start_wal[:8], 16),
            start_wal=start_wal,
            stop_wal=stop_wal,
            start_time=stop - timedelta(minutes=10),
            stop_time=stop,
            source_host="pg-main-1",
            objects=[entry],
            recipients=self.recipients,
            tool_version="forged",
            # As every real physical manifest records it.
            extra={} if kind == "logical" else {"wal_segment_size": DEFAULT_SEGMENT_SIZE},
        )
        store(self.storage, "manifest", manifest_key(backup_id), [manifest.to_json()], self.recipients)
        return manifest

    def wal(self, segment: str) -> str:
        body = segment.encode() * 10
        key = WalName(segment).key(hashlib.sha256(body).hexdigest())
        if not self.storage.exists(key):
            store(self.storage, segment, key, [body], self.recipients)
        return key

    def wipe(self) -> None:
        self.storage.delete([info.key for info in self.storage.list("")])


def private_repo(dev: LoadedInventory, tmp_path: Path, retention: dict[str, Any] | None = None) -> ForgedRepo:
    pg = dev.inventory.clusters["pg-main"]
    assert pg.repository is not None and pg.encryption is not None
    repo = pg.repository.model_copy(update={"url": f"s3://dbrunbook-backups/forged-{uuid.uuid4().hex[:10]}"})
    inv = yaml.safe_load(Path(dev.path).read_text())
    cluster = inv["clusters"]["pg-main"]
    cluster["repository"]["url"] = repo.url
    if retention is not None:
        cluster["retention"] = retention
    inv["clusters"] = {"pg-main": cluster}
    path = tmp_path / "forged.yaml"
    path.write_text(yaml.safe_dump(inv))
    return ForgedRepo(open_storage(repo, SecretResolver(dev.base_dir)), list(pg.encryption.recipients), path)
