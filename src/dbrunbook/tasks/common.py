"""The frame every task runs in: inventory loading, run settings, and turning errors into exit codes.

Task bodies stay thin: they parse flags, call plain functions that take plain data, and print the result.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from invoke.exceptions import Exit

from dbrunbook.errors import DbrunbookError
from dbrunbook.execution.audit import AuditLog
from dbrunbook.execution.executor import HostExecutor, RunSettings
from dbrunbook.execution.hosts import executor_for
from dbrunbook.inventory.loader import LoadedInventory, default_env, load_inventory
from dbrunbook.inventory.model import Cluster
from dbrunbook.inventory.secrets import SecretResolver
from dbrunbook.output import Output
from dbrunbook.redact import REDACTOR

if TYPE_CHECKING:
    from dbrunbook.context import ClusterContext

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class TaskRun:
    """State of one task invocation."""

    name: str
    env: str
    out: Output
    settings: RunSettings
    _loaded: LoadedInventory | None = None
    _resolver: SecretResolver | None = None
    # The cluster rides along so its id is never reused by a later copy (a drill's local place).
    _executors: dict[str, tuple[Cluster, HostExecutor]] = field(default_factory=dict)

    @classmethod
    def start(cls, name: str, *, env: str | None, json_mode: bool, dry_run: bool = False) -> TaskRun:
        env = env or default_env()
        return cls(
            name=name,
            env=env,
            out=Output(json_mode=json_mode),
            settings=RunSettings(audit=AuditLog(task=name, env=env), dry_run=dry_run),
        )

    @property
    def loaded(self) -> LoadedInventory:
        if self._loaded is None:
            self._loaded = load_inventory(self.env)
        return self._loaded

    @property
    def resolver(self) -> SecretResolver:
        if self._resolver is None:
            self._resolver = SecretResolver(self.loaded.base_dir)
        return self._resolver

    def clusters(self, only: str | None = None) -> dict[str, Cluster]:
        clusters = self.loaded.inventory.clusters
        if only is None:
            return dict(clusters)
        if only not in clusters:
            from dbrunbook.errors import InventoryError

            raise InventoryError(f"{self.loaded.path}: no cluster '{only}' (known: {', '.join(sorted(clusters))})")
        return {only: clusters[only]}

    def select(self, spec: str | None, limit: str | None = None) -> list[str]:
        """The clusters a fleet task acts on: ``--cluster`` names, globs and ``!exclusions``, ``--limit`` labels
        (see :mod:`dbrunbook.fleet`)."""
        from dbrunbook.fleet import select

        clusters = self.loaded.inventory.clusters
        return select({n: c.labels for n, c in clusters.items()}, spec, limit)

    def executor(self, cluster: Cluster, host_name: str) -> HostExecutor:
        key = f"{id(cluster)}:{host_name}"
        if key not in self._executors:
            ex = executor_for(host_name, cluster.hosts[host_name], self.settings, self.resolver)
            self._executors[key] = (cluster, ex)
        return self._executors[key][1]

    def cluster_context(self, name: str | None) -> ClusterContext:
        """The one cluster a task works on: --cluster, or the only cluster of the inventory."""
        from dbrunbook.context import ClusterContext

        clusters = self.clusters(name)
        if len(clusters) != 1:
            from dbrunbook.errors import InventoryError

            raise InventoryError(
                f"{self.loaded.path} has {len(clusters)} clusters; name one with --cluster "
                f"({', '.join(sorted(clusters))})"
            )
        ((cname, cluster),) = clusters.items()
        return ClusterContext(cname, cluster, self.resolver, self.settings, self.executor)

    def find_host(self, host: str) -> tuple[str, Cluster]:
        """A host anywhere in the inventory (restores may go to another cluster's host)."""
        for cname, cluster in self.loaded.inventory.clusters.items():
            if host in cluster.hosts:
                return cname, cluster
        from dbrunbook.errors import InventoryError

        raise InventoryError(f"{self.loaded.path}: no host '{host}' in any cluster")

    def close(self) -> None:
        for _, ex in self._executors.values():
            ex.close()
        self._executors.clear()


def error_document(exc: DbrunbookError) -> dict[str, Any]:
    return {
        "ok": False,
        "error": {
            "domain": exc.domain,
            "type": type(exc).__name__,
            "exit_code": exc.exit_code,
            "message": REDACTOR.redact(exc.one_line()),
        },
    }


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Expected failures become one redacted line on stderr (plus a JSON error document with ``--json``)
    and the error's exit code; no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        json_mode = bool(kwargs.get("json"))
        try:
            return fn(*args, **kwargs)
        except DbrunbookError as exc:
            if json_mode and not getattr(exc, "reported", False):
                sys.stdout.write(json.dumps(error_document(exc), indent=2) + "\n")
            raise Exit(
                REDACTOR.redact(f"dbrunbook: {exc.domain} error: {exc.one_line()}"), code=exc.exit_code
            ) from None
        except KeyboardInterrupt:
            raise Exit("dbrunbook: interrupted", code=130) from None

    return wrapper
