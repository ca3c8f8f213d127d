"""``dbrunbook-host``: the host-side entry point, installed on database hosts by ``hosts.setup``.

It must start fast (PostgreSQL will call it once per WAL segment), so it imports only what each
subcommand needs, and nothing from invoke, fabric or the inventory.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from pathlib import Path

MARKER = ".dbrunbook-wheel"


def _installed() -> dict[str, str]:
    from dbrunbook import __version__

    marker = Path(sys.prefix) / MARKER
    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "prefix": sys.prefix,
        "wheel_sha256": marker.read_text().strip() if marker.exists() else "",
        "distribution": metadata.version("dbrunbook"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dbrunbook-host", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the installed version as JSON")
    args = parser.parse_args(argv)
    if args.command == "version":
        sys.stdout.write(json.dumps(_installed()) + "\n")
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands first


if __name__ == "__main__":
    raise SystemExit(main())
