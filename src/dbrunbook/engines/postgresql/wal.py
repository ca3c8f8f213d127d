"""PostgreSQL WAL file names and where their objects live in the repository
(``wal/<timeline>/<segment>.sha256-<digest>.zst.age``, ``wal/history/``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dbrunbook.engines.postgresql.lsn import DEFAULT_SEGMENT_SIZE
from dbrunbook.errors import BackupError
from dbrunbook.repository import logs
from dbrunbook.repository.logs import DIGEST_LEN, MARK, digest_of, name_of
from dbrunbook.repository.manifest import SUFFIX, Manifest
from dbrunbook.repository.storage import Storage

SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.partial|\.[0-9A-F]{8}\.backup)?$")
HISTORY = re.compile(r"^[0-9A-F]{8}\.history$")


@dataclass(frozen=True)
class WalName:
    name: str

    @property
    def folder(self) -> str:
        m = SEGMENT.match(self.name)
        if m:
            return f"wal/{m.group(1)}/"
        if HISTORY.match(self.name):
            return "wal/history/"
        raise BackupError(f"'{self.name}' is not a WAL segment, history or backup history file name")

    def prefix(self) -> str:
        # The marker keeps 00..06 from matching its backup history file 00..06.00000028.backup.
        return f"{self.folder}{self.name}{MARK}"

    def key(self, digest: str) -> str:
        return f"{self.prefix()}{digest[:DIGEST_LEN]}{SUFFIX}"

    of_key = staticmethod(name_of)
    digest_of = staticmethod(digest_of)


def push(storage: Storage, path: Path, recipients: Sequence[str], digest: str | None = None) -> str:
    """Archive one WAL file (archive_command): see :func:`dbrunbook.repository.logs.push`."""
    return logs.push(storage, path, recipients, WalName(path.name), digest)


def fetch(storage: Storage, name: str, dest: Path, identities: Sequence[str]) -> bool:
    """Restore one WAL file (restore_command); False when the repository does not have it."""
    return logs.fetch(storage, WalName(name), name, dest, identities)


def segment_size(manifest: Manifest | None) -> int:
    """The WAL segment size a manifest records (16 MiB for one written without it)."""
    size = manifest.extra.get("wal_segment_size") if manifest else None
    return int(size) if size else DEFAULT_SEGMENT_SIZE
