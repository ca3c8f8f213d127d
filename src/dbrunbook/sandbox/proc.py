"""Small process helpers for the sandbox's servers: start detached, wait for a port, stop with patience."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from dbrunbook.errors import PortBusyError, SandboxError
from dbrunbook.execution.command import Command
from dbrunbook.execution.executor import HostExecutor
from dbrunbook.execution.poll import Clock, wait_until

Sleep = Callable[[float], None]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def ensure_port_free(port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise PortBusyError(
                f"port {port} for {what} is already in use by another program",
                hint="stop it, or shift every sandbox port with DBRUNBOOK_SANDBOX_PORT_OFFSET=100",
            ) from None


def wait_for(
    check: Callable[[], bool],
    what: str,
    timeout: float,
    *,
    sleep: Sleep = time.sleep,
    log: Path | None = None,
) -> None:
    if wait_until(check, timeout=timeout, interval=0.2, clock=Clock(sleep=sleep)):
        return
    tail = ""
    if log is not None and log.exists():
        lines = log.read_text(errors="replace").strip().splitlines()[-2:]
        tail = ": " + " | ".join(lines)
    raise SandboxError(f"{what} did not come up within {timeout:g}s{tail}")


def start_detached(x: HostExecutor, argv: tuple[str, ...], log: Path, description: str) -> None:
    """Start a server that does not daemonize itself, detached from our session and pipes."""
    script = 'log=$1; shift; setsid "$@" </dev/null >>"$log" 2>&1 &'
    x.run(Command(("sh", "-c", script, "sh", str(log), *argv), description=description))


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int | None, needle: str) -> bool:
    """True when ``pid`` runs and its command line mentions ``needle`` (guards against pid reuse)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return needle in cmdline


def find_pids(needle: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and pid_alive(int(entry.name), needle) and int(entry.name) != os.getpid():
            pids.append(int(entry.name))
    return pids


def stop_pid(
    x: HostExecutor, pid: int, needle: str, what: str, *, grace: float = 20.0, sleep: Sleep = time.sleep
) -> None:
    """SIGTERM, wait, then SIGKILL: some servers (weed) ignore SIGTERM for a long while."""
    if not pid_alive(pid, needle):
        return
    x.run(Command(("kill", f"-{signal.SIGTERM.value}", str(pid)), description=f"stop {what}", check=False))
    if x.settings.dry_run:
        return  # nothing was sent, so nothing will exit
    deadline = time.monotonic() + grace
    while pid_alive(pid, needle) and time.monotonic() < deadline:
        sleep(0.2)
    if pid_alive(pid, needle):
        x.run(Command(("kill", "-9", str(pid)), description=f"kill {what}", check=False))
        while pid_alive(pid, needle):
            sleep(0.1)
