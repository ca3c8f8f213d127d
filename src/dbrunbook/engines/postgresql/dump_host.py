"""Host side of a PostgreSQL logical backup: pg_dump of each database streamed through the object pipeline.

Custom format (-Fc) to stdout, not directory format: a directory dump cannot stream, it needs a full
temporary copy on the host, which the repository rules forbid. Databases are dumped in parallel instead.
pg_dump's exit status is checked after its output has been consumed, so a dump that fails half-way never
counts as an object (the failure mode a shell pipe into a compressor hides).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from dbrunbook.errors import BackupError, RestoreError
from dbrunbook.repository.manifest import ObjectEntry, object_key
from dbrunbook.repository.objects import load, store
from dbrunbook.repository.storage import Storage
from dbrunbook.repository.streams import prefetch

READ = 1 << 20
F_SETPIPE_SZ = 1031  # Linux fcntl: resize a pipe's buffer


def _stream(argv: Sequence[str], env: dict[str, str], what: str) -> Iterator[bytes]:
    """A tool's stdout as chunks, read ahead in a thread so the tool never waits for the pipeline."""
    return prefetch(_read(argv, env, what))


def _read(argv: Sequence[str], env: dict[str, str], what: str) -> Iterator[bytes]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    with contextlib.suppress(OSError):
        fcntl.fcntl(proc.stdout.fileno(), F_SETPIPE_SZ, READ)  # fewer, larger reads and wake-ups
    errors = threading.Thread(target=lambda: stderr.append(proc.stderr.read() if proc.stderr else b""))
    stderr: list[bytes] = []
    errors.start()
    try:
        while chunk := proc.stdout.read(READ):
            yield chunk
    finally:
        proc.stdout.close()
        if proc.poll() is None and sys.exc_info()[0] is not None:
            proc.kill()  # the consumer failed: the tool's output has nowhere to go
        code = proc.wait()
        errors.join()
    err = b"".join(stderr).decode(errors="replace").strip()
    if code:
        raise BackupError(f"{what} failed (exit {code}): {err.splitlines()[-1] if err else 'no message'}")


_KEY_UNSAFE = re.compile(r"[%/\\\x00-\x1f\x7f]")


def dump_name(database: str) -> str:
    """The object name of one database's dump, ``db/<database>.dump``. The characters an object key cannot
    hold (``/``, ``\\``, control characters) and ``%`` itself are percent-encoded, so any database name has
    a dump and no name reaches outside ``db/``."""
    return "db/" + _KEY_UNSAFE.sub(lambda m: f"%{ord(m.group()):02X}", database) + ".dump"


def find_dump(objects: Sequence[ObjectEntry], database: str) -> ObjectEntry | None:
    """The dump of ``database`` among a logical backup's objects."""
    # Backups taken before names were encoded stored a name with "%" as it was.
    wanted = (dump_name(database), f"db/{database}.dump")
    return next((o for name in wanted for o in objects if o.name == name), None)


def conninfo_dbname(name: str) -> str:
    """A database name as the PostgreSQL client tools' ``-d`` must get it. Given alone, a name with an
    ``=`` or a ``postgresql://`` prefix is read as a connection string: a database called
    ``dbname=postgres host=db2`` would dump another database, or another server's. In libpq's conninfo
    syntax it is one value: single-quoted, with ``\\`` and ``'`` escaped by a backslash."""
    return "dbname='" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def dump_argv(bindir: str, tool: str, port: int, user: str, *extra: str) -> list[str]:
    return [
        os.path.join(bindir, tool) if bindir else tool,
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-U",
        user,
        "-w",
        *extra,
    ]


def push_logical(
    storage: Storage,
    backup_id: str,
    recipients: Sequence[str],
    *,
    passfile: str,
    dumps: Sequence[tuple[str, Sequence[str]]],
    jobs: int = 2,
) -> list[ObjectEntry]:
    """Run each ``(object name, tool argv)`` the controller built (see :func:`dump_plan`), ``jobs`` at a time, and
    store each tool's output as that object; the entries come back in the plan's order."""
    env = {**os.environ, "PGPASSFILE": passfile}

    def one(item: tuple[str, Sequence[str]]) -> ObjectEntry | None:
        name, argv = item
        what = f"{os.path.basename(argv[0])} of {name}"
        try:
            return store(storage, name, object_key(backup_id, name), _stream(argv, env, what), recipients)
        except BackupError as exc:
            # Dropped between the listing and its turn: nothing left to back up, and no reason to lose the
            # other databases' dumps. The controller leaves it out of the manifest and says so.
            if name != "globals.sql" and _GONE.search(exc.message):
                sys.stderr.write(f"dbrunbook-host: {name}: the database was dropped during the backup, skipped\n")
                return None
            raise

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return [e for e in pool.map(one, dumps) if e is not None]


_GONE = re.compile(r'FATAL: +database ".*" does not exist$')


def dump_plan(bindir: str, port: int, user: str, databases: Sequence[str]) -> list[tuple[str, list[str]]]:
    """What a logical backup runs on the host: the globals (roles, tablespaces), then one custom-format,
    uncompressed (the pipeline compresses) pg_dump per database. Built on the controller, so that the audit
    log shows every tool's command line."""
    plan = [("globals.sql", dump_argv(bindir, "pg_dumpall", port, user, "--globals-only"))]
    for db in databases:
        plan.append(
            (dump_name(db), dump_argv(bindir, "pg_dump", port, user, "-Fc", "-Z", "0", "-d", conninfo_dbname(db)))
        )
    return plan


def restore_argv(bindir: str, port: int, user: str, database: str) -> list[str]:
    """pg_restore of one dump, read from stdin, into an existing, empty database."""
    return dump_argv(bindir, "pg_restore", port, user, "--no-owner", "--exit-on-error", "-d", conninfo_dbname(database))


def restore_database(
    storage: Storage,
    entry: ObjectEntry,
    identities: Sequence[str],
    *,
    passfile: str,
    argv: Sequence[str],
    database: str,
) -> None:
    """Stream one dump into pg_restore's stdin (``argv``: :func:`restore_argv`, built on the controller)."""
    env = {**os.environ, "PGPASSFILE": passfile}
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdin is not None and proc.stderr is not None
    try:
        for chunk in load(storage, entry, identities):
            proc.stdin.write(chunk)
    except BrokenPipeError:
        pass  # pg_restore gave up; its own message says why
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
    err = proc.stderr.read().decode(errors="replace").strip()
    if proc.wait():
        raise RestoreError(f"pg_restore into {database} failed: {err.splitlines()[-1] if err else 'no message'}")
