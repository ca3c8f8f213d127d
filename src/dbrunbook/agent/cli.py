"""``dbrunbook-host``: the host-side entry point, installed on database hosts by ``hosts.setup``.

It must start fast (PostgreSQL calls it once per WAL segment), so it imports only what each subcommand
needs: never invoke or fabric; the inventory's models only to read its host config.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from pathlib import Path

from dbrunbook.agent.common import FETCH_FAILED, NOT_IN_ARCHIVE, Handler, report, report_crash
from dbrunbook.errors import DbrunbookError

__all__ = ["FETCH_FAILED", "NOT_IN_ARCHIVE", "main"]  # the exit codes restore_command maps

MARKER = ".dbrunbook-wheel"


def _installed() -> dict[str, str]:
    from dbrunbook import __version__, build_digest

    marker = Path(sys.prefix) / MARKER
    return {
        "version": __version__,
        "build": build_digest(),
        "python": sys.version.split()[0],
        "prefix": sys.prefix,
        "wheel_sha256": marker.read_text().strip() if marker.exists() else "",
        "distribution": metadata.version("dbrunbook"),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["wal-fetch"]:
        return _main(argv)
    # restore_command: nothing may end with a status PostgreSQL reads as "not in the archive", not even bad
    # arguments (argparse exits 2) or an exception no one expected (Python exits 1).
    try:
        code = _main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else FETCH_FAILED
    except BaseException as exc:
        report_crash(exc)
        return FETCH_FAILED
    return code if code in (0, NOT_IN_ARCHIVE) else FETCH_FAILED


def _parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    parser = argparse.ArgumentParser(prog="dbrunbook-host", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the installed version as JSON")
    from dbrunbook.agent import mariadb, postgresql

    return parser, {**postgresql.register(sub), **mariadb.register(sub)}


def _main(argv: list[str]) -> int:
    from dbrunbook.agent import mariadb

    parser, my_handlers = _parser()
    args = parser.parse_args(argv)
    mariadb.strip_dashes(args)
    if args.command == "version":
        sys.stdout.write(json.dumps(_installed()) + "\n")
        return 0
    handlers: dict[str, Handler] = my_handlers
    try:
        return handlers[args.command](args)
    except DbrunbookError as exc:
        report(exc)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
