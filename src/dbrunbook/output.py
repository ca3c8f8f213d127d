"""What tasks print: machine-readable JSON with ``--json``, readable text otherwise; progress only on a TTY.

Everything that leaves the process goes through :data:`~dbrunbook.redact.REDACTOR` first.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from dbrunbook.errors import Aborted, ConfirmationRequired
from dbrunbook.redact import REDACTOR


def is_tty(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


class Output:
    def __init__(self, *, json_mode: bool) -> None:
        self.json_mode = json_mode

    def result(self, data: dict[str, Any], human: Callable[[Any], None] | None = None) -> None:
        """Print a task's result: the JSON document, or the human rendering of it."""
        if self.json_mode or human is None:
            text = json.dumps(data, indent=2, ensure_ascii=False, default=str, sort_keys=False)
            sys.stdout.write(REDACTOR.redact(text) + "\n")
            sys.stdout.flush()
            return
        from rich.console import Console

        console = Console(highlight=False, soft_wrap=True)
        human(console)

    def note(self, message: str) -> None:
        """A human remark on stderr; silent in JSON mode so stdout stays one document."""
        if not self.json_mode:
            sys.stderr.write(REDACTOR.redact(message) + "\n")

    @contextmanager
    def steps(self, title: str) -> Iterator[Callable[[str], None]]:
        """A live status line on a TTY; nothing without one (cron mail stays short, the audit log has it all)."""
        if not is_tty(sys.stderr) or self.json_mode:
            yield lambda _msg: None
            return
        from rich.console import Console

        console = Console(stderr=True)
        with console.status(title) as status:

            def update(msg: str) -> None:
                status.update(f"{title}: {msg}")

            yield update


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
