"""What backup, archive and restore work on one cluster needs from the inventory, resolved lazily."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from dbrunbook import __version__, build_digest
from dbrunbook.backup.catalog import Catalog
from dbrunbook.backup.storage import Storage, open_storage
from dbrunbook.engines import EngineDriver, Login, get_engine
from dbrunbook.errors import ConfigError, HostError
from dbrunbook.execution.executor import HostExecutor, RunSettings
from dbrunbook.hostsetup import installed, venv_path
from dbrunbook.inventory.model import Cluster, Host
from dbrunbook.inventory.secrets import SecretResolver

ExecutorFactory = Callable[[Cluster, str], HostExecutor]


@dataclass
class ClusterContext:
    name: str
    cluster: Cluster
    resolver: SecretResolver
    settings: RunSettings
    executor_for: ExecutorFactory
    _agents: dict[str, str] = field(default_factory=dict)

    @cached_property
    def storage(self) -> Storage:
        if self.cluster.repository is None:
            raise ConfigError(f"cluster '{self.name}' has no repository in the inventory")
        return open_storage(self.cluster.repository, self.resolver)

    @cached_property
    def engine(self) -> EngineDriver:
        return get_engine(self.cluster.engine.value)

    @property
    def recipients(self) -> list[str]:
        if self.cluster.encryption is None:
            raise ConfigError(f"cluster '{self.name}' has no encryption recipients in the inventory")
        return list(self.cluster.encryption.recipients)

    def identities(self) -> list[str]:
        from dbrunbook.backup.crypto import parse_identities

        enc = self.cluster.encryption
        if enc is None or not enc.identities:
            raise ConfigError(
                f"cluster '{self.name}' has no encryption identities in the inventory",
                hint="restore and verify need the private age identity (encryption.identities)",
            )
        keys: list[str] = []
        for ref in enc.identities:
            keys.extend(parse_identities(self.resolver.resolve(ref).reveal()))
        return keys

    def catalog(self, system_id: str | None = None, *, cached: bool = True) -> Catalog:
        """The complete backups, oldest first, listed from the repository (manifests cached locally unless
        ``cached=False``, which reads and decrypts every manifest again: what verify must do)."""
        from dbrunbook.backup.catalog import ManifestCache, load_catalog

        cache = ManifestCache.default() if cached else None
        return load_catalog(self.storage, self.identities(), self.name, system_id, cache=cache)

    def new_backup_id(self, kind: str) -> str:
        """Claim a fresh backup id in the repository (see :func:`catalog.claim_backup_id`)."""
        from dbrunbook.backup.catalog import claim_backup_id

        return claim_backup_id(self.storage, kind, self.recipients)

    def login(self, database: str | None = None) -> Login:
        cred = self.cluster.credentials
        password = self.resolver.resolve(cred.password) if cred.password else None
        return Login(cred.user, password, database or cred.database)

    def host(self, host_name: str) -> Host:
        return self.cluster.hosts[host_name]

    def executor(self, host_name: str) -> HostExecutor:
        return self.executor_for(self.cluster, host_name)

    def agent(self, host_name: str) -> str:
        if host_name not in self._agents:
            self._agents[host_name] = agent_for(self.executor(host_name), self.host(host_name))
        return self._agents[host_name]


def agent_for(ex: HostExecutor, host: Host) -> str:
    """Path of this very dbrunbook build's host command on the host; refuses a missing or other build."""
    venv = venv_path(ex, host.tool_venv)
    found = installed(ex, venv)
    if found is None:
        raise HostError(
            f"{ex.name}: dbrunbook is not installed in {venv}",
            hint=f"run: invoke hosts.setup --env ... --host {ex.name}",
        )
    if found.get("version") != __version__ or found.get("build") != build_digest():
        raise HostError(
            f"{ex.name}: dbrunbook {found.get('version')} (build {found.get('build', 'unknown')}) is installed, "
            f"this is {__version__} (build {build_digest()})",
            hint=f"run: invoke hosts.setup --env ... --host {ex.name}",
        )
    return f"{venv}/bin/dbrunbook-host"
