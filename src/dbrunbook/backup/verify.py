"""``backup.verify`` and ``wal.check``: prove, without restoring, that backups and WAL can be read back.

verify reads every object a restore of the backup would read (its chain's objects, then the WAL from
its start to its stop segment), decrypts and decompresses it, and checks both SHA-256 digests: the
stored bytes against the manifest, the plaintext against the manifest (or, for WAL, against the digest
in the key). It writes nothing anywhere. Each problem names the object's key.

wal.check looks only at the names in the repository: it finds the positions between the oldest backup's
start and the newest archived segment that no timeline covers (gaps a recovery cannot cross), and lists
the timelines and their history files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from dbrunbook.engines.postgresql.lsn import name_at, position, segments_between
from dbrunbook.engines.postgresql.wal import HISTORY, SEGMENT, WalName, segment_size
from dbrunbook.errors import BackupError, EncryptionError, RepositoryError
from dbrunbook.repository.catalog import Catalog
from dbrunbook.repository.logs import only_key
from dbrunbook.repository.manifest import Manifest, ObjectEntry
from dbrunbook.repository.objects import load, load_key
from dbrunbook.repository.storage import Storage


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a backup, named by the key of the object (or the prefix) it concerns."""

    key: str
    what: str

    def as_dict(self) -> dict[str, str]:
        return {"key": self.key, "problem": self.what}


@dataclass(frozen=True)
class BackupCheck:
    """One backup read back: its chain, what was read, and what was wrong (nothing: it restores)."""

    backup_id: str
    kind: str
    chain: tuple[str, ...]
    objects: int
    stored_bytes: int
    wal_segments: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "kind": self.kind,
            "chain": list(self.chain),
            "objects": self.objects,
            "stored_bytes": self.stored_bytes,
            "wal_segments": self.wal_segments,
            "ok": self.ok,
            "problems": [p.as_dict() for p in self.problems],
        }


@dataclass(frozen=True)
class VerifyReport:
    """``backup.verify`` of one cluster: every backup checked, refused manifests included."""

    cluster: str
    backups: tuple[BackupCheck, ...]

    @property
    def ok(self) -> bool:
        return all(b.ok for b in self.backups)

    def as_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "ok": self.ok, "backups": [b.as_dict() for b in self.backups]}


def recorded_segment_size(manifests: Sequence[Manifest]) -> tuple[int, str] | None:
    """The WAL segment size recorded by the newest physical backup that records one, and its id. The size
    is fixed at initdb, so every backup of the cluster has the same; None when no backup records it."""
    for m in reversed(manifests):
        if m.kind != "logical" and m.extra.get("wal_segment_size"):
            return int(m.extra["wal_segment_size"]), m.backup_id
    return None


def _drain(chunks: Iterable[bytes]) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    for chunk in chunks:
        h.update(chunk)
        n += len(chunk)
    return n, h.hexdigest()


def _check_object(storage: Storage, entry: ObjectEntry, identities: Sequence[str]) -> Problem | None:
    try:
        _drain(load(storage, entry, identities))
    except (RepositoryError, EncryptionError) as exc:  # missing, corrupt, undecryptable: all name the key
        return Problem(entry.key, exc.message)
    return None


def _check_wal(storage: Storage, segment: str, identities: Sequence[str]) -> Problem | None:
    name = WalName(segment)
    keys = [info.key for info in storage.list(name.prefix())]
    if not keys:
        return Problem(f"{name.prefix()}*", f"WAL segment {segment} is not in the repository")
    for key in keys:
        try:
            only_key(segment, keys)
            expected = WalName.digest_of(key)
            _, digest = _drain(load_key(storage, key, identities))
        except (RepositoryError, EncryptionError) as exc:
            return Problem(key, exc.message)
        if digest[: len(expected)] != expected:
            return Problem(key, f"WAL segment {segment}: content does not match the digest in its key")
    return None


