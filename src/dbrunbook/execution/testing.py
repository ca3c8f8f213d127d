"""Fakes of the execution seam for functional tests: orchestrators run unchanged, in milliseconds.

- :class:`FakeExecutor` is a :class:`HostExecutor` that answers each command from rules (a regular
  expression over the command's argv, joined as a shell line, and a canned :class:`Reply` or a callable
  that builds one) and records what ran. Dry-run, audit and error mapping are the base class's own, so a
  fake host behaves like a real one everywhere but in what the programs print.
- :class:`FakeDatabase` answers SQL by statement pattern through DB-API connections, for the sessions an
  engine opens (:class:`FakeConnect` plugs it into an engine driver).

A command or statement that no rule answers raises :class:`Unanswered`, which is deliberately not a
``DbrunbookError``: no orchestrator may swallow it as a host failure, and the test stops with the argv.
Recordings keep the argv, whether stdin was given and the names of environment variables, never stdin's
content, environment values or SQL parameters: they may hold secrets.

This lives in ``src/`` so every feature's tests (backup, drills, and the wave-2 migrations, replicas and
runbooks) reuse one fake instead of each growing its own.
"""

from __future__ import annotations

import re
import shlex
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbrunbook.errors import DbrunbookError
from dbrunbook.execution.command import Command, Result
from dbrunbook.execution.executor import HostExecutor, RunSettings
from dbrunbook.execution.hostkeys import OnNewHostKey
from dbrunbook.execution.progress import ProgressCallback
from dbrunbook.redact import REDACTOR


class Unanswered(AssertionError):
    """The code under test ran a command or statement that the test did not expect."""


@dataclass(frozen=True)
class Reply:
    """What a fake program does: its output and exit status, or an error the transport raises instead."""

    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0
    raises: DbrunbookError | None = None


Answer = Reply | Callable[[Command], Reply]


@dataclass(frozen=True)
class Ran:
    """One command as the fake host saw it. ``planned``: a dry run listed it instead of running it."""

    argv: tuple[str, ...]
    line: str
    description: str
    mutating: bool
    stdin: bool
    env_names: tuple[str, ...]
    cwd: str | None
    planned: bool

    def shell(self) -> str:
        return shlex.join(self.argv)


@dataclass
class _Rule:
    pattern: re.Pattern[str]
    answer: Answer
    times: int | None  # None: any number of times
    used: int = 0


class FakeExecutor(HostExecutor):
    """A host that exists only in the test. The newest matching rule answers, so a test can override a
    general rule (every ``mktemp``) with a particular one afterwards.

    ``unreachable``: every use of the host raises this error (what :class:`SshExecutor` raises for a host
    that does not answer), so fleet runs and reports can be tested against a dead host."""

    def __init__(
        self,
        name: str,
        settings: RunSettings,
        *,
        os_user: str | None = None,
        login_user: str = "dbrunbook",
        unreachable: DbrunbookError | None = None,
    ) -> None:
        super().__init__(name, settings, os_user=os_user)
        self.login_user = login_user
        self.unreachable = unreachable
        self.ran: list[Ran] = []
        self.copied: list[tuple[Path, str]] = []
        self.unanswered: list[str] = []
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()  # fleet runs share nothing, but one host may serve several threads

    # --- rules and what ran ------------------------------------------------------------------------

    def on(self, pattern: str, answer: Answer | None = None, *, times: int | None = None) -> FakeExecutor:
        """Answer commands whose argv (as one shell line) ``re.search``-es ``pattern``; default: exit 0."""
        self._rules.append(_Rule(re.compile(pattern), answer if answer is not None else Reply(), times))
        return self

    def lines(self, *, planned: bool | None = None) -> list[str]:
        """The argv of every command that reached the host (or, in a dry run, its plan), as shell lines."""
        return [r.shell() for r in self.ran if planned is None or r.planned == planned]

    def find(self, pattern: str) -> list[Ran]:
        rx = re.compile(pattern)
        return [r for r in self.ran if rx.search(r.shell())]

    # --- the seam ----------------------------------------------------------------------------------

    def run(self, cmd: Command, on_progress: ProgressCallback | None = None) -> Result:
        with self._lock:
            self.ran.append(
                Ran(
                    argv=cmd.argv,
                    line=REDACTOR.redact(self.command_line(cmd)),
                    description=cmd.description,
                    mutating=cmd.mutating,
                    stdin=cmd.stdin is not None,
                    env_names=tuple(sorted(cmd.env)),
                    cwd=cmd.cwd,
                    planned=self.settings.dry_run and cmd.mutating,
                )
            )
        return super().run(cmd, on_progress)

    def _run(self, cmd: Command, line: str, on_progress: ProgressCallback | None = None) -> Result:
        # Here, not in run(): like SSH, a dead host fails what it would really run (and the audit says so),
        # while a dry run's planned commands never reach it.
        self._check_reachable()
        reply = self._answer(cmd)
        if reply.raises is not None:
            raise reply.raises
        return Result(
            command=REDACTOR.redact(line),
            exit_code=reply.exit_code,
            stdout=reply.stdout,
            stderr=reply.stderr,
            duration=0,
        )

    def _answer(self, cmd: Command) -> Reply:
        text = shlex.join(cmd.argv)
        with self._lock:
            for rule in reversed(self._rules):
                if (rule.times is None or rule.used < rule.times) and rule.pattern.search(text):
                    rule.used += 1
                    answer = rule.answer
                    break
            else:
                self.unanswered.append(text)
                raise Unanswered(f"{self.name}: no rule answers {REDACTOR.redact(text)}")
        return answer(cmd) if callable(answer) else answer

    def _check_reachable(self) -> None:
        if self.unreachable is not None:
            raise self.unreachable

    def describe(self) -> str:
        return f"fake {self.name}" + (f" as {self.os_user}" if self.os_user else "")

    def _login_user(self) -> str:
        return self.login_user

    def _runner(self) -> Any:
        raise Unanswered("a FakeExecutor runs nothing through invoke")

    def put(self, local_path: Path, remote_path: str) -> None:
        self._check_reachable()
        super().put(local_path, remote_path)

    def _put(self, local_path: Path, remote_path: str) -> None:
        self.copied.append((local_path, remote_path))

    @contextmanager
    def tunnel(self, address: str, port: int) -> Iterator[tuple[str, int]]:
        self._check_reachable()
        yield address, port

    def connect(self, *, on_new_host_key: OnNewHostKey | None = None) -> None:
        self._check_reachable()


