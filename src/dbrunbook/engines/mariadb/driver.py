"""MariaDB and MySQL: connections with PyMySQL, role from the replica status.

MySQL 8 differences are kept here: it calls binaries mysql*, says SHOW REPLICA STATUS with
Source_* columns from 8.0.22, and has no mariadb-backup (Percona XtraBackup takes its place).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dbrunbook.engines.base import EngineDriver, Login, ServerProbe, first_match
from dbrunbook.engines.mariadb.session import MariaDBSessionDialect, MySQLSessionDialect
from dbrunbook.engines.mariadb.toolstate import MariaDBToolState
from dbrunbook.errors import DatabaseAuthError, DatabaseError, DatabaseUnreachableError, EngineNotSupported, QueryFailed
from dbrunbook.execution.command import SqlStatement
from dbrunbook.execution.sql import DbSession
from dbrunbook.inventory.model import Host, Role
from dbrunbook.redact import REDACTOR

VERSION_SQL = SqlStatement("SELECT VERSION(), @@server_id", description="server version", mutating=False)
# MariaDB >= 10.5.1 and MySQL >= 8.0.22 accept the REPLICA spelling; older servers only SLAVE.
REPLICA_STATUS_SQL = SqlStatement("SHOW SLAVE STATUS", description="replica status", mutating=False)

_AUTH_CODES = {1044, 1045, 1698}  # access denied to database / for user / unix socket auth
_QUOTES_STATEMENT = {1064, 1149}  # ER_PARSE_ERROR, ER_SYNTAX_ERROR: the message quotes the statement text


def map_error(exc: Exception, host: str) -> DatabaseError:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    text = REDACTOR.redact(str(exc.args[1]) if len(exc.args) > 1 else str(exc))
    if code in _AUTH_CODES:
        return DatabaseAuthError(f"{host}: MariaDB refused the login: {text}")
    if code in (2002, 2003, 2006, 2013):
        return DatabaseUnreachableError(f"{host}: MariaDB unreachable: {text}")
    if code in _QUOTES_STATEMENT:
        # "... near '<the rest of the statement>'": parameters are bound on the client, so the excerpt holds
        # them escaped (\\' for '), where the redactor, which knows only the raw secret, cannot see them.
        text = text.split(" near '", 1)[0] + " (statement not shown; it is in the audit log)"
    return QueryFailed(f"{host}: MariaDB error {code}: {text}", code=None if code is None else str(code))


def client_defaults(user: str, password: str) -> str:
    """A [client] option file: how every MariaDB/MySQL tool gets its login without it showing in argv."""
    return f"[client]\nuser={option_value(user)}\npassword={option_value(password)}\n"


def option_value(value: str) -> str:
    """A value for a MariaDB/MySQL option file, read back exactly by mysys' option parser.

    Double-quoted: outside quotes a ``#`` starts a comment, and spaces at either end are dropped. Inside,
    the parser turns ``\\\\``, ``\\"``, ``\\n`` and ``\\r`` back into the character, and takes ``'``, ``:``
    and ``#`` as they are."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


