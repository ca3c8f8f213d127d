"""Host side of MariaDB/MySQL backups and recovery: dumps, mariabackup streams, binlog push and replay.

Every path streams through the same object pipeline as PostgreSQL (:mod:`dbrunbook.repository.objects`).
A tool's exit status is checked once its output has been consumed, so a dump that dies half-way never
becomes an object a manifest lists.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dbrunbook.engines.mariadb.binlog import (
    DUMP_COMPLETE,
    BinlogName,
    BinlogStart,
    Coordinates,
    ReplayTarget,
    binlog_start,
    covers,
    dump_coordinates,
)
from dbrunbook.engines.mariadb.binlog import number as binlog_number
from dbrunbook.engines.mariadb.rowcount import MARK, DumpRowCounter, compare, count_sql, parse_counts
from dbrunbook.engines.postgresql.dump_host import _stream
from dbrunbook.engines.restore_result import RowCounts
from dbrunbook.errors import BackupError, ObjectCorruptError, RestoreError
from dbrunbook.repository import logs as wal
from dbrunbook.repository.logs import digest_of
from dbrunbook.repository.manifest import ObjectEntry, object_key
from dbrunbook.repository.objects import load, load_key, store
from dbrunbook.repository.storage import Storage

EDGE = 1 << 16  # bytes of a dump's head and tail kept to read its coordinates


class HeadTail:
    """Passes chunks through, keeping the first and last EDGE bytes (bounded, whatever the size)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self.head = b""
        self.tail = b""

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if len(self.head) < EDGE:
                self.head += chunk[: EDGE - len(self.head)]
            self.tail = (self.tail + chunk)[-EDGE:] if len(chunk) < EDGE else chunk[-EDGE:]
            yield chunk


@dataclass(frozen=True)
class Dump:
    entry: ObjectEntry
    coordinates: Coordinates
    row_counts: dict[str, dict[str, int]] | None
    problem: str


def push_dump(storage: Storage, backup_id: str, recipients: Sequence[str], argv: Sequence[str]) -> Dump:
    """Stream one ``mariadb-dump`` of the whole server into ``dump.sql``, with its binlog coordinates and
    the per-table row counts read from the stream on the way."""
    counter = DumpRowCounter()
    tap = HeadTail(counter.wrap(_stream(argv, dict(os.environ), "mariadb-dump")))
    entry = store(storage, "dump.sql", object_key(backup_id, "dump.sql"), tap, recipients, pipelined=True)
    tail = tap.tail.decode(errors="replace")
    if DUMP_COMPLETE not in tail:
        raise BackupError("mariadb-dump ended without its completion line: the dump is truncated")
    counts = counter.finish()
    return Dump(entry, dump_coordinates(tap.head.decode(errors="replace"), tail), counts, counter.problem)


@dataclass(frozen=True)
class PhysicalCopy:
    entry: ObjectEntry
    checkpoints: str
    info: str


def push_physical(
    storage: Storage, backup_id: str, recipients: Sequence[str], argv: Sequence[str], lsndir: Path
) -> PhysicalCopy:
    """Stream ``mariabackup --backup --stream=xbstream`` into ``backup.xbstream``.

    ``--extra-lsndir`` leaves the two small text files the manifest needs (checkpoints and binlog
    position) outside the stream, so nothing has to read the stream back.
    """
    name = "backup.xbstream"
    stream = _stream(argv, dict(os.environ), "mariabackup")
    entry = store(storage, name, object_key(backup_id, name), stream, recipients, pipelined=True)
    try:
        checkpoints = (lsndir / "xtrabackup_checkpoints").read_text()
        info = (lsndir / "xtrabackup_info").read_text()
    except OSError as exc:
        raise BackupError(f"mariabackup left no {Path(exc.filename or '').name} in {lsndir}") from None
    return PhysicalCopy(entry, checkpoints, info)


