"""Finding this test's own processes among everything the machine runs (xdist runs two tests at once, and
inventory.check runs `mariadb-dump --version` any time): a fault test must never kill a neighbour's."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


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


def kill_own(needle: bytes, proc: subprocess.Popen[bytes], *, program: bool = False) -> list[bytes] | None:
    """SIGKILL the first descendant of ``proc`` whose command line holds ``needle`` (with ``program``: whose
    program is it, and which is not just asked for its version). Returns its argv, or None when ``proc``
    ended first."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        for entry in Path("/proc").iterdir():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
            except OSError:
                continue
            if not argv:
                continue
            hit = argv[0].endswith(needle) and b"--version" not in argv if program else needle in b" ".join(argv)
            if hit and descends_from(int(entry.name), proc.pid):
                os.kill(int(entry.name), signal.SIGKILL)
                return argv
        time.sleep(0.005)
    return None