def verify(
    storage: Storage, catalog: Catalog, targets: Sequence[Manifest], identities: Sequence[str], *, jobs: int = 4
) -> list[BackupCheck]:
    """One report per target backup; objects shared by several chains are read once."""
    results: dict[str, Problem | None] = {}
    plans: list[tuple[Manifest, list[ObjectEntry], list[str]]] = []
    chains: dict[str, list[str]] = {}
    for target in targets:
        try:
            chain = catalog.chain(target)
        except BackupError as exc:  # a parent is gone: report it with this backup, go on with the others
            chain = [target]
            results[f"chain:{target.backup_id}"] = Problem(f"backups/{target.parent}/", exc.message)
        chains[target.backup_id] = [m.backup_id for m in chain]
        entries = [o for m in chain for o in m.objects]
        wal: list[str] = []
        if target.kind != "logical" and target.start_wal and target.stop_wal:
            try:
                wal = segments_between(target.start_wal, target.stop_wal, segment_size(target))
                if not wal:  # an empty range would check nothing and pass
                    raise BackupError(f"its stop WAL {target.stop_wal} lies before its start WAL {target.start_wal}")
            except BackupError as exc:  # names that do not fit the recorded size: this backup's problem
                results[f"range:{target.backup_id}"] = Problem(f"wal/{target.start_wal[:8]}/", exc.message)
        plans.append((target, entries, wal))
    unique_objects = {o.key: o for _, entries, _ in plans for o in entries}
    unique_wal = sorted({s for _, _, wal in plans for s in wal})
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for key, problem in zip(
            unique_objects,
            pool.map(lambda o: _check_object(storage, o, identities), unique_objects.values()),
            strict=True,
        ):
            results[key] = problem
        for seg, problem in zip(
            unique_wal, pool.map(lambda s: _check_wal(storage, s, identities), unique_wal), strict=True
        ):
            results[f"wal:{seg}"] = problem
    reports = []
    for target, entries, wal in plans:
        problems = [p for p in (results[o.key] for o in entries) if p] + [
            p for p in (results[f"wal:{s}"] for s in wal) if p
        ]
        for broken in (results.get(f"range:{target.backup_id}"), results.get(f"chain:{target.backup_id}")):
            if broken:
                problems.insert(0, broken)
        reports.append(
            BackupCheck(
                target.backup_id,
                target.kind,
                tuple(chains[target.backup_id]),
                objects=len(entries),
                stored_bytes=sum(o.size for o in entries),
                wal_segments=len(wal),
                problems=tuple(problems),
            )
        )
    return reports


# -- wal.check ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WalGap:
    """Segments missing from the archive, ``first``..``last``; critical when a backup or recovery to now needs them."""

    first: str
    last: str
    missing: int
    critical: bool

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.first, "to": self.last, "missing": self.missing, "critical": self.critical}


@dataclass(frozen=True)
class TimelineSpan:
    """The archived segments of one timeline, and whether its history file is there."""

    timeline: int
    first: str
    last: str
    segments: int
    history_file: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "timeline": self.timeline,
            "first": self.first,
            "last": self.last,
            "segments": self.segments,
            "history_file": self.history_file,
        }


@dataclass(frozen=True)
class WalArchive:
    """The archived WAL as its names show it: from where a recovery needs it, gaps and timelines."""

    first: str | None  # the oldest backup's start segment
    newest: str | None
    gaps: tuple[WalGap, ...]
    timelines: tuple[TimelineSpan, ...]
    timeline_switches: int
    history_files: tuple[str, ...]
    unexpected_names: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.first,
            "newest": self.newest,
            "gaps": [g.as_dict() for g in self.gaps],
            "timelines": [t.as_dict() for t in self.timelines],
            "timeline_switches": self.timeline_switches,
            "history_files": list(self.history_files),
            "unexpected_names": list(self.unexpected_names),
        }


@dataclass(frozen=True)
class WalCheck:
    """``wal.check`` of one cluster: its archive, the segment size counted in (and who said so), and the names
    archived twice with different content."""

    cluster: str
    archive: WalArchive
    wal_segment_size: int
    wal_segment_size_from: str
    archived_twice: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            **self.archive.as_dict(),
            "wal_segment_size": self.wal_segment_size,
            "wal_segment_size_from": self.wal_segment_size_from,
            "archived_twice": list(self.archived_twice),
        }


