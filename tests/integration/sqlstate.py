"""Fresh, private databases on the sandbox's primaries for the session and tool-state tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from dbrunbook.engines import EngineDriver, Login, get_engine
from dbrunbook.execution import DbSession, RunSettings, SqlStatement
from dbrunbook.execution.hosts import executor_for
from dbrunbook.inventory import LoadedInventory, SecretResolver


@dataclass
class Server:
    """One cluster's primary, with a database of the test's own (``database``)."""

    engine: EngineDriver
    dev: LoadedInventory
    cluster_name: str
    settings: RunSettings
    resolver: SecretResolver
    database: str

    def login(self, database: str | None = None) -> Login:
        cred = self.dev.inventory.clusters[self.cluster_name].credentials
        assert cred.password
        return Login(cred.user, self.resolver.resolve(cred.password), database)

    @property
    def password(self) -> str:
        secret = self.login().password
        assert secret is not None
        return secret.reveal()

    def session(self, database: str | None = "") -> AbstractContextManager[DbSession]:
        """A new session to the test's database ("" ), or to another (None: the server's default)."""
        return self._session(self.database if database == "" else database)

    @contextmanager
    def _session(self, database: str | None) -> Iterator[DbSession]:
        cluster = self.dev.inventory.clusters[self.cluster_name]
        name, host = cluster.primary()
        ex = executor_for(name, host, self.settings, self.resolver)
        try:
            with self.engine.session(ex, host, self.login(database)) as db:
                yield db
        finally:
            ex.close()


@contextmanager
def fresh_server(
    dev: LoadedInventory, cluster_name: str, settings: RunSettings, resolver: SecretResolver
) -> Iterator[Server]:
    cluster = dev.inventory.clusters[cluster_name]
    database = f"dbr_sql_{uuid.uuid4().hex[:10]}"
    server = Server(get_engine(cluster.engine.value), dev, cluster_name, settings, resolver, database)
    admin_db = "postgres" if cluster.engine.value == "postgresql" else None
    with server.session(admin_db) as db:
        db.execute(SqlStatement(f"CREATE DATABASE {database}"))
    try:
        yield server
    finally:
        drop = f"DROP DATABASE {database}" + (" WITH (FORCE)" if admin_db else "")
        with server.session(admin_db) as db:
            db.execute(SqlStatement(drop))
