"""Host side of a physical backup and restore: walk the data directory, stream tar bundles through the
object pipeline in parallel, and unpack them again.

Runs on the database host (``dbrunbook-host backup-push`` / ``restore-files``) between the
``pg_backup_start``/``pg_backup_stop`` the controller holds on one session. Files change while we read
them; that is fine, WAL replay from the start LSN repairs every page. A file that grows is cut at the
size we listed, one that shrinks is padded with zeros, one that vanished is left out: the same rules as
pg_basebackup.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from dbrunbook.engines.postgresql.incremental import (
    FILE_LIST,
    OFFSET_KEY,
    FileList,
    FileRecord,
    decide,
    delta_member,
    file_list_chunks,
    now_ns,
    read_file_list,
    reshape,
    split_lines,
    write_member,
)
from dbrunbook.errors import BackupError, RestoreError
from dbrunbook.repository.manifest import ObjectEntry, object_key
from dbrunbook.repository.objects import load, store
from dbrunbook.repository.storage import ChunkReader, Storage, check_key

# Contents are recreated by the server or replayed from the archive; the directories themselves are kept.
SKIP_CONTENTS = {
    "pg_wal",
    "pg_replslot",
    "pg_stat_tmp",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_subtrans",
}
SKIP_FILES = {
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "backup_label.old",
    "tablespace_map",
    "standby.signal",
    "recovery.signal",
    "current_logfiles",
    "pg_internal.init",
}
BLOCK = 512
READ = 1 << 20
BUNDLE = 256 << 20  # per object: several per 1 GiB relation segment, so --jobs workers share big tables
# Creating a file costs the restore 0.5-1 ms of kernel time here (ext4): thousands of small catalog and
# free-space-map files in one bundle would keep one worker busy for seconds while the others idle.
MAX_FILES = 500


@dataclass(frozen=True)
class Entry:
    path: str  # relative, '/'-separated
    size: int
    mode: int
    is_dir: bool
    mtime: float
    mtime_ns: int = 0
    inode: int = 0

    def record(self) -> FileRecord:
        return FileRecord(self.path, self.size, self.mode, self.is_dir, self.mtime_ns, self.inode)


def scan(root: Path) -> list[Entry]:
    """Every directory and regular file to back up, relative to the data directory."""
    out: list[Entry] = []
    # Tablespaces are symlinks pg_tblspc/<oid> -> their directory: followed, and stored under that name.
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        rel_dir = Path(dirpath).relative_to(root)
        top = rel_dir.parts[0] if rel_dir.parts else ""
        if top in SKIP_CONTENTS:
            dirnames.clear()  # slot folders, archive_status...: the server recreates what it needs
            continue
        dirnames.sort()
        for d in list(dirnames):
            p = Path(dirpath, d)
            if p.is_symlink() and rel_dir.as_posix() != "pg_tblspc":
                if (rel_dir / d).as_posix() in SKIP_CONTENTS:  # a pg_wal moved elsewhere (initdb --waldir)
                    dirnames.remove(d)
                    # The restored copy still needs the directory itself, inside its data directory.
                    out.append(Entry((rel_dir / d).as_posix(), 0, 0o700, True, 0.0))
                    continue
                # Anything else linked out of the data directory would be restored as a plain directory.
                raise BackupError(f"{rel_dir / d} is a symlink outside pg_tblspc; move it back into the data directory")
            st = p.stat()
            out.append(
                Entry(
                    (rel_dir / d).as_posix(), 0, stat.S_IMODE(st.st_mode), True, st.st_mtime, st.st_mtime_ns, st.st_ino
                )
            )
        for f in sorted(filenames):
            if f in SKIP_FILES or f.startswith("pgsql_tmp") or (rel_dir.as_posix() == "." and f.endswith(".tmp")):
                continue
            p = Path(dirpath, f)
            try:
                st = p.lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                rel = (rel_dir / f).as_posix()
                out.append(
                    Entry(rel, st.st_size, stat.S_IMODE(st.st_mode), False, st.st_mtime, st.st_mtime_ns, st.st_ino)
                )
    return out


@dataclass(frozen=True)
class Piece:
    """A byte range of one file. Files bigger than a bundle are cut into pieces that travel in different
    bundles, so one 1 GiB relation segment is backed up and restored by several workers at once."""

    entry: Entry
    offset: int
    length: int

    @property
    def whole(self) -> bool:
        return self.offset == 0 and self.length == self.entry.size


Item = Entry | Piece


def plan_bundles(entries: Sequence[Entry], target: int) -> list[list[Item]]:
    """Group files into bundles of about ``target`` bytes and at most MAX_FILES files (small files
    together, big ones cut into pieces of ``target`` bytes), biggest first so parallel workers finish
    together. Directories go first."""
    dirs: list[Item] = [e for e in entries if e.is_dir]
    pieces: list[Piece] = []
    for e in (e for e in entries if not e.is_dir):
        pieces += [Piece(e, off, min(target, e.size - off)) for off in range(0, max(e.size, 1), target)]
    pieces.sort(key=lambda p: -p.length)
    bundles: list[list[Item]] = []
    current: list[Item] = []
    size = 0
    for piece in pieces:
        if current and (size + piece.length > target or len(current) >= MAX_FILES):
            bundles.append(current)
            current, size = [], 0
        current.append(piece.entry if piece.whole else piece)
        size += piece.length
    if current or not bundles:
        bundles.append(current)
    bundles[0] = dirs + bundles[0]
    return bundles


def _header(e: Entry, size: int, offset: int | None = None) -> bytes:
    info = tarfile.TarInfo(e.path)
    info.size = size
    info.mode = e.mode
    info.mtime = int(e.mtime)
    info.type = tarfile.DIRTYPE if e.is_dir else tarfile.REGTYPE
    if offset is not None:
        info.pax_headers = {OFFSET_KEY: str(offset)}
    return info.tobuf(format=tarfile.PAX_FORMAT)


def tar_chunks(
    root: Path, bundle: Iterable[Item], deltas: frozenset[str] = frozenset(), threshold: int = 0
) -> Iterator[bytes]:
    """A tar stream of the bundle, produced piece by piece (tarfile.addfile would buffer whole files).
    Files in ``deltas`` contribute only their pages changed at or after LSN ``threshold``."""
    for item in bundle:
        e, offset, length = (item, 0, item.size) if isinstance(item, Entry) else (item.entry, item.offset, item.length)
        if e.is_dir:
            yield _header(e, 0)
            continue
        if e.path in deltas:
            with contextlib.suppress(FileNotFoundError):  # dropped since the scan
                yield from delta_member(root, e.path, offset + length, e.mode, e.mtime, threshold, start=offset)
            continue
        try:
            fh = open(root / e.path, "rb")  # noqa: SIM115 - closed below, after streaming
        except FileNotFoundError:
            continue  # dropped since the scan; WAL replay drops it too
        with fh:
            yield _header(e, length, None if isinstance(item, Entry) else offset)
            fh.seek(offset)
            left = length
            while left:
                chunk = fh.read(min(READ, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk
            while left:  # shrank since the scan
                pad = min(READ, left)
                left -= pad
                yield bytes(pad)
        if length % BLOCK:
            yield bytes(BLOCK - length % BLOCK)
    yield bytes(2 * BLOCK)


@dataclass(frozen=True)
class Parent:
    """What an incremental needs of its parent: the LSN its pages are compared with, and its file list."""

    start_lsn: int
    files: FileList


class Meter(Protocol):
    """Where a stream reports its bytes (the agent's :class:`~dbrunbook.execution.progress.ProgressWriter`)."""

    total: int | None

    def add(self, count: int, what: str = "") -> None: ...


def metered(chunks: Iterable[bytes], meter: Meter, what: str) -> Iterator[bytes]:
    """The chunks, told to the meter a MiB at a time: a tar header per small file must not cost a locked call
    each on the data path."""
    pending = 0
    for chunk in chunks:
        pending += len(chunk)
        if pending >= READ:
            meter.add(pending, what)
            pending = 0
        yield chunk
    if pending:
        meter.add(pending, what)


def push_bundles(
    storage: Storage,
    root: Path,
    backup_id: str,
    recipients: Sequence[str],
    *,
    jobs: int = 2,
    target: int = BUNDLE,
    level: int = 1,
    parent: Parent | None = None,
    progress: Meter | None = None,
) -> list[ObjectEntry]:
    """Stream the data directory (all of it, or what changed since ``parent``) plus its file list; ``progress``
    is told the bytes planned, then each chunk as it goes (tar headers included)."""
    scanned_ns = now_ns()
    entries = scan(root)
    listing = store(
        storage,
        FILE_LIST,
        object_key(backup_id, FILE_LIST),
        file_list_chunks((e.record() for e in entries), scanned_ns),
        recipients,
        level=level,
    )
    deltas: set[str] = set()
    if parent is not None:
        chosen = []
        for e in entries:
            decision = decide(e.record(), parent.files.files.get(e.path), parent.files.scanned_ns)
            if decision == "delta":
                deltas.add(e.path)
            if decision != "skip":
                chosen.append(e)
        entries = chosen
    bundles = plan_bundles(entries, target)
    frozen = frozenset(deltas)
    threshold = parent.start_lsn if parent else 0
    if progress is not None:
        # An upper bound for an incremental (deltas carry only changed pages): the bar then ends early.
        progress.total = sum(i.length if isinstance(i, Piece) else i.size for b in bundles for i in b)

    def one(i: int, bundle: list[Item]) -> ObjectEntry:
        name = f"data/{i + 1:04d}.tar"
        chunks = tar_chunks(root, bundle, frozen, threshold)
        if progress is not None:
            chunks = metered(chunks, progress, name)
        return store(storage, name, object_key(backup_id, name), chunks, recipients, level=level)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return [listing, *pool.map(one, range(len(bundles)), bundles)]


def _safe(dest: Path, name: str) -> Path:
    try:
        check_key(name.rstrip("/"))  # tarfile ends directory names with "/"
    except ValueError:
        raise RestoreError(f"refusing unsafe path {name!r} in backup") from None
    return dest.joinpath(*PurePosixPath(name).parts)


def unpack(
    storage: Storage, entry: ObjectEntry, dest: Path, identities: Sequence[str], progress: Meter | None = None
) -> int:
    """Extract one bundle into ``dest``; returns bytes written. Digests are checked at the end."""
    written = 0
    chunks: Iterable[bytes] = load(storage, entry, identities, check_plain=False)
    if progress is not None:
        chunks = metered(chunks, progress, entry.name)
    reader = io.BufferedReader(ChunkReader(iter(chunks)), buffer_size=READ)
    with tarfile.open(fileobj=reader, mode="r|") as tar:
        for member in tar:
            target = _safe(dest, member.name)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                target.chmod(member.mode or 0o700)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None
                written += write_member(target, member, src)
                target.chmod(member.mode or 0o600)
            else:
                raise RestoreError(f"unexpected member type in backup: {member.name}")
    # Drain to the end, so the stored/plain digests of the whole object are checked.
    while reader.read(READ):
        pass
    return written


def unpack_all(
    storage: Storage,
    entries: Sequence[ObjectEntry],
    dest: Path,
    identities: Sequence[str],
    *,
    jobs: int = 2,
    progress: Meter | None = None,
) -> int:
    # Threads, not processes: measured here, restore time is the kernel's (creating and writing files),
    # and two worker processes were no faster than two threads.
    data = [e for e in entries if e.name.startswith("data/")]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return sum(pool.map(lambda e: unpack(storage, e, dest, identities, progress), data))


def data_bytes(entries: Sequence[ObjectEntry]) -> int:
    """What unpacking a backup reads: the plain size of its data bundles (for the restore's progress)."""
    return sum(e.plain_size for e in entries if e.name.startswith("data/"))


def load_file_list(storage: Storage, entries: Sequence[ObjectEntry], identities: Sequence[str]) -> FileList:
    entry = next((e for e in entries if e.name == FILE_LIST), None)
    if entry is None:
        raise RestoreError("the backup has no file list (made by an older dbrunbook): it cannot start a chain")
    return read_file_list(split_lines(load(storage, entry, identities)))


def link_tablespaces(dest: Path, tablespaces: dict[str, str]) -> None:
    """Make pg_tblspc/<oid> a symlink to each tablespace's directory (created 0700, refused when it holds
    anything) before any file is unpacked: files then land in the tablespace, as PostgreSQL expects. No
    tablespace_map is written, since the links already say what it would."""
    for oid, location in sorted(tablespaces.items()):
        target = Path(location)
        if not target.is_absolute():
            raise RestoreError(f"tablespace {oid}: {location!r} is not an absolute path")
        if target.exists() and any(target.iterdir()):
            raise RestoreError(
                f"tablespace {oid} would be restored into {location}, which is not empty",
                hint=f"map it elsewhere with --tablespace {oid}=/new/empty/dir",
            )
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        target.chmod(0o700)
        link = dest / "pg_tblspc" / oid
        link.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if link.is_symlink() or link.exists():
            raise RestoreError(f"{link} already exists")
        link.symlink_to(target)


def parse_tablespace_map(text: str) -> dict[str, str]:
    """tablespace_map lines are '<oid> <path>'; PostgreSQL escapes a backslash, newline or carriage return
    in the path with a backslash."""
    out = {}
    for line in text.splitlines():
        oid, _, path = line.partition(" ")
        if oid.isdigit() and path:
            out[oid] = re.sub(r"\\(.)", r"\1", path)
    return out


def apply_incremental(
    storage: Storage,
    entries: Sequence[ObjectEntry],
    dest: Path,
    identities: Sequence[str],
    *,
    jobs: int = 2,
    links: Sequence[str] = (),
    progress: Meter | None = None,
) -> int:
    """Turn the restored parent in ``dest`` into this incremental: reshape, then write its files and pages.
    ``links`` are the pg_tblspc/<oid> links this restore made; they stay whatever the list says."""
    reshape(dest, load_file_list(storage, entries, identities), SKIP_CONTENTS, links)
    return unpack_all(storage, entries, dest, identities, jobs=jobs, progress=progress)
