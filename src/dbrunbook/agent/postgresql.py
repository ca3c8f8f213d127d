"""``dbrunbook-host`` subcommands for PostgreSQL hosts: WAL push and fetch (archive_command, restore_command),
the data directory streams, and pg_dump/pg_restore with the command lines the controller built."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dbrunbook.agent.common import NOT_IN_ARCHIVE, Handler, open_repository, read_manifest
from dbrunbook.errors import DbrunbookError
from dbrunbook.repository.digest import file_digest


def _wal_push(args: argparse.Namespace) -> int:
    from dbrunbook.agent import walspool

    path = Path(args.path)
    if walspool.already_pushed(args.config, path):
        if args.verbose:
            sys.stderr.write(f"dbrunbook-host: {path.name} already pushed ahead\n")
        return 0
    from concurrent.futures import ThreadPoolExecutor

    from dbrunbook.engines.postgresql import wal

    cfg, storage = open_repository(args.config, patient=False)
    outcome = wal.push(storage, path, cfg.recipients)
    if args.verbose:
        sys.stderr.write(f"dbrunbook-host: {path.name} {outcome}\n")

    def ahead(other: Path) -> None:
        try:
            digest = file_digest(other)
            wal.push(storage, other, cfg.recipients, digest)
        except (OSError, DbrunbookError):
            return  # PostgreSQL asks for it later, and that run reports what is wrong
        walspool.record(args.config, other.name, digest)

    ready = walspool.ready_segments(path, args.ahead)
    if ready:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(ahead, ready))
    walspool.forget_stale(args.config)
    return 0


def _wal_fetch(args: argparse.Namespace) -> int:
    from dbrunbook.engines.postgresql import wal

    # Quiet for a missing file: PostgreSQL asks for files past the end of the archive on purpose. Every other
    # outcome is turned into FETCH_FAILED by main().
    cfg, storage = open_repository(args.config)
    return 0 if wal.fetch(storage, args.name, Path(args.dest), cfg.identities()) else NOT_IN_ARCHIVE


def _backup_push(args: argparse.Namespace) -> int:
    from dbrunbook.engines.postgresql import physical

    parent = None
    if args.parent_lsn:
        from dbrunbook.engines.postgresql.incremental import read_file_list, split_lines
        from dbrunbook.engines.postgresql.lsn import parse_lsn

        files = read_file_list(split_lines(iter(lambda: sys.stdin.buffer.read(1 << 20), b"")))
        parent = physical.Parent(parse_lsn(args.parent_lsn), files)
    from dbrunbook.execution.progress import ProgressWriter

    cfg, storage = open_repository(args.config)
    entries = physical.push_bundles(
        storage,
        Path(args.data_dir),
        args.backup_id,
        cfg.recipients,
        jobs=args.jobs,
        target=args.bundle_mb << 20,
        parent=parent,
        progress=ProgressWriter(sys.stderr),  # the controller shows it (a bar, or a line every 10%)
    )
    sys.stdout.write(json.dumps([e.model_dump() for e in entries]) + "\n")
    return 0


def _restore_files(args: argparse.Namespace) -> int:
    from dbrunbook.engines.postgresql import physical
    from dbrunbook.repository.objects import load

    cfg, storage = open_repository(args.config)
    identities = cfg.identities()
    if len(args.manifest_digest) != len(args.manifest_key):
        from dbrunbook.errors import RestoreError

        raise RestoreError("give one --manifest-digest per --manifest-key")
    chain = [
        read_manifest(storage, k, identities, d) for k, d in zip(args.manifest_key, args.manifest_digest, strict=True)
    ]
    dest = Path(args.dest)
    tablespaces: dict[str, str] = {}
    for m in chain:  # every tablespace any backup of the chain has, where the newest one had it
        if any(o.name == "tablespace_map" for o in m.objects):
            text = b"".join(load(storage, m.object("tablespace_map"), identities)).decode()
            tablespaces.update(physical.parse_tablespace_map(text))
    for mapping in args.tablespace:
        oid, _, location = mapping.partition("=")
        if oid not in tablespaces:
            from dbrunbook.errors import RestoreError

            raise RestoreError(
                f"--tablespace {mapping}: the backup has no tablespace {oid} ({', '.join(tablespaces) or 'none'})"
            )
        tablespaces[oid] = location
    physical.link_tablespaces(dest, tablespaces)
    from dbrunbook.execution.progress import ProgressWriter

    meter = ProgressWriter(sys.stderr, total=sum(physical.data_bytes(m.objects) for m in chain))
    written = 0
    for i, manifest in enumerate(chain):
        if i and manifest.parent != chain[i - 1].backup_id:
            from dbrunbook.errors import RestoreError

            raise RestoreError(f"backup {manifest.backup_id} does not follow {chain[i - 1].backup_id}: broken chain")
        if i:
            links = [f"pg_tblspc/{oid}" for oid in tablespaces]
            written += physical.apply_incremental(
                storage, manifest.objects, dest, identities, jobs=args.jobs, links=links, progress=meter
            )
        else:
            written += physical.unpack_all(storage, manifest.objects, dest, identities, jobs=args.jobs, progress=meter)
    # No tablespace_map: the links made above already say where each tablespace is.
    (dest / "backup_label").write_bytes(b"".join(load(storage, manifest.object("backup_label"), identities)))
    sys.stdout.write(
        json.dumps({"written": written, "backup_id": manifest.backup_id, "tablespaces": tablespaces}) + "\n"
    )
    return 0


def _logical_push(args: argparse.Namespace) -> int:
    from dbrunbook.engines.postgresql import dump_host as logical

    cfg, storage = open_repository(args.config)
    dumps = [(str(d["name"]), [str(a) for a in d["argv"]]) for d in json.loads(args.dumps)]
    entries = logical.push_logical(
        storage, args.backup_id, cfg.recipients, passfile=args.passfile, dumps=dumps, jobs=args.jobs
    )
    sys.stdout.write(json.dumps([e.model_dump() for e in entries]) + "\n")
    return 0


def _logical_restore(args: argparse.Namespace) -> int:
    from dbrunbook.engines.postgresql import dump_host as logical

    cfg, storage = open_repository(args.config)
    identities = cfg.identities()
    manifest = read_manifest(storage, args.manifest_key, identities, args.manifest_digest)
    entry = logical.find_dump(manifest.objects, args.source_database)
    if entry is None:
        from dbrunbook.errors import RestoreError

        raise RestoreError(f"backup {manifest.backup_id} has no dump of database {args.source_database!r}")
    logical.restore_database(storage, entry, identities, passfile=args.passfile, argv=args.argv, database=args.database)
    return 0


def register(sub: Any) -> dict[str, Handler]:
    push = sub.add_parser("wal-push", help="archive one WAL file (archive_command)")
    push.add_argument("--config", required=True)
    push.add_argument("--verbose", action="store_true")
    push.add_argument(
        "--ahead", type=int, default=8, help="also push up to N other segments marked ready (0: only this one)"
    )
    push.add_argument("path")
    fetch = sub.add_parser("wal-fetch", help="restore one WAL file (restore_command)")
    fetch.add_argument("--config", required=True)
    fetch.add_argument("name")
    fetch.add_argument("dest")
    bpush = sub.add_parser("backup-push", help="stream a data directory into the repository")
    bpush.add_argument("--config", required=True)
    bpush.add_argument("--data-dir", required=True)
    bpush.add_argument("--backup-id", required=True)
    bpush.add_argument("--jobs", type=int, default=2)
    bpush.add_argument("--bundle-mb", type=int, default=256)
    bpush.add_argument(
        "--parent-lsn", help="incremental: keep pages changed since this LSN; the parent's file list comes on stdin"
    )
    rfiles = sub.add_parser("restore-files", help="unpack a backup's files into a directory")
    rfiles.add_argument("--config", required=True)
    rfiles.add_argument(
        "--manifest-key", required=True, action="append", help="the chain, full backup first, one per backup"
    )
    rfiles.add_argument("--manifest-digest", action="append", default=[], help="what the controller checked, in order")
    rfiles.add_argument("--dest", required=True)
    rfiles.add_argument("--tablespace", action="append", default=[], help="OID=DIR: restore that tablespace there")
    rfiles.add_argument("--jobs", type=int, default=2)
    for name, helptext in (
        ("logical-push", "pg_dump databases into the repository"),
        ("logical-restore", "pg_restore one dump from the repository"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--config", required=True)
        p.add_argument("--passfile", required=True)
        if name == "logical-push":
            p.add_argument("--backup-id", required=True)
            p.add_argument("--jobs", type=int, default=2)
            p.add_argument("--dumps", required=True, help='JSON: [{"name": OBJECT, "argv": [TOOL, ...]}, ...]')
        else:
            p.add_argument("--manifest-key", required=True)
            p.add_argument("--manifest-digest", required=True)
            p.add_argument("--source-database", required=True)
            p.add_argument("--database", required=True, help="for messages; the target is in the argv")
            p.add_argument("argv", nargs=argparse.REMAINDER, help="-- then pg_restore's command line")
    return {
        "wal-push": _wal_push,
        "wal-fetch": _wal_fetch,
        "backup-push": _backup_push,
        "restore-files": _restore_files,
        "logical-push": _logical_push,
        "logical-restore": _logical_restore,
    }
