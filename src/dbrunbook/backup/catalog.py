"""The catalog is derived from the repository: a backup exists exactly when its manifest does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dbrunbook.backup.manifest import SUFFIX, Manifest, manifest_key
from dbrunbook.backup.objects import load_bytes
from dbrunbook.backup.storage import Storage
from dbrunbook.errors import BackupError, ObjectMissingError

MANIFEST_TAIL = f"/manifest.json{SUFFIX}"


@dataclass(frozen=True)
class Catalog:
    manifests: list[Manifest]  # oldest first

    def find(self, backup_id: str | None) -> Manifest:
        if not self.manifests:
            raise BackupError("the repository holds no complete backup of this cluster")
        if backup_id in (None, "latest"):
            return self.manifests[-1]
        for m in self.manifests:
            if m.backup_id == backup_id:
                return m
        known = ", ".join(m.backup_id for m in self.manifests[-5:])
        raise BackupError(f"no backup '{backup_id}' in the repository (newest: {known})")


def backup_ids(storage: Storage) -> list[str]:
    """Ids of complete backups: those with a manifest. Cheap: needs no identity."""
    ids = [o.key.split("/")[1] for o in storage.list("backups/") if o.key.endswith(MANIFEST_TAIL)]
    return sorted(ids)


def load_manifest(storage: Storage, backup_id: str, identities: Sequence[str]) -> Manifest:
    key = manifest_key(backup_id)
    try:
        return Manifest.from_json(load_bytes(storage, key, identities), key)
    except ObjectMissingError:
        raise BackupError(f"backup {backup_id} has no manifest: it never completed") from None


def load_catalog(storage: Storage, identities: Sequence[str], cluster: str, system_id: str | None = None) -> Catalog:
    manifests = []
    for backup_id in backup_ids(storage):
        m = load_manifest(storage, backup_id, identities)
        if m.cluster != cluster or (system_id and m.system_identifier and m.system_identifier != system_id):
            raise BackupError(
                f"backup {backup_id} belongs to cluster {m.cluster} (system {m.system_identifier}), "
                f"not {cluster}: two clusters share one repository prefix"
            )
        manifests.append(m)
    manifests.sort(key=lambda m: (m.stop_time, m.backup_id))
    return Catalog(manifests)
