"""The PostgreSQL engine as orchestration sees it: the driver (sessions, probes, binaries) plus its capabilities.

Separate from the driver so that the modules doing the work may import the driver without a cycle: this module
imports them (through ``capabilities``), never the other way round."""

from __future__ import annotations

from dbrunbook.engines.capabilities import BackupMethods, DrillSupport, LogArchive, RestoreMethod
from dbrunbook.engines.postgresql.driver import PostgreSQL
from dbrunbook.engines.shadow_base import ShadowDialect


class PostgreSQLEngine(PostgreSQL):
    @property
    def backups(self) -> BackupMethods:
        from dbrunbook.engines.postgresql.capabilities import PgBackups

        return PgBackups()

    @property
    def restores(self) -> RestoreMethod:
        from dbrunbook.engines.postgresql.capabilities import PgRestores

        return PgRestores()

    @property
    def log_archive(self) -> LogArchive:
        from dbrunbook.engines.postgresql.capabilities import PgArchive

        return PgArchive()

    @property
    def drills(self) -> DrillSupport:
        from dbrunbook.engines.postgresql.capabilities import PgDrills

        return PgDrills()

    @property
    def shadow(self) -> ShadowDialect:
        from dbrunbook.engines.postgresql.shadow import PgShadow

        return PgShadow()
