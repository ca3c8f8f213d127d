"""PostgreSQL: connections with psycopg 3, role and replication from the server itself."""

from __future__ import annotations

from typing import Any

from dbrunbook.engines.base import EngineDriver, Login, ServerProbe, first_match
from dbrunbook.engines.postgresql.session import PostgresSessionDialect
from dbrunbook.engines.postgresql.toolstate import PostgresToolState
from dbrunbook.errors import DatabaseAuthError, DatabaseError, DatabaseUnreachableError, QueryFailed, SecretError
from dbrunbook.execution.command import SqlStatement
from dbrunbook.execution.sql import DbSession
from dbrunbook.inventory.model import Role
from dbrunbook.redact import REDACTOR

VERSION_SQL = SqlStatement(
    "SELECT current_setting('server_version'), pg_is_in_recovery(), "
    "(SELECT system_identifier::text FROM pg_control_system())",
    description="server version and recovery state",
    mutating=False,
)
RECEIVER_SQL = SqlStatement(
    "SELECT status, sender_host, sender_port, "
    # An idle primary sends no transactions: time since the last replay would look like lag.
    "CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
    "ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 END "
    "FROM pg_stat_wal_receiver",
    description="WAL receiver state",
    mutating=False,
)

# SQLSTATE classes that mean "who you are was refused" (28000 invalid authorization, 28P01 bad password).
_AUTH_STATES = {"28000", "28P01"}


def pgpass_line(port: int | str, user: str, password: str, *, host: str = "127.0.0.1") -> str:
    """One ``.pgpass`` line for the server at ``host:port`` (``*`` matches any port): what every client
    tool on a host reads (PGPASSFILE), so no password travels in argv or the environment."""
    fields = (host, str(port), "*", user, password)
    return ":".join(pgpass_escape(f) for f in fields) + "\n"


def pgpass_escape(field: str) -> str:
    """libpq splits a .pgpass line at ``:`` and takes ``\\`` as an escape: a password with a colon would
    otherwise be cut there, and the login fail."""
    if "\n" in field or "\r" in field:
        raise SecretError("a password or user name with a line break cannot go into a .pgpass file")
    return field.replace("\\", "\\\\").replace(":", "\\:")


def map_error(exc: Exception, host: str) -> DatabaseError:
    import psycopg

    state = getattr(exc, "sqlstate", None)
    text = REDACTOR.redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    if state in _AUTH_STATES or "password authentication failed" in text or "no password supplied" in text:
        return DatabaseAuthError(f"{host}: PostgreSQL refused the login: {_tail(text)}")
    if isinstance(exc, psycopg.OperationalError) and state is None:
        return DatabaseUnreachableError(f"{host}: PostgreSQL unreachable: {_tail(text)}")
    reason = _tail(text)
    if state == "42601":
        # 'syntax error at or near "<token>"': with client-side binding the token can be a parameter, quoted
        # and escaped ('' for '), where the redactor, which knows only the raw secret, cannot see it.
        reason = reason.split(" at or near ", 1)[0] + " (statement not shown; it is in the audit log)"
    detail = getattr(getattr(exc, "diag", None), "message_detail", None)
    if state and state.startswith("23") and detail:
        # Which key collides or which row a constraint refuses: what the operator has to go and fix.
        reason += ": " + REDACTOR.redact(" ".join(str(detail).split()))
    return QueryFailed(f"{host}: PostgreSQL error {state or ''}: {reason}".replace("  ", " "), code=state)


def _tail(text: str) -> str:
    # libpq prefixes 'connection to server at "127.0.0.1", port 5432 failed:'; keep the reason.
    return text.rsplit("failed: ", 1)[-1]


class PostgreSQL(EngineDriver):
    name = "postgresql"

    required_binaries = ("psql", "pg_dump", "pg_dumpall", "pg_restore", "pg_basebackup", "pg_ctl")

    def _connect(self, address: str, port: int, login: Login) -> Any:
        import psycopg

        params: dict[str, Any] = {
            "host": address,
            "port": port,
            "user": login.user,
            "dbname": login.database or "postgres",
            "connect_timeout": 10,
            "application_name": "dbrunbook",
            "autocommit": True,
            # Client-side binding: utility statements (ALTER ROLE ... PASSWORD %s) accept parameters
            # only this way, and parameters keep secrets out of the statement text we log.
            "cursor_factory": psycopg.ClientCursor,
        }
        if login.password is not None:
            # In-process to libpq: never on a command line, never in the environment.
            params["password"] = login.password.reveal()
        return psycopg.connect(**params)

    def map_error(self, exc: Exception, host: str) -> DatabaseError:
        return map_error(exc, host)

    def session_dialect(self) -> PostgresSessionDialect:
        return PostgresSessionDialect()

    def tool_state(self) -> PostgresToolState:
        return PostgresToolState()

    def probe(self, db: DbSession) -> ServerProbe:
        version, in_recovery, system_id = db.execute(VERSION_SQL)[0]
        if not in_recovery:
            return ServerProbe(version=version, major=self.major_of(version), role=Role.PRIMARY, system_id=system_id)
        rows = db.execute(RECEIVER_SQL)
        status, sender_host, sender_port, lag = rows[0] if rows else (None, None, None, None)
        return ServerProbe(
            version=version,
            major=self.major_of(version),
            role=Role.REPLICA,
            upstream_host=sender_host,
            upstream_port=sender_port,
            replication_state=status or "not streaming",
            lag_seconds=lag,
            system_id=system_id,
        )

    def binary_major(self, name: str, version_line: str) -> str | None:
        full = first_match(r"\(PostgreSQL\) (\d+(?:\.\d+)?)", version_line)
        return self.major_of(full) if full else None

    @staticmethod
    def major_of(version: str) -> str:
        # Since PostgreSQL 10 the major version is the first number ("15.4" -> "15").
        return version.split(maxsplit=1)[0].split(".", maxsplit=1)[0]
