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
the rest of its file count as changed, from that page on. All-zero pages (extended, never written) are
always kept: after a VACUUM truncation and a new extension the parent may hold an old page at that block,
and its stale rows must not come back to life.

Each backup stores the list of every file and directory it saw (``files.jsonl``). Restore applies an
incremental on top of its parent's files: entries missing from the list are removed, every file is cut or
extended to its listed size, then whole files are written and changed pages are written in place. A file's
changed pages travel as one tar member with a ``DBRUNBOOK.delta`` PAX header whose content is
``DBRPAGE1``, a little-endian uint32 count, that many uint32 block numbers, then the pages in that order.
The backup reads a file twice (once for the page LSNs, then the changed pages, from the page cache), so
the member's size is known before it starts and nothing is held beyond one 1 MiB run of pages.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import struct
import sys
import tarfile
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Literal

from dbrunbook.errors import BackupError, RestoreError

PAGE = 8192
MAX_RUN = 128 * PAGE  # pages are read and written in runs of at most 1 MiB
READ = 1 << 20
BLOCK = 512  # tar's
DELTA_KEY = "DBRUNBOOK.delta"  # PAX header marking a member that holds changed pages, not a whole file
OFFSET_KEY = "DBRUNBOOK.offset"  # PAX header of a member that is a byte range of a file cut into pieces
DELTA_MAGIC = b"DBRPAGE1"
FILE_LIST = "files.jsonl"
# Main forks only: base/<db oid>/<relfilenode>[.<segment>] and global/<relfilenode>[.<segment>].
MAIN_FORK = re.compile(r"^(base/\d+|global|pg_tblspc/\d+/PG_[^/]+/\d+)/\d+(\.\d+)?$")
# pd_lsn (two uint32), pd_checksum, pd_flags, pd_lower, pd_upper, pd_special, pd_pagesize_version.
_HEADER = struct.Struct("=IIHHHHHH")
_PAGE_STRIDE = struct.Struct(f"=IIHHHHHH{8192 - 20}x")  # a page header, then the rest of the page skipped
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
                _check_record(rec)
                files[rec.path] = rec
    except (StopIteration, ValueError, TypeError) as exc:
        raise BackupError(f"a backup's file list is not readable: {exc}") from None
    return FileList(int(head["scanned_ns"]), files)


def _check_record(rec: FileRecord) -> None:
    """A file list is data from the repository: a path must stay inside the data directory."""
    from dbrunbook.repository.storage import check_key

    try:
        check_key(rec.path)  # the repository's own rule for relative names: no "/" start, "..", "." or ""
    except ValueError:
        raise ValueError(f"unsafe path {rec.path!r} in the file list") from None
    if rec.size < 0:
        raise ValueError(f"negative size for {rec.path!r} in the file list")


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
    fields = _HEADER.unpack_from(page)
    if fields[-1] == 0 and not any(page):
        return 0
    return _header_lsn(fields)


def _header_lsn(fields: tuple[int, ...]) -> int | None:
    """The LSN of an unpacked page header, or None when it is not a valid PostgreSQL page header."""
    hi, lo, _checksum, flags, lower, upper, special, layout = fields
    if (
        layout != _PAGE_LAYOUT
        or flags & ~_VALID_FLAGS
        or not _MIN_LOWER <= lower <= upper <= special <= PAGE
        or special % 8
    ):
        return None
    return int((hi << 32) | lo)


def changed_blocks(path: Path | IO[bytes], size: int, threshold: int, start: int = 0) -> array[int]:
    """Numbers of the pages at or after LSN ``threshold`` between byte ``start`` and ``size`` (the size
    listed by the scan, or the end of a piece); from the first invalid page header on, every page."""
    blocks = array("I")
    distrust = False
    with open(path, "rb") if isinstance(path, Path) else contextlib.nullcontext(path) as fh:
        fh.seek(start)
        offset = start
        while offset < size:
            chunk = fh.read(min(READ, size - offset))
            whole = len(chunk) - len(chunk) % PAGE
            if not whole:
                break
            first = offset // PAGE
            # One C-level pass over the chunk's page headers; Python only looks at the unpacked fields.
            for i, fields in enumerate(_PAGE_STRIDE.iter_unpack(memoryview(chunk)[:whole])):
                if not distrust:
                    lsn = _header_lsn(fields)
                    if lsn is not None:
                        if lsn < threshold:
                            continue
                    elif fields[-1] != 0 or any(chunk[i * PAGE : (i + 1) * PAGE]):
                        distrust = True
                    # An all-zero page is kept: after a truncation and a new extension the parent may hold
                    # an old page at this block, whose stale rows would come back to life.
                blocks.append(first + i)
            offset += len(chunk)
    return blocks


def _runs(blocks: Sequence[int]) -> Iterator[tuple[int, int]]:
    """(first block, count) of each run of consecutive blocks, at most MAX_RUN bytes long."""
    start = prev = -2
    for b in blocks:
        if b == prev + 1 and (b - start) * PAGE < MAX_RUN:
            prev = b
            continue
        if start >= 0:
            yield start, prev - start + 1
        start = prev = b
    if start >= 0:
        yield start, prev - start + 1


def delta_member(
    root: Path, path: str, size: int, mode: int, mtime: float, threshold: int, *, start: int = 0
) -> Iterator[bytes]:
    """One tar member holding the changed pages of one file: a header (magic, count, block numbers), then
    the pages in block order. The page list is known before any page is read, so the member's size is too,
    and nothing is buffered beyond one run of pages."""
    # One open file for both passes: a file dropped after its tar header went out must not cut the member
    # short (that would corrupt the whole bundle); unlinked, it stays readable through this descriptor.
    with open(root / path, "rb") as fh:
        yield from _delta_member(fh, path, size, mode, mtime, threshold, start)


