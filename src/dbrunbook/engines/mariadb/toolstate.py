"""dbrunbook's state in MariaDB/MySQL: the ``_dbrunbook`` database (the underscore keeps it apart from
application databases in listings), and named locks (``GET_LOCK``), which are server-wide."""

from __future__ import annotations

from dbrunbook.engines.toolstate_base import BootstrapStep
from dbrunbook.execution.command import SqlStatement

DATABASE = "_dbrunbook"

STEPS: tuple[BootstrapStep, ...] = (
    BootstrapStep(
        1,
        "the _dbrunbook database and its version table",
        (
            SqlStatement(
                f"CREATE DATABASE IF NOT EXISTS `{DATABASE}` CHARACTER SET utf8mb4",
                description="create the _dbrunbook database",
            ),
            SqlStatement(
                f"CREATE TABLE IF NOT EXISTS `{DATABASE}`.schema_version ("
                "version INT NOT NULL PRIMARY KEY, "
                "description VARCHAR(255) NOT NULL, "
                "applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), "
                "applied_by VARCHAR(64) NOT NULL"
                ") ENGINE=InnoDB",
                description="create the tool state version table",
            ),
        ),
    ),
    BootstrapStep(
        2,
        "shadow-table migration runs and their events",
        (
            SqlStatement(
                f"CREATE TABLE IF NOT EXISTS `{DATABASE}`.shadow_runs ("
                "run_id VARCHAR(12) NOT NULL PRIMARY KEY, "
                "table_schema VARCHAR(64) NOT NULL, "
                "table_name VARCHAR(64) NOT NULL, "
                "alter_sql TEXT NOT NULL, "
                "phase VARCHAR(16) NOT NULL, "
                "checkpoint TEXT NULL, "
                "rows_copied BIGINT NOT NULL DEFAULT 0, "
                "checksum_ok BOOLEAN NOT NULL DEFAULT FALSE, "
                "plan LONGTEXT NOT NULL, "
                "started_by VARCHAR(255) NOT NULL, "
                "started_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), "
                "updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), "
                "message TEXT NULL"
                ") ENGINE=InnoDB CHARACTER SET utf8mb4",
                description="create the shadow migration runs table",
            ),
            SqlStatement(
                f"CREATE TABLE IF NOT EXISTS `{DATABASE}`.shadow_events ("
                "id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
                "run_id VARCHAR(12) NOT NULL, "
                "at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), "
                "what TEXT NOT NULL"
                ") ENGINE=InnoDB CHARACTER SET utf8mb4",
                description="create the shadow migration events table",
            ),
        ),
    ),
)


class MariaDBToolState:
    home = f"database {DATABASE}"
    steps = STEPS

    def version_table_exists(self) -> SqlStatement:
        return SqlStatement(
            "SELECT COUNT(*) > 0 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
            params=(DATABASE, "schema_version"),
            description="find the tool state version table",
            mutating=False,
        )

    def recorded_version(self) -> SqlStatement:
        return SqlStatement(
            "SELECT MAX(version) FROM `_dbrunbook`.schema_version",
            description="read the tool state version",
            mutating=False,
        )

    def record_version(self, step: BootstrapStep, tool_version: str) -> SqlStatement:
        return SqlStatement(
            "INSERT INTO `_dbrunbook`.schema_version (version, description, applied_by) VALUES (%s, %s, %s)",
            params=(step.version, step.description, tool_version),
            description=f"record tool state version {step.version}",
        )

    # Lock statements do not change data, so a dry run takes the lock too: its plan is not made while
    # another run works.
    def acquire_lock(self, name: str, wait: float) -> SqlStatement:
        # GET_LOCK answers 1 when taken, 0 when the wait ran out, NULL on an error such as a KILL.
        return SqlStatement(
            "SELECT GET_LOCK(%s, %s) = 1",
            params=(name, max(0.0, wait)),
            description=f"take lock {name}",
            mutating=False,
        )

    def release_lock(self, name: str) -> SqlStatement:
        return SqlStatement(
            "SELECT RELEASE_LOCK(%s)", params=(name,), description=f"release lock {name}", mutating=False
        )

    def lock_holder(self, name: str) -> SqlStatement:
        return SqlStatement(
            "SELECT IS_USED_LOCK(%s)", params=(name,), description=f"find the holder of lock {name}", mutating=False
        )
