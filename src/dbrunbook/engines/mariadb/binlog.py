"""MariaDB/MySQL binlogs in the repository, and the coordinates backups and recovery targets are made of.

Pure functions only: key names, GTID arithmetic, the coordinates a dump or mariabackup prints, and the
few header bytes of a binlog file that say which GTIDs came before it.

Keys follow the WAL rules (digest in the name, nothing overwritten), one folder per server id, because two
servers of a cluster both write ``mariadb-bin.000001`` and only the server id tells them apart:
``binlog/<server_id>/mariadb-bin.000042.sha256-<digest>.zst.age``.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dbrunbook.errors import BackupError, RestoreError
from dbrunbook.repository.logs import DIGEST_LEN, MARK
from dbrunbook.repository.manifest import SUFFIX

ROOT = "binlog/"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.(\d{6,})$")


def number(name: str) -> int:
    """The sequence number of a binlog file name (mariadb-bin.000042 -> 42); -1 for anything else."""
    tail = name.rsplit(".", 1)[-1]
    return int(tail) if tail.isdigit() and len(tail) >= 6 else -1


@dataclass(frozen=True)
class BinlogName:
    server_id: int
    name: str

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise BackupError(f"'{self.name}' is not a binlog file name (base.NNNNNN)")

    @property
    def number(self) -> int:
        return number(self.name)

    @property
    def base(self) -> str:
        return self.name.rsplit(".", 1)[0]

    def prefix(self) -> str:
        return f"{ROOT}{self.server_id}/{self.name}{MARK}"

    def key(self, digest: str) -> str:
        return f"{self.prefix()}{digest[:DIGEST_LEN]}{SUFFIX}"

    @staticmethod
    def of_key(key: str) -> BinlogName:
        folder, _, leaf = key.removeprefix(ROOT).partition("/")
        return BinlogName(int(folder), leaf.split(MARK, 1)[0])


def archived(keys: Iterable[str], server_id: int, *, strict: bool = False) -> dict[str, str]:
    """Binlog name -> key, for one server's folder. ``strict`` (what a restore replays): a name archived
    twice with different content is refused, never one of them picked (see ``wal.only_key``)."""
    from dbrunbook.repository.logs import only_key

    found: dict[str, list[str]] = {}
    for key in keys:
        try:
            name = BinlogName.of_key(key)
        except (ValueError, BackupError):
            continue  # not ours (a stray object): never a reason to fail a listing
        if name.server_id == server_id:
            found.setdefault(name.name, []).append(key)
    if strict:
        return {name: only_key(name, ks) for name, ks in found.items()}
    return {name: sorted(ks)[0] for name, ks in found.items()}


# -- GTIDs ------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Gtid:
    domain: int
    server: int
    seq: int

    def __str__(self) -> str:
        return f"{self.domain}-{self.server}-{self.seq}"

    @staticmethod
    def parse(text: str) -> Gtid:
        m = re.fullmatch(r"\s*(\d+)-(\d+)-(\d+)\s*", text)
        if not m:
            raise RestoreError(f"'{text}' is not a MariaDB GTID (domain-server-sequence, e.g. 0-1-42)")
        return Gtid(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def parse_gtid_state(text: str | None) -> dict[int, Gtid]:
    """'0-1-42,1-2-7' -> the newest GTID of each replication domain."""
    state: dict[int, Gtid] = {}
    for part in (text or "").replace("\n", "").split(","):
        if part.strip():
            g = Gtid.parse(part)
            state[g.domain] = g
    return state


def covers(state: dict[int, Gtid], target: Gtid) -> bool:
    """Is ``target`` at or before ``state`` in its domain (already applied once ``state`` is)?"""
    have = state.get(target.domain)
    return have is not None and have.seq >= target.seq


# -- coordinates a backup tool prints ---------------------------------------------------------------


@dataclass(frozen=True)
class Coordinates:
    file: str
    position: int
    gtid: str = ""

    def as_dict(self) -> dict[str, str | int]:
        return {"file": self.file, "position": self.position, "gtid": self.gtid}


_DUMP_POS = re.compile(
    r"CHANGE (?:MASTER|REPLICATION SOURCE) TO (?:MASTER|SOURCE)_LOG_FILE='([^']+)', (?:MASTER|SOURCE)_LOG_POS=(\d+)"
)
_DUMP_GTID_MARIADB = re.compile(r"SET GLOBAL gtid_slave_pos='([^']*)'")
_DUMP_GTID_MYSQL = re.compile(r"SET @@GLOBAL\.GTID_PURGED=(?:/\*!80000 '\+'\*/ )?'([^']*)'")
DUMP_COMPLETE = "-- Dump completed"


def dump_coordinates(head: str, tail: str) -> Coordinates:
    """The binlog position a ``--single-transaction --master-data=2`` dump was taken at.

    MariaDB prints the file and position near the top and the GTID position at the very end; MySQL 8
    (``--source-data=2 --set-gtid-purged=ON``) prints both near the top.
    """
    m = _DUMP_POS.search(head)
    if not m:
        raise BackupError("the dump does not record its binlog position (is binary logging on?)")
    g = _DUMP_GTID_MARIADB.search(tail) or _DUMP_GTID_MARIADB.search(head) or _DUMP_GTID_MYSQL.search(head)
    return Coordinates(m.group(1), int(m.group(2)), g.group(1) if g else "")


_INFO_POS = re.compile(r"binlog_pos = filename '([^']+)', position '(\d+)'(?:, GTID of the last change '([^']*)')?")


def mariabackup_coordinates(info: str) -> Coordinates | None:
    """From mariabackup's ``xtrabackup_info``: where the copy stands in the binlog (None: binlog off)."""
    m = _INFO_POS.search(info)
    return Coordinates(m.group(1), int(m.group(2)), m.group(3) or "") if m else None


