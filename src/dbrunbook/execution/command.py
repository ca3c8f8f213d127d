"""Commands and SQL statements as plain data.

Everything a task does to a host is first built as a :class:`Command` or :class:`SqlStatement` by a pure
function, so it can be printed in a ``--dry-run`` plan, logged to the audit trail and unit-tested without
a host. Executors only run what they are given.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from dbrunbook.errors import SecretLeakRefused
from dbrunbook.redact import REDACTOR, Secret


def _frozen(mapping: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Command:
    """One program run on a host.

    ``env`` carries non-secret settings only: Fabric inlines it into the remote command line, where any
    user of the host can read it in the process list. Secrets go through :meth:`HostExecutor.secret_file`
    or ``stdin``.
    """

    argv: tuple[str, ...]
    description: str = ""
    mutating: bool = True
    stdin: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    timeout: float | None = None
    check: bool = True
    as_os_user: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "argv", tuple(self.argv))
        object.__setattr__(self, "env", _frozen(self.env))
        for part in (*self.argv, *self.env.values()):
            if REDACTOR.contains_secret(part):
                raise SecretLeakRefused(
                    f"refusing to run '{self.argv[0]}': a secret would appear in its arguments or environment"
                )

    def shell_line(self) -> str:
        """The command as one shell line (what an SSH server executes)."""
        line = shlex.join(self.argv)
        if self.env:
            assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
            line = f"env {assignments} {line}"
        if self.cwd:
            line = f"cd {shlex.quote(self.cwd)} && {line}"
        return line

    def self_contained_argv(self) -> tuple[str, ...]:
        """The command with its environment and folder inside its own arguments, for a wrapper (sudo,
        runuser) to run: ``env K=V prog …``, or ``sh -c 'cd DIR && …'`` when it has a folder."""
        if self.cwd:
            return ("sh", "-c", self.shell_line())
        if self.env:
            return ("env", *(f"{k}={v}" for k, v in sorted(self.env.items())), *self.argv)
        return self.argv

    def display(self) -> str:
        return REDACTOR.redact(self.shell_line())


@dataclass(frozen=True)
class Result:
    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration: float
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def tail(self, lines: int = 3) -> str:
        """The last lines of output, for one-line error messages."""
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return REDACTOR.redact(" | ".join(text[-lines:]))


@dataclass(frozen=True)
class SqlStatement:
    """One SQL statement with driver-side parameters.

    Parameters are sent to the driver separately, so a password given as a parameter never appears in
    the statement text that is logged.
    """

    text: str
    params: tuple[Any, ...] = ()
    description: str = ""
    mutating: bool = True
    database: str | None = None

    def driver_params(self) -> tuple[Any, ...]:
        return tuple(p.reveal() if isinstance(p, Secret) else p for p in self.params)

    def display(self) -> str:
        text = " ".join(self.text.split())
        if self.params:
            shown = ", ".join("***" if isinstance(p, Secret) else repr(p) for p in self.params)
            text = f"{text}  -- params: {shown}"
        return REDACTOR.redact(text)
