"""Only the controller makes backups: signatures, the authenticity rules, and the catalog refusing the rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dbrunbook.backup.retention import expired_wal
from dbrunbook.errors import BackupError, ConfigError
from dbrunbook.inventory.model import Repository
from dbrunbook.inventory.secrets import SecretResolver
from dbrunbook.repository.catalog import MANIFEST_SIG, authenticity, load_catalog
from dbrunbook.repository.crypto import generate_identity
from dbrunbook.repository.manifest import Manifest, ObjectEntry, manifest_key, object_key
from dbrunbook.repository.objects import store
from dbrunbook.repository.signing import Signer, Trust, generate, parse_public, split
from dbrunbook.repository.storage import Storage, open_storage

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
SIGNER = Signer(generate()[0])
TRUST = Trust.of([SIGNER.public_raw])


def _entry(key: str) -> ObjectEntry:
    return ObjectEntry(name="data/0001.tar", key=key, size=1, sha256="0" * 64, plain_size=1, plain_sha256="0" * 64)


def _manifest(backup_id: str, stop: datetime = NOW, objects: list[ObjectEntry] | None = None) -> Manifest:
    return Manifest(
        backup_id=backup_id,
        kind="physical",
        engine="postgresql",
        cluster="c1",
        server_version="15",
        start_time=stop - timedelta(minutes=5),
        stop_time=stop,
        source_host="h1",
        objects=[_entry(object_key(backup_id, "data/0001.tar"))] if objects is None else objects,
        recipients=[],
        tool_version="t",
    )


def test_a_signature_covers_the_content_and_the_place() -> None:
    key = manifest_key("20261201T000000Z-F")
    body = _manifest("20261201T000000Z-F").to_json()
    stored = SIGNER.sign(key, body)
    got, line = split(stored)
    assert got == body and TRUST.check(key, got, line) is None
    assert "does not match its content" in str(TRUST.check(key, got.replace(b"h1", b"h2"), line))
    assert "does not match its content" in str(TRUST.check(manifest_key("20261202T000000Z-F"), got, line))
    assert TRUST.check(key, body, None) == "it is not signed"
    other = Signer(generate()[0])
    assert "not among encryption.signers" in str(TRUST.check(key, body, split(other.sign(key, body))[1]))
    assert "malformed" in str(TRUST.check(key, body, b"ed25519 nonsense"))


def test_keys_are_parsed_strictly_and_never_echoed() -> None:
    assert parse_public(SIGNER.public) == SIGNER.public_raw
    with pytest.raises(ConfigError, match="not a signing public key"):
        parse_public("ed25519:short")
    with pytest.raises(ConfigError, match="value withheld") as caught:
        Signer("-----BEGIN PRIVATE KEY-----\nc2VjcmV0IHN0dWZm\n-----END PRIVATE KEY-----\n")
    assert "c2VjcmV0" not in str(caught.value)


@pytest.mark.parametrize(
    ("manifest", "folder", "why"),
    [
        (_manifest("20261201T000000Z-F"), "20261201T000000Z-F", None),
        (_manifest("20261201T000000Z-F"), "20200101T000000Z-F", "claims backup id 20261201T000000Z-F"),
        (
            _manifest("20261201T000000Z-F", objects=[_entry(object_key("20261130T000000Z-F", "data/0001.tar"))]),
            "20261201T000000Z-F",
            "outside its folder",
        ),
        (
            _manifest("20261201T000000Z-F", objects=[_entry("backups/20261201T000000Z-F/../x/data.zst.age")]),
            "20261201T000000Z-F",
            "outside its folder",
        ),
        (_manifest("29990101T000000Z-F", stop=datetime(2999, 1, 1, tzinfo=UTC)), "29990101T000000Z-F", "future"),
        (_manifest("20261201T000000Z-F", stop=NOW + timedelta(minutes=5)), "20261201T000000Z-F", None),
        (
            # A database named "sales..2024" is a name, not a path: only a ".." path segment is refused.
            _manifest("20261201T000000Z-F", objects=[_entry("backups/20261201T000000Z-F/db/sales..2024.dump.zst.age")]),
            "20261201T000000Z-F",
            None,
        ),
        (_manifest("20261201T000000Z-F").model_copy(update={"cluster": "c2"}), "20261201T000000Z-F", "cluster c2"),
    ],
)
def test_authenticity_rules(manifest: Manifest, folder: str, why: str | None) -> None:
    found = authenticity(manifest, manifest_key(folder), NOW, "c1")
    assert (found is None) if why is None else (why in str(found))


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Storage, str, str]:
    identity, recipient = generate_identity()
    return open_storage(Repository(url=f"file://{tmp_path}/repo"), SecretResolver(tmp_path)), identity, recipient


def test_the_catalog_keeps_signed_backups_and_refuses_the_rest_by_key(repo: tuple[Storage, str, str]) -> None:
    storage, identity, recipient = repo
    good = _manifest("20261130T000000Z-F", stop=NOW - timedelta(days=1))
    key = manifest_key(good.backup_id)
    store(storage, "manifest", key, [SIGNER.sign(key, good.to_json())], [recipient])
    legacy = _manifest("20261129T000000Z-F", stop=NOW - timedelta(days=2))
    store(storage, "manifest", manifest_key(legacy.backup_id), [legacy.to_json()], [recipient])
    forged = _manifest("29990101T000000Z-F", stop=datetime(2999, 1, 1, tzinfo=UTC))
    store(storage, "manifest", manifest_key(forged.backup_id), [forged.to_json()], [recipient])
    store(storage, "manifest", manifest_key("20261128T000000Z-F"), [b"garbage"], [recipient])

    # Junk named like a manifest deeper inside a real backup's folder is just an object: it blocks nothing.
    store(storage, "junk", f"backups/{good.backup_id}/x/manifest.json.zst.age", [b"junk"], [recipient])
    # Signed, but by a key nobody trusts: refused, and never offered to backup.sign as "an older one".
    foreign = _manifest("20261127T000000Z-F", stop=NOW - timedelta(days=4))
    fkey = manifest_key(foreign.backup_id)
    store(storage, "manifest", fkey, [Signer(generate()[0]).sign(fkey, foreign.to_json())], [recipient])
    # Encrypted to a key the keyring does not hold: refused, not an error that stops every task.
    _, other_recipient = generate_identity()
    store(storage, "manifest", manifest_key("20261126T000000Z-F"), [b"{}"], [other_recipient])

    catalog = load_catalog(storage, [identity], "c1", trust=TRUST, now=NOW)
    assert [m.backup_id for m in catalog.manifests] == [good.backup_id]
    assert catalog.find(good.backup_id) == good
    refused = {r.folder: r for r in catalog.refused}
    assert set(refused) == {
        legacy.backup_id,
        forged.backup_id,
        "20261128T000000Z-F",
        foreign.backup_id,
        "20261126T000000Z-F",
    }
    assert not refused[foreign.backup_id].unsigned_only and "backup.sign" not in refused[foreign.backup_id].reason
    assert "no configured age identity" in refused["20261126T000000Z-F"].reason
    assert refused[legacy.backup_id].unsigned_only and "backup.sign" in refused[legacy.backup_id].reason
    assert not refused[forged.backup_id].unsigned_only
    assert refused["20261128T000000Z-F"].line().startswith("manifest backups/20261128T000000Z-F/manifest.json")
    assert catalog.find("latest").backup_id == good.backup_id
    with pytest.raises(BackupError, match=f"backup {forged.backup_id} is not trusted"):
        catalog.find(forged.backup_id)

    # backup.sign's detached signature makes the unsigned one count, without rewriting it.
    line = SIGNER.line(manifest_key(legacy.backup_id), legacy.to_json())
    store(storage, "sig", object_key(legacy.backup_id, MANIFEST_SIG.removesuffix(".zst.age")), [line], [recipient])
    again = load_catalog(storage, [identity], "c1", trust=TRUST, now=NOW)
    assert [m.backup_id for m in again.manifests] == [legacy.backup_id, good.backup_id]


def test_a_signed_manifest_of_another_system_is_refused_when_the_system_is_known(
    repo: tuple[Storage, str, str],
) -> None:
    storage, identity, recipient = repo
    m = _manifest("20261130T000000Z-F").model_copy(update={"system_identifier": "111"})
    key = manifest_key(m.backup_id)
    store(storage, "manifest", key, [SIGNER.sign(key, m.to_json())], [recipient])
    assert load_catalog(storage, [identity], "c1", trust=TRUST, now=NOW).manifests == [m]
    with pytest.raises(BackupError, match=r"holds another server's backups"):
        load_catalog(storage, [identity], "c1", "222", trust=TRUST, now=NOW)


def test_wal_never_expires_past_the_newest_archived_segment() -> None:
    names = [f"0000000100000000000000{i:02X}" for i in range(0x10, 0x16)]
    assert expired_wal(names, "000000010000000000000013") == names[:3]
    # A keep_from past the end of the archive (a start segment that does not exist) keeps the newest one.
    assert expired_wal(names, "0000000100000FFF000000FF") == names[:-1]
    assert expired_wal([], "0000000100000FFF000000FF") == []
