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

from dbrunbook.engines.postgresql.lsn import DEFAULT_SEGMENT_SIZE, segments_between
from dbrunbook.engines.postgresql.wal import WalName
from dbrunbook.inventory import LoadedInventory, SecretResolver
from dbrunbook.repository.manifest import Manifest, manifest_key, object_key
from dbrunbook.repository.objects import load_bytes, store
from dbrunbook.repository.signing import Signer, split
from dbrunbook.repository.storage import Storage, open_storage


def sandbox_signer(dev: LoadedInventory, cluster: str = "pg-main") -> Signer:
    """The controller's signing key, as the sandbox's inventory names it."""
    enc = dev.inventory.clusters[cluster].encryption
    assert enc is not None and enc.signing_key is not None
    return Signer(SecretResolver(dev.base_dir).resolve(enc.signing_key).reveal())


def store_manifest(storage: Storage, manifest: Manifest, signer: Signer | None, recipients: list[str]) -> str:
    """Write a manifest as the controller does (signed), or, with no signer, as an older dbrunbook did."""
    key = manifest_key(manifest.backup_id)
    body = manifest.to_json()
    store(storage, "manifest", key, [signer.sign(key, body) if signer else body], recipients)
    return key


def read_manifest(storage: Storage, key: str, identities: list[str]) -> Manifest:
    return Manifest.from_json(split(load_bytes(storage, key, identities))[0], key)


@dataclass
class ForgedRepo:
    storage: Storage
    recipients: list[str]
    inventory: Path  # a one-cluster inventory (pg-main) pointing at the private prefix
    signer: Signer | None = None  # None: manifests as an older dbrunbook wrote them (unsigned)

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
        store_manifest(self.storage, manifest, self.signer, self.recipients)
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
    storage = open_storage(repo, SecretResolver(dev.base_dir))
    return ForgedRepo(storage, list(pg.encryption.recipients), path, sandbox_signer(dev))
