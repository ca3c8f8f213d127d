"""WAL push/fetch rules and catalog checks on a file:// repository with real encryption."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pytest

from dbrunbook.engines.postgresql.lsn import format_lsn, parse_backup_label, parse_lsn, segment_name, segment_of_stop
from dbrunbook.engines.postgresql.wal import WalName, fetch, push
from dbrunbook.errors import BackupError, NoMatchingIdentityError, ObjectCorruptError
from dbrunbook.inventory.model import Repository
from dbrunbook.inventory.secrets import SecretResolver
from dbrunbook.repository.catalog import load_catalog
from dbrunbook.repository.crypto import generate_identity
from dbrunbook.repository.manifest import Manifest, manifest_key
from dbrunbook.repository.objects import store
from dbrunbook.repository.signing import Signer, Trust, generate
from dbrunbook.repository.storage import Storage, open_storage
from dbrunbook.repository.storage_file import FileStorage

SEG = "000000010000000000000003"


@pytest.fixture
def repo(tmp_path: Path) -> Storage:
    return open_storage(Repository(url=f"file://{tmp_path}/repo"), SecretResolver(tmp_path))


@pytest.fixture
def keys() -> tuple[str, str]:
    return generate_identity()


def test_lsn_and_segment_names() -> None:
    assert parse_lsn("0/2000028") == 0x2000028
    assert format_lsn(parse_lsn("1A/FF000010")) == "1A/FF000010"
    assert segment_name(1, parse_lsn("0/2000028"), 16 << 20) == "000000010000000000000002"
    assert segment_name(2, parse_lsn("1/5000000"), 16 << 20) == "000000020000000100000005"
    # A stop LSN exactly on a boundary still needs the previous segment.
    assert segment_of_stop(1, parse_lsn("0/3000000"), 16 << 20) == "000000010000000000000002"
    label = parse_backup_label("START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTART TIMELINE: 1\n")
    assert label["start_wal"] == "000000010000000000000002" and label["START TIMELINE"] == "1"


def test_wal_names_never_collide_with_backup_history() -> None:
    seg = WalName(SEG)
    assert seg.prefix() == f"wal/00000001/{SEG}.sha256-"
    assert not f"wal/00000001/{SEG}.00000028.backup.sha256-ab".startswith(seg.prefix())
    assert WalName("00000002.history").folder == "wal/history/"
    with pytest.raises(BackupError):
        WalName("not-a-wal-file").prefix()


def test_push_is_idempotent_and_refuses_different_content(tmp_path: Path, repo: Storage, keys: tuple[str, str]) -> None:
    identity, recipient = keys
    wal = tmp_path / SEG
    wal.write_bytes(b"\x01" * 300_000)
    assert push(repo, wal, [recipient]) == "archived"
    assert push(repo, wal, [recipient]) == "already archived"
    wal.write_bytes(b"\x02" * 300_000)
    with pytest.raises(BackupError, match="already archived with different content"):
        push(repo, wal, [recipient])
    dest = tmp_path / "restored"
    assert fetch(repo, SEG, dest, [identity]) is True
    assert dest.read_bytes() == b"\x01" * 300_000
    assert fetch(repo, "000000010000000000000009", tmp_path / "none", [identity]) is False
    assert not (tmp_path / "none").exists()


def test_fetch_with_wrong_identity(tmp_path: Path, repo: Storage, keys: tuple[str, str]) -> None:
    wal = tmp_path / SEG
    wal.write_bytes(b"wal")
    push(repo, wal, [keys[1]])
    other, _ = generate_identity()
    with pytest.raises(NoMatchingIdentityError, match=SEG):
        fetch(repo, SEG, tmp_path / "x", [other])


SIGNER = Signer(generate()[0])
TRUST = Trust.of([SIGNER.public_raw])


def _put_manifest(repo: Storage, m: Manifest, recipient: str) -> None:
    key = manifest_key(m.backup_id)
    store(repo, "manifest", key, [SIGNER.sign(key, m.to_json())], [recipient])


def _manifest(cluster: str, backup_id: str, entries: list) -> Manifest:  # type: ignore[type-arg]
    now = datetime.now(UTC)
    return Manifest(
        backup_id=backup_id,
        kind="physical",
        engine="postgresql",
        cluster=cluster,
        server_version="15.4",
        start_time=now,
        stop_time=now,
        source_host="h",
        objects=entries,
        recipients=[],
        tool_version="t",
    )


def test_catalog_lists_only_backups_with_manifest_and_refuses_other_cluster(
    repo: Storage, keys: tuple[str, str]
) -> None:
    identity, recipient = keys
    # An unfinished backup: data but no manifest.
    store(repo, "data/0001.tar", "backups/20260101T000000Z-F/data/0001.tar.zst.age", [b"x"], [recipient])
    good = _manifest("pg-main", "20260102T000000Z-F", [])
    _put_manifest(repo, good, recipient)
    catalog = load_catalog(repo, [identity], "pg-main", trust=TRUST)
    assert [m.backup_id for m in catalog.manifests] == ["20260102T000000Z-F"] and catalog.refused == []
    # Another cluster's signed manifest under this prefix is refused, not a reason to stop every task.
    stranger = _manifest("other-cluster", "20260103T000000Z-F", [])
    _put_manifest(repo, stranger, recipient)
    catalog = load_catalog(repo, [identity], "pg-main", trust=TRUST)
    assert catalog.find("latest").backup_id == good.backup_id
    assert "belongs to cluster other-cluster" in catalog.refused[0].reason


def test_flipped_byte_names_the_object(tmp_path: Path, repo: Storage, keys: tuple[str, str]) -> None:
    from dbrunbook.repository.objects import load

    identity, recipient = keys
    entry = store(repo, "data/0001.tar", "backups/b/data/0001.tar.zst.age", [b"y" * 200_000], [recipient])
    path = tmp_path / "repo" / entry.key
    raw = bytearray(path.read_bytes())
    raw[-20] ^= 0x01  # in the payload, past the age header
    path.chmod(0o600)
    path.write_bytes(bytes(raw))
    with pytest.raises(ObjectCorruptError, match=r"backups/b/data/0001\.tar\.zst\.age"):
        b"".join(load(repo, entry, [identity]))


class CountingOpens(FileStorage):
    """A real file repository that counts the objects it opens for reading."""

    opened = 0

    def open(self, key: str) -> BinaryIO:
        self.opened += 1
        return super().open(key)


def test_manifest_cache_saves_reads_and_never_hides_a_changed_manifest(
    tmp_path: Path, repo: Storage, keys: tuple[str, str]
) -> None:
    import os

    from dbrunbook.repository.catalog import ManifestCache

    identity, recipient = keys
    for day in (1, 2):
        m = _manifest("pg-main", f"2026010{day}T000000Z-F", [])
        _put_manifest(repo, m, recipient)
    cache = ManifestCache(tmp_path / "cache")
    counting = CountingOpens(tmp_path / "repo")
    first = load_catalog(counting, [identity], "pg-main", cache=cache, trust=TRUST)
    assert counting.opened == 2
    second = load_catalog(counting, [identity], "pg-main", cache=cache, trust=TRUST)
    assert counting.opened == 2 and second == first
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 2 and all(os.stat(f).st_mode & 0o077 == 0 for f in files)
    assert os.stat(tmp_path / "cache").st_mode & 0o077 == 0
    # A new backup is read; the cached ones are not.
    m3 = _manifest("pg-main", "20260103T000000Z-F", [])
    _put_manifest(repo, m3, recipient)
    assert [m.backup_id for m in load_catalog(counting, [identity], "pg-main", cache=cache, trust=TRUST).manifests][
        -1
    ] == m3.backup_id
    assert counting.opened == 3
    # A manifest damaged in the repository changes size or time: it misses the cache and fails loudly.
    path = tmp_path / "repo" / manifest_key("20260101T000000Z-F")
    data = bytearray(path.read_bytes())
    data[-5] ^= 1
    os.chmod(path, 0o600)
    path.write_bytes(bytes(data))
    os.utime(path, (1, 1))
    damaged = load_catalog(counting, [identity], "pg-main", cache=cache, trust=TRUST)
    assert [r.folder for r in damaged.refused] == ["20260101T000000Z-F"]
    assert "20260101T000000Z-F" in damaged.refused[0].reason and len(damaged.manifests) == 2
    # A damaged cache file is ignored, not trusted.
    for f in (tmp_path / "cache").iterdir():
        f.write_bytes(b"{not json")
    path.unlink()
    assert len(load_catalog(repo, [identity], "pg-main", cache=cache, trust=TRUST).manifests) == 2
