"""Archived log files (WAL segments, binlogs) in the repository: push and fetch one file, as PostgreSQL's
archive_command and restore_command call them and as binlog sync does.

Keys carry the first 16 hex digits of the plaintext SHA-256
(``wal/00000001/0000000100000000000000A3.sha256-<digest>.zst.age``). A re-push can then tell "same
segment again" (success) from "different content under the same name" (an error an operator must look
at) without decrypting anything, since database hosts hold only the public recipients. Nothing is ever
overwritten."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from dbrunbook.errors import BackupError, ObjectCorruptError
from dbrunbook.repository.digest import file_digest
from dbrunbook.repository.manifest import SUFFIX
from dbrunbook.repository.objects import load_key, store
from dbrunbook.repository.storage import Storage

DIGEST_LEN = 16
DIGEST = re.compile(rf"[0-9a-f]{{{DIGEST_LEN}}}")
MARK = ".sha256-"


def name_of(key: str) -> str:
    """The log file name (WAL segment, binlog) a repository key stores."""
    return key.rsplit("/", 1)[-1].split(MARK, 1)[0]


def digest_of(key: str) -> str:
    """The plaintext digest a key carries. Anything but exactly 16 lowercase hex digits is refused: a
    shorter one (even an empty one) is a prefix of every digest, and the content check would pass."""
    stem = key.removesuffix(SUFFIX)
    digest = stem.rsplit(MARK, 1)[-1] if MARK in stem else ""
    if not DIGEST.fullmatch(digest):
        raise ObjectCorruptError(
            f"object {key}: the digest in its name is not {DIGEST_LEN} lowercase hex digits; "
            "it was not written by dbrunbook"
        )
    return digest


def only_key(name: str, keys: Sequence[str]) -> str:
    """The one object archived under a WAL or binlog name. Pushes never add a second one (a different digest
    is refused), so two mean something else wrote into the repository: any host can, and could pick a
    digest that sorts first. Refuse rather than choose."""
    if len(keys) != 1:
        raise ObjectCorruptError(
            f"{name} is archived {len(keys)} times with different content ({', '.join(sorted(keys))}): "
            "not written by dbrunbook alone; refusing to choose one"
        )
    return keys[0]


def read_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            yield chunk


class Naming(Protocol):
    """Where an archived log file goes: WAL segments and MariaDB binlogs share the push rules."""

    def prefix(self) -> str: ...
    def key(self, digest: str) -> str: ...


def push(
    storage: Storage,
    path: Path,
    recipients: Sequence[str],
    naming: Naming,
    digest: str | None = None,
) -> str:
    """Archive one file; returns 'archived' or 'already archived'. Raises when the name is taken by
    different content. ``digest``: the file's SHA-256 when the caller already has it; ``naming``: the
    key scheme (:class:`dbrunbook.engines.postgresql.wal.WalName`, ``BinlogName``)."""
    wal = naming
    digest = digest or file_digest(path)
    existing = [o.key for o in storage.list(wal.prefix())]
    if any(digest_of(k) == digest[:DIGEST_LEN] for k in existing):
        return "already archived"
    if existing:
        raise BackupError(
            f"{path.name} is already archived with different content ({existing[0]}); refusing to overwrite"
        )
    entry = store(storage, path.name, wal.key(digest), read_chunks(path), recipients)
    if entry.plain_sha256 != digest:
        raise BackupError(f"{path.name} changed while it was being archived")
    return "archived"


def fetch(storage: Storage, naming: Naming, name: str, dest: Path, identities: Sequence[str]) -> bool:
    """Restore one archived log file to ``dest``; False when the repository does not have it (normal at the end
    of recovery)."""
    wal = naming
    keys = [o.key for o in storage.list(wal.prefix())]
    if not keys:
        return False
    key = only_key(name, keys)
    expected = digest_of(key)  # before any download: a key without a real digest is refused
    tmp = dest.with_name(f".{dest.name}.dbrunbook-tmp")
    h = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for chunk in load_key(storage, key, identities):
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest()[:DIGEST_LEN] != expected:
            raise ObjectCorruptError(f"object {key}: content does not match the digest in its name")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return True