class MariaDB(EngineDriver):
    name = "mariadb"

    required_binaries: tuple[str, ...] = ("mariadb", "mariadb-dump", "mariadb-backup", "mariadb-binlog")
    client = "mariadb"
    dump_tool = "mariadb-dump"
    binlog_tool = "mariadb-binlog"
    backup_tool: str | None = "mariadb-backup"
    stream_tool: str | None = "mbstream"
    #: how the dump records its binlog file, position and GTID position (read back by binlog.dump_coordinates)
    dump_position_flags: tuple[str, ...] = ("--master-data=2", "--gtid")

    def dump_argv(self, host: Host, defaults_file: str, databases: Sequence[str]) -> list[str]:
        """A consistent dump of the whole server (or the listed databases), objects and all."""
        return [
            # Option files must come first, or the tools ignore them.
            host.binary(self.dump_tool),
            f"--defaults-extra-file={defaults_file}",
            "--host=127.0.0.1",
            f"--port={host.port}",
            "--single-transaction",
            *self.dump_position_flags,
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            "--flush-privileges",
            # The defaults, spelled out so an option file cannot turn them off: the row counter reads the
            # "Dumping data" comments and the UNLOCK TABLES that close each table's data.
            "--comments",
            "--add-locks",
            "--default-character-set=utf8mb4",
            # "--" ends the options: a database named "--where=..." is a name, not an option.
            *(["--databases", "--", *databases] if databases else ["--all-databases"]),
        ]

    def physical_argv(
        self, host: Host, defaults_file: str, scratch: str, lsndir: str, incremental_lsn: int | None, jobs: int
    ) -> list[str]:
        if self.backup_tool is None:
            raise EngineNotSupported(f"{self.name}: physical backups need Percona XtraBackup, not supported yet")
        argv = [
            host.binary(self.backup_tool),
            f"--defaults-extra-file={defaults_file}",
            "--backup",
            "--stream=xbstream",
            "--host=127.0.0.1",
            f"--port={host.port}",
            f"--datadir={host.data_dir}",
            f"--target-dir={scratch}",
            f"--extra-lsndir={lsndir}",
            f"--parallel={max(1, jobs)}",
        ]
        if incremental_lsn is not None:
            argv.append(f"--incremental-lsn={incremental_lsn}")
        return argv

    def follow_argv(
        self, host: Host, defaults_file: str, address: str, port: int, spool: str, first: str, server_id: int
    ) -> list[str]:
        """Stream binlogs from a server like a replica, into files named as on the server (``--raw``)."""
        return [
            host.binary(self.binlog_tool),
            f"--defaults-extra-file={defaults_file}",
            "--read-from-remote-server",
            "--raw",
            "--stop-never",
            # A replica id of its own: the server drops an older connection that uses the same id.
            f"--stop-never-slave-server-id={4_294_000_000 + server_id % 900_000}",
            f"--host={address}",
            f"--port={port}",
            f"--result-file={spool.rstrip('/')}/",
            first,
        ]

    def client_argv(self, host: Host, defaults_file: str | None, socket: str | None, port: int) -> list[str]:
        """The client a restore pipes SQL into: binary mode, since binlog events carry raw bytes."""
        argv = [host.binary(self.client)]
        if defaults_file:
            argv.append(f"--defaults-extra-file={defaults_file}")
        argv += [f"--socket={socket}"] if socket else ["--host=127.0.0.1", f"--port={port}"]
        # --batch: tab-separated answers whatever an option file says (the row-count check reads them).
        return [*argv, "--batch", "--binary-mode", "--max-allowed-packet=1G", "--default-character-set=utf8mb4"]

    def _connect(self, address: str, port: int, login: Login) -> Any:
        import pymysql

        params: dict[str, Any] = {
            "host": address,
            "port": port,
            "user": login.user,
            "connect_timeout": 10,
            # Without it a dead tunnel or a hung server blocks forever on the first read.
            "read_timeout": 300,
            "autocommit": True,
            "charset": "utf8mb4",
        }
        if login.database:
            params["database"] = login.database
        if login.password is not None:
            params["password"] = login.password.reveal()
        return pymysql.connect(**params)

    def map_error(self, exc: Exception, host: str) -> DatabaseError:
        return map_error(exc, host)

    def session_dialect(self) -> MariaDBSessionDialect:
        return MariaDBSessionDialect()

    def tool_state(self) -> MariaDBToolState:
        return MariaDBToolState()

    def probe(self, db: DbSession) -> ServerProbe:
        version, _server_id = db.execute(VERSION_SQL)[0]
        status = db.records(REPLICA_STATUS_SQL)
        if not status:
            return ServerProbe(version=version, major=self.major_of(version), role=Role.PRIMARY)
        row = status[0]
        io_ok = row.get("Slave_IO_Running") or row.get("Replica_IO_Running")
        sql_ok = row.get("Slave_SQL_Running") or row.get("Replica_SQL_Running")
        lag = row.get("Seconds_Behind_Master")
        return ServerProbe(
            version=version,
            major=self.major_of(version),
            role=Role.REPLICA,
            upstream_host=row.get("Master_Host") or row.get("Source_Host"),
            upstream_port=int(row.get("Master_Port") or row.get("Source_Port") or 0) or None,
            replication_state="streaming" if (io_ok, sql_ok) == ("Yes", "Yes") else f"io={io_ok} sql={sql_ok}",
            lag_seconds=float(lag) if lag is not None else None,
        )

    def binary_major(self, name: str, version_line: str) -> str | None:
        full = first_match(r"(\d+\.\d+\.\d+)-MariaDB", version_line)
        return self.major_of(full) if full else None

    @staticmethod
    def major_of(version: str) -> str:
        # MariaDB's compatible unit is major.minor: mariadb-backup 10.11 cannot read a 10.6 data dir.
        return ".".join(version.split("-", maxsplit=1)[0].split(".")[:2])


class MySQL(MariaDB):
    """MySQL 8: the mysql* names, SOURCE wording from 8.0.26, GTIDs as server_uuid:interval (recorded, not
    yet replayed by GTID), and Percona XtraBackup instead of mariabackup (not wired yet)."""

    name = "mysql"

    required_binaries = ("mysql", "mysqldump", "mysqlbinlog")
    client = "mysql"
    dump_tool = "mysqldump"
    binlog_tool = "mysqlbinlog"
    backup_tool = None
    stream_tool = None
    dump_position_flags = ("--source-data=2", "--set-gtid-purged=ON")

    def session_dialect(self) -> MySQLSessionDialect:
        return MySQLSessionDialect()

    def binary_major(self, name: str, version_line: str) -> str | None:
        full = first_match(r"Ver (\d+\.\d+\.\d+)", version_line)
        return self.major_of(full) if full else None
