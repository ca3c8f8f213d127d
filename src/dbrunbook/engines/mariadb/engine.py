"""The MariaDB engine as orchestration sees it: the driver (sessions, probes, binaries) plus its capabilities.

Separate from the driver so that the modules doing the work may import the driver without a cycle: this module
imports them (through ``capabilities``), never the other way round."""

from __future__ import annotations

from dbrunbook.engines.capabilities import BackupMethods, DrillSupport, LogArchive, RestoreMethod
from dbrunbook.engines.mariadb.driver import MariaDB, MySQL
from dbrunbook.engines.shadow_base import ShadowDialect


class MariaDBEngine(MariaDB):
    @property
    def backups(self) -> BackupMethods | None:
        from dbrunbook.engines.mariadb.capabilities import MyBackups

        return MyBackups()

    @property
    def restores(self) -> RestoreMethod | None:
        from dbrunbook.engines.mariadb.capabilities import MyRestores

        return MyRestores()

    @property
    def log_archive(self) -> LogArchive | None:
        from dbrunbook.engines.mariadb.capabilities import MyArchive

        return MyArchive()

    @property
    def drills(self) -> DrillSupport | None:
        from dbrunbook.engines.mariadb.capabilities import MyDrills

        return MyDrills()

    @property
    def shadow(self) -> ShadowDialect | None:
        from dbrunbook.engines.mariadb.shadow import MyShadow

        return MyShadow()


class MySQLEngine(MySQL, MariaDBEngine):
    """MySQL's backups are not built yet (``backup.full`` skips its clusters); binlogs, restores and drills
    are MariaDB's."""

    @property
    def backups(self) -> BackupMethods | None:
        return None

    @property
    def shadow(self) -> ShadowDialect | None:
        return None  # RENAME TABLE ... WAIT is MariaDB's; MySQL needs its own cut-over