def wal_report(
    names: Iterable[str],
    start: str | None,
    seg_size: int,
    backups: Sequence[tuple[str, str]] = (),
    window_from: str | None = None,
) -> WalArchive:
    """Gaps and timelines of the archived WAL, from the file names alone. ``start`` is the oldest backup's
    start segment: older WAL is not needed, so holes before it are not gaps.

    ``backups`` are the (start, stop) segments of the physical backups. A gap is *critical* when it breaks
    one of them (inside its start..stop, so it cannot become consistent) or lies after the newest one's
    start (so no restore reaches "now"), or after ``window_from`` (the start segment of the backup the PITR
    window restores from: the window promises every point after it). An older gap only stops older
    backups from replaying past it: reported, not critical, and it goes away when retention deletes them."""

    positions, timelines, history, unexpected = _archived_positions(names, seg_size)

    def name(tli: str, p: int) -> str:
        return name_at(tli, p, seg_size)

    first = None
    gaps: list[WalGap] = []
    if positions:
        first = position(start, seg_size) if start else min(positions)
        tli = start[:8] if start else min(timelines)
        gaps = _gaps(positions, first, tli, seg_size, backups, window_from)
    switches = sorted(timelines)
    return WalArchive(
        first=name(start[:8], first) if start and first is not None else None,
        newest=name(max(positions[max(positions)]), max(positions)) if positions else None,
        gaps=tuple(gaps),
        timelines=tuple(
            TimelineSpan(
                int(t, 16),
                name(t, min(ps)),
                name(t, max(ps)),
                segments=len(ps),
                history_file=t == "00000001" or f"{t}.history" in history,
            )
            for t, ps in sorted(timelines.items())
        ),
        timeline_switches=len(switches) - 1 if switches else 0,
        history_files=tuple(sorted(history)),
        unexpected_names=tuple(sorted(unexpected)),
    )


def _archived_positions(
    names: Iterable[str], seg_size: int
) -> tuple[dict[int, set[str]], dict[str, list[int]], list[str], list[str]]:
    """The archive's names sorted out: position -> timelines holding it, timeline -> its positions, the
    history files, and the names no segment of this cluster can have."""
    positions: dict[int, set[str]] = {}
    timelines: dict[str, list[int]] = {}
    history = []
    unexpected: list[str] = []
    for n in names:
        if HISTORY.match(n):
            history.append(n)
            continue
        m = SEGMENT.match(n)
        if not m or m.group(4):  # .partial and .backup files do not fill a position
            continue
        try:
            p = position(n, seg_size)
        except BackupError:  # a name no segment of this cluster can have: not ours, never a reason to stop
            unexpected.append(n)
            continue
        positions.setdefault(p, set()).add(m.group(1))
        timelines.setdefault(m.group(1), []).append(p)
    return positions, timelines, history, unexpected


def _gaps(
    positions: dict[int, set[str]],
    first: int,
    tli: str,
    seg_size: int,
    backups: Sequence[tuple[str, str]],
    window_from: str | None,
) -> list[WalGap]:
    """The holes from ``first`` on, each critical or not (see :func:`wal_report`)."""

    def at(seg: str) -> int:
        return position(seg, seg_size)

    gaps = []
    newest = max((at(s) for s, _ in backups), default=None)
    # From one archived position to the next (never position by position: a stray name far ahead must
    # cost one step, not billions).
    present = sorted(x for x in positions if x >= first)
    for p, q in zip([first - 1, *present], present, strict=False):
        if q - p <= 1:
            continue
        lo, hi = p + 1, q - 1
        inside = any(at(s) <= hi and lo <= at(e) for s, e in backups)
        in_window = window_from is not None and hi >= at(window_from)
        critical = inside or in_window or newest is None or hi >= newest
        gaps.append(WalGap(name_at(tli, lo, seg_size), name_at(tli, hi, seg_size), q - lo, critical))
    return gaps