def _delta_member(
    fh: IO[bytes], path: str, size: int, mode: int, mtime: float, threshold: int, start: int
) -> Iterator[bytes]:
    blocks = changed_blocks(fh, size, threshold, start)
    if not blocks:
        return
    listed = array("I", blocks)
    if sys.byteorder != "little":
        listed.byteswap()  # the format is little-endian whatever the database host is
    head = DELTA_MAGIC + struct.pack("<I", len(blocks)) + listed.tobytes()
    info = tarfile.TarInfo(path)
    info.size = len(head) + len(blocks) * PAGE
    info.mode = mode
    info.mtime = int(mtime)
    info.pax_headers = {DELTA_KEY: "1"}
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    yield head
    out = bytearray()
    for first, count in _runs(blocks):
        data = os.pread(fh.fileno(), count * PAGE, first * PAGE)
        # A page that vanished since the first pass (truncation) is sent as zeros: WAL replay of the
        # truncation removes it again, and the member keeps the size its header announced.
        out += data
        out += bytes(count * PAGE - len(data))
        if len(out) >= READ:  # scattered pages: hand the pipeline 1 MiB pieces, not 8 KiB ones
            yield bytes(out)
            out.clear()
    if out:
        yield bytes(out)
    pad = info.size % BLOCK
    if pad:
        yield bytes(BLOCK - pad)


def now_ns() -> int:
    return time.time_ns()


# -- restore ------------------------------------------------------------------------------------------


def _skipped(rel: str, skip_contents: set[str]) -> bool:
    top = rel.split("/", 1)[0]
    return top in skip_contents and "/" in rel


def reshape(dest: Path, listing: FileList, skip_contents: set[str], keep: Sequence[str] = ()) -> None:
    """Make ``dest`` hold exactly the listed paths, each file at its listed size, before the incremental's
    contents are written: removed files go, truncated files are cut, grown or new files are extended with
    zeros (every page of them that matters is in the incremental). ``keep``: paths never removed or
    recreated, whatever the list says (the tablespace links this restore made)."""
    _remove_unlisted(dest, listing.files, skip_contents, set(keep))
    for rec in sorted(listing.files.values(), key=lambda r: r.path):
        target = dest / rec.path
        if rec.path in keep:
            continue  # a tablespace link of this restore: the directory it points to is already there
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


def _remove_unlisted(dest: Path, files: dict[str, FileRecord], skip_contents: set[str], keep: set[str]) -> None:
    for dirpath, dirnames, filenames in os.walk(dest, topdown=True, followlinks=True):
        rel_dir = Path(dirpath).relative_to(dest).as_posix()
        for d in list(dirnames):
            rel = d if rel_dir == "." else f"{rel_dir}/{d}"
            if _skipped(rel, skip_contents) or (rel in keep and rel not in files):
                dirnames.remove(d)
            elif rel not in files:
                gone = Path(dirpath, d)
                if gone.is_symlink():
                    gone.unlink()  # a dropped tablespace: its link goes, its directory is the operator's
                else:
                    shutil.rmtree(gone)
                dirnames.remove(d)
        for f in filenames:
            rel = f if rel_dir == "." else f"{rel_dir}/{f}"
            if rel not in files and rel not in keep and not _skipped(rel, skip_contents):
                os.unlink(Path(dirpath, f))


def write_member(target: Path, member: tarfile.TarInfo, src: IO[bytes]) -> int:
    """Write a whole file, or the changed pages of a delta member into the existing file."""
    written = 0
    piece_at = member.pax_headers.get(OFFSET_KEY)
    if piece_at is not None:
        # Other pieces of this file may be written by other workers at the same time: no truncation.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while chunk := src.read(READ):
                os.pwrite(fd, chunk, int(piece_at) + written)
                written += len(chunk)
        finally:
            os.close(fd)
        return written
    if member.pax_headers.get(DELTA_KEY) is None:
        with open(target, "wb") as out:
            while chunk := src.read(READ):
                out.write(chunk)
                written += len(chunk)
        return written
    if not target.exists():
        raise RestoreError(f"changed pages for {member.name} but the file is not there: the chain is broken")
    head = src.read(len(DELTA_MAGIC) + 4)
    if len(head) != len(DELTA_MAGIC) + 4 or not head.startswith(DELTA_MAGIC):
        raise RestoreError(f"changed pages of {member.name}: not a dbrunbook page list")
    (count,) = struct.unpack("<I", head[len(DELTA_MAGIC) :])
    blocks = array("I")
    blocks.frombytes(src.read(4 * count))
    if sys.byteorder != "little":
        blocks.byteswap()
    # Pages arrive in block order; read them 1 MiB at a time and write each run from that buffer: scattered
    # changes make tens of thousands of short runs, and a read call per run costs more than the write.
    buf = memoryview(b"")
    with open(target, "r+b") as out:
        limit = os.fstat(out.fileno()).st_size  # reshape set the listed size: pages never extend it
        for first, n in _runs(blocks):
            size = n * PAGE
            if (first + n) * PAGE > limit:
                raise RestoreError(f"changed pages of {member.name} go past its listed size: corrupt backup")
            if len(buf) < size:
                more = src.read(max(READ, size - len(buf)))
                buf = memoryview(bytes(buf) + more)
                if len(buf) < size:
                    raise RestoreError(f"changed pages of {member.name} end early")
            os.pwrite(out.fileno(), buf[:size], first * PAGE)
            buf = buf[size:]
            written += size
    return written
