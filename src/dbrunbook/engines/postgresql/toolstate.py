"""dbrunbook's state in PostgreSQL: the ``dbrunbook`` schema of the database the session is connected to,
and session-level advisory locks keyed by a 64-bit number derived from the lock's name.

Advisory locks are per database: two runs that must exclude each other connect to the same database."""

from __future__ import annotations

import hashlib

from dbrunbook.engines.toolstate_base import BootstrapStep
from dbrunbook.execution.command import SqlStatement

SCHEMA = "dbrunbook"

STEPS: tuple[BootstrapStep, ...] = (
    BootstrapStep(
        1,
        "the dbrunbook schema and its version table",
        (
            SqlStatement(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}", description="create the dbrunbook schema"),
            SqlStatement(
                f"CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_version ("
                "version integer PRIMARY KEY, "
                "description text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now(), "
                "applied_by text NOT NULL)",
                description="create the tool state version table",
            ),
        ),
    ),
    BootstrapStep(
        2,
        "shadow-table migration runs and their events",
        (
            SqlStatement(
                f"CREATE TABLE IF NOT EXISTS {SCHEMA}.shadow_runs ("
                "run_id text PRIMARY KEY, "
                "table_schema text NOT NULL, "
                "table_name text NOT NULL, "
                "alter_sql text NOT NULL, "
                "phase text NOT NULL, "
                "checkpoint text, "  # JSON list of the last copied key's columns, as text
                "rows_copied bigint NOT NULL DEFAULT 0, "
                "checksum_ok boolean NOT NULL DEFAULT false, "
                "plan text NOT NULL, "  # JSON: names, column map, key, what the swap renames
                "started_by text NOT NULL, "
                "started_at timestamptz NOT NULL DEFAULT now(), "
                "updated_at timestamptz NOT NULL DEFAULT now(), "
                "message text)",
                description="create the shadow migration runs table",
            ),
            SqlStatement(
                f"CREATE TABLE IF NOT EXISTS {SCHEMA}.shadow_events ("
                "run_id text NOT NULL, "
                "at timestamptz NOT NULL DEFAULT clock_timestamp(), "
                "what text NOT NULL)",
                description="create the shadow migration events table",
            ),
        ),
    ),
)


def advisory_key(name: str) -> int:
    """The signed 64-bit key ``pg_advisory_lock(bigint)`` takes for a lock name: the first 8 bytes of its
    SHA-256. Stable across processes, machines and server versions (``hashtext`` is none of these)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def key_halves(key: int) -> tuple[int, int]:
    """How pg_locks shows a bigint advisory key: high half in ``classid``, low half in ``objid``, unsigned."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


class PostgresToolState:
    home = f"schema {SCHEMA}"
    steps = STEPS

    def version_table_exists(self) -> SqlStatement:
        return SqlStatement(
            f"SELECT to_regclass('{SCHEMA}.schema_version') IS NOT NULL",
            description="find the tool state version table",
            mutating=False,
        )

    def recorded_version(self) -> SqlStatement:
        return SqlStatement(
            "SELECT max(version) FROM dbrunbook.schema_version",
            description="read the tool state version",
            mutating=False,
        )

    def record_version(self, step: BootstrapStep, tool_version: str) -> SqlStatement:
        return SqlStatement(
            "INSERT INTO dbrunbook.schema_version (version, description, applied_by) VALUES (%s, %s, %s)",
            params=(step.version, step.description, tool_version),
            description=f"record tool state version {step.version}",
        )

    # Lock statements do not change data, so a dry run takes the lock too: its plan is not made while
    # another run works.
    def acquire_lock(self, name: str, wait: float) -> SqlStatement:
        # With a wait, pg_advisory_lock waits until the session's lock_timeout (55P03), which the caller
        # sets to ``wait``.
        text = "SELECT pg_try_advisory_lock(%s)" if wait <= 0 else "SELECT true FROM pg_advisory_lock(%s)"
        return SqlStatement(text, params=(advisory_key(name),), description=f"take lock {name}", mutating=False)

    def release_lock(self, name: str) -> SqlStatement:
        return SqlStatement(
            "SELECT pg_advisory_unlock(%s)",
            params=(advisory_key(name),),
            description=f"release lock {name}",
            mutating=False,
        )

    def lock_holder(self, name: str) -> SqlStatement:
        high, low = key_halves(advisory_key(name))
        return SqlStatement(
            "SELECT min(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1",
            params=(high, low),
            description=f"find the holder of lock {name}",
            mutating=False,
        )
