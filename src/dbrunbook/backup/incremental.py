"""Page-level incremental backups: keep only the 8 KiB pages that changed since the parent backup began.

Every page of a relation's main fork carries the LSN of the last WAL record that changed it. A page whose
LSN is below the parent's start LSN (the redo point of the checkpoint ``pg_backup_start`` waited for) is
byte for byte what the parent stored, hint bits aside, so the incremental leaves it out; WAL replay from
the incremental's own start LSN repairs everything after, as for a full backup.

Pages are only trusted to say "unchanged" when the file is the very file the parent read: same path and
inode. A file that is new, was replaced (``CREATE DATABASE ... STRATEGY FILE_COPY`` copies pages with
their old LSNs into new files) or is not a main fork (free space maps are not WAL-logged; visibility map
bits are cleared without an LSN change) is stored whole. A file whose inode, size and modification time
all equal the parent's, and that was last modified well before the parent's scan, is not read at all.
A page whose header is not a valid PostgreSQL page header (a torn read, corruption, a non-page file) makes
the rest of its file count as changed, from that page on.

Each backup stores the list of every file and directory it saw (``files.jsonl``). Restore applies an
incremental on top of its parent's files: entries missing from the list are removed, every file is cut or
extended to its listed size, then whole files and page runs are written. The runs travel as ordinary tar
members with a ``DBRUNBOOK.offset`` PAX header, so no object ever needs a temporary file or more memory
than one run (at most :data:`MAX_RUN` bytes).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import tarfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from dbrunbook.errors import BackupError, RestoreError

PAGE = 8192
MAX_RUN = 128 * PAGE  # one tar member per run of at most 1 MiB of consecutive changed pages
OFFSET_KEY = "DBRUNBOOK.offset"
FILE_LIST = "files.jsonl"
# Main forks only: base/<db oid>/<relfilenode>[.<segment>] and global/<relfilenode>[.<segment>].
MAIN_FORK = re.compile(r"^(base/\d+|global)/\d+(\.\d+)?$")
# pd_lsn (two uint32), pd_checksum, pd_flags, pd_lower, pd_upper, pd_special, pd_pagesize_version.
_HEADER = struct.Struct("=IIHHHHHH")
_PAGE_LAYOUT = PAGE | 4  # page size and layout version 4, PostgreSQL 8.3 and later
_VALID_FLAGS = 0x0007
_MIN_LOWER = 24
_SETTLE_NS = 2_000_000_000  # a file touched this close to the parent's scan is read again

Decision = Literal["dir", "skip", "whole", "delta"]


@dataclass(frozen=True)
class FileRecord:
    """One line of a backup's file list."""

    path: str
    size: int
    mode: int
    is_dir: bool
    mtime_ns: int
    inode: int

    def to_line(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True)
class FileList:
    scanned_ns: int  # host clock when the scan began
    files: dict[str, FileRecord]


def file_list_chunks(records: Iterable[FileRecord], scanned_ns: int) -> Iterator[bytes]:
    yield json.dumps({"format": 1, "scanned_ns": scanned_ns}).encode() + b"\n"
    for r in records:
        yield r.to_line()


def read_file_list(lines: Iterable[bytes]) -> FileList:
    it = iter(lines)
    try:
        head = json.loads(next(it))
        files = {}
        for line in it:
            if line.strip():
                rec = FileRecord(**json.loads(line))
                files[rec.path] = rec
    except (StopIteration, ValueError, TypeError) as exc:
        raise BackupError(f"the parent backup's file list is not readable: {exc}") from None
    return FileList(int(head["scanned_ns"]), files)


def split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Lines out of a stream of chunks, holding one partial line at a time."""
    rest = b""
    for chunk in chunks:
        rest += chunk
        *lines, rest = rest.split(b"\n")
        yield from lines
    if rest:
        yield rest


def decide(record: FileRecord, parent: FileRecord | None, parent_scanned_ns: int) -> Decision:
    """What an incremental stores of one file, given the parent's record of the same path."""
    if record.is_dir:
        return "dir"
    if parent is None or parent.is_dir or parent.inode != record.inode:
        return "whole"
    if (
        parent.size == record.size
        and parent.mtime_ns == record.mtime_ns
        and record.mtime_ns < parent_scanned_ns - _SETTLE_NS
    ):
        return "skip"
    if MAIN_FORK.match(record.path) and record.size % PAGE == 0:
        return "delta"
    return "whole"