def host_basics(fake: FakeExecutor, *, home: str = "/home/fake", scratch: str = "/tmp/dbrunbook.fake") -> FakeExecutor:
    """Rules every host answers the same way: its home directory, private directories and the files written
    into them, removing them again. Orchestrators use these around almost everything they do."""
    fake.on(r"^sh -c 'printf %s \"\$HOME\"'$", Reply(stdout=home))
    fake.on(r"^mktemp -d -t dbrunbook\.", Reply(stdout=scratch + "\n"))
    fake.on(r"^sh -c 'umask 077 && cat > ")
    fake.on(r"^rm -rf ")
    fake.on(r"^mkdir -p ")
    return fake


# --- SQL ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rows:
    """A statement's answer: column names and rows (none for a statement that returns nothing)."""

    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()
    raises: Exception | None = None  # a driver exception: the engine's map_error turns it into ours


@dataclass(frozen=True)
class Statement:
    """One statement as the fake server saw it; parameters are counted, never kept."""

    text: str
    params: int
    connection: int


@dataclass
class FakeDatabase:
    """A server that answers statements by pattern (``re.search`` over the text; newest rule first)."""

    rules: list[tuple[re.Pattern[str], Rows | Callable[[str], Rows]]] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)
    connections: list[dict[str, Any]] = field(default_factory=list)

    def on(self, pattern: str, answer: Rows | Callable[[str], Rows]) -> FakeDatabase:
        self.rules.append((re.compile(pattern), answer))
        return self

    def connect(self, address: str, port: int, user: str, database: str | None) -> FakeConnection:
        self.connections.append({"address": address, "port": port, "user": user, "database": database})
        return FakeConnection(self, len(self.connections) - 1)

    def texts(self) -> list[str]:
        return [s.text for s in self.statements]

    def answer(self, text: str, params: Sequence[Any] | None, connection: int) -> Rows:
        self.statements.append(Statement(text, len(params or ()), connection))
        for pattern, answer in reversed(self.rules):
            if pattern.search(text):
                rows = answer(text) if callable(answer) else answer
                if rows.raises is not None:
                    raise rows.raises
                return rows
        raise Unanswered(f"no rule answers the statement {REDACTOR.redact(text)}")


class FakeCursor:
    def __init__(self, conn: FakeConnection) -> None:
        self._conn = conn
        self._rows: Rows = Rows()

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def execute(self, text: str, params: Sequence[Any] | None = None) -> None:
        self._rows = self._conn.database.answer(text, params, self._conn.number)

    @property
    def description(self) -> list[tuple[str, ...]] | None:
        return [(c,) for c in self._rows.columns] if self._rows.columns else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._rows.rows)


class FakeConnection:
    """The few DB-API calls :class:`~dbrunbook.execution.sql.DbSession` makes."""

    def __init__(self, database: FakeDatabase, number: int) -> None:
        self.database = database
        self.number = number
        self.closed = False

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def close(self) -> None:
        self.closed = True


class FakeConnect:
    """Mixed in before an engine driver, its sessions open a :class:`FakeDatabase` through the executor's
    tunnel; everything else stays the real engine's (``type("FakeMariaDB", (FakeConnect, MariaDB), {})``). It
    names no engine: the execution layer imports none."""

    def __init__(self, database: FakeDatabase, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.database = database

    def _connect(self, address: str, port: int, login: Any) -> Any:
        return self.database.connect(address, port, login.user, login.database)


__all__ = [
    "FakeConnect",
    "FakeConnection",
    "FakeDatabase",
    "FakeExecutor",
    "Ran",
    "Reply",
    "Rows",
    "Statement",
    "Unanswered",
    "host_basics",
]
