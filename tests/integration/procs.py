"""Finding this test's own processes among everything the machine runs (xdist runs two tests at once, and
inventory.check runs `mariadb-dump --version` any time): a fault test must never touch a neighbour's."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

Argv = list[bytes]
Proc = subprocess.Popen[bytes] | subprocess.Popen[str]


def descends_from(pid: int, ancestor: int) -> bool:
    """Is ``pid`` a child, grandchild... of ``ancestor``?"""
    for _ in range(20):
        if pid == ancestor:
            return True
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid <= 1:
            return False
    return False


def wait_for_own(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str], match: Callable[[Argv], bool]
) -> list[tuple[int, Argv]]:
    """Every descendant of ``proc`` whose argv ``match`` accepts, as soon as there is one (empty when ``proc``
    ends first or after a minute)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
            except OSError:
                continue
            if argv and match(argv) and descends_from(int(entry.name), proc.pid):
                found.append((int(entry.name), argv))
        if found:
            return found
        time.sleep(0.005)
    return []


def kill_own(needle: bytes, proc: subprocess.Popen[bytes], *, program: bool = False) -> Argv | None:
    """SIGKILL the first descendant of ``proc`` whose command line holds ``needle`` (with ``program``: whose
    program is it, and which is not just asked for its version). Returns its argv, or None when ``proc``
    ended first."""

    def match(argv: Argv) -> bool:
        if program:
            return argv[0].endswith(needle) and b"--version" not in argv
        return needle in b" ".join(argv)

    found = wait_for_own(proc, match)
    if not found:
        return None
    pid, argv = found[0]
    os.kill(pid, signal.SIGKILL)
    return argv
