"""``dbrunbook-host`` subcommands for MariaDB/MySQL hosts. The controller builds every tool's argv (after
``--``); these commands only run it and stream its output to or from the repository."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Handler = Callable[[argparse.Namespace], int]


def _storage(config: str) -> tuple[Any, Any]:
    from dbrunbook.agent.common import open_repository

    return open_repository(config)


def _print(doc: Any) -> int:
    sys.stdout.write(json.dumps(doc) + "\n")
    return 0


def _dump_push(args: argparse.Namespace) -> int:
    from dbrunbook.engines.mariadb.host import push_dump

    cfg, storage = _storage(args.config)
    dump = push_dump(storage, args.backup_id, cfg.recipients, args.argv)
    return _print(
        {
            "entry": dump.entry.model_dump(),
            "coordinates": dump.coordinates.as_dict(),
            "row_counts": dump.row_counts,
            "row_counts_problem": dump.problem,
        }
    )


def _physical_push(args: argparse.Namespace) -> int:
    from dbrunbook.engines.mariadb.host import push_physical

    cfg, storage = _storage(args.config)
    copy = push_physical(storage, args.backup_id, cfg.recipients, args.argv, Path(args.lsndir))
    return _print({"entry": copy.entry.model_dump(), "checkpoints": copy.checkpoints, "info": copy.info})


def _binlog_push(args: argparse.Namespace) -> int:
    from dbrunbook.engines.mariadb.host import push_binlogs

    cfg, storage = _storage(args.config)
    directory = Path(args.dir)
    return _print(push_binlogs(storage, args.server_id, [directory / n for n in args.names], cfg.recipients))


def _follow(args: argparse.Namespace) -> int:
    from dbrunbook.engines.mariadb.host import follow

    cfg, storage = _storage(args.config)
    return _print(
        follow(
            storage,
            args.server_id,
            cfg.recipients,
            args.argv,
            Path(args.spool),
            interval=args.interval,
            duration=args.duration or None,
        )
    )


def _manifest(storage: Any, key: str, identities: list[str], digest: str) -> Any:
    from dbrunbook.agent.common import read_manifest

    return read_manifest(storage, key, identities, digest)


def _extract(args: argparse.Namespace) -> int:
    from dbrunbook.engines.mariadb.host import extract

    cfg, storage = _storage(args.config)
    identities = cfg.identities()
    manifest = _manifest(storage, args.manifest_key, identities, args.manifest_digest)
    extract(storage, manifest.object("backup.xbstream"), identities, args.argv)
    return _print({"backup_id": manifest.backup_id})


def _replay(args: argparse.Namespace) -> int:
    from dbrunbook.engines.mariadb.binlog import Coordinates, ReplayTarget
    from dbrunbook.engines.mariadb.host import replay
    from dbrunbook.engines.mariadb.rowcount import checked_tables, uncounted

    cfg, storage = _storage(args.config)
    identities = cfg.identities()
    dump = None
    check_rows = None
    if args.dump_manifest_key:
        manifest = _manifest(storage, args.dump_manifest_key, identities, args.dump_manifest_digest)
        dump = manifest.object("dump.sql")
        if args.check_rows and uncounted(manifest) is None:
            check_rows = checked_tables(manifest.extra["row_counts"])
    file, _, pos = args.start.rpartition(":")
    target = ReplayTarget.from_flags(args.target_time, args.target_position, args.target_gtid)
    done = replay(
        storage,
        identities,
        client_argv=args.argv,
        binlog_argv=[args.binlog_tool],
        dump=dump,
        keys=args.binlog_key,
        start=Coordinates(file, int(pos)),
        target=target,
        check_rows=check_rows,
    )
    return _print(done.as_dict())


def register(sub: Any) -> dict[str, Handler]:
    def tool(p: argparse.ArgumentParser) -> None:
        p.add_argument("argv", nargs=argparse.REMAINDER, help="-- then the tool's command line")

    p = sub.add_parser("my-dump-push", help="stream a mariadb-dump into the repository")
    p.add_argument("--config", required=True)
    p.add_argument("--backup-id", required=True)
    tool(p)
    p = sub.add_parser("my-physical-push", help="stream mariabackup into the repository")
    p.add_argument("--config", required=True)
    p.add_argument("--backup-id", required=True)
    p.add_argument("--lsndir", required=True)
    tool(p)
    p = sub.add_parser("binlog-push", help="archive closed binlog files")
    p.add_argument("--config", required=True)
    p.add_argument("--server-id", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("names", nargs="+")
    p = sub.add_parser("binlog-follow", help="stream binlogs from the server and archive each one it closes")
    p.add_argument("--config", required=True)
    p.add_argument("--server-id", type=int, required=True)
    p.add_argument("--spool", required=True)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=0.0, help="seconds; 0: until SIGTERM or SIGINT")
    tool(p)
    p = sub.add_parser("my-extract", help="stream a physical backup into mbstream -x")
    p.add_argument("--config", required=True)
    p.add_argument("--manifest-key", required=True)
    p.add_argument("--manifest-digest", required=True)
    tool(p)
    p = sub.add_parser("my-replay", help="load a dump and replay archived binlogs into one client session")
    p.add_argument("--config", required=True)
    p.add_argument("--dump-manifest-key")
    p.add_argument("--dump-manifest-digest", default="")
    p.add_argument("--start", required=True, help="FILE:POS the replay starts at")
    p.add_argument("--binlog-key", action="append", default=[])
    p.add_argument("--binlog-tool", required=True)
    p.add_argument("--target-time")
    p.add_argument("--target-position")
    p.add_argument("--target-gtid")
    p.add_argument("--check-rows", action="store_true", help="count every table after the load, before replay")
    tool(p)
    return {
        "my-dump-push": _dump_push,
        "my-physical-push": _physical_push,
        "binlog-push": _binlog_push,
        "binlog-follow": _follow,
        "my-extract": _extract,
        "my-replay": _replay,
    }


def strip_dashes(args: argparse.Namespace) -> None:
    argv = getattr(args, "argv", None)
    if argv and argv[0] == "--":
        args.argv = argv[1:]