def checkpoint_lsns(text: str) -> dict[str, int]:
    """``xtrabackup_checkpoints``: backup_type, from_lsn, to_lsn, last_lsn (the numbers only)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if value.strip().isdigit():
            out[key.strip()] = int(value.strip())
    return out


# -- the first events of a binlog file --------------------------------------------------------------

MAGIC = b"\xfebin"
_HEADER = struct.Struct("<IBIIIH")  # timestamp, type, server id, event length, next position, flags
GTID_LIST_EVENT = 163
FORMAT_DESCRIPTION_EVENT = 15


@dataclass(frozen=True)
class BinlogStart:
    """What the first events of a binlog file say: when it was opened and which GTIDs came before it."""

    created: datetime
    before: dict[int, Gtid]  # empty when the file has no GTID list (MySQL, or a server without GTIDs)


def binlog_start(head: bytes) -> BinlogStart:
    """Read the format description and MariaDB's GTID list event from the first bytes of a binlog file.

    MariaDB writes the GTID list right after the format description (and before any transaction), so a
    few hundred bytes are enough; recovery uses it to pick the file a GTID target lies in without reading
    the whole archive.
    """
    if not head.startswith(MAGIC):
        raise BackupError("not a binlog file (bad magic number)")
    pos = len(MAGIC)
    created: datetime | None = None
    while pos + _HEADER.size <= len(head):
        stamp, kind, _server, length, _next, _flags = _HEADER.unpack_from(head, pos)
        if length < _HEADER.size:
            raise BackupError(f"binlog event at {pos} has an impossible length {length}")
        if created is None:
            created = datetime.fromtimestamp(stamp, UTC)
        if kind == GTID_LIST_EVENT:
            body = head[pos + _HEADER.size : pos + length]
            (count,) = struct.unpack_from("<I", body)
            count &= 0x0FFFFFFF  # the top four bits are flags
            state: dict[int, Gtid] = {}
            for i in range(count):
                domain, server, seq = struct.unpack_from("<IIQ", body, 4 + 16 * i)
                state[domain] = Gtid(domain, server, seq)
            return BinlogStart(created, state)
        if kind not in (FORMAT_DESCRIPTION_EVENT, 160, 161):  # 160/161: start encryption, binlog checkpoint
            break  # a transaction began: this server writes no GTID list
        pos += length
    if created is None:
        raise BackupError("binlog file too short to hold its format description")
    return BinlogStart(created, {})


# -- recovery targets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayTarget:
    """Where binlog replay stops: the end of the archive, a time, a file position, or a GTID (inclusive)."""

    kind: str  # latest | time | position | gtid
    time: datetime | None = None
    file: str | None = None
    position: int | None = None
    gtid: Gtid | None = None

    @staticmethod
    def from_flags(time: str | None, position: str | None, gtid: str | None) -> ReplayTarget:
        given = [f for f, v in (("time", time), ("position", position), ("gtid", gtid)) if v]
        if len(given) > 1:
            raise RestoreError(f"give one recovery target, not {' and '.join(given)}")
        if time:
            try:
                when = datetime.fromisoformat(time)
            except ValueError:
                raise RestoreError(f"--target-time {time!r} is not an ISO 8601 time") from None
            if when.tzinfo is None:
                raise RestoreError(f"--target-time {time!r} needs a time zone (e.g. +00:00 or Z)")
            return ReplayTarget("time", time=when.astimezone(UTC))
        if position:
            file, _, pos = position.rpartition(":")
            if not file or not pos.isdigit() or not _NAME.match(file):
                raise RestoreError(f"--target-position {position!r} is not FILE:POSITION (mariadb-bin.000042:1234)")
            return ReplayTarget("position", file=file, position=int(pos))
        if gtid:
            return ReplayTarget("gtid", gtid=Gtid.parse(gtid))
        return ReplayTarget("latest")

    def describe(self) -> str:
        if self.kind == "time" and self.time:
            return f"time {self.time.isoformat()} (transactions committed before it)"
        if self.kind == "position":
            return f"position {self.file}:{self.position}"
        if self.kind == "gtid":
            return f"GTID {self.gtid} (included)"
        return "the end of the archived binlogs"


def files_to_replay(start: Coordinates, archive: Sequence[str], target: ReplayTarget) -> list[str]:
    """The archived binlog names a replay reads, in order: from the backup's file to the target's.

    Raises when a file in between is missing, since replaying past a hole silently loses transactions.
    """
    names = sorted(archive, key=number)
    first = number(start.file)
    wanted = [n for n in names if number(n) >= first]
    if target.kind == "position" and target.file:
        last = number(target.file)
        if last < first or (last == first and (target.position or 0) < start.position):
            raise RestoreError(
                f"target {target.file}:{target.position} is before the backup ({start.file}:{start.position})"
            )
        wanted = [n for n in wanted if number(n) <= last]
        if not wanted or number(wanted[-1]) != last:
            raise RestoreError(
                f"binlog {target.file} is not in the repository: run binlog.sync, or pick an earlier target"
            )
    expected = first
    for n in wanted:
        if number(n) != expected:
            missing = f"{n.rsplit('.', 1)[0]}.{expected:06d}"
            raise RestoreError(
                f"binlog {missing} is missing from the repository: recovery from {start.file} cannot pass it",
                hint="binlog.check shows the gap; restore to a target before it, or from a newer backup",
            )
        expected += 1
    if not wanted and target.kind != "latest":
        raise RestoreError(f"no archived binlog from {start.file} on: run binlog.sync first")
    return wanted


@dataclass(frozen=True)
class BinlogGap:
    """Binlogs ``first``..``last`` neither archived nor on the server: no recovery crosses them."""

    first: str
    last: str
    missing: int

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.first, "to": self.last, "missing": self.missing}


@dataclass(frozen=True)
class BinlogArchive:
    """A server's archived binlogs against what it still holds: gaps, and closed files not archived yet."""

    archived: int
    first: str | None  # where the oldest backup's recovery starts
    newest_archived: str | None
    gaps: tuple[BinlogGap, ...]
    not_archived_yet: tuple[str, ...]
    expiry_seconds: float
    at_risk: tuple[str, ...]  # not archived, and the server's expiry will purge them

    def as_dict(self) -> dict[str, Any]:
        return {
            "archived": self.archived,
            "from": self.first,
            "newest_archived": self.newest_archived,
            "gaps": [g.as_dict() for g in self.gaps],
            "not_archived_yet": list(self.not_archived_yet),
            "expiry_seconds": self.expiry_seconds,
            "at_risk": list(self.at_risk),
        }


