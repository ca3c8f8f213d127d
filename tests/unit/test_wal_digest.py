"""The digest in a WAL key is what fetch and verify check the content against: a key whose digest part is
not exactly 16 lowercase hex digits is refused, since a shorter one (the empty one above all) is a prefix
of every digest."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dbrunbook.backup.verify import verify
from dbrunbook.engines.postgresql.wal import WalName, fetch
from dbrunbook.errors import ObjectCorruptError
from dbrunbook.inventory.model import Repository
from dbrunbook.inventory.secrets import SecretResolver
from dbrunbook.repository.catalog import Catalog
from dbrunbook.repository.crypto import generate_identity
from dbrunbook.repository.manifest import SUFFIX
from dbrunbook.repository.objects import store
from dbrunbook.repository.storage import open_storage

from .test_wal_segment_sizes import physical_manifest

SEG = "000000010000000000000003"
BODY = b"forged WAL" * 100
REAL = hashlib.sha256(BODY).hexdigest()[:16]


@pytest.mark.parametrize("digest", ["", "0", REAL[:15], REAL.upper(), REAL + "0", "g" * 16, REAL[:8] + "-" * 8])
def test_a_key_without_a_real_digest_is_refused(tmp_path: Path, digest: str) -> None:
    identity, recipient = generate_identity()
    repo = open_storage(Repository(url=f"file://{tmp_path}/repo"), SecretResolver(tmp_path))
    key = f"{WalName(SEG).prefix()}{digest}{SUFFIX}"
    store(repo, SEG, key, [BODY], [recipient])
    with pytest.raises(ObjectCorruptError, match=f"{key}: the digest in its name is not 16 lowercase hex digits"):
        fetch(repo, SEG, tmp_path / "restored", [identity])
    assert not (tmp_path / "restored").exists()

    backup = physical_manifest("20260101T000000Z-F", SEG, SEG, 16 << 20)
    [report] = [r.as_dict() for r in verify(repo, Catalog([backup]), [backup], [identity])]
    assert report["ok"] is False
    assert report["problems"][0]["key"] == key and "not 16 lowercase hex digits" in report["problems"][0]["problem"]


def test_the_real_digest_still_fetches(tmp_path: Path) -> None:
    identity, recipient = generate_identity()
    repo = open_storage(Repository(url=f"file://{tmp_path}/repo"), SecretResolver(tmp_path))
    store(repo, SEG, WalName(SEG).key(hashlib.sha256(BODY).hexdigest()), [BODY], [recipient])
    assert fetch(repo, SEG, tmp_path / "restored", [identity]) is True
    assert (tmp_path / "restored").read_bytes() == BODY
    assert WalName.digest_of(WalName(SEG).key(hashlib.sha256(BODY).hexdigest())) == REAL
