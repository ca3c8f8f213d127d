"""The execution seam: commands and SQL as data, run locally or over SSH, audited and dry-runnable."""

from dbrunbook.execution.audit import AuditLog
from dbrunbook.execution.command import Command, Result, SqlStatement
from dbrunbook.execution.executor import HostExecutor, LocalExecutor, RunSettings
from dbrunbook.execution.sql import DbSession

__all__ = [
    "AuditLog",
    "Command",
    "DbSession",
    "HostExecutor",
    "LocalExecutor",
    "Result",
    "RunSettings",
    "SqlStatement",
]
