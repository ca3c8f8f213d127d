"""What backup, archive and restore work on one cluster needs from the inventory, resolved lazily."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from dbrunbook import __version__, build_digest
from dbrunbook.engines import EngineDriver, Login, get_engine
from dbrunbook.errors import ConfigError, HostError
from dbrunbook.execution.executor import HostExecutor, RunSettings
from dbrunbook.hosts.setup import installed, venv_path
from dbrunbook.inventory.model import Cluster, Host
from dbrunbook.inventory.secrets import SecretResolver
from dbrunbook.repository.catalog import Catalog
from dbrunbook.repository.manifest import Manifest
from dbrunbook.repository.storage import Storage, open_storage

if TYPE_CHECKING:
    from dbrunbook.repository.lease import Lease
    from dbrunbook.repository.signing import Signer, Trust

ExecutorFactory = Callable[[Cluster, str], HostExecutor]


@dataclass
class ClusterContext:
    name: str
    cluster: Cluster
    resolver: SecretResolver
    settings: RunSettings
    executor_for: ExecutorFactory
    _agents: dict[str, str] = field(default_factory=dict)
    _leases: list[Lease] = field(default_factory=list)

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
        from dbrunbook.repository.crypto import parse_identities

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

    def has_identities(self) -> bool:
        return self.cluster.encryption is not None and bool(self.cluster.encryption.identities)

    def catalog(self, system_id: str | None = None, *, cached: bool = True) -> Catalog:
        """The complete backups, oldest first, listed from the repository (manifests cached locally unless
        ``cached=False``, which reads and decrypts every manifest again: what verify must do). Manifests
        without a trusted signature are left out and listed in ``Catalog.refused``."""
        from dbrunbook.repository.catalog import ManifestCache, load_catalog

        cache = ManifestCache.default() if cached else None
        return load_catalog(self.storage, self.identities(), self.name, system_id, cache=cache, trust=self.trust())

    @cached_property
    def signer(self) -> Signer:
        """The controller's manifest signing key (``encryption.signing_key``)."""
        from dbrunbook.repository.signing import Signer

        enc = self.cluster.encryption
        if enc is None or enc.signing_key is None:
            raise ConfigError(
                f"cluster '{self.name}' has no encryption.signing_key: backups are signed by the controller",
                hint="make one with: invoke keys.signing-init --out FILE (see docs/security.md)",
            )
        signer = Signer(self.resolver.resolve(enc.signing_key).reveal())
        if enc.signers and signer.public not in enc.signers:
            raise ConfigError(
                f"cluster '{self.name}': the public key of encryption.signing_key ({signer.public}) is not among "
                "encryption.signers",
                hint="add it to encryption.signers, or point signing_key at the right file",
            )
        return signer

    def trust(self) -> Trust:
        """The keys whose signatures make a manifest a backup: ``encryption.signers``, or the signing key's
        own public key when the list is empty."""
        from dbrunbook.repository.signing import Trust, parse_public

        enc = self.cluster.encryption
        if enc is not None and enc.signers:
            return Trust.of(parse_public(p) for p in enc.signers)
        if enc is not None and enc.signing_key is not None:
            return Trust.of([self.signer.public_raw])
        raise ConfigError(
            f"cluster '{self.name}' trusts no manifest signer: set encryption.signing_key (and encryption.signers)",
            hint="make a key with: invoke keys.signing-init --out FILE; then sign older backups with backup.sign "
            "(see docs/security.md)",
        )

    def write_manifest(self, manifest: Manifest) -> None:
        """Sign and store a manifest: the last write of a backup, the one that makes it exist."""
        from datetime import UTC, datetime

        from dbrunbook.errors import BackupError
        from dbrunbook.repository.catalog import authenticity
        from dbrunbook.repository.manifest import manifest_key
        from dbrunbook.repository.objects import store

        key = manifest_key(manifest.backup_id)
        # Never sign what the catalog would refuse (objects a host reported outside the backup's folder...).
        wrong = authenticity(manifest, key, datetime.now(UTC), self.name)
        if wrong:
            raise BackupError(f"backup {manifest.backup_id} not written: its manifest would be refused: {wrong}")
        self.check_leases()
        store(self.storage, "manifest", key, [self.signer.sign(key, manifest.to_json())], self.recipients)

    @contextmanager
    def lease(self, purpose: str, *, exclusive: bool = False, dry_run: bool = False) -> Iterator[None]:
        """Hold the cluster's repository lease for ``purpose`` (see :mod:`dbrunbook.repository.lease`); a dry run
        changes nothing and takes none."""
        if dry_run:
            yield
            return
        from dbrunbook.repository.lease import acquire

        repo = self.cluster.repository
        held = acquire(
            self.storage,
            self.name,
            purpose,
            exclusive=exclusive,
            command=self.settings.audit.task or purpose,
            object_lock=repo is not None and repo.object_lock is not None,
        )
        self._leases.append(held)
        try:
            yield
        finally:
            self._leases.remove(held)
            held.release()

    def check_leases(self) -> None:
        """Before an irreversible step (a manifest, a deletion): stop if a lease of this run has lapsed."""
        for held in self._leases:
            held.check()

    def new_backup_id(self, kind: str) -> str:
        """Claim a fresh backup id in the repository (see :func:`catalog.claim_backup_id`)."""
        from dbrunbook.repository.catalog import claim_backup_id

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

    def agent_on(self, ex: HostExecutor, host: Host) -> str:
        return agent_for(ex, host)


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
