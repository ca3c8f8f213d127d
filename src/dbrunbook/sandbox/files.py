"""Write sandbox files as the servers' OS user, through the execution seam."""

from __future__ import annotations

from pathlib import Path

from dbrunbook.execution.command import Command
from dbrunbook.execution.executor import HostExecutor


def write_file(x: HostExecutor, path: Path, content: str, *, private: bool = False) -> None:
    """Write ``content`` (via stdin, so secrets stay out of argv) as the executor's OS user."""
    umask = "077" if private else "022"
    x.run(
        Command(
            ("sh", "-c", f'umask {umask} && cat > "$1"', "sh", str(path)),
            description=f"write {path.name}",
            stdin=content,
        )
    )


def make_dirs(x: HostExecutor, *paths: Path, private: bool = True) -> None:
    mode = "0700" if private else "0755"
    x.run(Command(("mkdir", "-p", "-m", mode, *map(str, paths)), description="make directories"))
