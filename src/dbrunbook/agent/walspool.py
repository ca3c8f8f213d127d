"""Push-ahead for ``wal-push``: standard library only, so that the common case costs a bare Python start.

PostgreSQL archives one segment per ``archive_command`` run, and a run of ``dbrunbook-host wal-push`` costs
about half a second before it uploads anything (importing boto3, pydantic and the crypto stack, building
an S3 client). Under a heavy write load that start-up, not the upload, decides how far the archiver falls
behind. So a push also uploads the next segments PostgreSQL has marked ready
(``pg_wal/archive_status/*.ready``), in parallel, and leaves a marker per segment holding its SHA-256.
When PostgreSQL then asks for one of those, the marker is checked against the file's own digest and the
run ends there, without importing anything heavy. The marker is written only after the object with that
digest in its key was stored, so trusting it is trusting the repository's own answer; a marker whose
digest does not match the file is ignored and the full path runs (which then refuses different content).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from dbrunbook.repository.digest import file_digest

SPOOL = "wal-spool"
STALE_SECONDS = 24 * 3600


def spool_dir(config: str | Path) -> Path:
    return Path(config).parent / SPOOL


def already_pushed(config: str | Path, path: Path) -> bool:
    """True when a push-ahead stored exactly this file; the marker is used up."""
    marker = spool_dir(config) / f"{path.name}.ok"
    try:
        recorded = marker.read_text().strip()
    except OSError:
        return False
    if recorded != file_digest(path):
        return False
    marker.unlink(missing_ok=True)
    return True


def record(config: str | Path, name: str, digest: str) -> None:
    folder = spool_dir(config)
    folder.mkdir(mode=0o700, exist_ok=True)
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(digest + "\n")
    tmp.replace(folder / f"{name}.ok")


def ready_segments(path: Path, limit: int) -> list[Path]:
    """Up to ``limit`` other files PostgreSQL has marked ready to archive, oldest first."""
    status = path.parent / "archive_status"
    try:
        names = sorted(p.name.removesuffix(".ready") for p in status.iterdir() if p.name.endswith(".ready"))
    except OSError:
        return []
    return [path.parent / n for n in names if n != path.name][:limit]


def forget_stale(config: str | Path, now: float | None = None) -> None:
    """Markers PostgreSQL never asked for (the segment was archived another way, or the server crashed)."""
    cutoff = (now or time.time()) - STALE_SECONDS
    try:
        for marker in spool_dir(config).iterdir():
            if marker.stat().st_mtime < cutoff:
                marker.unlink(missing_ok=True)
    except OSError:
        pass
