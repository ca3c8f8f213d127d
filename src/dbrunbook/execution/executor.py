"""The one execution seam: every command, file and SQL connection to a host goes through here.

:class:`HostExecutor` holds what all transports share (dry-run, audit, error mapping, secret files);
:class:`LocalExecutor` runs through an invoke ``Context`` and :class:`~dbrunbook.execution.ssh.SshExecutor`
through a fabric ``Connection``. Tasks never call subprocess, invoke or fabric themselves.
"""

from __future__ import annotations

import getpass
import io
import shlex
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbrunbook.errors import CommandFailed
from dbrunbook.execution.audit import AuditLog
from dbrunbook.execution.command import Command, Result
from dbrunbook.execution.hostkeys import OnNewHostKey
from dbrunbook.execution.progress import ProgressCallback, ProgressTap, strip
from dbrunbook.redact import REDACTOR, Secret


@dataclass
class RunSettings:
    """What every executor of one task run shares."""

    audit: AuditLog
    dry_run: bool = False
    plan: list[str] = field(default_factory=list)
    #: where the progress of host streams goes while a task shows it (a bar, or lines), for every command run
    progress: ProgressCallback | None = None

    def planned(self, host: str, text: str) -> None:
        self.plan.append(f"[{host}] {text}")


class HostExecutor(ABC):
    def __init__(self, name: str, settings: RunSettings, *, os_user: str | None = None) -> None:
        self.name = name
        self.settings = settings
        self.os_user = os_user

    # --- the public seam ---------------------------------------------------------------------------

    def run(self, cmd: Command, on_progress: ProgressCallback | None = None) -> Result:
        """Run one program. ``on_progress`` receives the progress events it writes to stderr as they arrive
        (execution/progress.py); they are left out of the result's stderr."""
        line = self.command_line(cmd)
        # What really runs, sudo and all: the plan, the audit log and error messages show this line.
        shown = REDACTOR.redact(line)
        if self.settings.dry_run and cmd.mutating:
            self.settings.planned(self.name, shown)
            self.settings.audit.record(
                host=self.name, kind="command", text=shown, duration=0.0, exit_status=None, dry_run=True
            )
            return Result(command=shown, exit_code=0, stdout="", stderr="", duration=0.0, dry_run=True)
        start = time.monotonic()
        try:
            result = self._run(cmd, line, on_progress or self.settings.progress)
        except Exception as exc:
            self.settings.audit.record(
                host=self.name,
                kind="command",
                text=shown,
                duration=time.monotonic() - start,
                exit_status=f"error: {type(exc).__name__}",
                dry_run=False,
            )
            raise
        self.settings.audit.record(
            host=self.name,
            kind="command",
            text=shown,
            duration=result.duration,
            exit_status=result.exit_code,
            dry_run=False,
        )
        if cmd.check and not result.ok:
            what = cmd.description or cmd.argv[0]
            raise CommandFailed(f"{self.name}: {what} exited {result.exit_code}: {result.tail()}")
        return result

    @contextmanager
    def private_dir(self) -> Iterator[str]:
        """A fresh 0700 directory on the host, owned by the OS user, removed with its contents afterwards."""
        made = self.run(
            Command(
                ("mktemp", "-d", "-t", "dbrunbook.XXXXXXXXXX"),
                description="make a private directory",
                mutating=False,
            )
        )
        directory = made.stdout.strip()
        try:
            yield directory
        finally:
            self.run(Command(("rm", "-rf", directory), description="remove private directory", mutating=False))

    @contextmanager
    def secret_file(self, secret: Secret | str, name: str = "secret") -> Iterator[str]:
        """A 0600 file holding ``secret`` on the host, readable by the OS user, removed afterwards.

        The content travels on the command's stdin, never in its arguments.
        """
        content = secret.reveal() if isinstance(secret, Secret) else secret
        with self.private_dir() as directory:
            path = f"{directory}/{name}"
            self.run(
                Command(
                    ("sh", "-c", 'umask 077 && cat > "$1"', "sh", path),
                    description="write a private file",
                    mutating=False,
                    stdin=content,
                )
            )
            yield path

    def home(self) -> str:
        return self.run(Command(("sh", "-c", 'printf %s "$HOME"'), description="home directory", mutating=False)).stdout

    # --- transport-specific ------------------------------------------------------------------------

    @abstractmethod
    def describe(self) -> str:
        """How this host is reached, for reports (no secrets)."""

    @abstractmethod
    def _runner(self) -> Any:
        """An invoke Context or a fabric Connection: one ``run()`` API for both transports."""

    def _run(self, cmd: Command, line: str, on_progress: ProgressCallback | None = None) -> Result:
        runner = self._runner()
        start = time.monotonic()
        # Without a callback stderr is only captured; with one, it is also streamed through the tap (the
        # runner writes to err_stream only what it does not hide).
        tap = ProgressTap(on_progress) if on_progress is not None else None
        streams: dict[str, Any] = {"hide": "out", "err_stream": tap} if tap is not None else {"hide": True}
        res = runner.run(line, warn=True, pty=False, in_stream=stdin_for(cmd), timeout=cmd.timeout, **streams)
        return Result(
            command=REDACTOR.redact(line),
            exit_code=res.exited,
            stdout=res.stdout,
            stderr=tap.kept() if tap is not None else strip(res.stderr),
            duration=time.monotonic() - start,
        )

    def put(self, local_path: Path, remote_path: str) -> None:
        """Copy a local file to the host as the login user (make it readable for the OS user if needed)."""
        text = f"copy {local_path} to {remote_path}"
        if self.settings.dry_run:
            self.settings.planned(self.name, text)
            self.settings.audit.record(
                host=self.name, kind="put", text=text, duration=0.0, exit_status=None, dry_run=True
            )
            return
        start = time.monotonic()
        status: int | str = 0
        try:
            self._put(local_path, remote_path)
        except Exception as exc:
            status = f"error: {type(exc).__name__}"
            raise
        finally:
            self.settings.audit.record(
                host=self.name,
                kind="put",
                text=text,
                duration=time.monotonic() - start,
                exit_status=status,
                dry_run=False,
            )

    @abstractmethod
    def _put(self, local_path: Path, remote_path: str) -> None: ...

    @abstractmethod
    @contextmanager
    def tunnel(self, address: str, port: int) -> Iterator[tuple[str, int]]:
        """Yield an (address, port) on this machine that reaches ``address:port`` as seen from the host."""

    def connect(self, *, on_new_host_key: OnNewHostKey | None = None) -> None:
        """Open the transport now, so unreachable hosts fail early with a clear error.

        ``on_new_host_key`` is asked about an SSH host key no known_hosts file lists (first contact): it
        returns to have the key recorded and trusted, or raises to refuse. Without it such a key is refused.
        """

    def close(self) -> None:
        """Release the transport."""

    @abstractmethod
    def _login_user(self) -> str: ...

    def command_line(self, cmd: Command) -> str:
        """The shell line this host runs for ``cmd``: wrapped in runuser or sudo when it runs as the OS user.

        The environment and the folder go inside the wrapper: sudo's env_reset drops variables set in front
        of it, and a ``cd`` in front of it would run as the login user, who may not enter the folder."""
        prefix = self.user_prefix(cmd)
        if not prefix:
            return cmd.shell_line()
        return shlex.join((*prefix, *cmd.self_contained_argv()))

    def user_prefix(self, cmd: Command) -> tuple[str, ...]:
        """``runuser``/``sudo`` in front of a command that must run as the OS user, or nothing."""
        if not cmd.as_os_user or not self.os_user or self.os_user == self._login_user():
            return ()
        if self._login_user() == "root":
            return ("runuser", "-u", self.os_user, "--")
        return ("sudo", "-n", "-u", self.os_user, "--")


class LocalExecutor(HostExecutor):
    """Runs on this machine through an invoke Context."""

    def describe(self) -> str:
        return "local" + (f" as {self.os_user}" if self.os_user else "")

    def _login_user(self) -> str:
        return getpass.getuser()

    def _runner(self) -> Any:
        from invoke.context import Context  # lazy: keeps `import dbrunbook` cheap for host-side commands

        return Context()

    def _put(self, local_path: Path, remote_path: str) -> None:
        shutil.copyfile(local_path, remote_path)

    @contextmanager
    def tunnel(self, address: str, port: int) -> Iterator[tuple[str, int]]:
        yield address, port


class ChunkedInput(io.StringIO):
    """Stdin for invoke/fabric runners.

    Their stdin pump reads one character per 10 ms from a non-terminal stream; handing back a whole
    chunk per read makes a 4 KiB input take one pass instead of 40 seconds.
    """

    def read(self, size: int | None = -1) -> str:
        return super().read(65536 if size is not None and size >= 0 else -1)


def stdin_for(cmd: Command) -> ChunkedInput | bool:
    return ChunkedInput(cmd.stdin) if cmd.stdin is not None else False


def redacted(text: str) -> str:
    return REDACTOR.redact(text)
