"""A file's SHA-256, standard library only: ``wal-push``'s fast path (``agent/walspool.py``) imports it without
loading the repository's object pipeline."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_digest(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
