"""The command-line conventions every task shares (issue 13, "Flags", "Logging", "Environment").

- Invoke's automatic short flags are off: they gave ``-j`` to ``--jobs`` in one task and ``--json`` in
  another, ``-h`` to ``--check-rows`` (so ``-h`` was no longer help) and ``-`` to ``--target-name`` (shown as
  ``--=STRING``). Only :data:`SHORT_FLAGS` exist, and each means the same long flag in every task.
- Every parameter is a flag, none positional: a positional parameter swallowed ``--help`` as its value.
- Invoke's own ``--dry``/``-R``, ``--echo``/``-e`` and ``--warn-only``/``-w`` are refused: dbrunbook runs its
  commands through its own execution seam, so they would not do what they say (``-R`` would not stop
  ``backup.prune`` from deleting).
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

from invoke.tasks import Task

from dbrunbook.output import NORMAL, LogFile

# The documented set (docs/README.md#flags). A task gets the short flag when it has the long one.
SHORT_FLAGS: dict[str, str] = {
    "env": "e",
    "cluster": "c",
    "dry_run": "n",
    "yes": "y",
    "json": "j",
    "verbose": "v",
    "quiet": "q",
}

# Flags every task takes, whatever it does (added by tasks.common.task).
LOGGING_HELP: dict[str, str] = {
    "verbose": "also print each command and SQL statement as it runs (what the audit log records)",
    "quiet": "print only errors and the final result",
    "log_file": "append timestamped lines (start, steps, commands, result or error; redacted) to this file, "
    "created 0600",
}

# Invoke core flag (its name in Program.args) -> why dbrunbook refuses it and what to use instead.
REFUSED_CORE_FLAGS: dict[str, str] = {
    "dry": "-R/--dry is Invoke's own dry run, which dbrunbook's tasks do not go through: it would change "
    "nothing about what runs. Use the task's --dry-run (-n), after the task name",
    "echo": "-e/--echo before the task name is Invoke's echo flag, which dbrunbook does not honour. Give the "
    "environment after the task name ({program} TASK -e ENV); -v prints each command",
    "warn-only": "-w/--warn-only is Invoke's, and dbrunbook never goes on past a failed command",
}

# The same three as Invoke config keys (run.dry, run.echo, run.warn), for runs where no Program of ours
# parsed the command line: `invoke` from the repository's tasks.py, or a config file / INVOKE_RUN_* variable.
REFUSED_RUN_CONFIG: dict[str, str] = {"dry": "dry", "echo": "echo", "warn": "warn-only"}


@dataclass(frozen=True)
class TaskOptions:
    """The logging flags of the task being run; read by TaskRun.start and guarded."""

    verbosity: int = NORMAL
    log: LogFile | None = None


_OPTIONS: contextvars.ContextVar[TaskOptions] = contextvars.ContextVar("dbrunbook_task_options")
_PROGRAM: list[str] = ["invoke"]


def current_options() -> TaskOptions:
    return _OPTIONS.get(TaskOptions())


def set_options(options: TaskOptions) -> contextvars.Token[TaskOptions]:
    return _OPTIONS.set(options)


def reset_options(token: contextvars.Token[TaskOptions]) -> None:
    _OPTIONS.reset(token)


def program_name() -> str:
    """The command the operator typed, for hints: ``dbrunbook`` (the console script), else ``invoke``."""
    return _PROGRAM[0]


def set_program_name(name: str) -> None:
    _PROGRAM[0] = name


class DbrunbookTask(Task[Any]):
    """An Invoke task whose only short flags are :data:`SHORT_FLAGS` (built with ``auto_shortflags=False``)."""

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        opts = super().arg_opts(name, default, taken_names)
        short = SHORT_FLAGS.get(name)
        if short is not None:
            opts["names"] = [*opts["names"], short]
        return opts


def refused_config(run_config: Any) -> str | None:
    """Why this run's Invoke config must be refused (``run.dry``/``echo``/``warn`` set), or None."""
    for key, flag in REFUSED_RUN_CONFIG.items():
        if run_config.get(key):
            return REFUSED_CORE_FLAGS[flag].format(program=program_name())
    return None
