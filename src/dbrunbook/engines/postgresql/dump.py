"""PostgreSQL logical backup and restore, controller side: which databases, credentials, the manifest."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from dbrunbook import __version__
from dbrunbook.engines import Login
from dbrunbook.engines.access import ClusterAccess, pick_source
from dbrunbook.engines.postgresql.driver import pgpass_line
from dbrunbook.engines.postgresql.dump_host import dump_plan, find_dump, restore_argv
from dbrunbook.engines.postgresql.restore_result import PgLogicalRestored
from dbrunbook.errors import BackupError, RestoreError
from dbrunbook.execution.command import Command, SqlStatement
from dbrunbook.execution.executor import HostExecutor
from dbrunbook.inventory.model import Cluster, Host
from dbrunbook.repository import hostconfig
from dbrunbook.repository.manifest import Manifest, ObjectEntry, manifest_key

Step = Callable[[str], None]
DATABASES_SQL = SqlStatement(
    "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname",
    description="databases to dump",
    mutating=False,
)


def logical_backup(
    ctx: ClusterAccess, *, source: str = "primary", jobs: int = 2, step: Step = lambda _m: None
) -> Manifest:
    host_name = pick_source(ctx, source)
    host = ctx.host(host_name)
    ex = ctx.executor(host_name)
    agent = ctx.agent(host_name)
    login = ctx.login()
    version, system_id, databases = _identity_and_databases(ctx, ex, host, login)
    backup_id = ctx.new_backup_id("logical")
    start_time = datetime.now(UTC)
    password = login.password.reveal() if login.password else ""
    with (
        hostconfig.temporary(ex, ctx.name, ctx.cluster, ctx.resolver, with_identities=False) as config,
        ex.secret_file(pgpass_line(host.port, login.user, password), "pgpass") as passfile,
    ):
        step(f"dumping {len(databases)} databases on {host_name}")
        plan = dump_plan(host.bin_dir or "", host.port, login.user, databases)
        dumps = json.dumps([{"name": name, "argv": argv} for name, argv in plan])
        argv = (agent, "logical-push", "--config", config, "--passfile", passfile, "--backup-id", backup_id)
        # --dumps=JSON: one argument, whatever the database names hold.
        res = ex.run(Command((*argv, "--jobs", str(jobs), f"--dumps={dumps}"), description="dump databases"))
    lines = res.stdout.strip().splitlines()
    if not lines:
        raise BackupError(f"{host_name}: dbrunbook-host logical-push printed no object list")
    objects = [ObjectEntry.model_validate(o) for o in json.loads(lines[-1])]
    dropped = [d for d in databases if find_dump(objects, d) is None]
    if dropped:
        step(f"dropped during the backup, not in it: {', '.join(dropped)}")
        databases = [d for d in databases if d not in dropped]
    manifest = Manifest(
        backup_id=backup_id,
        kind="logical",
        engine="postgresql",
        cluster=ctx.name,
        system_identifier=system_id,
        server_version=version,
        start_time=start_time,
        stop_time=datetime.now(UTC),
        source_host=host_name,
        databases=databases,
        objects=objects,
        recipients=ctx.recipients,
        tool_version=__version__,
    )
    step("writing the manifest")
    ctx.write_manifest(manifest)
    return manifest


def _identity_and_databases(
    ctx: ClusterAccess, ex: HostExecutor, host: Host, login: Login
) -> tuple[str, str, list[str]]:
    """The server's version and system identifier, and the databases a logical backup dumps."""
    with ctx.engine.session(ex, host, login) as db:
        version, system_id = db.execute(
            SqlStatement(
                "SELECT current_setting('server_version'), (SELECT system_identifier::text FROM pg_control_system())",
                description="cluster identity",
                mutating=False,
            )
        )[0]
        if ctx.has_identities():
            ctx.catalog(system_id)  # refuses a prefix that holds another system's backups
        databases = [row[0] for row in db.execute(DATABASES_SQL)]
    return version, system_id, databases


def restore_logical(
    ctx: ClusterAccess,
    manifest: Manifest,
    target_cluster: Cluster,
    to: str,
    *,
    source_database: str,
    database: str,
    step: Step = lambda _m: None,
) -> PgLogicalRestored:
    """Restore one database of a logical backup into a new database on the target host's server."""
    if source_database not in manifest.databases:
        raise RestoreError(
            f"backup {manifest.backup_id} has no database {source_database!r} (it has {', '.join(manifest.databases)})"
        )
    host = target_cluster.hosts[to]
    ex = ctx.executor_for(target_cluster, to)
    agent = ctx.agent_on(ex, host)
    # The target server's own credentials: the database may go to another cluster's server.
    cred = target_cluster.credentials
    secret = ctx.resolver.resolve(cred.password) if cred.password else None
    password = secret.reveal() if secret else ""
    _create_database(ctx, ex, host, Login(cred.user, secret, cred.database), to, database, step)
    with (
        hostconfig.temporary(ex, ctx.name, ctx.cluster, ctx.resolver, with_identities=True) as config,
        ex.secret_file(pgpass_line(host.port, cred.user, password), "pgpass") as passfile,
    ):
        step(f"pg_restore into {database}")
        ex.run(
            Command(
                (
                    agent,
                    "logical-restore",
                    "--config",
                    config,
                    "--passfile",
                    passfile,
                    "--manifest-key",
                    manifest_key(manifest.backup_id),
                    "--manifest-digest",
                    manifest.digest(),
                    f"--source-database={source_database}",
                    f"--database={database}",
                    "--",
                    *restore_argv(host.bin_dir or "", host.port, cred.user, database),
                ),
                description="restore the database",
            )
        )
    return PgLogicalRestored(manifest.backup_id, to, host.port, source_database, database)


def _create_database(
    ctx: ClusterAccess, ex: HostExecutor, host: Host, login: Login, to: str, database: str, step: Step
) -> None:
    """A new, empty database on a primary: a logical restore never writes into an existing one."""
    with ctx.engine.session(ex, host, login) as db:
        if db.scalar(SqlStatement("SELECT pg_is_in_recovery()", mutating=False, description="read-only?")):
            raise RestoreError(f"{to} is a replica (read-only); restore a logical backup onto a primary")
        exists = db.execute(
            SqlStatement(
                "SELECT count(*) FROM pg_database WHERE datname = %s",
                params=(database,),
                mutating=False,
                description="does the database exist",
            )
        )[0][0]
        if exists:
            raise RestoreError(f"database {database!r} already exists on {to}; name a new one with --database")
        step(f"creating database {database}")
        db.execute(
            SqlStatement(
                f'CREATE DATABASE "{database.replace(chr(34), chr(34) * 2)}"', description="create the target database"
            )
        )
