"""What engine code may use of a cluster. :class:`dbrunbook.context.ClusterAccess` implements it; engines type
against this Protocol, so they never import the orchestration layer that builds contexts."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

from dbrunbook.errors import BackupError
from dbrunbook.execution.executor import HostExecutor, RunSettings
from dbrunbook.inventory.model import Cluster, Host, Role
from dbrunbook.inventory.secrets import SecretResolver
from dbrunbook.repository.catalog import Catalog
from dbrunbook.repository.manifest import Manifest
from dbrunbook.repository.storage import Storage

if TYPE_CHECKING:
    from dbrunbook.engines.base import EngineDriver, Login
    from dbrunbook.repository.signing import Signer

Step = Callable[[str], None]  # reports the step a long operation is in ("copying the data directory")
Confirm = Callable[[str], None]  # asks before something destructive; raises when the operator says no
#: which cluster (and its inventory) owns an inventory host: restores and drills may target any host
FindHost = Callable[[str], tuple[str, Cluster]]

DEFAULT_MAX_CHAIN = 7  # incrementals on one full backup when the retention policy does not say


class ClusterAccess(Protocol):
    """A cluster, its hosts' executors and logins, its repository and keys."""

    # Read-only properties: a dataclass field satisfies them, and engine code never rebinds them.
    @property
    def name(self) -> str: ...

    @property
    def cluster(self) -> Cluster: ...

    @property
    def resolver(self) -> SecretResolver: ...

    @property
    def settings(self) -> RunSettings: ...

    @property
    def executor_for(self) -> Callable[[Cluster, str], HostExecutor]: ...

    @property
    def storage(self) -> Storage: ...

    @property
    def engine(self) -> EngineDriver: ...

    @property
    def recipients(self) -> list[str]: ...

    @property
    def signer(self) -> Signer: ...

    def identities(self) -> list[str]: ...

    def has_identities(self) -> bool: ...

    def catalog(self, system_id: str | None = None, *, cached: bool = True) -> Catalog: ...

    def write_manifest(self, manifest: Manifest) -> None: ...

    def lease(
        self, purpose: str, *, exclusive: bool = False, dry_run: bool = False
    ) -> AbstractContextManager[None]: ...

    def check_leases(self) -> None: ...

    def new_backup_id(self, kind: str) -> str: ...

    def login(self, database: str | None = None) -> Login: ...

    def host(self, host_name: str) -> Host: ...

    def executor(self, host_name: str) -> HostExecutor: ...

    def agent(self, host_name: str) -> str: ...

    def agent_on(self, ex: HostExecutor, host: Host) -> str:
        """This build's host command on any inventory host (a restore's target may be in another cluster)."""
        ...


def pick_source(ctx: ClusterAccess, source: str) -> str:
    """The host a backup reads from: the primary, or the first replica of the inventory."""
    if source == "primary":
        return ctx.cluster.primary()[0]
    replicas = [n for n, h in ctx.cluster.hosts.items() if h.role is Role.REPLICA]
    if not replicas:
        raise BackupError(f"cluster '{ctx.name}' has no replica to back up from")
    return replicas[0]
