"""keys.status decides which identities can leave the keyring together: an object encrypted to A and B
needs neither alone, but one of them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from dbrunbook.backup.keys import key_status
from dbrunbook.inventory.model import Repository
from dbrunbook.inventory.secrets import SecretResolver
from dbrunbook.repository.catalog import Catalog
from dbrunbook.repository.crypto import generate_identity
from dbrunbook.repository.manifest import Manifest
from dbrunbook.repository.storage import open_storage


def manifest(i: int, recipients: list[str]) -> Manifest:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Manifest(
        backup_id=f"b{i}",
        kind="logical",
        engine="postgresql",
        cluster="c",
        server_version="15",
        start_time=now,
        stop_time=now,
        source_host="h",
        objects=[],
        recipients=recipients,
        tool_version="t",
    )


def test_two_identities_sharing_backups_are_not_both_removable(tmp_path: Path) -> None:
    a, b, c = (generate_identity() for _ in range(3))
    storage = open_storage(Repository(url=f"file://{tmp_path}/repo"), SecretResolver(tmp_path))
    catalog = Catalog([manifest(1, [a[1], b[1]]), manifest(2, [c[1]])])
    report = key_status("c", storage, catalog, [a[0], b[0], c[0]], [c[1]]).as_dict()
    removable = {i["recipient"]: i["removable"] for i in report["identities"]}
    assert removable[c[1]] is False  # writes new objects
    assert sum(removable[r[1]] for r in (a, b)) == 1  # one of A and B may go, never both