def push_binlogs(storage: Storage, server_id: int, paths: Sequence[Path], recipients: Sequence[str]) -> dict[str, str]:
    """Archive closed binlog files, each exactly once (the WAL rules: digest in the key, never overwritten)."""
    return {p.name: wal.push(storage, p, recipients, naming=BinlogName(server_id, p.name)) for p in paths}


# -- restore ----------------------------------------------------------------------------------------


def extract(storage: Storage, entry: ObjectEntry, identities: Sequence[str], argv: Sequence[str]) -> None:
    """Feed one stored object into a program's stdin (``mbstream -x``); fail with the object's name."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    errors = _Drain(proc.stderr)
    try:
        _feed(proc, load(storage, entry, identities, pipelined=True))
    finally:
        code = proc.wait()
        errors.join()
    if code:
        raise RestoreError(f"{Path(argv[0]).name} failed (exit {code}): {errors.last_line()}")


def _feed(proc: subprocess.Popen[bytes], chunks: Iterator[bytes]) -> None:
    assert proc.stdin is not None
    try:
        for chunk in chunks:
            proc.stdin.write(chunk)
    except BrokenPipeError:
        pass  # the program gave up; its exit status and message say why
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()


class _Drain(threading.Thread):
    """Reads a pipe to its end so the writer never blocks on it. Keeps the last lines, or with ``mark``
    every line that starts with it (the caller's own tagged answers, bounded by what it asked)."""

    def __init__(self, pipe: IO[bytes] | None, mark: str | None = None) -> None:
        super().__init__(daemon=True)
        self._pipe = pipe
        self._mark = mark.encode() if mark else None
        self.lines: list[str] = []
        self.start()

    def run(self) -> None:
        if self._pipe is None:
            return
        for raw in self._pipe:
            if self._mark is None:
                self.lines = [*self.lines, raw.decode(errors="replace").rstrip()][-20:]
            elif raw.startswith(self._mark):
                self.lines.append(raw.decode(errors="replace"))

    def last_line(self) -> str:
        useful = [x for x in self.lines if x.strip()]
        return useful[-1] if useful else "no message"


@dataclass(slots=True)
class Replay:
    """What a replay did, for the restore report: filled in as the replay goes, printed by the agent and read
    back by the controller (:meth:`from_json`)."""

    files: list[str] = field(default_factory=list)  # the archived binlogs read, in order
    stopped_in: str | None = None  # the binlog the target lies in (None: the archive's end)
    reason: str = ""
    row_counts: RowCounts | None = None  # the loaded dump's tables counted before the replay (--check-rows)

    def as_dict(self) -> dict[str, Any]:
        out = {"binlogs_replayed": self.files, "stopped_in": self.stopped_in, "stop_reason": self.reason}
        return out if self.row_counts is None else {**out, "row_counts": self.row_counts.as_dict()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Replay:
        """The agent's report, as :meth:`as_dict` printed it."""
        counted = data.get("row_counts")
        return cls(
            [str(f) for f in data["binlogs_replayed"]],
            None if data["stopped_in"] is None else str(data["stopped_in"]),
            str(data["stop_reason"]),
            None if counted is None else RowCounts.from_json(counted),
        )


def binlog_args(
    start: Coordinates | None, target: ReplayTarget, name: str, nxt: BinlogStart | None
) -> tuple[list[str], bool]:
    """mariadb-binlog options for one file of a replay, and whether it is the last file to read.

    ``start`` is given for the first file only. ``nxt`` is the start of the following archived file: a
    GTID target lies in this file when the next one already counts it, a time target ends here when the
    next file was opened at or after it (what one mariadb-binlog over all files would do).
    """
    args: list[str] = []
    if start is not None:
        args.append(f"--start-position={start.position}")
    if target.kind == "position":
        if name == target.file:
            return [*args, f"--stop-position={target.position}"], True
        return args, False
    if target.kind == "time" and target.time is not None:
        args.append(f"--stop-datetime={target.time:%Y-%m-%d %H:%M:%S}")
        return args, nxt is None or nxt.created >= target.time
    if target.kind == "gtid" and target.gtid is not None:
        if nxt is None or covers(nxt.before, target.gtid):
            return [*args, f"--stop-position={target.gtid}"], True
        return args, False
    return args, False


class _Peek:
    """One archived binlog, decrypting lazily; the first bytes are read early to parse its start."""

    def __init__(self, storage: Storage, key: str, identities: Sequence[str]) -> None:
        self.key = key
        self.name = BinlogName.of_key(key).name
        self._digest = digest_of(key)  # refuses a key without a proper digest
        self._chunks = load_key(storage, key, identities, expect_plain=None)
        self._first: list[bytes] = []
        head = b""
        for chunk in self._chunks:
            self._first.append(chunk)
            head += chunk
            if len(head) >= 4096:
                break
        self.start = binlog_start(head)

    def chunks(self) -> Iterator[bytes]:
        """The plaintext, checked against the digest in the key name at its end (as wal-fetch does): the
        bytes stream into the client as they come, so a mismatch fails the restore before the next file."""
        h = hashlib.sha256()
        for chunk in (*self._first, *self._chunks):
            h.update(chunk)
            yield chunk
        if not h.hexdigest().startswith(self._digest):
            raise ObjectCorruptError(f"object {self.key}: content does not match the digest in its name")

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close:
            close()


def replay(
    storage: Storage,
    identities: Sequence[str],
    *,
    client_argv: Sequence[str],
    binlog_argv: Sequence[str],
    dump: ObjectEntry | None,
    keys: Sequence[str],
    start: Coordinates,
    target: ReplayTarget,
    check_rows: list[tuple[str, str, int]] | None = None,
) -> Replay:
    """Load a dump (logical restores) and replay archived binlogs into ONE client session.

    One session end to end, so a temporary table created in one binlog and used in the next survives.
    Each binlog is decoded by its own mariadb-binlog reading stdin, whose output goes straight into the
    client's stdin; Python copies only the encrypted side. With ``check_rows`` (the backup's own counts),
    every table is counted in that session between the load and the first binlog: the only moment the
    restored data stands exactly at the backup's snapshot.
    """
    client = subprocess.Popen(
        client_argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE if check_rows is not None else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    assert client.stdin is not None
    errors = _Drain(client.stderr)
    answers = _Drain(client.stdout, MARK) if check_rows is not None else None
    done = Replay()
    try:
        if dump is not None:
            client.stdin.write(b"SET SESSION sql_log_bin = 0;\n")
            for chunk in load(storage, dump, identities, pipelined=True):
                client.stdin.write(chunk)
            # The dump replaced the privilege tables; binlogged again from here so the server's GTID
            # position says where the replay got to.
            client.stdin.write(b"\nFLUSH PRIVILEGES;\n")
            if check_rows is not None:
                client.stdin.write(count_sql(check_rows))
            client.stdin.write(b"SET SESSION sql_log_bin = 1;\n")
        _replay_binlogs(storage, identities, client, binlog_argv, keys, start, target, done)
    except BrokenPipeError:
        pass  # the client stopped on an error; its message is below
    finally:
        with contextlib.suppress(BrokenPipeError):
            client.stdin.close()
        code = client.wait()
        errors.join()
        if answers is not None:
            answers.join()
    if code:
        where = f" while replaying {done.files[-1]}" if done.files else " while loading the dump"
        raise RestoreError(f"the mariadb client failed{where}: {errors.last_line()}")
    if answers is not None:
        assert check_rows is not None
        done.row_counts = compare(check_rows, *parse_counts(answers.lines))
    return done


def _replay_binlogs(
    storage: Storage,
    identities: Sequence[str],
    client: subprocess.Popen[bytes],
    binlog_argv: Sequence[str],
    keys: Sequence[str],
    start: Coordinates,
    target: ReplayTarget,
    done: Replay,
) -> None:
    if not keys:
        return
    current = _Peek(storage, keys[0], identities)
    if target.kind == "gtid" and target.gtid is not None and covers(current.start.before, target.gtid):
        raise RestoreError(f"GTID {target.gtid} was committed before the backup's binlog {current.name}")
    env = {**os.environ, "TZ": "UTC"}  # --stop-datetime is read in the local time zone
    for i in range(len(keys)):
        nxt = _Peek(storage, keys[i + 1], identities) if i + 1 < len(keys) else None
        args, last = binlog_args(start if i == 0 else None, target, current.name, nxt.start if nxt else None)
        proc = subprocess.Popen(
            [*binlog_argv, *args, "-"], stdin=subprocess.PIPE, stdout=client.stdin, stderr=subprocess.PIPE, env=env
        )
        errors = _Drain(proc.stderr)
        _feed(proc, current.chunks())
        code = proc.wait()
        errors.join()
        done.files.append(current.name)
        if code:
            if target.kind == "gtid" and nxt is None:
                raise RestoreError(
                    f"GTID {target.gtid} is not in the archived binlogs (the newest is {current.name})",
                    hint="run binlog.sync to archive the newest binlogs, or pick an earlier GTID",
                )
            raise RestoreError(f"mariadb-binlog failed on {current.name} (exit {code}): {errors.last_line()}")
        if last:
            done.stopped_in = current.name
            done.reason = target.describe()
            if nxt is not None:
                nxt.close()
            return
        assert nxt is not None or i + 1 == len(keys)
        if nxt is not None:
            current = nxt
    done.reason = "end of the archived binlogs"


def follow(
    storage: Storage,
    server_id: int,
    recipients: Sequence[str],
    argv: Sequence[str],
    spool: Path,
    *,
    interval: float,
    duration: float | None,
) -> dict[str, Any]:
    """Stream the server's binlogs as a replica would (``mariadb-binlog --read-from-remote-server --raw
    --stop-never``) into ``spool``, and archive each file as soon as the next one appears (it is then
    complete). Runs until ``duration`` ends or SIGTERM/SIGINT; the file still growing stays in the spool
    and is fetched again by the next run."""
    import signal
    import time

    spool.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in spool.iterdir():
        stale.unlink()  # a partial file of an earlier run: the stream starts it again
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    errors = _Drain(proc.stderr)
    stop = {"now": False}

    def ask_stop(_sig: int, _frame: object) -> None:
        stop["now"] = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, ask_stop)
    archived: list[str] = []
    deadline = time.monotonic() + duration if duration else None

    def push_complete() -> None:
        archived.extend(_push_complete(storage, server_id, recipients, spool))

    try:
        while not stop["now"] and proc.poll() is None and (deadline is None or time.monotonic() < deadline):
            left = interval if deadline is None else deadline - time.monotonic()
            time.sleep(max(0.05, min(interval, left)))
            push_complete()
    finally:
        _end_stream(proc)
        errors.join(5)
        push_complete()
    code = proc.returncode
    ended_on_its_own = code not in (0, -signal.SIGTERM) and not stop["now"]
    if ended_on_its_own and not (deadline and time.monotonic() >= deadline):
        raise BackupError(f"the binlog stream ended (exit {code}): {errors.last_line()}")
    partial = sorted(p.name for p in spool.iterdir())
    return {"archived": archived, "streaming": partial[-1] if partial else None}


def _push_complete(storage: Storage, server_id: int, recipients: Sequence[str], spool: Path) -> list[str]:
    """Archive every spooled binlog but the newest (still growing); returns the names newly archived."""
    archived: list[str] = []
    files = sorted((p for p in spool.iterdir() if binlog_number(p.name) >= 0), key=lambda p: binlog_number(p.name))
    for path in files[:-1]:
        outcome = wal.push(storage, path, recipients, naming=BinlogName(server_id, path.name))
        if outcome == "archived":
            archived.append(path.name)
        path.unlink()
    return archived


def _end_stream(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