def page_lsn(page: bytes | memoryview) -> int | None:
    """The page's LSN, or None when the header is not a valid page header. An all-zero page (extended but
    never written) is valid, with LSN 0."""
    hi, lo, _checksum, flags, lower, upper, special, layout = _HEADER.unpack_from(page)
    if layout == 0 and not any(page):
        return 0
    if (
        layout != _PAGE_LAYOUT
        or flags & ~_VALID_FLAGS
        or not _MIN_LOWER <= lower <= upper <= special <= PAGE
        or special % 8
    ):
        return None
    return int((hi << 32) | lo)


def changed_runs(path: Path, size: int, threshold: int) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) runs of consecutive pages at or after ``threshold``, within the first ``size``
    bytes (the size listed by the scan). From the first invalid page header on, every page counts."""
    distrust = False
    run_start = -1
    run = bytearray()
    with open(path, "rb") as fh:
        offset = 0
        while offset < size:
            block = fh.read(min(MAX_RUN, size - offset))
            if not block:
                break
            view = memoryview(block)
            for i in range(0, len(block) - len(block) % PAGE, PAGE):
                page = view[i : i + PAGE]
                if not distrust:
                    lsn = page_lsn(page)
                    distrust = lsn is None
                changed = distrust or lsn >= threshold  # type: ignore[operator]
                if changed:
                    if not run:
                        run_start = offset + i
                    run += page
                    if len(run) >= MAX_RUN:
                        yield run_start, bytes(run)
                        run.clear()
                elif run:
                    yield run_start, bytes(run)
                    run.clear()
            offset += len(block)
    if run:
        yield run_start, bytes(run)


def delta_members(root: Path, path: str, size: int, mode: int, mtime: float, threshold: int) -> Iterator[bytes]:
    """Tar members, one per run of changed pages of one file."""
    for offset, data in changed_runs(root / path, size, threshold):
        info = tarfile.TarInfo(path)
        info.size = len(data)
        info.mode = mode
        info.mtime = int(mtime)
        info.pax_headers = {OFFSET_KEY: str(offset)}
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        yield data  # a multiple of 8192, so already a whole number of tar blocks


def now_ns() -> int:
    return time.time_ns()


# -- restore ------------------------------------------------------------------------------------------


def _skipped(rel: str, skip_contents: set[str]) -> bool:
    top = rel.split("/", 1)[0]
    return top in skip_contents and "/" in rel


def reshape(dest: Path, listing: FileList, skip_contents: set[str], keep: Sequence[str] = ()) -> None:
    """Make ``dest`` hold exactly the listed paths, each file at its listed size, before the incremental's
    contents are written: removed files go, truncated files are cut, grown or new files are extended with
    zeros (every page of them that matters is in the incremental)."""
    files = listing.files
    for dirpath, dirnames, filenames in os.walk(dest, topdown=True):
        rel_dir = Path(dirpath).relative_to(dest).as_posix()
        for d in list(dirnames):
            rel = d if rel_dir == "." else f"{rel_dir}/{d}"
            if _skipped(rel, skip_contents):
                dirnames.remove(d)
            elif rel not in files:
                shutil.rmtree(Path(dirpath, d))
                dirnames.remove(d)
        for f in filenames:
            rel = f if rel_dir == "." else f"{rel_dir}/{f}"
            if rel not in files and rel not in keep and not _skipped(rel, skip_contents):
                os.unlink(Path(dirpath, f))
    for rec in sorted(files.values(), key=lambda r: r.path):
        target = dest / rec.path
        if rec.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(rec.mode or 0o700)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT, rec.mode or 0o600)
        try:
            if os.fstat(fd).st_size != rec.size:
                os.ftruncate(fd, rec.size)
        finally:
            os.close(fd)


def write_member(target: Path, member: tarfile.TarInfo, src: Iterable[bytes]) -> int:
    """Write a whole file, or one run of pages into an existing file at the member's offset."""
    offset = member.pax_headers.get(OFFSET_KEY)
    written = 0
    if offset is None:
        with open(target, "wb") as out:
            for chunk in src:
                out.write(chunk)
                written += len(chunk)
        return written
    if not target.exists():
        raise RestoreError(f"page run for {member.name} but the file is not there: the chain is broken")
    with open(target, "r+b") as out:
        out.seek(int(offset))
        for chunk in src:
            out.write(chunk)
            written += len(chunk)
    return written
