"""What every database engine provides. Engine-specific SQL, binaries and parsing live behind this."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dbrunbook.engines.capabilities import BackupMethods, DrillSupport, LogArchive, RestoreMethod
from dbrunbook.engines.shadow_base import ShadowDialect
from dbrunbook.engines.toolstate_base import ToolStateDialect
from dbrunbook.errors import DbrunbookError, EngineNotSupported
from dbrunbook.execution.command import Command
from dbrunbook.execution.executor import HostExecutor
from dbrunbook.execution.sql import DbSession, SessionDialect
from dbrunbook.inventory.model import Host, Role
from dbrunbook.redact import Secret


@dataclass(frozen=True)
class Login:
    """Resolved credentials for one connection."""

    user: str
    password: Secret | None
    database: str | None = None


@dataclass(frozen=True)
class ServerProbe:
    """What a server says about itself: a snapshot the checks reason about."""

    version: str
    major: str
    role: Role
    upstream_host: str | None = None
    upstream_port: int | None = None
    replication_state: str | None = None
    lag_seconds: float | None = None
    system_id: str | None = None


@dataclass(frozen=True)
class BinaryInfo:
    name: str
    path: str | None
    version_line: str | None
    major: str | None

    @property
    def present(self) -> bool:
        return self.path is not None


_MARK = "@@dbrunbook@@"


class EngineDriver(ABC):
    name: str
    #: client programs every host of this engine needs, for backups, restores and checks
    required_binaries: tuple[str, ...]

    # -- capabilities (engines/capabilities.py), made on first use so that their modules load only when needed;
    # None: this engine cannot do it (yet), and the task says so.
    @property
    def backups(self) -> BackupMethods | None:
        return None

    @property
    def restores(self) -> RestoreMethod | None:
        return None

    @property
    def log_archive(self) -> LogArchive | None:
        return None

    @property
    def drills(self) -> DrillSupport | None:
        return None

    @property
    def shadow(self) -> ShadowDialect | None:
        return None

    @contextmanager
    def session(self, executor: HostExecutor, host: Host, login: Login) -> Iterator[DbSession]:
        """An audited SQL session to the host's server, through the executor's tunnel."""
        with executor.tunnel(host.address, host.port) as (address, port):
            try:
                conn = self._connect(address, port, login)
            except Exception as exc:
                raise self.map_error(exc, executor.name) from None
            db = DbSession(
                executor.name, executor.settings, conn, map_error=self.map_error, dialect=self.session_dialect()
            )
            try:
                yield db
            finally:
                db.close()

    @abstractmethod
    def _connect(self, address: str, port: int, login: Login) -> Any:
        """A DB-API connection in autocommit mode; the password goes to the driver in-process only."""

    def session_dialect(self) -> SessionDialect | None:
        """The engine's SQL for per-session limits (``DbSession.limits``, ``execute(timeout=...)``)."""
        return None

    def tool_state(self) -> ToolStateDialect:
        """Where and how dbrunbook keeps its own state inside this engine's servers (``dbrunbook.toolstate``)."""
        raise EngineNotSupported(f"{self.name}: no tool state in the database for this engine")

    @abstractmethod
    def map_error(self, exc: Exception, host: str) -> DbrunbookError:
        """The driver's exception as one of ours, with a one-line message and no secret."""

    @abstractmethod
    def probe(self, db: DbSession) -> ServerProbe: ...

    @abstractmethod
    def binary_major(self, name: str, version_line: str) -> str | None:
        """The server major version a client binary belongs to, or None when it does not say."""

    @staticmethod
    @abstractmethod
    def major_of(version: str) -> str: ...

    def binaries_command(self, host: Host) -> Command:
        """One round trip that locates every required binary and prints its version line."""
        names = [host.binary(b) for b in self.required_binaries]
        script = (
            'for b in "$@"; do p=$(command -v "$b") || { echo "' + _MARK + "$b " + _MARK + 'missing"; continue; }; '
            'echo "' + _MARK + "$b " + _MARK + '$p"; "$p" --version 2>&1 | head -n 1; done'
        )
        return Command(("sh", "-c", script, "sh", *names), description="locate client binaries", mutating=False)

    def parse_binaries(self, output: str) -> list[BinaryInfo]:
        found: list[BinaryInfo] = []
        lines = output.splitlines()
        for i, line in enumerate(lines):
            if not line.startswith(_MARK):
                continue
            name, _, where = line[len(_MARK) :].partition(" " + _MARK)
            short = name.rsplit("/", 1)[-1]
            if where == "missing":
                found.append(BinaryInfo(short, None, None, None))
                continue
            version = lines[i + 1] if i + 1 < len(lines) and not lines[i + 1].startswith(_MARK) else ""
            found.append(BinaryInfo(short, where, version or None, self.binary_major(short, version)))
        return found


def first_match(pattern: str, text: str) -> str | None:
    m = re.search(pattern, text)
    return m.group(1) if m else None
