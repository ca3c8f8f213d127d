"""What tasks print: machine-readable JSON with ``--json``, readable text otherwise; progress only on a TTY.

Verbosity: ``-q`` keeps errors and the final result only, ``-v`` adds each command and SQL statement as the
audit log records it. ``--log-file`` appends timestamped lines of all of it, whatever the verbosity.
Everything that leaves the process goes through :data:`~dbrunbook.redact.REDACTOR` first.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from dbrunbook.errors import Aborted, ConfirmationRequired
from dbrunbook.execution.progress import ProgressCallback, ProgressEvent
from dbrunbook.redact import REDACTOR

QUIET, NORMAL, VERBOSE = -1, 0, 1


class LogFile:
    """``--log-file``: timestamped, redacted lines appended to a 0600 file (cron's record of a run)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.task = ""
        self._lock = threading.Lock()

    def write(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        line = REDACTOR.redact(" ".join(f"{stamp} {self.task or 'dbrunbook'}: {message}".split()))
        with self._lock:
            if self.path.parent != Path():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            # A file that exists already keeps its name but not a wider mode: the lines name hosts and paths.
            if os.fstat(fd).st_mode & 0o077 and os.fstat(fd).st_uid == os.geteuid():
                os.fchmod(fd, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")


def command_line(entry: dict[str, Any]) -> str:
    """One audit entry as ``-v`` shows it: where, what, and how it ended."""
    if entry.get("dry_run"):
        status = "planned (dry run)"
    else:
        status = f"exit {entry.get('exit')} in {entry.get('duration_s', 0)}s"
    what = "SQL: " if entry.get("kind") == "sql" else ""
    return f"[{entry.get('host', '?')}] {what}{entry.get('text', '')} ({status})"


def is_tty(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


class Output:
    def __init__(self, *, json_mode: bool, verbosity: int = NORMAL, log: LogFile | None = None) -> None:
        self.json_mode = json_mode
        self.verbosity = verbosity
        self.log = log

    def result(self, data: dict[str, Any], human: Callable[[Any], None] | None = None) -> None:
        """Print a task's result: the JSON document, or the human rendering of it. ``-q`` keeps it."""
        if self.log is not None:
            self.log.write("result: " + json.dumps(data, ensure_ascii=False, default=str))
        if self.json_mode or human is None:
            text = json.dumps(data, indent=2, ensure_ascii=False, default=str, sort_keys=False)
            sys.stdout.write(REDACTOR.redact(text) + "\n")
            sys.stdout.flush()
            return
        from rich.console import Console

        console = Console(highlight=False, soft_wrap=True)
        human(console)

    def note(self, message: str) -> None:
        """A human remark on stderr; silent in JSON mode so stdout stays one document, and with ``-q``."""
        if self.log is not None:
            self.log.write(message)
        if not self.json_mode and self.verbosity >= NORMAL:
            sys.stderr.write(REDACTOR.redact(message) + "\n")

    def command(self, entry: dict[str, Any]) -> None:
        """An audit entry (a command or statement run or planned): on stderr with ``-v``, always in the log."""
        line = command_line(entry)
        if self.log is not None:
            self.log.write(line)
        if self.verbosity >= VERBOSE:
            sys.stderr.write(REDACTOR.redact(line) + "\n")
            sys.stderr.flush()

    @contextmanager
    def steps(self, title: str) -> Iterator[Callable[[str], None]]:
        """A live status line on a TTY; without one, timestamped lines only with ``-v`` (cron mail stays short,
        the audit log has it all). Every step goes to the log file."""
        log = self.log

        def logged(msg: str) -> None:
            if log is not None:
                log.write(f"{title}: {msg}")

        if self.verbosity < NORMAL or self.json_mode or not is_tty(sys.stderr):
            verbose = self.verbosity >= VERBOSE

            def plain(msg: str) -> None:
                logged(msg)
                if verbose:
                    sys.stderr.write(REDACTOR.redact(f"{time.strftime('%H:%M:%S')} {title}: {msg}") + "\n")

            yield plain
            return
        from rich.console import Console

        console = Console(stderr=True)
        with console.status(title) as status:

            def update(msg: str) -> None:
                logged(msg)
                status.update(f"{title}: {msg}")

            yield update

    @contextmanager
    def progress(self, title: str) -> Iterator[ProgressCallback]:
        """A callback for a stream's progress events: a bar with bytes, rate and ETA on a terminal, else
        :class:`ProgressLines`; nothing with ``-q`` or ``--json``."""
        if self.verbosity < NORMAL or self.json_mode:
            yield lambda _event: None
            return
        if not is_tty(sys.stderr):

            def write(line: str) -> None:
                sys.stderr.write(REDACTOR.redact(line) + "\n")
                sys.stderr.flush()

            yield ProgressLines(title, write)
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
            task_id = bar.add_task(title, total=None)

            def update(event: ProgressEvent) -> None:
                bar.update(task_id, completed=event.done, total=event.total)

            yield update


class ProgressLines:
    """Progress without a terminal: one timestamped line each time another 10% is done, or a minute after the
    last line when the total is unknown or progress is slow (cron mail and journald stay readable)."""

    def __init__(
        self, title: str, write: Callable[[str], None], *, clock: Callable[[], float] = time.time, every: float = 60
    ) -> None:
        self.title = title
        self._write = write
        self._clock = clock
        self._every = every
        self._last_time = clock()
        self._last_tenth = 0

    def __call__(self, event: ProgressEvent) -> None:
        now = self._clock()
        # Tar headers and padding come on top of the planned file bytes: past 100% is still 100%, said once.
        tenth = min(event.done * 10 // event.total, 10) if event.total else None
        if (tenth is not None and tenth > self._last_tenth) or now - self._last_time >= self._every:
            self._last_tenth = tenth if tenth is not None else self._last_tenth
            self._last_time = now
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now))
            pct = min(event.done * 100 // event.total, 100) if event.total else 0
            share = f" of {_mib(event.total)} ({pct}%)" if event.total else ""
            what = f", {event.what}" if event.what else ""
            self._write(f"{stamp} {self.title}: {_mib(event.done)}{share}{what}")


def _mib(count: int) -> str:
    return f"{count / 2**20:.1f} MiB"


def confirm(question: str, *, yes: bool, dry_run: bool = False) -> None:
    """Ask before a destructive step. ``--yes`` skips; with no TTY and no ``--yes``, refuse at once."""
    if yes or dry_run:
        return
    if not (is_tty(sys.stdin) and is_tty(sys.stderr)):
        raise ConfirmationRequired(
            f"refusing to {question} without confirmation", hint="no terminal to ask on; re-run with --yes"
        )
    sys.stderr.write(f"{question}? [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise Aborted("aborted by the operator; nothing was changed")