@dataclass(frozen=True)
class BinlogCheck:
    """``binlog.check`` of one cluster: its primary's server id and that server's archive."""

    cluster: str
    server_id: int
    archive: BinlogArchive

    def as_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "server_id": self.server_id, **self.archive.as_dict()}


def binlog_report(
    archive: Sequence[str], on_server: Sequence[str], oldest_backup_file: str | None, expire_seconds: float
) -> BinlogArchive:
    """Gaps a recovery would hit, from names alone.

    ``archive``: archived binlog names of the server; ``on_server``: what SHOW BINARY LOGS lists (the last
    one is open); ``oldest_backup_file``: where the oldest backup's recovery starts. A file between the
    oldest backup's and the newest one, neither archived nor still on the server, is lost: every backup
    older than it can no longer be recovered past it. Closed files still on the server but not archived
    are at risk once the server's binlog expiry purges them.
    """
    have = {number(n) for n in archive}
    server = {number(n) for n in on_server}
    base = (on_server or archive or [oldest_backup_file or "x.000001"])[0].rsplit(".", 1)[0]
    start = number(oldest_backup_file) if oldest_backup_file else (min(have) if have else None)
    newest = max(have | server) if (have | server) else None
    gaps: list[BinlogGap] = []
    if start is not None and newest is not None:
        run: list[int] = []
        for n in range(start, newest + 1):
            if n in have or n in server:
                if run:
                    gaps.append(_gap(base, run))
                    run = []
            else:
                run.append(n)
        if run:
            gaps.append(_gap(base, run))
    closed = sorted(server)[:-1] if server else []
    pending = [f"{base}.{n:06d}" for n in closed if n not in have]
    return BinlogArchive(
        archived=len(have),
        first=oldest_backup_file,
        newest_archived=f"{base}.{max(have):06d}" if have else None,
        gaps=tuple(gaps),
        not_archived_yet=tuple(pending),
        expiry_seconds=expire_seconds,
        at_risk=tuple(pending) if expire_seconds > 0 else (),
    )


def _gap(base: str, run: list[int]) -> BinlogGap:
    return BinlogGap(f"{base}.{run[0]:06d}", f"{base}.{run[-1]:06d}", len(run))


def expired_binlogs(archive: dict[str, str], keep_from: str | None) -> list[str]:
    """Keys of one server's archived binlogs before ``keep_from`` (the oldest kept backup's start file).
    None keeps everything: with no kept backup of this server, nothing says which binlogs are useless."""
    if keep_from is None or not archive:
        return []
    # Never the newest archived file, whatever keep_from says (one past the end would expire everything).
    limit = min(number(keep_from), max(number(n) for n in archive))
    return sorted(key for name, key in archive.items() if number(name) < limit)
